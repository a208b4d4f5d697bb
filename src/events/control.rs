//! The events side of the host's control half (`host::control`): register-time checks against
//! Redis' command table, time events, and the command context a job runs for.

use std::sync::{Arc, Weak};
use std::time::Duration;

use gearbox_engine::errors;
use gearbox_engine::{CommandRequest, Registration, RegistrationSpec, Replacing, Session, Value};

use super::{command_ctx, command_info, hooks, install, timers};
use crate::host::control::Control;
use crate::host::lock::{Locked, RedisLock};
use crate::host::redis_hooks;

pub struct EventsControl;

/// What `host::control::install` is given at load.
pub static CONTROL: EventsControl = EventsControl;

impl Control for EventsControl {
    fn check_registration(&self, spec: &RegistrationSpec, earlier: &[&RegistrationSpec], replacing: Replacing<'_>) -> Result<(), String> {
        command_info::check_hook(spec, earlier, replacing)?;
        command_info::check_commands(spec)
    }

    fn install_at_run_time(&self, locked: Locked<'_>, session: Arc<Session>, spec: RegistrationSpec, id: String) -> Result<(), String> {
        // Checked again under the lock: another execution may have taken the trigger meanwhile.
        let owner = session.owner.clone();
        let registrations = &crate::gearbox::get().engine.registrations;
        if spec.trigger.as_ref().is_some_and(|t| registrations.trigger_taken(t, Replacing { owner: owner.as_deref(), ids: &[] })) {
            return Err(errors::EngineError::TriggerTaken.to_string());
        }
        super::quotas::new_registrations(locked, session.owner.as_deref(), 1, &[])?;
        let registration = Registration::new_at_run_time(id, session.clone(), spec);
        let owner = session.owner.clone();
        let removed =
            crate::gearbox::get().engine.registrations.install(vec![registration.clone()], Replacing { owner: owner.as_deref(), ids: &[] });
        drop(removed);
        // Not now: the script that called register() is running (this call comes from it).
        redis_hooks::after(locked, 0, Box::new(move |_| install::installed(&registration)));
        Ok(())
    }

    fn start_time_event(&self, locked: Locked<'_>, session: Weak<Session>, handle: i64, period: Duration) -> Result<(), String> {
        timers::start(locked, session, handle, period)
    }

    fn command(&self, request: CommandRequest, call_locked: &dyn Fn(Locked<'_>, &[Vec<u8>]) -> Value) -> Value {
        let Some(current) = command_ctx::current() else {
            let text = if matches!(request, CommandRequest::Next(_)) { errors::NO_COMMAND_HOOK_CTX } else { errors::NO_COMMAND_CTX };
            return Value::Error(text.into());
        };
        match request {
            CommandRequest::Get => Value::bulks(current.argv.iter().cloned()),
            CommandRequest::OverrideReply(value) => match current.override_reply(value) {
                Ok(()) => Value::Nil,
                Err(e) => Value::Error(e),
            },
            CommandRequest::Next(_) if current.hook.is_none() => Value::Error(errors::NO_COMMAND_HOOK_CTX.into()),
            CommandRequest::Next(args) => {
                let lock = RedisLock::acquire();
                hooks::call_next(lock.held(), &current, args, call_locked)
            }
        }
    }
}
