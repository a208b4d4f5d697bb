//! Ending a session's interpreter within a bound, so nothing a script leaves behind can hold the
//! reaper (and, through the sessions waiting behind it, the server).
//!
//! `Py_EndInterpreter` waits for every thread the script started, runs its `atexit` callbacks and
//! the `__del__` methods of whatever is left, for as long as they take. So before it, on the
//! reaper thread:
//! 1. the session's host is taken away: from now on `execute()` & co raise, whichever thread
//!    calls them;
//! 2. every thread of the interpreter gets a trace that raises `gears.forcestopped` at every line,
//!    and the reaper waits up to `BOUND` for them to finish;
//! 3. the `atexit` callbacks run now, stopped the same way after `BOUND`, and none are left;
//! 4. `Py_EndInterpreter` runs with a watchdog that, after `BOUND`, stops whatever Python code
//!    (a `__del__` loop) runs in it.
//!
//! A thread stuck in one C call (a blocking `Lock.acquire()`) cannot be stopped: its interpreter
//! is then left alive, unreachable, with a log line, rather than ended (which would wait for it).

use std::sync::Arc;
use std::time::{Duration, Instant};

use pyo3_ffi as ffi;

use super::cpython::{self, InterpPtr};
use super::interrupts::{self, raise_at_every_line};
use super::{hostmodule, ObjPtr};
use gearbox_engine::watchdog::Watchdog;

/// How long each step may take.
pub const BOUND: Duration = Duration::from_millis(1000);

/// How a teardown ended.
pub enum Ended {
    /// `Py_EndInterpreter` ran.
    Ended,
    /// The interpreter was left alive; the text says why (for the log).
    LeftRunning(String),
}

/// End `interp` (on the reaper thread); `stop` is its `gears.forcestopped` type.
pub fn end(interp: InterpPtr, stop: ObjPtr, watchdog: &Watchdog) -> Ended {
    cpython::with_anchor(interp, || {
        // SAFETY: attached to `interp` through its anchor.
        unsafe { retire_host() };
        stop_threads(stop);
    });
    if !wait_for_threads(interp, stop) {
        return Ended::LeftRunning("a thread it started did not stop (blocked in a C call?)".into());
    }
    {
        let _armed = arm(watchdog, interp, stop);
        // SAFETY: attached; a failure inside is cleared (atexit reports its callbacks' own).
        cpython::with_anchor(interp, || unsafe { call_gears(c"_end_session") });
    }
    if !wait_for_threads(interp, stop) {
        return Ended::LeftRunning("its atexit callbacks started a thread that did not stop".into());
    }
    let _armed = arm(watchdog, interp, stop);
    cpython::end_interpreter(interp);
    Ended::Ended
}

/// After `BOUND`, stop whatever Python code runs in `interp` (from a pending call: nothing needs
/// to attach, which matters while the interpreter ends).
fn arm(watchdog: &Watchdog, interp: InterpPtr, stop: ObjPtr) -> gearbox_engine::watchdog::Armed {
    watchdog.arm(
        BOUND,
        Arc::new(move || {
            // SAFETY: the watchdog is disarmed (the guard dropped) before the reaper lets the
            // interpreter go, and `Py_EndInterpreter` runs while it is armed: the interpreter is
            // alive whenever this runs. A call left queued when it ends is dropped with it.
            unsafe { interrupts::schedule(interp.state(), interrupts::stop_here, stop.get().cast()) };
        }),
    )
}

/// Take the host away from the interpreter's `_gearbox` module.
///
/// # Safety
/// The calling thread must be attached to the interpreter.
unsafe fn retire_host() {
    // SAFETY: by the caller's contract, attached; `_gearbox` is in sys.modules (imported at bootstrap).
    unsafe {
        let module = ffi::PyImport_ImportModule(hostmodule::MODULE_NAME.as_ptr());
        if module.is_null() {
            ffi::PyErr_Clear();
            return;
        }
        hostmodule::retire_host(module);
        ffi::Py_DecRef(module);
    }
}

/// Make every other thread of the interpreter raise at its next line (and every line after).
fn stop_threads(stop: ObjPtr) {
    // SAFETY: called attached (inside `with_anchor`); the trace is then taken off this thread,
    // which must go on running the teardown.
    unsafe {
        ffi::PyEval_SetTraceAllThreads(Some(raise_at_every_line), stop.get());
        ffi::PyEval_SetTrace(None, std::ptr::null_mut());
    }
}

/// Wait up to `BOUND` for the threads the script started to finish, stopping new ones too.
fn wait_for_threads(interp: InterpPtr, stop: ObjPtr) -> bool {
    let deadline = Instant::now() + BOUND;
    loop {
        let running = cpython::with_anchor(interp, || {
            // SAFETY: attached through the anchor (inside `with_anchor`).
            let n = unsafe { thread_count() };
            if n > 0 {
                stop_threads(stop);
            }
            n
        });
        if running == 0 {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Threads started through `_thread` (and so `threading`) that are still running.
///
/// # Safety
/// The calling thread must be attached to the interpreter.
unsafe fn thread_count() -> i64 {
    // SAFETY: by the caller's contract, attached. New references are released; errors are cleared.
    unsafe {
        let module = ffi::PyImport_ImportModule(c"_thread".as_ptr());
        if module.is_null() {
            ffi::PyErr_Clear();
            return 0;
        }
        let count = ffi::PyObject_CallMethod(module, c"_count".as_ptr(), std::ptr::null());
        ffi::Py_DecRef(module);
        if count.is_null() {
            ffi::PyErr_Clear();
            return 0;
        }
        let n = ffi::PyLong_AsLongLong(count);
        ffi::Py_DecRef(count);
        if n < 0 {
            ffi::PyErr_Clear();
        }
        n.max(0)
    }
}

/// Call `gears.<name>()`, ignoring what it returns or raises.
///
/// # Safety
/// The calling thread must be attached to the interpreter.
unsafe fn call_gears(name: &std::ffi::CStr) {
    // SAFETY: by the caller's contract, attached. New references are released; errors are cleared.
    unsafe {
        let module = ffi::PyImport_ImportModule(c"gears".as_ptr());
        if module.is_null() {
            ffi::PyErr_Clear();
            return;
        }
        let result = ffi::PyObject_CallMethod(module, name.as_ptr(), std::ptr::null());
        ffi::Py_DecRef(module);
        if result.is_null() {
            ffi::PyErr_Clear();
        } else {
            ffi::Py_DecRef(result);
        }
    }
}
