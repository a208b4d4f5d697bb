//! `INFO rg`: counts of executions, sessions and live interpreters, the mode, and the memory
//! figures RedisGears tests read (`rg_TotalAllocated`, …).

use std::ffi::c_int;

use redis_module::raw;

use crate::gearbox;
use crate::host::redis_ffi::InfoCtx;
use crate::memory;

pub unsafe extern "C" fn info(ctx: *mut raw::RedisModuleInfoCtx, _for_crash_report: c_int) {
    let _ = std::panic::catch_unwind(|| write(InfoCtx(ctx)));
}

fn write(ctx: InfoCtx) {
    let gb = gearbox::get();
    ctx.section("");
    ctx.field_int("nexecutions", super::executions::count() as i64);
    ctx.field_int("nregistrations", gb.engine.registrations.len() as i64);
    ctx.field_int("nsessions", gb.engine.sessions.summaries().len() as i64);
    ctx.field_int("live_interpreters", gb.runtime.live_interpreters() as i64);
    ctx.field_int("ready_interpreters", gb.runtime.ready_interpreters() as i64);
    ctx.field_str("mode", gb.runtime.mode_name());
    ctx.field_int("execution_threads", gb.engine.execution_threads() as i64);
    let m = memory::process_memory();
    ctx.section("python_stats");
    ctx.field_int("TotalAllocated", m.peak_rss as i64);
    ctx.field_int("PeakAllocated", m.peak_rss as i64);
    ctx.field_int("CurrAllocated", m.rss as i64);
}
