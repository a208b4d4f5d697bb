//! The catalogue of user-visible error texts clients and scripts match on: RedisGears 1.2's, and
//! gearbox's cross-cutting ones. (A text of one gearbox rule, starting with `gearbox:`, lives with
//! that rule: quotas, native-mode guards, teardown, runtime start-up.)
//!
//! Clients and user code match on these strings, so they are copied exactly from RedisGears 1.2
//! (RedisGears 1.2's replies, as its clients and tests match them). Most lack an `ERR ` prefix because RedisGears replied them
//! with `RedisModule_ReplyWithError(ctx, "<text>")`, which sends the text as the whole error line;
//! redis-py and gears-cli then show the text verbatim. The few that carry `ERR ` (RG.TRIGGER's)
//! had it upstream too. Texts with a `{}` are formatted by [`EngineError`]'s `Display`.

use thiserror::Error;

pub const BLOCKING_NOT_ALLOWED: &str = "Can not run gears inside a multi exec, lua, or when blocking is not allowed";
pub const EXECUTION_PLAN_NOT_EXIST: &str = "execution plan does not exist";
pub const EXECUTION_NOT_EXIST: &str = "execution does not exist";
pub const EXECUTION_STILL_RUNNING: &str = "execution is still running";
pub const DROP_RUNNING_EXECUTION: &str = "can not drop a not yet finished execution, abort it first.";
pub const ID_MISSING: &str = "ID is missing";
pub const DESCRIPTION_MISSING: &str = "DESCRIPTION is missing";
pub const REPLACE_WITH_MISSING: &str = "REPLACE_WITH is missing";
pub const BAD_SESSION_ID: &str = "ID must be compose of: ['A'-'Z' | 'a'-'z' | '0' - '9' | '-' | '_']";
pub const NO_CLUSTER: &str = "no cluster detected - use `RG.GETEXECUTION <id> [SHARD]` instead";
pub const UNKNOWN_SUBCOMMAND: &str = "unknown subcommand";
pub const NO_CLUSTER_MODE: &str = "no cluster mode";
pub const EXECUTION_ABORTED: &str = "Execution was aborted";
pub const SCRIPT_NOT_UTF8: &str = "script is not valid UTF-8";
pub const REMOTE_NOT_SUPPORTED: &str = "Execute remote is not longer supported";
pub const FREE_INTERPRETER_NOT_SUPPORTED: &str = "Free interpreter is not longer supported";
pub const NO_COMMAND_HOOK_CTX: &str = "Can not get CommandHook ctx";
pub const NO_COMMAND_CTX: &str = "Can not get command ctx";
pub const OVERRIDE_REPLY_TWICE: &str = "Can only override reply once";
pub const NO_COMMAND_RESULT: &str = "Failed getting results from command execution";
pub const HOOK_ONE_RESULT: &str = "Command hook must return exactly one result";
pub const HOOK_NOT_SYNC: &str = "Can not override a none sync registration";
pub const HOOK_NOT_SYNC_IN_SESSION: &str = "Can not override a none sync registration which already created on this session";
pub const HOOK_PREFIX_JUMP: &str = "Can not override a command by key prefix with none positive jump";
pub const ATOMIC_NESTED: &str = "Already inside an atomic block";
/// A StreamReader batch failing with an error that starts with this pauses its registration
/// (`flat_error('PAUSE')`; the same word in `gears_events.py`).
pub const STREAM_PAUSE: &str = "PAUSE";
/// `atomic()` where the Redis lock may not be held for a block: in a coroutine (RedisGears'
/// text), and in a thread the script started (gearbox's rule; the same text).
pub const ATOMIC_OFF_THREAD: &str = "await is not allow inside atomic block";
pub const REQUIREMENTS_FAILED: &str = "Could not satisfy requirements, look at the log file for more information.";
pub const READONLY_REPLICA: &str = "READONLY You can't write against a read only replica.";

/// `hook=` / `commands=` on a command that scripts may not run (`verb`: override / hook).
pub fn hook_not_in_scripts(verb: &str) -> String {
    format!("Can not {verb} a command which are not allowed inside a script")
}

