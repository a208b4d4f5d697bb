//! A compact, binary-safe encoding of [`Value`]: the payload format of the wasm channel and of
//! persisted sessions (RDB aux data, replicated `RG.INNERREGISTER`).
//!
//! Tags: `N` nil, `i` i64, `d` f64, `b` bytes, `s` status, `e` error, `a` array; lengths and
//! numbers little-endian. Decoding is for untrusted input (a wasm guest may forge frames, an RDB
//! may be damaged): every length is checked, nesting is capped and nothing panics.

use crate::value::Value;

const MAX_DEPTH: usize = 64;

fn put_bytes(out: &mut Vec<u8>, tag: u8, data: &[u8]) {
    out.push(tag);
    out.extend_from_slice(&(data.len() as u32).to_le_bytes());
    out.extend_from_slice(data);
}

/// Append the encoding of `value` to `out`.
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

/// The encoding of `value` as a new buffer.
pub fn to_bytes(value: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    encode(&mut out, value);
    out
}

/// Decode exactly one value (nothing may follow it).
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

fn eight(data: &[u8], pos: &mut usize) -> Result<[u8; 8], String> {
    take(data, pos, 8)?.try_into().map_err(|_| "truncated value".to_string())
}

fn value(data: &[u8], pos: &mut usize, depth: usize) -> Result<Value, String> {
    if depth > MAX_DEPTH {
        return Err("value nested too deeply".into());
    }
    let tag = take(data, pos, 1)?[0];
    Ok(match tag {
        b'N' => Value::Nil,
        b'i' => Value::Int(i64::from_le_bytes(eight(data, pos)?)),
        b'd' => Value::Double(f64::from_le_bytes(eight(data, pos)?)),
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

/// Bytes of a bulk (or status/error) value; `None` for anything else.
pub fn bytes_of(v: &Value) -> Option<&[u8]> {
    match v {
        Value::Bulk(b) => Some(b),
        Value::Status(s) | Value::Error(s) => Some(s.as_bytes()),
        _ => None,
    }
}

/// Text of a bulk or status value (lossy); empty for anything else.
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
        assert_eq!(decode(&to_bytes(&v)).unwrap(), v);
    }

    #[test]
    fn malformed_payloads_are_refused_not_panicked_on() {
        for bad in [&b""[..], b"x", b"b\xff\xff\xff\xff", b"a\xff\xff\xff\x7f", b"i\x01", b"NN"] {
            assert!(decode(bad).is_err(), "{bad:?}");
        }
        let deep: Vec<u8> = std::iter::repeat_n(*b"a\x01\0\0\0", 100).flatten().chain([b'N']).collect();
        assert!(decode(&deep).is_err());
    }
}
