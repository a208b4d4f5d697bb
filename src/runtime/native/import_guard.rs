//! The native-mode guard on `_imp`: a script must not build a second, unguarded copy of a module
//! the guards patched (`_imp.create_builtin` of a spec for `posix`, `time`, `_signal` …) or load a
//! refused extension behind the import system's back (`_imp.create_dynamic` of `_ctypes`). Neither
//! raises the `import` audit event the guards' hook refuses those names on.
//!
//! Both functions are replaced by builtins (C functions, so no `__defaults__` or closure leads
//! back) whose `__self__` is a capsule holding the original: Python cannot open a capsule
//! without ctypes, which is refused.

use std::ffi::{c_char, c_void, CStr};
use std::sync::OnceLock;

use pyo3_ffi as ffi;

/// Modules whose one copy the guards patched (or that carry the host): never created again.
const PATCHED: &[&str] = &["posix", "_signal", "_io", "_imp", "time", "_thread", "_gearbox"];
/// Modules a script may not import at all: the one list, handed to guards.py's audit hook as
/// `_gearbox.refused_imports` and checked here for `_imp`'s back doors.
pub const REFUSED: &[&str] = &[
    "ctypes",
    "_ctypes",
    "_interpreters",
    "_interpqueues",
    "_interpchannels",
    "_xxsubinterpreters",
    "_xxinterpchannels",
    "_xxinterpqueues",
    "_posixsubprocess",
    "_testcapi",
    "_testinternalcapi",
    "_testsinglephase",
    "_testmultiphase",
    "_testimportmultiple",
    "posix",
    "_signal",
    "_io",
    "faulthandler",
    "_tracemalloc",
    "readline",
];

const CAPSULE: &CStr = c"gearbox.imp_original";

struct Defs([ffi::PyMethodDef; 2]);
// SAFETY: the definitions are built once, never freed, and only read by CPython.
unsafe impl Send for Defs {}
// SAFETY: as above.
unsafe impl Sync for Defs {}

static DEFS: OnceLock<Defs> = OnceLock::new();

fn defs() -> &'static [ffi::PyMethodDef; 2] {
    &DEFS
        .get_or_init(|| {
            let def = |name: &'static CStr| ffi::PyMethodDef {
                ml_name: name.as_ptr(),
                ml_meth: ffi::PyMethodDefPointer { PyCFunction: guarded },
                ml_flags: ffi::METH_O,
                ml_doc: c"gearbox: _imp's function, refusing the modules the native-mode guards protect".as_ptr(),
            };
            Defs([def(c"create_builtin"), def(c"create_dynamic")])
        })
        .0
}

/// Replace `_imp.create_builtin` and `_imp.create_dynamic`. Called attached, at bootstrap, after
/// the guards; Err: the interpreter must not be used.
///
/// # Safety
/// The calling thread must be attached to the interpreter being prepared.
pub unsafe fn install() -> Result<(), String> {
    // SAFETY: by the caller's contract, attached. Every new reference is released or handed over
    // (the capsule owns the original; the module attribute owns the replacement).
    unsafe {
        let imp = ffi::PyImport_ImportModule(c"_imp".as_ptr());
        if imp.is_null() {
            ffi::PyErr_Clear();
            return Err("gearbox: could not guard _imp".into());
        }
        let mut ok = true;
        for def in defs() {
            let original = ffi::PyObject_GetAttrString(imp, def.ml_name);
            let capsule = if original.is_null() {
                std::ptr::null_mut()
            } else {
                ffi::PyCapsule_New(original.cast(), CAPSULE.as_ptr(), Some(drop_original))
            };
            let replacement = if capsule.is_null() {
                std::ptr::null_mut()
            } else {
                ffi::PyCFunction_NewEx(def as *const _ as *mut _, capsule, std::ptr::null_mut())
            };
            ok &= !replacement.is_null() && ffi::PyObject_SetAttrString(imp, def.ml_name, replacement) == 0;
            if capsule.is_null() && !original.is_null() {
                ffi::Py_DecRef(original);
            }
            ffi::Py_DecRef(capsule);
            ffi::Py_DecRef(replacement);
        }
        ffi::Py_DecRef(imp);
        if !ok {
            ffi::PyErr_Clear();
            return Err("gearbox: could not guard _imp".into());
        }
        Ok(())
    }
}

unsafe extern "C" fn drop_original(capsule: *mut ffi::PyObject) {
    // SAFETY: CPython calls this with the capsule's GIL held when the capsule dies; it owns one
    // reference to the original function.
    unsafe { ffi::Py_DecRef(ffi::PyCapsule_GetPointer(capsule, CAPSULE.as_ptr()).cast()) };
}

unsafe extern "C" fn guarded(capsule: *mut ffi::PyObject, spec: *mut ffi::PyObject) -> *mut ffi::PyObject {
    let result = std::panic::catch_unwind(|| {
        // SAFETY: called by CPython, attached, with our capsule as `self` and one argument.
        unsafe {
            let name_obj = ffi::PyObject_GetAttrString(spec, c"name".as_ptr());
            if name_obj.is_null() {
                return std::ptr::null_mut();
            }
            let name = super::cpython::utf8_of(name_obj).unwrap_or_default();
            ffi::Py_DecRef(name_obj);
            if PATCHED.contains(&name.as_str()) || REFUSED.contains(&name.as_str()) || name.starts_with("_ctypes") {
                let text = format!("gearbox: module '{name}' may not be created again or loaded by a script (native-mode guard)\0");
                ffi::PyErr_SetString(ffi::PyExc_ImportError, text.as_ptr() as *const c_char);
                return std::ptr::null_mut();
            }
            let original: *mut c_void = ffi::PyCapsule_GetPointer(capsule, CAPSULE.as_ptr());
            if original.is_null() {
                return std::ptr::null_mut();
            }
            ffi::PyObject_CallOneArg(original.cast(), spec)
        }
    });
    result.unwrap_or(std::ptr::null_mut())
}
