//! What a command answers a client: a value, "blocked, someone replies later", or the wrong-arity
//! error. Used by the command layer and by the event side that answers a client's command
//! (RG.TRIGGER, hooked commands), so it lives below both.

use gearbox_engine::Value;

/// What a command handler answers.
pub enum Reply {
    Value(Value),
    /// The client was blocked; someone replies later.
    Blocked,
    WrongArity,
}

impl Reply {
    pub fn ok() -> Reply {
        Reply::Value(Value::Status("OK".into()))
    }

    pub fn error(text: impl Into<String>) -> Reply {
        Reply::Value(Value::Error(text.into()))
    }
}
