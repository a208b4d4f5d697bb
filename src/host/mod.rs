//! The host: what a script's interpreter may ask of Redis, implemented over the module API.
//! One [`RedisHost`] per session carries the name of the ACL user who created it; every
//! `execute()` of that script looks the user up (`acl_users`) and is checked against its
//! permissions, in script mode, after gearbox's own refusals (`script_calls`).

pub mod acl_users;
pub mod blocked_client;
pub mod command_filter;
pub mod control;
mod key_scan;
pub mod key_type;
mod keys;
pub mod lock;
mod log_limit;
mod open_key;
pub mod pip;
mod private_names;
pub mod quiet;
pub mod redis_ffi;
pub mod redis_hooks;
pub mod reply;
pub mod top_level;
mod wheel;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, Weak};
use std::time::Duration;

use gearbox_engine::{script_calls, CommandRequest, Host, KeyRecord, LogLevel, Session, Value};

use lock::{Locked, RedisLock};
use redis_ffi::User;
use top_level::TopLevel;

pub struct RedisHost {
    /// The ACL user's name, persisted with the session so a reload acts as the same user.
    /// None only for a session that must not call Redis at all.
    pub user_name: Option<String>,
    config: fn(&str) -> Option<String>,
    top: Mutex<TopLevel>,
    /// The session this host serves (set once it exists), for what outlives a call: time events.
    session: OnceLock<Weak<Session>>,
    /// The KeysReader walks in progress, by id (`scan_keys`).
    scans: Mutex<HashMap<u64, key_scan::KeyScan>>,
    next_scan: AtomicU64,
    log_limit: Mutex<log_limit::LogLimit>,
    session_id: OnceLock<String>,
    /// The owner's user handle and the ACL generation it was looked up in (see `acting_user`).
    owner_handle: Mutex<Option<(u64, Arc<User>)>>,
}

impl RedisHost {
    /// A host acting as the ACL user `user_name`.
    pub fn new(user_name: Option<String>, config: fn(&str) -> Option<String>) -> RedisHost {
        RedisHost {
            user_name,
            config,
            top: Mutex::new(TopLevel::default()),
            session: OnceLock::new(),
            scans: Mutex::new(HashMap::new()),
            next_scan: AtomicU64::new(1),
            log_limit: Mutex::new(log_limit::LogLimit::new()),
            session_id: OnceLock::new(),
            owner_handle: Mutex::new(None),
        }
    }

    pub fn set_session(&self, session: Weak<Session>) {
        if let Some(s) = session.upgrade() {
            let _ = self.session_id.set(s.id.clone());
        }
        let _ = self.session.set(session);
    }

    /// The top-level state (journal, pending registrations) of this session's script.
    pub fn top_level(&self) -> MutexGuard<'_, TopLevel> {
        self.top.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Drop for RedisHost {
    fn drop(&mut self) {
        // Lines a flood dropped after the last one written are counted when the session ends.
        let dropped = self.log_limit.get_mut().map(|l| l.take_dropped()).unwrap_or(0);
        if dropped > 0 {
            let session = self.session_id.get().map(String::as_str).unwrap_or_default();
            redis_ffi::log("warning", &format!("gearbox: session {session} logged too fast: {dropped} lines dropped (LogLinesPerSecond)"));
        }
    }
}

impl RedisHost {
    /// The handle of the user this session acts as; dropped before the lock is let go of.
    fn acting_user(&self, locked: Locked<'_>) -> Result<Arc<User>, String> {
        if let Some(caller) = acl_users::override_name() {
            return acl_users::resolve(locked, &caller);
        }
        let name = self.user_name.as_deref().ok_or("NOPERM gearbox: this session has no ACL user to act as")?;
        // Every execute() asks: the owner's handle is kept per ACL generation, so the common
        // case is one atomic load and an Arc clone (no name hashing, no allocation).
        let generation = acl_users::generation();
        let mut cached = self.owner_handle.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((at, user)) = cached.as_ref() {
            if *at == generation {
                return Ok(user.clone());
            }
        }
        let user = acl_users::resolve(locked, name)?;
        *cached = Some((generation, user.clone()));
        Ok(user)
    }
}

impl keys::Caller for RedisHost {
    fn call_locked(&self, locked: Locked<'_>, args: &[&[u8]]) -> Value {
        if let Some(refused) = script_calls::refusal(args) {
            return Value::Error(refused);
        }
        let user = match self.acting_user(locked) {
            Ok(user) => user,
            Err(why) => return Value::Error(why),
        };
        let reply = redis_ffi::call(locked, locked.detached(), Some(&user), args);
        let reply = private_names::filter(args, reply, |key| open_key::may_access_key_named(locked, &user, key));
        drop(user);
        // gearbox's own calls do not pass the command filter, which watches for ACL changes.
        acl_users::note_command(args.first().copied().unwrap_or_default());
        reply
    }

