//! Sessions: one per `RG.PYEXECUTE`, owning the script's interpreter.
//!
//! A session is an `Arc`: the command running the script holds it, and so does every execution
//! the script starts (later: registrations, triggers, time events). When the last holder lets go
//! the interpreter is dropped, which frees it. The registry keeps only weak references, so it
//! never extends a session's life; it exists to answer RG.PYDUMPSESSIONS and to refuse a second
//! live session with the same `ID`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};

use crate::errors::EngineError;
use crate::port::Interpreter;
use crate::requirements::Requirement;
use crate::runtime_policy::RuntimeKind;
use crate::value::Value;

/// What it takes to rebuild a session after a reload or on a replica: its source, the replies
/// its top level got from `execute()` (replayed instead of calling Redis again) and the ACL
/// user it ran as.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Recipe {
    pub source: String,
    pub journal: Vec<Value>,
    pub user: Option<String>,
    /// The runtime the session ran in (None: recorded by a gearbox that did not say).
    pub runtime: Option<RuntimeKind>,
    /// The requirements it asked for (names as given), which its rebuild needs installed.
    pub requirements: Vec<String>,
}

pub struct Session {
    pub id: String,
    pub description: Option<String>,
    /// The ACL user who sent the RG.PYEXECUTE that made it (None: no user, which can never call
    /// Redis). Its registrations, executions and time events belong to this user too.
    pub owner: Option<String>,
    interpreter: Box<dyn Interpreter>,
    /// Replaced by an UPGRADE / REPLACE_WITH while something still holds it.
    dead: AtomicBool,
    recipe: Mutex<Option<Recipe>>,
    /// The installed requirements its imports see (REQUIREMENTS); held while the session lives.
    requirements: Mutex<Vec<Arc<Requirement>>>,
}

impl Session {
    pub fn new(id: String, description: Option<String>, owner: Option<String>, interpreter: Box<dyn Interpreter>) -> Arc<Session> {
        Arc::new(Session {
            id,
            description,
            owner,
            interpreter,
            dead: AtomicBool::new(false),
            recipe: Mutex::new(None),
            requirements: Mutex::new(Vec::new()),
        })
    }

    pub fn interpreter(&self) -> &dyn Interpreter {
        self.interpreter.as_ref()
    }

    pub fn mark_dead(&self) {
        self.dead.store(true, Ordering::SeqCst);
    }

    pub fn is_dead(&self) -> bool {
        self.dead.load(Ordering::SeqCst)
    }

    pub fn set_recipe(&self, recipe: Recipe) {
        *self.recipe.lock().unwrap_or_else(|e| e.into_inner()) = Some(recipe);
    }

    pub fn set_requirements(&self, requirements: Vec<Arc<Requirement>>) {
        *self.requirements.lock().unwrap_or_else(|e| e.into_inner()) = requirements;
    }

    pub fn requirements(&self) -> Vec<Arc<Requirement>> {
        self.requirements.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub fn recipe(&self) -> Option<Recipe> {
        self.recipe.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Whether this is the session `id` of `owner`: session ids are per owner, so alice's `x`
    /// and bob's `x` are two sessions.
    pub fn is(&self, owner: Option<&str>, id: &str) -> bool {
        self.id == id && self.owner.as_deref() == owner
    }
}

/// The sessions an UPGRADE / REPLACE_WITH replaces: ids within one owner's sessions.
#[derive(Clone, Copy, Debug)]
pub struct Replacing<'a> {
    pub owner: Option<&'a str>,
    pub ids: &'a [String],
}

impl Replacing<'_> {
    pub fn covers(&self, session: &Session) -> bool {
        self.ids.iter().any(|id| session.is(self.owner, id))
    }
}

