//! Conversions between the engine's values and Python objects, with RedisGears' rules:
//! replies become `str` (or `bytearray` when not UTF-8), ints, lists and None (spec §2.5);
//! results become RESP by §2.7 (`+`/`-` prefixed strings are status/error, floats `%lf`,
//! anything else `"PY RECORD"`).
//!
//! Every function here must be called attached to the interpreter that owns the objects.

use std::borrow::Cow;
use std::ffi::c_char;
use std::ptr;

use gearbox_engine::{KeyRecord, KeyValue, Value};
use pyo3_ffi as ffi;

use super::cpython::utf8_of;

/// A new `str` from UTF-8 bytes, or a `bytearray` when they are not UTF-8. New reference.
pub unsafe fn text_or_bytearray(bytes: &[u8]) -> *mut ffi::PyObject {
    // SAFETY (caller): attached. Both constructors copy the bytes.
    match std::str::from_utf8(bytes) {
        Ok(s) => ffi::PyUnicode_FromStringAndSize(s.as_ptr() as *const c_char, s.len() as ffi::Py_ssize_t),
        Err(_) => ffi::PyByteArray_FromStringAndSize(bytes.as_ptr() as *const c_char, bytes.len() as ffi::Py_ssize_t),
    }
}

unsafe fn text(s: &str) -> *mut ffi::PyObject {
    // SAFETY (caller): attached.
    ffi::PyUnicode_FromStringAndSize(s.as_ptr() as *const c_char, s.len() as ffi::Py_ssize_t)
}

/// A Redis reply as a Python object (new reference; NULL with an exception set on failure).
/// A top-level error is not handled here: the caller raises it.
pub unsafe fn reply_to_py(value: &Value) -> *mut ffi::PyObject {
    // SAFETY (caller): attached. Each branch returns a new reference or NULL.
    match value {
        Value::Nil => ffi::Py_NewRef(ffi::Py_None()),
        Value::Int(n) => ffi::PyLong_FromLongLong(*n),
        Value::Double(d) => ffi::PyFloat_FromDouble(*d),
        Value::Bulk(b) => text_or_bytearray(b),
        Value::Status(s) | Value::Error(s) => text(s),
        Value::Array(items) => {
            let list = ffi::PyList_New(items.len() as ffi::Py_ssize_t);
            if list.is_null() {
                return list;
            }
            for (i, item) in items.iter().enumerate() {
                let obj = reply_to_py(item);
                if obj.is_null() {
                    ffi::Py_DecRef(list);
                    return ptr::null_mut();
                }
                // SetItem steals `obj`.
                ffi::PyList_SetItem(list, i as ffi::Py_ssize_t, obj);
            }
            list
        }
    }
}

/// One `execute()` argument without copying when it is immutable: `bytes` and `str` (its
/// UTF-8 form, cached by CPython) are borrowed for as long as `obj` lives; anything else is
/// copied (a bytearray could change while the GIL is released) by `arg_bytes`' rules.
pub unsafe fn arg_view<'a>(obj: *mut ffi::PyObject) -> Option<Cow<'a, [u8]>> {
    // SAFETY (caller): attached; `obj` is a live borrowed reference that outlives 'a.
    if ffi::PyBytes_CheckExact(obj) != 0 {
        let data = ffi::PyBytes_AsString(obj) as *const u8;
        return Some(Cow::Borrowed(std::slice::from_raw_parts(data, ffi::PyBytes_Size(obj) as usize)));
    }
    if ffi::PyUnicode_CheckExact(obj) != 0 {
        let mut len: ffi::Py_ssize_t = 0;
        let data = ffi::PyUnicode_AsUTF8AndSize(obj, &mut len);
        if data.is_null() {
            return None; // e.g. lone surrogates: the exception stays set for the caller
        }
        return Some(Cow::Borrowed(std::slice::from_raw_parts(data as *const u8, len as usize)));
    }
    arg_bytes(obj).map(Cow::Owned)
}

