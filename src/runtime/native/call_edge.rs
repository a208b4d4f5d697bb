//! What every function of the `_gearbox` module does at its edge with CPython: catch panics
//! ([`entry`]), raise exceptions ([`raise`]), see its arguments ([`args_slice`]) and let go of the
//! GIL around a wait for the Redis lock ([`maybe_without_gil`]). The module itself is defined in
//! `hostmodule.rs`; its functions live there and in `host_keys.rs` and `fd_guard.rs`.

use std::ffi::c_char;
use std::ptr;
use std::sync::Arc;

use gearbox_engine::Host;
use pyo3_ffi as ffi;

use super::cpython;

/// Set `kind(message)` as the current exception; returns NULL for the function to return.
///
/// # Safety
/// Attached; `kind` is a live exception type.
pub unsafe fn raise(kind: *mut ffi::PyObject, message: &str) -> *mut ffi::PyObject {
    // SAFETY: attached and `kind` live (the caller's contract); the message is copied by
    // PyUnicode_FromStringAndSize, whose new reference is released once the exception holds it.
    unsafe {
        let text = ffi::PyUnicode_FromStringAndSize(message.as_ptr() as *const c_char, message.len() as ffi::Py_ssize_t);
        if !text.is_null() {
            ffi::PyErr_SetObject(kind, text);
            ffi::Py_DecRef(text);
        }
    }
    ptr::null_mut()
}

/// Run `f` as an entry from C: a panic becomes a RuntimeError, never an unwind into CPython.
pub fn entry(f: impl FnOnce() -> *mut ffi::PyObject) -> *mut ffi::PyObject {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
        Ok(obj) => obj,
        // SAFETY: `entry` wraps the body of a function CPython calls, so the thread is attached.
        Err(_) => unsafe { raise(ffi::PyExc_RuntimeError, "gearbox: internal error (panic) in a host function") },
    }
}

/// Run `f` without this interpreter's GIL when the host may wait for the Redis lock.
///
/// # Safety
/// Attached (inside a call from CPython); `f` makes no Python call, since it may run without the
/// GIL.
pub unsafe fn maybe_without_gil<T>(host: &Arc<dyn Host>, f: impl FnOnce() -> T) -> T {
    if host.may_wait_for_lock() {
        // SAFETY: attached (the caller's contract); `f` makes no Python call.
        unsafe { cpython::without_gil(f) }
    } else {
        f()
    }
}

/// A vectorcall's arguments as a slice (empty when there are none).
///
/// # Safety
/// `args` points to `nargs` live borrowed references (a vectorcall's arguments) that outlive `'a`.
pub unsafe fn args_slice<'a>(args: *const *mut ffi::PyObject, nargs: ffi::Py_ssize_t) -> &'a [*mut ffi::PyObject] {
    if nargs <= 0 || args.is_null() {
        return &[];
    }
    // SAFETY: the caller's contract: `nargs` live references at `args`, outliving 'a.
    unsafe { std::slice::from_raw_parts(args, nargs as usize) }
}
