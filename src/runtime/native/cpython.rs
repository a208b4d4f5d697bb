//! The one place that drives CPython's interpreter and thread-state machinery: start-up at
//! module load, creating and ending own-GIL sub-interpreters, attaching a thread to one,
//! letting go of its GIL around blocking work, and injecting an exception into a running thread.
//!
//! Rules kept here (see ARCHITECTURE.md, "Threads and locks"):
//! * a thread keeps one idle thread state per interpreter between attachments (see
//!   `thread_states.rs`); they are deleted before `Py_EndInterpreter`, which then finds none but
//!   its anchor, and a thread state of an interrupted interpreter is never reused;
//! * the main interpreter's GIL is released right after start-up and only taken for a moment
//!   to create a sub-interpreter;
//! * code that may wait for the Redis lock runs inside `allow_threads`.

use std::ffi::{c_char, c_int, c_ulong, c_void, CStr, CString};
use std::marker::PhantomData;
use std::ptr;

use pyo3_ffi as ffi;

use super::thread_states;

/// A sub-interpreter. Only `cpython.rs` dereferences it.
///
/// `anchor` is the interpreter's first thread state, kept (detached) for its whole life and used
/// to end it. CPython 3.13.0 hands the interpreter's built-in thread state to whoever creates a
/// thread state while the interpreter has none, and resets it only after unlinking it: with no
/// anchor, two threads attaching and detaching concurrently can get the same state ("Fatal
/// Python error: init_threadstate: thread state already initialized"). With the anchor linked,
/// every other thread state is freshly allocated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InterpPtr {
    interp: *mut ffi::PyInterpreterState,
    anchor: *mut ffi::PyThreadState,
}

// SAFETY: an interpreter state is a process-wide object; every use goes through `attach`, which
// takes that interpreter's own GIL first.
unsafe impl Send for InterpPtr {}
// SAFETY: as above: shared references only ever lead to `attach`.
unsafe impl Sync for InterpPtr {}

/// Proof that the calling thread holds the GIL of one interpreter; `!Send`, so it stays on the
/// thread that attached. Dropping it detaches and restores what the thread had before.
pub struct Attached {
    tstate: *mut ffi::PyThreadState,
    previous: *mut ffi::PyThreadState,
    /// The interpreter, for keeping the state idle when detaching (null: do not keep it).
    interp: *mut ffi::PyInterpreterState,
    _not_send: PhantomData<*mut ()>,
}

fn status_error(status: &ffi::PyStatus) -> String {
    if status.err_msg.is_null() {
        "unknown error".to_string()
    } else {
        // SAFETY: err_msg is a static C string set by CPython when the status is an exception.
        unsafe { CStr::from_ptr(status.err_msg) }.to_string_lossy().into_owned()
    }
}

/// The running libpython's version, e.g. (3, 13, 0).
pub fn python_version() -> (u32, u32, u32) {
    // SAFETY: Py_GetVersion returns a static string and may be called before initialisation.
    let text = unsafe { CStr::from_ptr(ffi::Py_GetVersion()) }.to_string_lossy();
    let head = text.split_whitespace().next().unwrap_or("0.0.0");
    let mut parts = head.split('.').map(|p| p.chars().take_while(char::is_ascii_digit).collect::<String>());
    let mut next = || parts.next().and_then(|p| p.parse().ok()).unwrap_or(0);
    (next(), next(), next())
}

