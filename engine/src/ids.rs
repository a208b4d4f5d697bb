//! RedisGears ids: `<40-char shard id>-<counter>`, one counter for executions and another for
//! registrations, and random 40-hex session ids.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};

/// The shard id of a stand-alone server: 40 `'0'` characters.
pub const STANDALONE_SHARD_ID: &str = "0000000000000000000000000000000000000000";

/// Hands out `<shard>-<n>` ids, n starting at 1.
#[derive(Debug)]
pub struct IdGenerator {
    shard: String,
    next: AtomicU64,
}

impl IdGenerator {
    pub fn new(shard: &str) -> Self {
        IdGenerator { shard: shard.to_string(), next: AtomicU64::new(1) }
    }

    pub fn next_id(&self) -> String {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        format!("{}-{}", self.shard, n)
    }

    /// Never hand out an id at or below `n` again (used after loading persisted ids).
    pub fn advance_past(&self, n: u64) {
        self.next.fetch_max(n + 1, Ordering::Relaxed);
    }
}

/// A random 40-hex-character session id, as RedisGears gives sessions started without `ID`.
pub fn random_session_id() -> String {
    let mut out = String::with_capacity(48);
    let seed = RandomState::new();
    let mut i: u64 = 0;
    while out.len() < 40 {
        let mut h = seed.build_hasher();
        h.write_u64(i);
        h.write_u128(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0));
        out.push_str(&format!("{:016x}", h.finish()));
        i += 1;
    }
    out.truncate(40);
    out
}

/// Whether a user-given session id only uses `A-Z a-z 0-9 - _`.
pub fn is_valid_session_id(id: &str) -> bool {
    !id.is_empty() && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_count_from_one_with_the_shard_prefix() {
        let g = IdGenerator::new(STANDALONE_SHARD_ID);
        assert_eq!(g.next_id(), format!("{STANDALONE_SHARD_ID}-1"));
        assert_eq!(g.next_id(), format!("{STANDALONE_SHARD_ID}-2"));
        g.advance_past(10);
        assert_eq!(g.next_id(), format!("{STANDALONE_SHARD_ID}-11"));
    }

    #[test]
    fn session_ids_are_40_hex_and_differ() {
        let a = random_session_id();
        let b = random_session_id();
        assert_eq!(a.len(), 40);
        assert!(a.bytes().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, b);
    }

    #[test]
    fn session_id_charset() {
        assert!(is_valid_session_id("my_session-1"));
        assert!(!is_valid_session_id("bad id"));
        assert!(!is_valid_session_id(""));
        assert!(!is_valid_session_id("é"));
    }
}
