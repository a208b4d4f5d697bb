//! The file that calls most of the Redis module API (through `redis_module::raw`): contexts, the
//! Redis lock, `RedisModule_Call`, replies, blocked clients, users, logging and INFO.
//!
//! Everything above this file works with `Value`s, byte vectors and small safe handles.

use std::ffi::{c_char, c_int, CString};
use std::sync::OnceLock;
use std::thread::ThreadId;

use gearbox_engine::Value;
use redis_module::raw;

use super::lock::Locked;

/// A Redis module context pointer (command context, thread-safe context or the detached one).
#[derive(Clone, Copy, Debug)]
pub struct Ctx(pub *mut raw::RedisModuleCtx);

// SAFETY: a context pointer is only used under the rules of the module API: the detached
// context only while holding the Redis lock (see `lock`), a command context on the main thread.
unsafe impl Send for Ctx {}
// SAFETY: as above.
unsafe impl Sync for Ctx {}

static DETACHED: OnceLock<Ctx> = OnceLock::new();
static MAIN_THREAD: OnceLock<ThreadId> = OnceLock::new();

/// `RedisModule_Init`: fill the API table. First call of `RedisModule_OnLoad`.
///
/// # Safety
/// Called once, by `RedisModule_OnLoad`, with the context Redis gave it.
pub unsafe fn init_api(ctx: *mut raw::RedisModuleCtx, name: &std::ffi::CStr, version: c_int) -> bool {
    // SAFETY: guaranteed by the caller (see # Safety): the load context; the name outlives the call.
    unsafe { raw::Export_RedisModule_Init(ctx, name.as_ptr(), version, raw::REDISMODULE_APIVER_1 as c_int) == raw::REDISMODULE_OK as c_int }
}

/// Remember the main thread and make the detached context used for calls from scripts.
pub fn init_globals(ctx: Ctx) {
    let _ = MAIN_THREAD.set(std::thread::current().id());
    // SAFETY: on the main thread at load; the detached context lives as long as the process.
    let detached = unsafe { raw::RedisModule_GetDetachedThreadSafeContext.expect("API")(ctx.0) };
    let _ = DETACHED.set(Ctx(detached));
}

pub fn is_main_thread() -> bool {
    // Asked on every execute(); `thread::current()` is not free, so each thread remembers its
    // answer once the main thread is known.
    thread_local! {
        static ON_MAIN: std::cell::Cell<Option<bool>> = const { std::cell::Cell::new(None) };
    }
    ON_MAIN.with(|known| {
        if let Some(answer) = known.get() {
            return answer;
        }
        let Some(main) = MAIN_THREAD.get() else {
            return false;
        };
        let answer = *main == std::thread::current().id();
        known.set(Some(answer));
        answer
    })
}

/// The detached context: outside `host`, reached only through a [`Locked`] proof.
pub(super) fn detached() -> Ctx {
    *DETACHED.get().expect("gearbox: detached context used before load")
}

/// Take Redis' global lock from a background thread.
pub fn lock() {
    // SAFETY: the detached context exists for the process' life; callers pair this with unlock.
    unsafe { raw::RedisModule_ThreadSafeContextLock.expect("API")(detached().0) }
}

/// Take Redis' global lock only if no one holds it; true when taken.
pub fn try_lock() -> bool {
    // SAFETY: the detached context exists for the process' life; on success the caller pairs
    // this with `unlock`.
    unsafe { raw::RedisModule_ThreadSafeContextTryLock.expect("API")(detached().0) == raw::REDISMODULE_OK as c_int }
}

pub fn unlock() {
    // SAFETY: paired with `lock` on the same thread.
    unsafe { raw::RedisModule_ThreadSafeContextUnlock.expect("API")(detached().0) }
}

/// The bytes of a RedisModuleString.
///
/// # Safety
/// `s` is a live string for the duration of the call.
pub unsafe fn string_bytes(s: *const raw::RedisModuleString) -> Vec<u8> {
    // SAFETY: guaranteed by the caller (see # Safety): `s` is live; the slice is copied before returning.
    unsafe { string_slice(s) }.to_vec()
}

/// The bytes of a Redis string without copying them.
///
/// # Safety
/// `s` must stay alive (and unchanged) for as long as the slice is used.
pub unsafe fn string_slice<'a>(s: *const raw::RedisModuleString) -> &'a [u8] {
    // SAFETY: the caller upholds this function's # Safety contract.
    unsafe {
        let mut len = 0usize;
        // SAFETY: the caller's contract (# Safety): `s` is a live string; the pointer is valid for `len` bytes.
        let ptr = raw::RedisModule_StringPtrLen.expect("API")(s, &mut len);
        if ptr.is_null() {
            return &[];
        }
        std::slice::from_raw_parts(ptr as *const u8, len)
    }
}

