//! Conversions between the engine's values and Python objects, with RedisGears' rules:
//! replies become `str` (or `bytearray` when not UTF-8), ints, lists and None (spec §2.5);
//! results become RESP by §2.7 (`+`/`-` prefixed strings are status/error, floats `%lf`,
//! anything else `"PY RECORD"`).
//!
//! Every function takes the proof that the thread is attached ([`Py`]) and objects as borrowed
//! references ([`Obj`]), so they are safe to call. What they make is returned as a new reference
//! (a raw pointer the caller owns) or NULL with a Python exception set.

use std::borrow::Cow;
use std::ffi::c_char;
use std::ptr;

use gearbox_engine::{KeyRecord, KeyValue, Value};
use pyo3_ffi as ffi;

use super::cpython::utf8_of;
use super::py_token::{Obj, Py};

/// A new `str` from UTF-8 bytes, or a `bytearray` when they are not UTF-8. New reference.
pub fn text_or_bytearray(_py: Py<'_>, bytes: &[u8]) -> *mut ffi::PyObject {
    // SAFETY: attached (`_py`). Both constructors copy the bytes.
    unsafe {
        match std::str::from_utf8(bytes) {
            Ok(s) => ffi::PyUnicode_FromStringAndSize(s.as_ptr() as *const c_char, s.len() as ffi::Py_ssize_t),
            Err(_) => ffi::PyByteArray_FromStringAndSize(bytes.as_ptr() as *const c_char, bytes.len() as ffi::Py_ssize_t),
        }
    }
}

fn text(_py: Py<'_>, s: &str) -> *mut ffi::PyObject {
    // SAFETY: attached (`_py`); the constructor copies the bytes.
    unsafe { ffi::PyUnicode_FromStringAndSize(s.as_ptr() as *const c_char, s.len() as ffi::Py_ssize_t) }
}

/// `str(obj)`'s text, or None (exception cleared) when it fails.
fn str_of(obj: Obj<'_>) -> Option<String> {
    // SAFETY: attached (`obj.py()`); `obj` is live; the new reference from PyObject_Str is
    // released after its text is copied (utf8_of accepts NULL).
    unsafe {
        let s = ffi::PyObject_Str(obj.as_ptr());
        if s.is_null() {
            ffi::PyErr_Clear();
        }
        let text = utf8_of(s);
        ffi::Py_DecRef(s);
        text
    }
}

/// A Redis reply as a Python object (new reference; NULL with an exception set on failure).
/// A top-level error is not handled here: the caller raises it.
pub fn reply_to_py(py: Py<'_>, value: &Value) -> *mut ffi::PyObject {
    // SAFETY: attached (`py`). Each branch returns a new reference or NULL; PyList_SetItem
    // steals the item it is given, into a slot of a list made here.
    unsafe {
        match value {
            Value::Nil => ffi::Py_NewRef(ffi::Py_None()),
            Value::Int(n) => ffi::PyLong_FromLongLong(*n),
            Value::Double(d) => ffi::PyFloat_FromDouble(*d),
            Value::Bulk(b) => text_or_bytearray(py, b),
            Value::Status(s) | Value::Error(s) => text(py, s),
            Value::Array(items) => {
                let list = ffi::PyList_New(items.len() as ffi::Py_ssize_t);
                if list.is_null() {
                    return list;
                }
                for (i, item) in items.iter().enumerate() {
                    let obj = reply_to_py(py, item);
                    if obj.is_null() {
                        ffi::Py_DecRef(list);
                        return ptr::null_mut();
                    }
                    ffi::PyList_SetItem(list, i as ffi::Py_ssize_t, obj);
                }
                list
            }
        }
    }
}