/// Start CPython in this process: make libpython's symbols visible to C extensions (Redis loads
/// modules with RTLD_LOCAL), register the builtin module `init_builtin` provides, initialise
/// with no signal handlers and an explicit home, then release the main GIL.
pub fn initialize(home: &str, builtin_name: &CStr, init_builtin: unsafe extern "C" fn() -> *mut ffi::PyObject) -> Result<(), String> {
    // SAFETY: Py_IsInitialized may be called at any time.
    if unsafe { ffi::Py_IsInitialized() } != 0 {
        return Err("another module already started a Python interpreter in this process".into());
    }
    reopen_libpython_global();
    super::arenas::install();
    super::memory_ledger::install();
    // SAFETY: before Py_Initialize, as AppendInittab requires; the name is a static C string.
    if unsafe { ffi::PyImport_AppendInittab(builtin_name.as_ptr(), Some(init_builtin)) } != 0 {
        return Err("could not register the gearbox builtin module".into());
    }
    let home = CString::new(home).map_err(|_| "the Python home contains a NUL byte".to_string())?;
    // SAFETY: PyConfig is a plain C struct that PyConfig_InitIsolatedConfig fully initialises;
    // it is cleared on every path below.
    unsafe {
        let mut config: ffi::PyConfig = std::mem::zeroed();
        ffi::PyConfig_InitIsolatedConfig(&mut config);
        config.install_signal_handlers = 0;
        // `site` would run again in every sub-interpreter (~7 ms each); its paths are added by
        // boot.py instead (see `NativeRuntime::start`).
        config.site_import = 0;
        config.write_bytecode = 0;
        config.parse_argv = 0;
        let status = ffi::PyConfig_SetBytesString(&mut config, &mut config.home, home.as_ptr());
        if ffi::PyStatus_Exception(status) != 0 {
            ffi::PyConfig_Clear(&mut config);
            return Err(format!("could not set the Python home: {}", status_error(&status)));
        }
        let status = ffi::Py_InitializeFromConfig(&config);
        ffi::PyConfig_Clear(&mut config);
        if ffi::PyStatus_Exception(status) != 0 {
            return Err(format!("Python failed to start: {}", status_error(&status)));
        }
        // The main interpreter is only used to create sub-interpreters: let go of its GIL.
        ffi::PyEval_SaveThread();
    }
    Ok(())
}

fn reopen_libpython_global() {
    // SAFETY: dladdr only reads the loader's tables; dlopen with RTLD_NOLOAD only promotes an
    // already loaded library to global symbol visibility and never loads a new one.
    unsafe {
        let mut info: libc::Dl_info = std::mem::zeroed();
        let symbol = ffi::Py_IsInitialized as *const c_void;
        if libc::dladdr(symbol, &mut info) != 0 && !info.dli_fname.is_null() {
            libc::dlopen(info.dli_fname, libc::RTLD_NOW | libc::RTLD_NOLOAD | libc::RTLD_GLOBAL);
        }
    }
}

impl InterpPtr {
    /// The interpreter state itself, for CPython calls that name an interpreter without being
    /// attached to it (scheduling a pending call).
    pub fn state(self) -> *mut ffi::PyInterpreterState {
        self.interp
    }
}

/// CPython's id of an interpreter (unique for the life of the process, never reused).
pub fn interpreter_id(interp: InterpPtr) -> i64 {
    // SAFETY: reads an immutable field of a live interpreter (callers own it).
    unsafe { ffi::PyInterpreterState_GetID(interp.interp) }
}

/// Create an own-GIL sub-interpreter and run `bootstrap` attached to it. Works on any thread.
pub fn new_interpreter<T>(bootstrap: impl FnOnce(&Attached) -> Result<T, String>) -> Result<(InterpPtr, T), String> {
    let config = ffi::PyInterpreterConfig {
        use_main_obmalloc: 0,
        allow_fork: 0,
        allow_exec: 0,
        allow_threads: 1,
        allow_daemon_threads: 0,
        check_multi_interp_extensions: 1,
        gil: ffi::PyInterpreterConfig_OWN_GIL,
    };
    // Py_NewInterpreterFromConfig needs a current thread state: a fresh main-interpreter one is
    // attached; on success CPython detaches it and makes the new interpreter's current.
    // SAFETY: on failure ours is current again; each state is cleared and deleted while current.
    unsafe {
        let previous = detach_current();
        let main_ts = ffi::PyThreadState_New(ffi::PyInterpreterState_Main());
        ffi::PyEval_RestoreThread(main_ts);
        let mut sub_ts: *mut ffi::PyThreadState = ptr::null_mut();
        let status = ffi::Py_NewInterpreterFromConfig(&mut sub_ts, &config);
        if ffi::PyStatus_Exception(status) != 0 || sub_ts.is_null() {
            ffi::PyThreadState_Clear(main_ts);
            ffi::PyThreadState_DeleteCurrent();
            reattach(previous);
            return Err(format!("could not create a sub-interpreter: {}", status_error(&status)));
        }
        let interp = InterpPtr { interp: ffi::PyThreadState_GetInterpreter(sub_ts), anchor: sub_ts };
        let attached = Attached { tstate: sub_ts, previous: ptr::null_mut(), interp: ptr::null_mut(), _not_send: PhantomData };
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| bootstrap(&attached)));
        let result = match result {
            Ok(r) => r,
            Err(_) => Err("the interpreter bootstrap panicked".to_string()),
        };
        std::mem::forget(attached);
        if result.is_err() {
            ffi::Py_EndInterpreter(sub_ts);
        } else {
            // The initial state stays linked, detached, as the interpreter's anchor.
            ffi::PyEval_SaveThread();
        }
        ffi::PyEval_RestoreThread(main_ts);
        ffi::PyThreadState_Clear(main_ts);
        ffi::PyThreadState_DeleteCurrent();
        reattach(previous);
        result.map(|t| (interp, t))
    }
}

