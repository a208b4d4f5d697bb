//! A background thread of a runtime (a pool refilling its ready interpreters or instances, the
//! reaper) woken after a quiet spell waits a moment before working, so that the command that
//! woke it finishes first. Woken by Redis' main thread, such a thread ran on the main thread's
//! core at once and kept it for the whole ~2 ms of making an interpreter while the command's
//! reply waited: spaced `RG.PYEXECUTE 'x = 1'` took 2.5-3 ms in native mode, ~0.65 ms with the
//! pause. Under steady load (woken again within `QUIET`) there is no pause: it would only slow
//! the refill down.

use std::time::{Duration, Instant};

const SETTLE: Duration = Duration::from_millis(2);
const QUIET: Duration = Duration::from_millis(10);

/// Called right after a wait that began at `since`.
pub fn settle_after(since: Instant) {
    if since.elapsed() >= QUIET {
        std::thread::sleep(SETTLE);
    }
}
