//! The event side of gearbox: turning a script into installed registrations (and back, after a
//! load or on a replica), and delivering Redis' keyspace events to KeysReader registrations.
//!
//! * `install.rs`  — run a script into a session and install its registrations (RG.PYEXECUTE,
//!   RG.INNERREGISTER, RDB load share it), replication, deferred `onRegistered`.
//! * `fire.rs` — one registration, one record: inline (sync) or an execution on the pool.
//! * `keyspace.rs` — one keyspace event → the matching registrations (sync inline, async on the pool).
//! * `streams.rs` — StreamReader registrations (batches, consumer group, failure policies).
//! * `timers.rs` — time events (`registerTE`).
//! * `persistence.rs` — the hooks Redis calls: save/load the sessions blob, loading start/end.
//! * `quotas.rs` — per-user quotas on sessions, registrations and UNBLOCKING executions.
//! * `requirements.rs` — REQUIREMENTS found or installed (pip off the main thread).

pub mod command_ctx;
pub mod command_info;
pub mod control;
pub mod fire;
pub mod hooks;
pub mod install;
pub mod keyed_timers;
pub mod keyspace;
pub mod persistence;
pub mod quotas;
pub mod requirements;
pub mod streams;
pub mod timers;
