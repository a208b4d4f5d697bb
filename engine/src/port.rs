//! The ports between the engine and the outside: what a runtime (native sub-interpreters, wasm
//! instances) implements, and what the host (the Redis side) offers to a script's interpreter.
//!
//! A runtime never sees Redis types and the host never sees Python or wasm types: everything that
//! crosses is a [`Value`], a [`KeyRecord`] or plain Rust data.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::execution::Outcome;
use crate::value::Value;

/// Redis log levels a script may use with `log()`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogLevel {
    Debug,
    Verbose,
    Notice,
    Warning,
}

impl LogLevel {
    pub fn parse(name: &str) -> Option<LogLevel> {
        match name.to_ascii_lowercase().as_str() {
            "debug" => Some(LogLevel::Debug),
            "verbose" => Some(LogLevel::Verbose),
            "notice" => Some(LogLevel::Notice),
            "warning" => Some(LogLevel::Warning),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            LogLevel::Debug => "debug",
            LogLevel::Verbose => "verbose",
            LogLevel::Notice => "notice",
            LogLevel::Warning => "warning",
        }
    }
}

/// The value part of a key read by the KeysReader.
#[derive(Clone, Debug, PartialEq)]
pub enum KeyValue {
    /// Not read (`readValue=False`), or a type whose value RedisGears does not read.
    None,
    String(Vec<u8>),
    Hash(Vec<(Vec<u8>, Vec<u8>)>),
    List(Vec<Vec<u8>>),
}

/// One key as the KeysReader hands it to a script.
#[derive(Clone, Debug, PartialEq)]
pub struct KeyRecord {
    pub key: Vec<u8>,
    /// `string, hash, list, set, zset, module, empty, unknown` (streams are `unknown`, as in 1.2).
    pub key_type: &'static str,
    pub value: KeyValue,
}

/// What a script may ask of the Redis command that caused its execution: a hooked command
/// (CommandReader `hook=`) or one a KeysReader `commands=` registration watches.
#[derive(Clone, Debug, PartialEq)]
pub enum CommandRequest {
    /// `call_next(*args)`: the next hook of the command, or the command itself, with these
    /// arguments (the command name is prepended).
    Next(Vec<Vec<u8>>),
    /// `get_command()`: the command's arguments, name first.
    Get,
    /// `override_reply(value)`: what the client gets instead of the command's own reply.
    OverrideReply(Value),
}

impl CommandRequest {
    /// The request as a runtime receives it from `gears.py`: an operation name and its argument
    /// (`next`: a list of str/bytes; `get`: ignored; `override`: the value).
    pub fn from_parts(op: &str, arg: Value) -> Result<CommandRequest, String> {
        match (op, arg) {
            ("next", Value::Array(items)) => items
                .into_iter()
                .map(|v| match v {
                    Value::Bulk(b) => Ok(b),
                    _ => Err("call_next arguments must be strings".to_string()),
                })
                .collect::<Result<Vec<_>, _>>()
                .map(CommandRequest::Next),
            ("get", _) => Ok(CommandRequest::Get),
            ("override", v) => Ok(CommandRequest::OverrideReply(v)),
            _ => Err("gearbox: malformed command request".into()),
        }
    }
}

