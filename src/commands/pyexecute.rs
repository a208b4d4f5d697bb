//! RG.PYEXECUTE: parse the options, run the script into a new session (its own interpreter) and
//! install what it registered (`events::install`), replicate that, then reply `OK`, start the
//! execution its `run()` asked for (blocking the client, or replying the id with UNBLOCKING), or
//! reply the script's error. A session nobody holds any more is freed right away.

use gearbox_engine::errors::{self, EngineError};
use gearbox_engine::ids::{is_valid_session_id, random_session_id};
use gearbox_engine::port::ScriptOutcome;
use gearbox_engine::{RuntimeKind, Value};

use super::{text, Reply};
use crate::events::fire::PlanJob;
use crate::events::install::{self, ScriptRequest};
use crate::events::quotas;
use crate::events::requirements;
use crate::gearbox;
use crate::host::blocked_client::BlockedClient;
use crate::host::lock::RedisLock;
use crate::host::redis_ffi::{self, Ctx};
use crate::host::redis_hooks;

#[derive(Debug, Default, PartialEq)]
pub struct Options {
    pub unblocking: bool,
    pub id: Option<String>,
    pub description: Option<String>,
    pub upgrade: bool,
    pub replace_with: Option<String>,
    pub force_reinstall: bool,
    pub requirements: Vec<String>,
    /// gearbox's own `RUNTIME native|wasm` (within the caller's runtime policy).
    pub runtime: Option<RuntimeKind>,
}

/// Parse the arguments after the script (case-insensitive, any order, REQUIREMENTS last).
pub fn parse_options(args: &[Vec<u8>]) -> Result<Options, String> {
    let mut opts = Options::default();
    let mut i = 0;
    while i < args.len() {
        let word = text(&args[i]);
        let value = args.get(i + 1).map(|v| text(v));
        match word.to_ascii_uppercase().as_str() {
            "UNBLOCKING" => opts.unblocking = true,
            "UPGRADE" => opts.upgrade = true,
            "FORCE_REINSTALL_REQUIREMENTS" => opts.force_reinstall = true,
            "ID" => {
                let id = value.ok_or(errors::ID_MISSING)?;
                if !is_valid_session_id(&id) {
                    return Err(errors::BAD_SESSION_ID.to_string());
                }
                opts.id = Some(id);
                i += 1;
            }
            "DESCRIPTION" => {
                opts.description = Some(value.ok_or(errors::DESCRIPTION_MISSING)?);
                i += 1;
            }
            "RUNTIME" => {
                let word = value.unwrap_or_default();
                opts.runtime = Some(RuntimeKind::parse(&word).ok_or_else(|| EngineError::BadRuntime(word.clone()).to_string())?);
                i += 1;
            }
            "REPLACE_WITH" => {
                opts.replace_with = Some(value.ok_or(errors::REPLACE_WITH_MISSING)?);
                i += 1;
            }
            "REQUIREMENTS" => {
                opts.requirements = args[i + 1..].iter().map(|a| text(a)).collect();
                break;
            }
            _ => return Err(EngineError::UnknownArgument(word).to_string()),
        }
        i += 1;
    }
    Ok(opts)
}

pub use crate::host::redis_ffi::blocking_forbidden;

