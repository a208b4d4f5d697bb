//! The binary framing between the host and its wasm guest (`wasm-python/guest.py` is the other
//! half). A frame is `b"GB"`, a version byte, a kind byte, a little-endian u32 payload length,
//! then one value: `N` nil, `i` i64, `d` f64, `b` bytes, `s` status, `e` error, `a` array — the
//! engine's [`Value`] one to one, so bulk data is never escaped or parsed as text.
//!
//! Everything here is plain data: frames from the guest are untrusted (a script can write to the
//! channel), so decoding checks every length, caps sizes and nesting, and never panics.

use gearbox_engine::{KeyRecord, KeyValue, Value};

pub const VERSION: u8 = 1;
pub const HEADER: usize = 8;
/// Largest payload accepted from the guest (a result set of an execution fits in this).
pub const MAX_PAYLOAD: usize = 512 << 20;

/// Frame kinds. Host → guest commands and replies; guest → host requests and answers.
pub mod kind {
    pub const BOOTSTRAP: u8 = b'B';
    pub const RUN_SCRIPT: u8 = b'S';
    pub const RUN_PLAN: u8 = b'P';
    pub const DROP_PLAN: u8 = b'D';
    pub const REPLY: u8 = b'r';
    pub const RESULT: u8 = b'R';
    pub const CALL: u8 = b'C';
    pub const READ_KEYS: u8 = b'K';
    pub const LOG: u8 = b'L';
    pub const CONFIG_GET: u8 = b'G';
    pub const ATOMIC_BEGIN: u8 = b'A';
    pub const ATOMIC_END: u8 = b'Z';
}

/// One encoded frame.
pub fn frame(kind: u8, value: &Value) -> Vec<u8> {
    let mut payload = Vec::new();
    encode(&mut payload, value);
    let mut out = Vec::with_capacity(HEADER + payload.len());
    out.extend_from_slice(b"GB");
    out.push(VERSION);
    out.push(kind);
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&payload);
    out
}

pub use gearbox_engine::codec::{bytes_of, decode, encode, text_of};

/// KeysReader records as one value: `[[key, type, kind, payload], ...]`, kind 0 none, 1 string,
/// 2 hash (payload a flat field/value array), 3 list.
pub fn key_records(records: &[KeyRecord]) -> Value {
    Value::Array(
        records
            .iter()
            .map(|r| {
                let (kind, payload) = match &r.value {
                    KeyValue::None => (0, Value::Nil),
                    KeyValue::String(b) => (1, Value::Bulk(b.clone())),
                    KeyValue::Hash(pairs) => (
                        2,
                        Value::Array(pairs.iter().flat_map(|(f, v)| [Value::Bulk(f.clone()), Value::Bulk(v.clone())]).collect()),
                    ),
                    KeyValue::List(items) => (3, Value::Array(items.iter().map(|b| Value::Bulk(b.clone())).collect())),
                };
                Value::Array(vec![Value::Bulk(r.key.clone()), Value::Status(r.key_type.to_string()), Value::Int(kind), payload])
            })
            .collect(),
    )
}

/// Parse a frame header: `Ok(Some((kind, payload_len)))`, `Ok(None)` if more bytes are needed.
pub fn header(buf: &[u8]) -> Result<Option<(u8, usize)>, String> {
    if buf.len() < HEADER {
        return Ok(None);
    }
    if &buf[0..2] != b"GB" || buf[2] != VERSION {
        return Err("bad frame header".into());
    }
    let len = u32::from_le_bytes([buf[4], buf[5], buf[6], buf[7]]) as usize;
    if len > MAX_PAYLOAD {
        return Err(format!("frame of {len} bytes is over the {MAX_PAYLOAD} byte cap"));
    }
    Ok(Some((buf[3], len)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_round_trip_binary_safe() {
        let v = Value::Array(vec![
            Value::Nil,
            Value::Int(-5),
            Value::Double(1.5),
            Value::Bulk(vec![0, 255, b'\n']),
            Value::Status("OK".into()),
            Value::Error("ERR x".into()),
            Value::Array(vec![]),
        ]);
        let f = frame(kind::REPLY, &v);
        let (k, n) = header(&f).unwrap().unwrap();
        assert_eq!((k, n), (kind::REPLY, f.len() - HEADER));
        assert_eq!(decode(&f[HEADER..]).unwrap(), v);
    }

    #[test]
    fn malformed_payloads_are_refused_not_panicked_on() {
        for bad in [&b""[..], b"x", b"b\xff\xff\xff\xff", b"a\xff\xff\xff\x7f", b"i\x01", b"NN"] {
            assert!(decode(bad).is_err(), "{bad:?}");
        }
        assert!(header(b"XX\x01R\0\0\0\0").is_err());
        assert!(header(b"GB\x01R\xff\xff\xff\xff").is_err());
        let deep: Vec<u8> = std::iter::repeat_n(*b"a\x01\0\0\0", 100).flatten().chain([b'N']).collect();
        assert!(decode(&deep).is_err());
    }
}
