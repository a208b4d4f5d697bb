//! Unpacking a wheel (a zip file, PEP 427) into a requirement's `site` directory. gearbox does
//! this itself rather than `pip install`: it is quick enough to run while a replica or a load
//! rebuilds sessions, it runs no code, and every entry is checked, because a wheel can come from
//! RG.PYIMPORTREQ or a replication stream as well as from the index:
//! no absolute path, no `..`, no symbolic link, at most [`MAX_UNPACKED`] bytes in all (a zip
//! bomb stops there). `<dist>.data/purelib` and `platlib` land at the top as pip puts them;
//! scripts, headers and data files are not installed (no script may run them anyway).

use std::io::Read;
use std::path::{Component, Path, PathBuf};

/// The most one wheel may unpack to.
pub const MAX_UNPACKED: u64 = 512 << 20;
const MAX_ENTRIES: usize = 100_000;

/// Unpack `wheel` (its bytes) into `site`. `Err` names the first entry refused.
pub fn unpack(wheel: &[u8], site: &Path) -> Result<(), String> {
    unpack_within(wheel, site, MAX_UNPACKED)
}

fn unpack_within(wheel: &[u8], site: &Path, cap: u64) -> Result<(), String> {
    let mut archive = zip::ZipArchive::new(std::io::Cursor::new(wheel)).map_err(|e| format!("not a wheel (zip): {e}"))?;
    if archive.len() > MAX_ENTRIES {
        return Err(format!("a wheel with {} entries (at most {MAX_ENTRIES})", archive.len()));
    }
    let mut total = 0u64;
    for i in 0..archive.len() {
        let mut entry = archive.by_index(i).map_err(|e| format!("unreadable wheel entry {i}: {e}"))?;
        let name = entry.name().map_err(|e| format!("wheel entry {i} has no readable name: {e}"))?.into_owned();
        if entry.is_symlink() {
            return Err(format!("wheel entry {name:?} is a symbolic link"));
        }
        let Some(rel) = install_path(&name)? else { continue };
        let target = site.join(&rel);
        if entry.is_dir() {
            std::fs::create_dir_all(&target).map_err(|e| format!("could not create {}: {e}", target.display()))?;
            continue;
        }
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent).map_err(|e| format!("could not create {}: {e}", parent.display()))?;
        }
        let mut data = Vec::new();
        let room = cap - total;
        entry.by_ref().take(room + 1).read_to_end(&mut data).map_err(|e| format!("wheel entry {name:?} is damaged: {e}"))?;
        total += data.len() as u64;
        if total > cap {
            return Err(format!("the wheel unpacks to more than {cap} bytes"));
        }
        std::fs::write(&target, &data).map_err(|e| format!("could not write {}: {e}", target.display()))?;
    }
    Ok(())
}

/// Where an entry goes, relative to `site` (None: not installed), or why it is refused.
fn install_path(name: &str) -> Result<Option<PathBuf>, String> {
    let path = Path::new(name);
    if name.contains('\\') || name.contains('\0') || path.components().any(|c| !matches!(c, Component::Normal(_))) {
        return Err(format!("wheel entry {name:?} points outside its directory"));
    }
    let mut parts = path.components().map(|c| c.as_os_str().to_string_lossy().into_owned());
    let first = parts.next().unwrap_or_default();
    if !first.ends_with(".data") {
        return Ok(Some(path.to_path_buf()));
    }
    match parts.next().as_deref() {
        Some("purelib" | "platlib") => {
            let rest: PathBuf = parts.collect();
            Ok((!rest.as_os_str().is_empty()).then_some(rest))
        }
        _ => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn wheel(entries: &[(&str, &[u8])]) -> Vec<u8> {
        let mut out = std::io::Cursor::new(Vec::new());
        {
            let mut z = zip::ZipWriter::new(&mut out);
            for (name, data) in entries {
                z.start_file(*name, zip::write::SimpleFileOptions::default()).unwrap();
                z.write_all(data).unwrap();
            }
            z.finish().unwrap();
        }
        out.into_inner()
    }

    fn scratch(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("gearbox-wheel-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    #[test]
    fn files_land_where_pip_puts_them() {
        let site = scratch("ok");
        let w = wheel(&[
            ("p/__init__.py", b"X = 1"),
            ("p-1.dist-info/METADATA", b"Name: p"),
            ("p-1.data/purelib/q.py", b"Q = 2"),
            ("p-1.data/scripts/run", b"#!/bin/sh"),
        ]);
        unpack(&w, &site).unwrap();
        assert_eq!(std::fs::read(site.join("p/__init__.py")).unwrap(), b"X = 1");
        assert_eq!(std::fs::read(site.join("q.py")).unwrap(), b"Q = 2");
        assert!(site.join("p-1.dist-info/METADATA").exists());
        assert!(!site.join("run").exists() && !site.join("p-1.data").exists());
        std::fs::remove_dir_all(&site).unwrap();
    }

    #[test]
    fn entries_reaching_outside_are_refused() {
        for bad in ["../evil.py", "/etc/evil", "p/../../evil", "p\\..\\evil"] {
            let site = scratch("bad");
            let err = unpack(&wheel(&[(bad, b"x")]), &site).unwrap_err();
            assert!(err.contains("outside its directory"), "{bad}: {err}");
            assert!(!std::env::temp_dir().join("evil.py").exists());
        }
    }

    #[test]
    fn a_zip_bomb_stops_at_the_cap_and_junk_is_not_a_wheel() {
        assert!(unpack(b"not a zip", &scratch("junk")).unwrap_err().contains("not a wheel"));
        let zeros = vec![0u8; 64 << 10];
        let bomb = wheel(&[("a.bin", &zeros), ("b.bin", &zeros)]);
        assert!(bomb.len() < 4096, "compresses well: {}", bomb.len());
        let site = scratch("bomb");
        assert!(unpack_within(&bomb, &site, 100 << 10).unwrap_err().contains("more than 102400 bytes"));
        let _ = std::fs::remove_dir_all(&site);
        assert!(install_path("p-1.data/headers/x.h").unwrap().is_none());
    }
}
