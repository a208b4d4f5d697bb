//! The guest artefact: where the guest component `gearbox-guest.wasm` is found, how it is
//! verified, and how it is compiled once and cached on disk (wasmtime's serialized component,
//! keyed by the wasmtime version and the artefact's sha256, written atomically so several servers
//! starting together are safe; only the first pays the ~10 s compile, the others load it back in
//! milliseconds).
//!
//! `wasm-python/build-guest.sh` (run by `make`) builds the component in the build's target
//! directory, with its sha256 next to it (`gearbox-guest.wasm.sha256`: the build is not
//! byte-reproducible, so the digest is recorded rather than pinned); that path is baked in at
//! build time (`GEARBOX_WASM_PYTHON`), and `WasmPythonPath <file>` at load time overrides it.
//! Nothing is ever downloaded at run time.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use wasmtime::component::Component;
use wasmtime::{Config, Engine, OptLevel};

pub const WASM_NAME: &str = "gearbox-guest.wasm";
/// Native stack the guest's code may use (the instance thread's stack is larger, `instance.rs`).
pub const WASM_STACK: usize = 32 << 20;

/// Pinned in Cargo.toml; part of the cache key (a serialized module only loads in its own build).
pub const WASMTIME_VERSION: &str = "48.0.8";

/// Where to look when `WasmPythonPath` is not given, first match wins.
pub fn default_candidates() -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Some(p) = option_env!("GEARBOX_WASM_PYTHON") {
        out.push(PathBuf::from(p));
    }
    if let Some(dir) = option_env!("CARGO_TARGET_DIR") {
        out.push(Path::new(dir).join("wasm-python").join(WASM_NAME));
    }
    out.push(Path::new(env!("CARGO_MANIFEST_DIR")).join("target").join("wasm-python").join(WASM_NAME));
    if let Some(home) = std::env::var_os("HOME") {
        out.push(Path::new(&home).join(".cache").join("gearbox").join(WASM_NAME));
    }
    out
}

/// The artefact to use: `configured` if given (it must exist), else the first default found.
pub fn locate(configured: Option<&str>) -> Result<PathBuf, String> {
    if let Some(p) = configured.filter(|p| !p.is_empty()) {
        let path = PathBuf::from(p);
        return if path.is_file() { Ok(path) } else { Err(format!("WasmPythonPath {p} is not a readable file")) };
    }
    let candidates = default_candidates();
    candidates.iter().find(|p| p.is_file()).cloned().ok_or_else(|| {
        let list: Vec<String> = candidates.iter().map(|p| p.display().to_string()).collect();
        format!(
            "the wasm guest ({WASM_NAME}) was not found (looked in: {}); run `make wasm-python` \
             (wasm-python/build-guest.sh) or pass WasmPythonPath <file>",
            list.join(", ")
        )
    })
}

