//! Installing a requirement (`RG.PYEXECUTE … REQUIREMENTS pkg==ver`) with pip, into a directory
//! of its own, and finding one installed earlier (after a restart, for a session being rebuilt).
//!
//! pip runs as a child process of the Python native mode is built against, on the installing
//! thread (never Redis' main thread), bounded by `RequirementsInstallTimeoutMS`, to resolve and
//! download: it only ever takes wheels (`--only-binary=:all:`), so no code of the package runs
//! (an sdist's `setup.py` would run as the Redis user). The wheels of the requirement and its
//! dependencies land in `wheels/`; gearbox unpacks them into `site/` itself (`wheel.rs`), which
//! is also how an exported or replicated requirement is installed without pip. A marker file
//! written last says the install is complete. Layout, under `RequirementsDir`:
//! `<name-slug>-<hash of the name>/<generation>/{wheels,site,gearbox-requirement}`;
//! FORCE_REINSTALL_REQUIREMENTS makes the next generation, so sessions using the old one keep it.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use gearbox_engine::requirements::{is_valid_wheel_name, Requirement};

const MARKER: &str = "gearbox-requirement";

/// Where and how requirements are installed (from the load-time configuration).
#[derive(Clone, Debug)]
pub struct PipSettings {
    pub python: PathBuf,
    pub base_dir: PathBuf,
    /// `None`: no index at all (only `find_links`).
    pub index_url: Option<String>,
    pub find_links: Option<String>,
    pub timeout: Duration,
    /// Most bytes all installs under `base_dir` may take together.
    pub max_bytes: u64,
}

impl PipSettings {
    /// From the configuration: the Python native mode is built against runs pip.
    pub fn from_config(config: &crate::config::Config) -> PipSettings {
        let python = Path::new(env!("GEARBOX_PYTHON_HOME")).join("bin").join(concat!("python", env!("GEARBOX_PYTHON_VERSION")));
        let text = |name: &str| Some(config.text(name).to_string()).filter(|t| !t.is_empty());
        PipSettings {
            python,
            base_dir: PathBuf::from(config.text("RequirementsDir")),
            index_url: text("RequirementsIndexUrl").filter(|u| !u.eq_ignore_ascii_case("none")),
            find_links: text("RequirementsFindLinks"),
            timeout: Duration::from_millis(config.limit("RequirementsInstallTimeoutMS") as u64),
            max_bytes: (config.limit("RequirementsMaxMB") as u64) << 20,
        }
    }
}

/// One install at a time per requirement name (two tenants asking for the same one wait for one
/// pip run; different names install side by side).
static INSTALLING: Mutex<Option<HashMap<String, Arc<Mutex<()>>>>> = Mutex::new(None);

fn name_lock(name: &str) -> Arc<Mutex<()>> {
    let mut all = INSTALLING.lock().unwrap_or_else(|e| e.into_inner());
    all.get_or_insert_with(HashMap::new).entry(name.to_string()).or_default().clone()
}

/// Most pip runs at once in this server (each is a process and a download).
const MAX_RUNNING: usize = 4;
static RUNNING: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// One of the [`MAX_RUNNING`] install slots, given back when dropped.
struct InstallSlot;

impl InstallSlot {
    fn take() -> Result<InstallSlot, String> {
        use std::sync::atomic::Ordering;
        if RUNNING.fetch_add(1, Ordering::SeqCst) >= MAX_RUNNING {
            RUNNING.fetch_sub(1, Ordering::SeqCst);
            return Err(format!("{MAX_RUNNING} installs are running already; try again when they are done"));
        }
        Ok(InstallSlot)
    }
}

impl Drop for InstallSlot {
    fn drop(&mut self) {
        RUNNING.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
    }
}

/// The directory all generations of `name` live in: readable, and stable across builds.
fn home_of(base: &Path, name: &str) -> PathBuf {
    let slug: String = name.chars().map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_lowercase() } else { '_' }).take(40).collect();
    // FNV-1a: distinct names that share a slug (`a==1` and `a<1`) get distinct directories.
    let hash = name.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ b as u64).wrapping_mul(0x100_0000_01b3));
    base.join(format!("{slug}-{hash:016x}"))
}

/// The newest complete install of `name`, if any (no pip run, no network).
pub fn find_installed(settings: &PipSettings, name: &str) -> Option<Requirement> {
    let home = home_of(&settings.base_dir, name);
    generations(&home).into_iter().rev().find_map(|g| read_install(&home.join(g.to_string()), name))
}