/// Detach whatever thread state is current on this thread (releasing its GIL); returns it.
///
/// # Safety
/// The thread state current on this thread, if any, is one gearbox attached and may detach here;
/// the caller reattaches it with `reattach`.
unsafe fn detach_current() -> *mut ffi::PyThreadState {
    // SAFETY: the caller's contract (# Safety): none beyond being called from Rust code that owns
    // this thread's state.
    unsafe {
        let current = ffi::PyThreadState_GetUnchecked();
        if !current.is_null() {
            ffi::PyEval_SaveThread();
        }
        current
    }
}

/// # Safety
/// `previous` is what `detach_current` returned on this same thread, and nothing is attached now.
unsafe fn reattach(previous: *mut ffi::PyThreadState) {
    // SAFETY: the caller upholds this function's # Safety contract.
    unsafe {
        if !previous.is_null() {
            // SAFETY: the caller's contract (# Safety): `previous` was detached by `detach_current` on this same thread.
            ffi::PyEval_RestoreThread(previous);
        }
    }
}

fn this_thread() -> u64 {
    // SAFETY: a pure query of the calling thread's id.
    unsafe { ffi::PyThread_get_thread_ident() as u64 }
}

/// Attach the calling thread to `interp`, waiting for its GIL, with the thread state this thread
/// left idle for it (or a new one). Nested use (another interpreter already attached on this
/// thread) detaches the outer one until the guard drops.
pub fn attach(interp: InterpPtr) -> Attached {
    let kept = thread_states::idle().take(interp.interp as usize, this_thread());
    // SAFETY: the kept state was made by this thread for this interpreter and is current nowhere
    // (it was idle); otherwise a new one is created. The interpreter is alive because callers
    // hold the session that owns it (see `NativeInterpreter`).
    unsafe {
        let previous = detach_current();
        let tstate = match kept {
            Some(t) => t as *mut ffi::PyThreadState,
            None => ffi::PyThreadState_New(interp.interp),
        };
        ffi::PyEval_RestoreThread(tstate);
        Attached { tstate, previous, interp: interp.interp, _not_send: PhantomData }
    }
}

impl Drop for Attached {
    fn drop(&mut self) {
        let (interp, thread, tstate) = (self.interp as usize, this_thread(), self.tstate as usize);
        let keep = !self.interp.is_null() && thread_states::idle().may_keep(interp);
        // Kept: detached, then recorded idle (if the interpreter was tainted meanwhile, it is
        // attached again to be deleted). Not kept: cleared and deleted while current. Then the
        // outer state, if any, is restored.
        // SAFETY: `tstate` is this thread's current state (Attached is !Send and guards nest).
        unsafe {
            if keep {
                ffi::PyEval_SaveThread();
                if !thread_states::idle().keep(interp, thread, tstate) {
                    ffi::PyEval_RestoreThread(self.tstate);
                    ffi::PyThreadState_Clear(self.tstate);
                    ffi::PyThreadState_DeleteCurrent();
                }
            } else {
                ffi::PyThreadState_Clear(self.tstate);
                ffi::PyThreadState_DeleteCurrent();
            }
            reattach(self.previous);
        }
    }
}

/// Delete idle thread states (made by any thread); the caller holds their interpreter's GIL
/// and none of them is current anywhere.
///
/// # Safety
/// The caller holds the GIL of the states' interpreter and none of the states is current on any
/// thread.
pub(super) unsafe fn delete_idle(states: Vec<usize>) {
    // SAFETY: the caller upholds this function's # Safety contract.
    unsafe {
        for t in states {
            // SAFETY: the caller's contract (# Safety).
            ffi::PyThreadState_Clear(t as *mut ffi::PyThreadState);
            ffi::PyThreadState_Delete(t as *mut ffi::PyThreadState);
        }
    }
}

