//! Who may send a command to a wasm instance now. One owner at a time; inline commands (their
//! thread holds the Redis lock) nest inside it; and while the owner's guest code pauses, waiting
//! for something only another command can bring (an async record continued by another execution
//! of the session), any command may nest inside that pause.
//!
//! An owner also waits for nested commands to end: a command sent while one is nested would be
//! taken by the guest as nested inside it, and could then wait for the Redis lock that the
//! nested command's thread holds.

use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

#[derive(Default)]
struct State {
    owner: bool,
    nested: usize,
    /// Commands of the guest that are pausing now (they nest, so there may be several).
    pausing: usize,
}

#[derive(Default)]
pub struct Turns {
    state: Mutex<State>,
    changed: Condvar,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Turn {
    Owner,
    Nested,
}

impl Turns {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Wait for a turn. `inline`: the caller holds the Redis lock, so it nests at once when the
    /// instance is busy; any other command nests only inside a pause.
    pub fn take(&self, inline: bool) -> Turn {
        let mut st = self.state();
        loop {
            if !st.owner && st.nested == 0 {
                st.owner = true;
                return Turn::Owner;
            }
            if inline || st.pausing > 0 {
                st.nested += 1;
                return Turn::Nested;
            }
            st = self.changed.wait(st).unwrap_or_else(|e| e.into_inner());
        }
    }

    pub fn give(&self, turn: Turn) {
        let mut st = self.state();
        match turn {
            Turn::Owner => st.owner = false,
            Turn::Nested => st.nested -= 1,
        }
        drop(st);
        self.changed.notify_all();
    }

    pub fn idle(&self) -> bool {
        let st = self.state();
        !st.owner && st.nested == 0
    }

    /// The guest pauses for `period`: commands waiting for a turn may nest meanwhile.
    pub fn pause(&self, period: Duration) {
        self.state().pausing += 1;
        self.changed.notify_all();
        let until = Instant::now() + period;
        let mut st = self.state();
        while Instant::now() < until {
            let left = until.saturating_duration_since(Instant::now());
            st = self.changed.wait_timeout(st, left).unwrap_or_else(|e| e.into_inner()).0;
        }
        st.pausing -= 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn inline_commands_nest_and_others_wait_for_the_owner() {
        let t = Arc::new(Turns::default());
        assert_eq!(t.take(false), Turn::Owner);
        assert_eq!(t.take(true), Turn::Nested);
        let waiter = {
            let t = t.clone();
            std::thread::spawn(move || t.take(false))
        };
        std::thread::sleep(Duration::from_millis(30));
        assert!(!waiter.is_finished(), "a second owner waits");
        t.give(Turn::Nested);
        t.give(Turn::Owner);
        assert_eq!(waiter.join().unwrap(), Turn::Owner);
    }

    #[test]
    fn any_command_nests_inside_a_pause() {
        let t = Arc::new(Turns::default());
        assert_eq!(t.take(false), Turn::Owner);
        let waiter = {
            let t = t.clone();
            std::thread::spawn(move || t.take(false))
        };
        std::thread::sleep(Duration::from_millis(20));
        assert!(!waiter.is_finished());
        t.pause(Duration::from_millis(20));
        assert_eq!(waiter.join().unwrap(), Turn::Nested);
        assert!(!t.idle());
    }
}
