//! Who may hook which commands.
//!
//! A command hook (`hook=`) and a `commands=` registration (which can `override_reply()`) change
//! what other users' commands do, so only administrators may make them; and the commands that
//! guard the server's security or that Redis keeps from scripts can never be hooked, by anyone.
//! The host decides who is an administrator; this file only applies the rule.

use crate::registration::RegistrationSpec;

/// Commands no registration may hook or watch, whoever makes it (lower-case). gearbox's own
/// `rg.*` commands are refused by prefix.
const NEVER_HOOKABLE: &[&str] = &[
    "auth",
    "hello",
    "acl",
    "config",
    "client",
    "multi",
    "exec",
    "discard",
    "watch",
    "unwatch",
    "eval",
    "evalsha",
    "eval_ro",
    "evalsha_ro",
    "fcall",
    "fcall_ro",
    "function",
    "script",
    "module",
    "shutdown",
    "debug",
    "replicaof",
    "slaveof",
    "sync",
    "psync",
    "monitor",
    "failover",
    "reset",
    "quit",
    "cluster",
    "readonly",
    "readwrite",
    "save",
    "bgsave",
    "bgrewriteaof",
];

/// Whether `name` (any case) can never be hooked.
pub fn never_hookable(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    lower.starts_with("rg.") || NEVER_HOOKABLE.contains(&lower.as_str())
}

/// The commands `spec` hooks or watches.
fn hooked_commands(spec: &RegistrationSpec) -> impl Iterator<Item = &String> {
    spec.hook.iter().chain(spec.commands.iter().flatten())
}

/// Whether a user may make `spec`; `is_admin` is asked only when the spec hooks something.
pub fn may_register(spec: &RegistrationSpec, is_admin: impl FnOnce() -> bool) -> Result<(), String> {
    if let Some(name) = hooked_commands(spec).find(|c| never_hookable(c)) {
        return Err(format!("Can not hook '{name}': gearbox never lets this command be hooked"));
    }
    if hooked_commands(spec).next().is_some() && !is_admin() {
        return Err("Only a gearbox administrator may hook commands (hook= or commands=); see the README's security model".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(hook: Option<&str>, commands: Option<&[&str]>) -> RegistrationSpec {
        let mut s = RegistrationSpec::from_value(&crate::Value::Array(vec![])).unwrap();
        s.hook = hook.map(str::to_string);
        s.commands = commands.map(|c| c.iter().map(|s| s.to_string()).collect());
        s
    }

    #[test]
    fn registrations_without_hooks_need_no_administrator() {
        assert_eq!(may_register(&spec(None, None), || panic!("not asked")), Ok(()));
    }

    #[test]
    fn hooks_and_watched_commands_need_an_administrator() {
        assert!(may_register(&spec(Some("get"), None), || false).unwrap_err().contains("administrator"));
        assert!(may_register(&spec(None, Some(&["set"])), || false).unwrap_err().contains("administrator"));
        assert_eq!(may_register(&spec(Some("get"), None), || true), Ok(()));
        assert_eq!(may_register(&spec(None, Some(&["set", "hset"])), || true), Ok(()));
    }

    #[test]
    fn security_commands_are_never_hookable_even_by_an_administrator() {
        for name in [
            "ACL",
            "auth",
            "Config",
            "client",
            "multi",
            "exec",
            "eval",
            "fcall",
            "function",
            "script",
            "module",
            "shutdown",
            "debug",
            "hello",
            "rg.pyexecute",
            "RG.UNREGISTER",
        ] {
            let err = may_register(&spec(Some(name), None), || true).unwrap_err();
            assert!(err.contains("never"), "{name}: {err}");
            assert!(may_register(&spec(None, Some(&["get", name])), || true).is_err(), "{name} in commands=");
        }
    }
}