    fn peek(&self, locked: Locked<'_>, key: &[u8]) -> Option<open_key::KeyPeek> {
        let user = self.acting_user(locked).ok()?;
        Some(open_key::peek_key(locked, Some(&user), key))
    }
}

impl Host for RedisHost {
    fn call(&self, args: &[&[u8]]) -> Value {
        let (recording, replaying) = {
            let top = self.top_level();
            (top.is_recording(), top.is_replaying())
        };
        if replaying {
            return self.top_level().replayed();
        }
        let reply = {
            let lock = RedisLock::acquire();
            keys::Caller::call_locked(self, lock.held(), args)
        };
        if recording {
            self.top_level().keep(&reply);
        }
        reply
    }

    fn call_if_free(&self, args: &[&[u8]]) -> Option<Value> {
        let _lock = RedisLock::try_acquire()?;
        Some(self.call(args))
    }

    fn read_keys(&self, keys: &[Vec<u8>], read_value: bool) -> Vec<KeyRecord> {
        if !read_value || keys.is_empty() {
            return keys.iter().map(|k| keys::name_only(k)).collect();
        }
        let lock = RedisLock::acquire();
        quiet::quietly(|| keys.iter().filter_map(|k| keys::read_key(lock.held(), self, k, true)).collect())
    }

    fn scan_keys(&self, scan: u64, pattern: &[u8], read_value: bool) -> Result<(u64, Vec<KeyRecord>), String> {
        let lock = RedisLock::acquire();
        let (next, (seen, _)) = self.walk_keys(lock.held(), scan, pattern, read_value, false)?;
        let records = quiet::quietly(|| {
            seen.into_iter()
                .filter_map(|s| match s {
                    key_scan::Seen::Record(r) => Some(r),
                    key_scan::Seen::Other(key) => keys::read_key(lock.held(), self, &key, read_value),
                })
                .collect()
        });
        Ok((next, records))
    }

    fn count_keys(&self, scan: u64, pattern: &[u8], read_value: bool) -> Result<(u64, u64), String> {
        let lock = RedisLock::acquire();
        let (next, (_, counted)) = self.walk_keys(lock.held(), scan, pattern, read_value, true)?;
        Ok((next, counted))
    }

    fn scan_close(&self, scan: u64) {
        self.scans.lock().unwrap_or_else(|e| e.into_inner()).remove(&scan);
    }

    fn log(&self, level: LogLevel, message: &str) {
        let per_second = (self.config)("LogLinesPerSecond").and_then(|v| v.parse().ok()).unwrap_or(100);
        let decision = self.log_limit.lock().unwrap_or_else(|e| e.into_inner()).line(std::time::Instant::now(), per_second);
        if decision.dropped_before > 0 {
            let session = self.session_id.get().map(String::as_str).unwrap_or_default();
            let text = format!(
                "gearbox: session {session} logged too fast: {} lines dropped (LogLinesPerSecond {per_second})",
                decision.dropped_before
            );
            redis_ffi::log("warning", &text);
        }
        if decision.write {
            redis_ffi::log(level.as_str(), &format!("GEARS: {message}"));
        }
    }

