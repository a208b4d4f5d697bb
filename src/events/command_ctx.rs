//! The command an execution was caused by, for `call_next()`, `get_command()` and
//! `override_reply()`: a hooked command (CommandReader `hook=`), or a command a KeysReader
//! `commands=` registration watches.
//!
//! A job fired for such a command carries its [`CommandCtx`]; while the job runs, the context is
//! the *current* one of the running thread (the thread that runs a job is the thread that serves
//! its script's host calls, in both runtimes). Every fired job sets it, to its own or to none, so
//! an event fired from inside another never sees the outer command.
//!
//! A watched command's reply: the command's own, unless a registration overrode it. When async
//! registrations hold the context, the client is blocked and the last of them to finish
//! replies (when the context is dropped).

use std::cell::RefCell;
use std::sync::{Arc, Mutex, MutexGuard};

use gearbox_engine::errors;
use gearbox_engine::Value;

use crate::host::redis_ffi::{BlockedClient, Ctx};

#[derive(Default)]
struct ReplyState {
    /// The command's own reply, once it ran.
    own: Option<Value>,
    overridden: Option<Value>,
    /// The client, when async registrations still hold the context.
    blocked: Option<BlockedClient>,
}

pub struct CommandCtx {
    /// The command and its arguments, as the client sent them.
    pub argv: Vec<Vec<u8>>,
    /// For a hook's execution: the registration running (call_next goes on after it).
    pub hook: Option<String>,
    /// For a watched command: its reply (None for hooks: their reply is the hook's result).
    reply: Option<Mutex<ReplyState>>,
}

thread_local! {
    static CURRENT: RefCell<Option<Arc<CommandCtx>>> = const { RefCell::new(None) };
    /// The watched command RG.INNERHOOK is running on this thread, and its client (keyspace
    /// events link to it).
    static WATCHED: RefCell<Option<(Arc<CommandCtx>, Ctx)>> = const { RefCell::new(None) };
}

impl CommandCtx {
    pub fn hook(argv: Vec<Vec<u8>>, registration: &str) -> Arc<CommandCtx> {
        Arc::new(CommandCtx { argv, hook: Some(registration.to_string()), reply: None })
    }

    pub fn watched(argv: Vec<Vec<u8>>) -> Arc<CommandCtx> {
        Arc::new(CommandCtx { argv, hook: None, reply: Some(Mutex::new(ReplyState::default())) })
    }

    /// The command's name, lower-case.
    pub fn name(&self) -> String {
        command_name(&self.argv)
    }

