//! Which runtime a session gets: the tenant policy that lets native and wasm sessions live in one
//! server.
//!
//! Native mode is fast but shares the process, so it is for trusted users; wasm is the sandbox.
//! Loaded with `mode native|wasm` alone, a server runs every session in that one runtime, as it
//! always did. Loaded with `NativeUsers a,b`, it runs both: the named users' sessions run in
//! `mode`'s runtime unless they ask for the other (`RG.PYEXECUTE … RUNTIME native|wasm`), and
//! everyone else's run in wasm, always.

use crate::errors::EngineError;

/// A way of running a script's interpreter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RuntimeKind {
    Native,
    Wasm,
}

impl RuntimeKind {
    pub fn as_str(self) -> &'static str {
        match self {
            RuntimeKind::Native => "native",
            RuntimeKind::Wasm => "wasm",
        }
    }

    /// `native` or `wasm`, any case.
    pub fn parse(word: &str) -> Option<RuntimeKind> {
        match word.to_ascii_lowercase().as_str() {
            "native" => Some(RuntimeKind::Native),
            "wasm" => Some(RuntimeKind::Wasm),
            _ => None,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RuntimePolicy {
    /// `mode`: the runtime of a server without a policy, and the default of the native users.
    pub default: RuntimeKind,
    /// `NativeUsers`: None, one runtime for everyone; Some, both runtimes, native for these users.
    pub native_users: Option<Vec<String>>,
}

impl RuntimePolicy {
    /// Parse `NativeUsers`' value: ACL user names separated by commas (blank: no policy).
    pub fn new(default: RuntimeKind, native_users: &str) -> Result<RuntimePolicy, String> {
        if native_users.trim().is_empty() {
            return Ok(RuntimePolicy { default, native_users: None });
        }
        let names: Vec<String> = native_users.split(',').map(|n| n.trim().to_string()).collect();
        if names.iter().any(|n| n.is_empty() || n.contains(char::is_whitespace)) {
            return Err(format!("NativeUsers must be ACL user names separated by commas, got '{native_users}'"));
        }
        Ok(RuntimePolicy { default, native_users: Some(names) })
    }

    /// Whether this server runs both runtimes.
    pub fn is_mixed(&self) -> bool {
        self.native_users.is_some()
    }

    /// The runtimes this server must start.
    pub fn runtimes(&self) -> Vec<RuntimeKind> {
        if self.is_mixed() {
            vec![RuntimeKind::Native, RuntimeKind::Wasm]
        } else {
            vec![self.default]
        }
    }

    fn may_run_native(&self, user: Option<&str>) -> bool {
        match (&self.native_users, user) {
            (None, _) => true,
            (Some(names), Some(user)) => names.iter().any(|n| n == user),
            (Some(_), None) => false,
        }
    }

    /// The runtime of a new session of `user` that asked for `requested` (None: the default).
    pub fn choose(&self, user: Option<&str>, requested: Option<RuntimeKind>) -> Result<RuntimeKind, EngineError> {
        let native_ok = self.may_run_native(user);
        match requested {
            None if native_ok => Ok(self.default),
            None => Ok(RuntimeKind::Wasm),
            Some(kind) if !self.is_mixed() && kind != self.default => Err(EngineError::RuntimeNotLoaded(kind.as_str())),
            Some(RuntimeKind::Native) if !native_ok => {
                Err(EngineError::RuntimeNotAllowed(user.unwrap_or("(none)").to_string(), RuntimeKind::Native.as_str()))
            }
            Some(kind) => Ok(kind),
        }
    }

    /// The runtime of a session rebuilt from its recipe (replica, AOF, RDB): the one it was made
    /// with if this server allows it to its owner, else the owner's default here. The second
    /// value says the recorded one was not honoured (worth a log line).
    pub fn restore(&self, user: Option<&str>, recorded: Option<RuntimeKind>) -> (RuntimeKind, bool) {
        match self.choose(user, recorded) {
            Ok(kind) => (kind, false),
            Err(_) => (self.choose(user, None).unwrap_or(RuntimeKind::Wasm), true),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use RuntimeKind::{Native, Wasm};

    #[test]
    fn without_native_users_everyone_runs_the_mode() {
        let p = RuntimePolicy::new(Native, "").unwrap();
        assert!(!p.is_mixed());
        assert_eq!(p.runtimes(), vec![Native]);
        assert_eq!(p.choose(Some("alice"), None), Ok(Native));
        assert_eq!(p.choose(Some("alice"), Some(Native)), Ok(Native));
        assert_eq!(p.choose(Some("alice"), Some(Wasm)), Err(EngineError::RuntimeNotLoaded("wasm")));
        let w = RuntimePolicy::new(Wasm, " ").unwrap();
        assert_eq!(w.choose(None, None), Ok(Wasm));
        assert_eq!(w.choose(Some("default"), Some(Native)), Err(EngineError::RuntimeNotLoaded("native")));
    }

    #[test]
    fn with_native_users_only_they_run_natively() {
        let p = RuntimePolicy::new(Native, "default, ops").unwrap();
        assert!(p.is_mixed());
        assert_eq!(p.runtimes(), vec![Native, Wasm]);
        assert_eq!(p.choose(Some("ops"), None), Ok(Native));
        assert_eq!(p.choose(Some("ops"), Some(Wasm)), Ok(Wasm));
        assert_eq!(p.choose(Some("alice"), None), Ok(Wasm));
        assert_eq!(p.choose(Some("alice"), Some(Wasm)), Ok(Wasm));
        assert_eq!(p.choose(Some("alice"), Some(Native)), Err(EngineError::RuntimeNotAllowed("alice".into(), "native")));
        assert_eq!(p.choose(None, Some(Native)), Err(EngineError::RuntimeNotAllowed("(none)".into(), "native")));
        assert_eq!(p.choose(Some("opsx"), None), Ok(Wasm), "names match exactly");
        let w = RuntimePolicy::new(Wasm, "ops").unwrap();
        assert_eq!(w.choose(Some("ops"), None), Ok(Wasm), "mode is the native users' default");
        assert_eq!(w.choose(Some("ops"), Some(Native)), Ok(Native));
    }

    #[test]
    fn a_restored_session_keeps_its_runtime_only_where_its_owner_may_have_it() {
        let p = RuntimePolicy::new(Native, "ops").unwrap();
        assert_eq!(p.restore(Some("ops"), Some(Wasm)), (Wasm, false));
        assert_eq!(p.restore(Some("alice"), Some(Native)), (Wasm, true));
        assert_eq!(p.restore(Some("alice"), None), (Wasm, false));
        let single = RuntimePolicy::new(Native, "").unwrap();
        assert_eq!(single.restore(Some("alice"), Some(Wasm)), (Native, true));
    }

    #[test]
    fn bad_native_users_are_refused() {
        assert!(RuntimePolicy::new(Native, "a,,b").is_err());
        assert!(RuntimePolicy::new(Native, "a b").is_err());
        assert_eq!(RuntimeKind::parse("WASM"), Some(Wasm));
        assert_eq!(RuntimeKind::parse("jvm"), None);
    }
}