/// One `execute()` argument without copying when it is immutable: `bytes` and `str` (its
/// UTF-8 form, cached by CPython) are borrowed for as long as `obj` lives; anything else is
/// copied (a bytearray could change while the GIL is released) by `arg_bytes`' rules.
pub fn arg_view<'py>(obj: Obj<'py>) -> Option<Cow<'py, [u8]>> {
    let o = obj.as_ptr();
    // SAFETY: attached; `obj` is live for 'py, and so are the buffers of an exact bytes object
    // (immutable) and of a str's cached UTF-8 form, which the borrowed slices point into.
    unsafe {
        if ffi::PyBytes_CheckExact(o) != 0 {
            let data = ffi::PyBytes_AsString(o) as *const u8;
            return Some(Cow::Borrowed(std::slice::from_raw_parts(data, ffi::PyBytes_Size(o) as usize)));
        }
        if ffi::PyUnicode_CheckExact(o) != 0 {
            let mut len: ffi::Py_ssize_t = 0;
            let data = ffi::PyUnicode_AsUTF8AndSize(o, &mut len);
            if data.is_null() {
                return None; // e.g. lone surrogates: the exception stays set for the caller
            }
            return Some(Cow::Borrowed(std::slice::from_raw_parts(data as *const u8, len as usize)));
        }
    }
    arg_bytes(obj).map(Cow::Owned)
}

/// Run `f` with `execute()` arguments as byte slices (`arg_view`'s rules), kept on the stack
/// for the usual few: no allocation per call. None (a Python exception set) if one argument
/// cannot be converted.
pub fn with_call_args<R>(objs: &[Obj<'_>], f: impl FnOnce(&[&[u8]]) -> R) -> Option<R> {
    const SMALL: usize = 8;
    if objs.len() > SMALL {
        let views: Vec<Cow<[u8]>> = objs.iter().map(|&o| arg_view(o)).collect::<Option<_>>()?;
        let parts: Vec<&[u8]> = views.iter().map(|v| &v[..]).collect();
        return Some(f(&parts));
    }
    let mut views: [Cow<[u8]>; SMALL] = std::array::from_fn(|_| Cow::Borrowed(&[][..]));
    for (slot, &o) in views.iter_mut().zip(objs) {
        *slot = arg_view(o)?;
    }
    let mut parts: [&[u8]; SMALL] = [&[]; SMALL];
    for (p, v) in parts.iter_mut().zip(&views) {
        *p = v;
    }
    Some(f(&parts[..objs.len()]))
}

/// One `execute()` argument: bytes-like objects raw, `str` as UTF-8, anything else `str(x)`.
/// None with a Python exception set when it cannot be converted.
pub fn arg_bytes(obj: Obj<'_>) -> Option<Vec<u8>> {
    let o = obj.as_ptr();
    // SAFETY: attached; `obj` is live; every buffer is copied before anything else runs.
    unsafe {
        if ffi::PyBytes_Check(o) != 0 {
            let data = ffi::PyBytes_AsString(o) as *const u8;
            return Some(std::slice::from_raw_parts(data, ffi::PyBytes_Size(o) as usize).to_vec());
        }
        if ffi::PyByteArray_Check(o) != 0 {
            let data = ffi::PyByteArray_AsString(o) as *const u8;
            return Some(std::slice::from_raw_parts(data, ffi::PyByteArray_Size(o) as usize).to_vec());
        }
        if ffi::PyUnicode_Check(o) != 0 {
            let mut len: ffi::Py_ssize_t = 0;
            let data = ffi::PyUnicode_AsUTF8AndSize(o, &mut len);
            if data.is_null() {
                return None; // e.g. lone surrogates: the exception stays set for the caller
            }
            return Some(std::slice::from_raw_parts(data as *const u8, len as usize).to_vec());
        }
        let s = ffi::PyObject_Str(o);
        let out = Obj::borrowed(obj.py(), s).and_then(arg_bytes);
        ffi::Py_DecRef(s);
        out
    }
}

/// A result record as RESP, by RedisGears' rules (§2.7).
pub fn result_to_value(obj: Obj<'_>) -> Value {
    let o = obj.as_ptr();
    // SAFETY: attached; `obj` is live; each check only reads it.
    unsafe {
        if ffi::PyUnicode_Check(o) != 0 {
            let s = utf8_of(o).unwrap_or_default();
            if s.len() > 1 && s.starts_with('+') {
                return Value::Status(s[1..].to_string());
            }
            if s.len() > 1 && s.starts_with('-') {
                return Value::Error(s[1..].to_string());
            }
            return Value::Bulk(s.into_bytes());
        }
        if ffi::PyLong_Check(o) != 0 {
            let mut overflow = 0;
            let n = ffi::PyLong_AsLongLongAndOverflow(o, &mut overflow);
            if overflow == 0 && (n != -1 || ffi::PyErr_Occurred().is_null()) {
                return Value::Int(n);
            }
            ffi::PyErr_Clear();
            return Value::Bulk(str_of(obj).unwrap_or_default().into_bytes());
        }
        if ffi::PyFloat_Check(o) != 0 {
            return Value::Double(ffi::PyFloat_AsDouble(o));
        }
        if ffi::PyBytes_Check(o) != 0 || ffi::PyByteArray_Check(o) != 0 {
            return Value::Bulk(arg_bytes(obj).unwrap_or_default());
        }
        if ffi::PyList_Check(o) != 0 {
            return Value::Array(obj.list_items().map(result_to_value).collect());
        }
    }
    Value::bulk("PY RECORD")
}

/// A list of results as values (empty when `list` is missing or not a list).
pub fn result_list(list: Option<Obj<'_>>) -> Vec<Value> {
    list.map(|l| l.list_items().map(result_to_value).collect()).unwrap_or_default()
}

/// A list of error texts; non-str items are rendered with `str()`.
pub fn error_list(list: Option<Obj<'_>>) -> Vec<String> {
    list.map(|l| l.list_items().map(|item| str_of(item).unwrap_or_default()).collect()).unwrap_or_default()
}

/// A list of non-negative ints; anything else counts as 0.
pub fn u64_list(list: Option<Obj<'_>>) -> Vec<u64> {
    let as_u64 = |item: Obj<'_>| {
        // SAFETY: attached; `item` is live; a conversion error is cleared here.
        unsafe {
            let n = ffi::PyLong_AsUnsignedLongLong(item.as_ptr());
            if !ffi::PyErr_Occurred().is_null() {
                ffi::PyErr_Clear();
                return 0;
            }
            n
        }
    };
    list.map(|l| l.list_items().map(as_u64).collect()).unwrap_or_default()
}