/// Run `f` with `execute()` arguments as byte slices (`arg_view`'s rules), kept on the stack
/// for the usual few: no allocation per call. None (a Python exception set) if one argument
/// cannot be converted.
pub unsafe fn with_call_args<R>(objs: &[*mut ffi::PyObject], f: impl FnOnce(&[&[u8]]) -> R) -> Option<R> {
    const SMALL: usize = 8;
    // SAFETY (caller): attached; `objs` are live borrowed references for the whole call.
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
pub unsafe fn arg_bytes(obj: *mut ffi::PyObject) -> Option<Vec<u8>> {
    // SAFETY (caller): attached; `obj` is a live borrowed reference.
    if ffi::PyBytes_Check(obj) != 0 {
        let data = ffi::PyBytes_AsString(obj) as *const u8;
        let len = ffi::PyBytes_Size(obj) as usize;
        return Some(std::slice::from_raw_parts(data, len).to_vec());
    }
    if ffi::PyByteArray_Check(obj) != 0 {
        let data = ffi::PyByteArray_AsString(obj) as *const u8;
        let len = ffi::PyByteArray_Size(obj) as usize;
        return Some(std::slice::from_raw_parts(data, len).to_vec());
    }
    if ffi::PyUnicode_Check(obj) != 0 {
        let mut len: ffi::Py_ssize_t = 0;
        let data = ffi::PyUnicode_AsUTF8AndSize(obj, &mut len);
        if data.is_null() {
            return None; // e.g. lone surrogates: the exception stays set for the caller
        }
        return Some(std::slice::from_raw_parts(data as *const u8, len as usize).to_vec());
    }
    let s = ffi::PyObject_Str(obj);
    if s.is_null() {
        return None;
    }
    let out = arg_bytes(s);
    ffi::Py_DecRef(s);
    out
}

/// A result record as RESP, by RedisGears' rules (§2.7).
pub unsafe fn result_to_value(obj: *mut ffi::PyObject) -> Value {
    // SAFETY (caller): attached; `obj` is a live borrowed reference.
    if ffi::PyUnicode_Check(obj) != 0 {
        let s = utf8_of(obj).unwrap_or_default();
        if s.len() > 1 && s.starts_with('+') {
            return Value::Status(s[1..].to_string());
        }
        if s.len() > 1 && s.starts_with('-') {
            return Value::Error(s[1..].to_string());
        }
        return Value::Bulk(s.into_bytes());
    }
    if ffi::PyLong_Check(obj) != 0 {
        let mut overflow = 0;
        let n = ffi::PyLong_AsLongLongAndOverflow(obj, &mut overflow);
        if overflow == 0 && (n != -1 || ffi::PyErr_Occurred().is_null()) {
            return Value::Int(n);
        }
        ffi::PyErr_Clear();
        let s = ffi::PyObject_Str(obj);
        let v = Value::Bulk(utf8_of(s).unwrap_or_default().into_bytes());
        ffi::Py_DecRef(s);
        return v;
    }
    if ffi::PyFloat_Check(obj) != 0 {
        return Value::Double(ffi::PyFloat_AsDouble(obj));
    }
    if ffi::PyBytes_Check(obj) != 0 || ffi::PyByteArray_Check(obj) != 0 {
        return Value::Bulk(arg_bytes(obj).unwrap_or_default());
    }
    if ffi::PyList_Check(obj) != 0 {
        let n = ffi::PyList_Size(obj);
        let mut items = Vec::with_capacity(n.max(0) as usize);
        for i in 0..n {
            items.push(result_to_value(ffi::PyList_GetItem(obj, i)));
        }
        return Value::Array(items);
    }
    Value::bulk("PY RECORD")
}

/// A list of results (borrowed `list`) as values.
pub unsafe fn result_list(list: *mut ffi::PyObject) -> Vec<Value> {
    // SAFETY (caller): attached; `list` is a live list.
    if list.is_null() || ffi::PyList_Check(list) == 0 {
        return Vec::new();
    }
    (0..ffi::PyList_Size(list)).map(|i| result_to_value(ffi::PyList_GetItem(list, i))).collect()
}

/// A list of error texts (borrowed `list`); non-str items are rendered with `str()`.
pub unsafe fn error_list(list: *mut ffi::PyObject) -> Vec<String> {
    // SAFETY (caller): attached; `list` is a live list.
    if list.is_null() || ffi::PyList_Check(list) == 0 {
        return Vec::new();
    }
    (0..ffi::PyList_Size(list))
        .map(|i| {
            let item = ffi::PyList_GetItem(list, i);
            let s = ffi::PyObject_Str(item);
            let text = utf8_of(s).unwrap_or_default();
            ffi::Py_DecRef(s);
            text
        })
        .collect()
}

unsafe fn key_value_to_py(value: &KeyValue) -> *mut ffi::PyObject {
    // SAFETY (caller): attached. Returns a new reference or NULL.
    match value {
        KeyValue::None => ffi::Py_NewRef(ffi::Py_None()),
        KeyValue::String(b) => text_or_bytearray(b),
        KeyValue::List(items) => reply_to_py(&Value::Array(items.iter().map(|b| Value::Bulk(b.clone())).collect())),
        KeyValue::Hash(pairs) => {
            let dict = ffi::PyDict_New();
            for (field, val) in pairs {
                let (f, v) = (text_or_bytearray(field), text_or_bytearray(val));
                let ok = !f.is_null() && !v.is_null() && ffi::PyDict_SetItem(dict, f, v) == 0;
                ffi::Py_DecRef(f);
                ffi::Py_DecRef(v);
                if !ok {
                    ffi::Py_DecRef(dict);
                    return ptr::null_mut();
                }
            }
            dict
        }
    }
}

/// KeysReader records as a list of `{'key', 'event', 'type', 'value'}` dicts, or only `key`
/// and `event` when values were not read (RedisGears drops `type` and `value` then). The field
/// names and type names are made once per batch, not once per record.
pub unsafe fn key_records_to_py(records: &[KeyRecord], read_value: bool) -> *mut ffi::PyObject {
    // SAFETY (caller): attached. Returns a new reference or NULL with an exception set.
    let Some(mut names) = RecordNames::new(read_value) else { return ptr::null_mut() };
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

/// The strings every record of a batch shares (new references, released on drop).
struct RecordNames {
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

impl RecordNames {
    unsafe fn new(read_value: bool) -> Option<RecordNames> {
        // SAFETY (caller): attached. A NULL among the fields is released by Drop (Py_DecRef
        // accepts NULL).
        let names = RecordNames {
            key: text("key"),
            event: text("event"),
            key_type: text("type"),
            value: text("value"),
            template: ffi::PyDict_New(),
            read_value,
            type_names: Vec::new(),
        };
        let fields = if read_value { &[names.key, names.event, names.key_type, names.value][..] } else { &[names.key, names.event][..] };
        let made =
            !names.template.is_null() && fields.iter().all(|f| !f.is_null() && put(names.template, *f, ffi::Py_NewRef(ffi::Py_None())));
        if !made {
            return None;
        }
        Some(names)
    }

    unsafe fn type_name(&mut self, name: &'static str) -> *mut ffi::PyObject {
        // SAFETY (caller): attached. Returns a new reference or NULL.
        if let Some((_, obj)) = self.type_names.iter().find(|(n, _)| *n == name) {
            return ffi::Py_NewRef(*obj);
        }
        let obj = text(name);
        if !obj.is_null() {
            self.type_names.push((name, ffi::Py_NewRef(obj)));
        }
        obj
    }

    unsafe fn record(&mut self, record: &KeyRecord) -> *mut ffi::PyObject {
        // SAFETY (caller): attached. Returns a new reference or NULL with an exception set.
        let dict = ffi::PyDict_Copy(self.template);
        if dict.is_null() {
            return dict;
        }
        let mut ok = put(dict, self.key, text_or_bytearray(&record.key));
        if self.read_value {
            let type_name = self.type_name(record.key_type);
            ok = ok && put(dict, self.key_type, type_name) && put(dict, self.value, key_value_to_py(&record.value));
        }
        if !ok {
            ffi::Py_DecRef(dict);
            return ptr::null_mut();
        }
        dict
    }
}

impl Drop for RecordNames {
    fn drop(&mut self) {
        // SAFETY: dropped by the attached thread that made them (inside `key_records_to_py`).
        unsafe {
            let fields = [self.key, self.event, self.key_type, self.value, self.template];
            for obj in fields.into_iter().chain(self.type_names.iter().map(|t| t.1)) {
                ffi::Py_DecRef(obj);
            }
        }
    }
}

/// `dict[name] = value`, consuming the new reference `value`.
unsafe fn put(dict: *mut ffi::PyObject, name: *mut ffi::PyObject, value: *mut ffi::PyObject) -> bool {
    // SAFETY (caller): attached; `name` is borrowed, `value` is a new reference or NULL.
    if value.is_null() {
        return false;
    }
    let ok = ffi::PyDict_SetItem(dict, name, value) == 0;
    ffi::Py_DecRef(value);
    ok
}

/// A list of non-negative ints (borrowed `list`); anything else counts as 0.
pub unsafe fn u64_list(list: *mut ffi::PyObject) -> Vec<u64> {
    // SAFETY (caller): attached; `list` is a live list.
    if list.is_null() || ffi::PyList_Check(list) == 0 {
        return Vec::new();
    }
    (0..ffi::PyList_Size(list))
        .map(|i| {
            let n = ffi::PyLong_AsUnsignedLongLong(ffi::PyList_GetItem(list, i));
            if !ffi::PyErr_Occurred().is_null() {
                ffi::PyErr_Clear();
                return 0;
            }
            n
        })
        .collect()
}
