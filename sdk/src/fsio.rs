//! Atomic file writes.

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

static COUNTER: AtomicU64 = AtomicU64::new(0);

/// A unique temporary path next to `path`: `.<name>.tmp-<pid>-<n>`.
pub fn temp_path_for(path: &Path) -> io::Result<PathBuf> {
    let name = path.file_name().ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("'{}' has no file name", path.display()),
        )
    })?;
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let tmp = format!(
        ".{}.tmp-{}-{}",
        name.to_string_lossy(),
        std::process::id(),
        n
    );
    Ok(path.with_file_name(tmp))
}

/// Folders already created by this process (saves a syscall per image).
static MADE_DIRS: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());

fn ensure_dir(dir: &Path) -> io::Result<()> {
    let mut made = MADE_DIRS.lock().unwrap_or_else(|p| p.into_inner());
    if made.iter().any(|d| d == dir) {
        return Ok(());
    }
    fs::create_dir_all(dir)?;
    if made.len() > 4096 {
        made.clear();
    }
    made.push(dir.to_path_buf());
    Ok(())
}

/// Writes `bytes` to `path` atomically: parent folders are created, and readers never see a
/// partial file. On Linux the data goes to an unnamed `O_TMPFILE` inode that is linked into
/// place once complete (one directory operation instead of create + rename); elsewhere, or
/// when `path` already exists, it is written to `.<name>.tmp-<pid>-<n>` in the same folder and
/// renamed over `path`. The temporary file is removed on error. (No fsync: a crash may lose the
/// file, but never leaves a torn one under the final name.)
pub fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let parent = path.parent().filter(|p| !p.as_os_str().is_empty());
    if let Some(parent) = parent {
        ensure_dir(parent)?;
    }
    #[cfg(target_os = "linux")]
    if linux::write_unnamed_then_link(parent.unwrap_or(Path::new(".")), path, bytes).is_ok() {
        return Ok(());
    }
    let tmp = temp_path_for(path)?;
    let result = (|| {
        let mut f = fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        drop(f);
        fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

#[cfg(target_os = "linux")]
mod linux {
    use std::ffi::CString;
    use std::fs::OpenOptions;
    use std::io::{self, Write};
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::fs::OpenOptionsExt;
    use std::os::unix::io::AsRawFd;
    use std::path::Path;

    /// Writes into an anonymous inode in `dir`, then gives it the name `path`. Fails (and the
    /// caller falls back) when the file system has no O_TMPFILE or `path` already exists.
    pub fn write_unnamed_then_link(dir: &Path, path: &Path, bytes: &[u8]) -> io::Result<()> {
        let mut f = OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_TMPFILE)
            .mode(0o644)
            .open(dir)?;
        f.write_all(bytes)?;
        let proc_path = CString::new(format!("/proc/self/fd/{}", f.as_raw_fd()))?;
        let target = CString::new(path.as_os_str().as_bytes())?;
        // SAFETY: both strings are NUL-terminated and live across the call.
        let rc = unsafe {
            libc::linkat(
                libc::AT_FDCWD,
                proc_path.as_ptr(),
                libc::AT_FDCWD,
                target.as_ptr(),
                libc::AT_SYMLINK_FOLLOW,
            )
        };
        if rc == 0 {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        }
    }
}

/// Removes the temporary files (`.<name>.tmp-<pid>[-<n>]`) that processes which are no longer
/// running left under `dir` (a crash or `kill -9` between writing and renaming). Files of live
/// processes are kept. Returns how many were removed. Only Linux can tell a live process from a
/// dead one here (`/proc`); elsewhere nothing is removed.
pub fn remove_stale_temps(dir: &Path) -> usize {
    let mut removed = 0;
    let Ok(rd) = fs::read_dir(dir) else {
        return 0;
    };
    for e in rd.flatten() {
        let name = e.file_name().to_string_lossy().to_string();
        match e.file_type() {
            Ok(t) if t.is_dir() && !name.starts_with('.') => {
                removed += remove_stale_temps(&e.path());
            }
            Ok(t) if t.is_file() => {
                if let Some(pid) = temp_owner(&name)
                    && !process_alive(pid)
                    && fs::remove_file(e.path()).is_ok()
                {
                    removed += 1;
                }
            }
            _ => {}
        }
    }
    removed
}

/// The pid in a name made by [`temp_path_for`] (or `.<name>.tmp-<pid>`).
fn temp_owner(name: &str) -> Option<u32> {
    if !name.starts_with('.') {
        return None;
    }
    let tail = &name[name.rfind(".tmp-")? + 5..];
    let pid = tail.split('-').next()?;
    pid.parse().ok()
}

fn process_alive(pid: u32) -> bool {
    if pid == std::process::id() {
        return true;
    }
    if cfg!(target_os = "linux") {
        Path::new("/proc").join(pid.to_string()).exists()
    } else {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stale_temporaries_of_dead_processes_are_removed_and_others_kept() {
        let dir = tempfile::tempdir().unwrap();
        let sub = dir.path().join("a");
        fs::create_dir_all(&sub).unwrap();
        // pid 4194304 is above Linux's pid_max: never a live process.
        let stale = sub.join(".x.jpg.tmp-4194304-3");
        let stale2 = dir.path().join(".t1.nii.gz.tmp-4194304");
        let mine = temp_path_for(&dir.path().join("y.jpg")).unwrap();
        let real = dir.path().join("z.tmp-1");
        for p in [&stale, &stale2, &mine, &real] {
            fs::write(p, b"x").unwrap();
        }
        let n = remove_stale_temps(dir.path());
        if cfg!(target_os = "linux") {
            assert_eq!(n, 2);
            assert!(!stale.exists() && !stale2.exists());
        }
        assert!(mine.exists(), "a live process's temporary file is kept");
        assert!(real.exists(), "not a temporary name");
    }
}
