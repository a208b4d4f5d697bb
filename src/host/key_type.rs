//! The `rg_timeev` module data type: the value of a key that carries a key-bound time event
//! (`registerTE(seconds, fn, keyName=...)`). Redis owns the key: it saves the value with the
//! keyspace, loads it back, and frees it when the key is deleted, overwritten or flushed.
//!
//! FFI only: the value is an `Arc<dyn KeyValue>` (see `events::keyed_timers`), boxed behind the
//! pointer Redis keeps; every entry from C catches panics.

use std::ffi::{c_char, c_int, c_void};
use std::sync::{Arc, OnceLock};

use redis_module::raw;

use super::lock::Locked;
use super::redis_ffi::{self, Ctx};

/// What Redis keeps in a key of this type.
pub trait KeyValue: Send + Sync {
    /// The bytes the RDB keeps (in a forked child: Rust data only).
    fn save(&self) -> Vec<u8>;
    /// The key was deleted, overwritten or flushed.
    fn freed(&self);
}

struct Registered {
    /// `RedisModuleType*`, as an address.
    module_type: usize,
    load: fn(&[u8]) -> Option<Arc<dyn KeyValue>>,
}

static TYPE: OnceLock<Registered> = OnceLock::new();
const TYPE_NAME: &std::ffi::CStr = c"rg_timeev";
const ENCODING_VERSION: c_int = 1;

type Boxed = Box<Arc<dyn KeyValue>>;

unsafe extern "C" fn rdb_load(rdb: *mut raw::RedisModuleIO, encver: c_int) -> *mut c_void {
    std::panic::catch_unwind(|| {
        let (Some(t), true) = (TYPE.get(), encver <= ENCODING_VERSION) else { return std::ptr::null_mut() };
        let mut len: usize = 0;
        // SAFETY: inside rdb_load; the returned buffer is ours to free with RedisModule_Free.
        let bytes = unsafe {
            let ptr = raw::RedisModule_LoadStringBuffer.expect("API")(rdb, &mut len);
            if ptr.is_null() {
                return std::ptr::null_mut();
            }
            let bytes = std::slice::from_raw_parts(ptr as *const u8, len).to_vec();
            raw::RedisModule_Free.expect("API")(ptr as *mut c_void);
            bytes
        };
        match (t.load)(&bytes) {
            Some(value) => Box::into_raw(Box::new(value) as Boxed) as *mut c_void,
            None => std::ptr::null_mut(),
        }
    })
    .unwrap_or(std::ptr::null_mut())
}

unsafe extern "C" fn rdb_save(rdb: *mut raw::RedisModuleIO, value: *mut c_void) {
    let _ = std::panic::catch_unwind(|| {
        // SAFETY: `value` is a pointer this file made with Box::into_raw and Redis still owns.
        let value = unsafe { &*(value as *const Arc<dyn KeyValue>) };
        let bytes = value.save();
        // SAFETY: inside rdb_save with Redis' IO handle; the buffer is copied.
        unsafe { raw::RedisModule_SaveStringBuffer.expect("API")(rdb, bytes.as_ptr() as *const c_char, bytes.len()) };
    });
}

unsafe extern "C" fn free(value: *mut c_void) {
    let _ = std::panic::catch_unwind(|| {
        // SAFETY: Redis frees each value once; it was made by Box::into_raw here.
        let value = unsafe { Box::from_raw(value as *mut Arc<dyn KeyValue>) };
        value.freed();
    });
}

/// A plain AOF rewrite (without the RDB preamble) cannot carry the value: nothing is emitted,
/// as in RedisGears, instead of the crash a missing callback would be.
unsafe extern "C" fn aof_rewrite(_aof: *mut raw::RedisModuleIO, _key: *mut raw::RedisModuleString, _value: *mut c_void) {}

/// Create the data type (at module load); `load` rebuilds a value from its saved bytes.
pub fn install(ctx: Ctx, load: fn(&[u8]) -> Option<Arc<dyn KeyValue>>) -> Result<(), String> {
    let mut methods = raw::RedisModuleTypeMethods {
        rdb_load: Some(rdb_load),
        rdb_save: Some(rdb_save),
        aof_rewrite: Some(aof_rewrite),
        free: Some(free),
        ..redis_ffi::empty_type_methods()
    };
    // SAFETY: at load with the load context; Redis copies the type methods.
    let t = unsafe { raw::RedisModule_CreateDataType.expect("API")(ctx.0, TYPE_NAME.as_ptr(), ENCODING_VERSION, &mut methods) };
    if t.is_null() {
        return Err("could not create the rg_timeev data type".into());
    }
    TYPE.set(Registered { module_type: t as usize, load }).map_err(|_| "rg_timeev created twice".to_string())
}

/// Store `value` in `key` unless the key exists; false if it does.
pub fn set_if_absent(locked: Locked<'_>, key: &[u8], value: Arc<dyn KeyValue>) -> bool {
    let Some(t) = TYPE.get() else { return false };
    let ctx = locked.detached();
    // SAFETY: under the Redis lock with the detached context; the key string and the key are
    // released before returning; on success Redis owns the boxed value.
    unsafe {
        let name = raw::RedisModule_CreateString.expect("API")(ctx.0, key.as_ptr() as *const c_char, key.len());
        let k = raw::RedisModule_OpenKey.expect("API")(ctx.0, name, raw::REDISMODULE_WRITE as c_int);
        let empty = raw::RedisModule_KeyType.expect("API")(k) == raw::REDISMODULE_KEYTYPE_EMPTY as c_int;
        if empty {
            let boxed = Box::into_raw(Box::new(value) as Boxed) as *mut c_void;
            raw::RedisModule_ModuleTypeSetValue.expect("API")(k, t.module_type as *mut raw::RedisModuleType, boxed);
        }
        raw::RedisModule_CloseKey.expect("API")(k);
        raw::RedisModule_FreeString.expect("API")(ctx.0, name);
        empty
    }
}
