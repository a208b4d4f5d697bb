//! REQUIREMENTS in wasm mode: the guest has no file system, so a requirement's installed files
//! are read here and handed to the guest's memory finder (`python/gears_requirements.py`).
//! Only pure-Python requirements can be used: compiled code (`.so`) is for the host's CPython, not
//! for the guest's, and it would not load in WebAssembly anyway. Reading is bounded, follows no
//! symbolic link, and skips bytecode caches.

use std::path::Path;
use std::sync::Arc;

use gearbox_engine::requirements::Requirement;
use gearbox_engine::Value;

/// Most bytes of requirement files one session may be handed (they live in its linear memory).
const MAX_BYTES: u64 = 64 << 20;
const MAX_FILES: usize = 20_000;

/// `[[name, [[relative path, bytes], ...]], ...]` for the guest, or why they cannot be used.
pub fn roots(requirements: &[Arc<Requirement>]) -> Result<Value, String> {
    let mut total = 0u64;
    let mut out = Vec::new();
    for req in requirements {
        if let Some(file) = req.compiled.first() {
            return Err(format!(
                "gearbox: requirement '{}' contains compiled code ({file}); wasm sessions can use pure-Python packages only",
                req.name
            ));
        }
        let mut files = Vec::new();
        collect(Path::new(&req.path), "", &mut files, &mut total)?;
        out.push(Value::Array(vec![Value::bulk(req.name.clone()), Value::Array(files)]));
    }
    Ok(Value::Array(out))
}

fn collect(dir: &Path, prefix: &str, out: &mut Vec<Value>, total: &mut u64) -> Result<(), String> {
    let entries = std::fs::read_dir(dir).map_err(|e| format!("gearbox: could not read requirement directory {}: {e}", dir.display()))?;
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let rel = if prefix.is_empty() { name.clone() } else { format!("{prefix}/{name}") };
        let Ok(kind) = entry.file_type() else { continue };
        if kind.is_dir() && name != "__pycache__" {
            collect(&entry.path(), &rel, out, total)?;
        } else if kind.is_file() && !name.ends_with(".pyc") {
            // The size first: a huge file is refused without being read.
            *total += entry.metadata().map_or(u64::MAX / 2, |m| m.len());
            if *total > MAX_BYTES || out.len() >= MAX_FILES {
                return Err(format!(
                    "gearbox: requirements too large for a wasm session (more than {} MiB or {MAX_FILES} files)",
                    MAX_BYTES >> 20
                ));
            }
            let data = std::fs::read(entry.path()).map_err(|e| format!("gearbox: could not read {}: {e}", entry.path().display()))?;
            out.push(Value::Array(vec![Value::bulk(rel), Value::Bulk(data)]));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_are_handed_over_by_relative_path_without_caches_and_compiled_code_is_refused() {
        let dir = std::env::temp_dir().join(format!("gearbox-reqfiles-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("pkg/__pycache__")).unwrap();
        std::fs::write(dir.join("pkg/__init__.py"), b"X = 1\n").unwrap();
        std::fs::write(dir.join("pkg/__pycache__/__init__.cpython-313.pyc"), b"junk").unwrap();
        let mut req = Requirement { name: "pkg==1".into(), path: dir.to_string_lossy().into_owned(), wheels: vec![], compiled: vec![] };
        let Value::Array(all) = roots(&[Arc::new(req.clone())]).unwrap() else { panic!() };
        let Value::Array(pair) = &all[0] else { panic!() };
        assert_eq!(pair[0], Value::bulk("pkg==1"));
        assert_eq!(pair[1], Value::Array(vec![Value::Array(vec![Value::bulk("pkg/__init__.py"), Value::bulk("X = 1\n")])]));
        req.compiled.push("pkg/_c.so".into());
        assert!(roots(&[Arc::new(req)]).unwrap_err().contains("compiled code (pkg/_c.so)"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
