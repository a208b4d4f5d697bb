//! The live registrations, in the order they were made, and their id counter (separate from
//! the executions' counter, as in RedisGears).
//!
//! Installing a script's registrations is one step under one lock: an `UPGRADE` removes the old
//! session's registrations and adds the new ones atomically, so no event sees neither or both.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use crate::errors::EngineError;
use crate::ids::IdGenerator;
use crate::registration::{ReaderKind, Registration};
use crate::session::Replacing;

pub struct RegistrationRegistry {
    list: Mutex<Vec<Arc<Registration>>>,
    ids: IdGenerator,
    /// Bumped on every change, so a cache built from the list (the command filter's index of
    /// hooked commands) knows when to rebuild.
    generation: AtomicU64,
}

impl RegistrationRegistry {
    pub fn new(shard: &str) -> RegistrationRegistry {
        RegistrationRegistry { list: Mutex::new(Vec::new()), ids: IdGenerator::new(shard), generation: AtomicU64::new(0) }
    }

    fn list(&self) -> MutexGuard<'_, Vec<Arc<Registration>>> {
        self.list.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The list, to change it: the generation moves on.
    fn changing(&self) -> MutexGuard<'_, Vec<Arc<Registration>>> {
        let list = self.list();
        self.generation.fetch_add(1, Ordering::SeqCst);
        list
    }

    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::SeqCst)
    }

    pub fn next_id(&self) -> String {
        self.ids.next_id()
    }

    /// Never hand out `id`'s number (or a lower one) again: used for ids loaded from persistence.
    pub fn reserve(&self, id: &str) {
        if let Some(n) = id.rsplit('-').next().and_then(|n| n.parse::<u64>().ok()) {
            self.ids.advance_past(n);
        }
    }

    /// Add `new`, first removing every registration of the sessions `replacing` covers;
    /// returns the removed ones (dropped by the caller, outside this lock).
    pub fn install(&self, new: Vec<Arc<Registration>>, replacing: Replacing<'_>) -> Vec<Arc<Registration>> {
        let mut list = self.changing();
        let (removed, kept): (Vec<_>, Vec<_>) = list.drain(..).partition(|r| replacing.covers(&r.session));
        *list = kept;
        list.extend(new);
        removed
    }

    pub fn remove(&self, id: &str) -> Result<Arc<Registration>, EngineError> {
        let mut list = self.changing();
        let i = list.iter().position(|r| r.id == id).ok_or(EngineError::NotRegistered)?;
        Ok(list.remove(i))
    }

    /// Remove everything (a load replaces all registrations).
    pub fn clear(&self) -> Vec<Arc<Registration>> {
        std::mem::take(&mut *self.changing())
    }

    pub fn get(&self, id: &str) -> Option<Arc<Registration>> {
        self.list().iter().find(|r| r.id == id).cloned()
    }

    pub fn all(&self) -> Vec<Arc<Registration>> {
        self.list().clone()
    }

    pub fn len(&self) -> usize {
        self.list().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Ids of the registrations of `owner`'s session `session_id`, oldest first.
    pub fn ids_of_session(&self, owner: Option<&str>, session_id: &str) -> Vec<String> {
        self.list().iter().filter(|r| r.session.is(owner, session_id)).map(|r| r.id.clone()).collect()
    }

    /// The CommandReader registration answering `RG.TRIGGER name`.
    pub fn by_trigger(&self, name: &str) -> Option<Arc<Registration>> {
        self.list().iter().find(|r| r.spec.reader == ReaderKind::Command && r.spec.trigger.as_deref() == Some(name)).cloned()
    }

    /// Whether `name` is taken by a session other than those `except` covers.
    pub fn trigger_taken(&self, name: &str, except: Replacing<'_>) -> bool {
        self.by_trigger(name).is_some_and(|r| !except.covers(&r.session))
    }

    /// The hooks of `command` (lower-case), newest first (see `command_hooks::chain`).
    pub fn hooks_of(&self, command: &str) -> Vec<Arc<Registration>> {
        crate::command_hooks::chain(&self.list(), command)
    }

    /// The KeysReader registrations (checked on every keyspace event).
    pub fn key_registrations(&self) -> Vec<Arc<Registration>> {
        self.list().iter().filter(|r| r.spec.reader == ReaderKind::Keys).cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    const NONE: Replacing<'static> = Replacing { owner: None, ids: &[] };
    use super::*;
    use crate::ids::STANDALONE_SHARD_ID;
    use crate::registration::RegistrationSpec;
    use crate::session::tests::session;
    use crate::value::Value;

    fn reg(reg: &RegistrationRegistry, sid: &str, trigger: Option<&str>) -> Arc<Registration> {
        let mut spec = RegistrationSpec::from_value(&Value::Array(vec![])).unwrap();
        if let Some(t) = trigger {
            spec.reader = ReaderKind::Command;
            spec.trigger = Some(t.into());
        }
        Registration::new(reg.next_id(), session(sid), spec)
    }

    #[test]
    fn ids_count_on_their_own_and_skip_loaded_ones() {
        let r = RegistrationRegistry::new(STANDALONE_SHARD_ID);
        assert_eq!(r.next_id(), format!("{STANDALONE_SHARD_ID}-1"));
        r.reserve(&format!("{STANDALONE_SHARD_ID}-9"));
        assert_eq!(r.next_id(), format!("{STANDALONE_SHARD_ID}-10"));
    }

    #[test]
    fn install_swaps_a_sessions_registrations_in_one_step() {
        let r = RegistrationRegistry::new(STANDALONE_SHARD_ID);
        let s_id = ["s".to_string()];
        let old = reg(&r, "s", Some("t"));
        r.install(vec![old.clone(), reg(&r, "other", None)], NONE);
        assert!(r.trigger_taken("t", NONE));
        assert!(!r.trigger_taken("t", Replacing { owner: None, ids: &s_id }), "an upgrade of s may take s's trigger");
        assert!(r.trigger_taken("t", Replacing { owner: Some("bob"), ids: &s_id }), "bob's s is another session");
        let new = reg(&r, "s", Some("t"));
        let removed = r.install(vec![new.clone()], Replacing { owner: None, ids: &s_id });
        assert_eq!(removed.len(), 1);
        assert_eq!(removed[0].id, old.id);
        assert_eq!(r.by_trigger("t").unwrap().id, new.id);
        assert_eq!(r.len(), 2);
        assert_eq!(r.ids_of_session(None, "s"), vec![new.id.clone()]);
        assert_eq!(r.key_registrations().len(), 1);
    }

    #[test]
    fn every_change_moves_the_generation_on() {
        let r = RegistrationRegistry::new(STANDALONE_SHARD_ID);
        let g0 = r.generation();
        let a = reg(&r, "s", None);
        r.install(vec![a.clone()], NONE);
        let g1 = r.generation();
        assert!(g1 > g0);
        r.all();
        assert_eq!(r.generation(), g1, "reading changes nothing");
        r.remove(&a.id).unwrap();
        assert!(r.generation() > g1);
    }

    #[test]
    fn remove_unknown_is_the_redisgears_error() {
        let r = RegistrationRegistry::new(STANDALONE_SHARD_ID);
        assert_eq!(r.remove("nope").err(), Some(EngineError::NotRegistered));
        let a = reg(&r, "s", None);
        r.install(vec![a.clone()], NONE);
        assert_eq!(r.remove(&a.id).unwrap().id, a.id);
        assert!(r.is_empty());
    }
}
