//! Per-user quotas: how many live sessions, registrations, time events and UNBLOCKING executions
//! not yet done one ACL user may have (MaxSessionsPerUser, MaxRegistrationsPerUser,
//! MaxTimeEventsPerUser, MaxUnblockingExecutionsPerUser; generous defaults). Administrators (`acl_users::is_admin`)
//! are exempt. Checked before anything is made, so a refused request leaves nothing behind.
//! Called on Redis' main thread (commands), which holds the Redis lock.

use crate::gearbox;
use crate::host::acl_users;

fn check(owner: &str, config: &str, what: &str, used: usize, adding: usize) -> Result<(), String> {
    let limit = gearbox::get().config().limit(config).max(0) as usize;
    if used + adding <= limit || acl_users::is_admin(owner) {
        return Ok(());
    }
    Err(format!("gearbox: user '{owner}' has reached {config} ({limit} {what}); free some or ask an administrator to raise it"))
}

/// Before a new session of `owner`.
pub fn new_session(owner: Option<&str>) -> Result<(), String> {
    let Some(owner) = owner else { return Ok(()) };
    let used = gearbox::get().engine.sessions.summaries().iter().filter(|s| !s.dead && s.owner.as_deref() == Some(owner)).count();
    check(owner, "MaxSessionsPerUser", "live sessions", used, 1)
}

/// Before installing `adding` registrations of `owner`, replacing those of sessions `replacing`.
pub fn new_registrations(owner: Option<&str>, adding: usize, replacing: &[String]) -> Result<(), String> {
    let Some(owner) = owner.filter(|_| adding > 0) else { return Ok(()) };
    let used = gearbox::get()
        .engine
        .registrations
        .all()
        .iter()
        .filter(|r| r.session.owner.as_deref() == Some(owner) && !replacing.contains(&r.session.id))
        .count();
    check(owner, "MaxRegistrationsPerUser", "registrations", used, adding)
}

/// Before a new time event (`registerTE`) of `owner`.
pub fn new_time_event(owner: Option<&str>) -> Result<(), String> {
    let Some(owner) = owner else { return Ok(()) };
    check(owner, "MaxTimeEventsPerUser", "time events", super::timers::running_of(owner), 1)
}

/// Before an UNBLOCKING execution of `owner`.
pub fn new_unblocking(owner: Option<&str>) -> Result<(), String> {
    let Some(owner) = owner else { return Ok(()) };
    let used = gearbox::get()
        .engine
        .executions
        .all()
        .iter()
        .filter(|e| e.kept && !e.registered && !e.status().is_finished() && e.owner.as_deref() == Some(owner))
        .count();
    check(owner, "MaxUnblockingExecutionsPerUser", "UNBLOCKING executions running", used, 1)
}
