//! The gearbox engine: the part of the product that knows what an execution, a session and a
//! RedisGears id are, and nothing of Redis, CPython or wasmtime.
//!
//! The Redis command layer (`gearbox::commands`) drives it; the runtimes (`gearbox::runtime::*`)
//! implement its ports ([`port`]). Keeping it free of FFI lets it be tested alone (`cargo test -p
//! gearbox-engine`) and lets the native and wasm runtimes share one bookkeeping.

pub mod codec;
pub mod command_hooks;
pub mod engine;
pub mod errors;
pub mod execution;
pub mod executions;
pub mod glob;
pub mod hook_policy;
pub mod ids;
pub mod persist;
pub mod pool;
pub mod port;
pub mod registration;
pub mod registrations;
pub mod requirements;
pub mod runtime_policy;
pub mod script_calls;
pub mod session;
pub mod stream_state;
pub mod value;
pub mod watchdog;

pub use engine::Engine;
pub use execution::{Execution, ExecutionStatus, Outcome};
pub use port::{
    CommandRequest, Host, Interpreter, InterruptHandle, Job, KeyRecord, KeyValue, LogLevel, ProfileRequest, RunControl, Runtime, StepInfo,
};
pub use registration::{Mode, ReaderKind, Registration, RegistrationSpec};
pub use registrations::RegistrationRegistry;
pub use runtime_policy::{RuntimeKind, RuntimePolicy};
pub use session::{Replacing, Session, SessionRegistry};
pub use value::Value;
