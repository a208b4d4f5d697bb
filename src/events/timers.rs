//! Time events (`registerTE(seconds, fn)`): a Redis timer on the main thread wakes every period
//! and runs the callback on the execution pool, like an async execution; the next period is
//! armed when the run ends, so runs of one time event never overlap. A time event holds its
//! session (the script's interpreter lives as long as it does) and stops when the session is
//! replaced by an UPGRADE / REPLACE_WITH or when a load replaces all registrations.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use gearbox_engine::{RunControl, Session, Value};

use crate::gearbox;
use crate::host::lock::{Locked, RedisLock};
use crate::host::redis_ffi;
use crate::host::redis_hooks;

/// Bumped by every load: time events armed before it stop.
static EPOCH: AtomicU64 = AtomicU64::new(0);

struct TimeEvent {
    session: Arc<Session>,
    /// Counted against its owner's MaxTimeEventsPerUser while it lives (see [`running_of`]).
    _counted: Counted,
    handle: i64,
    period: Duration,
    epoch: u64,
    /// A key-bound time event: false once its key is gone.
    alive: Option<Arc<AtomicBool>>,
}

/// Live time events per owner, for the MaxTimeEventsPerUser quota.
static RUNNING: Mutex<Option<HashMap<String, usize>>> = Mutex::new(None);

/// One live time event of an owner: counted while it exists.
struct Counted(Option<String>);

impl Counted {
    fn new(owner: Option<String>) -> Counted {
        if let Some(o) = &owner {
            *RUNNING.lock().unwrap_or_else(|e| e.into_inner()).get_or_insert_with(HashMap::new).entry(o.clone()).or_default() += 1;
        }
        Counted(owner)
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        if let Some(o) = &self.0 {
            if let Some(n) = RUNNING.lock().unwrap_or_else(|e| e.into_inner()).get_or_insert_with(HashMap::new).get_mut(o) {
                *n = n.saturating_sub(1);
            }
        }
    }
}

/// How many time events of `owner` are live.
pub fn running_of(owner: &str) -> usize {
    RUNNING.lock().unwrap_or_else(|e| e.into_inner()).as_ref().and_then(|m| m.get(owner).copied()).unwrap_or(0)
}

/// Start a time event of `session`.
pub fn start(locked: Locked<'_>, session: Weak<Session>, handle: i64, period: Duration) -> Result<(), String> {
    let session = session.upgrade().ok_or("gearbox: the script's session is gone")?;
    super::quotas::new_time_event(locked, session.owner.as_deref())?;
    let counted = Counted::new(session.owner.clone());
    arm(locked, Arc::new(TimeEvent { session, _counted: counted, handle, period, epoch: EPOCH.load(Ordering::SeqCst), alive: None }));
    Ok(())
}

/// Start a key-bound time event (see `keyed_timers`), running while `alive`.
pub fn start_keyed(locked: Locked<'_>, session: Arc<Session>, handle: i64, period: Duration, alive: Arc<AtomicBool>) {
    let counted = Counted::new(session.owner.clone());
    arm(
        locked,
        Arc::new(TimeEvent { session, _counted: counted, handle, period, epoch: EPOCH.load(Ordering::SeqCst), alive: Some(alive) }),
    );
}

/// Stop every time event (a load replaces the server's state).
pub fn stop_all() {
    EPOCH.fetch_add(1, Ordering::SeqCst);
}

fn arm(locked: Locked<'_>, te: Arc<TimeEvent>) {
    let ms = te.period.as_millis().max(1) as u64;
    redis_hooks::after(locked, ms, Box::new(move |locked| fire(locked, te)));
}

fn fire(locked: Locked<'_>, te: Arc<TimeEvent>) {
    let key_gone = te.alive.as_ref().is_some_and(|a| !a.load(Ordering::SeqCst));
    if te.session.is_dead() || te.epoch != EPOCH.load(Ordering::SeqCst) || key_gone {
        return;
    }
    if te.alive.is_some() && redis_hooks::is_replica(locked) {
        // A replica keeps the key (from an RDB) but does not run it; a promotion starts it.
        arm(locked, te);
        return;
    }
    if let Err(why) = super::fire::owner_usable(locked, &te.session) {
        // Its owner was deleted or disabled: it stops (a re-enabled owner's script re-registers).
        redis_ffi::log("warning", &format!("gearbox: time event of session {} stopped: {why}", te.session.id));
        return;
    }
    gearbox::get().engine.spawn(move || {
        let job = te.session.interpreter().event_job(te.handle, Value::Nil, false);
        // Like every job: atomic() blocks it opens are watched and closed with it.
        let outcome = super::fire::run_job(job, &RunControl::default());
        for e in &outcome.errors {
            redis_ffi::log("warning", &format!("gearbox: time event of session {} failed: {e}", te.session.id));
        }
        let lock = RedisLock::acquire();
        arm(lock.held(), te);
    });
}