/// The one engine of the process: cranelift, the component model, epoch interruption for
/// deadlines and aborts.
pub fn engine() -> Result<Engine, String> {
    let mut config = Config::new();
    config.wasm_component_model(true);
    config.epoch_interruption(true);
    config.cranelift_opt_level(OptLevel::Speed);
    // The guest's CPython raises RecursionError when its own (in-memory) 1 MiB stack is used up;
    // the native stack its frames take by then is well under this (measured: < 16 MiB).
    config.max_wasm_stack(WASM_STACK);
    config.async_stack_size(WASM_STACK);
    Engine::new(&config).map_err(|e| format!("could not start wasmtime: {e:#}"))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The sha256 the build recorded next to the artefact (`<file>.sha256`).
fn recorded_sha256(path: &Path) -> Result<String, String> {
    let mut side = path.as_os_str().to_owned();
    side.push(".sha256");
    let text = fs::read_to_string(&side)
        .map_err(|e| format!("{} has no readable {}: {e}; re-run `make wasm-python`", path.display(), Path::new(&side).display()))?;
    Ok(text.split_whitespace().next().unwrap_or("").to_ascii_lowercase())
}

/// Read and verify the artefact, then load its compiled form from the cache (compiling and
/// storing it first if needed). Returns the component and a sentence on what happened.
pub fn load_component(engine: &Engine, path: &Path) -> Result<(Component, String), String> {
    let bytes = fs::read(path).map_err(|e| format!("could not read {}: {e}", path.display()))?;
    let expected = recorded_sha256(path)?;
    let sha = hex(&Sha256::digest(&bytes));
    if sha != expected {
        return Err(format!(
            "{} is corrupted or not the guest that was built: sha256 {sha}, its build recorded {expected} ({} bytes); \
             re-run `make wasm-python`",
            path.display(),
            bytes.len()
        ));
    }
    let name = format!("gearbox-guest-{}-wasmtime-{WASMTIME_VERSION}-{}.cwasm", &sha[..16], std::env::consts::ARCH);
    // Next to the artefact, or in ~/.cache/gearbox when that directory is read-only.
    let mut caches = vec![path.with_file_name(&name)];
    if let Some(home) = std::env::var_os("HOME") {
        caches.push(Path::new(&home).join(".cache").join("gearbox").join(&name));
    }
    if let Some(found) = load_cached(engine, &caches) {
        return Ok(found);
    }
    // Servers starting together: one compiles, the others wait for its file (lock next to it).
    let _lock = CompileLock::take(&caches[0]);
    if let Some(found) = load_cached(engine, &caches) {
        return Ok(found);
    }
    let started = std::time::Instant::now();
    let serialized = engine.precompile_component(&bytes).map_err(|e| format!("could not compile {}: {e:#}", path.display()))?;
    let secs = started.elapsed().as_secs_f64();
    let mut note = format!("compiled the guest in {secs:.1} s (not cached: no writable cache directory)");
    for cache in &caches {
        let stored = cache.parent().map(fs::create_dir_all).unwrap_or(Ok(())).and_then(|()| store(cache, &serialized));
        if stored.is_ok() {
            note = format!("compiled the guest in {secs:.1} s and cached it in {}", cache.display());
            break;
        }
    }
    // SAFETY: `serialized` was produced just now by `precompile_component` of this engine.
    let component =
        unsafe { Component::deserialize(engine, &serialized) }.map_err(|e| format!("could not load the compiled guest: {e:#}"))?;
    Ok((component, note))
}

fn load_cached(engine: &Engine, caches: &[PathBuf]) -> Option<(Component, String)> {
    let cache = caches.iter().find(|c| c.is_file())?;
    // The file was written atomically by `precompile_component` of this same wasmtime build, in a
    // directory gearbox trusts like the module file itself (see `store`).
    // SAFETY: wasmtime checks version and engine header and refuses a mismatch (then we recompile).
    match unsafe { Component::deserialize_file(engine, cache) } {
        Ok(component) => Some((component, format!("loaded the compiled guest from {}", cache.display()))),
        Err(e) => {
            eprintln!("gearbox: ignoring the compiled guest cache {}: {e:#}", cache.display());
            None
        }
    }
}

/// An exclusive `flock` on `<cache>.lock`, released on drop; none if the file cannot be made.
struct CompileLock(Option<fs::File>);

impl CompileLock {
    fn take(cache: &Path) -> CompileLock {
        use std::os::fd::AsRawFd;
        let file = fs::OpenOptions::new().create(true).truncate(false).write(true).open(cache.with_extension("lock")).ok();
        if let Some(f) = &file {
            // SAFETY: a valid open descriptor owned by `f`; flock has no memory effects.
            unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX) };
        }
        CompileLock(file)
    }
}

impl Drop for CompileLock {
    fn drop(&mut self) {
        use std::os::fd::AsRawFd;
        if let Some(f) = &self.0 {
            // SAFETY: as in `take`.
            unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_UN) };
        }
    }
}

/// Write `data` to `path` atomically: a unique temporary file in the same directory, then rename.
fn store(path: &Path, data: &[u8]) -> std::io::Result<()> {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0);
    let tmp = path.with_extension(format!("tmp.{}.{nanos}", std::process::id()));
    let result = (|| {
        let mut f = fs::File::create(&tmp)?;
        f.write_all(data)?;
        f.sync_all()?;
        fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}
