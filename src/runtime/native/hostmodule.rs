//! `_gearbox`: the builtin module every sub-interpreter imports, through which `gears.py` reaches
//! the host (Redis). Multi-phase init with per-module state, declared safe for own-GIL
//! sub-interpreters, so each interpreter has its own module object, its own exception types and
//! its own reference to its session's [`Host`].
//!
//! Functions: `call(*args)`, `read_keys(keys, read_value)`, `scan_keys(scan, pattern, read_value)`, `count_keys(...)`, `scan_close(scan)` (these four in
//! `host_keys.rs`), `log(level, msg)`,
//! `config_get(name)`, `atomic_begin()`, `atomic_end()`, `register(spec)`, `time_event(seconds, handle, key)`, `command(op, arg)`, `async_allowed()`. Exceptions: `error` (`gears.error`),
//! `forcestopped` (raised into an aborted execution) and `ScriptTimeout` (raised into top-level
//! code that ran past ScriptTimeoutMS); the last two derive from BaseException so a script's
//! `except Exception` does not swallow them.
//!
//! Every function is an entry from C: it catches panics and turns them into a Python exception.

use std::ffi::{c_int, c_void, CStr};
use std::ptr;
use std::sync::{Arc, OnceLock};

use gearbox_engine::{CommandRequest, Host, LogLevel};
use pyo3_ffi as ffi;

use super::call_edge::{args_slice, entry, maybe_without_gil, raise};
use super::convert;
use super::cpython::utf8_of;
use super::fd_guard;
use super::host_keys;
use super::py_token::{Obj, Py};

pub const MODULE_NAME: &CStr = c"_gearbox";

/// Per-interpreter state of the module.
struct ModState {
    host: Option<Arc<dyn Host>>,
    /// The file descriptors this interpreter's script opened (see `fd_guard`).
    fds: std::sync::Mutex<fd_guard::Owned>,
}

struct Def(*mut ffi::PyModuleDef);
// SAFETY: the definition is built once, never freed, and only handed to CPython, which
// synchronises its own use of it.
unsafe impl Send for Def {}
// SAFETY: as above.
unsafe impl Sync for Def {}

static DEFINITION: OnceLock<Def> = OnceLock::new();

fn method(name: &'static CStr, f: ffi::PyCFunctionFast, doc: &'static CStr) -> ffi::PyMethodDef {
    ffi::PyMethodDef {
        ml_name: name.as_ptr(),
        ml_meth: ffi::PyMethodDefPointer { PyCFunctionFast: f },
        ml_flags: ffi::METH_FASTCALL,
        ml_doc: doc.as_ptr(),
    }
}