/// A command's arguments (argv[0] is the command name).
///
/// # Safety
/// `argv` holds `argc` live strings (as Redis passes them to a command or to `OnLoad`).
pub unsafe fn args_of(argv: *mut *mut raw::RedisModuleString, argc: c_int) -> Vec<Vec<u8>> {
    if argv.is_null() || argc <= 0 {
        return Vec::new();
    }
    // SAFETY: guaranteed by the caller (see # Safety): `argc` valid strings.
    let slice = unsafe { std::slice::from_raw_parts(argv, argc as usize) };
    // SAFETY: guaranteed by the caller (see # Safety): each string is live for the call.
    slice.iter().map(|s| unsafe { string_bytes(*s) }).collect()
}

pub fn context_flags(ctx: Ctx) -> u32 {
    // SAFETY: a live context.
    unsafe { raw::RedisModule_GetContextFlags.expect("API")(ctx.0) as u32 }
}

/// Inside MULTI, Lua, or a context that may not block (e.g. `execute()` from a script).
pub fn blocking_forbidden(ctx: Ctx) -> bool {
    let flags = context_flags(ctx);
    let forbidden = raw::REDISMODULE_CTX_FLAGS_MULTI | raw::REDISMODULE_CTX_FLAGS_LUA | raw::REDISMODULE_CTX_FLAGS_DENY_BLOCKING;
    flags & forbidden != 0
}

/// Text safe to pass as a C string to Redis (NUL and CR/LF would cut or break the protocol).
fn c_text(s: &str) -> CString {
    let cleaned: String = s.chars().map(|c| if c == '\0' || c == '\r' || c == '\n' { ' ' } else { c }).collect();
    CString::new(cleaned).unwrap_or_default()
}

/// Run a command through `RedisModule_Call` (replicated). With a `user` it is a script's call:
/// ACL-checked as that user and in script mode (`S`: Redis refuses what it refuses a Lua
/// script, such as `noscript` commands and writes on a read-only replica; `M`: writes that
/// would need memory are refused under OOM). Without one it is gearbox's own call (a command's
/// facts, a client's hooked command). `ctx` is the command's context or `locked.detached()`.
pub fn call<A: AsRef<[u8]>>(_locked: Locked<'_>, ctx: Ctx, user: Option<&User>, args: &[A]) -> Value {
    let Some(name) = args.first().map(AsRef::as_ref) else {
        return Value::Array(Vec::new());
    };
    if name.contains(&0) {
        return Value::Error("ERR command name contains a NUL byte".into());
    }
    // The name as a C string and the argument strings on the stack when they fit: a loop of
    // execute() calls spent ~10% of gearbox's own time in these small allocations.
    let mut name_buf = [0u8; 64];
    let heap_name;
    let cmd: &[u8] = if name.len() < name_buf.len() {
        name_buf[..name.len()].copy_from_slice(name);
        &name_buf[..=name.len()]
    } else {
        heap_name = [name, b"\0"].concat();
        &heap_name
    };
    // SAFETY: under the Redis lock; strings we create are freed after the call; the reply is
    // converted and freed before returning.
    unsafe {
        if let Some(u) = user {
            raw::RedisModule_SetContextUser.expect("API")(ctx.0, u.0);
        }
        let create = raw::RedisModule_CreateString.expect("API");
        let mut stack_argv = [std::ptr::null_mut::<raw::RedisModuleString>(); 8];
        let mut heap_argv = Vec::new();
        let argv: &mut [*mut raw::RedisModuleString] = if args.len() - 1 <= stack_argv.len() {
            &mut stack_argv[..args.len() - 1]
        } else {
            heap_argv.resize(args.len() - 1, std::ptr::null_mut());
            &mut heap_argv
        };
        for (slot, a) in argv.iter_mut().zip(&args[1..]) {
            let a = a.as_ref();
            *slot = create(ctx.0, a.as_ptr() as *const c_char, a.len());
        }
        let fmt = if user.is_some() { c"!vCESM" } else { c"!vE" };
        let reply = raw::RedisModule_Call.expect("API")(ctx.0, cmd.as_ptr() as *const c_char, fmt.as_ptr(), argv.as_mut_ptr(), argv.len());
        let errno = *libc::__errno_location();
        let free = raw::RedisModule_FreeString.expect("API");
        for &s in argv.iter() {
            free(ctx.0, s);
        }
        if user.is_some() {
            raw::RedisModule_SetContextUser.expect("API")(ctx.0, std::ptr::null());
        }
        if reply.is_null() {
            return Value::Error(call_failure_text(&String::from_utf8_lossy(name), errno));
        }
        let value = reply_value(reply);
        raw::RedisModule_FreeCallReply.expect("API")(reply);
        value
    }
}

