//! The binary framing between the host and its wasm guest (`wasm-python/guest.py` is the other
//! half). A frame is `b"GB"`, a version byte, a kind byte, a little-endian u32 tag, a u32
//! payload length, then one value in the engine's codec (`gearbox_engine::codec`: `N` nil, `i`
//! i64, `d` f64, `b` bytes, `s` status, `e` error, `a` array), so bulk data is never escaped or
//! parsed as text.
//!
//! The tag names the host command a frame belongs to: the guest stamps every host call and its
//! answer with the tag of the command it is running, and the host answers a call with the same
//! tag. Commands nest (a sync registration may run while a job of the same session waits for a
//! host call), and tags let each waiting host thread see exactly its own frames. Only commands
//! whose tag has the [`NESTABLE`] bit may be run nested; the guest defers any other command that
//! arrives during a wait until it is back at its top loop.
//!
//! Everything here is plain data: frames from the guest are untrusted (a script can write to the
//! channel), so decoding checks every length, caps sizes and nesting, and never panics.

use gearbox_engine::{KeyRecord, KeyValue, Value};

pub const VERSION: u8 = 2;
/// Set in the tag of a command the guest may run nested inside a wait (its sender holds the Redis
/// lock and waits for nothing else); other commands wait until the guest is back at its top loop.
pub const NESTABLE: u32 = 1 << 31;
pub const HEADER: usize = 12;
/// Largest payload accepted from the guest (a result set of an execution fits in this).
pub const MAX_PAYLOAD: usize = 512 << 20;

/// Frame kinds. Host → guest commands and replies; guest → host requests and answers.
pub mod kind {
    pub const BOOTSTRAP: u8 = b'B';
    pub const RUN_SCRIPT: u8 = b'S';
    pub const RUN_PLAN: u8 = b'P';
    pub const DROP_PLAN: u8 = b'D';
    pub const FIRE: u8 = b'F';
    pub const ON_REGISTERED: u8 = b'O';
    pub const REPLY: u8 = b'r';
    pub const RESULT: u8 = b'R';
    pub const CALL: u8 = b'C';
    pub const READ_KEYS: u8 = b'K';
    pub const SCAN_KEYS: u8 = b'Q';
    pub const SCAN_CLOSE: u8 = b'J';
    pub const LOG: u8 = b'L';
    pub const CONFIG_GET: u8 = b'G';
    pub const ATOMIC_BEGIN: u8 = b'A';
    pub const ATOMIC_END: u8 = b'Z';
    pub const REGISTER: u8 = b'X';
    pub const TIME_EVENT: u8 = b'T';
    pub const COMMAND: u8 = b'H';
    pub const ASYNC_ALLOWED: u8 = b'W';

    /// Whether a host → guest frame of this kind starts a command (rather than answering).
    pub fn is_command(k: u8) -> bool {
        matches!(k, BOOTSTRAP | RUN_SCRIPT | RUN_PLAN | DROP_PLAN | FIRE | ON_REGISTERED)
    }
}

/// A parsed frame header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    pub kind: u8,
    pub tag: u32,
    pub len: usize,
}

/// One encoded frame.
pub fn frame(kind: u8, tag: u32, value: &Value) -> Vec<u8> {
    let mut payload = Vec::new();
    encode(&mut payload, value);
    let mut out = Vec::with_capacity(HEADER + payload.len());
    out.extend_from_slice(b"GB");
    out.push(VERSION);
    out.push(kind);
    out.extend_from_slice(&tag.to_le_bytes());
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

/// Parse a frame header; `Ok(None)` if more bytes are needed.
pub fn header(buf: &[u8]) -> Result<Option<Header>, String> {
    if buf.len() < HEADER {
        return Ok(None);
    }
    if &buf[0..2] != b"GB" || buf[2] != VERSION {
        return Err("bad frame header".into());
    }
    let tag = u32::from_le_bytes([buf[4], buf[5], buf[6], buf[7]]);
    let len = u32::from_le_bytes([buf[8], buf[9], buf[10], buf[11]]) as usize;
    if len > MAX_PAYLOAD {
        return Err(format!("frame of {len} bytes is over the {MAX_PAYLOAD} byte cap"));
    }
    Ok(Some(Header { kind: buf[3], tag, len }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_carry_kind_tag_and_length() {
        let v = Value::Array(vec![Value::Bulk(vec![0, 255]), Value::Int(-5)]);
        let f = frame(kind::REPLY, 7, &v);
        let h = header(&f).unwrap().unwrap();
        assert_eq!(h, Header { kind: kind::REPLY, tag: 7, len: f.len() - HEADER });
        assert_eq!(decode(&f[HEADER..]).unwrap(), v);
        assert!(header(&f[..HEADER - 1]).unwrap().is_none());
    }

    #[test]
    fn bad_headers_are_refused() {
        assert!(header(b"XX\x02R\0\0\0\0\0\0\0\0").is_err());
        assert!(header(b"GB\x01R\0\0\0\0\0\0\0\0").is_err(), "version 1 frames are refused");
        assert!(header(b"GB\x02R\0\0\0\0\xff\xff\xff\xff").is_err());
    }
}