fn definition() -> *mut ffi::PyModuleDef {
    DEFINITION
        .get_or_init(|| {
            let methods = vec![
                method(c"call", call, c"call(*args): run a Redis command; errors raise gears.error"),
                method(c"read_keys", host_keys::read_keys, c"read_keys(keys, read_value): KeysReader records"),
                method(c"scan_keys", host_keys::scan_keys, c"scan_keys(scan, pattern, read_value): (next scan or 0, KeysReader records)"),
                method(
                    c"count_keys",
                    host_keys::count_keys,
                    c"count_keys(scan, pattern, read_value): (next scan or 0, how many records scan_keys would give)",
                ),
                method(c"scan_close", host_keys::scan_close, c"scan_close(scan): forget an unfinished key scan"),
                method(c"log", log, c"log(level, message): write to the Redis log"),
                method(c"config_get", config_get, c"config_get(name): a config value as str, or None"),
                method(c"atomic_begin", atomic_begin, c"take the Redis lock for an atomic() block"),
                method(c"atomic_end", atomic_end, c"release the Redis lock of an atomic() block"),
                method(c"register", register, c"register(spec): install a registration; returns its id"),
                method(c"time_event", time_event, c"time_event(seconds, handle, key=None): call a callback every period"),
                method(c"command", command, c"command(op, arg): call_next / get_command / override_reply"),
                method(c"async_allowed", async_allowed, c"async_allowed(): whether an async record may be waited for here"),
                method(c"fd_open", fd_guard::fd_open, c"os.open for scripts: the descriptor is the script's"),
                method(c"fd_pipe", fd_guard::fd_pipe, c"os.pipe for scripts"),
                method(c"fd_dup", fd_guard::fd_dup, c"os.dup of the script's own descriptor"),
                method(c"fd_dup2", fd_guard::fd_dup2, c"os.dup2 between the script's own descriptors"),
                method(c"fd_close", fd_guard::fd_close, c"os.close of the script's own descriptor"),
                method(c"fd_closerange", fd_guard::fd_closerange, c"os.closerange over the script's own descriptors"),
                method(c"fd_read", fd_guard::fd_read, c"os.read of the script's own descriptor"),
                method(c"fd_write", fd_guard::fd_write, c"os.write to the script's own descriptor"),
                method(c"fd_lseek", fd_guard::fd_lseek, c"os.lseek of the script's own descriptor"),
                method(c"fd_ftruncate", fd_guard::fd_ftruncate, c"os.ftruncate of the script's own descriptor"),
                method(c"fd_fsync", fd_guard::fd_fsync, c"os.fsync of the script's own descriptor"),
                method(c"fd_owned", fd_guard::fd_owned, c"fd_owned(fd): whether the script opened fd itself"),
                ffi::PyMethodDef::zeroed(),
            ];
            let slots = vec![
                ffi::PyModuleDef_Slot { slot: ffi::Py_mod_exec, value: module_exec as *mut c_void },
                ffi::PyModuleDef_Slot { slot: ffi::Py_mod_multiple_interpreters, value: ffi::Py_MOD_PER_INTERPRETER_GIL_SUPPORTED },
                ffi::PyModuleDef_Slot::default(),
            ];
            let def = Box::new(ffi::PyModuleDef {
                m_base: ffi::PyModuleDef_HEAD_INIT,
                m_name: MODULE_NAME.as_ptr(),
                m_doc: c"gearbox host functions (internal; use the names gears.py exports)".as_ptr(),
                m_size: std::mem::size_of::<ModState>() as ffi::Py_ssize_t,
                m_methods: Box::leak(methods.into_boxed_slice()).as_mut_ptr(),
                m_slots: Box::leak(slots.into_boxed_slice()).as_mut_ptr(),
                m_traverse: None,
                m_clear: None,
                m_free: Some(module_free),
            });
            Def(Box::leak(def))
        })
        .0
}

/// The init function registered with `PyImport_AppendInittab`.
pub unsafe extern "C" fn init_module() -> *mut ffi::PyObject {
    // SAFETY: the caller's contract (# Safety): multi-phase init: hand CPython the static
    // definition.
    unsafe { ffi::PyModuleDef_Init(definition()) }
}

unsafe extern "C" fn module_exec(module: *mut ffi::PyObject) -> c_int {
    let result = std::panic::catch_unwind(|| {
        // SAFETY: called by CPython with the new module and its interpreter's GIL; the state
        // block is ours (m_size) and uninitialised, so it is written, not assigned.
        unsafe {
            let state = ffi::PyModule_GetState(module) as *mut ModState;
            if state.is_null() {
                return -1;
            }
            ptr::write(state, ModState { host: None, fds: std::sync::Mutex::new(fd_guard::Owned::default()) });
            let ok = add_exception(module, c"error", c"gears.error", ffi::PyExc_Exception)
                && add_exception(module, c"forcestopped", c"gears.forcestopped", ffi::PyExc_BaseException)
                && add_exception(module, c"ScriptTimeout", c"gears.ScriptTimeout", ffi::PyExc_BaseException);
            if ok {
                0
            } else {
                -1
            }
        }
    });
    result.unwrap_or(-1)
}

/// # Safety
/// Attached to the interpreter that owns `module`; `base` is a live exception type.
unsafe fn add_exception(module: *mut ffi::PyObject, attr: &CStr, qualified: &CStr, base: *mut ffi::PyObject) -> bool {
    // SAFETY: the caller's contract (# Safety): attached; the new type is a new reference,
    // AddObjectRef takes its own.
    unsafe {
        let exc = ffi::PyErr_NewException(qualified.as_ptr(), base, ptr::null_mut());
        if exc.is_null() {
            return false;
        }
        let ok = ffi::PyModule_AddObjectRef(module, attr.as_ptr(), exc) == 0;
        ffi::Py_DecRef(exc);
        ok
    }
}

