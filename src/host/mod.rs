//! The host: what a script's interpreter may ask of Redis, implemented over the module API.
//! One [`RedisHost`] per session carries the ACL user of the client that created it, so every
//! `execute()` of that script is checked against that user's permissions.

mod keys;
pub mod lock;
pub mod redis_ffi;

use gearbox_engine::{Host, KeyRecord, LogLevel, Value};

use lock::RedisLock;
use redis_ffi::User;

pub struct RedisHost {
    user: Option<User>,
    config: fn(&str) -> Option<String>,
}

impl RedisHost {
    /// A host acting as `user` (None: no ACL check, for internal sessions).
    pub fn new(user: Option<User>, config: fn(&str) -> Option<String>) -> RedisHost {
        RedisHost { user, config }
    }
}

impl keys::Caller for RedisHost {
    fn call_locked(&self, args: &[Vec<u8>]) -> Value {
        redis_ffi::call(redis_ffi::detached(), self.user.as_ref(), args)
    }

    fn peek(&self, key: &[u8]) -> Option<redis_ffi::KeyPeek> {
        Some(redis_ffi::peek_key(redis_ffi::detached(), self.user.as_ref(), key))
    }
}

impl Host for RedisHost {
    fn call(&self, args: &[Vec<u8>]) -> Value {
        let _lock = RedisLock::acquire();
        keys::Caller::call_locked(self, args)
    }

    fn read_keys(&self, keys: &[Vec<u8>], read_value: bool) -> Vec<KeyRecord> {
        let _lock = (read_value && !keys.is_empty()).then(RedisLock::acquire);
        keys.iter().filter_map(|k| keys::read_key(self, k, read_value)).collect()
    }

    fn log(&self, level: LogLevel, message: &str) {
        redis_ffi::log(level.as_str(), &format!("GEARS: {message}"));
    }

    fn config_get(&self, name: &str) -> Option<String> {
        (self.config)(name)
    }

    fn may_wait_for_lock(&self) -> bool {
        lock::must_wait()
    }

    fn atomic_begin(&self) -> Result<(), String> {
        lock::atomic_begin()
    }

    fn atomic_end(&self) {
        lock::atomic_end()
    }
}

impl Drop for RedisHost {
    fn drop(&mut self) {
        if let Some(user) = self.user.take() {
            let _lock = RedisLock::acquire();
            user.free_locked();
        }
    }
}
