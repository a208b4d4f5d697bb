//! Which host thread waits for which of a guest's frames.
//!
//! Every command the host sends carries a tag; the guest stamps its host calls and its answer
//! with the tag of the command it is running. Commands nest: when a sync registration fires
//! while a job of the same session waits for a host call (its thread waiting for the Redis lock
//! that the firing thread holds), the firing thread sends its own command, which the guest runs
//! from inside its wait, and serves that command's host calls itself. So no thread ever waits
//! for a guest that waits for it, whichever thread holds the Redis lock.
//!
//! The table also knows which commands the guest has taken (for deadlines, which only count for
//! running commands) and lets a host thread withdraw a command the guest has not taken yet.

use std::collections::{HashMap, HashSet};
use std::sync::mpsc::Sender;
use std::sync::{Mutex, MutexGuard};

use gearbox_engine::Value;

/// What a waiting host thread receives.
pub enum Out {
    Frame(u8, Value),
    Dead(String),
}

#[derive(Default)]
struct Table {
    waiting: HashMap<u32, Sender<Out>>,
    /// Taken by the guest and not answered yet, innermost last.
    active: Vec<u32>,
    delivered: HashSet<u32>,
    cancelled: HashSet<u32>,
    dead: Option<String>,
}

#[derive(Default)]
pub struct Routes {
    table: Mutex<Table>,
}

impl Routes {
    fn table(&self) -> MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A host thread starts waiting for command `tag`; `Err` if the guest is dead.
    pub fn open(&self, tag: u32, tx: Sender<Out>) -> Result<(), String> {
        let mut t = self.table();
        if let Some(reason) = &t.dead {
            return Err(reason.clone());
        }
        t.waiting.insert(tag, tx);
        Ok(())
    }

    pub fn close(&self, tag: u32) {
        let mut t = self.table();
        t.waiting.remove(&tag);
        t.delivered.remove(&tag);
        t.active.retain(|a| *a != tag);
    }

    /// The guest is about to read command `tag`: false if it was withdrawn (skip it).
    pub fn deliver(&self, tag: u32) -> bool {
        let mut t = self.table();
        if t.cancelled.remove(&tag) {
            return false;
        }
        t.delivered.insert(tag);
        t.active.push(tag);
        true
    }

    /// Withdraw command `tag` unless the guest took it already.
    pub fn cancel(&self, tag: u32) -> bool {
        let mut t = self.table();
        if t.delivered.contains(&tag) {
            return false;
        }
        t.cancelled.insert(tag);
        true
    }

    /// The guest answered command `tag`.
    pub fn finish(&self, tag: u32) {
        self.table().active.retain(|a| *a != tag);
    }

    pub fn send(&self, tag: u32, out: Out) {
        if let Some(tx) = self.table().waiting.get(&tag) {
            let _ = tx.send(out);
        }
    }

    /// The command the guest is running now (for output that carries no tag).
    pub fn innermost(&self) -> u32 {
        self.table().active.last().copied().unwrap_or(0)
    }

    pub fn active(&self) -> Vec<u32> {
        self.table().active.clone()
    }

    /// The guest is gone: every waiting thread hears why, later commands fail at once.
    pub fn kill(&self, reason: &str) {
        let mut t = self.table();
        if t.dead.is_none() {
            t.dead = Some(reason.to_string());
        }
        for tx in t.waiting.values() {
            let _ = tx.send(Out::Dead(reason.to_string()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc::channel;

    #[test]
    fn frames_reach_their_command_and_nesting_is_tracked() {
        let r = Routes::default();
        let (tx1, rx1) = channel();
        let (tx2, rx2) = channel();
        r.open(1, tx1).unwrap();
        r.open(2, tx2).unwrap();
        assert!(r.deliver(1));
        assert!(r.deliver(2));
        assert_eq!(r.innermost(), 2);
        r.send(1, Out::Frame(b'C', Value::Int(1)));
        r.send(2, Out::Frame(b'R', Value::Int(2)));
        assert!(matches!(rx1.try_recv(), Ok(Out::Frame(b'C', Value::Int(1)))));
        assert!(matches!(rx2.try_recv(), Ok(Out::Frame(b'R', Value::Int(2)))));
        r.finish(2);
        assert_eq!(r.active(), vec![1]);
    }

    #[test]
    fn a_command_can_be_withdrawn_only_before_the_guest_takes_it() {
        let r = Routes::default();
        let (tx, _rx) = channel();
        r.open(5, tx).unwrap();
        assert!(r.cancel(5));
        assert!(!r.deliver(5), "withdrawn: the guest skips it");
        let (tx, _rx) = channel();
        r.open(6, tx).unwrap();
        assert!(r.deliver(6));
        assert!(!r.cancel(6));
    }

    #[test]
    fn a_dead_guest_wakes_every_waiter_and_refuses_new_commands() {
        let r = Routes::default();
        let (tx, rx) = channel();
        r.open(1, tx).unwrap();
        r.kill("trapped");
        assert!(matches!(rx.try_recv(), Ok(Out::Dead(ref s)) if s == "trapped"));
        let (tx, _rx) = channel();
        assert_eq!(r.open(2, tx).unwrap_err(), "trapped");
    }
}
