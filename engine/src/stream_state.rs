//! The bookkeeping of a StreamReader registration: per stream key, how many entries arrived since
//! the last batch and whether a batch is running; for the registration, its status (running,
//! waiting to retry a failed batch, aborted, paused). Pure logic: the event layer asks it what
//! to do on each `xadd`, timer and finished batch. It also estimates the lag RG.DUMPREGISTRATIONS
//! shows, as RedisGears does: from the arrival of a batch's first entry to the batch's end.

use std::collections::HashMap;
use std::time::{Duration, Instant};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StreamStatus {
    Ok,
    WaitingForRetry,
    Aborted,
    Paused,
}

impl StreamStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            StreamStatus::Ok => "OK",
            StreamStatus::WaitingForRetry => "WAITING_FOR_RETRY_ON_FAILURE",
            StreamStatus::Aborted => "ABORTED",
            StreamStatus::Paused => "PAUSED",
        }
    }
}

/// What to do when a batch failed (`onFailedPolicy`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OnFailed {
    Continue,
    Abort,
    Retry,
}

impl OnFailed {
    pub fn parse(name: &str) -> Option<OnFailed> {
        match name.to_ascii_lowercase().as_str() {
            "continue" => Some(OnFailed::Continue),
            "abort" => Some(OnFailed::Abort),
            "retry" => Some(OnFailed::Retry),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            OnFailed::Continue => "continue",
            OnFailed::Abort => "abort",
            OnFailed::Retry => "retry",
        }
    }
}

#[derive(Default)]
struct KeyState {
    pending: u64,
    running: bool,
    /// When the first entry of the next batch arrived (None: no counted entry yet).
    first_arrival: Option<Instant>,
    /// The running batch's first arrival (None: started without one, e.g. after a restart).
    batch_arrival: Option<Instant>,
}

/// What the event layer should do next.
#[derive(Debug, PartialEq, Eq)]
pub enum Next {
    Nothing,
    /// Run a batch for this key now.
    Run,
    /// Arm the `duration` timer for this key (the batch is not full yet).
    Wait,
    /// Retry this key's batch after `onFailedRetryInterval`.
    Retry,
}

pub struct StreamState {
    status: StreamStatus,
    keys: HashMap<Vec<u8>, KeyState>,
    batch: u64,
    timed: bool,
    last_lag: Duration,
    total_lag: Duration,
}

impl StreamState {
    pub fn new(batch: u64, duration_ms: u64) -> StreamState {
        StreamState {
            status: StreamStatus::Ok,
            keys: HashMap::new(),
            batch: batch.max(1),
            timed: duration_ms > 0,
            last_lag: Duration::ZERO,
            total_lag: Duration::ZERO,
        }
    }

    /// The last batch's lag and the sum of all batches' lags.
    pub fn lag(&self) -> (Duration, Duration) {
        (self.last_lag, self.total_lag)
    }

    /// RG.CLEARREGISTRATIONSSTATS: the lag figures start again from zero.
    pub fn clear_lag(&mut self) {
        self.last_lag = Duration::ZERO;
        self.total_lag = Duration::ZERO;
    }

    pub fn status(&self) -> StreamStatus {
        self.status
    }

    fn start_if_ready(&mut self, key: &[u8], forced: bool) -> Next {
        let ok = self.status == StreamStatus::Ok;
        let batch = self.batch;
        let timed = self.timed;
        let k = self.keys.entry(key.to_vec()).or_default();
        if !ok || k.running {
            return Next::Nothing;
        }
        if k.pending >= batch || (forced && k.pending > 0) {
            // A batch reads at most `batch` entries: what else was counted meanwhile (100
            // pipelined XADDs) stays counted for the batches after it, so a backlog drains.
            k.running = true;
            k.pending = k.pending.saturating_sub(batch);
            k.batch_arrival = if k.pending > 0 { k.first_arrival } else { k.first_arrival.take() };
            return Next::Run;
        }
        if timed && k.pending == 1 && !forced {
            return Next::Wait;
        }
        Next::Nothing
    }

    /// An entry was added to `key`.
    pub fn added(&mut self, key: &[u8]) -> Next {
        self.added_at(key, Instant::now())
    }

