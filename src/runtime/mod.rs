//! The runtimes: the ways of giving a script its own interpreter. `native` (CPython
//! sub-interpreters) is built; `wasm` (a wasmtime instance per script) is refused with a clear
//! message until it lands.

pub mod native;
pub mod watchdog;

use gearbox_engine::Runtime;

use crate::config::{Config, Mode};

/// Start the runtime for `mode`. Called once, at module load, on Redis' main thread.
pub fn start(config: &Config) -> Result<Box<dyn Runtime>, String> {
    match config.mode {
        Mode::Native => native::NativeRuntime::start(config.interpreter_pool_size()).map(|r| Box::new(r) as Box<dyn Runtime>),
        Mode::Wasm => Err("mode wasm is not available in this build yet (the wasm runtime has not landed); \
                           load the module with 'mode native' or without a mode"
            .to_string()),
    }
}