unsafe extern "C" fn module_free(module: *mut c_void) {
    let _ = std::panic::catch_unwind(|| {
        // SAFETY: called once by CPython when the module dies; the state was written by
        // module_exec (if exec failed before writing, the host is absent and the block zeroed,
        // which we detect by the null state pointer of a module that never ran exec).
        unsafe {
            let state = ffi::PyModule_GetState(module as *mut ffi::PyObject) as *mut ModState;
            if !state.is_null() {
                ptr::drop_in_place(state);
            }
        }
    });
}

/// Give the `_gearbox` module of the attached interpreter its session's host.
///
/// # Safety
/// Attached to the interpreter that owns `module`, gearbox's `_gearbox` module.
pub unsafe fn install_host(module: *mut ffi::PyObject, host: Arc<dyn Host>) {
    // SAFETY: the caller's contract (# Safety): attached to the interpreter that owns `module`,
    // which ran module_exec.
    unsafe {
        let state = ffi::PyModule_GetState(module) as *mut ModState;
        if !state.is_null() {
            (*state).host = Some(host);
        }
    }
}

/// What a host function raises without a host: before the session began, or after it ended.
const NO_HOST: &str = "gearbox: this interpreter's session has ended (or not begun): it cannot call Redis";

/// Take the host away (the session ended): from now on every host function raises.
///
/// # Safety
/// Attached to the interpreter that owns `module`, gearbox's `_gearbox` module.
pub unsafe fn retire_host(module: *mut ffi::PyObject) {
    // SAFETY: the caller's contract (# Safety): attached to the interpreter that owns `module`,
    // which ran module_exec.
    unsafe {
        let state = ffi::PyModule_GetState(module) as *mut ModState;
        if !state.is_null() {
            (*state).host = None;
        }
    }
}

/// A borrowed pointer to one of the module's exception types.
///
/// # Safety
/// Attached to the interpreter that owns `module`, gearbox's `_gearbox` module.
pub unsafe fn exception_type(module: *mut ffi::PyObject, attr: &CStr) -> *mut ffi::PyObject {
    // SAFETY: the caller's contract (# Safety): attached. The module keeps its own reference, so
    // dropping ours leaves a pointer valid for the interpreter's life.
    unsafe {
        let exc = ffi::PyObject_GetAttrString(module, attr.as_ptr());
        if !exc.is_null() {
            ffi::Py_DecRef(exc);
        }
        exc
    }
}

/// The owned-descriptor registry of `module`'s interpreter.
///
/// # Safety
/// Attached; `module` is our module, which ran `module_exec`.
pub(super) unsafe fn fds_of<'a>(module: *mut ffi::PyObject) -> &'a std::sync::Mutex<fd_guard::Owned> {
    // SAFETY: the caller's contract (# Safety): the state block was written by module_exec and
    // lives with the module.
    unsafe {
        let state = ffi::PyModule_GetState(module) as *mut ModState;
        &(*state).fds
    }
}

/// # Safety
/// Attached to the interpreter that owns `module`, gearbox's `_gearbox` module (the `self` of one
/// of its functions).
pub(super) unsafe fn host_of(module: *mut ffi::PyObject) -> Option<Arc<dyn Host>> {
    // SAFETY: the caller's contract (# Safety): called from one of our functions, so `module` is
    // our module.
    unsafe {
        let state = ffi::PyModule_GetState(module) as *mut ModState;
        if state.is_null() {
            return None;
        }
        (*state).host.clone()
    }
}

/// # Safety
/// Attached to the interpreter that owns `module`, gearbox's `_gearbox` module.
pub(super) unsafe fn raise_gears_error(module: *mut ffi::PyObject, message: &str) -> *mut ffi::PyObject {
    // SAFETY: the caller's contract (# Safety): attached; `module` is ours.
    unsafe {
        let kind = exception_type(module, c"error");
        raise(if kind.is_null() { ffi::PyExc_RuntimeError } else { kind }, message)
    }
}