fn call_failure_text(cmd: &str, errno: c_int) -> String {
    match errno {
        libc::ENOENT => format!("ERR unknown command '{cmd}'"),
        libc::EINVAL => format!("ERR wrong number of arguments for '{cmd}' command"),
        libc::EACCES => no_permission_text(cmd),
        libc::ENOSPC => "OOM command not allowed when used memory > 'maxmemory'".to_string(),
        libc::EROFS => "READONLY You can't write against a read only replica.".to_string(),
        libc::ESPIPE => {
            format!("ERR This Redis command is not allowed from script: '{cmd}' (or the server cannot take a script's writes now)")
        }
        _ => format!("ERR could not run '{cmd}' (errno {errno})"),
    }
}

/// `RedisModule_Call`'s refusal of a command the user may not run.
pub fn no_permission_text(cmd: &str) -> String {
    format!("NOPERM this user has no permissions to run the '{cmd}' command or access its keys")
}

/// Whether `user` may run `argv` (command and keys).
pub fn may_run(_locked: Locked<'_>, ctx: Ctx, user: &User, argv: &[Vec<u8>]) -> bool {
    // SAFETY: under the Redis lock; the strings created here are freed after the check.
    unsafe {
        let create = raw::RedisModule_CreateString.expect("API");
        let mut strings: Vec<*mut raw::RedisModuleString> =
            argv.iter().map(|a| create(ctx.0, a.as_ptr() as *const c_char, a.len())).collect();
        let ok = raw::RedisModule_ACLCheckCommandPermissions.expect("API")(user.0, strings.as_mut_ptr(), strings.len() as c_int);
        for s in strings {
            raw::RedisModule_FreeString.expect("API")(ctx.0, s);
        }
        ok == raw::REDISMODULE_OK as c_int
    }
}

/// # Safety
/// `reply` is a live call reply of a string type.
unsafe fn reply_string(reply: *mut raw::RedisModuleCallReply) -> Vec<u8> {
    // SAFETY: the caller upholds this function's # Safety contract.
    unsafe {
        let mut len = 0usize;
        // SAFETY: the caller's contract (# Safety): `reply` is live; the pointer is valid for `len` bytes.
        let ptr = raw::RedisModule_CallReplyStringPtr.expect("API")(reply, &mut len);
        if ptr.is_null() {
            return Vec::new();
        }
        std::slice::from_raw_parts(ptr as *const u8, len).to_vec()
    }
}

/// # Safety
/// `reply` is a live call reply, for the duration of this call.
unsafe fn reply_value(reply: *mut raw::RedisModuleCallReply) -> Value {
    // SAFETY: the caller's contract (# Safety): `reply` is live for the duration of this call.
    unsafe {
        let kind = raw::RedisModule_CallReplyType.expect("API")(reply) as isize;
        match kind {
            raw::REDISMODULE_REPLY_STRING => {
                let mut len = 0usize;
                let proto = raw::RedisModule_CallReplyProto.expect("API")(reply, &mut len);
                let bytes = reply_string(reply);
                if !proto.is_null() && len > 0 && *proto == b'+' as c_char {
                    Value::Status(String::from_utf8_lossy(&bytes).into_owned())
                } else {
                    Value::Bulk(bytes)
                }
            }
            raw::REDISMODULE_REPLY_ERROR => Value::Error(String::from_utf8_lossy(&reply_string(reply)).into_owned()),
            raw::REDISMODULE_REPLY_INTEGER => Value::Int(raw::RedisModule_CallReplyInteger.expect("API")(reply)),
            raw::REDISMODULE_REPLY_ARRAY => {
                let n = raw::RedisModule_CallReplyLength.expect("API")(reply);
                let element = raw::RedisModule_CallReplyArrayElement.expect("API");
                Value::Array((0..n).map(|i| reply_value(element(reply, i))).collect())
            }
            raw::REDISMODULE_REPLY_NULL => Value::Nil,
            _ => Value::Bulk(reply_string(reply)),
        }
    }
}

