//! The `_gearbox` functions through which the KeysReader reads keys (`read_keys`) and walks
//! the keyspace (`scan_keys`, `count_keys`, `scan_close`): host calls that return records in
//! batches. Part of the module defined in `hostmodule.rs`.

use std::ptr;
use std::sync::Arc;

use gearbox_engine::Host;
use pyo3_ffi as ffi;

use super::call_edge::{args_slice, entry, maybe_without_gil, raise};
use super::convert;
use super::hostmodule::{host_of, raise_gears_error};
use super::py_token::{Obj, Py};

pub(super) unsafe extern "C" fn read_keys(
    module: *mut ffi::PyObject,
    args: *mut *mut ffi::PyObject,
    nargs: ffi::Py_ssize_t,
) -> *mut ffi::PyObject {
    entry(|| {
        // SAFETY: called by CPython with the GIL of the module's interpreter; the arguments are
        // live for the call.
        unsafe {
            let py = Py::assume();
            let args = args_slice(args, nargs);
            if args.len() != 2 || ffi::PyList_Check(args[0]) == 0 {
                return raise(ffi::PyExc_TypeError, "read_keys(keys: list, read_value: bool)");
            }
            let read_value = ffi::PyObject_IsTrue(args[1]) == 1;
            let keys: Option<Vec<Vec<u8>>> =
                Obj::borrowed(py, args[0]).and_then(|list| list.list_items().map(convert::arg_bytes).collect());
            let Some(keys) = keys else { return ptr::null_mut() };
            let Some(host) = host_of(module) else {
                return raise_gears_error(module, "gearbox: this interpreter has no host");
            };
            let records = maybe_without_gil(&host, || host.read_keys(&keys, read_value));
            convert::key_records_to_py(py, &records, read_value)
        }
    })
}

pub(super) unsafe extern "C" fn scan_keys(
    module: *mut ffi::PyObject,
    args: *mut *mut ffi::PyObject,
    nargs: ffi::Py_ssize_t,
) -> *mut ffi::PyObject {
    entry(|| {
        // SAFETY: called by CPython with the GIL of the module's interpreter.
        unsafe {
            walk_call(module, args_slice(args, nargs), "scan_keys", |host, scan, pattern, read_value| {
                let (next, records) = match maybe_without_gil(host, || host.scan_keys(scan, pattern, read_value)) {
                    Ok(batch) => batch,
                    Err(message) => return raise_gears_error(module, &message),
                };
                let list = convert::key_records_to_py(Py::assume(), &records, read_value);
                if list.is_null() {
                    host.scan_close(next);
                    return list;
                }
                next_and(next, list)
            })
        }
    })
}

pub(super) unsafe extern "C" fn count_keys(
    module: *mut ffi::PyObject,
    args: *mut *mut ffi::PyObject,
    nargs: ffi::Py_ssize_t,
) -> *mut ffi::PyObject {
    entry(|| {
        // SAFETY: called by CPython with the GIL of the module's interpreter.
        unsafe {
            walk_call(module, args_slice(args, nargs), "count_keys", |host, scan, pattern, read_value| {
                match maybe_without_gil(host, || host.count_keys(scan, pattern, read_value)) {
                    Ok((next, n)) => next_and(next, ffi::PyLong_FromUnsignedLongLong(n)),
                    Err(message) => raise_gears_error(module, &message),
                }
            })
        }
    })
}

/// A key-walk host call (`scan_keys` / `count_keys`): `(scan, pattern, read_value)` parsed (a
/// TypeError otherwise) and the host found, then `f`.
///
/// # Safety
/// Attached to the interpreter that owns `module` (gearbox's `_gearbox` module); `args` are live
/// borrowed references.
unsafe fn walk_call(
    module: *mut ffi::PyObject,
    args: &[*mut ffi::PyObject],
    name: &str,
    f: impl FnOnce(&Arc<dyn Host>, u64, &[u8], bool) -> *mut ffi::PyObject,
) -> *mut ffi::PyObject {
    // SAFETY: the caller's contract (# Safety): attached; `args` are live borrowed references.
    unsafe {
        let scan = args.first().map(|a| ffi::PyLong_AsUnsignedLongLong(*a));
        let pattern = args.get(1).and_then(|a| Obj::borrowed(Py::assume(), *a)).and_then(convert::arg_bytes);
        let (3, Some(scan), Some(pattern), true) = (args.len(), scan, pattern, ffi::PyErr_Occurred().is_null()) else {
            ffi::PyErr_Clear();
            return raise(ffi::PyExc_TypeError, &format!("{name}(scan: int, pattern: str, read_value: bool)"));
        };
        let read_value = ffi::PyObject_IsTrue(args[2]) == 1;
        let Some(host) = host_of(module) else {
            return raise_gears_error(module, "gearbox: this interpreter has no host");
        };
        f(&host, scan, &pattern, read_value)
    }
}

/// The tuple `(next, obj)` (a walk's next id and its batch); takes over `obj`, which may be
/// NULL with an exception set (then NULL).
///
/// # Safety
/// Attached; `obj` is a new reference (taken over) or NULL.
unsafe fn next_and(next: u64, obj: *mut ffi::PyObject) -> *mut ffi::PyObject {
    // SAFETY: the caller's contract (# Safety): attached; `obj` is a new reference or NULL.
    unsafe {
        if obj.is_null() {
            return obj;
        }
        let next = ffi::PyLong_FromUnsignedLongLong(next);
        let pair = if next.is_null() { ptr::null_mut() } else { ffi::PyTuple_Pack(2, next, obj) };
        ffi::Py_DecRef(next);
        ffi::Py_DecRef(obj);
        pair
    }
}

pub(super) unsafe extern "C" fn scan_close(
    module: *mut ffi::PyObject,
    args: *mut *mut ffi::PyObject,
    nargs: ffi::Py_ssize_t,
) -> *mut ffi::PyObject {
    entry(|| {
        // SAFETY: called by CPython with the GIL of the module's interpreter.
        unsafe {
            let args = args_slice(args, nargs);
            let scan = args.first().map(|a| ffi::PyLong_AsUnsignedLongLong(*a));
            if let (Some(scan), Some(host)) = (scan, host_of(module)) {
                if ffi::PyErr_Occurred().is_null() {
                    host.scan_close(scan);
                }
            }
            ffi::PyErr_Clear();
            ffi::Py_NewRef(ffi::Py_None())
        }
    })
}
