//! The execution thread pool (`ExecutionThreads`): a fixed set of named threads taking jobs from
//! one queue. Executions of different sessions run here at the same time.

use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::thread;

type Task = Box<dyn FnOnce() + Send>;

pub struct Pool {
    sender: Mutex<Sender<Task>>,
    size: usize,
}

impl Pool {
    pub fn new(size: usize, name: &str) -> std::io::Result<Pool> {
        let size = size.max(1);
        let (sender, receiver) = channel::<Task>();
        let receiver = Arc::new(Mutex::new(receiver));
        for i in 0..size {
            let rx = receiver.clone();
            thread::Builder::new().name(format!("{name}-{i}")).spawn(move || worker(rx))?;
        }
        Ok(Pool { sender: Mutex::new(sender), size })
    }

    pub fn size(&self) -> usize {
        self.size
    }

    pub fn spawn(&self, task: impl FnOnce() + Send + 'static) {
        let sender = self.sender.lock().unwrap_or_else(|e| e.into_inner());
        // The workers live as long as the process (the module cannot be unloaded), so a send can
        // only fail if every worker died; then run the task here rather than lose it.
        if let Err(e) = sender.send(Box::new(task)) {
            (e.0)();
        }
    }
}

fn worker(rx: Arc<Mutex<Receiver<Task>>>) {
    loop {
        let task = {
            let guard = rx.lock().unwrap_or_else(|e| e.into_inner());
            guard.recv()
        };
        match task {
            Ok(task) => {
                // A panicking task must not take the thread (and the pool's capacity) with it.
                if std::panic::catch_unwind(std::panic::AssertUnwindSafe(task)).is_err() {
                    eprintln!("gearbox: an execution task panicked; the worker goes on");
                }
            }
            Err(_) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;
    use std::time::Duration;

    #[test]
    fn runs_tasks_on_named_threads_in_parallel() {
        let pool = Pool::new(2, "t").unwrap();
        let (tx, rx) = mpsc::channel();
        let barrier = Arc::new(std::sync::Barrier::new(2));
        for _ in 0..2 {
            let tx = tx.clone();
            let b = barrier.clone();
            pool.spawn(move || {
                b.wait(); // both tasks must be running at once to pass
                tx.send(thread::current().name().unwrap().to_string()).unwrap();
            });
        }
        let mut names: Vec<String> = (0..2).map(|_| rx.recv_timeout(Duration::from_secs(5)).unwrap()).collect();
        names.sort();
        assert_eq!(names, vec!["t-0", "t-1"]);
    }

    #[test]
    fn a_panicking_task_does_not_kill_the_worker() {
        let pool = Pool::new(1, "p").unwrap();
        pool.spawn(|| panic!("boom"));
        let (tx, rx) = mpsc::channel();
        pool.spawn(move || tx.send(7).unwrap());
        assert_eq!(rx.recv_timeout(Duration::from_secs(5)).unwrap(), 7);
    }
}