/// The generation numbers of the installs in `home`, oldest first (retired ones are not).
fn generations(home: &Path) -> Vec<u64> {
    let Ok(entries) = std::fs::read_dir(home) else { return Vec::new() };
    let mut found: Vec<u64> = entries.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok()).collect();
    found.sort_unstable();
    found
}

fn read_install(dir: &Path, name: &str) -> Option<Requirement> {
    let marker = std::fs::read_to_string(dir.join(MARKER)).ok()?;
    let mut lines = marker.lines();
    if lines.next()? != name {
        return None;
    }
    let wheels = lines.map(str::to_string).collect();
    let site = dir.join("site");
    let mut compiled = Vec::new();
    compiled_files(&site, &site, &mut compiled);
    Some(Requirement { name: name.to_string(), path: site.to_string_lossy().into_owned(), wheels, compiled })
}

/// Files of native code under `dir` (relative to `root`).
fn compiled_files(root: &Path, dir: &Path, out: &mut Vec<String>) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let path = entry.path();
        match entry.file_type() {
            Ok(t) if t.is_dir() => compiled_files(root, &path, out),
            Ok(t) if t.is_file() => {
                let n = entry.file_name().to_string_lossy().into_owned();
                if n.ends_with(".so") || n.contains(".so.") || n.ends_with(".pyd") || n.ends_with(".dylib") {
                    out.push(path.strip_prefix(root).unwrap_or(&path).to_string_lossy().into_owned());
                }
            }
            _ => {}
        }
    }
}

/// Install `name` unless it is installed already (or `force`: always, as a new generation).
/// `Err` is a message for the log (the client gets RedisGears' "Could not satisfy requirements").
pub fn install(settings: &PipSettings, name: &str, force: bool) -> Result<Requirement, String> {
    let lock = name_lock(name);
    let _one_at_a_time = lock.lock().unwrap_or_else(|e| e.into_inner());
    if !force {
        if let Some(found) = find_installed(settings, name) {
            return Ok(found);
        }
    }
    let _slot = InstallSlot::take()?;
    in_new_generation(settings, name, |dir| pip_into(settings, name, dir))
}

fn pip_into(settings: &PipSettings, name: &str, dir: &Path) -> Result<Requirement, String> {
    let deadline = Instant::now() + settings.timeout;
    let wheels = dir.join("wheels");
    let mut download = vec!["download".to_string(), "--only-binary=:all:".into(), "--dest".into(), wheels.to_string_lossy().into()];
    match &settings.index_url {
        Some(url) => download.extend(["--index-url".to_string(), url.clone()]),
        None => download.push("--no-index".into()),
    }
    if let Some(links) = &settings.find_links {
        download.extend(["--find-links".to_string(), links.clone()]);
    }
    download.extend(["--".to_string(), name.to_string()]);
    run_pip(settings, &download, dir, deadline)?;
    let mut names: Vec<String> = std::fs::read_dir(&wheels)
        .map_err(|e| format!("could not list {}: {e}", wheels.display()))?
        .filter_map(|e| Some(e.ok()?.file_name().to_str()?.to_string()))
        .filter(|n| is_valid_wheel_name(n))
        .collect();
    names.sort();
    finish_install(dir, name, &names)
}

/// Unpack the wheels `names` (in `dir/wheels`) into `dir/site`, then write the marker that
/// makes the install complete.
fn finish_install(dir: &Path, name: &str, names: &[String]) -> Result<Requirement, String> {
    let site = dir.join("site");
    std::fs::create_dir_all(&site).map_err(|e| format!("could not create {}: {e}", site.display()))?;
    for wheel in names {
        let bytes = std::fs::read(dir.join("wheels").join(wheel)).map_err(|e| format!("could not read {wheel}: {e}"))?;
        super::wheel::unpack(&bytes, &site).map_err(|e| format!("{wheel}: {e}"))?;
    }
    let marker = std::iter::once(name.to_string()).chain(names.iter().cloned()).collect::<Vec<_>>().join("\n");
    std::fs::write(dir.join(MARKER), marker + "\n").map_err(|e| format!("could not write the install marker: {e}"))?;
    read_install(dir, name).ok_or_else(|| "the install marker could not be read back".to_string())
}

