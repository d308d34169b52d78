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