    pub fn added_at(&mut self, key: &[u8], now: Instant) -> Next {
        let k = self.keys.entry(key.to_vec()).or_default();
        k.pending += 1;
        k.first_arrival.get_or_insert(now);
        self.start_if_ready(key, false)
    }

    /// `duration` elapsed for `key`: run whatever is pending.
    pub fn timer(&mut self, key: &[u8]) -> Next {
        self.start_if_ready(key, true)
    }

    /// Run `key` whatever is counted (a restart, an unpause, a retry): entries may be waiting
    /// in the stream that no event counted.
    pub fn kick(&mut self, key: &[u8]) -> Next {
        self.keys.entry(key.to_vec()).or_default().pending += 1;
        self.start_if_ready(key, true)
    }

    /// A batch of `key` ended.
    pub fn finished(&mut self, key: &[u8], failed: bool, policy: OnFailed) -> Next {
        self.finished_at(key, failed, policy, Instant::now())
    }

    pub fn finished_at(&mut self, key: &[u8], failed: bool, policy: OnFailed, now: Instant) -> Next {
        if let Some(k) = self.keys.get_mut(key) {
            k.running = false;
            // Acknowledged batches only (RedisGears: no lag for data not yet acked).
            if let Some(arrival) = k.batch_arrival.take().filter(|_| !failed || policy == OnFailed::Continue) {
                self.last_lag = now.saturating_duration_since(arrival);
                self.total_lag += self.last_lag;
            }
        }
        if failed {
            match policy {
                OnFailed::Continue => {}
                OnFailed::Abort => {
                    self.status = StreamStatus::Aborted;
                    return Next::Nothing;
                }
                OnFailed::Retry => {
                    self.status = StreamStatus::WaitingForRetry;
                    return Next::Retry;
                }
            }
        }
        self.start_if_ready(key, false)
    }

    /// A batch of `key` that had not started was aborted (a pause, a failed batch, an
    /// unregister): its entries stay unacknowledged and are counted to run again, when the
    /// registration may run.
    pub fn aborted(&mut self, key: &[u8]) -> Next {
        if let Some(k) = self.keys.get_mut(key) {
            k.running = false;
            k.pending += 1;
            k.first_arrival = k.first_arrival.or(k.batch_arrival.take());
        }
        self.start_if_ready(key, true)
    }

    /// Keys with entries counted and no batch running (batches aborted while the registration
    /// could not run): the event layer restarts them once it can.
    pub fn waiting(&self) -> Vec<Vec<u8>> {
        self.keys.iter().filter(|(_, k)| k.pending > 0 && !k.running).map(|(key, _)| key.clone()).collect()
    }

    /// The retry interval elapsed: run the failed batch again.
    pub fn retry(&mut self, key: &[u8]) -> Next {
        if self.status == StreamStatus::WaitingForRetry {
            self.status = StreamStatus::Ok;
        }
        self.kick(key)
    }

    pub fn pause(&mut self) {
        self.status = StreamStatus::Paused;
    }

