//! The module API calls that connect gearbox to Redis' life rather than to one command:
//! keyspace notifications (KeysReader registrations), the loading server event (clearing and
//! restoring registrations), the aux-only data type that carries sessions in the RDB,
//! `RedisModule_Replicate` (RG.INNERREGISTER to replicas and the AOF), and ACL users by name.
//!
//! Like `redis_ffi.rs`, this is FFI only: callbacks are handed safe Rust closures' inputs
//! (`Ctx`, bytes) and every entry from C catches panics.

use std::ffi::{c_char, c_int, c_void, CString};
use std::sync::OnceLock;

use redis_module::raw;

use super::lock::Locked;
use super::redis_ffi::{self, Ctx, User};

/// What gearbox does when Redis tells it something (set once at load).
pub struct Hooks {
    /// A keyspace event: (context, event name, key). Runs on the thread that made the change,
    /// which holds the lock.
    pub keyspace: fn(Locked<'_>, Ctx, &str, &[u8]),
    /// Loading started (true) or ended/failed (false).
    pub loading: fn(bool),
    /// This server became a master (a replica promoted with `REPLICAOF NO ONE`).
    pub promoted: fn(Locked<'_>),
    /// The sessions blob to write after the keyspace (None: nothing to save).
    pub save: fn() -> Option<Vec<u8>>,
    /// The sessions blob read back.
    pub load: fn(&[u8]) -> Result<(), String>,
}

static HOOKS: OnceLock<Hooks> = OnceLock::new();
const TYPE_NAME: &std::ffi::CStr = c"gearboxRG";
const ENCODING_VERSION: c_int = 1;

fn hooks() -> Option<&'static Hooks> {
    HOOKS.get()
}

unsafe extern "C" fn on_keyspace(
    ctx: *mut raw::RedisModuleCtx,
    _type: c_int,
    event: *const c_char,
    key: *mut raw::RedisModuleString,
) -> c_int {
    let _ = std::panic::catch_unwind(|| {
        // SAFETY: Redis passes a NUL-terminated event name and a live key string for the call.
        let event = unsafe { std::ffi::CStr::from_ptr(event) }.to_string_lossy();
        // SAFETY: the key string lives for the whole notification.
        let key = unsafe { redis_ffi::string_slice(key) };
        if let Some(h) = hooks() {
            // SAFETY: Redis sends keyspace notifications with its lock held (by whichever
            // thread made the change).
            unsafe { Locked::in_callback(|locked| (h.keyspace)(locked, Ctx(ctx), &event, key)) };
        }
    });
    raw::REDISMODULE_OK as c_int
}

unsafe extern "C" fn on_role_changed(_ctx: *mut raw::RedisModuleCtx, _eid: raw::RedisModuleEvent, subevent: u64, _data: *mut c_void) {
    let _ = std::panic::catch_unwind(|| {
        if subevent != raw::REDISMODULE_EVENT_REPLROLECHANGED_NOW_MASTER {
            return;
        }
        if let Some(h) = hooks() {
            // SAFETY: Redis sends server events on its main thread, holding its lock.
            unsafe { Locked::in_callback(|locked| (h.promoted)(locked)) };
        }
    });
}

unsafe extern "C" fn on_loading(_ctx: *mut raw::RedisModuleCtx, _eid: raw::RedisModuleEvent, subevent: u64, _data: *mut c_void) {
    let _ = std::panic::catch_unwind(|| {
        let started = matches!(
            subevent,
            raw::REDISMODULE_SUBEVENT_LOADING_RDB_START
                | raw::REDISMODULE_SUBEVENT_LOADING_AOF_START
                | raw::REDISMODULE_SUBEVENT_LOADING_REPL_START
        );
        if let Some(h) = hooks() {
            (h.loading)(started);
        }
    });
}

unsafe extern "C" fn aux_save(rdb: *mut raw::RedisModuleIO, when: c_int) {
    let _ = std::panic::catch_unwind(|| {
        if when != raw::REDISMODULE_AUX_AFTER_RDB as c_int {
            return;
        }
        if let Some(blob) = hooks().and_then(|h| (h.save)()) {
            // SAFETY: inside aux_save with Redis' IO handle; the buffer is copied.
            unsafe { raw::RedisModule_SaveStringBuffer.expect("API")(rdb, blob.as_ptr() as *const c_char, blob.len()) };
        }
    });
}

unsafe extern "C" fn aux_load(rdb: *mut raw::RedisModuleIO, encver: c_int, when: c_int) -> c_int {
    let ok = raw::REDISMODULE_OK as c_int;
    let err = raw::REDISMODULE_ERR as c_int;
    std::panic::catch_unwind(|| {
        if encver > ENCODING_VERSION || when != raw::REDISMODULE_AUX_AFTER_RDB as c_int {
            redis_ffi::log("warning", &format!("gearbox: RDB has gearbox data of encoding {encver}, this build reads {ENCODING_VERSION}"));
            return err;
        }
        let mut len: usize = 0;
        // SAFETY: inside aux_load; the returned buffer is ours to free with RedisModule_Free.
        let blob = unsafe {
            let ptr = raw::RedisModule_LoadStringBuffer.expect("API")(rdb, &mut len);
            if ptr.is_null() {
                return err;
            }
            let bytes = std::slice::from_raw_parts(ptr as *const u8, len).to_vec();
            raw::RedisModule_Free.expect("API")(ptr as *mut c_void);
            bytes
        };
        match hooks().map(|h| (h.load)(&blob)) {
            Some(Err(e)) => {
                redis_ffi::log("warning", &format!("gearbox: could not read the saved registrations: {e}"));
                err
            }
            _ => ok,
        }
    })
    .unwrap_or(err)
}

unsafe extern "C" fn no_rdb_load(_rdb: *mut raw::RedisModuleIO, _encver: c_int) -> *mut c_void {
    std::ptr::null_mut()
}

unsafe extern "C" fn no_rdb_save(_rdb: *mut raw::RedisModuleIO, _value: *mut c_void) {}

unsafe extern "C" fn no_free(_value: *mut c_void) {}

/// Subscribe to keyspace events, loading and role changes, and create the aux data type. At load.
pub fn install(ctx: Ctx, h: Hooks) -> Result<(), String> {
    HOOKS.set(h).map_err(|_| "gearbox hooks installed twice".to_string())?;
    let mut methods = raw::RedisModuleTypeMethods {
        rdb_load: Some(no_rdb_load),
        rdb_save: Some(no_rdb_save),
        free: Some(no_free),
        aux_load: Some(aux_load),
        aux_save: Some(aux_save),
        aux_save_triggers: raw::REDISMODULE_AUX_AFTER_RDB as c_int,
        ..redis_ffi::empty_type_methods()
    };
    let event = raw::RedisModuleEvent { id: raw::REDISMODULE_EVENT_LOADING, dataver: 1 };
    let role = raw::RedisModuleEvent { id: raw::REDISMODULE_EVENT_REPLICATION_ROLE_CHANGED, dataver: 1 };
    // SAFETY: at load with the load context; Redis copies the type methods.
    unsafe {
        let types = raw::REDISMODULE_NOTIFY_ALL | raw::REDISMODULE_NOTIFY_KEY_MISS;
        if raw::RedisModule_SubscribeToKeyspaceEvents.expect("API")(ctx.0, types, Some(on_keyspace)) != raw::REDISMODULE_OK as c_int {
            return Err("could not subscribe to keyspace events".into());
        }
        if raw::RedisModule_SubscribeToServerEvent.expect("API")(ctx.0, event, Some(on_loading)) != raw::REDISMODULE_OK as c_int {
            return Err("could not subscribe to the loading event".into());
        }
        if raw::RedisModule_SubscribeToServerEvent.expect("API")(ctx.0, role, Some(on_role_changed)) != raw::REDISMODULE_OK as c_int {
            return Err("could not subscribe to the replication role event".into());
        }
        let t = raw::RedisModule_CreateDataType.expect("API")(ctx.0, TYPE_NAME.as_ptr(), ENCODING_VERSION, &mut methods);
        if t.is_null() {
            return Err("could not create the gearbox RDB data type".into());
        }
    }
    Ok(())
}

/// Whether events must not fire now: loading, or this server is a replica.
pub fn events_muted(ctx: Ctx) -> bool {
    let flags = redis_ffi::context_flags(ctx);
    flags & (raw::REDISMODULE_CTX_FLAGS_LOADING | raw::REDISMODULE_CTX_FLAGS_SLAVE) != 0
}

/// Whether this server replicates a master (checked outside any command).
pub fn is_replica(locked: Locked<'_>) -> bool {
    redis_ffi::context_flags(locked.detached()) & raw::REDISMODULE_CTX_FLAGS_SLAVE != 0
}

pub fn is_loading(ctx: Ctx) -> bool {
    redis_ffi::context_flags(ctx) & raw::REDISMODULE_CTX_FLAGS_LOADING != 0
}

/// Propagate `command blob...` to replicas and the AOF, within the current command.
pub fn replicate(ctx: Ctx, command: &str, args: &[&[u8]]) {
    let Ok(name) = CString::new(command) else { return };
    // SAFETY: a command context on the main thread; "b" arguments are (pointer, length) pairs.
    unsafe {
        let f = raw::RedisModule_Replicate.expect("API");
        match args {
            [a] => f(ctx.0, name.as_ptr(), c"b".as_ptr(), a.as_ptr() as *const c_char, a.len()),
            [a, b] => f(ctx.0, name.as_ptr(), c"bb".as_ptr(), a.as_ptr() as *const c_char, a.len(), b.as_ptr() as *const c_char, b.len()),
            _ => return,
        };
    }
}

/// The name of the user running the current command.
pub fn current_user_name(ctx: Ctx) -> Option<String> {
    if !redis_ffi::has_user(ctx) {
        return None;
    }
    // SAFETY: inside a command of a client with a user (checked above); the string is freed
    // after copying.
    unsafe {
        let name = raw::RedisModule_GetCurrentUserName.expect("API")(ctx.0);
        if name.is_null() {
            return None;
        }
        let text = String::from_utf8_lossy(&redis_ffi::string_bytes(name)).into_owned();
        raw::RedisModule_FreeString.expect("API")(ctx.0, name);
        Some(text)
    }
}

/// An ACL user by name; None if it does not exist.
pub fn user_by_name(_locked: Locked<'_>, name: &str) -> Option<User> {
    // SAFETY: under the Redis lock (`_locked`); the name string is freed after use; the user
    // handle from GetModuleUserFromUserName is owned by the `User` made here alone.
    unsafe {
        let s = raw::RedisModule_CreateString.expect("API")(std::ptr::null_mut(), name.as_ptr() as *const c_char, name.len());
        let user = raw::RedisModule_GetModuleUserFromUserName.expect("API")(s);
        raw::RedisModule_FreeString.expect("API")(std::ptr::null_mut(), s);
        User::from_raw(user)
    }
}

type TimerTask = Box<dyn for<'a> FnOnce(Locked<'a>) + Send>;

unsafe extern "C" fn on_timer(_ctx: *mut raw::RedisModuleCtx, data: *mut c_void) {
    // SAFETY: `data` is the box `after` leaked for exactly this one call.
    let task = unsafe { Box::from_raw(data as *mut TimerTask) };
    // SAFETY: Redis runs timers on its main thread, holding the lock.
    let run = || unsafe { Locked::in_callback(task) };
    let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(run));
}

/// Run `task` on the main thread after `ms` milliseconds.
pub fn after(locked: Locked<'_>, ms: u64, task: TimerTask) {
    let data = Box::into_raw(Box::new(task)) as *mut c_void;
    // SAFETY: under the Redis lock with the detached context; Redis calls `on_timer` once with
    // `data`, which takes the box back.
    unsafe { raw::RedisModule_CreateTimer.expect("API")(locked.detached().0, ms as raw::mstime_t, Some(on_timer), data) };
}
