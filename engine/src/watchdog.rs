//! A single background thread that fires callbacks at deadlines: how ScriptTimeoutMS reaches a
//! script that is busy on Redis' main thread. Plain Rust (a thread, a condvar): it lives in the
//! engine so both the runtimes and the host (`atomic()`'s watch) use it without depending on
//! each other. A fired entry fires again every `repeat` until it is
//! disarmed, so a script that swallows the first interruption still gets stopped.

use std::collections::BTreeMap;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

type Callback = Arc<dyn Fn() + Send + Sync>;

struct Entry {
    deadline: Instant,
    callback: Callback,
}

/// Armed entries by id, the last id, and when the watchdog thread will next look on its own
/// (None: not until woken). Arming wakes the thread only for a deadline earlier than that, so a
/// stream of short jobs (sync registrations) does not cost a thread switch each.
#[derive(Default)]
struct Table {
    last_id: u64,
    entries: BTreeMap<u64, Entry>,
    looks_at: Option<Instant>,
}

#[derive(Default)]
struct Shared {
    entries: Mutex<Table>,
    wake: Condvar,
}

#[derive(Clone)]
pub struct Watchdog {
    shared: Arc<Shared>,
}

/// Disarms its entry when dropped.
pub struct Armed {
    shared: Arc<Shared>,
    id: u64,
}

impl Watchdog {
    pub fn start(name: &str, repeat: Duration) -> std::io::Result<Watchdog> {
        let shared = Arc::new(Shared::default());
        let worker = shared.clone();
        std::thread::Builder::new().name(name.to_string()).spawn(move || run(worker, repeat))?;
        Ok(Watchdog { shared })
    }

    /// Call `callback` after `timeout` (and every `repeat` after that) until the guard drops.
    pub fn arm(&self, timeout: Duration, callback: Callback) -> Armed {
        let mut guard = self.shared.entries.lock().unwrap_or_else(|e| e.into_inner());
        guard.last_id += 1;
        let id = guard.last_id;
        let deadline = Instant::now() + timeout;
        guard.entries.insert(id, Entry { deadline, callback });
        let wake = guard.looks_at.is_none_or(|at| deadline < at);
        drop(guard);
        if wake {
            self.shared.wake.notify_all();
        }
        Armed { shared: self.shared.clone(), id }
    }
}

impl Drop for Armed {
    fn drop(&mut self) {
        let mut guard = self.shared.entries.lock().unwrap_or_else(|e| e.into_inner());
        guard.entries.remove(&self.id);
    }
}

fn run(shared: Arc<Shared>, repeat: Duration) {
    let mut guard = shared.entries.lock().unwrap_or_else(|e| e.into_inner());
    loop {
        let now = Instant::now();
        let due: Vec<(u64, Callback)> =
            guard.entries.iter().filter(|(_, e)| e.deadline <= now).map(|(id, e)| (*id, e.callback.clone())).collect();
        if !due.is_empty() {
            for (id, _) in &due {
                if let Some(e) = guard.entries.get_mut(id) {
                    e.deadline = now + repeat;
                }
            }
            drop(guard);
            for (_, callback) in due {
                // A callback may wait for an interpreter's GIL; it runs without our lock held.
                if std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| callback())).is_err() {
                    eprintln!("gearbox: a watchdog callback panicked");
                }
            }
            guard = shared.entries.lock().unwrap_or_else(|e| e.into_inner());
            continue;
        }
        let next = guard.entries.values().map(|e| e.deadline).min();
        guard.looks_at = next;
        guard = match next {
            Some(deadline) => {
                let wait = deadline.saturating_duration_since(Instant::now());
                shared.wake.wait_timeout(guard, wait).unwrap_or_else(|e| e.into_inner()).0
            }
            None => shared.wake.wait(guard).unwrap_or_else(|e| e.into_inner()),
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn fires_after_the_deadline_and_repeats_until_disarmed() {
        let dog = Watchdog::start("wd-test", Duration::from_millis(20)).unwrap();
        let hits = Arc::new(AtomicUsize::new(0));
        let h = hits.clone();
        let armed = dog.arm(
            Duration::from_millis(30),
            Arc::new(move || {
                h.fetch_add(1, Ordering::SeqCst);
            }),
        );
        std::thread::sleep(Duration::from_millis(10));
        assert_eq!(hits.load(Ordering::SeqCst), 0, "not before the deadline");
        let start = Instant::now();
        while hits.load(Ordering::SeqCst) < 2 && start.elapsed() < Duration::from_secs(5) {
            std::thread::sleep(Duration::from_millis(5));
        }
        assert!(hits.load(Ordering::SeqCst) >= 2, "repeats after the first fire");
        drop(armed);
        std::thread::sleep(Duration::from_millis(30));
        let after = hits.load(Ordering::SeqCst);
        std::thread::sleep(Duration::from_millis(60));
        assert_eq!(hits.load(Ordering::SeqCst), after, "silent once disarmed");
    }

    #[test]
    fn a_disarmed_entry_never_fires() {
        let dog = Watchdog::start("wd-test2", Duration::from_millis(20)).unwrap();
        let hits = Arc::new(AtomicUsize::new(0));
        let h = hits.clone();
        drop(dog.arm(
            Duration::from_millis(20),
            Arc::new(move || {
                h.fetch_add(1, Ordering::SeqCst);
            }),
        ));
        std::thread::sleep(Duration::from_millis(60));
        assert_eq!(hits.load(Ordering::SeqCst), 0);
    }
}
