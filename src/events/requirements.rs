//! The requirements a session asks for, found or installed: RG.PYEXECUTE's REQUIREMENTS (pip runs
//! on a thread of its own, never on Redis' main thread) and a session being rebuilt after a
//! restart or on a replica (only what is installed already: a load never waits for the network).
//! Installs go into the engine's requirement dictionary, which RG.PYDUMPREQS lists.

use std::sync::Arc;

use gearbox_engine::errors;
use gearbox_engine::requirements::{is_valid_requirement, Exported, Requirement};

use crate::gearbox;
use crate::host::lock::RedisLock;
use crate::host::pip::{self, PipSettings};
use crate::host::redis_ffi;

fn settings() -> PipSettings {
    PipSettings::from_config(&gearbox::get().config())
}

/// Most requirements one command may name.
const MAX_NAMES: usize = 32;

/// `Err` (the reply text, with a log line saying why) when a name may not be handed to pip.
pub fn check_names(names: &[String]) -> Result<(), String> {
    if names.len() > MAX_NAMES {
        redis_ffi::log("warning", &format!("gearbox: REQUIREMENTS refused: {} names, at most {MAX_NAMES} per command", names.len()));
        return Err(errors::REQUIREMENTS_FAILED.to_string());
    }
    match names.iter().find(|n| !is_valid_requirement(n)) {
        None => Ok(()),
        Some(bad) => {
            redis_ffi::log(
                "warning",
                &format!("gearbox: REQUIREMENTS {bad:?} refused: give a package name with optional extras and version specifiers, not an option, path or URL"),
            );
            Err(errors::REQUIREMENTS_FAILED.to_string())
        }
    }
}

/// The requirements `names`, if every one is installed already (in the dictionary, or on disk
/// from before a restart). Never runs pip.
pub fn installed(names: &[String]) -> Option<Vec<Arc<Requirement>>> {
    let gb = gearbox::get();
    let mut out = Vec::with_capacity(names.len());
    for name in names {
        let req = match gb.engine.requirements.get(name) {
            Some(r) => r,
            None => {
                let found = Arc::new(pip::find_installed(&settings(), name)?);
                gb.engine.requirements.put(found.clone());
                found
            }
        };
        out.push(req);
    }
    Some(out)
}

/// The wheels of these requirements, to export, replicate or save; one that cannot be read is
/// left out (logged): the session is then rebuilt only where it is installed.
pub fn exports(requirements: &[Arc<Requirement>]) -> Vec<Exported> {
    requirements
        .iter()
        .filter_map(|r| match pip::wheels_of(r) {
            Ok(wheels) => Some(Exported { name: r.name.clone(), wheels }),
            Err(e) => {
                redis_ffi::log("warning", &format!("gearbox: requirement '{}' left out: {e}", r.name));
                None
            }
        })
        .collect()
}

/// Install exported requirements from their wheels (no pip, no network; quick enough for the
/// main thread), making each the current install of its name. `Err`: the first that failed.
pub fn import(exported: &[Exported]) -> Result<Vec<Arc<Requirement>>, String> {
    let settings = settings();
    let gb = gearbox::get();
    exported
        .iter()
        .map(|e| match pip::install_wheels(&settings, &e.name, &e.wheels) {
            Ok(req) => match gb.engine.requirements.get(&e.name).filter(|cur| cur.path == req.path) {
                Some(same) => Ok(same),
                None => {
                    let req = Arc::new(req);
                    gb.engine.requirements.put(req.clone());
                    Ok(req)
                }
            },
            Err(why) => {
                redis_ffi::log("warning", &format!("gearbox: could not install requirement '{}' from its wheels: {why}", e.name));
                Err(format!("gearbox: could not install requirement '{}' from its wheels: {why}", e.name))
            }
        })
        .collect()
}

/// Install `names` (each again if `force`) with pip, on the calling thread, which must not be
/// Redis' main thread. `Err` is the reply text; the log says what went wrong.
pub fn install(names: &[String], force: bool) -> Result<Vec<Arc<Requirement>>, String> {
    let settings = settings();
    let gb = gearbox::get();
    let mut out = Vec::with_capacity(names.len());
    for name in names {
        let started = std::time::Instant::now();
        match pip::install(&settings, name, force) {
            Ok(req) => {
                redis_ffi::log(
                    "notice",
                    &format!(
                        "gearbox: requirement '{name}' ready in {} ({} ms): {}",
                        req.path,
                        started.elapsed().as_millis(),
                        req.wheels.join(", ")
                    ),
                );
                let req = Arc::new(req);
                gb.engine.requirements.put(req.clone());
                if force {
                    // Older installs of this name that no session uses any more go. Under the
                    // Redis lock, sessions cannot pick one up meanwhile (they do so under it).
                    let lock = RedisLock::acquire();
                    let mut keep: Vec<String> =
                        gb.engine.sessions.requirements_in_use(|_| true).iter().map(|(r, _)| r.path.clone()).collect();
                    keep.push(req.path.clone());
                    let retired = pip::retire_unused(&settings, name, &keep);
                    drop(lock);
                    pip::remove_retired(retired);
                }
                out.push(req);
            }
            Err(why) => {
                redis_ffi::log("warning", &format!("gearbox: could not install requirement '{name}': {why}"));
                return Err(errors::REQUIREMENTS_FAILED.to_string());
            }
        }
    }
    Ok(out)
}