fn key_value_to_py(py: Py<'_>, value: &KeyValue) -> *mut ffi::PyObject {
    match value {
        // SAFETY: attached; a new reference to None.
        KeyValue::None => unsafe { ffi::Py_NewRef(ffi::Py_None()) },
        KeyValue::String(b) => text_or_bytearray(py, b),
        KeyValue::List(items) => reply_to_py(py, &Value::Array(items.iter().map(|b| Value::Bulk(b.clone())).collect())),
        // SAFETY: attached; the dict is made here, its items are new references released after
        // PyDict_SetItem took its own (Py_DecRef accepts NULL).
        KeyValue::Hash(pairs) => unsafe {
            let dict = ffi::PyDict_New();
            if dict.is_null() {
                return dict;
            }
            for (field, val) in pairs {
                let (f, v) = (text_or_bytearray(py, field), text_or_bytearray(py, val));
                let ok = !f.is_null() && !v.is_null() && ffi::PyDict_SetItem(dict, f, v) == 0;
                ffi::Py_DecRef(f);
                ffi::Py_DecRef(v);
                if !ok {
                    ffi::Py_DecRef(dict);
                    return ptr::null_mut();
                }
            }
            dict
        },
    }
}

/// KeysReader records as a list of `{'key', 'event', 'type', 'value'}` dicts, or only `key`
/// and `event` when values were not read (RedisGears drops `type` and `value` then). The field
/// names and type names are made once per batch, not once per record. New reference or NULL
/// with an exception set.
pub fn key_records_to_py(py: Py<'_>, records: &[KeyRecord], read_value: bool) -> *mut ffi::PyObject {
    let Some(mut names) = RecordNames::new(py, read_value) else { return ptr::null_mut() };
    // SAFETY: attached; the list is made here and each slot is filled once with a new
    // reference PyList_SetItem steals.
    unsafe {
        let list = ffi::PyList_New(records.len() as ffi::Py_ssize_t);
        if list.is_null() {
            return list;
        }
        for (i, record) in records.iter().enumerate() {
            let dict = names.record(record);
            if dict.is_null() {
                ffi::Py_DecRef(list);
                return ptr::null_mut();
            }
            ffi::PyList_SetItem(list, i as ffi::Py_ssize_t, dict);
        }
        list
    }
}

