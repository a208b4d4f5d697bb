//! Running a script into a new session and installing what it registered, for RG.PYEXECUTE
//! (recording its top level) and for a session rebuilt from its recipe (RG.INNERREGISTER on a
//! replica or from the AOF, RDB load), which replays the recorded top level.
//!
//! Installing is all or nothing: registrations exist only once the whole script succeeded, and
//! an UPGRADE / REPLACE_WITH swaps the old session's registrations for the new ones in one step
//! (`RegistrationRegistry::install`); the old session is marked dead and freed by its last holder.

use std::sync::{Arc, Mutex};

use gearbox_engine::codec;
use gearbox_engine::persist::{self, SavedSession};
use gearbox_engine::port::ScriptOutcome;
use gearbox_engine::requirements::{Exported, Requirement};
use gearbox_engine::session::Recipe;
use gearbox_engine::{ReaderKind, Registration, Replacing, RuntimeKind, Session, Value};

use crate::gearbox;
use crate::host::lock::RedisLock;
use crate::host::redis_ffi::{self, Ctx};
use crate::host::redis_hooks;
use crate::host::RedisHost;

/// What to run.
pub struct ScriptRequest {
    pub source: String,
    pub id: String,
    pub description: Option<String>,
    /// The ACL user the session acts as (and belongs to).
    pub user_name: Option<String>,
    /// Session ids whose registrations this script replaces (UPGRADE / REPLACE_WITH).
    pub replacing: Vec<String>,
    /// Rebuilding a saved session: its journal and registration ids.
    pub restore: Option<Restore>,
    /// The runtime the policy chose for it.
    pub runtime: RuntimeKind,
    /// The installed requirements its imports see (REQUIREMENTS).
    pub requirements: Vec<Arc<Requirement>>,
}

/// A saved session's top-level journal and its registrations' (handle, id) pairs.
pub type Restore = (Vec<Value>, Vec<(i64, String)>);

/// A script that ran: its session, what its top level asked to run, what it installed.
pub struct Installed {
    pub session: Arc<Session>,
    pub outcome: ScriptOutcome,
    pub registrations: Vec<Arc<Registration>>,
}

/// Registrations restored by a load, waiting for its end (onRegistered, stream backlog).
static DEFERRED: Mutex<Vec<Arc<Registration>>> = Mutex::new(Vec::new());

/// Run `req` and install its registrations. `Err` is the reply text (nothing was installed).
pub fn run_and_install(req: ScriptRequest, loading: bool) -> Result<Installed, String> {
    let gb = gearbox::get();
    let host = Arc::new(RedisHost::new(req.user_name.clone(), gearbox::config_get));
    let replaying = req.restore.is_some();
    let journal = match req.restore {
        Some((journal, ids)) => {
            host.top_level().replay(journal.clone(), ids, req.replacing.clone());
            journal
        }
        None => {
            host.top_level().record(req.replacing.clone());
            Vec::new()
        }
    };
    let owner = req.user_name.clone();
    let replacing = Replacing { owner: owner.as_deref(), ids: &req.replacing };
    let old: Vec<Arc<Session>> = req.replacing.iter().flat_map(|id| gb.engine.sessions.live(replacing.owner, id)).collect();
    let interpreter = gb
        .runtimes
        .get(req.runtime)?
        .create_interpreter(host.clone())
        .map_err(|e| format!("could not create the script's interpreter: {e}"))?;
    let session = Session::new(req.id, req.description, req.user_name.clone(), interpreter);
    host.set_session(Arc::downgrade(&session));
    gb.engine.sessions.track(&session);
    let timeout = gb.config().script_timeout();
    if !req.requirements.is_empty() {
        session.interpreter().use_requirements(&req.requirements, timeout)?;
        session.set_requirements(req.requirements.clone());
    }
    let mut result = session.interpreter().run_script(&req.source, timeout);
    if crate::host::lock::atomic_end_if_open() && result.is_ok() {
        result = Err(crate::host::lock::ATOMIC_LEFT_OPEN.to_string());
    }
    let finished = host.top_level().finish();
    let outcome = result?;
    let registrations: Vec<Arc<Registration>> =
        finished.registrations.into_iter().map(|p| Registration::new(p.id, session.clone(), p.spec)).collect();
    if !replaying {
        let lock = RedisLock::acquire();
        super::quotas::new_registrations(lock.held(), req.user_name.as_deref(), registrations.len(), &req.replacing)?;
    }
    if !registrations.is_empty() || !finished.keyed_time_events.is_empty() {
        let journal = if replaying { journal } else { finished.journal };
        session.set_recipe(Recipe {
            source: req.source,
            journal,
            user: req.user_name,
            runtime: Some(req.runtime),
            requirements: session.requirements().iter().map(|r| r.name.clone()).collect(),
        });
    }
    for r in &registrations {
        gb.engine.registrations.reserve(&r.id);
    }
    let removed = gb.engine.registrations.install(registrations.clone(), replacing);
    for s in old.iter().filter(|s| !Arc::ptr_eq(s, &session)) {
        s.mark_dead();
    }
    drop(removed);
    drop(old);
    super::keyed_timers::create(RedisLock::acquire().held(), &session, finished.keyed_time_events);
    for r in registrations.iter().filter(|r| r.spec.on_registered || r.spec.reader == ReaderKind::Stream) {
        if loading {
            DEFERRED.lock().unwrap_or_else(|e| e.into_inner()).push(r.clone());
        } else {
            installed(r);
        }
    }
    Ok(Installed { session, outcome, registrations })
}