unsafe extern "C" fn call(module: *mut ffi::PyObject, args: *mut *mut ffi::PyObject, nargs: ffi::Py_ssize_t) -> *mut ffi::PyObject {
    entry(|| {
        // SAFETY: called by CPython with the GIL of the module's interpreter.
        unsafe {
            let py = Py::assume();
            let args = args_slice(args, nargs);
            if args.is_empty() {
                return ffi::PyList_New(0);
            }
            if ffi::PyUnicode_Check(args[0]) == 0 && ffi::PyBytes_Check(args[0]) == 0 {
                return raise_gears_error(module, "the given command must be a string");
            }
            let Some(host) = host_of(module) else {
                return raise_gears_error(module, NO_HOST);
            };
            // Keep the GIL when the Redis lock is free: releasing and taking it back around
            // every call is avoidable work; only waiting for the lock requires letting go.
            // Vectorcall arguments are never NULL and live for the call.
            let objs = Obj::borrowed_all(py, args);
            let reply = convert::with_call_args(objs, |parts| match host.call_if_free(parts) {
                Some(reply) => reply,
                None => maybe_without_gil(&host, || host.call(parts)),
            });
            let Some(reply) = reply else {
                return ptr::null_mut();
            };
            match reply {
                gearbox_engine::Value::Error(message) => raise_gears_error(module, &message),
                other => convert::reply_to_py(py, &other),
            }
        }
    })
}

unsafe extern "C" fn log(module: *mut ffi::PyObject, args: *mut *mut ffi::PyObject, nargs: ffi::Py_ssize_t) -> *mut ffi::PyObject {
    entry(|| {
        // SAFETY: called by CPython with the GIL of the module's interpreter.
        unsafe {
            let args = args_slice(args, nargs);
            let (Some(level), Some(message)) = (args.first().and_then(|a| utf8_of(*a)), args.get(1).and_then(|a| utf8_of(*a))) else {
                return raise(ffi::PyExc_TypeError, "log(level: str, message: str)");
            };
            let Some(level) = LogLevel::parse(&level) else {
                return raise_gears_error(module, "invalid log level");
            };
            if let Some(host) = host_of(module) {
                host.log(level, &message);
            }
            ffi::Py_NewRef(ffi::Py_None())
        }
    })
}

unsafe extern "C" fn config_get(module: *mut ffi::PyObject, args: *mut *mut ffi::PyObject, nargs: ffi::Py_ssize_t) -> *mut ffi::PyObject {
    entry(|| {
        // SAFETY: called by CPython with the GIL of the module's interpreter.
        unsafe {
            let args = args_slice(args, nargs);
            let Some(name) = args.first().and_then(|a| utf8_of(*a)) else {
                return raise(ffi::PyExc_TypeError, "config name must be a string");
            };
            match host_of(module).and_then(|h| h.config_get(&name)) {
                Some(v) => convert::text_or_bytearray(Py::assume(), v.as_bytes()),
                None => ffi::Py_NewRef(ffi::Py_None()),
            }
        }
    })
}

unsafe extern "C" fn atomic_begin(
    module: *mut ffi::PyObject,
    _args: *mut *mut ffi::PyObject,
    _nargs: ffi::Py_ssize_t,
) -> *mut ffi::PyObject {
    entry(|| {
        // SAFETY: called by CPython with the GIL of the module's interpreter.
        unsafe {
            let Some(host) = host_of(module) else {
                return raise_gears_error(module, NO_HOST);
            };
            match maybe_without_gil(&host, || host.atomic_begin()) {
                Ok(()) => ffi::Py_NewRef(ffi::Py_None()),
                Err(message) => raise_gears_error(module, &message),
            }
        }
    })
}

unsafe extern "C" fn atomic_end(module: *mut ffi::PyObject, _args: *mut *mut ffi::PyObject, _nargs: ffi::Py_ssize_t) -> *mut ffi::PyObject {
    entry(|| {
        // SAFETY: called by CPython with the GIL of the module's interpreter.
        unsafe {
            if let Some(host) = host_of(module) {
                host.atomic_end();
            }
            ffi::Py_NewRef(ffi::Py_None())
        }
    })
}

