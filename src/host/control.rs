//! The control half of the Host port: what a script's host does that is not a Redis call —
//! checking a `register()` against the command table, starting a time event, answering
//! `get_command` / `override_reply` / `call_next` from the command a job runs for. That logic
//! lives in `events/`; this file is the seam through which the host reaches it, so imports point
//! one way (events/ uses host/, never the reverse). `events::control` installs it at load.

use std::sync::{Arc, OnceLock, Weak};
use std::time::Duration;

use gearbox_engine::{CommandRequest, RegistrationSpec, Replacing, Session, Value};

use super::lock::Locked;

pub trait Control: Send + Sync {
    /// Checks of a `register()` that need Redis' command table (`hook=`, `commands=`); `earlier`
    /// are the script's registrations so far.
    fn check_registration(&self, spec: &RegistrationSpec, earlier: &[&RegistrationSpec], replacing: Replacing<'_>) -> Result<(), String>;
    /// `register()` inside an execution: install registration `id` of `session` now (quotas,
    /// then the registry; its onRegistered runs once the current command is done).
    fn install_at_run_time(&self, locked: Locked<'_>, session: Arc<Session>, spec: RegistrationSpec, id: String) -> Result<(), String>;
    /// `registerTE(seconds, fn)` without a key: start the time event now.
    fn start_time_event(&self, locked: Locked<'_>, session: Weak<Session>, handle: i64, period: Duration) -> Result<(), String>;
    /// `call_next` / `get_command` / `override_reply` for the job running on this thread;
    /// `call_locked` runs a command as the script's user under the lock its proof says is held
    /// (the caller holds no Redis lock).
    fn command(&self, request: CommandRequest, call_locked: &dyn Fn(Locked<'_>, &[Vec<u8>]) -> Value) -> Value;
}

static CONTROL: OnceLock<&'static dyn Control> = OnceLock::new();

/// Install the control half (once, at load, before any script runs).
pub fn install(control: &'static dyn Control) {
    let _ = CONTROL.set(control);
}

/// The control half; an error before `install` (never met: commands exist only after it).
pub fn get() -> Result<&'static dyn Control, String> {
    CONTROL.get().copied().ok_or_else(|| "gearbox: internal error: the host's control half is not installed".to_string())
}