/// A registration is in place (and, after a load, the whole dataset is there): its
/// onRegistered callback runs, and a stream registration reads what is waiting in its streams.
pub fn installed(r: &Arc<Registration>) {
    if r.spec.on_registered {
        let timeout = gearbox::get().config().script_timeout();
        if let Err(e) = r.session.interpreter().on_registered(r.spec.handle, timeout) {
            redis_ffi::log("warning", &format!("gearbox: onRegistered of registration {} failed: {e}", r.id));
        }
    }
    if r.spec.reader == ReaderKind::Stream {
        let lock = RedisLock::acquire();
        if !redis_hooks::is_replica(lock.held()) {
            super::streams::kick(lock.held(), r);
        }
    }
}

/// The end of a load: run the onRegistered callbacks of the registrations it restored.
pub fn run_deferred() {
    let pending = std::mem::take(&mut *DEFERRED.lock().unwrap_or_else(|e| e.into_inner()));
    for r in pending {
        installed(&r);
    }
}

/// A load begins: forget callbacks deferred by an earlier one.
pub fn clear_deferred() {
    DEFERRED.lock().unwrap_or_else(|e| e.into_inner()).clear();
}

/// Send the new state of `session` to replicas and the AOF (`RG.INNERREGISTER <blob>`).
pub fn replicate(ctx: Ctx, session: &Arc<Session>, replacing: &[String]) {
    let gb = gearbox::get();
    let saved = SavedSession {
        id: session.id.clone(),
        description: session.description.clone(),
        recipe: session.recipe().unwrap_or_default(),
        registrations: gb
            .engine
            .registrations
            .all()
            .iter()
            .filter(|r| Arc::ptr_eq(&r.session, session) && !r.made_at_run_time)
            .map(|r| (r.spec.handle, r.id.clone()))
            .collect(),
    };
    let blob = codec::to_bytes(&Value::Array(vec![
        Value::Bulk(persist::encode_with_requirements(&[saved], &super::requirements::exports(&session.requirements()))),
        Value::bulks(replacing.iter().map(|s| s.as_bytes().to_vec())),
    ]));
    redis_hooks::replicate(ctx, "RG.INNERREGISTER", &[&blob]);
}

/// The request that replays a saved session, giving its `register()` calls these `ids`.
fn replay_request(saved: SavedSession, replacing: Vec<String>, ids: Vec<(i64, String)>) -> Result<ScriptRequest, String> {
    // A rebuilt session acts as the user recorded when it was made, never as anyone else: a
    // recipe without a user, or whose user is gone or disabled, stays down.
    let Some(name) = &saved.recipe.user else {
        return Err("its recipe names no ACL user to run as".into());
    };
    let lock = RedisLock::acquire();
    crate::host::acl_users::resolve(lock.held(), name).map_err(|why| format!("it cannot run: {why}"))?;
    let (runtime, changed) = gearbox::get().runtimes.policy.restore(Some(name), saved.recipe.runtime);
    if changed {
        redis_ffi::log(
            "warning",
            &format!(
                "gearbox: session {} of '{name}' was made in {} mode, which this server does not give that user; it runs in {} mode",
                saved.id,
                saved.recipe.runtime.map(RuntimeKind::as_str).unwrap_or("?"),
                runtime.as_str()
            ),
        );
    }
    let requirements = super::requirements::installed(&saved.recipe.requirements).ok_or_else(|| {
        format!(
            "its requirements {:?} are not installed on this server (RG.PYEXECUTE … REQUIREMENTS installs them)",
            saved.recipe.requirements
        )
    })?;
    Ok(ScriptRequest {
        requirements,
        source: saved.recipe.source,
        id: saved.id,
        description: saved.description,
        user_name: saved.recipe.user,
        replacing,
        restore: Some((saved.recipe.journal, ids)),
        runtime,
    })
}

/// Rebuild one saved session (a load, or RG.INNERREGISTER). `Err` says why it was skipped.
pub fn restore(saved: SavedSession, replacing: Vec<String>, loading: bool) -> Result<(), String> {
    if saved.registrations.is_empty() && replacing.is_empty() {
        return Ok(());
    }
    let expected = saved.registrations.len();
    let ids = saved.registrations.clone();
    let installed = run_and_install(replay_request(saved, replacing, ids)?, loading)?;
    if installed.registrations.len() != expected {
        return Err(format!(
            "restored {} of its {} registrations (its script no longer registers the same way)",
            installed.registrations.len(),
            expected
        ));
    }
    Ok(())
}

/// Rebuild a saved session that has no registrations (its key-bound time events hold it).
pub fn rebuild(saved: SavedSession) -> Result<Arc<Session>, String> {
    let recipe = saved.recipe.clone();
    let installed = run_and_install(replay_request(saved, Vec::new(), Vec::new())?, true)?;
    // Replaying records nothing: the session keeps the recipe it was saved with.
    installed.session.set_recipe(recipe);
    Ok(installed.session)
}

/// Decode an RG.INNERREGISTER blob: the session, the ids it replaces, the requirements it uses.
pub fn decode_inner(blob: &[u8]) -> Result<(SavedSession, Vec<String>, Vec<Exported>), String> {
    let Value::Array(parts) = codec::decode(blob)? else { return Err("not an array".into()) };
    let [Value::Bulk(sessions), Value::Array(replacing)] = parts.as_slice() else { return Err("wrong shape".into()) };
    let (mut sessions, requirements) = persist::decode_with_requirements(sessions)?;
    if sessions.len() != 1 {
        return Err("expected one session".into());
    }
    Ok((sessions.remove(0), replacing.iter().map(codec::text_of).collect(), requirements))
}
