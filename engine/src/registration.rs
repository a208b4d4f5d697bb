//! One registration: what a script's `register()` asked for (its [`RegistrationSpec`]), the
//! session it belongs to (held: a registration keeps its script's interpreter alive), and the
//! statistics RG.DUMPREGISTRATIONS shows.
//!
//! The spec crosses from the script to the host as a flat [`Value`] array of name/value pairs
//! (`gears.py` builds it), so both runtimes hand over the same thing.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use crate::codec::text_of;
use crate::execution::{Execution, Outcome};
use crate::port::StepInfo;
use crate::session::Session;
use crate::stream_state::{OnFailed, StreamState};
use crate::value::Value;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReaderKind {
    Keys,
    Stream,
    Command,
}

impl ReaderKind {
    pub fn parse(name: &str) -> Option<ReaderKind> {
        match name {
            "KeysReader" => Some(ReaderKind::Keys),
            "StreamReader" => Some(ReaderKind::Stream),
            "CommandReader" => Some(ReaderKind::Command),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ReaderKind::Keys => "KeysReader",
            ReaderKind::Stream => "StreamReader",
            ReaderKind::Command => "CommandReader",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Sync,
    Async,
    AsyncLocal,
}

impl Mode {
    pub fn parse(name: &str) -> Option<Mode> {
        match name {
            "sync" => Some(Mode::Sync),
            "async" => Some(Mode::Async),
            "async_local" => Some(Mode::AsyncLocal),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Sync => "sync",
            Mode::Async => "async",
            Mode::AsyncLocal => "async_local",
        }
    }
}

/// What `register()` asked for.
#[derive(Clone, Debug, PartialEq)]
pub struct RegistrationSpec {
    /// The callback's number inside the session's interpreter (`gears._registrations`).
    pub handle: i64,
    pub reader: ReaderKind,
    pub desc: Option<String>,
    pub mode: Mode,
    /// KeysReader: exact key, or a prefix when it ends with `*`.
    pub prefix: String,
    /// Lower-case keyspace event names; None: every event.
    pub event_types: Option<Vec<String>>,
    /// None: every key type.
    pub key_types: Option<Vec<String>>,
    pub read_value: bool,
    pub trigger: Option<String>,
    /// CommandReader `hook=`: the (lower-case) command this registration replaces, and the
    /// optional key prefix a key of the command must start with.
    pub hook: Option<String>,
    pub keyprefix: Option<String>,
    /// KeysReader `commands=`: fire only for events caused by these (lower-case) commands.
    pub commands: Option<Vec<String>>,
    pub inorder: bool,
    /// CommandReader trigger: other users may fire it (`shared=True`), and its `execute()`
    /// calls then act as the caller (invoker's rights) unless `rights='owner'` (definer's).
    pub shared: bool,
    pub owner_rights: bool,
    pub on_registered: bool,
    /// StreamReader: entries per batch, `duration` (ms, 0: none), failure policy, retry
    /// interval (s), whether processed entries are trimmed.
    pub batch: u64,
    pub duration_ms: u64,
    pub on_failed: OnFailed,
    pub retry_interval: u64,
    pub trim_stream: bool,
    /// The plan as RG.GETEXECUTION shows it for the executions this registration starts.
    pub steps: Vec<StepInfo>,
}

fn text_list(v: &Value) -> Option<Vec<String>> {
    match v {
        Value::Array(items) => Some(items.iter().map(text_of).collect()),
        _ => None,
    }
}

/// (type, name, arg) triples from a flat list of texts.
fn steps_of(v: &Value) -> Vec<StepInfo> {
    let texts = text_list(v).unwrap_or_default();
    texts.chunks_exact(3).map(|t| StepInfo { kind: t[0].clone(), name: t[1].clone(), arg: t[2].clone() }).collect()
}

fn as_bool(v: &Value) -> bool {
    matches!(v, Value::Int(n) if *n != 0)
}

fn opt_text(v: &Value) -> Option<String> {
    match v {
        Value::Nil => None,
        other => Some(text_of(other)),
    }
}

fn opt_list(items: &Option<Vec<String>>) -> Value {
    items.as_ref().map(|l| Value::bulks(l.iter().map(|s| s.as_bytes().to_vec()))).unwrap_or(Value::Nil)
}

fn opt_bulk(s: &Option<String>) -> Value {
    s.clone().map(Value::bulk).unwrap_or(Value::Nil)
}

impl RegistrationSpec {
    /// Parse the name/value array `gears.py` sends. Unknown names are ignored.
    pub fn from_value(v: &Value) -> Result<RegistrationSpec, String> {
        let Value::Array(items) = v else { return Err("gearbox: malformed registration".into()) };
        let mut spec = RegistrationSpec {
            handle: 0,
            reader: ReaderKind::Keys,
            desc: None,
            mode: Mode::Async,
            prefix: "*".into(),
            event_types: None,
            key_types: None,
            read_value: true,
            trigger: None,
            hook: None,
            keyprefix: None,
            commands: None,
            inorder: false,
            shared: false,
            owner_rights: false,
            on_registered: false,
            batch: 1,
            duration_ms: 0,
            on_failed: OnFailed::Continue,
            retry_interval: 1,
            trim_stream: true,
            steps: Vec::new(),
        };
        let number = |v: &Value| if let Value::Int(n) = v { (*n).max(0) as u64 } else { 0 };
        for pair in items.chunks(2) {
            let [name, value] = pair else { return Err("gearbox: malformed registration".into()) };
            match text_of(name).as_str() {
                "handle" => spec.handle = if let Value::Int(n) = value { *n } else { 0 },
                "reader" => spec.reader = ReaderKind::parse(&text_of(value)).ok_or("gearbox: unknown reader")?,
                "desc" => spec.desc = opt_text(value),
                "mode" => spec.mode = Mode::parse(&text_of(value)).ok_or("unknown execution mode")?,
                "prefix" => spec.prefix = text_of(value),
                "eventTypes" => spec.event_types = text_list(value).map(|l| l.iter().map(|e| e.to_ascii_lowercase()).collect()),
                "keyTypes" => spec.key_types = text_list(value),
                "readValue" => spec.read_value = as_bool(value),
                "trigger" => spec.trigger = opt_text(value),
                "hook" => spec.hook = opt_text(value).map(|h| h.to_ascii_lowercase()),
                "keyprefix" => spec.keyprefix = opt_text(value),
                "commands" => spec.commands = text_list(value).map(|l| l.iter().map(|c| c.to_ascii_lowercase()).collect()),
                "inorder" => spec.inorder = as_bool(value),
                "shared" => spec.shared = as_bool(value),
                "ownerRights" => spec.owner_rights = as_bool(value),
                "onRegistered" => spec.on_registered = as_bool(value),
                "batch" => spec.batch = number(value).max(1),
                "duration" => spec.duration_ms = number(value),
                "onFailedPolicy" => {
                    spec.on_failed = OnFailed::parse(&text_of(value)).ok_or("onFailedPolicy must be Continue/Abort/Retry")?
                }
                "onFailedRetryInterval" => spec.retry_interval = number(value),
                "trimStream" => spec.trim_stream = as_bool(value),
                "steps" => spec.steps = steps_of(value),
                _ => {}
            }
        }
        Ok(spec)
    }

    /// The array `from_value` reads (for persistence).
    pub fn to_value(&self) -> Value {
        Value::pairs([
            ("handle", Value::Int(self.handle)),
            ("reader", Value::bulk(self.reader.as_str())),
            ("desc", opt_bulk(&self.desc)),
            ("mode", Value::bulk(self.mode.as_str())),
            ("prefix", Value::bulk(self.prefix.clone())),
            ("eventTypes", opt_list(&self.event_types)),
            ("keyTypes", opt_list(&self.key_types)),
            ("readValue", Value::Int(self.read_value as i64)),
            ("trigger", opt_bulk(&self.trigger)),
            ("hook", opt_bulk(&self.hook)),
            ("keyprefix", opt_bulk(&self.keyprefix)),
            ("commands", opt_list(&self.commands)),
            ("inorder", Value::Int(self.inorder as i64)),
            ("shared", Value::Int(self.shared as i64)),
            ("ownerRights", Value::Int(self.owner_rights as i64)),
            ("onRegistered", Value::Int(self.on_registered as i64)),
            ("batch", Value::Int(self.batch as i64)),
            ("duration", Value::Int(self.duration_ms as i64)),
            ("onFailedPolicy", Value::bulk(self.on_failed.as_str())),
            ("onFailedRetryInterval", Value::Int(self.retry_interval as i64)),
            ("trimStream", Value::Int(self.trim_stream as i64)),
            ("steps", Value::bulks(self.steps.iter().flat_map(|s| [&s.kind, &s.name, &s.arg]).map(|t| t.as_bytes().to_vec()))),
        ])
    }

    /// Whether an `xadd` to `key` concerns this (StreamReader) registration.
    pub fn wants_stream(&self, key: &[u8]) -> bool {
        self.reader == ReaderKind::Stream && prefix_matches(&self.prefix, key)
    }

    /// Whether a keyspace event on `key` of kind `event` concerns this (KeysReader) registration.
    /// The key type is checked separately ([`RegistrationSpec::wants_type`]): it costs a look-up.
    pub fn wants_event(&self, key: &[u8], event: &str) -> bool {
        self.reader == ReaderKind::Keys
            && prefix_matches(&self.prefix, key)
            && self.event_types.as_ref().is_none_or(|l| l.iter().any(|e| e.eq_ignore_ascii_case(event)))
    }

    pub fn wants_type(&self, key_type: &str) -> bool {
        self.key_types.as_ref().is_none_or(|l| l.iter().any(|t| t == key_type))
    }

    /// RG.DUMPREGISTRATIONS' `args` for this reader.
    pub fn args_value(&self) -> Value {
        match self.reader {
            // A hook shows its command under "trigger", as RedisGears 1.2 does.
            ReaderKind::Command => Value::pairs([
                ("trigger", opt_bulk(&self.trigger.clone().or(self.hook.clone()))),
                ("inorder", Value::Int(self.inorder as i64)),
            ]),
            ReaderKind::Stream => Value::pairs([
                ("batchSize", Value::Int(self.batch as i64)),
                ("durationMS", Value::Int(self.duration_ms as i64)),
                ("stream", Value::bulk(self.prefix.clone())),
                ("trimStream", Value::Int(self.trim_stream as i64)),
                ("onFailedPolicy", Value::bulk(self.on_failed.as_str())),
                ("retryInterval", Value::Int(self.retry_interval as i64)),
            ]),
            ReaderKind::Keys => Value::pairs([
                ("regex", Value::bulk(self.prefix.clone())),
                ("eventTypes", opt_list(&self.event_types)),
                ("keyTypes", opt_list(&self.key_types)),
                ("hookCommands", opt_list(&self.commands)),
            ]),
        }
    }
}

/// RedisGears' register prefix: `abc*` matches keys starting with `abc`; anything else matches
/// exactly that key (it is not a glob).
pub fn prefix_matches(prefix: &str, key: &[u8]) -> bool {
    match prefix.strip_suffix('*') {
        Some(head) => key.starts_with(head.as_bytes()),
        None => key == prefix.as_bytes(),
    }
}

/// RG.DUMPREGISTRATIONS' statistics.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Stats {
    pub triggered: u64,
    pub success: u64,
    pub failures: u64,
    pub aborted: u64,
    pub last_ms: u64,
    pub total_ms: u64,
    pub last_error: Option<String>,
}

impl Stats {
    pub fn avg_ms(&self) -> f64 {
        let runs = self.success + self.failures + self.aborted;
        if runs == 0 {
            0.0
        } else {
            self.total_ms as f64 / runs as f64
        }
    }
}

pub struct Registration {
    pub id: String,
    pub session: Arc<Session>,
    pub spec: RegistrationSpec,
    stats: Mutex<Stats>,
    /// Kept executions this registration started, oldest first (MaxExecutionsPerRegistration).
    executions: Mutex<VecDeque<Arc<Execution>>>,
    /// The newest execution of an `inorder` registration: the next one starts after it.
    tail: Mutex<Option<Arc<Execution>>>,
    /// StreamReader batches and status.
    pub stream: Mutex<StreamState>,
    /// Made by `register()` inside an execution, not by the script's top level: replaying the
    /// script does not make it again, so it is not saved or replicated.
    pub made_at_run_time: bool,
}

fn locked<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Registration {
    pub fn new(id: String, session: Arc<Session>, spec: RegistrationSpec) -> Arc<Registration> {
        Self::make(id, session, spec, false)
    }

    /// One made by `register()` inside an execution (see `made_at_run_time`).
    pub fn new_at_run_time(id: String, session: Arc<Session>, spec: RegistrationSpec) -> Arc<Registration> {
        Self::make(id, session, spec, true)
    }

    fn make(id: String, session: Arc<Session>, spec: RegistrationSpec, made_at_run_time: bool) -> Arc<Registration> {
        Arc::new(Registration {
            id,
            session,
            stats: Mutex::new(Stats::default()),
            executions: Mutex::new(VecDeque::new()),
            tail: Mutex::new(None),
            stream: Mutex::new(StreamState::new(spec.batch, spec.duration_ms)),
            spec,
            made_at_run_time,
        })
    }

    pub fn stats(&self) -> Stats {
        locked(&self.stats).clone()
    }

    /// RG.CLEARREGISTRATIONSSTATS: counters, durations, the last error and (StreamReader) the
    /// estimated lag start again from zero.
    pub fn clear_stats(&self) {
        *locked(&self.stats) = Stats::default();
        locked(&self.stream).clear_lag();
    }

    /// An event reached this registration (counted before it runs, as RedisGears does).
    pub fn triggered(&self) {
        locked(&self.stats).triggered += 1;
    }

    /// Account for one finished run.
    pub fn finished(&self, outcome: &Outcome, took: Duration, aborted: bool) {
        let mut s = locked(&self.stats);
        let ms = took.as_millis() as u64;
        s.last_ms = ms;
        s.total_ms += ms;
        if aborted {
            s.aborted += 1;
        } else if let Some(first) = outcome.errors.first() {
            s.failures += 1;
            s.last_error = Some(first.clone());
        } else {
            s.success += 1;
            // RedisGears' StreamReader forgets its last error once a batch succeeds (a retry
            // that worked); other readers keep it until RG.CLEARREGISTRATIONSSTATS.
            if self.spec.reader == ReaderKind::Stream {
                s.last_error = None;
            }
        }
    }

    /// Remember a kept execution; returns the ones over `cap` (oldest first) for the caller to
    /// drop from the execution list.
    pub fn keep(&self, exec: Arc<Execution>, cap: usize) -> Vec<Arc<Execution>> {
        locked(&self.executions).push_back(exec);
        self.trim(cap)
    }

    /// Forget the oldest finished executions while more than `cap` are kept; returns them.
    pub fn trim(&self, cap: usize) -> Vec<Arc<Execution>> {
        let mut list = locked(&self.executions);
        let mut dropped = Vec::new();
        while list.len() > cap {
            match list.iter().position(|e| e.status().is_finished()) {
                Some(i) => dropped.extend(list.remove(i)),
                None => break,
            }
        }
        dropped
    }

    /// Every execution this registration keeps (finished or not).
    pub fn executions(&self) -> Vec<Arc<Execution>> {
        locked(&self.executions).iter().cloned().collect()
    }

    /// Abort this registration's executions that have not started yet (each concludes at once,
    /// its waiters called from here): RG.UNREGISTER abortpending, a pause, a failed stream batch.
    pub fn abort_pending(&self) {
        let pending: Vec<Arc<Execution>> =
            locked(&self.executions).iter().filter(|e| e.status() == crate::ExecutionStatus::Created).cloned().collect();
        for exec in pending {
            exec.abort();
        }
    }

    /// For `inorder`: swap in the newest execution, returning the one it must wait for.
    pub fn chain(&self, exec: &Arc<Execution>) -> Option<Arc<Execution>> {
        locked(&self.tail).replace(exec.clone())
    }
}

#[cfg(test)]
mod tests;
