//! The hooks Redis calls for persistence (see `host/redis_hooks.rs`).
//!
//! * save (after the keyspace, possibly in a forked child): the sessions that own registrations,
//!   encoded from Rust-side data only (`persist::snapshot`) — never Python in the child.
//! * load: rebuild each saved session by replaying its script (`install::restore`); a session
//!   that cannot be rebuilt is logged and skipped, the rest of the load goes on.
//! * loading start: all registrations go (a load replaces them); loading end: the restored
//!   registrations' onRegistered callbacks run, now that the whole dataset is there, and the
//!   key-bound time events loaded with the keyspace start again (`keyed_timers`).

use gearbox_engine::persist;

use super::install;
use crate::gearbox;
use crate::host::redis_ffi;

/// Always some bytes: Redis 7.0 writes the aux field's header whether or not we write a value,
/// and an empty field cannot be loaded back.
pub fn save() -> Option<Vec<u8>> {
    Some(persist::encode(&persist::snapshot(&gearbox::get().engine.registrations)))
}

pub fn load(blob: &[u8]) -> Result<(), String> {
    for saved in persist::decode(blob)? {
        let id = saved.id.clone();
        let count = saved.registrations.len();
        match install::restore(saved, Vec::new(), true) {
            Ok(()) => redis_ffi::log("notice", &format!("gearbox: restored session {id} with {count} registration(s)")),
            Err(e) => redis_ffi::log("warning", &format!("gearbox: could not restore session {id}: {e}")),
        }
    }
    Ok(())
}

pub fn loading(started: bool) {
    if started {
        install::clear_deferred();
        super::keyed_timers::clear_loaded();
        super::timers::stop_all();
        let removed = gearbox::get().engine.registrations.clear();
        drop(removed);
    } else {
        install::run_deferred();
        super::keyed_timers::arm_loaded();
    }
}
