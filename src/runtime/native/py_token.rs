//! Contracts of the CPython API the compiler checks: [`Py`] proves that this thread is attached
//! to an interpreter (holds its GIL) and [`Obj`] is a borrowed reference to a live object of that
//! interpreter. A function that takes them needs no "call it attached" comment and can be safe;
//! the one unsafe step is making them, at the edges: an [`Attached`] guard, a callback CPython
//! makes into gearbox's module ([`Py::assume`]), a pointer CPython handed over
//! ([`Obj::borrowed`]).

use std::marker::PhantomData;
use std::ptr::NonNull;

use pyo3_ffi as ffi;

use super::cpython::Attached;

/// Proof that this thread is attached to an interpreter for `'py`. Not `Send`.
#[derive(Clone, Copy)]
pub struct Py<'py> {
    _attached_for: PhantomData<&'py Attached>,
    _this_thread_only: PhantomData<*const ()>,
}

impl Attached {
    /// The proof, for as long as this guard lives.
    pub fn py(&self) -> Py<'_> {
        Py { _attached_for: PhantomData, _this_thread_only: PhantomData }
    }
}

impl<'py> Py<'py> {
    /// The proof inside a call CPython makes while this thread is attached (a function of the
    /// `_gearbox` module).
    ///
    /// # Safety
    /// Whenever the proof is used during `'py`, the calling thread is attached to the same
    /// interpreter: the caller lets it live no longer than the call it is in, and a stretch
    /// without the GIL inside it (`maybe_without_gil`) makes no Python call. Objects borrowed
    /// with it stay alive through such a stretch (their owners keep references).
    pub unsafe fn assume() -> Py<'py> {
        Py { _attached_for: PhantomData, _this_thread_only: PhantomData }
    }
}

/// A borrowed reference to a live object of the interpreter `Py<'py>` is attached to. Laid out
/// as a non-NULL object pointer, so a vectorcall's arguments are seen as `&[Obj]` without a copy.
#[derive(Clone, Copy)]
#[repr(transparent)]
pub struct Obj<'py> {
    ptr: NonNull<ffi::PyObject>,
    _py: PhantomData<Py<'py>>,
}

impl<'py> Obj<'py> {
    /// `ptr` as a borrowed reference; None when it is NULL.
    ///
    /// # Safety
    /// A non-NULL `ptr` is an object of the interpreter `py` is attached to, kept alive (by a
    /// reference someone holds) for all of `'py`.
    pub unsafe fn borrowed(_py: Py<'py>, ptr: *mut ffi::PyObject) -> Option<Obj<'py>> {
        NonNull::new(ptr).map(|ptr| Obj { ptr, _py: PhantomData })
    }

    /// A vectorcall's arguments as borrowed references, in place (no allocation per call).
    ///
    /// # Safety
    /// Every pointer is a non-NULL object of the interpreter `py` is attached to, kept alive for
    /// all of `'py` (CPython's arguments to a call, for the call).
    pub unsafe fn borrowed_all<'a>(_py: Py<'py>, ptrs: &'a [*mut ffi::PyObject]) -> &'a [Obj<'py>] {
        // SAFETY: `Obj` is `repr(transparent)` over `NonNull<PyObject>` (its other fields are
        // zero-sized), which has the layout of `*mut PyObject`; no pointer is NULL (the caller's
        // contract), so each one is a valid `Obj`.
        unsafe { std::slice::from_raw_parts(ptrs.as_ptr() as *const Obj<'py>, ptrs.len()) }
    }

    pub fn as_ptr(self) -> *mut ffi::PyObject {
        self.ptr.as_ptr()
    }

    pub fn py(self) -> Py<'py> {
        Py { _attached_for: PhantomData, _this_thread_only: PhantomData }
    }

    /// Item `i` of this list (borrowed; the list keeps it alive while the list is not changed,
    /// which nothing here does); None when this is not a list or `i` is out of range.
    pub fn list_item(self, i: usize) -> Option<Obj<'py>> {
        self.item(i, ffi::PyList_Check, ffi::PyList_GetItem)
    }

    /// The items of this list (borrowed); empty when this is not a list.
    pub fn list_items(self) -> impl Iterator<Item = Obj<'py>> {
        // SAFETY: attached; `self` is live; PyList_Check and PyList_Size only read it.
        let len = unsafe {
            if ffi::PyList_Check(self.as_ptr()) == 0 {
                0
            } else {
                ffi::PyList_Size(self.as_ptr()).max(0) as usize
            }
        };
        (0..len).filter_map(move |i| self.list_item(i))
    }

    /// Item `i` of this tuple (borrowed; the tuple is immutable and keeps it alive); None when
    /// this is not a tuple or `i` is out of range.
    pub fn tuple_item(self, i: usize) -> Option<Obj<'py>> {
        self.item(i, ffi::PyTuple_Check, ffi::PyTuple_GetItem)
    }

    /// Item `i` through CPython's `check` and `get_item` of one container type.
    fn item(
        self,
        i: usize,
        check: unsafe fn(*mut ffi::PyObject) -> std::ffi::c_int,
        get_item: unsafe extern "C" fn(*mut ffi::PyObject, ffi::Py_ssize_t) -> *mut ffi::PyObject,
    ) -> Option<Obj<'py>> {
        // SAFETY: attached (`Py<'py>`); `self` is live; `get_item` is only called on an object
        // `check` accepted, and returns a borrowed reference the container keeps alive, or NULL
        // with IndexError set (cleared here).
        unsafe {
            if check(self.as_ptr()) == 0 {
                return None;
            }
            let item = get_item(self.as_ptr(), i as ffi::Py_ssize_t);
            if item.is_null() {
                ffi::PyErr_Clear();
            }
            Obj::borrowed(self.py(), item)
        }
    }
}
