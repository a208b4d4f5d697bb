//! Session and interpreter commands: RG.PYDUMPSESSIONS, RG.PYSTATS, RG.PYDUMPREQS,
//! RG.PYPROFILE.

use gearbox_engine::errors::EngineError;
use gearbox_engine::session::SessionSummary;
use gearbox_engine::{ProfileRequest, Value};

use super::viewer::Viewer;
use super::{registrations, text, Reply};
use crate::gearbox;
use crate::host::redis_ffi::Ctx;
use crate::memory;

fn session_value(s: &SessionSummary, verbose: bool, with_owner: bool) -> Value {
    let gb = gearbox::get();
    let registrations = if s.dead {
        Vec::new()
    } else if verbose {
        gb.engine
            .registrations
            .all()
            .iter()
            .filter(|r| r.session.is(s.owner.as_deref(), &s.id))
            .map(|r| registrations::registration_value(r, false))
            .collect()
    } else {
        gb.engine.registrations.ids_of_session(s.owner.as_deref(), &s.id).into_iter().map(Value::bulk).collect()
    };
    let mut items = vec![
        ("ID", Value::bulk(s.id.clone())),
        ("sessionDescription", s.description.clone().map(Value::bulk).unwrap_or(Value::Nil)),
        ("refCount", Value::Int(s.ref_count as i64)),
        ("linked", Value::bulk("primary")),
        ("dead", Value::bulk(if s.dead { "true" } else { "false" })),
        ("requirementInstallationNeeded", Value::Int(!s.requirements.is_empty() as i64)),
        ("requirements", requirements_value(&s.requirements, verbose)),
        ("registrations", Value::Array(registrations)),
    ];
    if with_owner {
        items.push(("owner", s.owner.clone().map(Value::bulk).unwrap_or(Value::Nil)));
        items.push(("memoryBytes", Value::Int(s.memory_bytes as i64)));
        items.push(("runtime", Value::bulk(s.runtime.as_str())));
    }
    Value::pairs(items)
}

/// RG.PYDUMPSESSIONS [VERBOSE] [DEAD] [OWNER] [SESSIONS s1 s2 ...]; OWNER (gearbox's own) adds
/// each session's owner (its ACL user) and the bytes its interpreter holds (`memoryBytes`) to
/// the entry.
pub fn dump_sessions(ctx: Ctx, args: &[Vec<u8>]) -> Reply {
    let viewer = Viewer::of(ctx);
    let mut wanted: Option<Vec<String>> = None;
    let mut dead_only = false;
    let mut verbose = false;
    let mut with_owner = false;
    let mut i = 1;
    while i < args.len() {
        let word = text(&args[i]);
        match word.to_ascii_uppercase().as_str() {
            "VERBOSE" => verbose = true,
            "DEAD" => dead_only = true,
            "OWNER" => with_owner = true,
            "SESSIONS" => {
                wanted = Some(args[i + 1..].iter().map(|a| text(a)).collect());
                break;
            }
            _ => return Reply::error(EngineError::UnknownOption(word).to_string()),
        }
        i += 1;
    }
    // DEAD: sessions replaced by an UPGRADE / REPLACE_WITH that something still holds.
    let live: Vec<SessionSummary> =
        gearbox::get().engine.sessions.summaries().into_iter().filter(|s| s.dead == dead_only && viewer.sees(s.owner.as_deref())).collect();
    let items = match wanted {
        None => live.iter().map(|s| session_value(s, verbose, with_owner)).collect(),
        Some(names) => names
            .iter()
            .map(|name| match live.iter().find(|s| &s.id == name) {
                Some(s) => session_value(s, verbose, with_owner),
                None => Value::bulk(EngineError::SessionNotExists(name.clone()).to_string()),
            })
            .collect(),
    };
    Reply::Value(Value::Array(items))
}

/// RG.PYSTATS. gearbox does not route Python's allocator through Redis (RedisGears'
/// OverridePythonAllocators=0), so the figures are the process' resident memory: current
/// (CurrAllocated) and peak (PeakAllocated and TotalAllocated).
pub fn py_stats(_: Ctx, _: &[Vec<u8>]) -> Reply {
    let m = memory::process_memory();
    Reply::Value(Value::Array(vec![
        Value::bulk("TotalAllocated"),
        Value::Int(m.peak_rss as i64),
        Value::bulk("PeakAllocated"),
        Value::Int(m.peak_rss as i64),
        Value::bulk("CurrAllocated"),
        Value::Int(m.rss as i64),
    ]))
}

/// A session's requirements: their names, or (VERBOSE) their RG.PYDUMPREQS records.
fn requirements_value(reqs: &[std::sync::Arc<gearbox_engine::requirements::Requirement>], verbose: bool) -> Value {
    if !verbose {
        return Value::bulks(reqs.iter().map(|r| r.name.as_bytes().to_vec()));
    }
    let gb = gearbox::get();
    let os = gearbox_engine::requirements::compiled_os();
    Value::Array(reqs.iter().map(|r| gb.engine.requirements.dump(r, gb.engine.sessions.users_of(r), &os)).collect())
}

/// RG.PYDUMPREQS: the installed requirements, as RedisGears shows them. An administrator sees
/// the whole dictionary (and older installs sessions still use); another user only the
/// requirements their own sessions use.
pub fn dump_requirements(ctx: Ctx, _: &[Vec<u8>]) -> Reply {
    let gb = gearbox::get();
    let viewer = Viewer::of(ctx);
    let mut shown = gb.engine.sessions.requirements_in_use(|owner| viewer.sees(owner));
    if viewer.is_admin() {
        for r in gb.engine.requirements.all() {
            if !shown.iter().any(|(s, _)| std::sync::Arc::ptr_eq(s, &r)) {
                shown.push((r, 0));
            }
        }
    }
    let os = gearbox_engine::requirements::compiled_os();
    Reply::Value(Value::Array(shown.iter().map(|(r, users)| gb.engine.requirements.dump(r, *users, &os)).collect()))
}

/// RG.PYPROFILE STATS <session> [order] | RESET <session>: the cProfile data a session's profiled
/// plans collected (ProfileExecutions 1) as pstats text, ordered by a pstats sort key (`tottime`
/// by default), or forget it. Another owner's session answers as an unknown one.
pub fn py_profile(ctx: Ctx, args: &[Vec<u8>]) -> Reply {
    if args.len() < 3 {
        return Reply::WrongArity;
    }
    let request = match (text(&args[1]).to_ascii_uppercase().as_str(), args.len()) {
        ("STATS", 3) => ProfileRequest::Stats("tottime".into()),
        ("STATS", 4) => ProfileRequest::Stats(text(&args[3])),
        ("RESET", 3) => ProfileRequest::Reset,
        _ => return Reply::error("Wrong subcommand given to RG.PYPROFILE"),
    };
    let viewer = Viewer::of(ctx);
    let id = text(&args[2]);
    let Some(session) = gearbox::get().engine.sessions.find_visible(&id, |owner| viewer.sees(owner)) else {
        return Reply::error("session does not exists");
    };
    let timeout = gearbox::get().config().script_timeout();
    match (session.interpreter().profile(&request, timeout), &request) {
        (Err(e), _) => Reply::error(e),
        (Ok(_), ProfileRequest::Reset) => Reply::ok(),
        (Ok(Some(stats)), _) => Reply::Value(Value::bulk(stats)),
        (Ok(None), _) => Reply::error(format!("no profile information for session {id} (ProfileExecutions is 0, or it was reset)")),
    }
}
