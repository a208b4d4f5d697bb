//! `INFO rg`: counts of executions, registrations, sessions and live interpreters, the mode, one
//! line per registration (`rg_regisrations`), one line per owner (`rg_owners`: sessions,
//! registrations, executions and interpreter memory of each ACL user), and the memory figures RedisGears tests read
//! (`rg_TotalAllocated`, …).

use std::collections::BTreeMap;
use std::ffi::c_int;

use redis_module::raw;

use crate::gearbox;
use crate::host::redis_ffi::InfoCtx;
use crate::memory;

/// Text that stays one value of one INFO line: RedisGears replaced `,` by `|`; line breaks go too.
fn one_value(text: &str) -> String {
    text.replace(',', "|").replace(['\r', '\n'], " ")
}

/// Per owner (ACL user): live sessions, registrations, listed executions and the bytes their
/// sessions' interpreters hold (replaced sessions still alive included), so an operator sees
/// which tenant uses what (`rg_owners` section, one dict field per user).
fn write_owners(ctx: InfoCtx) {
    let gb = gearbox::get();
    let mut owners: BTreeMap<String, [i64; 4]> = BTreeMap::new();
    let name = |o: Option<&str>| o.unwrap_or("(none)").to_string();
    for s in gb.engine.sessions.summaries() {
        let row = owners.entry(name(s.owner.as_deref())).or_default();
        row[0] += i64::from(!s.dead);
        row[3] += s.memory_bytes as i64;
    }
    for r in gb.engine.registrations.all() {
        owners.entry(name(r.session.owner.as_deref())).or_default()[1] += 1;
    }
    for e in gb.engine.executions.all() {
        owners.entry(name(e.owner.as_deref())).or_default()[2] += 1;
    }
    ctx.section("owners");
    for (owner, [sessions, registrations, executions, memory]) in owners {
        ctx.begin_dict(&one_value(&owner));
        ctx.field_int("sessions", sessions);
        ctx.field_int("registrations", registrations);
        ctx.field_int("executions", executions);
        ctx.field_int("memory", memory);
        ctx.end_dict();
    }
}

/// The INFO callback.
///
/// # Safety
/// Called by Redis with a live INFO context.
pub unsafe extern "C" fn info(ctx: *mut raw::RedisModuleInfoCtx, _for_crash_report: c_int) {
    let _ = std::panic::catch_unwind(|| write(InfoCtx(ctx)));
}

fn write(ctx: InfoCtx) {
    let gb = gearbox::get();
    ctx.section("");
    ctx.field_int("nexecutions", super::executions::count() as i64);
    ctx.field_int("nregistrations", gb.engine.registrations.len() as i64);
    ctx.field_int("nsessions", gb.engine.sessions.summaries().len() as i64);
    ctx.field_int("live_interpreters", gb.runtimes.live_interpreters() as i64);
    ctx.field_int("ready_interpreters", gb.runtimes.ready_interpreters() as i64);
    ctx.field_str("mode", gb.runtimes.policy.default.as_str());
    if let Some(users) = &gb.runtimes.policy.native_users {
        ctx.field_str("native_users", &one_value(&users.join(" ")));
    }
    ctx.field_int("execution_threads", gb.engine.execution_threads() as i64);
    // One dict field per registration, as RedisGears 1.2 (its section name keeps the typo).
    ctx.section("regisrations");
    for reg in gb.engine.registrations.all() {
        let s = reg.stats();
        ctx.begin_dict(&reg.id);
        ctx.field_str("desc", &one_value(reg.spec.desc.as_deref().unwrap_or("None")));
        ctx.field_str("reader", reg.spec.reader.as_str());
        ctx.field_str("mode", reg.spec.mode.as_str());
        ctx.field_int("numTriggered", s.triggered as i64);
        ctx.field_int("numSuccess", s.success as i64);
        ctx.field_int("numFailures", s.failures as i64);
        ctx.field_int("numAborted", s.aborted as i64);
        ctx.field_str("lastError", &one_value(s.last_error.as_deref().unwrap_or("None")));
        ctx.field_str("PD", &one_value(&super::registrations::session_pd(&reg)));
        ctx.end_dict();
    }
    write_owners(ctx);
    let m = memory::process_memory();
    ctx.section("python_stats");
    ctx.field_int("TotalAllocated", m.peak_rss as i64);
    ctx.field_int("PeakAllocated", m.peak_rss as i64);
    ctx.field_int("CurrAllocated", m.rss as i64);
}