/// An ACL user handle. Never keep one across an ACL change (see `acl_users`).
pub struct User(pub(super) *mut raw::RedisModuleUser);

// SAFETY: a user handle is an opaque pointer; it is only used and freed under the Redis lock.
unsafe impl Send for User {}
// SAFETY: as above.
unsafe impl Sync for User {}

/// The user running the current command.
pub fn current_user(ctx: Ctx) -> Option<User> {
    if !has_user(ctx) {
        return None;
    }
    // SAFETY: on the main thread inside a command of a client with a user (checked above); the
    // name string is freed after use.
    unsafe {
        let name = raw::RedisModule_GetCurrentUserName.expect("API")(ctx.0);
        if name.is_null() {
            return None;
        }
        let user = raw::RedisModule_GetModuleUserFromUserName.expect("API")(name);
        raw::RedisModule_FreeString.expect("API")(ctx.0, name);
        (!user.is_null()).then(|| User(user))
    }
}

impl User {
    /// Wrap a handle from `RedisModule_GetModuleUserFromUserName` (None when null).
    ///
    /// # Safety
    /// `user` is NULL or a handle from `RedisModule_GetModuleUserFromUserName` that nothing else
    /// frees: the `User` frees it when dropped.
    pub unsafe fn from_raw(user: *mut raw::RedisModuleUser) -> Option<User> {
        (!user.is_null()).then(|| User(user))
    }

    pub fn raw(&self) -> *mut raw::RedisModuleUser {
        self.0
    }
}

impl Drop for User {
    fn drop(&mut self) {
        // SAFETY: once per handle. A handle from `RedisModule_GetModuleUserFromUserName` only
        // wraps the ACL user: freeing it frees the wrapper (plain zfree, any thread), never
        // the user, so this is safe even after the user was deleted.
        unsafe { raw::RedisModule_FreeModuleUser.expect("API")(self.0) };
    }
}

/// Whether the client of the command being served has an ACL user. The master link and the AOF
/// loader have none, and Redis 7.0's `RedisModule_GetCurrentUserName` dereferences it unchecked
/// (a replicated RG.INNERREGISTER crashed the replica), so ask the context first.
pub fn has_user(ctx: Ctx) -> bool {
    context_flags(ctx) & (raw::REDISMODULE_CTX_FLAGS_REPLICATED | raw::REDISMODULE_CTX_FLAGS_LOADING) == 0
}

/// Write a message to the Redis log.
pub fn log(level: &str, message: &str) {
    let level = c_text(level);
    let message = c_text(message);
    // SAFETY: the detached context may log from any thread; "%s" with a C string.
    unsafe { raw::RedisModule_Log.expect("API")(detached().0, level.as_ptr(), c"%s".as_ptr(), message.as_ptr()) };
}

/// Log during load, with the loading context.
pub fn log_with(ctx: Ctx, level: &str, message: &str) {
    let level = c_text(level);
    let message = c_text(message);
    // SAFETY: a live context; "%s" with a C string.
    unsafe { raw::RedisModule_Log.expect("API")(ctx.0, level.as_ptr(), c"%s".as_ptr(), message.as_ptr()) };
}

/// Write `value` as the reply on `ctx`.
pub fn reply(ctx: Ctx, value: &Value) {
    // SAFETY: a live context able to reply (command or blocked-client thread-safe context).
    unsafe {
        match value {
            Value::Nil => {
                raw::RedisModule_ReplyWithNull.expect("API")(ctx.0);
            }
            Value::Int(n) => {
                raw::RedisModule_ReplyWithLongLong.expect("API")(ctx.0, *n);
            }
            Value::Double(d) => {
                let s = Value::format_double(*d);
                raw::RedisModule_ReplyWithStringBuffer.expect("API")(ctx.0, s.as_ptr() as *const c_char, s.len());
            }
            Value::Bulk(b) => {
                raw::RedisModule_ReplyWithStringBuffer.expect("API")(ctx.0, b.as_ptr() as *const c_char, b.len());
            }
            Value::Status(s) => {
                let s = c_text(s);
                raw::RedisModule_ReplyWithSimpleString.expect("API")(ctx.0, s.as_ptr());
            }
            Value::Error(e) => {
                let e = c_text(e);
                raw::RedisModule_ReplyWithError.expect("API")(ctx.0, e.as_ptr());
            }
            Value::Array(items) => {
                raw::RedisModule_ReplyWithArray.expect("API")(ctx.0, items.len() as std::ffi::c_long);
                for item in items {
                    reply(ctx, item);
                }
            }
        }
    }
}

