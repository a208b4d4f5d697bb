//! The KeysReader's walk of the keyspace with `RedisModule_Scan`: each key comes with its open
//! handle, so a string's value is copied straight out of it. Compared with `SCAN` through
//! `RedisModule_Call` plus one `OpenKey` per key, Redis builds and gearbox parses no reply, and
//! no key is looked up twice (the count() benchmark spent ~13% of its time in those look-ups).
//!
//! The cursor survives between batches (the Redis lock is released in between); like `SCAN`, a
//! walk may return a key twice while the keyspace is rehashed, and misses no key that exists
//! from its start to its end.

use std::ffi::c_void;

use gearbox_engine::glob;
use gearbox_engine::{KeyRecord, KeyValue};
use redis_module::raw;

use super::lock::Locked;
use super::open_key;
use super::redis_ffi::{self, User};

/// Keys per batch (the reader's `SCAN ... COUNT` used to be 1000).
pub const BATCH: usize = 1000;

/// What the walk saw of one key.
pub enum Seen {
    /// Read in full (a string, or a key whose value was not asked for).
    Record(KeyRecord),
    /// Another type: read its value with commands afterwards.
    Other(Vec<u8>),
}

/// One walk's cursor.
pub struct KeyScan {
    cursor: *mut raw::RedisModuleScanCursor,
    done: bool,
}

// SAFETY: the cursor is a plain heap object of Redis (a counter and a flag); it is only used
// under the Redis lock, by one thread at a time (the host keeps it behind a mutex).
unsafe impl Send for KeyScan {}

struct Batch<'a> {
    user: Option<&'a User>,
    pattern: &'a [u8],
    match_all: bool,
    read_value: bool,
    /// Only count the keys that would be records (`seen` stays empty).
    count_only: bool,
    counted: usize,
    seen: Vec<Seen>,
}

impl Batch<'_> {
    fn len(&self) -> usize {
        self.seen.len() + self.counted
    }
}

impl KeyScan {
    pub fn new() -> KeyScan {
        // SAFETY: allocates a fresh cursor; freed in Drop.
        let cursor = unsafe { raw::RedisModule_ScanCursorCreate.expect("API")() };
        KeyScan { cursor, done: false }
    }

    pub fn is_done(&self) -> bool {
        self.done
    }

    /// About `BATCH` more keys matching `pattern` (fewer at the end): what was seen of them, or
    /// (`count_only`) nothing but how many there were. Expired keys are skipped, and so are
    /// keys `user` may not read when values are read.
    pub fn next_batch(
        &mut self,
        locked: Locked<'_>,
        user: Option<&User>,
        pattern: &[u8],
        read_value: bool,
        count_only: bool,
    ) -> (Vec<Seen>, u64) {
        let seen = if count_only { Vec::new() } else { Vec::with_capacity(BATCH + 16) };
        let mut batch = Batch { user, pattern, match_all: pattern == b"*", read_value, count_only, counted: 0, seen };
        // SAFETY: reads a function pointer Redis filled in once at module load.
        let scan = unsafe { raw::RedisModule_Scan.expect("API") };
        let ctx = locked.detached();
        while !self.done && batch.len() < BATCH {
            // SAFETY: under the Redis lock; `batch` outlives the call and is only touched by
            // `on_key`, which Redis calls synchronously inside it.
            let more = unsafe { scan(ctx.0, self.cursor, Some(on_key), &mut batch as *mut Batch as *mut c_void) };
            self.done = more == 0;
        }
        (batch.seen, batch.counted as u64)
    }
}

impl Drop for KeyScan {
    fn drop(&mut self) {
        // SAFETY: created by ScanCursorCreate, destroyed once; destroying only frees memory.
        unsafe { raw::RedisModule_ScanCursorDestroy.expect("API")(self.cursor) };
    }
}

/// Called by Redis for each key of a scanned bucket. An entry from C: catches panics.
unsafe extern "C" fn on_key(
    _ctx: *mut raw::RedisModuleCtx,
    name: *mut raw::RedisModuleString,
    key: *mut raw::RedisModuleKey,
    data: *mut c_void,
) {
    let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        // SAFETY: `data` is the `Batch` handed to RedisModule_Scan by `next_batch`, alive and
        // not otherwise borrowed during the call; `name` and `key` are live for this callback.
        unsafe {
            let batch = &mut *(data as *mut Batch);
            let mut len = 0usize;
            let ptr = raw::RedisModule_StringPtrLen.expect("API")(name, &mut len);
            let key_name: &[u8] = if ptr.is_null() { &[] } else { std::slice::from_raw_parts(ptr as *const u8, len) };
            if !batch.match_all && !glob::matches(batch.pattern, key_name) {
                return;
            }
            if !key.is_null() && raw::RedisModule_GetExpire.expect("API")(key) == 0 {
                return; // logically expired: SCAN would not return it either
            }
            // Key names too are only those the user's ACL key patterns allow.
            if batch.user.is_some_and(|u| !open_key::may_access_key(u, name)) {
                return;
            }
            if batch.count_only && !batch.read_value {
                batch.counted += 1;
                return;
            }
            if !batch.read_value {
                batch.seen.push(Seen::Record(KeyRecord { key: key_name.to_vec(), key_type: "", value: KeyValue::None }));
                return;
            }
            if batch.count_only {
                batch.counted += 1; // every type becomes a record once readable
                return;
            }
            let kind = if key.is_null() { raw::REDISMODULE_KEYTYPE_EMPTY } else { raw::RedisModule_KeyType.expect("API")(key) as isize };
            let seen = match kind {
                raw::REDISMODULE_KEYTYPE_EMPTY => {
                    Seen::Record(KeyRecord { key: key_name.to_vec(), key_type: "empty", value: KeyValue::None })
                }
                raw::REDISMODULE_KEYTYPE_STRING => Seen::Record(KeyRecord {
                    key: key_name.to_vec(),
                    key_type: "string",
                    value: KeyValue::String(open_key::string_value(key)),
                }),
                _ => Seen::Other(key_name.to_vec()),
            };
            batch.seen.push(seen);
        }
    }));
}

/// Whether `user` may run `SCAN` (the reader's walk stands for it), with the text
/// `RedisModule_Call` would have given.
pub fn may_scan(locked: Locked<'_>, user: Option<&User>) -> Result<(), String> {
    match user {
        Some(user) if !redis_ffi::may_run(locked, locked.detached(), user, &[b"SCAN".to_vec(), b"0".to_vec()]) => {
            Err(redis_ffi::no_permission_text("SCAN"))
        }
        _ => Ok(()),
    }
}