    /// Unpause; returns the keys to run again.
    pub fn unpause(&mut self) -> Vec<Vec<u8>> {
        if self.status == StreamStatus::Paused {
            self.status = StreamStatus::Ok;
        }
        self.keys.keys().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_run_when_full_and_one_at_a_time() {
        let mut s = StreamState::new(2, 0);
        assert_eq!(s.added(b"s"), Next::Nothing);
        assert_eq!(s.added(b"s"), Next::Run);
        assert_eq!(s.added(b"s"), Next::Nothing);
        assert_eq!(s.added(b"s"), Next::Nothing, "a batch of s is running");
        assert_eq!(s.finished(b"s", false, OnFailed::Continue), Next::Run, "two arrived meanwhile");
        assert_eq!(s.finished(b"s", false, OnFailed::Continue), Next::Nothing);
    }

    #[test]
    fn duration_runs_a_partial_batch() {
        let mut s = StreamState::new(10, 50);
        assert_eq!(s.added(b"s"), Next::Wait);
        assert_eq!(s.added(b"s"), Next::Nothing);
        assert_eq!(s.timer(b"s"), Next::Run);
        assert_eq!(s.timer(b"s"), Next::Nothing);
    }

    #[test]
    fn failure_policies() {
        let mut s = StreamState::new(1, 0);
        assert_eq!(s.added(b"s"), Next::Run);
        assert_eq!(s.finished(b"s", true, OnFailed::Retry), Next::Retry);
        assert_eq!(s.status(), StreamStatus::WaitingForRetry);
        assert_eq!(s.added(b"s"), Next::Nothing, "no new batch while waiting to retry");
        assert_eq!(s.retry(b"s"), Next::Run);
        assert_eq!(s.finished(b"s", true, OnFailed::Abort), Next::Nothing);
        assert_eq!(s.status(), StreamStatus::Aborted);
        assert_eq!(s.added(b"s"), Next::Nothing);
    }

    #[test]
    fn lag_runs_from_a_batchs_first_arrival_to_its_end() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let mut s = StreamState::new(2, 0);
        assert_eq!(s.added_at(b"s", t0), Next::Nothing);
        assert_eq!(s.added_at(b"s", t0 + ms(5)), Next::Run);
        assert_eq!(s.added_at(b"s", t0 + ms(7)), Next::Nothing, "first entry of the next batch");
        assert_eq!(s.finished_at(b"s", false, OnFailed::Continue, t0 + ms(20)), Next::Nothing);
        assert_eq!(s.lag(), (ms(20), ms(20)));
        assert_eq!(s.added_at(b"s", t0 + ms(30)), Next::Run);
        assert_eq!(s.finished_at(b"s", false, OnFailed::Continue, t0 + ms(40)), Next::Nothing);
        assert_eq!(s.lag(), (ms(33), ms(53)), "from t0+7, when the batch's first entry came");
        assert_eq!(s.kick(b"s"), Next::Run);
        s.finished_at(b"s", false, OnFailed::Continue, t0 + ms(90));
        assert_eq!(s.lag(), (ms(33), ms(53)), "a kicked batch has no arrival time");
    }

    #[test]
    fn an_aborted_batch_runs_again_only_when_the_registration_may_run() {
        let mut s = StreamState::new(1, 0);
        assert_eq!(s.added(b"a"), Next::Run);
        assert_eq!(s.added(b"b"), Next::Run);
        assert_eq!(s.finished(b"a", true, OnFailed::Retry), Next::Retry);
        assert_eq!(s.aborted(b"b"), Next::Nothing, "waiting for the retry: b waits too");
        assert_eq!(s.status(), StreamStatus::WaitingForRetry, "an abort is not a failure");
        assert_eq!(s.retry(b"a"), Next::Run);
        assert_eq!(s.kick(b"b"), Next::Run, "b's entries were kept");
        s.pause();
        assert_eq!(s.aborted(b"b"), Next::Nothing);
        assert_eq!(s.status(), StreamStatus::Paused, "still paused");
        assert!(s.unpause().contains(&b"b".to_vec()));
        assert_eq!(s.kick(b"b"), Next::Run);
    }

    #[test]
    fn a_backlog_counted_while_a_batch_runs_drains_batch_by_batch() {
        let mut s = StreamState::new(1, 0);
        assert_eq!(s.added(b"s"), Next::Run);
        for _ in 0..99 {
            assert_eq!(s.added(b"s"), Next::Nothing, "one batch at a time");
        }
        for left in (0..99).rev() {
            assert_eq!(s.finished(b"s", false, OnFailed::Continue), Next::Run, "{left} more to go");
        }
        assert_eq!(s.finished(b"s", false, OnFailed::Continue), Next::Nothing, "all 100 read");
        let mut s = StreamState::new(3, 0);
        for _ in 0..10 {
            s.added(b"s");
        }
        assert_eq!(s.finished(b"s", false, OnFailed::Continue), Next::Run, "3 of the 7 counted meanwhile");
        assert_eq!(s.finished(b"s", false, OnFailed::Continue), Next::Run, "the next 3");
        assert_eq!(s.finished(b"s", false, OnFailed::Continue), Next::Nothing, "1 left: a batch of 3 waits");
    }

    #[test]
    fn pause_holds_batches_until_unpaused() {
        let mut s = StreamState::new(1, 0);
        s.pause();
        assert_eq!(s.added(b"s"), Next::Nothing);
        assert_eq!(s.status().as_str(), "PAUSED");
        assert_eq!(s.unpause(), vec![b"s".to_vec()]);
        assert_eq!(s.kick(b"s"), Next::Run);
        assert_eq!(OnFailed::parse("Retry"), Some(OnFailed::Retry));
    }
}