/// Install `name` from these wheels (RG.PYIMPORTREQ, a replica, a load), without pip or the
/// network. An install of `name` made of the same wheels is reused.
pub fn install_wheels(settings: &PipSettings, name: &str, wheels: &[(String, Vec<u8>)]) -> Result<Requirement, String> {
    if let Some(bad) = wheels.iter().find(|(n, _)| !is_valid_wheel_name(n)) {
        return Err(format!("{:?} is not a wheel file name", bad.0));
    }
    let lock = name_lock(name);
    let _one_at_a_time = lock.lock().unwrap_or_else(|e| e.into_inner());
    let mut names: Vec<String> = wheels.iter().map(|(n, _)| n.clone()).collect();
    names.sort();
    if let Some(found) = find_installed(settings, name).filter(|f| f.wheels == names && same_wheels(f, wheels)) {
        return Ok(found);
    }
    in_new_generation(settings, name, |dir| {
        std::fs::create_dir_all(dir.join("wheels")).map_err(|e| format!("could not create {}: {e}", dir.display()))?;
        for (n, bytes) in wheels {
            std::fs::write(dir.join("wheels").join(n), bytes).map_err(|e| format!("could not write {n}: {e}"))?;
        }
        finish_install(dir, name, &names)
    })
}

/// Make the next generation directory of `name`, fill it with `fill`, and keep it only if that
/// succeeded and all installs stay within `RequirementsMaxMB`.
fn in_new_generation(
    settings: &PipSettings,
    name: &str,
    fill: impl FnOnce(&Path) -> Result<Requirement, String>,
) -> Result<Requirement, String> {
    let home = home_of(&settings.base_dir, name);
    std::fs::create_dir_all(&home).map_err(|e| format!("could not create {}: {e}", home.display()))?;
    let dir = home.join(generations(&home).last().map_or(1, |g| g + 1).to_string());
    std::fs::create_dir(&dir).map_err(|e| format!("could not create {}: {e}", dir.display()))?;
    let result = fill(&dir).and_then(|r| within_disk_cap(settings, r));
    if result.is_err() {
        let _ = std::fs::remove_dir_all(&dir);
    }
    result
}

/// Whether `found` was installed from exactly these wheels (names and bytes).
fn same_wheels(found: &Requirement, wheels: &[(String, Vec<u8>)]) -> bool {
    let Some(dir) = Path::new(&found.path).parent().map(|d| d.join("wheels")) else { return false };
    wheels.iter().all(|(n, bytes)| std::fs::read(dir.join(n)).is_ok_and(|b| b == *bytes))
}

/// Most bytes of wheels one requirement may export, replicate or save with its sessions.
pub const MAX_EXPORT: u64 = 64 << 20;

/// The wheels `req` was installed from, to export or replicate it (at most [`MAX_EXPORT`]
/// bytes, checked before anything is read).
pub fn wheels_of(req: &Requirement) -> Result<Vec<(String, Vec<u8>)>, String> {
    let dir = Path::new(&req.path).parent().ok_or("an install without a directory")?.join("wheels");
    let size: u64 = req.wheels.iter().map(|n| std::fs::metadata(dir.join(n)).map_or(0, |m| m.len())).sum();
    if size > MAX_EXPORT {
        return Err(format!("its wheels take {} MiB, more than the {} MiB that travel with a session", size >> 20, MAX_EXPORT >> 20));
    }
    req.wheels.iter().map(|n| std::fs::read(dir.join(n)).map(|b| (n.clone(), b)).map_err(|e| format!("could not read {n}: {e}"))).collect()
}

/// `req` if all installs together stay within `RequirementsMaxMB` (else the caller removes it).
fn within_disk_cap(settings: &PipSettings, req: Requirement) -> Result<Requirement, String> {
    let used = disk_use(&settings.base_dir);
    if used > settings.max_bytes {
        return Err(format!("installs would take {} MiB, over RequirementsMaxMB ({} MiB)", used >> 20, settings.max_bytes >> 20));
    }
    Ok(req)
}

/// Bytes of the files under `dir` (symbolic links not followed).
fn disk_use(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else { return 0 };
    entries
        .flatten()
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => disk_use(&e.path()),
            Ok(t) if t.is_file() => e.metadata().map_or(0, |m| m.len()),
            _ => 0,
        })
        .sum()
}

