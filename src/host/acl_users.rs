//! ACL users that sessions act as, looked up by name and never held across an ACL change.
//!
//! A session remembers the *name* of the user who sent RG.PYEXECUTE. The module API hands out a
//! user handle (`RedisModule_GetModuleUserFromUserName`) that points straight at Redis' ACL user,
//! so a handle kept across `ACL DELUSER` (or `ACL LOAD`, which re-creates every user) points at
//! freed memory: firing a deleted user's registration crashed the server. Here handles live in
//! one cache that is emptied whenever an ACL change may have happened: the command filter sees
//! every `ACL` and `EXEC` command before Redis runs it and bumps [`generation`], and gearbox's
//! own `execute('ACL', …)` bumps it too (the filter does not see gearbox's own calls). Lookups
//! happen under the Redis lock, where no ACL command can run concurrently.
//!
//! A user that no longer exists, or is disabled (`off`), resolves to an error: its sessions'
//! calls fail and their registrations stop firing.
//!
//! Also the administrator rule: see [`is_admin`].

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use gearbox_engine::Value;

use super::lock::Locked;
use super::redis_ffi::{self, User};

/// The key name an administrator may access (together with `RG.CONFIGSET`, see [`is_admin`]).
pub const ADMIN_KEY: &str = "__gearbox_admin__";

static GENERATION: AtomicU64 = AtomicU64::new(1);

/// Bumped whenever users may have changed.
pub fn generation() -> u64 {
    GENERATION.load(Ordering::Acquire)
}

/// The command filter's (or gearbox's own call's) view of a command about to run: any `ACL`
/// subcommand, or an `EXEC` that may carry one, invalidates every cached handle.
pub fn note_command(name: &[u8]) {
    if name.eq_ignore_ascii_case(b"acl") || name.eq_ignore_ascii_case(b"exec") {
        GENERATION.fetch_add(1, Ordering::AcqRel);
    }
}

/// One resolved name: a live handle, or why there is none.
#[derive(Clone)]
enum Resolved {
    Usable(Arc<User>),
    Unusable(String),
}

struct Cache {
    generation: u64,
    users: HashMap<String, Resolved>,
    admins: HashMap<String, bool>,
}

fn cache() -> &'static Mutex<Cache> {
    static CACHE: std::sync::OnceLock<Mutex<Cache>> = std::sync::OnceLock::new();
    CACHE.get_or_init(|| Mutex::new(Cache { generation: 0, users: HashMap::new(), admins: HashMap::new() }))
}

fn fresh_cache() -> std::sync::MutexGuard<'static, Cache> {
    let mut cache = cache().lock().unwrap_or_else(|e| e.into_inner());
    let now = generation();
    if cache.generation != now {
        // Dropping the handles only frees their wrappers, never the users.
        cache.users.clear();
        cache.admins.clear();
        cache.generation = now;
    }
    cache
}

/// The text a session's call gets when its owner cannot act any more.
fn gone_text(name: &str, why: &str) -> String {
    format!("NOPERM gearbox: the ACL user '{name}' this script runs as {why}")
}

fn lookup(locked: Locked<'_>, name: &str) -> Resolved {
    let Some(user) = super::redis_hooks::user_by_name(locked, name) else {
        return Resolved::Unusable(gone_text(name, "no longer exists"));
    };
    // The module API of Redis 7.0 has no "is this user enabled": ACL GETUSER tells.
    let flags = redis_ffi::call(locked, locked.detached(), None, &[b"ACL".as_slice(), b"GETUSER", name.as_bytes()]);
    let disabled = match flags {
        Value::Array(items) => items.chunks(2).any(|pair| match pair {
            [Value::Bulk(k), Value::Array(fs)] if k == b"flags" => fs.iter().any(|f| matches!(f, Value::Bulk(b) if b == b"off")),
            _ => false,
        }),
        _ => false,
    };
    if disabled {
        return Resolved::Unusable(gone_text(name, "is disabled"));
    }
    Resolved::Usable(Arc::new(user))
}

thread_local! {
    /// The user the job running on this thread acts as instead of its session's owner: the
    /// caller of a shared trigger with invoker's rights (see `events::fire`). None: the owner.
    static ACTING_AS: std::cell::RefCell<Option<String>> = const { std::cell::RefCell::new(None) };
}

/// Run `f` with this thread's jobs acting as `name` (None: as their owners); restored after.
pub fn acting_as<R>(name: Option<String>, f: impl FnOnce() -> R) -> R {
    struct Restore(Option<String>);
    impl Drop for Restore {
        fn drop(&mut self) {
            ACTING_AS.with(|a| *a.borrow_mut() = self.0.take());
        }
    }
    let _restore = Restore(ACTING_AS.with(|a| a.replace(name)));
    f()
}

/// The user a job on this thread acts as instead of its owner, if any (see [`acting_as`]).
pub fn override_name() -> Option<String> {
    ACTING_AS.with(|a| a.borrow().clone())
}

/// The handle of the user called `name`, or the error text when it is gone or disabled; used
/// only while the lock (`locked`) is held.
pub fn resolve(locked: Locked<'_>, name: &str) -> Result<Arc<User>, String> {
    let mut cache = fresh_cache();
    let resolved = match cache.users.get(name) {
        Some(r) => r.clone(),
        None => {
            let r = lookup(locked, name);
            cache.users.insert(name.to_string(), r.clone());
            r
        }
    };
    match resolved {
        Resolved::Usable(user) => Ok(user),
        Resolved::Unusable(why) => Err(why),
    }
}

/// Whether the user `name` exists, is enabled and may access `key` (its ACL key patterns).
pub fn may_access_key(locked: Locked<'_>, name: &str, key: &[u8]) -> bool {
    resolve(locked, name).is_ok_and(|user| super::open_key::may_access_key_named(locked, &user, key))
}

/// Whether `name` is a gearbox administrator: an ACL user allowed both to run `RG.CONFIGSET`
/// (an `@admin @dangerous` command) and to access the key `__gearbox_admin__`. `default` is one
/// on a stock server (`+@all ~*`); an operator makes another with
/// `ACL SETUSER ops +@all ~*` or, narrower, `+@admin %R~__gearbox_admin__`; a tenant with
/// `+@all ~tenant:*` is not.
pub fn is_admin(locked: Locked<'_>, name: &str) -> bool {
    let Ok(user) = resolve(locked, name) else { return false };
    let mut cache = fresh_cache();
    if let Some(&known) = cache.admins.get(name) {
        return known;
    }
    let admin = redis_ffi::may_run(locked, locked.detached(), &user, &[b"RG.CONFIGSET".to_vec(), b"x".to_vec(), b"y".to_vec()])
        && super::open_key::may_access_key_named(locked, &user, ADMIN_KEY.as_bytes());
    cache.admins.insert(name.to_string(), admin);
    admin
}