/// Run `f` without the current interpreter's GIL (for work that may wait for the Redis lock).
/// `f` must not touch Python objects.
///
/// # Safety
/// The calling thread must be attached (hold some interpreter's GIL).
pub unsafe fn without_gil<T>(f: impl FnOnce() -> T) -> T {
    // SAFETY: the caller's contract (# Safety): attached; our state is saved and restored around
    // `f`, and a panic in `f` is carried past the restore so the state stays consistent.
    unsafe {
        let saved = ffi::PyEval_SaveThread();
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
        ffi::PyEval_RestoreThread(saved);
        match result {
            Ok(v) => v,
            Err(p) => std::panic::resume_unwind(p),
        }
    }
}

impl Attached {
    /// The identity CPython knows this thread by (for `interrupt`).
    pub fn thread_ident(&self) -> c_ulong {
        // SAFETY: a pure query of the calling thread's id.
        unsafe { ffi::PyThread_get_thread_ident() }
    }
}

/// End a sub-interpreter. Nothing may be attached to it on any thread.
pub fn end_interpreter(interp: InterpPtr) {
    // The anchor is made current and the idle states other threads kept are deleted under its
    // GIL, so Py_EndInterpreter finds only the anchor; then the outer state is restored.
    // SAFETY: nothing is attached to the interpreter (the caller's contract).
    unsafe {
        let previous = detach_current();
        ffi::PyEval_RestoreThread(interp.anchor);
        delete_idle(thread_states::idle().forget(interp.interp as usize));
        ffi::Py_EndInterpreter(interp.anchor);
        reattach(previous);
    }
}

/// Run `f` attached to `interp` through its anchor (the thread state it was created with), for
/// the reaper's steps before `end_interpreter`.
pub fn with_anchor<T>(interp: InterpPtr, f: impl FnOnce() -> T) -> T {
    // SAFETY: only the reaper uses the anchor, before ending the interpreter (nothing else can
    // attach to a dead session's interpreter but the threads it started, which use their own).
    unsafe {
        let previous = detach_current();
        ffi::PyEval_RestoreThread(interp.anchor);
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
        ffi::PyEval_SaveThread();
        reattach(previous);
        result.unwrap_or_else(|p| std::panic::resume_unwind(p))
    }
}

/// Whether the calling thread has a Python thread state attached (it holds some GIL).
pub fn holds_a_gil() -> bool {
    // SAFETY: a query of this thread's current state; never fails.
    unsafe { !ffi::PyThreadState_GetUnchecked().is_null() }
}

/// Run `f` attached to the main interpreter (taking its GIL) on the calling thread.
fn with_main_interpreter<T>(f: impl FnOnce() -> T) -> T {
    // SAFETY: a fresh main-interpreter state for this thread, cleared and deleted while current;
    // whatever was attached before is detached around it.
    unsafe {
        let previous = detach_current();
        let ts = ffi::PyThreadState_New(ffi::PyInterpreterState_Main());
        ffi::PyEval_RestoreThread(ts);
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
        ffi::PyThreadState_Clear(ts);
        ffi::PyThreadState_DeleteCurrent();
        reattach(previous);
        match result {
            Ok(v) => v,
            Err(p) => std::panic::resume_unwind(p),
        }
    }
}

/// Compile `source` once, in the main interpreter, to marshalled code: loading that in a new
/// interpreter costs a fraction of compiling it again (gears.py: ~13 ms to compile).
pub fn compile_marshalled(source: &str, filename: &CStr) -> Result<Vec<u8>, String> {
    let source = CString::new(source).map_err(|_| "module source contains a NUL byte".to_string())?;
    with_main_interpreter(|| {
        // SAFETY: attached to the main interpreter; new references are released; the bytes are
        // copied out before the bytes object is released.
        unsafe {
            let code = ffi::Py_CompileString(source.as_ptr(), filename.as_ptr(), ffi::Py_file_input);
            if code.is_null() {
                return Err(take_error_text());
            }
            let data = ffi::PyMarshal_WriteObjectToString(code, 4);
            ffi::Py_DecRef(code);
            if data.is_null() {
                return Err(take_error_text());
            }
            let bytes = std::slice::from_raw_parts(ffi::PyBytes_AsString(data) as *const u8, ffi::PyBytes_Size(data) as usize).to_vec();
            ffi::Py_DecRef(data);
            Ok(bytes)
        }
    })
}

/// One module CPython should import from memory (its marshalled code) instead of finding it
/// on `sys.path`.
pub struct FrozenModule {
    pub name: CString,
    pub code: Vec<u8>,
    pub is_package: bool,
}

