//! Which registrations a Redis command concerns, before it runs: CommandReader hooks (`hook=`,
//! optionally only when one of the command's keys starts with `keyprefix=`) and KeysReader
//! registrations with `commands=` (whose key prefix must match one of the command's keys).
//!
//! Pure logic over the registrations and the command's argv; the host supplies each command's
//! key positions (from `COMMAND INFO`), so this file knows nothing of Redis.

use std::sync::Arc;

use crate::registration::{prefix_matches, ReaderKind, Registration, RegistrationSpec};

/// Where a command's keys are, as `COMMAND INFO` reports them: the first key's index, the last
/// one's (negative: counted from the end, -1 is the last argument) and the step between keys.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KeyPositions {
    pub first: i64,
    pub last: i64,
    pub step: i64,
}

impl KeyPositions {
    /// The keys of `argv` (argv[0] is the command name). None when there are none to find.
    pub fn keys<'a>(&self, argv: &'a [Vec<u8>]) -> Vec<&'a [u8]> {
        let n = argv.len() as i64;
        let last = if self.last < 0 { n + self.last } else { self.last.min(n - 1) };
        if self.first <= 0 || self.step <= 0 || self.first > last {
            return Vec::new();
        }
        (self.first..=last).step_by(self.step as usize).map(|i| argv[i as usize].as_slice()).collect()
    }
}

/// Whether hook registration `spec` takes this call of its command: always without a key prefix,
/// else when one of the keys starts with it (a prefix starting with `*` takes every call).
pub fn hook_takes(spec: &RegistrationSpec, keys: Option<&KeyPositions>, argv: &[Vec<u8>]) -> bool {
    match spec.keyprefix.as_deref() {
        None => true,
        Some(p) if p.starts_with('*') => true,
        Some(p) => keys.is_some_and(|k| k.keys(argv).iter().any(|key| key.starts_with(p.as_bytes()))),
    }
}

/// Whether KeysReader registration `spec` (with `commands=`) watches this call: the command is
/// one of its commands and one of the keys matches its prefix.
pub fn watches(spec: &RegistrationSpec, keys: Option<&KeyPositions>, argv: &[Vec<u8>]) -> bool {
    let Some(name) = argv.first() else { return false };
    spec.reader == ReaderKind::Keys
        && spec.commands.as_ref().is_some_and(|c| c.iter().any(|c| c.as_bytes().eq_ignore_ascii_case(name)))
        && (spec.prefix == "*" || keys.is_some_and(|k| k.keys(argv).iter().any(|key| prefix_matches(&spec.prefix, key))))
}

/// The hooks of `command` (lower-case), the one to call first first: the newest registration
/// runs first, and `call_next()` goes on to older ones.
pub fn chain(all: &[Arc<Registration>], command: &str) -> Vec<Arc<Registration>> {
    all.iter().rev().filter(|r| r.spec.reader == ReaderKind::Command && r.spec.hook.as_deref() == Some(command)).cloned().collect()
}

/// The first hook of `chain` that takes this call, starting after the one with id `after`
/// (None: from the start).
pub fn next_hook(
    chain: &[Arc<Registration>],
    after: Option<&str>,
    keys: Option<&KeyPositions>,
    argv: &[Vec<u8>],
) -> Option<Arc<Registration>> {
    let start = match after {
        None => 0,
        Some(id) => chain.iter().position(|r| r.id == id)? + 1,
    };
    chain[start..].iter().find(|r| hook_takes(&r.spec, keys, argv)).cloned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::session::tests::session;
    use crate::value::Value;

    fn argv(parts: &[&str]) -> Vec<Vec<u8>> {
        parts.iter().map(|p| p.as_bytes().to_vec()).collect()
    }

    fn hook(id: &str, command: &str, keyprefix: Option<&str>) -> Arc<Registration> {
        let mut spec = RegistrationSpec::from_value(&Value::Array(vec![])).unwrap();
        spec.reader = ReaderKind::Command;
        spec.hook = Some(command.into());
        spec.keyprefix = keyprefix.map(String::from);
        Registration::new(id.into(), session("s"), spec)
    }

    const MSET: KeyPositions = KeyPositions { first: 1, last: -1, step: 2 };
    const HSET: KeyPositions = KeyPositions { first: 1, last: 1, step: 1 };

    #[test]
    fn key_positions_follow_command_info() {
        assert_eq!(MSET.keys(&argv(&["mset", "a", "1", "b", "2"])), vec![b"a".as_slice(), b"b"]);
        assert_eq!(HSET.keys(&argv(&["hset", "h", "f", "v"])), vec![b"h".as_slice()]);
        assert!(HSET.keys(&argv(&["hset"])).is_empty(), "an arity error has no keys");
        assert!(KeyPositions { first: 0, last: 0, step: 0 }.keys(&argv(&["ping"])).is_empty());
    }

    #[test]
    fn a_key_prefix_limits_a_hook_to_calls_on_matching_keys() {
        let all = hook("1", "hset", Some("user:"));
        assert!(hook_takes(&all.spec, Some(&HSET), &argv(&["hset", "user:1", "f", "v"])));
        assert!(!hook_takes(&all.spec, Some(&HSET), &argv(&["hset", "admin:1", "f", "v"])));
        assert!(hook_takes(&hook("2", "hset", None).spec, None, &argv(&["hset", "x"])));
        assert!(hook_takes(&hook("3", "hset", Some("*")).spec, None, &argv(&["hset", "x"])));
    }

    #[test]
    fn the_newest_hook_runs_first_and_call_next_goes_to_older_matching_ones() {
        let regs = vec![hook("old", "set", None), hook("other", "get", None), hook("mid", "set", Some("b")), hook("new", "set", None)];
        let chain = chain(&regs, "set");
        assert_eq!(chain.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(), vec!["new", "mid", "old"]);
        let set_a = argv(&["set", "a", "1"]);
        assert_eq!(next_hook(&chain, None, Some(&HSET), &set_a).unwrap().id, "new");
        assert_eq!(next_hook(&chain, Some("new"), Some(&HSET), &set_a).unwrap().id, "old", "mid wants keys starting with b");
        assert_eq!(next_hook(&chain, Some("new"), Some(&HSET), &argv(&["set", "b1", "1"])).unwrap().id, "mid");
        assert!(next_hook(&chain, Some("old"), Some(&HSET), &set_a).is_none(), "after the last: the command itself");
        assert!(next_hook(&chain, Some("gone"), Some(&HSET), &set_a).is_none(), "an unregistered hook has no next");
    }

    #[test]
    fn commands_watchers_need_their_command_and_a_matching_key() {
        let mut spec = RegistrationSpec::from_value(&Value::Array(vec![])).unwrap();
        spec.commands = Some(vec!["hset".into()]);
        spec.prefix = "user:*".into();
        assert!(watches(&spec, Some(&HSET), &argv(&["HSET", "user:1", "f", "v"])));
        assert!(!watches(&spec, Some(&HSET), &argv(&["hset", "x", "f", "v"])));
        assert!(!watches(&spec, Some(&HSET), &argv(&["hget", "user:1", "f"])));
        spec.prefix = "*".into();
        assert!(watches(&spec, None, &argv(&["hset", "x", "f", "v"])));
        spec.commands = None;
        assert!(!watches(&spec, None, &argv(&["hset", "x"])));
    }
}