/// What a script's interpreter may ask of Redis. One per session: it carries the ACL user of
/// the client whose `RG.PYEXECUTE` created the session.
pub trait Host: Send + Sync {
    /// Run a Redis command (`execute()`); errors come back as `Value::Error`.
    fn call(&self, args: &[&[u8]]) -> Value;
    /// `call`, but only if it needs no waiting for the Redis lock (it is free or already held
    /// by this thread); None otherwise, and the runtime must let go of its interpreter and use
    /// `call`. Lets a runtime keep its interpreter across most calls.
    fn call_if_free(&self, _args: &[&[u8]]) -> Option<Value> {
        None
    }
    /// Read keys for the KeysReader under one acquisition of the Redis lock.
    fn read_keys(&self, keys: &[Vec<u8>], read_value: bool) -> Vec<KeyRecord>;
    /// The KeysReader's walk of the keyspace: the next batch of keys matching `pattern` (Redis
    /// glob rules), read under one acquisition of the Redis lock. `scan` 0 starts a walk; the
    /// returned id continues it and is 0 once every key was visited. Errors (ACL) are texts.
    fn scan_keys(&self, scan: u64, pattern: &[u8], read_value: bool) -> Result<(u64, Vec<KeyRecord>), String>;
    /// `scan_keys` for a plan that only counts the reader's records (`GB().count()`): the
    /// number of records the batch would have held (same keys, same ACL and expiry rules),
    /// without reading or copying them.
    fn count_keys(&self, scan: u64, pattern: &[u8], read_value: bool) -> Result<(u64, u64), String> {
        self.scan_keys(scan, pattern, read_value).map(|(next, records)| (next, records.len() as u64))
    }
    /// Forget an unfinished walk (its reader was dropped before the end).
    fn scan_close(&self, scan: u64);
    fn log(&self, level: LogLevel, message: &str);
    /// A gears config or user ("extra") config, as a string.
    fn config_get(&self, name: &str) -> Option<String>;
    /// Whether a call may have to wait for the Redis lock; a runtime must then let go of its
    /// interpreter (GIL / store) while it waits, or it may deadlock with Redis' main thread.
    fn may_wait_for_lock(&self) -> bool;
    /// Take the Redis lock for an `atomic()` block (no-op on the main thread).
    fn atomic_begin(&self) -> Result<(), String>;
    fn atomic_end(&self);
    /// `register()` at a script's top level: `spec` is the name/value array gears.py builds
    /// (see `RegistrationSpec`). Returns the registration id, or the error text to raise.
    fn register(&self, spec: &Value) -> Result<String, String>;
    /// `registerTE(seconds, fn, keyName)`: call the callback known by `handle` every `seconds`;
    /// with a key, the time event lives in that key. Ok(false): the key exists already.
    fn time_event(&self, seconds: u64, handle: i64, key: Option<Vec<u8>>) -> Result<bool, String>;
    /// `call_next` / `get_command` / `override_reply`; errors come back as `Value::Error`.
    fn command(&self, request: CommandRequest) -> Value;
}

/// One step of an execution plan, as RG.GETEXECUTION shows it.
#[derive(Clone, Debug, PartialEq)]
pub struct StepInfo {
    pub kind: String,
    pub name: String,
    pub arg: String,
}

/// Lets the engine stop a running job: the flag says "stop", the interrupter (set by the runtime
/// while it runs user code) makes running code notice.
#[derive(Default)]
pub struct RunControl {
    aborted: AtomicBool,
    interrupter: InterruptHandle,
    deadline: Option<(Instant, Duration)>,
}

/// A handle on whatever interrupts a run's code right now (the runtime's interrupter while its
/// code runs, nothing otherwise), for a watcher that outlives the borrow of its `RunControl`
/// (the host stops an `atomic()` block held past ScriptTimeoutMS with it).
#[derive(Clone, Default)]
pub struct InterruptHandle(Arc<Mutex<Option<Interrupter>>>);

/// What interrupts a run's code (set by the runtime while that code runs).
pub type Interrupter = Arc<dyn Fn() + Send + Sync>;

impl InterruptHandle {
    fn current(&self) -> Option<Interrupter> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Interrupt the code running now, if any (outside any lock of the caller's).
    pub fn interrupt(&self) {
        if let Some(f) = self.current() {
            f();
        }
    }
}

impl RunControl {
    /// For a job run inline (a sync registration): the runtime stops it after `timeout`.
    pub fn with_timeout(timeout: Duration) -> RunControl {
        RunControl { deadline: Some((Instant::now() + timeout, timeout)), ..RunControl::default() }
    }

    pub fn deadline(&self) -> Option<Instant> {
        self.deadline.map(|d| d.0)
    }

    pub fn timeout(&self) -> Option<Duration> {
        self.deadline.map(|d| d.1)
    }

    pub fn is_aborted(&self) -> bool {
        self.aborted.load(Ordering::SeqCst)
    }

    /// Mark aborted and return the interrupter to call (outside any lock), if code is running.
    pub fn abort(&self) -> Option<Interrupter> {
        self.aborted.store(true, Ordering::SeqCst);
        self.interrupter.current()
    }

    /// Set by the runtime while it runs user code; cleared when it stops.
    pub fn set_interrupter(&self, f: Option<Interrupter>) {
        *self.interrupter.0.lock().unwrap_or_else(|e| e.into_inner()) = f;
    }