pub fn reply_wrong_arity(ctx: Ctx) {
    // SAFETY: a live command context.
    unsafe { raw::RedisModule_WrongArity.expect("API")(ctx.0) };
}

pub use super::blocked_client::{block_client, BlockedClient};

/// Register a command; false if Redis refused it.
pub fn create_command(ctx: Ctx, name: &str, handler: raw::RedisModuleCmdFunc, flags: &str, first: c_int, last: c_int, step: c_int) -> bool {
    let (Ok(name), Ok(flags)) = (CString::new(name), CString::new(flags)) else {
        return false;
    };
    // SAFETY: at load, with the load context; Redis copies the name and flags.
    unsafe {
        raw::RedisModule_CreateCommand.expect("API")(ctx.0, name.as_ptr(), handler, flags.as_ptr(), first, last, step)
            == raw::REDISMODULE_OK as c_int
    }
}

/// Put a registered command in ACL categories by name (space-separated), where the server has
/// `RedisModule_SetCommandACLCategories` (Redis 7.2+); older servers derive `@admin
/// @dangerous` from the `admin` flag instead. Best effort: false when not set.
pub fn set_acl_categories(ctx: Ctx, name: &str, categories: &str) -> bool {
    // SAFETY: the API table was filled once by RedisModule_Init before any command is made.
    let (get, set) = unsafe { (raw::RedisModule_GetCommand, raw::RedisModule_SetCommandACLCategories) };
    let (Some(get), Some(set)) = (get, set) else { return false };
    if categories.is_empty() {
        return false;
    }
    let (Ok(name), Ok(categories)) = (CString::new(name), CString::new(categories)) else { return false };
    // SAFETY: at load, with the load context, for a command this module just created.
    unsafe {
        let command = get(ctx.0, name.as_ptr());
        !command.is_null() && set(command, categories.as_ptr()) == raw::REDISMODULE_OK as c_int
    }
}

pub fn register_info(ctx: Ctx, f: raw::RedisModuleInfoFunc) {
    // SAFETY: at load, with the load context.
    unsafe { raw::RedisModule_RegisterInfoFunc.expect("API")(ctx.0, f) };
}

/// An INFO callback's context.
#[derive(Clone, Copy)]
pub struct InfoCtx(pub *mut raw::RedisModuleInfoCtx);

impl InfoCtx {
    pub fn section(self, name: &str) {
        let name = c_text(name);
        // SAFETY: inside the INFO callback.
        unsafe { raw::RedisModule_InfoAddSection.expect("API")(self.0, name.as_ptr()) };
    }

    pub fn field_int(self, name: &str, value: i64) {
        let name = c_text(name);
        // SAFETY: inside the INFO callback.
        unsafe { raw::RedisModule_InfoAddFieldLongLong.expect("API")(self.0, name.as_ptr(), value) };
    }

    /// Fields added until `end_dict` render as one `name:k=v,k=v` line.
    pub fn begin_dict(self, name: &str) {
        let name = c_text(name);
        // SAFETY: inside the INFO callback.
        unsafe { raw::RedisModule_InfoBeginDictField.expect("API")(self.0, name.as_ptr()) };
    }

    pub fn end_dict(self) {
        // SAFETY: inside the INFO callback, after `begin_dict`.
        unsafe { raw::RedisModule_InfoEndDictField.expect("API")(self.0) };
    }

    pub fn field_str(self, name: &str, value: &str) {
        let (name, value) = (c_text(name), c_text(value));
        // SAFETY: inside the INFO callback.
        unsafe { raw::RedisModule_InfoAddFieldCString.expect("API")(self.0, name.as_ptr(), value.as_ptr()) };
    }
}

/// Data type methods with only the version set; a type fills in the callbacks it has.
pub fn empty_type_methods() -> raw::RedisModuleTypeMethods {
    raw::RedisModuleTypeMethods {
        version: raw::REDISMODULE_TYPE_METHOD_VERSION as u64,
        rdb_load: None,
        rdb_save: None,
        aof_rewrite: None,
        mem_usage: None,
        digest: None,
        free: None,
        aux_load: None,
        aux_save: None,
        aux_save_triggers: 0,
        free_effort: None,
        unlink: None,
        copy: None,
        defrag: None,
        mem_usage2: None,
        free_effort2: None,
        unlink2: None,
        copy2: None,
        aux_save2: None,
    }
}