/// `hook=` / `commands=` with a key prefix on a command with moveable keys.
pub fn hook_moveable_keys(verb: &str) -> String {
    format!("Can not {verb} a command with moveable keys by key prefix")
}

/// `hook=` / `commands=` with a key prefix on a command whose first key is not positive.
pub fn hook_first_key(verb: &str) -> String {
    format!("Can not {verb} a command by key prefix with none positive first key")
}

/// The reply to a script whose top level ran past ScriptTimeoutMS (gearbox's own text).
pub fn script_timeout(limit_ms: u128) -> String {
    format!("Script ran past ScriptTimeoutMS ({limit_ms} ms) and was stopped")
}

/// An execution whose job panicked (a gearbox bug): it fails with this instead of hanging.
pub fn internal_panic(detail: &str) -> String {
    format!("gearbox internal error while running the execution (see the Redis log): {detail}")
}

/// The reply to a client that sends one of gearbox's internal commands (only the master link,
/// loading and gearbox's own command filter may).
pub fn internal_command(name: &str) -> String {
    format!("ERR {name} is internal to gearbox: only replication, loading and gearbox itself may send it")
}

/// Errors the engine returns; `Display` is the exact reply text.
#[derive(Debug, Error, Clone, PartialEq)]
pub enum EngineError {
    #[error("{}", EXECUTION_PLAN_NOT_EXIST)]
    ExecutionPlanNotExist,
    #[error("{}", EXECUTION_NOT_EXIST)]
    ExecutionNotExist,
    #[error("{}", EXECUTION_STILL_RUNNING)]
    StillRunning,
    #[error("{}", DROP_RUNNING_EXECUTION)]
    DropRunning,
    #[error("Session {0} already exists")]
    SessionExists(String),
    #[error("Can not replace with {0}, session does not exists.")]
    ReplaceMissing(String),
    #[error("Unknown arguments were given: {0}")]
    UnknownArgument(String),
    #[error("Unsupported config parameter: {0}")]
    UnsupportedConfig(String),
    #[error("Config value {0} not modifiable at runtime")]
    NotModifiable(String),
    #[error("Failed setting config value {0}")]
    FailedSetting(String),
    #[error("Unknown option {0}")]
    UnknownOption(String),
    #[error("Session {0} does not exists")]
    SessionNotExists(String),
    #[error("execution is not registered")]
    NotRegistered,
    #[error("ERR subcommand not found")]
    TriggerNotFound,
    #[error("ERR can not run a non-sync execution inside a MULTI/LUA (blocking is not allowed) or on loading.")]
    TriggerNeedsBlocking,
    #[error("Reader {0} does not support pause")]
    NoPause(String),
    #[error("Reader {0} does not support unpause")]
    NoUnpause(String),
    #[error("trigger already registered")]
    TriggerTaken,
    #[error("trigger already registered in this session")]
    TriggerTakenInSession,
    #[error("Can not replace an existing session {0} with {1}")]
    ReplaceExisting(String, String),
    /// gearbox's own: `RUNTIME x` on a server that does not run x.
    #[error("gearbox: this server does not run {0} sessions (load it with NativeUsers to run both runtimes)")]
    RuntimeNotLoaded(&'static str),
    /// gearbox's own: `RUNTIME native` from a user the NativeUsers policy does not name.
    #[error("NOPERM gearbox: the ACL user '{0}' may not run {1} sessions on this server (NativeUsers)")]
    RuntimeNotAllowed(String, &'static str),
    /// gearbox's own: a RUNTIME value that is not a runtime.
    #[error("RUNTIME must be 'native' or 'wasm', got '{0}'")]
    BadRuntime(String),
    /// Text produced by a script or a runtime, passed through unchanged.
    #[error("{0}")]
    Script(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn texts_are_exact() {
        assert_eq!(EngineError::ExecutionPlanNotExist.to_string(), "execution plan does not exist");
        assert_eq!(EngineError::UnknownArgument("FOO".into()).to_string(), "Unknown arguments were given: FOO");
        assert_eq!(EngineError::SessionExists("s".into()).to_string(), "Session s already exists");
        assert_eq!(EngineError::Script("boom".into()).to_string(), "boom");
    }
}
