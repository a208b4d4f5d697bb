//! Keys opened directly with the module API (`RedisModule_OpenKey`), without `RedisModule_Call`:
//! a look at a key for the KeysReader, the ACL key check, a string's value. Cheaper than the
//! commands for the common cases; the caller holds the Redis lock.

use std::ffi::{c_char, c_int};

use redis_module::raw;

use super::lock::Locked;
use super::redis_ffi::User;

/// What opening a key directly found (no `RedisModule_Call`: cheaper for the common cases).
#[derive(Debug, PartialEq)]
pub enum KeyPeek {
    /// The user's ACL does not allow reading this key.
    Denied,
    Empty,
    String(Vec<u8>),
    /// Another type: read it with commands.
    Other,
}

/// Look at a key directly.
pub fn peek_key(locked: Locked<'_>, user: Option<&User>, key: &[u8]) -> KeyPeek {
    let ctx = locked.detached();
    // SAFETY: under the Redis lock; the key name string and the key handle are freed before
    // returning; the DMA pointer is copied out while the key is open.
    unsafe {
        let name = raw::RedisModule_CreateString.expect("API")(ctx.0, key.as_ptr() as *const c_char, key.len());
        if user.is_some_and(|u| !may_access_key(u, name)) {
            raw::RedisModule_FreeString.expect("API")(ctx.0, name);
            return KeyPeek::Denied;
        }
        let handle = raw::RedisModule_OpenKey.expect("API")(ctx.0, name, raw::REDISMODULE_READ as c_int);
        let peek = if handle.is_null() {
            KeyPeek::Empty
        } else {
            match raw::RedisModule_KeyType.expect("API")(handle) as isize {
                raw::REDISMODULE_KEYTYPE_EMPTY => KeyPeek::Empty,
                raw::REDISMODULE_KEYTYPE_STRING => KeyPeek::String(string_value(handle)),
                _ => KeyPeek::Other,
            }
        };
        if !handle.is_null() {
            raw::RedisModule_CloseKey.expect("API")(handle);
        }
        raw::RedisModule_FreeString.expect("API")(ctx.0, name);
        peek
    }
}

/// Whether `user` may access the key named `name` (ACL key permissions).
///
/// # Safety
/// Under the Redis lock; `name` is a live string.
pub unsafe fn may_access_key(user: &User, name: *mut raw::RedisModuleString) -> bool {
    // SAFETY: the caller's contract (# Safety); the user handle lives as long as `user`.
    unsafe {
        let check = raw::RedisModule_ACLCheckKeyPermissions.expect("API");
        check(user.0, name, raw::REDISMODULE_CMD_KEY_ACCESS as c_int) == raw::REDISMODULE_OK as c_int
    }
}

/// A copy of the value of an open string key.
///
/// # Safety
/// Under the Redis lock; `handle` is an open key of type string.
pub unsafe fn string_value(handle: *mut raw::RedisModuleKey) -> Vec<u8> {
    // SAFETY: the caller upholds this function's # Safety contract.
    unsafe {
        let mut len = 0usize;
        // SAFETY: the caller's contract (# Safety); the DMA pointer is valid for `len` bytes while the key is open.
        let ptr = raw::RedisModule_StringDMA.expect("API")(handle, &mut len, raw::REDISMODULE_READ as c_int);
        if ptr.is_null() {
            return Vec::new();
        }
        std::slice::from_raw_parts(ptr as *const u8, len).to_vec()
    }
}

/// Whether `user` may access the key `name` (ACL key permissions).
pub fn may_access_key_named(locked: Locked<'_>, user: &User, name: &[u8]) -> bool {
    let ctx = locked.detached();
    // SAFETY: under the Redis lock; the string lives until it is freed after the check.
    unsafe {
        let s = raw::RedisModule_CreateString.expect("API")(ctx.0, name.as_ptr() as *const std::ffi::c_char, name.len());
        let ok = may_access_key(user, s);
        raw::RedisModule_FreeString.expect("API")(ctx.0, s);
        ok
    }
}
