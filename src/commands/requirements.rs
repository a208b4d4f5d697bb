//! RG.PYEXPORTREQ and RG.PYIMPORTREQ: moving an installed requirement, wheels and all, to a
//! server that cannot download it (gears-cli's export-requirements / import-requirements).
//!
//! Export: the requirement's RG.PYDUMPREQS record and its wheels in one blob, cut into bulks of at
//! most [`CHUNK`] bytes; a user sees only requirements their sessions use (an administrator:
//! all). Import takes the bulks back (concatenated), checks every part (`Exported::from_value`:
//! names, wheel file names; `host::wheel`: every entry) and installs it as the current install
//! of its name, on a thread of its own while the client waits. Import is an administrator's
//! command: the wheels it installs are what every later session asking for that name gets.

use std::sync::Arc;

use gearbox_engine::codec;
use gearbox_engine::requirements::{Exported, Requirement};
use gearbox_engine::Value;

use super::viewer::Viewer;
use super::{text, Reply};
use crate::events::requirements;
use crate::gearbox;
use crate::host::redis_ffi::{self, Ctx};

/// Largest bulk of an export.
const CHUNK: usize = 8 << 20;

fn visible(ctx: Ctx, name: &str) -> Option<Arc<Requirement>> {
    let gb = gearbox::get();
    let viewer = Viewer::of(ctx);
    if viewer.is_admin() {
        if let Some(current) = gb.engine.requirements.get(name) {
            return Some(current);
        }
    }
    gb.engine.sessions.requirements_in_use(|owner| viewer.sees(owner)).into_iter().map(|(r, _)| r).find(|r| r.name == name)
}

/// RG.PYEXPORTREQ <name>: `[record, [bulk, ...]]`. The wheels (up to 64 MiB) are read and
/// encoded on a thread of its own while the client waits, not on Redis' main thread.
pub fn export(ctx: Ctx, args: &[Vec<u8>]) -> Reply {
    if args.len() != 2 {
        return Reply::WrongArity;
    }
    if redis_ffi::blocking_forbidden(ctx) {
        return Reply::error(gearbox_engine::errors::BLOCKING_NOT_ALLOWED);
    }
    let Some(req) = visible(ctx, &text(&args[1])) else {
        return Reply::error("requirement does not exists");
    };
    let gb = gearbox::get();
    let record = gb.engine.requirements.dump(&req, gb.engine.sessions.users_of(&req), &gearbox_engine::requirements::compiled_os());
    let client = redis_ffi::block_client(ctx);
    let spawned = std::thread::Builder::new().name("gearbox-export".into()).spawn(move || {
        let reply = match requirements::exports(std::slice::from_ref(&req)).pop() {
            Some(exported) => {
                let blob = codec::to_bytes(&exported.to_value());
                drop(exported);
                Value::Array(vec![record, Value::Array(blob.chunks(CHUNK).map(|c| Value::Bulk(c.to_vec())).collect())])
            }
            None => Value::Error(format!("gearbox: the wheels of requirement '{}' could not be exported (see the log)", req.name)),
        };
        client.reply(&reply);
    });
    if let Err(e) = spawned {
        redis_ffi::log("warning", &format!("gearbox: could not start a thread to export a requirement: {e}"));
    }
    Reply::Blocked
}

/// RG.PYIMPORTREQ <bulk> [<bulk> ...]: install an exported requirement; `OK`.
pub fn import(ctx: Ctx, args: &[Vec<u8>]) -> Reply {
    if args.len() < 2 {
        return Reply::WrongArity;
    }
    if redis_ffi::blocking_forbidden(ctx) {
        return Reply::error(gearbox_engine::errors::BLOCKING_NOT_ALLOWED);
    }
    // On top of `@admin @dangerous`: only a gearbox administrator decides what every tenant's
    // sessions get under a requirement's name.
    if !Viewer::of(ctx).is_admin() {
        return Reply::error(
            "NOPERM RG.PYIMPORTREQ is for gearbox administrators: the wheels it installs are what every user's sessions get",
        );
    }
    let blob: Vec<u8> = args[1..].concat();
    let exported = match codec::decode(&blob).and_then(|v| Exported::from_value(&v)) {
        Ok(e) => e,
        Err(why) => return Reply::error(format!("gearbox: RG.PYIMPORTREQ: not a whole exported requirement ({why})")),
    };
    let client = redis_ffi::block_client(ctx);
    let spawned = std::thread::Builder::new().name("gearbox-pip".into()).spawn(move || {
        let reply = match requirements::import(std::slice::from_ref(&exported)) {
            Ok(_) => Value::Status("OK".into()),
            Err(text) => Value::Error(text),
        };
        client.reply(&reply);
    });
    if let Err(e) = spawned {
        redis_ffi::log("warning", &format!("gearbox: could not start a thread to import a requirement: {e}"));
    }
    Reply::Blocked
}
