//! The KeysReader's host half: read a batch of keys (type and value) under one acquisition of
//! the Redis lock, in the record shapes RedisGears gives scripts (spec §2.4).

use gearbox_engine::{KeyRecord, KeyValue, Value};

use super::lock::Locked;
use super::open_key::KeyPeek;

/// Reaches Redis, under the lock `Locked` proves held.
pub trait Caller {
    fn call_locked(&self, locked: Locked<'_>, args: &[&[u8]]) -> Value;
    /// A direct look at the key, when the caller can (None: use commands only).
    fn peek(&self, _locked: Locked<'_>, _key: &[u8]) -> Option<KeyPeek> {
        None
    }
}

fn bulk_list(v: Value) -> Vec<Vec<u8>> {
    match v {
        Value::Array(items) => items
            .into_iter()
            .filter_map(|i| match i {
                Value::Bulk(b) => Some(b),
                Value::Status(s) => Some(s.into_bytes()),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    }
}

fn type_name(reply: &Value) -> &'static str {
    let name = match reply {
        Value::Status(s) => s.as_str(),
        Value::Bulk(b) => std::str::from_utf8(b).unwrap_or(""),
        _ => "",
    };
    match name {
        "string" => "string",
        "hash" => "hash",
        "list" => "list",
        "set" => "set",
        "zset" => "zset",
        "none" => "empty",
        // RedisGears 1.2 reports streams as 'unknown' (its docs say 'stream'); modules as 'module'.
        "stream" => "unknown",
        "" => "unknown",
        _ => "module",
    }
}

/// A key's record when values are not read: its name only.
pub fn name_only(key: &[u8]) -> KeyRecord {
    KeyRecord { key: key.to_vec(), key_type: "", value: KeyValue::None }
}

/// Read one key; None when the session's user may not read it (the key is skipped).
pub fn read_key(locked: Locked<'_>, caller: &dyn Caller, key: &[u8], read_value: bool) -> Option<KeyRecord> {
    if !read_value {
        return Some(name_only(key));
    }
    match caller.peek(locked, key) {
        Some(KeyPeek::Denied) => return None,
        Some(KeyPeek::Empty) => return Some(KeyRecord { key: key.to_vec(), key_type: "empty", value: KeyValue::None }),
        Some(KeyPeek::String(b)) => return Some(KeyRecord { key: key.to_vec(), key_type: "string", value: KeyValue::String(b) }),
        Some(KeyPeek::Other) | None => {}
    }
    let key_type = type_name(&caller.call_locked(locked, &[b"TYPE", key]));
    let value = match key_type {
        "string" => match caller.call_locked(locked, &[b"GET", key]) {
            Value::Bulk(b) => KeyValue::String(b),
            _ => KeyValue::None,
        },
        "hash" => {
            let flat = bulk_list(caller.call_locked(locked, &[b"HGETALL", key]));
            KeyValue::Hash(flat.chunks(2).filter(|c| c.len() == 2).map(|c| (c[0].clone(), c[1].clone())).collect())
        }
        "list" => KeyValue::List(bulk_list(caller.call_locked(locked, &[b"LRANGE", key, b"0", b"-1"]))),
        _ => KeyValue::None,
    };
    Some(KeyRecord { key: key.to_vec(), key_type, value })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    struct FakeRedis(HashMap<Vec<u8>, Value>);
    impl Caller for FakeRedis {
        fn call_locked(&self, _: Locked<'_>, args: &[&[u8]]) -> Value {
            let mut k = args[0].to_vec();
            k.push(b' ');
            k.extend_from_slice(args[1]);
            self.0.get(&k).cloned().unwrap_or(Value::Nil)
        }
    }

    /// The fakes here stand in for Redis: nothing reaches the module API.
    fn fake_lock() -> Locked<'static> {
        // SAFETY: every Caller in these tests is a fake; no proof reaches the real Redis API.
        unsafe { Locked::for_fakes() }
    }

    fn redis() -> FakeRedis {
        let mut m = HashMap::new();
        m.insert(b"TYPE s".to_vec(), Value::Status("string".into()));
        m.insert(b"GET s".to_vec(), Value::bulk("v"));
        m.insert(b"TYPE h".to_vec(), Value::Status("hash".into()));
        m.insert(b"HGETALL h".to_vec(), Value::bulks(["f", "1"]));
        m.insert(b"TYPE l".to_vec(), Value::Status("list".into()));
        m.insert(b"LRANGE l".to_vec(), Value::bulks(["a", "b"]));
        m.insert(b"TYPE x".to_vec(), Value::Status("stream".into()));
        m.insert(b"TYPE gone".to_vec(), Value::Status("none".into()));
        FakeRedis(m)
    }

    #[test]
    fn records_follow_redisgears_shapes() {
        let r = redis();
        let read = |k: &[u8]| read_key(fake_lock(), &r, k, true).unwrap();
        assert_eq!(read(b"s").value, KeyValue::String(b"v".to_vec()));
        assert_eq!(read(b"h").value, KeyValue::Hash(vec![(b"f".to_vec(), b"1".to_vec())]));
        assert_eq!(read(b"l").value, KeyValue::List(vec![b"a".to_vec(), b"b".to_vec()]));
        assert_eq!(read(b"x").key_type, "unknown");
        let gone = read(b"gone");
        assert_eq!((gone.key_type, gone.value), ("empty", KeyValue::None));
    }

    #[test]
    fn without_read_value_nothing_is_asked() {
        struct Panics;
        impl Caller for Panics {
            fn call_locked(&self, _: Locked<'_>, _: &[&[u8]]) -> Value {
                panic!("must not call Redis")
            }
        }
        assert_eq!(read_key(fake_lock(), &Panics, b"k", false).unwrap().value, KeyValue::None);
    }

    #[test]
    fn a_direct_look_answers_strings_and_denials_without_commands() {
        struct Direct;
        impl Caller for Direct {
            fn call_locked(&self, _: Locked<'_>, _: &[&[u8]]) -> Value {
                panic!("must not call Redis")
            }
            fn peek(&self, _: Locked<'_>, key: &[u8]) -> Option<KeyPeek> {
                Some(match key {
                    b"secret" => KeyPeek::Denied,
                    b"s" => KeyPeek::String(b"v".to_vec()),
                    _ => KeyPeek::Empty,
                })
            }
        }
        assert_eq!(read_key(fake_lock(), &Direct, b"secret", true), None);
        assert_eq!(read_key(fake_lock(), &Direct, b"s", true).unwrap().value, KeyValue::String(b"v".to_vec()));
        assert_eq!(read_key(fake_lock(), &Direct, b"none", true).unwrap().key_type, "empty");
    }
}
