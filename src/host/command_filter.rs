//! The Redis command filter behind command hooks: every command a client sends passes through
//! [`on_command`] before Redis looks it up; one that a hook or a `commands=` registration
//! concerns is rewritten to `RG.INNERHOOK <command> <args...>`, which runs the hook (see
//! `events::hooks`). Registered with `NOSELF`: commands gearbox itself runs through
//! `RedisModule_Call` (a script's `execute()`, `call_next()`, the hooked command's own run) are
//! never rewritten, so a hook cannot recurse into itself.
//!
//! The filter also tells `acl_users` about every `ACL` / `EXEC` command before it runs, so no
//! cached user handle outlives an ACL change.
//!
//! Also the ACL check a hooked command gets before it is run on the client's behalf.

use std::ffi::{c_char, c_int};

use redis_module::raw;

use super::lock::Locked;
use super::redis_ffi::{self, Ctx};

/// The command the filter asks about: its arguments, read on demand (most commands are not
/// hooked, and only the name is needed to know that).
pub struct FilteredCommand(*mut raw::RedisModuleCommandFilterCtx);

impl FilteredCommand {
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn len(&self) -> usize {
        // SAFETY: the filter context is valid for the duration of the filter callback.
        unsafe { raw::RedisModule_CommandFilterArgsCount.expect("API")(self.0).max(0) as usize }
    }

    pub fn arg(&self, i: usize) -> Vec<u8> {
        // SAFETY: as above; `i` is below `len()`, and the string is copied before returning.
        unsafe { redis_ffi::string_bytes(raw::RedisModule_CommandFilterArgGet.expect("API")(self.0, i as c_int)) }
    }

    pub fn args(&self) -> Vec<Vec<u8>> {
        (0..self.len()).map(|i| self.arg(i)).collect()
    }

    /// The command's name, borrowed for `f` (empty for an empty command).
    fn with_name<R>(&self, f: impl FnOnce(&[u8]) -> R) -> R {
        if self.is_empty() {
            return f(&[]);
        }
        // SAFETY: the filter context and its argument strings are valid for the callback; the
        // slice does not outlive `f`.
        unsafe { f(redis_ffi::string_slice(raw::RedisModule_CommandFilterArgGet.expect("API")(self.0, 0))) }
    }

    /// Put `words` in front: the command becomes `words... <old command> <old args...>`.
    pub fn prepend(&self, words: &[&[u8]]) {
        for (i, word) in words.iter().enumerate() {
            // SAFETY: the new string is handed over to Redis, which frees it with the command.
            unsafe {
                let s = raw::RedisModule_CreateString.expect("API")(std::ptr::null_mut(), word.as_ptr() as *const c_char, word.len());
                raw::RedisModule_CommandFilterArgInsert.expect("API")(self.0, i as c_int, s);
            }
        }
    }
}

static DECIDE: std::sync::OnceLock<fn(&FilteredCommand)> = std::sync::OnceLock::new();

unsafe extern "C" fn on_command(fctx: *mut raw::RedisModuleCommandFilterCtx) {
    let _ = std::panic::catch_unwind(|| {
        let command = FilteredCommand(fctx);
        command.with_name(super::acl_users::note_command);
        if let Some(decide) = DECIDE.get() {
            decide(&command);
        }
    });
}

/// Install the filter; `decide` looks at each command and may rewrite it.
pub fn install(ctx: Ctx, decide: fn(&FilteredCommand)) -> Result<(), String> {
    let _ = DECIDE.set(decide);
    // SAFETY: at module load, on the main thread.
    let filter = unsafe {
        raw::RedisModule_RegisterCommandFilter.expect("API")(ctx.0, Some(on_command), raw::REDISMODULE_CMDFILTER_NOSELF as c_int)
    };
    if filter.is_null() {
        return Err("could not register the command filter of command hooks".into());
    }
    Ok(())
}

/// Whether the user running the current command may run `argv` (command and keys); the Redis
/// error text when not.
pub fn acl_check(locked: Locked<'_>, ctx: Ctx, argv: &[Vec<u8>]) -> Result<(), String> {
    let Some(user) = redis_ffi::current_user(ctx) else { return Ok(()) };
    let allowed = redis_ffi::may_run(locked, ctx, &user, argv);
    drop(user);
    if allowed {
        Ok(())
    } else {
        let name = String::from_utf8_lossy(argv.first().map(Vec::as_slice).unwrap_or_default()).to_lowercase();
        Err(format!("NOPERM this user has no permissions to run the '{name}' command or its keys"))
    }
}