pub fn pyexecute(ctx: Ctx, args: &[Vec<u8>]) -> Reply {
    if args.len() < 2 {
        return Reply::WrongArity;
    }
    if blocking_forbidden(ctx) {
        return Reply::error(errors::BLOCKING_NOT_ALLOWED);
    }
    let opts = match parse_options(&args[2..]) {
        Ok(o) => o,
        Err(e) => return Reply::error(e),
    };
    let Ok(source) = std::str::from_utf8(&args[1]) else {
        return Reply::error(errors::SCRIPT_NOT_UTF8);
    };
    if let Err(text) = requirements::check_names(&opts.requirements) {
        return Reply::error(text);
    }
    let gb = gearbox::get();
    // Session ids are per owner: UPGRADE and REPLACE_WITH reach only the caller's own sessions.
    let user_name = redis_hooks::current_user_name(ctx);
    let owner = user_name.as_deref();
    let runtime = match gb.runtimes.policy.choose(owner, opts.runtime) {
        Ok(kind) => kind,
        Err(e) => return Reply::error(e.to_string()),
    };
    let id = opts.id.clone().unwrap_or_else(random_session_id);
    let replacing = match admit(&opts, owner, &id) {
        Ok(replacing) => replacing,
        Err(text) => return Reply::error(text),
    };
    let mut request = ScriptRequest {
        source: source.to_string(),
        id,
        description: opts.description.clone(),
        user_name,
        replacing,
        restore: None,
        runtime,
        requirements: Vec::new(),
    };
    if opts.requirements.is_empty() {
        return finish(request, opts.unblocking, ctx, Answer::Now(ctx));
    }
    if !opts.force_reinstall {
        if let Some(found) = requirements::installed(&opts.requirements) {
            request.requirements = found;
            return finish(request, opts.unblocking, ctx, Answer::Now(ctx));
        }
    }
    // Installing costs a download, disk and a pip run: on a shared server only administrators
    // do it unless the operator lets everyone (RequirementsInstallers all).
    if !gb.config().anyone_installs_requirements() && !super::viewer::Viewer::of(ctx).is_admin() {
        redis_ffi::log(
            "warning",
            &format!(
                "gearbox: REQUIREMENTS {:?} refused: not installed here, and only administrators may install requirements (RequirementsInstallers admins)",
                opts.requirements
            ),
        );
        return Reply::error(format!(
            "{} (gearbox: only administrators may install a requirement; an installed one anyone may use)",
            errors::REQUIREMENTS_FAILED
        ));
    }
    // pip takes seconds: it runs on a thread of its own while the client waits, then the script
    // runs on the main thread as usual.
    let client = redis_ffi::block_client(ctx);
    let spawned = std::thread::Builder::new().name("gearbox-pip".into()).spawn(move || {
        let installed = requirements::install(&opts.requirements, opts.force_reinstall);
        let lock = RedisLock::acquire();
        redis_hooks::after(
            lock.held(),
            0,
            Box::new(move |locked| {
                // Other commands ran while pip did: the session's checks are made again.
                let admitted = installed.and_then(|found| admit(&opts, request.user_name.as_deref(), &request.id).map(|r| (found, r)));
                match admitted {
                    Ok((found, replacing)) => {
                        request.requirements = found;
                        request.replacing = replacing;
                        let _ = finish(request, opts.unblocking, locked.detached(), Answer::Later(client));
                    }
                    Err(text) => client.reply(&Value::Error(text)),
                }
            }),
        );
    });
    match spawned {
        Ok(_) => Reply::Blocked,
        Err(e) => {
            redis_ffi::log("warning", &format!("gearbox: could not start a thread to install requirements: {e}"));
            Reply::Blocked
        }
    }
}

/// The checks a new session passes (its id, REPLACE_WITH, the owner's quotas); the session ids it
/// replaces. Made again after an install, which other commands may have raced.
fn admit(opts: &Options, owner: Option<&str>, id: &str) -> Result<Vec<String>, String> {
    let gb = gearbox::get();
    if let Some(old) = &opts.replace_with {
        if !gb.engine.sessions.contains(owner, old) {
            return Err(EngineError::ReplaceMissing(old.clone()).to_string());
        }
    }
    let exists = gb.engine.sessions.contains(owner, id);
    // REPLACE_WITH onto an existing session is its own error (RedisGears checks it first).
    if let (Some(old), true) = (&opts.replace_with, exists && opts.id.is_some() && !opts.upgrade) {
        return Err(EngineError::ReplaceExisting(id.to_string(), old.clone()).to_string());
    }
    if exists && !opts.upgrade {
        return Err(EngineError::SessionExists(id.to_string()).to_string());
    }
    let mut replacing: Vec<String> = opts.replace_with.iter().cloned().collect();
    if opts.upgrade && exists {
        replacing.push(id.to_string());
    }
    let lock = RedisLock::acquire();
    quotas::new_session(lock.held(), owner)?;
    if opts.unblocking {
        quotas::new_unblocking(lock.held(), owner)?;
    }
    Ok(replacing)
}

