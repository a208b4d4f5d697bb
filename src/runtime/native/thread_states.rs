//! Which thread states are idle and may be reused: one per (interpreter, OS thread).
//!
//! Creating a thread state costs CPython a fresh frame stack (an mmap and page faults) on every
//! attachment, which dominated a sync registration's cost (`make bench`, RG.TRIGGER). So a thread
//! keeps its state for an interpreter when it detaches, and takes it back next time. An
//! interpreter that was interrupted (ScriptTimeoutMS, RG.ABORTEXECUTION) is *tainted*: a kept
//! state might carry its pending exception or trace function into the next job, so its idle
//! states are deleted and it keeps none from then on. Pure bookkeeping of addresses: `cpython.rs`
//! does the CPython calls.

use std::collections::{HashMap, HashSet};
use std::sync::{Mutex, MutexGuard, OnceLock};

#[derive(Default)]
pub struct Idle {
    /// (interpreter, thread ident) -> thread state, all as addresses.
    idle: HashMap<(usize, u64), usize>,
    tainted: HashSet<usize>,
}

pub fn idle() -> MutexGuard<'static, Idle> {
    static IDLE: OnceLock<Mutex<Idle>> = OnceLock::new();
    IDLE.get_or_init(|| Mutex::new(Idle::default())).lock().unwrap_or_else(|e| e.into_inner())
}

impl Idle {
    /// The idle state this thread left for `interp`, now in use again.
    pub fn take(&mut self, interp: usize, thread: u64) -> Option<usize> {
        self.idle.remove(&(interp, thread))
    }

    /// Keep `tstate` for reuse; false when it must be deleted instead (the interpreter is
    /// tainted, or this thread already keeps one for it: a nested attachment).
    pub fn keep(&mut self, interp: usize, thread: u64, tstate: usize) -> bool {
        if self.tainted.contains(&interp) || self.idle.contains_key(&(interp, thread)) {
            return false;
        }
        self.idle.insert((interp, thread), tstate);
        true
    }

    pub fn may_keep(&self, interp: usize) -> bool {
        !self.tainted.contains(&interp)
    }

    /// Taint `interp`; returns its idle states, which the caller deletes.
    pub fn taint(&mut self, interp: usize) -> Vec<usize> {
        self.tainted.insert(interp);
        self.drain(interp)
    }

    /// Forget `interp` (it is ending); returns its idle states, which the caller deletes.
    pub fn forget(&mut self, interp: usize) -> Vec<usize> {
        self.tainted.remove(&interp);
        self.drain(interp)
    }

    fn drain(&mut self, interp: usize) -> Vec<usize> {
        let keys: Vec<_> = self.idle.keys().filter(|(i, _)| *i == interp).copied().collect();
        keys.iter().filter_map(|k| self.idle.remove(k)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_thread_gets_back_only_its_own_state_for_that_interpreter() {
        let mut idle = Idle::default();
        assert!(idle.keep(1, 10, 100));
        assert!(!idle.keep(1, 10, 101), "a nested attachment's state is not kept twice");
        assert!(idle.keep(1, 11, 110));
        assert!(idle.keep(2, 10, 200));
        assert_eq!(idle.take(1, 10), Some(100));
        assert_eq!(idle.take(1, 10), None, "in use until kept again");
        assert_eq!(idle.take(3, 10), None);
    }

    #[test]
    fn a_tainted_interpreter_keeps_nothing_and_ending_one_returns_its_states() {
        let mut idle = Idle::default();
        idle.keep(1, 10, 100);
        idle.keep(1, 11, 110);
        idle.keep(2, 10, 200);
        let mut dropped = idle.taint(1);
        dropped.sort();
        assert_eq!(dropped, vec![100, 110]);
        assert!(!idle.may_keep(1));
        assert!(!idle.keep(1, 10, 101));
        assert_eq!(idle.forget(2), vec![200]);
        assert!(idle.forget(1).is_empty());
        assert!(idle.may_keep(1), "a new interpreter at the same address starts clean");
    }
}
