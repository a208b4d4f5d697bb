//! Per-user quotas: how many live sessions, registrations, time events and UNBLOCKING executions
//! not yet done one ACL user may have (MaxSessionsPerUser, MaxRegistrationsPerUser,
//! MaxTimeEventsPerUser, MaxUnblockingExecutionsPerUser; generous defaults). Administrators (`acl_users::is_admin`)
//! are exempt. Checked before anything is made, so a refused request leaves nothing behind.
//! Each check takes the proof that the Redis lock is held (the administrator rule asks Redis).

use crate::gearbox;
use crate::host::acl_users;
use crate::host::lock::Locked;

fn check(locked: Locked<'_>, owner: &str, config: &str, what: &str, used: usize, adding: usize) -> Result<(), String> {
    let limit = gearbox::get().config().limit(config).max(0) as usize;
    if used + adding <= limit || acl_users::is_admin(locked, owner) {
        return Ok(());
    }
    Err(format!("gearbox: user '{owner}' has reached {config} ({limit} {what}); free some or ask an administrator to raise it"))
}

/// Before a new session of `owner`.
pub fn new_session(locked: Locked<'_>, owner: Option<&str>) -> Result<(), String> {
    let Some(owner) = owner else { return Ok(()) };
    let used = gearbox::get().engine.sessions.summaries().iter().filter(|s| !s.dead && s.owner.as_deref() == Some(owner)).count();
    check(locked, owner, "MaxSessionsPerUser", "live sessions", used, 1)
}

/// Before installing `adding` registrations of `owner`, replacing those of sessions `replacing`.
pub fn new_registrations(locked: Locked<'_>, owner: Option<&str>, adding: usize, replacing: &[String]) -> Result<(), String> {
    let Some(owner) = owner.filter(|_| adding > 0) else { return Ok(()) };
    let used = gearbox::get()
        .engine
        .registrations
        .all()
        .iter()
        .filter(|r| r.session.owner.as_deref() == Some(owner) && !replacing.contains(&r.session.id))
        .count();
    check(locked, owner, "MaxRegistrationsPerUser", "registrations", used, adding)
}

/// Before a new time event (`registerTE`) of `owner`.
pub fn new_time_event(locked: Locked<'_>, owner: Option<&str>) -> Result<(), String> {
    let Some(owner) = owner else { return Ok(()) };
    check(locked, owner, "MaxTimeEventsPerUser", "time events", super::timers::running_of(owner), 1)
}

/// Before an UNBLOCKING execution of `owner`.
pub fn new_unblocking(locked: Locked<'_>, owner: Option<&str>) -> Result<(), String> {
    let Some(owner) = owner else { return Ok(()) };
    let used = gearbox::get()
        .engine
        .executions
        .all()
        .iter()
        .filter(|e| e.kept && !e.registered && !e.status().is_finished() && e.owner.as_deref() == Some(owner))
        .count();
    check(locked, owner, "MaxUnblockingExecutionsPerUser", "UNBLOCKING executions running", used, 1)
}