/// Who gets the answer: the client of the command running now, or a client blocked while its
/// requirements were installed.
enum Answer {
    Now(Ctx),
    Later(BlockedClient),
}

impl Answer {
    fn give(self, reply: Reply) -> Reply {
        match (self, reply) {
            (Answer::Now(_), reply) => reply,
            (Answer::Later(client), Reply::Value(v)) => {
                client.reply(&v);
                Reply::Blocked
            }
            (Answer::Later(_), other) => other,
        }
    }
}

/// Run the script, install and replicate what it registered (through `replicate_ctx`), and
/// answer: `OK`, the execution's id (UNBLOCKING), the execution's results once it is done, or
/// the script's error.
fn finish(request: ScriptRequest, unblocking: bool, replicate_ctx: Ctx, answer: Answer) -> Reply {
    let gb = gearbox::get();
    let replacing = request.replacing.clone();
    let installed = match install::run_and_install(request, false) {
        Ok(i) => i,
        Err(text) => return answer.give(Reply::error(text)),
    };
    if !installed.registrations.is_empty() || !replacing.is_empty() {
        install::replicate(replicate_ctx, &installed.session, &replacing);
    }
    let max_executions = gb.config().max_executions();
    match installed.outcome {
        ScriptOutcome::Done => answer.give(Reply::ok()),
        ScriptOutcome::Run(job) if unblocking => {
            let job = Box::new(PlanJob(job));
            let exec = gb.engine.start(installed.session, job, true, max_executions);
            answer.give(Reply::Value(Value::bulk(exec.id.clone())))
        }
        ScriptOutcome::Run(job) => {
            let job = Box::new(PlanJob(job));
            let client = match answer {
                Answer::Now(ctx) => redis_ffi::block_client(ctx),
                Answer::Later(client) => client,
            };
            let exec = gb.engine.start(installed.session, job, false, max_executions);
            exec.on_done(move |outcome| client.reply(&outcome.to_reply()));
            Reply::Blocked
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<Vec<u8>> {
        list.iter().map(|s| s.as_bytes().to_vec()).collect()
    }

    #[test]
    fn options_in_any_order_and_case() {
        let o = parse_options(&args(&["id", "s1", "UNBLOCKING", "Description", "d"])).unwrap();
        assert_eq!(o, Options { unblocking: true, id: Some("s1".into()), description: Some("d".into()), ..Default::default() });
    }

    #[test]
    fn requirements_swallow_the_rest() {
        let o = parse_options(&args(&["REQUIREMENTS", "numpy", "UNBLOCKING"])).unwrap();
        assert_eq!(o.requirements, vec!["numpy".to_string(), "UNBLOCKING".to_string()]);
        assert!(!o.unblocking);
        assert!(parse_options(&args(&["REQUIREMENTS"])).unwrap().requirements.is_empty());
    }

    #[test]
    fn errors_use_redisgears_texts() {
        assert_eq!(parse_options(&args(&["ID"])), Err("ID is missing".into()));
        assert_eq!(parse_options(&args(&["DESCRIPTION"])), Err("DESCRIPTION is missing".into()));
        assert_eq!(parse_options(&args(&["REPLACE_WITH"])), Err("REPLACE_WITH is missing".into()));
        assert_eq!(parse_options(&args(&["ID", "a b"])), Err(errors::BAD_SESSION_ID.into()));
        assert_eq!(parse_options(&args(&["FOO"])), Err("Unknown arguments were given: FOO".into()));
        assert_eq!(
            parse_options(&args(&["FORCE_REQUIREMENTS_REINSTALLATION"])),
            Err("Unknown arguments were given: FORCE_REQUIREMENTS_REINSTALLATION".into())
        );
    }
}
