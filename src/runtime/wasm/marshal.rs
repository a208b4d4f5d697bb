//! Values between host and guest in CPython's `marshal` format, so the guest turns a frame into
//! Python objects with one `marshal.loads` (C code) and a value into bytes with one
//! `marshal.dumps(v, 2)`, instead of a Python-level codec: inside the wasm guest (a CPython built
//! with -O0) that codec cost ~20 µs per KeysReader record and ~36 µs to encode a trigger's answer.
//!
//! The version-2 subset (no references, no short forms). Engine values map to `None`, `int`,
//! `float`, `bytes` (bulk), `str` (status) and a 1-tuple holding a `str` (error); KeysReader
//! records are written as the dicts a script gets. Frames from the guest are untrusted (a script
//! can write to the channel): `decode` checks every length, caps nesting and never panics;
//! anything outside the subset is refused.

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

const MAX_DEPTH: usize = 64;

/// A guest's value (marshal version 2 subset) as an engine value.
pub fn decode(payload: &[u8]) -> Result<Value, String> {
    let mut reader = Reader { data: payload, pos: 0 };
    let v = reader.value(0)?;
    if reader.pos != payload.len() {
        return Err("trailing bytes after a value".into());
    }
    Ok(v)
}

struct Reader<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.data.len()).ok_or("truncated value")?;
        let out = &self.data[self.pos..end];
        self.pos = end;
        Ok(out)
    }

    fn i32(&mut self) -> Result<i32, String> {
        let b = self.take(4)?;
        Ok(i32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    /// A count or length: never negative, never more than the bytes left (each item or byte
    /// takes at least one), so a forged count cannot make us allocate.
    fn count(&mut self) -> Result<usize, String> {
        let n = self.i32()?;
        let n = usize::try_from(n).map_err(|_| "negative length")?;
        if n > self.data.len() - self.pos {
            return Err("length over the payload size".into());
        }
        Ok(n)
    }

    fn value(&mut self, depth: usize) -> Result<Value, String> {
        if depth > MAX_DEPTH {
            return Err("value nested too deeply".into());
        }
        let code = self.take(1)?[0];
        Ok(match code {
            b'N' => Value::Nil,
            b'T' => Value::Int(1),
            b'F' => Value::Int(0),
            b'i' => Value::Int(self.i32()? as i64),
            b'l' => Value::Int(self.long()?),
            b'g' => {
                let b = self.take(8)?;
                Value::Double(f64::from_le_bytes(b.try_into().map_err(|_| "truncated float")?))
            }
            b's' => {
                let n = self.count()?;
                Value::Bulk(self.take(n)?.to_vec())
            }
            b'u' | b't' => {
                let n = self.count()?;
                Value::Status(String::from_utf8_lossy(self.take(n)?).into_owned())
            }
            b'(' => match (self.count()?, self.value(depth + 1)?) {
                (1, Value::Status(text)) => Value::Error(text),
                _ => return Err("only a 1-tuple holding a str (an error) is accepted".into()),
            },
            b'[' => {
                let n = self.count()?;
                let mut items = Vec::with_capacity(n);
                for _ in 0..n {
                    items.push(self.value(depth + 1)?);
                }
                Value::Array(items)
            }
            other => return Err(format!("unsupported marshal code {other}")),
        })
    }

    /// `l`: a signed count of 15-bit digits; only values that fit an i64.
    fn long(&mut self) -> Result<i64, String> {
        let n = self.i32()?;
        let digits = n.unsigned_abs() as usize;
        if digits > 5 {
            return Err("integer out of the 64-bit range".into());
        }
        let mut magnitude: u128 = 0;
        for i in 0..digits {
            let b = self.take(2)?;
            let d = u16::from_le_bytes([b[0], b[1]]);
            if d > 0x7fff {
                return Err("bad integer digit".into());
            }
            magnitude |= (d as u128) << (15 * i);
        }
        let signed = if n < 0 { -(magnitude as i128) } else { magnitude as i128 };
        i64::try_from(signed).map_err(|_| "integer out of the 64-bit range".to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decode_reads_what_value_writes() {
        let v = Value::Array(vec![
            Value::bulk("a\0b"),
            Value::Status("OK".into()),
            Value::Error("ERR x".into()),
            Value::Nil,
            Value::Int(-7),
            Value::Int(i64::MIN),
            Value::Int(i64::MAX),
            Value::Int(1 << 40),
            Value::Double(1.5),
            Value::Array(vec![]),
        ]);
        assert_eq!(decode(&value(&v)).unwrap(), v);
    }

    #[test]
    fn decode_reads_python_marshal_dumps() {
        // marshal.dumps([b'x', 'é', True, -(2**40), ('e',), None], 2) on CPython 3.11
        let py = b"[\x06\x00\x00\x00s\x01\x00\x00\x00xu\x02\x00\x00\x00\xc3\xa9Tl\xfd\xff\xff\xff\x00\x00\x00\x00\x00\x04(\x01\x00\x00\x00u\x01\x00\x00\x00eN";
        let expected = Value::Array(vec![
            Value::bulk("x"),
            Value::Status("é".into()),
            Value::Int(1),
            Value::Int(-(1 << 40)),
            Value::Error("e".into()),
            Value::Nil,
        ]);
        assert_eq!(decode(py).unwrap(), expected);
    }

    #[test]
    fn decode_refuses_what_is_outside_the_subset() {
        for bad in [
            &b"["[..],                                    // truncated
            b"[\xff\xff\xff\x7f",                         // count over the payload
            b"s\xff\xff\xff\xff",                         // negative length
            b"{0",                                        // dict
            b"r\x00\x00\x00\x00",                         // reference
            b"(\x02\x00\x00\x00NN",                       // a tuple that is not an error
            b"l\x06\x00\x00\x00\0\0\0\0\0\0\0\0\0\0\0\0", // over 64 bits
            b"NN",                                        // trailing bytes
        ] {
            assert!(decode(bad).is_err(), "{bad:?}");
        }
        let deep = [b"[\x01\x00\x00\x00".repeat(100), b"N".to_vec()].concat();
        assert!(decode(&deep).is_err(), "nesting is capped");
    }

    #[test]
    fn decode_never_panics_on_noise() {
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let (mut ok, mut refused) = (0, 0);
        for len in 0..2000usize {
            let bytes: Vec<u8> = (0..len % 64)
                .map(|_| {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    b"NTFilgsut([{0r"[(state % 14) as usize].wrapping_add((state >> 8) as u8 & 1)
                })
                .collect();
            match decode(&bytes) {
                Ok(_) => ok += 1,
                Err(_) => refused += 1,
            }
        }
        assert!(ok > 0 && refused > 0, "the noise reaches both outcomes ({ok} decoded, {refused} refused)");
    }

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
        let out = key_records(7, std::slice::from_ref(&text), true);
        assert_eq!(&out[..11], b"[\x03\0\0\0i\x07\0\0\0F");
        assert_eq!(out.last(), Some(&b'0'), "a dict ends with TYPE_NULL");
        let binary = KeyRecord { key: b"k".to_vec(), key_type: "string", value: KeyValue::String(vec![0xff]) };
        assert_eq!(key_records(0, &[text, binary], true)[10], b'T');
    }
}
