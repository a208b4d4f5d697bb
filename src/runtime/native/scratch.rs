//! Each native interpreter's private scratch directory: the one place on disk its script may
//! write (the native-mode guards refuse writes anywhere else, and reads outside the Python
//! installation). `<temp dir>/gearbox-<pid>/interp-<id>`, mode 0700, made when the interpreter
//! is prepared and removed when it has ended; `tempfile` uses it (TMPDIR in the interpreter's
//! own `os.environ`).

use std::os::unix::fs::DirBuilderExt;
use std::path::PathBuf;

/// The scratch directory of interpreter `id` (not made yet).
pub fn path_for(id: i64) -> PathBuf {
    std::env::temp_dir().join(format!("gearbox-{}", std::process::id())).join(format!("interp-{id}"))
}

/// Make interpreter `id`'s scratch directory (and the process' parent directory), private to
/// redis-server's user.
pub fn create(id: i64) -> Result<PathBuf, String> {
    let path = path_for(id);
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&path)
        .map_err(|e| format!("could not make the scratch directory {}: {e}", path.display()))?;
    Ok(path)
}

/// Remove the scratch directories of gearbox processes that are gone (a server that was killed
/// or shut down leaves its own behind). Called once at start-up.
pub fn remove_stale() {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else { return };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name.to_str().and_then(|n| n.strip_prefix("gearbox-")).and_then(|p| p.parse::<libc::pid_t>().ok()) else {
            continue;
        };
        // SAFETY: kill with signal 0 only asks whether the process exists.
        let gone = unsafe { libc::kill(pid, 0) } != 0 && std::io::Error::last_os_error().raw_os_error() == Some(libc::ESRCH);
        if gone && pid != std::process::id() as libc::pid_t {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

/// Remove interpreter `id`'s scratch directory and what its script left in it.
pub fn remove(id: i64) {
    let _ = std::fs::remove_dir_all(path_for(id));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_scratch_directory_is_private_and_goes_away() {
        use std::os::unix::fs::PermissionsExt;
        let path = create(-42).unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o700);
        std::fs::write(path.join("left.txt"), b"x").unwrap();
        remove(-42);
        assert!(!path.exists());
    }
}
