//! The list of executions RG.DUMPEXECUTIONS shows, in creation order, capped by MaxExecutions.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};

use crate::errors::EngineError;
use crate::execution::Execution;

#[derive(Default)]
pub struct ExecutionRegistry {
    list: Mutex<VecDeque<Arc<Execution>>>,
}

impl ExecutionRegistry {
    fn list(&self) -> MutexGuard<'_, VecDeque<Arc<Execution>>> {
        self.list.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Add an execution, first dropping the oldest finished ones while at `max` or above.
    pub fn insert(&self, exec: Arc<Execution>, max: usize) {
        let mut list = self.list();
        Self::drop_finished_over(&mut list, max.max(1) - 1);
        list.push_back(exec);
    }

    /// Drop the oldest finished executions while more than `max` are listed: called as each
    /// execution finishes, so executions that were all running when they were listed (quick
    /// events queued behind each other) come back down to MaxExecutions once done.
    pub fn trim(&self, max: usize) {
        Self::drop_finished_over(&mut self.list(), max.max(1));
    }

    fn drop_finished_over(list: &mut VecDeque<Arc<Execution>>, max: usize) {
        while list.len() > max {
            match list.iter().position(|e| e.status().is_finished()) {
                Some(i) => {
                    list.remove(i);
                }
                None => break,
            }
        }
    }

    pub fn get(&self, id: &str) -> Option<Arc<Execution>> {
        self.list().iter().find(|e| e.id == id).cloned()
    }

    pub fn remove(&self, id: &str) -> Option<Arc<Execution>> {
        let mut list = self.list();
        let i = list.iter().position(|e| e.id == id)?;
        list.remove(i)
    }

    /// RG.DROPEXECUTION: only finished executions may be dropped.
    pub fn drop_finished(&self, id: &str) -> Result<(), EngineError> {
        let mut list = self.list();
        let i = list.iter().position(|e| e.id == id).ok_or(EngineError::ExecutionPlanNotExist)?;
        if !list[i].status().is_finished() {
            return Err(EngineError::DropRunning);
        }
        list.remove(i);
        Ok(())
    }

    pub fn all(&self) -> Vec<Arc<Execution>> {
        self.list().iter().cloned().collect()
    }

    pub fn len(&self) -> usize {
        self.list().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::execution::tests::FixedJob;
    use crate::execution::Outcome;
    use crate::session::tests::session;

    fn exec(id: &str) -> Arc<Execution> {
        Execution::new(id.into(), session("s"), Box::new(FixedJob(Outcome::default())), true)
    }

    #[test]
    fn executions_listed_while_running_come_back_to_the_cap_as_they_finish() {
        let reg = ExecutionRegistry::default();
        let all: Vec<_> = (1..=6).map(|i| exec(&format!("x-{i}"))).collect();
        for e in &all {
            reg.insert(e.clone(), 3);
        }
        assert_eq!(reg.len(), 6, "none had finished: none could go");
        for e in &all {
            e.run();
            reg.trim(3);
        }
        let left: Vec<String> = reg.all().iter().map(|e| e.id.clone()).collect();
        assert_eq!(left, ["x-4", "x-5", "x-6"], "the newest three stay");
    }

    #[test]
    fn cap_drops_oldest_finished_first_and_never_a_running_one() {
        let reg = ExecutionRegistry::default();
        let a = exec("a");
        let b = exec("b");
        reg.insert(a.clone(), 2);
        reg.insert(b.clone(), 2);
        b.run();
        reg.insert(exec("c"), 2);
        let ids: Vec<_> = reg.all().iter().map(|e| e.id.clone()).collect();
        assert_eq!(ids, vec!["a", "c"], "b was the only finished one");
        reg.insert(exec("d"), 2);
        assert_eq!(reg.len(), 3, "nothing finished to drop: the cap yields rather than drop running work");
    }

    #[test]
    fn drop_refuses_unfinished_and_unknown() {
        let reg = ExecutionRegistry::default();
        let a = exec("a");
        reg.insert(a.clone(), 10);
        assert_eq!(reg.drop_finished("a"), Err(EngineError::DropRunning));
        assert_eq!(reg.drop_finished("zz"), Err(EngineError::ExecutionPlanNotExist));
        a.run();
        assert_eq!(reg.drop_finished("a"), Ok(()));
        assert!(reg.get("a").is_none());
    }
}
