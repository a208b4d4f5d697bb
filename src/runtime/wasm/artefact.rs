//! The guest artefact: where `python-3.12.0.wasm` is found, how it is verified, and how it is
//! compiled once and cached on disk (wasmtime's serialized module, keyed by the wasmtime version
//! and the artefact's sha256, written atomically so several servers starting together are safe;
//! only the first pays the ~5 s compile, the others load it back in milliseconds).
//!
//! `wasm-python/fetch.sh` (run by `make`) puts the verified file in the build's target directory;
//! that path is baked in at build time (`GEARBOX_WASM_PYTHON`), and `WasmPythonPath <file>` at
//! load time overrides it. Nothing is ever downloaded at run time.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use wasmtime::{Config, Engine, Module, OptLevel};

pub const WASM_NAME: &str = "python-3.12.0.wasm";
pub const WASM_SHA256: &str = "e5dc5a398b07b54ea8fdb503bf68fb583d533f10ec3f930963e02b9505f7a763";
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
            "the CPython-WASI guest ({WASM_NAME}) was not found (looked in: {}); run `make wasm-python` \
             (wasm-python/fetch.sh) or pass WasmPythonPath <file>",
            list.join(", ")
        )
    })
}

/// The one engine of the process: cranelift, epoch interruption for deadlines and aborts.
pub fn engine() -> Result<Engine, String> {
    let mut config = Config::new();
    config.epoch_interruption(true);
    config.cranelift_opt_level(OptLevel::Speed);
    config.max_wasm_stack(1 << 20);
    Engine::new(&config).map_err(|e| format!("could not start wasmtime: {e:#}"))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Read and verify the artefact, then load its compiled form from the cache (compiling and
/// storing it first if needed). Returns the module and a sentence on what happened.
pub fn load_module(engine: &Engine, path: &Path) -> Result<(Module, String), String> {
    let bytes = fs::read(path).map_err(|e| format!("could not read {}: {e}", path.display()))?;
    let sha = hex(&Sha256::digest(&bytes));
    if sha != WASM_SHA256 {
        return Err(format!(
            "{} is corrupted or not the pinned guest: sha256 {sha}, expected {WASM_SHA256} ({} bytes); \
             re-run `make wasm-python`",
            path.display(),
            bytes.len()
        ));
    }
    let name = format!("python-3.12.0-{}-wasmtime-{WASMTIME_VERSION}-{}.cwasm", &sha[..16], std::env::consts::ARCH);
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
    let serialized = engine.precompile_module(&bytes).map_err(|e| format!("could not compile {}: {e:#}", path.display()))?;
    let secs = started.elapsed().as_secs_f64();
    let mut note = format!("compiled the guest in {secs:.1} s (not cached: no writable cache directory)");
    for cache in &caches {
        let stored = cache.parent().map(fs::create_dir_all).unwrap_or(Ok(())).and_then(|()| store(cache, &serialized));
        if stored.is_ok() {
            note = format!("compiled the guest in {secs:.1} s and cached it in {}", cache.display());
            break;
        }
    }
    // SAFETY: `serialized` was produced just now by `precompile_module` of this engine.
    let module = unsafe { Module::deserialize(engine, &serialized) }.map_err(|e| format!("could not load the compiled guest: {e:#}"))?;
    Ok((module, note))
}

fn load_cached(engine: &Engine, caches: &[PathBuf]) -> Option<(Module, String)> {
    let cache = caches.iter().find(|c| c.is_file())?;
    // The file was written atomically by `precompile_module` of this same wasmtime build, in a
    // directory gearbox trusts like the module file itself (see `store`).
    // SAFETY: wasmtime checks version and engine header and refuses a mismatch (then we recompile).
    match unsafe { Module::deserialize_file(engine, cache) } {
        Ok(module) => Some((module, format!("loaded the compiled guest from {}", cache.display()))),
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
