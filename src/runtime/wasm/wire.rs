//! The binary framing between the host and its wasm guest (`wasm-python/guest.py` is the other
//! half). A frame is `b"GB"`, a version byte, a kind byte, a little-endian u32 tag, a u32
//! payload length, then one value in CPython's marshal format (`marshal.rs`: the guest encodes
//! and decodes in C; the host decodes guest frames with checks). Bulk data is never escaped or
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
//! channel), so headers are checked and payloads capped here, values in `marshal::decode`.

use gearbox_engine::Value;

pub const VERSION: u8 = 3;
/// Set in the tag of a command the guest may run nested inside a wait (its sender holds the Redis
/// lock and waits for nothing else); other commands wait until the guest is back at its top loop.
pub const NESTABLE: u32 = 1 << 31;
pub const HEADER: usize = 12;
/// Largest payload accepted from the guest (a result set of an execution fits in this).
pub const MAX_PAYLOAD: usize = 512 << 20;

/// Frame kinds. Host → guest commands and replies; guest → host requests and answers.
pub mod kind {
    pub const RUN_SCRIPT: u8 = b'S';
    pub const RUN_PLAN: u8 = b'P';
    pub const DROP_PLAN: u8 = b'D';
    pub const FIRE: u8 = b'F';
    pub const ON_REGISTERED: u8 = b'O';
    pub const PROFILE: u8 = b'M';
    pub const USE_REQUIREMENTS: u8 = b'U';
    pub const REPLY: u8 = b'r';
    pub const RESULT: u8 = b'R';
    pub const CALL: u8 = b'C';
    pub const READ_KEYS: u8 = b'K';
    pub const SCAN_KEYS: u8 = b'Q';
    pub const SCAN_CLOSE: u8 = b'J';
    pub const COUNT_KEYS: u8 = b'N';
    pub const LOG: u8 = b'L';
    pub const CONFIG_GET: u8 = b'G';
    pub const ATOMIC_BEGIN: u8 = b'A';
    pub const ATOMIC_END: u8 = b'Z';
    pub const REGISTER: u8 = b'X';
    pub const TIME_EVENT: u8 = b'T';
    pub const COMMAND: u8 = b'H';
    pub const ASYNC_ALLOWED: u8 = b'W';
    /// The guest waits (for an async record another command may continue): for the given
    /// milliseconds, other commands of its session may run nested (`turns.rs`).
    pub const PAUSE: u8 = b'Y';

    /// Whether a host → guest frame of this kind starts a command (rather than answering).
    pub fn is_command(k: u8) -> bool {
        matches!(k, RUN_SCRIPT | RUN_PLAN | DROP_PLAN | FIRE | ON_REGISTERED | PROFILE | USE_REQUIREMENTS)
    }
}

/// A parsed frame header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    pub kind: u8,
    pub tag: u32,
    pub len: usize,
}

/// One encoded host → guest frame carrying `value`.
pub fn frame(kind: u8, tag: u32, value: &Value) -> Vec<u8> {
    frame_with(kind, tag, &super::marshal::value(value))
}

/// One host → guest frame around an already encoded (marshal) payload.
pub fn frame_with(kind: u8, tag: u32, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER + payload.len());
    out.extend_from_slice(b"GB");
    out.push(VERSION);
    out.push(kind);
    out.extend_from_slice(&tag.to_le_bytes());
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(payload);
    out
}

pub use gearbox_engine::codec::{bytes_of, text_of};

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
        assert_eq!(&f[HEADER..], super::super::marshal::value(&v).as_slice());
        assert!(header(&f[..HEADER - 1]).unwrap().is_none());
    }

    #[test]
    fn bad_headers_are_refused() {
        assert!(header(b"XX\x03R\0\0\0\0\0\0\0\0").is_err());
        assert!(header(b"GB\x02R\0\0\0\0\0\0\0\0").is_err(), "version 2 frames are refused");
        assert!(header(b"GB\x03R\0\0\0\0\xff\xff\xff\xff").is_err());
    }
}