/// Install `modules` as CPython's table of extra frozen modules (`PyImport_FrozenModules`),
/// consulted before `sys.path` by every interpreter created afterwards. Once, at start-up.
pub fn install_frozen(modules: Vec<FrozenModule>) {
    // The table and the strings it points to live as long as the process.
    let modules: &'static [FrozenModule] = Vec::leak(modules);
    let mut table: Vec<ffi::_frozen> = modules
        .iter()
        .map(|m| ffi::_frozen {
            name: m.name.as_ptr(),
            code: m.code.as_ptr(),
            size: m.code.len() as c_int,
            is_package: m.is_package as c_int,
        })
        .collect();
    table.push(ffi::_frozen { name: ptr::null(), code: ptr::null(), size: 0, is_package: 0 });
    let table: &'static [ffi::_frozen] = Vec::leak(table);
    // SAFETY: called once on the main thread at load, before any sub-interpreter exists and
    // while no other thread runs Python; CPython only reads the table, which is never freed.
    with_main_interpreter(|| unsafe { ffi::PyImport_FrozenModules = table.as_ptr() });
}

/// `str()` of a Python expression evaluated in the main interpreter.
pub fn eval_in_main(expression: &str) -> Result<String, String> {
    let expression = CString::new(expression).map_err(|_| "expression contains a NUL byte".to_string())?;
    with_main_interpreter(|| {
        // SAFETY: attached to the main interpreter; new references are released.
        unsafe {
            let main = ffi::PyImport_AddModule(c"__main__".as_ptr());
            if main.is_null() {
                return Err(take_error_text());
            }
            let globals = ffi::PyModule_GetDict(main);
            let value = ffi::PyRun_String(expression.as_ptr(), ffi::Py_eval_input, globals, globals);
            if value.is_null() {
                return Err(take_error_text());
            }
            let text = ffi::PyObject_Str(value);
            ffi::Py_DecRef(value);
            let out = utf8_of(text).ok_or_else(take_error_text);
            ffi::Py_DecRef(text);
            out
        }
    })
}

/// Run marshalled code (from `compile_marshalled`) as module `name`, registered in
/// `sys.modules`; returns the module.
pub fn exec_module(_py: &Attached, name: &CStr, marshalled: &[u8], filename: &CStr) -> Result<*mut ffi::PyObject, String> {
    // SAFETY: attached (proof `_py`); the code object is a new reference we release; the module
    // returned by ExecCodeModuleEx is a new reference handed to the caller.
    unsafe {
        let code = ffi::PyMarshal_ReadObjectFromString(marshalled.as_ptr() as *const c_char, marshalled.len() as ffi::Py_ssize_t);
        if code.is_null() {
            return Err(take_error_text());
        }
        let module = ffi::PyImport_ExecCodeModuleEx(name.as_ptr(), code, filename.as_ptr() as *mut c_char);
        ffi::Py_DecRef(code);
        if module.is_null() {
            return Err(take_error_text());
        }
        Ok(module)
    }
}

/// Fetch and clear the pending exception as `Type: message` (for bootstrap failures).
pub fn take_error_text() -> String {
    // SAFETY: called attached, right after a failed API call; all references are released.
    unsafe {
        let exc = ffi::PyErr_GetRaisedException();
        if exc.is_null() {
            return "unknown Python error".to_string();
        }
        let text = ffi::PyObject_Repr(exc);
        let out = utf8_of(text).unwrap_or_else(|| "unprintable Python error".to_string());
        ffi::Py_DecRef(text);
        ffi::Py_DecRef(exc);
        out
    }
}

/// The UTF-8 text of a `str` object (None if it is not one); does not consume the reference.
///
/// # Safety
/// Attached; `obj` is NULL or a live object.
pub unsafe fn utf8_of(obj: *mut ffi::PyObject) -> Option<String> {
    // SAFETY: the caller upholds this function's # Safety contract.
    unsafe {
        if obj.is_null() || ffi::PyUnicode_Check(obj) == 0 {
            return None;
        }
        let mut len: ffi::Py_ssize_t = 0;
        // SAFETY: the caller's contract (# Safety): attached; `obj` is a live str.
        let data = ffi::PyUnicode_AsUTF8AndSize(obj, &mut len);
        if data.is_null() {
            ffi::PyErr_Clear();
            return None;
        }
        let bytes = std::slice::from_raw_parts(data as *const u8, len as usize);
        Some(String::from_utf8_lossy(bytes).into_owned())
    }
}
