//! Atomic file writes, and removal of the temporaries a killed process left behind.

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};

static COUNTER: AtomicU64 = AtomicU64::new(0);

/// Who this process is, for temporary names: its pid, its start time (clock ticks since boot,
/// from `/proc/self/stat`; 0 where unknown) and a random nonce drawn at first use. A pid alone
/// is not enough: in a container the engine is pid 1 on every restart.
struct Me {
    pid: u32,
    start: u64,
    nonce: u64,
}

fn me() -> &'static Me {
    static ME: OnceLock<Me> = OnceLock::new();
    ME.get_or_init(|| {
        use std::hash::{BuildHasher, Hasher};
        // std seeds every RandomState from the OS's random source.
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u128(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos()),
        );
        Me {
            pid: std::process::id(),
            start: start_ticks("self").unwrap_or(0),
            nonce: h.finish() & 0xffff_ffff,
        }
    })
}

/// Field 22 of `/proc/<pid>/stat`: when the process started, in clock ticks since boot.
fn start_ticks(pid: &str) -> Option<u64> {
    if !cfg!(target_os = "linux") {
        return None;
    }
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may hold spaces: count after it.
    let after = &stat[stat.rfind(')')? + 1..];
    after.split_whitespace().nth(19)?.parse().ok()
}

/// A unique temporary path next to `path`: `.<name>.tmp-<pid>-s<start>r<nonce>-<n>` (see
/// [`remove_stale_temps`] for how the owner is told apart from an earlier process).
pub fn temp_path_for(path: &Path) -> io::Result<PathBuf> {
    let name = path.file_name().ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("'{}' has no file name", path.display()),
        )
    })?;
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let me = me();
    let tmp = format!(
        ".{}.tmp-{}-s{}r{:x}-{}",
        name.to_string_lossy(),
        me.pid,
        me.start,
        me.nonce,
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
/// when `path` already exists, it is written to a [`temp_path_for`] name in the same folder and
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

/// Removes the temporary files that processes which are no longer running left under `dir` (a
/// crash or `kill -9` between writing and renaming); files of live processes are kept. Returns
/// how many were removed. Symlinks are not followed (nothing outside `dir` is removed, and a
/// symlink loop cannot make the walk endless); hidden folders are not entered.
///
/// A [`temp_path_for`] name carries its owner's pid, start time and nonce: with this process's
/// pid it is stale unless start time and nonce are this process's too (an earlier engine that
/// had the same pid, as pid 1 in a container); with another pid it is stale unless a process
/// with that pid and start time is running (Linux `/proc`; elsewhere it is kept). An older
/// name, `.<name>.tmp-<pid>[-<n>]`, is stale when no process has the pid (and is kept when the
/// pid is this process's).
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
                if let Some(owner) = temp_owner(&name)
                    && !owner.alive()
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

/// The process named in a temporary file's name.
#[derive(Debug, PartialEq, Eq)]
struct Owner {
    pid: u32,
    /// Start time and nonce (`None` in the older pid-only names).
    stamp: Option<(u64, u64)>,
}

/// The owner in a name made by [`temp_path_for`] (or an older `.<name>.tmp-<pid>[-<n>]`).
fn temp_owner(name: &str) -> Option<Owner> {
    if !name.starts_with('.') {
        return None;
    }
    let tail = &name[name.rfind(".tmp-")? + 5..];
    let mut parts = tail.split('-');
    let pid = parts.next()?.parse().ok()?;
    let stamp = match (parts.next(), parts.next(), parts.next()) {
        (None, _, _) => None,
        (Some(n), None, _) if n.bytes().all(|b| b.is_ascii_digit()) => None,
        (Some(stamp), Some(n), None) if n.bytes().all(|b| b.is_ascii_digit()) => {
            let (start, nonce) = stamp.strip_prefix('s')?.split_once('r')?;
            Some((start.parse().ok()?, u64::from_str_radix(nonce, 16).ok()?))
        }
        _ => return None,
    };
    Some(Owner { pid, stamp })
}

impl Owner {
    fn alive(&self) -> bool {
        let me = me();
        match self.stamp {
            Some((start, nonce)) if self.pid == me.pid => (start, nonce) == (me.start, me.nonce),
            None if self.pid == me.pid => true,
            _ if !cfg!(target_os = "linux") => true,
            Some((start, _)) => start_ticks(&self.pid.to_string()) == Some(start),
            None => Path::new("/proc").join(self.pid.to_string()).exists(),
        }
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
        let stale3 = dir.path().join(".t2.nii.gz.tmp-4194304-s17r9af-0");
        let mine = temp_path_for(&dir.path().join("y.jpg")).unwrap();
        let real = dir.path().join("z.tmp-1");
        for p in [&stale, &stale2, &stale3, &mine, &real] {
            fs::write(p, b"x").unwrap();
        }
        let n = remove_stale_temps(dir.path());
        if cfg!(target_os = "linux") {
            assert_eq!(n, 3);
            assert!(!stale.exists() && !stale2.exists() && !stale3.exists());
        }
        assert!(mine.exists(), "a live process's temporary file is kept");
        assert!(real.exists(), "not a temporary name");
    }

    #[test]
    fn a_temporary_of_an_earlier_process_with_this_pid_is_stale() {
        // As after a container restart: the engine is pid 1 again, but started later.
        let me = me();
        let dir = tempfile::tempdir().unwrap();
        let earlier = dir.path().join(format!(
            ".x.jpg.tmp-{}-s{}r{:x}-0",
            me.pid,
            me.start.wrapping_sub(1),
            me.nonce
        ));
        let other_nonce = dir.path().join(format!(
            ".y.jpg.tmp-{}-s{}r{:x}-0",
            me.pid,
            me.start,
            me.nonce ^ 1
        ));
        let mine = temp_path_for(&dir.path().join("z.jpg")).unwrap();
        for p in [&earlier, &other_nonce, &mine] {
            fs::write(p, b"x").unwrap();
        }
        assert_eq!(remove_stale_temps(dir.path()), 2);
        assert!(mine.exists());
        assert_eq!(
            temp_owner(&mine.file_name().unwrap().to_string_lossy()),
            Some(Owner {
                pid: me.pid,
                stamp: Some((me.start, me.nonce))
            })
        );
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn another_live_process_keeps_its_temporaries_only_under_its_own_start_time() {
        let parent = std::os::unix::process::parent_id();
        let start = start_ticks(&parent.to_string()).expect("the parent is running");
        let dir = tempfile::tempdir().unwrap();
        let live = dir.path().join(format!(".a.tmp-{parent}-s{start}r1-0"));
        let reused = dir
            .path()
            .join(format!(".b.tmp-{parent}-s{}r1-0", start + 1));
        for p in [&live, &reused] {
            fs::write(p, b"x").unwrap();
        }
        assert_eq!(remove_stale_temps(dir.path()), 1);
        assert!(live.exists() && !reused.exists());
    }

    #[cfg(unix)]
    #[test]
    fn symlink_loops_end_the_cleanup_and_nothing_outside_is_removed() {
        let tmp = tempfile::tempdir().unwrap();
        let out = tmp.path().join("out");
        fs::create_dir_all(&out).unwrap();
        let inside = out.join(".a.jpg.tmp-4194304-1");
        let outside = tmp.path().join(".b.jpg.tmp-4194304-1");
        fs::write(&inside, b"x").unwrap();
        fs::write(&outside, b"x").unwrap();
        std::os::unix::fs::symlink("..", out.join("up")).unwrap();
        std::os::unix::fs::symlink(".", out.join("self")).unwrap();
        let n = remove_stale_temps(&out);
        if cfg!(target_os = "linux") {
            assert_eq!(n, 1);
            assert!(!inside.exists());
        }
        assert!(outside.exists(), "symlinks are not followed");
    }
}