    fn config_get(&self, name: &str) -> Option<String> {
        (self.config)(name)
    }

    fn may_wait_for_lock(&self) -> bool {
        lock::must_wait()
    }

    fn atomic_begin(&self) -> Result<(), String> {
        let timeout = (self.config)("ScriptTimeoutMS").and_then(|v| v.parse().ok()).unwrap_or(5000);
        lock::atomic_begin(Duration::from_millis(timeout))
    }

    fn atomic_end(&self) {
        lock::atomic_end()
    }

    fn register(&self, spec: &Value) -> Result<String, String> {
        if self.top_level().is_running() {
            return self.top_level().register(self.user_name.as_deref(), spec);
        }
        // Inside an execution (RedisGears allows it): installed now, for this server's life.
        let owner = self.user_name.as_deref();
        let spec = top_level::checked_spec(owner, spec, &[], &[])?;
        let session = self.session.get().and_then(|s| s.upgrade()).ok_or("gearbox: register() after the session ended")?;
        let lock = RedisLock::acquire();
        let id = crate::gearbox::get().engine.registrations.next_id();
        control::get()?.install_at_run_time(lock.held(), session, spec, id.clone())?;
        Ok(id)
    }

    fn time_event(&self, seconds: u64, handle: i64, key: Option<Vec<u8>>) -> Result<bool, String> {
        let period = Duration::from_secs(seconds);
        if let Some(key) = key {
            let pending = top_level::PendingKeyed { key, handle, period };
            return self.top_level().keyed_time_event(pending, |k| {
                let lock = RedisLock::acquire();
                keys::Caller::call_locked(self, lock.held(), &[b"EXISTS", k]) != Value::Int(0)
            });
        }
        // A session rebuilt after a load does not repeat its top level's side effects.
        if self.top_level().is_replaying() {
            return Ok(true);
        }
        let session = self.session.get().cloned().ok_or("gearbox: registerTE before the session exists")?;
        let lock = RedisLock::acquire();
        control::get()?.start_time_event(lock.held(), session, handle, period)?;
        Ok(true)
    }

    fn command(&self, request: CommandRequest) -> Value {
        self.command_request(request)
    }
}

impl RedisHost {
    /// One batch of a key walk (`scan` 0 starts one); the walk is kept for the next batch
    /// unless it ended (next id 0).
    fn walk_keys(
        &self,
        locked: Locked<'_>,
        scan: u64,
        pattern: &[u8],
        read_value: bool,
        count_only: bool,
    ) -> Result<(u64, (Vec<key_scan::Seen>, u64)), String> {
        let user = self.acting_user(locked)?;
        let mut walk = if scan == 0 {
            key_scan::may_scan(locked, Some(&user))?;
            key_scan::KeyScan::new()
        } else {
            let taken = self.scans.lock().unwrap_or_else(|e| e.into_inner()).remove(&scan);
            taken.ok_or_else(|| "gearbox: unknown or finished key scan".to_string())?
        };
        let walked = walk.next_batch(locked, Some(&user), pattern, read_value, count_only);
        if walk.is_done() {
            return Ok((0, walked));
        }
        let id = if scan == 0 { self.next_scan.fetch_add(1, Ordering::Relaxed) } else { scan };
        self.scans.lock().unwrap_or_else(|e| e.into_inner()).insert(id, walk);
        Ok((id, walked))
    }

    /// `call_next` / `get_command` / `override_reply` against the command context of the job
    /// running on this thread (the control half, `events::control`).
    fn command_request(&self, request: CommandRequest) -> Value {
        let call_locked = |locked: Locked<'_>, argv: &[Vec<u8>]| {
            let argv: Vec<&[u8]> = argv.iter().map(Vec::as_slice).collect();
            keys::Caller::call_locked(self, locked, &argv)
        };
        match control::get() {
            Ok(control) => control.command(request, &call_locked),
            Err(e) => Value::Error(e),
        }
    }
}