/// A live session as RG.PYDUMPSESSIONS shows it.
#[derive(Clone, Debug, PartialEq)]
pub struct SessionSummary {
    pub id: String,
    pub description: Option<String>,
    pub owner: Option<String>,
    /// Holders other than the registry's own look-up.
    pub ref_count: usize,
    pub dead: bool,
    /// Bytes its interpreter holds (see `Interpreter::memory_bytes`).
    pub memory_bytes: u64,
    pub runtime: RuntimeKind,
    /// The requirements it uses.
    pub requirements: Vec<Arc<Requirement>>,
}

#[derive(Default)]
pub struct SessionRegistry {
    sessions: Mutex<Vec<Weak<Session>>>,
}

impl SessionRegistry {
    /// Track a new session; refuses an id that a live session already has.
    pub fn add(&self, session: &Arc<Session>) -> Result<(), EngineError> {
        let mut all = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
        all.retain(|w| w.strong_count() > 0);
        if all.iter().filter_map(Weak::upgrade).any(|s| s.is(session.owner.as_deref(), &session.id) && !s.is_dead()) {
            return Err(EngineError::SessionExists(session.id.clone()));
        }
        all.push(Arc::downgrade(session));
        Ok(())
    }

    /// Track a session without checking its id (an `UPGRADE` may reuse a live id).
    pub fn track(&self, session: &Arc<Session>) {
        let mut all = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
        all.retain(|w| w.strong_count() > 0);
        all.push(Arc::downgrade(session));
    }

    /// The live (not replaced) sessions `id` of `owner` (at most one, unless one is mid-upgrade).
    pub fn live(&self, owner: Option<&str>, id: &str) -> Vec<Arc<Session>> {
        let mut all = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
        all.retain(|w| w.strong_count() > 0);
        all.iter().filter_map(Weak::upgrade).filter(|s| s.is(owner, id) && !s.is_dead()).collect()
    }

    /// A live (not replaced) session `id` whose owner `visible` accepts (the caller's own, or any
    /// for an administrator).
    pub fn find_visible(&self, id: &str, visible: impl Fn(Option<&str>) -> bool) -> Option<Arc<Session>> {
        let mut all = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
        all.retain(|w| w.strong_count() > 0);
        all.iter().filter_map(Weak::upgrade).find(|s| s.id == id && !s.is_dead() && visible(s.owner.as_deref()))
    }

    /// Whether `owner` has a live (not replaced) session with this id.
    pub fn contains(&self, owner: Option<&str>, id: &str) -> bool {
        self.summaries().iter().any(|s| s.id == id && s.owner.as_deref() == owner && !s.dead)
    }

    /// Live sessions, oldest first.
    pub fn summaries(&self) -> Vec<SessionSummary> {
        let mut all = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
        all.retain(|w| w.strong_count() > 0);
        all.iter()
            .filter_map(Weak::upgrade)
            .map(|s| SessionSummary {
                id: s.id.clone(),
                description: s.description.clone(),
                owner: s.owner.clone(),
                ref_count: Arc::strong_count(&s) - 1,
                dead: s.is_dead(),
                memory_bytes: s.interpreter.memory_bytes(),
                runtime: s.interpreter.runtime(),
                requirements: s.requirements(),
            })
            .collect()
    }

    /// How many live sessions (of anyone) hold `req`.
    pub fn users_of(&self, req: &Arc<Requirement>) -> usize {
        let mut all = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
        all.retain(|w| w.strong_count() > 0);
        holders(&all.iter().filter_map(Weak::upgrade).collect::<Vec<_>>(), req)
    }

    /// The requirements live sessions whose owner `visible` accepts hold, each with how many
    /// live sessions (of anyone) hold it.
    pub fn requirements_in_use(&self, visible: impl Fn(Option<&str>) -> bool) -> Vec<(Arc<Requirement>, usize)> {
        let mut all = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
        all.retain(|w| w.strong_count() > 0);
        let sessions: Vec<Arc<Session>> = all.iter().filter_map(Weak::upgrade).collect();
        drop(all);
        let mut found: Vec<(Arc<Requirement>, usize)> = Vec::new();
        for s in sessions.iter().filter(|s| visible(s.owner.as_deref())) {
            for r in s.requirements() {
                if !found.iter().any(|(f, _)| Arc::ptr_eq(f, &r)) {
                    let users = holders(&sessions, &r);
                    found.push((r, users));
                }
            }
        }
        found
    }
}

