//! Making running Python code stop: an asynchronous exception (and, for code that swallows it,
//! a trace that raises at every line) sent from another thread, or a pending call that runs in
//! the interpreter's own thread at its next bytecode boundary (no attaching, so it is safe from
//! inside an allocator or while the interpreter ends).

use std::ffi::{c_int, c_ulong, c_void};

use pyo3_ffi as ffi;

use super::cpython::{attach, delete_idle, InterpPtr};
use super::thread_states;

/// How hard `interrupt` pushes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Push {
    /// An asynchronous exception, seen at the next bytecode boundary.
    Raise,
    /// Also a trace function on every thread of the interpreter that raises at every line, so
    /// code that catches the first exception (`except BaseException: pass`) cannot go on.
    RaiseAtEveryLine,
}

/// Raise `exception` (a type object of `interp`) in the thread `thread` the next time it runs
/// Python code in `interp`, if `still_wanted()` (checked while holding that interpreter's GIL).
///
/// # Safety
/// `exception` is a live exception type of `interp`, alive as long as `interp` is.
pub unsafe fn interrupt(
    interp: InterpPtr,
    thread: c_ulong,
    exception: *mut ffi::PyObject,
    push: Push,
    still_wanted: impl FnOnce() -> bool,
) {
    let attached = attach(interp);
    if still_wanted() {
        // `exception` is owned by `interp`'s builtin module, alive as long as the interpreter
        // (kept alive by the caller); a trace set here dies with each thread state's attachment.
        // SAFETY: we hold `interp`'s GIL, which both calls require.
        unsafe {
            ffi::PyThreadState_SetAsyncExc(thread as std::ffi::c_long, exception);
            if push == Push::RaiseAtEveryLine {
                ffi::PyEval_SetTraceAllThreads(Some(raise_at_every_line), exception);
            }
            delete_idle(thread_states::idle().taint(interp.state() as usize));
        }
    }
    drop(attached);
}

pub(super) unsafe extern "C" fn raise_at_every_line(
    exception: *mut ffi::PyObject,
    _frame: *mut ffi::PyFrameObject,
    what: c_int,
    _arg: *mut ffi::PyObject,
) -> c_int {
    if what == ffi::PyTrace_LINE || what == ffi::PyTrace_CALL {
        // SAFETY: called by CPython with the GIL held; `exception` is the type object passed
        // to PyEval_SetTraceAllThreads, alive with the interpreter.
        unsafe { ffi::PyErr_SetNone(exception) };
        return -1;
    }
    0
}

extern "C" {
    /// CPython's per-interpreter pending calls (exported by libpython 3.12 and 3.13; the public
    /// `Py_AddPendingCall` reaches only the main interpreter). `func` runs at the next bytecode
    /// boundary of a thread of `interp`; returning -1 with an exception set raises it there.
    fn _PyEval_AddPendingCall(
        interp: *mut ffi::PyInterpreterState,
        func: extern "C" fn(*mut c_void) -> c_int,
        arg: *mut c_void,
        flags: c_int,
    ) -> c_int;
}

/// Run `func(arg)` in a thread of `interp` at its next bytecode boundary. False if CPython's
/// queue is full.
///
/// # Safety
/// `interp` must be alive until the call has run (or the interpreter has ended).
pub unsafe fn schedule(interp: *mut ffi::PyInterpreterState, func: extern "C" fn(*mut c_void) -> c_int, arg: *mut c_void) -> bool {
    // SAFETY: the caller keeps `interp` alive; CPython's pending-call queue takes its own lock.
    unsafe { _PyEval_AddPendingCall(interp, func, arg, 0) == 0 }
}

/// A pending call that stops whatever its thread runs: raises `arg` (an exception type of that
/// interpreter) now and, through a trace, at every line after.
pub extern "C" fn stop_here(arg: *mut c_void) -> c_int {
    let exception = arg as *mut ffi::PyObject;
    // SAFETY: pending calls run attached, holding the interpreter's GIL; `exception` belongs to
    // that interpreter's `_gearbox` module, alive as long as it.
    unsafe {
        ffi::PyEval_SetTrace(Some(raise_at_every_line), exception);
        ffi::PyErr_SetNone(exception);
    }
    -1
}
