//! The module's global state: configuration, the engine and the runtime, made once at load and
//! never freed (the module refuses to unload: an embedded CPython cannot be started twice).

use std::sync::{OnceLock, RwLock, RwLockReadGuard, RwLockWriteGuard};

use gearbox_engine::Engine;

use crate::config::Config;
use crate::runtime::Runtimes;

pub struct Gearbox {
    config: RwLock<Config>,
    pub engine: Engine,
    pub runtimes: Runtimes,
}

static GEARBOX: OnceLock<Gearbox> = OnceLock::new();

/// Install the global state (once, at load).
pub fn install(config: Config, engine: Engine, runtimes: Runtimes) -> Result<(), String> {
    GEARBOX
        .set(Gearbox { config: RwLock::new(config), engine, runtimes })
        .map_err(|_| "gearbox is already loaded in this process".to_string())
}

/// The global state. Commands exist only after `install`, so this cannot fail from a command.
pub fn get() -> &'static Gearbox {
    GEARBOX.get().expect("gearbox used before it was loaded")
}

impl Gearbox {
    pub fn config(&self) -> RwLockReadGuard<'_, Config> {
        self.config.read().unwrap_or_else(|e| e.into_inner())
    }

    pub fn config_mut(&self) -> RwLockWriteGuard<'_, Config> {
        self.config.write().unwrap_or_else(|e| e.into_inner())
    }
}

/// `configGet()` for scripts.
pub fn config_get(name: &str) -> Option<String> {
    GEARBOX.get().and_then(|g| g.config().get_as_string(name))
}