/// The strings every record of a batch shares (new references, released on drop).
struct RecordNames<'py> {
    py: Py<'py>,
    key: *mut ffi::PyObject,
    event: *mut ffi::PyObject,
    key_type: *mut ffi::PyObject,
    value: *mut ffi::PyObject,
    /// A record with every field None: copying it (one memcpy of its key table) is cheaper than
    /// building each record's dict key by key.
    template: *mut ffi::PyObject,
    /// Whether records carry `type` and `value`.
    read_value: bool,
    type_names: Vec<(&'static str, *mut ffi::PyObject)>,
}

impl<'py> RecordNames<'py> {
    fn new(py: Py<'py>, read_value: bool) -> Option<RecordNames<'py>> {
        // SAFETY: attached (`py`). A NULL among the fields is released by Drop (Py_DecRef
        // accepts NULL).
        let template = unsafe { ffi::PyDict_New() };
        let names = RecordNames {
            py,
            key: text(py, "key"),
            event: text(py, "event"),
            key_type: text(py, "type"),
            value: text(py, "value"),
            template,
            read_value,
            type_names: Vec::new(),
        };
        let fields = if read_value { &[names.key, names.event, names.key_type, names.value][..] } else { &[names.key, names.event][..] };
        // SAFETY: attached; the template and the field names are live objects made above; each
        // field gets a new reference to None, consumed by `put`.
        let made = !names.template.is_null()
            && fields.iter().all(|f| !f.is_null() && unsafe { put(py, names.template, *f, ffi::Py_NewRef(ffi::Py_None())) });
        if !made {
            return None;
        }
        Some(names)
    }

    /// A new reference to the str `name` (made once per batch), or NULL.
    fn type_name(&mut self, name: &'static str) -> *mut ffi::PyObject {
        if let Some((_, obj)) = self.type_names.iter().find(|(n, _)| *n == name) {
            // SAFETY: attached; `obj` is a live reference this struct holds.
            return unsafe { ffi::Py_NewRef(*obj) };
        }
        let obj = text(self.py, name);
        if !obj.is_null() {
            // SAFETY: attached; one more reference, kept in `type_names` and released on drop.
            self.type_names.push((name, unsafe { ffi::Py_NewRef(obj) }));
        }
        obj
    }

    /// One record's dict (a new reference), or NULL with an exception set.
    fn record(&mut self, record: &KeyRecord) -> *mut ffi::PyObject {
        let py = self.py;
        // SAFETY: attached; the template is a live dict this struct holds.
        let dict = unsafe { ffi::PyDict_Copy(self.template) };
        if dict.is_null() {
            return dict;
        }
        // SAFETY: attached; `dict` was just made and the field names live as long as `self`.
        let mut ok = unsafe { put(py, dict, self.key, text_or_bytearray(py, &record.key)) };
        if self.read_value {
            let type_name = self.type_name(record.key_type);
            // SAFETY: as above.
            ok = ok && unsafe { put(py, dict, self.key_type, type_name) && put(py, dict, self.value, key_value_to_py(py, &record.value)) };
        }
        if !ok {
            // SAFETY: attached; the copy made above is ours.
            unsafe { ffi::Py_DecRef(dict) };
            return ptr::null_mut();
        }
        dict
    }
}

impl Drop for RecordNames<'_> {
    fn drop(&mut self) {
        // SAFETY: attached (the `Py` this struct holds); the references are the ones it made.
        unsafe {
            let fields = [self.key, self.event, self.key_type, self.value, self.template];
            for obj in fields.into_iter().chain(self.type_names.iter().map(|t| t.1)) {
                ffi::Py_DecRef(obj);
            }
        }
    }
}

/// `dict[name] = value`, consuming the new reference `value` (NULL: false).
///
/// # Safety
/// `dict` is a live dict and `name` a live object of the interpreter `_py` is attached to.
unsafe fn put(_py: Py<'_>, dict: *mut ffi::PyObject, name: *mut ffi::PyObject, value: *mut ffi::PyObject) -> bool {
    if value.is_null() {
        return false;
    }
    // SAFETY: attached (`_py`); `dict` and `name` are live (the caller's contract); `value` is a
    // new reference, released after PyDict_SetItem took its own.
    unsafe {
        let ok = ffi::PyDict_SetItem(dict, name, value) == 0;
        ffi::Py_DecRef(value);
        ok
    }
}
