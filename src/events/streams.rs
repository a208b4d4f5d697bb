//! StreamReader registrations: `xadd` events count entries per stream key; a full batch (or the
//! `duration` timer) starts a run, which reads the batch through the consumer group
//! `__gears_consumer_group__` in the script's interpreter (`gears._fire`), runs the steps, and
//! acknowledges (and trims) what it processed. `onFailedPolicy` decides what a failed batch
//! does: continue, abort the registration, or retry after `onFailedRetryInterval`. Entries left
//! unacknowledged (a failed batch, a restart) are read again first, so they are processed after
//! a reload. The decisions are `gearbox_engine::stream_state`'s; this file carries them out.
//! Everything here runs holding the Redis lock: each function takes the proof ([`Locked`]).

use std::sync::{Arc, MutexGuard};

use gearbox_engine::errors;
use gearbox_engine::stream_state::{Next, OnFailed, StreamState};
use gearbox_engine::{ExecutionStatus, Outcome, ReaderKind, Registration, Value};

use super::fire::{fire, Fired};

use crate::gearbox;
use crate::host::lock::{Locked, RedisLock};
use crate::host::redis_ffi;
use crate::host::redis_hooks;

fn state(reg: &Registration) -> MutexGuard<'_, StreamState> {
    reg.stream.lock().unwrap_or_else(|e| e.into_inner())
}

/// An entry was added to stream `key`.
pub fn on_xadd(locked: Locked<'_>, key: &[u8]) {
    for reg in gearbox::get().engine.registrations.all().into_iter().filter(|r| r.spec.wants_stream(key)) {
        let next = state(&reg).added(key);
        act(locked, reg, key.to_vec(), next, false);
    }
}

/// Carry out `next`; `drain`: a run started now reads the whole backlog (see `run_batch`).
fn act(locked: Locked<'_>, reg: Arc<Registration>, key: Vec<u8>, next: Next, drain: bool) {
    match next {
        Next::Nothing => {}
        Next::Run => run_batch(locked, reg, key, drain),
        Next::Wait => {
            let ms = reg.spec.duration_ms;
            redis_hooks::after(
                locked,
                ms,
                Box::new(move |locked| {
                    let next = state(&reg).timer(&key);
                    act(locked, reg, key, next, false);
                }),
            );
        }
        Next::Retry => {
            let ms = reg.spec.retry_interval.max(1) * 1000;
            redis_hooks::after(
                locked,
                ms,
                Box::new(move |locked| {
                    if !is_installed(&reg) {
                        return;
                    }
                    if redis_hooks::is_replica(locked) {
                        // A replica processes no stream: the retry waits for a promotion.
                        act(locked, reg, key, Next::Retry, true);
                        return;
                    }
                    let next = state(&reg).retry(&key);
                    act(locked, reg.clone(), key, next, true);
                    // Batches of other streams aborted when this one failed run again too.
                    let waiting = state(&reg).waiting();
                    for key in waiting {
                        let next = state(&reg).timer(&key);
                        act(locked, reg.clone(), key, next, true);
                    }
                }),
            );
        }
    }
}

/// Run one batch of `key`; with `drain`, batch after batch until the stream has nothing left for
/// the group (the backlog found by a kick or a retry, which no event counted).
fn run_batch(locked: Locked<'_>, reg: Arc<Registration>, key: Vec<u8>, drain: bool) {
    if !is_installed(&reg) {
        return; // unregistered meanwhile
    }
    if redis_hooks::is_replica(locked) {
        // Demoted since the batch was due (a `duration` timer): it runs after a promotion.
        state(&reg).aborted(&key);
        return;
    }
    let record = Value::Array(vec![
        Value::Bulk(key.clone()),
        Value::bulk(reg.spec.on_failed.as_str()),
        Value::bulk(if drain { "drain" } else { "batch" }),
    ]);
    match fire(locked, &reg, record, None) {
        Fired::Inline(outcome) => finished(locked, reg, key, &outcome),
        Fired::Started(exec) => {
            let execution = Arc::downgrade(&exec);
            exec.on_done(move |outcome| {
                // Aborted before it started: its status says so (a running batch that was
                // aborted ends `done` with the same error text, after reading its entries).
                let never_ran = execution.upgrade().is_some_and(|e| e.status() == ExecutionStatus::Aborted);
                let lock = RedisLock::acquire();
                if never_ran {
                    let next = state(&reg).aborted(&key);
                    act(lock.held(), reg, key, next, false);
                } else {
                    finished(lock.held(), reg, key, outcome);
                }
            })
        }
    }
}

