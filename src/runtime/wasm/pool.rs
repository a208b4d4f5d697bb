//! The warm pool: a few instances that already started Python and loaded gears.py, parked on
//! their channel waiting for a first script, so `RG.PYEXECUTE` does not pay the guest's ~35 ms
//! start-up. Refilled by one background thread (`gearbox-wasm-pool`); bounded; instances are
//! single-use (a session never goes back to the pool).

use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use super::instance::Instance;

pub struct Pool {
    ready: Mutex<VecDeque<Arc<Instance>>>,
    wake: Condvar,
    size: usize,
}

impl Pool {
    /// A pool of `size` instances made by `make` on a background thread (none if `size` is 0).
    /// `first` (already started, e.g. by the load-time check) is parked right away.
    pub fn start<F>(size: usize, first: Option<Arc<Instance>>, make: F) -> Result<Arc<Pool>, String>
    where
        F: Fn() -> Result<Arc<Instance>, String> + Send + 'static,
    {
        let ready: VecDeque<_> = first.filter(|_| size > 0).into_iter().collect();
        let pool = Arc::new(Pool { ready: Mutex::new(ready), wake: Condvar::new(), size });
        if size > 0 {
            let worker = pool.clone();
            std::thread::Builder::new()
                .name("gearbox-wasm-pool".into())
                .spawn(move || worker.refill(make))
                .map_err(|e| format!("could not start the wasm pool thread: {e}"))?;
        }
        Ok(pool)
    }

    /// A ready instance, if one is parked.
    pub fn take(&self) -> Option<Arc<Instance>> {
        let got = self.ready.lock().unwrap_or_else(|e| e.into_inner()).pop_front();
        self.wake.notify_all();
        got
    }

    pub fn parked(&self) -> usize {
        self.ready.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    fn refill<F: Fn() -> Result<Arc<Instance>, String>>(&self, make: F) {
        loop {
            let since = std::time::Instant::now();
            {
                let mut ready = self.ready.lock().unwrap_or_else(|e| e.into_inner());
                while ready.len() >= self.size {
                    ready = self.wake.wait(ready).unwrap_or_else(|e| e.into_inner());
                }
            }
            crate::runtime::settle::settle_after(since);
            match std::panic::catch_unwind(std::panic::AssertUnwindSafe(&make)) {
                Ok(Ok(instance)) => self.ready.lock().unwrap_or_else(|e| e.into_inner()).push_back(instance),
                Ok(Err(e)) => {
                    eprintln!("gearbox: could not pre-start a wasm instance: {e}");
                    std::thread::sleep(Duration::from_secs(1));
                }
                Err(_) => std::thread::sleep(Duration::from_secs(1)),
            }
        }
    }
}