    pub fn interrupt_handle(&self) -> InterruptHandle {
        self.interrupter.clone()
    }
}

/// The work of one execution, prepared by a script and run on an execution thread.
pub trait Job: Send {
    fn steps(&self) -> Vec<StepInfo>;
    fn run(self: Box<Self>, control: &RunControl) -> Outcome;
}

/// What running a script's top-level code produced.
pub enum ScriptOutcome {
    /// The script neither ran nor registered anything.
    Done,
    /// The script called `run()`: this is the execution to start.
    Run(Box<dyn Job>),
}

/// A script's interpreter (a session's runtime half).
pub trait Interpreter: Send + Sync {
    /// Run top-level code on the calling thread, giving up after `timeout`. `Err` is the exact
    /// text to reply (a formatted Python exception).
    fn run_script(&self, source: &str, timeout: Duration) -> Result<ScriptOutcome, String>;
    /// A job running registration `handle`'s steps over one event `record` (KeysReader:
    /// `[key, event]`; CommandReader: the arguments). `inline`: it will run on a thread that
    /// holds the Redis lock (a sync registration), so it must never wait for another user of
    /// this interpreter that may need that lock.
    fn event_job(&self, handle: i64, record: Value, inline: bool) -> Box<dyn Job>;
    /// Run registration `handle`'s `onRegistered` callback on this thread (which holds the
    /// Redis lock); `Err` is the formatted exception.
    fn on_registered(&self, handle: i64, timeout: Duration) -> Result<(), String>;
    /// RG.PYPROFILE on this thread (which holds the Redis lock): `Stats(order)` answers the
    /// session's cProfile data as pstats text (None: there is none), `Reset` forgets it. `Err`
    /// is the formatted exception.
    fn profile(&self, request: &ProfileRequest, timeout: Duration) -> Result<Option<String>, String>;
    /// Make these installed requirements importable in this interpreter (only), the first one
    /// first; called before the script runs. `Err` says why they cannot be used here.
    fn use_requirements(&self, requirements: &[Arc<crate::requirements::Requirement>], timeout: Duration) -> Result<(), String>;
    /// Which runtime made it.
    fn runtime(&self) -> crate::RuntimeKind;
    /// Bytes this interpreter holds now (native: counted allocations; wasm: linear memory).
    fn memory_bytes(&self) -> u64 {
        0
    }
}

/// What RG.PYPROFILE asks of a session's interpreter.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProfileRequest {
    /// The collected statistics, ordered by this pstats sort key (`tottime` by default).
    Stats(String),
    Reset,
}

impl ProfileRequest {
    /// The request as the runtimes hand it to gears.py's `_profile`: `[op, order]`.
    pub fn to_value(&self) -> crate::Value {
        let (op, order) = match self {
            ProfileRequest::Stats(order) => ("stats", order.as_str()),
            ProfileRequest::Reset => ("reset", ""),
        };
        crate::Value::Array(vec![crate::Value::bulk(op), crate::Value::bulk(order)])
    }
}

/// A way of making interpreters (one per mode).
pub trait Runtime: Send + Sync {
    fn mode_name(&self) -> &'static str;
    fn create_interpreter(&self, host: Arc<dyn Host>) -> Result<Box<dyn Interpreter>, String>;
    /// Live interpreters owned by sessions (for INFO and tests of session lifetime).
    fn live_interpreters(&self) -> usize;
    /// Interpreters started ahead of demand, waiting for a session.
    fn ready_interpreters(&self) -> usize {
        0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    #[test]
    fn abort_returns_the_interrupter_only_while_set() {
        let ctl = RunControl::default();
        assert!(!ctl.is_aborted());
        let hits = Arc::new(AtomicUsize::new(0));
        let h = hits.clone();
        ctl.set_interrupter(Some(Arc::new(move || {
            h.fetch_add(1, Ordering::SeqCst);
        })));
        let f = ctl.abort().expect("interrupter set");
        f();
        assert_eq!(hits.load(Ordering::SeqCst), 1);
        assert!(ctl.is_aborted());
        ctl.set_interrupter(None);
        assert!(ctl.abort().is_none());
    }

    #[test]
    fn command_requests_are_read_from_their_parts() {
        let next = CommandRequest::from_parts("next", Value::Array(vec![Value::bulk("k"), Value::bulk("v")])).unwrap();
        assert_eq!(next, CommandRequest::Next(vec![b"k".to_vec(), b"v".to_vec()]));
        assert!(CommandRequest::from_parts("next", Value::Array(vec![Value::Int(1)])).is_err());
        assert_eq!(CommandRequest::from_parts("get", Value::Nil).unwrap(), CommandRequest::Get);
        assert_eq!(CommandRequest::from_parts("override", Value::Int(3)).unwrap(), CommandRequest::OverrideReply(Value::Int(3)));
        assert!(CommandRequest::from_parts("other", Value::Nil).is_err());
    }

    #[test]
    fn log_levels_parse_case_insensitively() {
        assert_eq!(LogLevel::parse("WARNING"), Some(LogLevel::Warning));
        assert_eq!(LogLevel::parse("loud"), None);
        assert_eq!(LogLevel::Notice.as_str(), "notice");
    }
}
