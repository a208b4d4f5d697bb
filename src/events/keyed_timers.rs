//! Key-bound time events (`registerTE(seconds, fn, keyName=...)`): the time event lives in a
//! key of type `rg_timeev` (`host::key_type`). Deleting, overwriting or flushing the key stops
//! it; the RDB keeps it with the script's recipe, so after a load its session is rebuilt (the
//! script replayed, as for registrations) and the timer armed again once the load has ended.
//!
//! The key is created only when the script's whole top level succeeded (like registrations).
//! As in RedisGears, the key is not replicated and a plain AOF rewrite does not keep it; a
//! replica that has one (from an RDB) does not run it.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use gearbox_engine::persist::{self, SavedSession};
use gearbox_engine::{codec, Session, Value};

use super::install;
use super::timers;
use crate::gearbox;
use crate::host::key_type::{self, KeyValue};
use crate::host::lock::{Locked, RedisLock};
use crate::host::redis_ffi::{self, Ctx};

pub use crate::host::top_level::PendingKeyed;

pub struct KeyedTimeEvent {
    handle: i64,
    period: Duration,
    /// The session once it exists here (created by a script, or rebuilt after a load).
    session: Mutex<Option<Arc<Session>>>,
    /// Read from an RDB: the session to rebuild at the end of the load.
    saved: Mutex<Option<SavedSession>>,
    /// False once Redis freed the key: the timer stops at its next tick.
    alive: Arc<AtomicBool>,
}

/// Loaded keys waiting for the end of the load.
static LOADED: Mutex<Vec<Arc<KeyedTimeEvent>>> = Mutex::new(Vec::new());

fn saved_session(session: &Session) -> SavedSession {
    SavedSession {
        id: session.id.clone(),
        description: session.description.clone(),
        recipe: session.recipe().unwrap_or_default(),
        registrations: Vec::new(),
    }
}

impl KeyValue for KeyedTimeEvent {
    fn save(&self) -> Vec<u8> {
        let saved = match &*self.session.lock().unwrap_or_else(|e| e.into_inner()) {
            Some(s) => Some(saved_session(s)),
            None => self.saved.lock().unwrap_or_else(|e| e.into_inner()).clone(),
        };
        codec::to_bytes(&Value::Array(vec![
            Value::Int(self.period.as_secs() as i64),
            Value::Int(self.handle),
            Value::Bulk(persist::encode(saved.as_slice())),
        ]))
    }

    fn freed(&self) {
        self.alive.store(false, Ordering::SeqCst);
        self.session.lock().unwrap_or_else(|e| e.into_inner()).take();
    }
}

fn load(bytes: &[u8]) -> Option<Arc<dyn KeyValue>> {
    let decoded = codec::decode(bytes).ok()?;
    let Value::Array(parts) = decoded else { return None };
    let [Value::Int(period), Value::Int(handle), Value::Bulk(blob)] = parts.as_slice() else { return None };
    let saved = persist::decode(blob).ok()?.into_iter().next();
    let te = Arc::new(KeyedTimeEvent {
        handle: *handle,
        period: Duration::from_secs((*period).max(0) as u64),
        session: Mutex::new(None),
        saved: Mutex::new(saved),
        alive: Arc::new(AtomicBool::new(true)),
    });
    LOADED.lock().unwrap_or_else(|e| e.into_inner()).push(te.clone());
    Some(te)
}

pub fn install_type(ctx: Ctx) -> Result<(), String> {
    key_type::install(ctx, load)
}

/// After a script succeeded: create its keys and start their timers. A key that appeared in
/// the meantime is left alone (logged).
pub fn create(locked: Locked<'_>, session: &Arc<Session>, pending: Vec<PendingKeyed>) {
    for p in pending {
        let te = Arc::new(KeyedTimeEvent {
            handle: p.handle,
            period: p.period,
            session: Mutex::new(Some(session.clone())),
            saved: Mutex::new(None),
            alive: Arc::new(AtomicBool::new(true)),
        });
        if key_type::set_if_absent(locked, &p.key, te.clone()) {
            timers::start_keyed(locked, session.clone(), p.handle, p.period, te.alive.clone());
        } else {
            let key = String::from_utf8_lossy(&p.key);
            redis_ffi::log("warning", &format!("gearbox: time event key {key} exists already; the time event was not created"));
        }
    }
}

/// The end of a load: rebuild the sessions of the loaded keys and arm their timers.
pub fn arm_loaded() {
    let loaded = std::mem::take(&mut *LOADED.lock().unwrap_or_else(|e| e.into_inner()));
    for te in loaded.into_iter().filter(|te| te.alive.load(Ordering::SeqCst)) {
        let Some(saved) = te.saved.lock().unwrap_or_else(|e| e.into_inner()).clone() else { continue };
        let id = saved.id.clone();
        let session = match gearbox::get().engine.sessions.live(saved.recipe.user.as_deref(), &id).into_iter().next() {
            Some(s) => Ok(s),
            None => install::rebuild(saved),
        };
        match session {
            Ok(session) => {
                *te.session.lock().unwrap_or_else(|e| e.into_inner()) = Some(session.clone());
                timers::start_keyed(RedisLock::acquire().held(), session, te.handle, te.period, te.alive.clone());
            }
            Err(e) => redis_ffi::log("warning", &format!("gearbox: could not restore the time event of session {id}: {e}")),
        }
    }
}

/// A load begins: keys loaded by an earlier, failed one are forgotten.
pub fn clear_loaded() {
    LOADED.lock().unwrap_or_else(|e| e.into_inner()).clear();
}