    fn state(&self) -> Option<MutexGuard<'_, ReplyState>> {
        self.reply.as_ref().map(|m| m.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// `override_reply(value)`: only for watched commands, and only once.
    pub fn override_reply(&self, value: Value) -> Result<(), String> {
        let Some(mut state) = self.state() else { return Err(errors::NO_COMMAND_CTX.into()) };
        if state.overridden.is_some() {
            return Err(errors::OVERRIDE_REPLY_TWICE.into());
        }
        state.overridden = Some(value);
        Ok(())
    }

    pub fn set_own_reply(&self, value: Value) {
        if let Some(mut state) = self.state() {
            state.own = Some(value);
        }
    }

    /// Block the client until the context is dropped (called when an async registration takes
    /// the context); `block` blocks it, once.
    pub fn block_client(&self, block: impl FnOnce() -> BlockedClient) {
        if let Some(mut state) = self.state() {
            if state.blocked.is_none() {
                state.blocked = Some(block());
            }
        }
    }

    pub fn is_blocked(&self) -> bool {
        self.state().is_some_and(|s| s.blocked.is_some())
    }

    /// What the client gets: the override, else the command's own reply.
    pub fn final_reply(&self) -> Value {
        let Some(state) = self.state() else { return Value::Nil };
        let reply = state.overridden.clone().map(reply_of_override).or_else(|| state.own.clone());
        reply.unwrap_or_else(|| Value::Error(errors::NO_COMMAND_RESULT.into()))
    }
}

impl Drop for CommandCtx {
    fn drop(&mut self) {
        let blocked = self.state().and_then(|mut s| s.blocked.take());
        if let Some(client) = blocked {
            client.reply(&self.final_reply());
        }
    }
}

/// The lower-case name of the command `argv` (name first).
pub fn command_name(argv: &[Vec<u8>]) -> String {
    String::from_utf8_lossy(argv.first().map(Vec::as_slice).unwrap_or_default()).to_ascii_lowercase()
}

/// `override_reply`'s value as a reply: a str starting with `-` is an error, `+` a status.
fn reply_of_override(value: Value) -> Value {
    match &value {
        Value::Bulk(b) if b.first() == Some(&b'-') => Value::Error(String::from_utf8_lossy(&b[1..]).into_owned()),
        Value::Bulk(b) if b.first() == Some(&b'+') => Value::Status(String::from_utf8_lossy(&b[1..]).into_owned()),
        _ => value,
    }
}

/// The context of the job running on this thread.
pub fn current() -> Option<Arc<CommandCtx>> {
    CURRENT.with(|c| c.borrow().clone())
}

/// Run `f` with `ctx` as the watched command of this thread (RG.INNERHOOK running it for
/// `client`).
pub fn watching<T>(ctx: &Arc<CommandCtx>, client: Ctx, f: impl FnOnce() -> T) -> T {
    let outer = WATCHED.with(|w| w.replace(Some((ctx.clone(), client))));
    let _restore = Restore(&WATCHED, outer);
    f()
}

/// Take the watched command for the duration of one keyspace event: what fires from inside it
/// was not caused by the command.
pub fn take_watched() -> Option<(Arc<CommandCtx>, Ctx)> {
    WATCHED.with(|w| w.borrow_mut().take())
}

pub fn put_back_watched(watched: Option<(Arc<CommandCtx>, Ctx)>) {
    WATCHED.with(|w| *w.borrow_mut() = watched);
}

/// Puts a thread-local back, also when the code in between panics.
struct Restore<T: 'static>(&'static std::thread::LocalKey<RefCell<Option<T>>>, Option<T>);

impl<T: 'static> Drop for Restore<T> {
    fn drop(&mut self) {
        let outer = self.1.take();
        self.0.with(|slot| *slot.borrow_mut() = outer);
    }
}

/// Run `f` (a fired job) with `ctx` as this thread's current command context.
pub fn run_under<T>(ctx: Option<Arc<CommandCtx>>, f: impl FnOnce() -> T) -> T {
    let outer = CURRENT.with(|c| c.replace(ctx));
    let _restore = Restore(&CURRENT, outer);
    f()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_override_is_taken_once_and_maps_error_and_status_strings() {
        let ctx = CommandCtx::watched(vec![b"get".to_vec(), b"k".to_vec()]);
        ctx.set_own_reply(Value::Nil);
        assert_eq!(ctx.final_reply(), Value::Nil);
        ctx.override_reply(Value::Bulk(b"-ERR nope".to_vec())).unwrap();
        assert_eq!(ctx.override_reply(Value::Int(1)).unwrap_err(), "Can only override reply once");
        assert_eq!(ctx.final_reply(), Value::Error("ERR nope".into()));
        let status = CommandCtx::watched(vec![b"set".to_vec()]);
        status.override_reply(Value::Bulk(b"+DONE".to_vec())).unwrap();
        assert_eq!(status.final_reply(), Value::Status("DONE".into()));
    }

    #[test]
    fn a_hook_context_has_no_reply_to_override() {
        let ctx = CommandCtx::hook(vec![b"HSET".to_vec()], "r-1");
        assert_eq!(ctx.override_reply(Value::Int(1)).unwrap_err(), "Can not get command ctx");
        assert_eq!(ctx.name(), "hset");
    }

    #[test]
    fn the_watched_command_is_put_back_after_a_panic() {
        let ctx = CommandCtx::watched(vec![b"get".to_vec()]);
        let r = std::panic::catch_unwind(|| watching(&ctx, Ctx(std::ptr::null_mut()), || panic!("boom")));
        assert!(r.is_err());
        assert!(take_watched().is_none());
    }
}