/// How many of `sessions` hold `req`.
fn holders(sessions: &[Arc<Session>], req: &Arc<Requirement>) -> usize {
    sessions.iter().filter(|s| s.requirements().iter().any(|r| Arc::ptr_eq(r, req))).count()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::port::ScriptOutcome;
    use std::time::Duration;

    pub struct NullInterpreter;
    impl Interpreter for NullInterpreter {
        fn runtime(&self) -> RuntimeKind {
            RuntimeKind::Native
        }
        fn run_script(&self, _: &str, _: Duration) -> Result<ScriptOutcome, String> {
            Ok(ScriptOutcome::Done)
        }
        fn event_job(&self, _: i64, _: Value, _: bool) -> Box<dyn crate::port::Job> {
            Box::new(crate::execution::tests::FixedJob(crate::execution::Outcome::default()))
        }
        fn on_registered(&self, _: i64, _: Duration) -> Result<(), String> {
            Ok(())
        }
        fn profile(&self, _: &crate::ProfileRequest, _: Duration) -> Result<Option<String>, String> {
            Ok(None)
        }
        fn use_requirements(&self, _: &[Arc<Requirement>], _: Duration) -> Result<(), String> {
            Ok(())
        }
    }

    pub fn session(id: &str) -> Arc<Session> {
        Session::new(id.to_string(), None, None, Box::new(NullInterpreter))
    }

    #[test]
    fn registry_reports_live_sessions_with_their_holders() {
        let reg = SessionRegistry::default();
        let a = session("a");
        reg.add(&a).unwrap();
        let extra = a.clone();
        assert_eq!(
            reg.summaries(),
            vec![SessionSummary {
                id: "a".into(),
                description: None,
                owner: None,
                ref_count: 2,
                dead: false,
                memory_bytes: 0,
                runtime: RuntimeKind::Native,
                requirements: vec![],
            }]
        );
        drop(extra);
        assert_eq!(reg.summaries()[0].ref_count, 1);
        drop(a);
        assert!(reg.summaries().is_empty());
    }

    #[test]
    fn requirements_in_use_are_counted_per_holding_session_and_filtered_by_owner() {
        use crate::requirements::Requirement;
        let reg = SessionRegistry::default();
        let r = Arc::new(Requirement { name: "p==1".into(), path: "/x".into(), wheels: vec![], compiled: vec![] });
        let a = Session::new("a".into(), None, Some("alice".into()), Box::new(NullInterpreter));
        let b = Session::new("b".into(), None, Some("bob".into()), Box::new(NullInterpreter));
        a.set_requirements(vec![r.clone()]);
        b.set_requirements(vec![r.clone()]);
        reg.add(&a).unwrap();
        reg.add(&b).unwrap();
        let mine = reg.requirements_in_use(|o| o == Some("alice"));
        assert_eq!(mine.len(), 1);
        assert_eq!(mine[0].1, 2);
        assert!(reg.requirements_in_use(|o| o == Some("carol")).is_empty());
        assert_eq!(reg.summaries()[0].requirements, vec![r.clone()]);
    }

    #[test]
    fn a_live_id_cannot_be_reused_but_a_dead_one_can() {
        let reg = SessionRegistry::default();
        let a = session("same");
        reg.add(&a).unwrap();
        assert_eq!(reg.add(&session("same")), Err(EngineError::SessionExists("same".into())));
        assert!(reg.contains(None, "same"));
        assert!(!reg.contains(Some("bob"), "same"), "ids are per owner");
        a.mark_dead();
        assert!(!reg.contains(None, "same"), "a replaced session no longer owns its id");
        drop(a);
        assert!(reg.add(&session("same")).is_ok());
        let b = session("b");
        reg.track(&b);
        reg.track(&b);
        assert_eq!(reg.summaries().len(), 2, "track does not check ids");
    }
}
