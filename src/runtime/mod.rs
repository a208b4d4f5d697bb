//! The runtimes: the ways of giving a script its own interpreter. `native` (CPython
//! sub-interpreters, the default) and `wasm` (a wasmtime instance of CPython-WASI per script).

pub mod native;
#[cfg(feature = "wasm")]
pub mod wasm;
pub mod watchdog;

use gearbox_engine::Runtime;

use crate::config::{Config, Mode};

/// Start the runtime for the configured mode. Called once, at module load, on Redis' main thread.
pub fn start(config: &Config) -> Result<Box<dyn Runtime>, String> {
    match config.mode {
        Mode::Native => native::NativeRuntime::start(config.interpreter_pool_size()).map(|r| Box::new(r) as Box<dyn Runtime>),
        #[cfg(not(feature = "wasm"))]
        Mode::Wasm => Err("mode wasm is not available in this build (built without the 'wasm' feature)".to_string()),
        #[cfg(feature = "wasm")]
        Mode::Wasm => {
            let settings = wasm::Settings { python_path: config.wasm_python_path(), warm_instances: config.wasm_warm_instances() };
            wasm::WasmRuntime::start(settings).map(|r| Box::new(r) as Box<dyn Runtime>)
        }
    }
}

/// The Python version scripts run on in `mode`, for the load log line.
pub fn python_version(mode: Mode) -> String {
    match mode {
        Mode::Native => native::NativeRuntime::python_version(),
        #[cfg(feature = "wasm")]
        Mode::Wasm => wasm::PYTHON_VERSION.to_string(),
        #[cfg(not(feature = "wasm"))]
        Mode::Wasm => "none (built without wasm)".to_string(),
    }
}
