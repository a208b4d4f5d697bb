//! Host → guest payloads in CPython's `marshal` format, so the guest turns a frame into Python
//! objects with one `marshal.loads` (C code) instead of a Python-level decoder: inside wasm that
//! decoder cost ~20 µs per KeysReader record. Only the host writes this format; frames from the
//! guest stay in the engine codec (`wire::decode`), whose decoder is written for untrusted input.
//!
//! Written: the version-2 subset every CPython reads (no references, no short forms). Engine
//! values map to `None`, `int`, `float`, `bytes` (bulk), `str` (status) and a 1-tuple holding a
//! `str` (error); KeysReader records are written as the dicts a script gets.

use gearbox_engine::{KeyRecord, KeyValue, Value};

/// An engine value as a marshal payload.
pub fn value(v: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    write_value(&mut out, v);
    out
}

/// A batch of KeysReader records: `[next_scan, has_binary, [record, ...]]`, each record the dict
/// RedisGears gives (`key`, `event`, and with values `type`, `value`). Strings that are not UTF-8
/// are written as bytes and `has_binary` is True: the guest then turns them into bytearrays, as
/// native mode gives them.
pub fn key_records(next_scan: u64, records: &[KeyRecord], read_value: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(64 + records.len() * 48);
    let mut binary = false;
    list_header(&mut out, 3);
    write_int(&mut out, next_scan as i64);
    let flag_at = out.len();
    out.push(b'F');
    list_header(&mut out, records.len());
    for r in records {
        out.push(b'{');
        write_str(&mut out, "key");
        binary |= write_text_or_bytes(&mut out, &r.key);
        write_str(&mut out, "event");
        out.push(b'N');
        if read_value {
            write_str(&mut out, "type");
            write_str(&mut out, r.key_type);
            write_str(&mut out, "value");
            binary |= write_key_value(&mut out, &r.value);
        }
        out.push(b'0');
    }
    if binary {
        out[flag_at] = b'T';
    }
    out
}

fn write_key_value(out: &mut Vec<u8>, value: &KeyValue) -> bool {
    match value {
        KeyValue::None => {
            out.push(b'N');
            false
        }
        KeyValue::String(b) => write_text_or_bytes(out, b),
        KeyValue::List(items) => {
            list_header(out, items.len());
            items.iter().fold(false, |binary, i| write_text_or_bytes(out, i) | binary)
        }
        KeyValue::Hash(pairs) => {
            out.push(b'{');
            let binary = pairs.iter().fold(false, |binary, (f, v)| write_text_or_bytes(out, f) | write_text_or_bytes(out, v) | binary);
            out.push(b'0');
            binary
        }
    }
}

fn write_value(out: &mut Vec<u8>, v: &Value) {
    match v {
        Value::Nil => out.push(b'N'),
        Value::Int(n) => write_int(out, *n),
        Value::Double(d) => {
            out.push(b'g');
            out.extend_from_slice(&d.to_le_bytes());
        }
        Value::Bulk(b) => write_sized(out, b's', b),
        Value::Status(s) => write_str(out, s),
        Value::Error(s) => {
            out.push(b'(');
            out.extend_from_slice(&1i32.to_le_bytes());
            write_str(out, s);
        }
        Value::Array(items) => {
            list_header(out, items.len());
            for i in items {
                write_value(out, i);
            }
        }
    }
}

/// `str` if the bytes are UTF-8, else `bytes`; true when it had to be bytes.
fn write_text_or_bytes(out: &mut Vec<u8>, b: &[u8]) -> bool {
    let text = std::str::from_utf8(b).is_ok();
    write_sized(out, if text { b'u' } else { b's' }, b);
    !text
}

fn write_str(out: &mut Vec<u8>, s: &str) {
    write_sized(out, b'u', s.as_bytes());
}

fn write_sized(out: &mut Vec<u8>, code: u8, data: &[u8]) {
    out.push(code);
    out.extend_from_slice(&(data.len() as u32).to_le_bytes());
    out.extend_from_slice(data);
}

fn list_header(out: &mut Vec<u8>, n: usize) {
    out.push(b'[');
    out.extend_from_slice(&(n as u32).to_le_bytes());
}

/// `i` (32-bit) when it fits, else `l`: a signed count of 15-bit digits, least significant first.
fn write_int(out: &mut Vec<u8>, n: i64) {
    if let Ok(small) = i32::try_from(n) {
        out.push(b'i');
        out.extend_from_slice(&small.to_le_bytes());
        return;
    }
    let mut magnitude = n.unsigned_abs();
    let mut digits = Vec::new();
    while magnitude > 0 {
        digits.push((magnitude & 0x7fff) as u16);
        magnitude >>= 15;
    }
    let count = digits.len() as i32;
    out.push(b'l');
    out.extend_from_slice(&(if n < 0 { -count } else { count }).to_le_bytes());
    for d in digits {
        out.extend_from_slice(&d.to_le_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ints_small_and_large() {
        assert_eq!(value(&Value::Int(-2)), b"i\xfe\xff\xff\xff");
        // 2**31 = 2 * 2**30: digits 0, 0, 2 (15 bits each).
        assert_eq!(value(&Value::Int(1 << 31)), b"l\x03\0\0\0\0\0\0\0\x02\0");
        assert_eq!(value(&Value::Int(-(1 << 31) - 1)), b"l\xfd\xff\xff\xff\x01\0\0\0\x02\0");
        let min = value(&Value::Int(i64::MIN));
        assert_eq!(&min[..5], b"l\xfb\xff\xff\xff", "2**63 takes 5 digits");
    }

    #[test]
    fn bulk_status_error_and_arrays() {
        let v = Value::Array(vec![Value::bulk("ab"), Value::Status("OK".into()), Value::Error("ERR x".into()), Value::Nil]);
        let mut expected = b"[\x04\0\0\0s\x02\0\0\0abu\x02\0\0\0OK(\x01\0\0\0u\x05\0\0\0ERR x".to_vec();
        expected.push(b'N');
        assert_eq!(value(&v), expected);
    }

    #[test]
    fn records_are_dicts_and_flag_binary() {
        let text = KeyRecord { key: b"k".to_vec(), key_type: "string", value: KeyValue::String(b"v".to_vec()) };
        let out = key_records(7, &[text.clone()], true);
        assert_eq!(&out[..11], b"[\x03\0\0\0i\x07\0\0\0F");
        assert_eq!(out.last(), Some(&b'0'), "a dict ends with TYPE_NULL");
        let binary = KeyRecord { key: b"k".to_vec(), key_type: "string", value: KeyValue::String(vec![0xff]) };
        assert_eq!(key_records(0, &[text, binary], true)[10], b'T');
    }
}
