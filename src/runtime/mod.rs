//! The runtimes: the ways of giving a script its own interpreter. `native` (CPython
//! sub-interpreters, the default) and `wasm` (a wasmtime instance of CPython-WASI per script).
//! A server runs one of them, or both under a runtime policy (`NativeUsers`; the choice itself
//! is `engine/src/runtime_policy.rs`).

pub mod native;
mod settle;
#[cfg(feature = "wasm")]
pub mod wasm;

use gearbox_engine::{Runtime, RuntimeKind, RuntimePolicy};

use crate::config::Config;

/// The runtimes this server started, and the policy that picks one per session.
pub struct Runtimes {
    pub policy: RuntimePolicy,
    native: Option<Box<dyn Runtime>>,
    wasm: Option<Box<dyn Runtime>>,
}

impl Runtimes {
    /// Start the runtimes the policy needs. Called once, at module load, on Redis' main thread.
    pub fn start(config: &Config) -> Result<Runtimes, String> {
        let policy = config.runtime_policy()?;
        let mut runtimes = Runtimes { policy, native: None, wasm: None };
        for kind in runtimes.policy.runtimes() {
            let started = start_one(kind, config)?;
            match kind {
                RuntimeKind::Native => runtimes.native = Some(started),
                RuntimeKind::Wasm => runtimes.wasm = Some(started),
            }
        }
        Ok(runtimes)
    }

    /// The runtime of `kind` (one the policy chose, so it was started).
    pub fn get(&self, kind: RuntimeKind) -> Result<&dyn Runtime, String> {
        let runtime = match kind {
            RuntimeKind::Native => self.native.as_deref(),
            RuntimeKind::Wasm => self.wasm.as_deref(),
        };
        runtime.ok_or_else(|| gearbox_engine::errors::EngineError::RuntimeNotLoaded(kind.as_str()).to_string())
    }

    fn each(&self) -> impl Iterator<Item = &dyn Runtime> {
        self.native.as_deref().into_iter().chain(self.wasm.as_deref())
    }

    /// Live interpreters owned by sessions, every runtime together.
    pub fn live_interpreters(&self) -> usize {
        self.each().map(|r| r.live_interpreters()).sum()
    }

    /// Interpreters started ahead of demand, every runtime together.
    pub fn ready_interpreters(&self) -> usize {
        self.each().map(|r| r.ready_interpreters()).sum()
    }
}

fn start_one(kind: RuntimeKind, config: &Config) -> Result<Box<dyn Runtime>, String> {
    match kind {
        RuntimeKind::Native => native::NativeRuntime::start(config.interpreter_pool_size(), config.text("RequirementsDir"))
            .map(|r| Box::new(r) as Box<dyn Runtime>),
        #[cfg(not(feature = "wasm"))]
        RuntimeKind::Wasm => Err("mode wasm is not available in this build (built without the 'wasm' feature)".to_string()),
        #[cfg(feature = "wasm")]
        RuntimeKind::Wasm => {
            let settings = wasm::Settings { python_path: config.wasm_python_path(), warm_instances: config.wasm_warm_instances() };
            wasm::WasmRuntime::start(settings).map(|r| Box::new(r) as Box<dyn Runtime>)
        }
    }
}

/// The Python version scripts run on in `kind`, for the load log line.
pub fn python_version(kind: RuntimeKind) -> String {
    match kind {
        RuntimeKind::Native => native::NativeRuntime::python_version(),
        #[cfg(feature = "wasm")]
        RuntimeKind::Wasm => wasm::PYTHON_VERSION.to_string(),
        #[cfg(not(feature = "wasm"))]
        RuntimeKind::Wasm => "none (built without wasm)".to_string(),
    }
}
