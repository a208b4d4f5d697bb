//! The Redis global lock as seen from gearbox threads.
//!
//! Redis' main thread always holds it while it runs module code. A background (execution)
//! thread takes it per `execute()` call, or for a whole `atomic()` block; a thread-local depth
//! records that this thread already holds it so nested calls do not try to take it again.
//! Rule: never wait for this lock while holding an interpreter (the runtimes release their GIL
//! or store before calling in here; see `Host::may_wait_for_lock`).

use std::cell::Cell;

use super::redis_ffi;

thread_local! {
    static HELD: Cell<u32> = const { Cell::new(0) };
}

/// Whether a call from this thread would have to wait for the lock.
pub fn must_wait() -> bool {
    !redis_ffi::is_main_thread() && HELD.with(|h| h.get()) == 0
}

/// Holds the Redis lock (if this thread did not already) until dropped.
pub struct RedisLock {
    taken: bool,
}

impl RedisLock {
    /// The lock if this thread has it already or can take it without waiting; None if taking
    /// it would mean waiting (the caller must then let go of its interpreter first).
    pub fn try_acquire() -> Option<RedisLock> {
        if !must_wait() {
            return Some(RedisLock::acquire());
        }
        if !redis_ffi::try_lock() {
            return None;
        }
        HELD.with(|h| h.set(h.get() + 1));
        Some(RedisLock { taken: true })
    }

    pub fn acquire() -> RedisLock {
        let taken = must_wait();
        if taken {
            redis_ffi::lock();
        }
        HELD.with(|h| h.set(h.get() + 1));
        RedisLock { taken }
    }
}

impl Drop for RedisLock {
    fn drop(&mut self) {
        HELD.with(|h| h.set(h.get().saturating_sub(1)));
        if self.taken {
            redis_ffi::unlock();
        }
    }
}

thread_local! {
    static ATOMIC: std::cell::RefCell<Option<RedisLock>> = const { std::cell::RefCell::new(None) };
}

/// Whether this thread may hold the Redis lock for an `atomic()` block: Redis' main thread and
/// gearbox's execution threads, whose blocks end with the callback that opened them
/// ([`atomic_end_if_open`]). Threads a script made itself, and the asyncio loop thread that runs
/// coroutines, may not: a block there could be kept open across an `await` or forever.
fn may_hold_atomic() -> bool {
    redis_ffi::is_main_thread() || std::thread::current().name().is_some_and(|n| n.starts_with(EXECUTION_THREAD_PREFIX))
}

/// The name every execution thread's name starts with (see `Engine::new`).
pub const EXECUTION_THREAD_PREFIX: &str = "gearbox-exec";

/// Enter an `atomic()` block on this thread.
pub fn atomic_begin() -> Result<(), String> {
    if !may_hold_atomic() {
        return Err("await is not allow inside atomic block: atomic() may only be used in a step or a callback, not in a coroutine or a thread the script started".to_string());
    }
    ATOMIC.with(|a| {
        let mut slot = a.borrow_mut();
        if slot.is_some() {
            return Err("Already inside an atomic block".to_string());
        }
        *slot = Some(RedisLock::acquire());
        Ok(())
    })
}

/// Leave the `atomic()` block of this thread (no-op when there is none).
pub fn atomic_end() {
    let lock = ATOMIC.with(|a| a.borrow_mut().take());
    drop(lock);
}

/// After a callback or step finished on this thread: give back the lock of an `atomic()` block
/// it left open. True when there was one (the callback then fails with [`ATOMIC_LEFT_OPEN`]).
pub fn atomic_end_if_open() -> bool {
    let lock = ATOMIC.with(|a| a.borrow_mut().take());
    lock.is_some()
}

/// The error of a callback that left an `atomic()` block open.
pub const ATOMIC_LEFT_OPEN: &str = "atomic() block left open when the callback ended: gearbox gave the Redis lock back";
