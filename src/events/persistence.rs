//! The hooks Redis calls for persistence (see `host/redis_hooks.rs`).
//!
//! * save (after the keyspace, possibly in a forked child): the sessions that own registrations,
//!   encoded from Rust-side data only (`persist::snapshot`) — never Python in the child — with
//!   the wheels of the requirements they use, so another server can rebuild them offline.
//! * load: rebuild each saved session by replaying its script (`install::restore`); a session
//!   that cannot be rebuilt is logged and skipped, the rest of the load goes on.
//! * loading start: all registrations go (a load replaces them); loading end: the restored
//!   registrations' onRegistered callbacks run, now that the whole dataset is there, and the
//!   key-bound time events loaded with the keyspace start again (`keyed_timers`).

use gearbox_engine::persist;
use gearbox_engine::requirements::Requirement;

use super::install;
use crate::gearbox;
use crate::host::redis_ffi;

/// Always some bytes: Redis 7.0 writes the aux field's header whether or not we write a value,
/// and an empty field cannot be loaded back.
pub fn save() -> Option<Vec<u8>> {
    let gb = gearbox::get();
    let mut used: Vec<std::sync::Arc<Requirement>> = Vec::new();
    for r in gb.engine.registrations.all() {
        for req in r.session.requirements() {
            if !used.iter().any(|u| u.name == req.name) {
                used.push(req);
            }
        }
    }
    let sessions = persist::snapshot(&gb.engine.registrations);
    Some(persist::encode_with_requirements(&sessions, &super::requirements::exports(&used)))
}

pub fn load(blob: &[u8]) -> Result<(), String> {
    let (sessions, requirements) = persist::decode_with_requirements(blob)?;
    // One that fails is logged; the sessions using it then need it installed here already.
    let _ = super::requirements::import(&requirements);
    for saved in sessions {
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