/// Whether `reg` is still the installed registration of its id.
fn is_installed(reg: &Arc<Registration>) -> bool {
    gearbox::get().engine.registrations.get(&reg.id).is_some_and(|r| Arc::ptr_eq(&r, reg))
}

/// This server was promoted: its StreamReader registrations read what waits in their streams
/// (entries the old master read but never acknowledged, entries added meanwhile).
pub fn promoted(locked: Locked<'_>) {
    let gb = gearbox::get();
    for reg in gb.engine.registrations.all().into_iter().filter(|r| r.spec.reader == ReaderKind::Stream) {
        kick(locked, &reg);
    }
}

fn finished(locked: Locked<'_>, reg: Arc<Registration>, key: Vec<u8>, outcome: &Outcome) {
    if outcome.errors.iter().any(|e| e.starts_with(errors::STREAM_PAUSE)) {
        // flat_error('PAUSE…') from the steps: the registration pauses, as RG.PAUSEREGISTRATIONS
        // would; the batch was not acknowledged and runs again after the unpause.
        state(&reg).finished(&key, true, OnFailed::Continue);
        pause(&reg);
        return;
    }
    let failed = !outcome.errors.is_empty();
    let next = state(&reg).finished(&key, failed, reg.spec.on_failed);
    if failed && reg.spec.on_failed != OnFailed::Continue {
        // As in RedisGears: batches queued behind a failure (retry or abort) do not start.
        reg.abort_pending();
    }
    act(locked, reg, key, next, false);
}

/// A glob matching exactly the keys a register prefix matches.
fn glob_of(prefix: &str) -> String {
    let (head, star) = match prefix.strip_suffix('*') {
        Some(h) => (h, "*"),
        None => (prefix, ""),
    };
    let mut out: String = head.chars().flat_map(|c| if "*?[]\\".contains(c) { vec!['\\', c] } else { vec![c] }).collect();
    out.push_str(star);
    out
}

/// Start a batch on every existing stream of `reg` (a new registration, an unpause, the end of
/// a load): entries may be waiting there that no event announced.
pub fn kick(locked: Locked<'_>, reg: &Arc<Registration>) {
    let mut cursor = b"0".to_vec();
    loop {
        let args: Vec<Vec<u8>> = vec![
            b"SCAN".to_vec(),
            cursor.clone(),
            b"MATCH".to_vec(),
            glob_of(&reg.spec.prefix).into_bytes(),
            b"COUNT".to_vec(),
            b"1000".to_vec(),
            b"TYPE".to_vec(),
            b"stream".to_vec(),
        ];
        let Value::Array(parts) = redis_ffi::call(locked, locked.detached(), None, &args) else { return };
        let [Value::Bulk(next), Value::Array(keys)] = parts.as_slice() else { return };
        for key in keys {
            if let Value::Bulk(key) = key {
                let next = state(reg).kick(key);
                act(locked, reg.clone(), key.clone(), next, true);
            }
        }
        if next == b"0" {
            return;
        }
        cursor = next.clone();
    }
}

/// Pause: batches queued and not started are aborted (counted in numAborted; their entries
/// run after the unpause).
pub fn pause(reg: &Registration) {
    state(reg).pause();
    // Each concludes at once, and its stream is told from inside this call.
    reg.abort_pending();
}

pub fn unpause(locked: Locked<'_>, reg: &Arc<Registration>) {
    let keys = state(reg).unpause();
    for key in keys {
        let next = state(reg).kick(&key);
        act(locked, reg.clone(), key, next, true);
    }
    kick(locked, reg);
}

#[cfg(test)]
mod tests {
    use super::glob_of;

    #[test]
    fn prefixes_become_globs_that_match_only_them() {
        assert_eq!(glob_of("s:*"), "s:*");
        assert_eq!(glob_of("exact"), "exact");
        assert_eq!(glob_of("a*b?*"), "a\\*b\\?*");
    }
}
