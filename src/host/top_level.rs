//! What a session's host does differently while the script's top level runs: it records every
//! `execute()` reply (the session's journal, persisted with its source), or, when a session is
//! being rebuilt after a load or on a replica, replays them instead of calling Redis; and it
//! collects the script's `register()` and key-bound `registerTE()` calls, which take effect only
//! if the whole script succeeds (a script that fails half-way leaves none behind).

use std::collections::{HashMap, VecDeque};

use gearbox_engine::errors::EngineError;
use gearbox_engine::{hook_policy, RegistrationSpec, Replacing, Value};

use super::acl_users;
use super::lock::RedisLock;

use super::control;
use crate::gearbox;

/// A time event the script's top level asked for with a key name (made by `events::keyed_timers`
/// if the script succeeds).
#[derive(Clone, Debug, PartialEq)]
pub struct PendingKeyed {
    pub key: Vec<u8>,
    pub handle: i64,
    pub period: std::time::Duration,
}

/// How the top level talks to Redis.
#[derive(Default)]
enum Phase {
    /// Not running top-level code: calls go to Redis; register() is refused.
    #[default]
    Idle,
    /// A new script: calls go to Redis and their replies are kept.
    Recording,
    /// Rebuilding a saved session: calls are answered from the journal.
    Replaying,
}

/// A `register()` the script made, waiting for the script to finish.
pub struct Pending {
    pub id: String,
    pub spec: RegistrationSpec,
}

#[derive(Default)]
pub struct TopLevel {
    phase: Phase,
    journal: VecDeque<Value>,
    /// Replaying: the id each `register()` call (by handle) had; a missing handle was unregistered.
    saved_ids: HashMap<i64, String>,
    pending: Vec<Pending>,
    /// Sessions this script replaces (UPGRADE / REPLACE_WITH): their triggers may be reused.
    replacing: Vec<String>,
    /// `registerTE(..., keyName=...)` calls, whose keys are made if the script succeeds.
    keyed: Vec<PendingKeyed>,
}

/// What a successful top level leaves for the command layer.
pub struct Finished {
    pub journal: Vec<Value>,
    pub registrations: Vec<Pending>,
    pub keyed_time_events: Vec<PendingKeyed>,
}

impl TopLevel {
    pub fn record(&mut self, replacing: Vec<String>) {
        *self = TopLevel { phase: Phase::Recording, replacing, ..TopLevel::default() };
    }

    pub fn replay(&mut self, journal: Vec<Value>, ids: Vec<(i64, String)>, replacing: Vec<String>) {
        *self = TopLevel {
            phase: Phase::Replaying,
            journal: journal.into(),
            saved_ids: ids.into_iter().collect(),
            replacing,
            ..TopLevel::default()
        };
    }

    /// End of the top level: what it registered and the journal (empty if it was a replay).
    pub fn finish(&mut self) -> Finished {
        let done = std::mem::take(self);
        Finished { journal: done.journal.into(), registrations: done.pending, keyed_time_events: done.keyed }
    }

    pub fn is_replaying(&self) -> bool {
        matches!(self.phase, Phase::Replaying)
    }

    pub fn is_recording(&self) -> bool {
        matches!(self.phase, Phase::Recording)
    }

    pub fn keep(&mut self, reply: &Value) {
        self.journal.push_back(reply.clone());
    }

    /// The recorded reply of the next top-level `execute()` of a replayed script.
    pub fn replayed(&mut self) -> Value {
        self.journal.pop_front().unwrap_or_else(|| {
            Value::Error("gearbox: while restoring this session its top level called execute() more often than when it first ran".into())
        })
    }

    /// `registerTE(seconds, fn, keyName)`: false if the key exists; the key is made when the
    /// script has succeeded. `key_exists` asks Redis.
    pub fn keyed_time_event(&mut self, pending: PendingKeyed, key_exists: impl FnOnce(&[u8]) -> bool) -> Result<bool, String> {
        match self.phase {
            Phase::Idle => Err("registerTE(keyName=...) can only be called from a script's top level in gearbox".into()),
            // A rebuilt session finds its keys in the loaded keyspace.
            Phase::Replaying => Ok(true),
            Phase::Recording => {
                if self.keyed.iter().any(|k| k.key == pending.key) || key_exists(&pending.key) {
                    return Ok(false);
                }
                self.keyed.push(pending);
                Ok(true)
            }
        }
    }

    /// `register()`: check the spec, hand out the id (a new one, or the saved one when replaying).
    /// `owner` is the session's: the sessions it replaces are that owner's.
    pub fn register(&mut self, owner: Option<&str>, spec: &Value) -> Result<String, String> {
        if matches!(self.phase, Phase::Idle) {
            return Err("register() can only be called from a script's top level in gearbox".into());
        }
        let earlier: Vec<&RegistrationSpec> = self.pending.iter().map(|p| &p.spec).collect();
        let spec = checked_spec(owner, spec, &self.replacing, &earlier)?;
        if matches!(self.phase, Phase::Replaying) {
            // Unregistered since the script first ran: the call returns, nothing is installed.
            let Some(id) = self.saved_ids.get(&spec.handle).cloned() else { return Ok(String::new()) };
            self.pending.push(Pending { id: id.clone(), spec });
            return Ok(id);
        }
        let id = gearbox::get().engine.registrations.next_id();
        self.pending.push(Pending { id: id.clone(), spec });
        Ok(id)
    }

    /// Whether top-level code runs now (recording or replaying).
    pub fn is_running(&self) -> bool {
        !matches!(self.phase, Phase::Idle)
    }
}

/// A `register()`'s spec once it passed every check: RedisGears' (a trigger taken by this
/// script's `earlier` registrations or by another session of `owner` not being replaced; hooks
/// and `commands=` against the command table), then gearbox's (only administrators hook).
pub fn checked_spec(
    owner: Option<&str>,
    spec: &Value,
    replacing: &[String],
    earlier: &[&RegistrationSpec],
) -> Result<RegistrationSpec, String> {
    let spec = RegistrationSpec::from_value(spec)?;
    let replacing = Replacing { owner, ids: replacing };
    if let Some(name) = &spec.trigger {
        if earlier.iter().any(|p| p.trigger.as_ref() == Some(name)) {
            return Err(EngineError::TriggerTakenInSession.to_string());
        }
        if gearbox::get().engine.registrations.trigger_taken(name, replacing) {
            return Err(EngineError::TriggerTaken.to_string());
        }
    }
    control::get()?.check_registration(&spec, earlier, replacing)?;
    hook_policy::may_register(&spec, || {
        let lock = RedisLock::acquire();
        owner.is_some_and(|owner| acl_users::is_admin(lock.held(), owner))
    })?;
    Ok(spec)
}