unsafe extern "C" fn register(module: *mut ffi::PyObject, args: *mut *mut ffi::PyObject, nargs: ffi::Py_ssize_t) -> *mut ffi::PyObject {
    entry(|| {
        // SAFETY: called by CPython with the GIL of the module's interpreter.
        unsafe {
            let args = args_slice(args, nargs);
            if args.len() != 1 || ffi::PyList_Check(args[0]) == 0 {
                return raise(ffi::PyExc_TypeError, "register(spec: list)");
            }
            let Some(spec) = Obj::borrowed(Py::assume(), args[0]).map(convert::result_to_value) else {
                return raise(ffi::PyExc_TypeError, "register(spec: list)");
            };
            let Some(host) = host_of(module) else {
                return raise_gears_error(module, NO_HOST);
            };
            // Inside an execution it installs now, under the Redis lock: not while holding the GIL.
            match maybe_without_gil(&host, || host.register(&spec)) {
                Ok(id) => convert::text_or_bytearray(Py::assume(), id.as_bytes()),
                Err(message) => raise_gears_error(module, &message),
            }
        }
    })
}

unsafe extern "C" fn time_event(module: *mut ffi::PyObject, args: *mut *mut ffi::PyObject, nargs: ffi::Py_ssize_t) -> *mut ffi::PyObject {
    entry(|| {
        // SAFETY: called by CPython with the GIL of the module's interpreter.
        unsafe {
            let args = args_slice(args, nargs);
            let (Some(&seconds), Some(&handle)) = (args.first(), args.get(1)) else {
                return raise(ffi::PyExc_TypeError, "time_event(seconds: int, handle: int)");
            };
            let (seconds, handle) = (ffi::PyLong_AsLongLong(seconds), ffi::PyLong_AsLongLong(handle));
            if !ffi::PyErr_Occurred().is_null() {
                return std::ptr::null_mut();
            }
            let key = match args.get(2) {
                Some(&k) if k != ffi::Py_None() => match Obj::borrowed(Py::assume(), k).and_then(convert::arg_bytes) {
                    Some(b) => Some(b),
                    None => return std::ptr::null_mut(),
                },
                _ => None,
            };
            let Some(host) = host_of(module) else {
                return raise_gears_error(module, NO_HOST);
            };
            match maybe_without_gil(&host, || host.time_event(seconds.max(0) as u64, handle, key)) {
                Ok(created) => ffi::PyBool_FromLong(created as std::ffi::c_long),
                Err(message) => raise_gears_error(module, &message),
            }
        }
    })
}

unsafe extern "C" fn command(module: *mut ffi::PyObject, args: *mut *mut ffi::PyObject, nargs: ffi::Py_ssize_t) -> *mut ffi::PyObject {
    entry(|| {
        // SAFETY: called by CPython with the GIL of the module's interpreter.
        unsafe {
            let args = args_slice(args, nargs);
            let (Some(op), Some(&arg)) = (args.first().and_then(|&o| utf8_of(o)), args.get(1)) else {
                return raise(ffi::PyExc_TypeError, "command(op: str, arg)");
            };
            let py = Py::assume();
            let arg = Obj::borrowed(py, arg).map(convert::result_to_value).unwrap_or(gearbox_engine::Value::Nil);
            let request = match CommandRequest::from_parts(&op, arg) {
                Ok(r) => r,
                Err(message) => return raise_gears_error(module, &message),
            };
            let Some(host) = host_of(module) else {
                return raise_gears_error(module, NO_HOST);
            };
            match maybe_without_gil(&host, || host.command(request)) {
                gearbox_engine::Value::Error(message) => raise_gears_error(module, &message),
                other => convert::reply_to_py(py, &other),
            }
        }
    })
}

unsafe extern "C" fn async_allowed(
    module: *mut ffi::PyObject,
    _args: *mut *mut ffi::PyObject,
    _nargs: ffi::Py_ssize_t,
) -> *mut ffi::PyObject {
    entry(|| {
        // SAFETY: called by CPython with the GIL of the module's interpreter.
        unsafe {
            let allowed = host_of(module).is_some_and(|h| h.may_wait_for_lock());
            ffi::PyBool_FromLong(allowed as std::ffi::c_long)
        }
    })
}
