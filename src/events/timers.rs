//! Time events (`registerTE(seconds, fn)`): a Redis timer on the main thread wakes every period
//! and runs the callback on the execution pool, like an async execution; the next period is
//! armed when the run ends, so runs of one time event never overlap. A time event holds its
//! session (the script's interpreter lives as long as it does) and stops when the session is
//! replaced by an UPGRADE / REPLACE_WITH or when a load replaces all registrations.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use gearbox_engine::{RunControl, Session, Value};

use crate::gearbox;
use crate::host::lock::RedisLock;
use crate::host::redis_ffi;
use crate::host::redis_hooks;

/// Bumped by every load: time events armed before it stop.
static EPOCH: AtomicU64 = AtomicU64::new(0);

struct TimeEvent {
    session: Arc<Session>,
    handle: i64,
    period: Duration,
    epoch: u64,
    /// A key-bound time event: false once its key is gone.
    alive: Option<Arc<AtomicBool>>,
}

/// Start a time event of `session`. The caller holds the Redis lock.
pub fn start(session: Weak<Session>, handle: i64, period: Duration) -> Result<(), String> {
    let session = session.upgrade().ok_or("gearbox: the script's session is gone")?;
    arm(Arc::new(TimeEvent { session, handle, period, epoch: EPOCH.load(Ordering::SeqCst), alive: None }));
    Ok(())
}

/// Start a key-bound time event (see `keyed_timers`), running while `alive`. The caller holds
/// the Redis lock.
pub fn start_keyed(session: Arc<Session>, handle: i64, period: Duration, alive: Arc<AtomicBool>) {
    arm(Arc::new(TimeEvent { session, handle, period, epoch: EPOCH.load(Ordering::SeqCst), alive: Some(alive) }));
}

/// Stop every time event (a load replaces the server's state).
pub fn stop_all() {
    EPOCH.fetch_add(1, Ordering::SeqCst);
}

fn arm(te: Arc<TimeEvent>) {
    let ms = te.period.as_millis().max(1) as u64;
    redis_hooks::after(ms, Box::new(move || fire(te)));
}

fn fire(te: Arc<TimeEvent>) {
    let key_gone = te.alive.as_ref().is_some_and(|a| !a.load(Ordering::SeqCst));
    if te.session.is_dead() || te.epoch != EPOCH.load(Ordering::SeqCst) || key_gone {
        return;
    }
    if te.alive.is_some() && redis_hooks::is_replica() {
        // A replica keeps the key (from an RDB) but does not run it; a promotion starts it.
        arm(te);
        return;
    }
    gearbox::get().engine.spawn(move || {
        let job = te.session.interpreter().event_job(te.handle, Value::Nil, false);
        let outcome = job.run(&RunControl::default());
        for e in &outcome.errors {
            redis_ffi::log("warning", &format!("gearbox: time event of session {} failed: {e}", te.session.id));
        }
        let _lock = RedisLock::acquire();
        arm(te);
    });
}