/// Take the installs of `name` other than those at `keep` (`site` paths sessions still use, and
/// the current one) out of use: each is renamed at once (the caller holds the Redis lock, under
/// which sessions pick their installs); [`remove_retired`] deletes them later, without the lock.
pub fn retire_unused(settings: &PipSettings, name: &str, keep: &[String]) -> Vec<PathBuf> {
    let home = home_of(&settings.base_dir, name);
    let mut retired = Vec::new();
    for n in generations(&home) {
        let generation = home.join(n.to_string());
        if !keep.contains(&generation.join("site").to_string_lossy().into_owned()) {
            let to = home.join(format!("retired-{n}"));
            if std::fs::rename(&generation, &to).is_ok() {
                retired.push(to);
            }
        }
    }
    retired
}

/// Delete installs [`retire_unused`] took out of use.
pub fn remove_retired(retired: Vec<PathBuf>) {
    for dir in retired {
        let _ = std::fs::remove_dir_all(dir);
    }
}

/// Run `python -m pip <args>` until `deadline`; `Err` carries the end of pip's output.
fn run_pip(settings: &PipSettings, args: &[String], dir: &Path, deadline: Instant) -> Result<(), String> {
    let log = tempfile_path();
    let out = std::fs::File::create(&log).map_err(|e| format!("could not create pip's log file: {e}"))?;
    let err = out.try_clone().map_err(|e| format!("could not create pip's log file: {e}"))?;
    let mut child = Command::new(&settings.python)
        .args(["-m", "pip", "--disable-pip-version-check", "--no-input", "--no-cache-dir", "--quiet"])
        .args(args)
        .env("PYTHONNOUSERSITE", "1")
        // pip's own temporary files go where a failed install's clean-up removes them.
        .env("TMPDIR", dir)
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .map_err(|e| format!("could not start {} -m pip: {e}", settings.python.display()))?;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Some(status),
            Ok(None) if Instant::now() >= deadline => {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            Err(e) => return Err(format!("could not wait for pip: {e}")),
        }
    };
    let output = std::fs::read_to_string(&log).unwrap_or_default();
    let _ = std::fs::remove_file(&log);
    let tail: String = output.lines().rev().take(6).collect::<Vec<_>>().into_iter().rev().collect::<Vec<_>>().join(" | ");
    match status {
        None => Err(format!("pip {} took longer than {} ms and was stopped", args[0], settings.timeout.as_millis())),
        Some(s) if s.success() => Ok(()),
        Some(s) => Err(format!("pip {} failed ({s}): {tail}", args[0])),
    }
}

fn tempfile_path() -> PathBuf {
    static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    std::env::temp_dir().join(format!("gearbox-pip-{}-{n}.log", std::process::id()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_get_distinct_stable_directories() {
        let base = Path::new("/r");
        assert_eq!(home_of(base, "redis==3"), home_of(base, "redis==3"));
        assert_ne!(home_of(base, "a==1"), home_of(base, "a<1"));
        assert!(home_of(base, "Redis==3").to_string_lossy().starts_with("/r/redis__3-"));
        assert!(home_of(base, &"x".repeat(200)).file_name().unwrap().len() < 60);
    }

    #[test]
    fn an_install_without_its_marker_is_not_found() {
        let base = std::env::temp_dir().join(format!("gearbox-pip-test-{}", std::process::id()));
        let settings = PipSettings {
            python: "python3".into(),
            base_dir: base.clone(),
            index_url: None,
            find_links: None,
            timeout: Duration::from_secs(1),
            max_bytes: 1 << 30,
        };
        let dir = home_of(&base, "p==1").join("1");
        std::fs::create_dir_all(dir.join("site/p")).unwrap();
        assert!(find_installed(&settings, "p==1").is_none());
        std::fs::write(dir.join("site/p/_c.cpython-313-x86_64-linux-gnu.so"), b"").unwrap();
        std::fs::write(dir.join(MARKER), "p==1\np-1-py3-none-any.whl\n").unwrap();
        let found = find_installed(&settings, "p==1").unwrap();
        assert_eq!(found.wheels, vec!["p-1-py3-none-any.whl".to_string()]);
        assert_eq!(found.compiled, vec!["p/_c.cpython-313-x86_64-linux-gnu.so".to_string()]);
        assert!(found.path.ends_with("/1/site"));
        std::fs::remove_dir_all(&base).unwrap();
    }
}
