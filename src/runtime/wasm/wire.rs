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
const MAX_DEPTH: usize = 64;

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

fn put_bytes(out: &mut Vec<u8>, tag: u8, data: &[u8]) {
    out.push(tag);
    out.extend_from_slice(&(data.len() as u32).to_le_bytes());
    out.extend_from_slice(data);
}

pub fn encode(out: &mut Vec<u8>, value: &Value) {
    match value {
        Value::Nil => out.push(b'N'),
        Value::Int(n) => {
            out.push(b'i');
            out.extend_from_slice(&n.to_le_bytes());
        }
        Value::Double(d) => {
            out.push(b'd');
            out.extend_from_slice(&d.to_le_bytes());
        }
        Value::Bulk(b) => put_bytes(out, b'b', b),
        Value::Status(s) => put_bytes(out, b's', s.as_bytes()),
        Value::Error(s) => put_bytes(out, b'e', s.as_bytes()),
        Value::Array(items) => {
            out.push(b'a');
            out.extend_from_slice(&(items.len() as u32).to_le_bytes());
            for item in items {
                encode(out, item);
            }
        }
    }
}

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

/// Decode one whole payload (exactly one value, nothing after it).
pub fn decode(payload: &[u8]) -> Result<Value, String> {
    let mut pos = 0;
    let v = value(payload, &mut pos, 0)?;
    if pos != payload.len() {
        return Err("trailing bytes after a value".into());
    }
    Ok(v)
}

fn take<'a>(data: &'a [u8], pos: &mut usize, n: usize) -> Result<&'a [u8], String> {
    let end = pos.checked_add(n).filter(|&e| e <= data.len()).ok_or("truncated value")?;
    let s = &data[*pos..end];
    *pos = end;
    Ok(s)
}

fn u32_at(data: &[u8], pos: &mut usize) -> Result<usize, String> {
    let b = take(data, pos, 4)?;
    Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize)
}

fn value(data: &[u8], pos: &mut usize, depth: usize) -> Result<Value, String> {
    if depth > MAX_DEPTH {
        return Err("value nested too deeply".into());
    }
    let tag = take(data, pos, 1)?[0];
    Ok(match tag {
        b'N' => Value::Nil,
        b'i' => Value::Int(i64::from_le_bytes(take(data, pos, 8)?.try_into().map_err(|_| "truncated")?)),
        b'd' => Value::Double(f64::from_le_bytes(take(data, pos, 8)?.try_into().map_err(|_| "truncated")?)),
        b'b' | b's' | b'e' => {
            let n = u32_at(data, pos)?;
            let raw = take(data, pos, n)?;
            match tag {
                b'b' => Value::Bulk(raw.to_vec()),
                b's' => Value::Status(String::from_utf8_lossy(raw).into_owned()),
                _ => Value::Error(String::from_utf8_lossy(raw).into_owned()),
            }
        }
        b'a' => {
            let n = u32_at(data, pos)?;
            // Every item takes at least one byte: refuse counts the payload cannot hold.
            if n > data.len() - *pos {
                return Err("array count over the payload size".into());
            }
            let mut items = Vec::with_capacity(n);
            for _ in 0..n {
                items.push(value(data, pos, depth + 1)?);
            }
            Value::Array(items)
        }
        other => return Err(format!("unknown value tag {other}")),
    })
}

/// Bytes of a bulk (or status) value; `None` for anything else.
pub fn bytes_of(v: &Value) -> Option<&[u8]> {
    match v {
        Value::Bulk(b) => Some(b),
        Value::Status(s) | Value::Error(s) => Some(s.as_bytes()),
        _ => None,
    }
}

/// Text of a bulk or status value (lossy).
pub fn text_of(v: &Value) -> String {
    bytes_of(v).map(|b| String::from_utf8_lossy(b).into_owned()).unwrap_or_default()
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
