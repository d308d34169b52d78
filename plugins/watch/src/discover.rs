//! Finding candidate files: which names are never taken, walking folders, and the `notify`
//! watcher whose events only say "look at this path again".

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use std::sync::mpsc::Receiver;

use mindscan_sdk::walk::{Entry, Step, Walker};

/// Names a writer uses while a file is incomplete: never taken, whatever their age.
pub fn is_temp_name(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    name.starts_with('.')
        || name.starts_with('~')
        || name.ends_with('~')
        || [
            ".part",
            ".tmp",
            ".partial",
            ".crdownload",
            ".filepart",
            ".swp",
        ]
        .iter()
        .any(|s| lower.ends_with(s))
}

/// Whether any component of `path` below `root` is a temporary or hidden name (files inside a
/// `.incoming/` folder are not taken either).
pub fn is_ignored(root: &Path, path: &Path) -> bool {
    let rel = path.strip_prefix(root).unwrap_or(path);
    rel.components().any(|c| match c {
        std::path::Component::Normal(n) => is_temp_name(&n.to_string_lossy()),
        _ => false,
    })
}

/// Size and modification time of a regular file (None for anything else or a vanished file).
pub fn file_stamp(path: &Path) -> Option<(u64, i64)> {
    let md = std::fs::metadata(path).ok()?;
    if !md.is_file() {
        return None;
    }
    Some((md.len(), mtime_ns(md.modified().ok()?)))
}

pub fn mtime_ns(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_nanos() as i64,
        Err(e) => -(e.duration().as_nanos() as i64),
    }
}

/// How long ago `mtime_ns` was (zero for the future).
pub fn age(mtime_ns: i64) -> Duration {
    let now = mtime_ns_now();
    Duration::from_nanos(now.saturating_sub(mtime_ns).max(0) as u64)
}

pub fn mtime_ns_now() -> i64 {
    mtime_ns(SystemTime::now())
}

/// Every file under `dir` (recursively), skipping ignored names and `skip` (the state folder).
/// Symlinked folders are followed, each real folder once per walk, so a loop such as
/// `up -> ..` or `self -> .` ends.
pub fn walk(root: &Path, dir: &Path, skip: &Path, out: &mut Vec<PathBuf>) {
    Walker::new().walk(dir, &mut |e| match e {
        Entry::Dir(p) if p != dir && (is_ignored(root, p) || p.starts_with(skip)) => Step::Skip,
        Entry::Dir(_) => Step::Continue,
        Entry::File(p) => {
            if !is_ignored(root, p) && !p.starts_with(skip) {
                out.push(p.to_path_buf());
            }
            Step::Continue
        }
        // A folder that vanished or cannot be read: its files come with a later event or walk.
        Entry::Error(..) => Step::Continue,
    });
}

/// File-system events from `notify`, reduced to paths worth a look.
pub struct EventSource {
    _watcher: notify::RecommendedWatcher,
    rx: Receiver<Seen>,
}

/// What the watcher reports.
pub enum Seen {
    Path(PathBuf),
    /// Events were lost (queue overflow): walk everything again.
    Rescan,
}

impl EventSource {
    pub fn start(roots: &[PathBuf]) -> notify::Result<EventSource> {
        use notify::Watcher;
        let (tx, rx) = std::sync::mpsc::channel();
        let mut w =
            notify::recommended_watcher(move |res: notify::Result<notify::Event>| match res {
                Ok(ev) => {
                    if ev.need_rescan() {
                        let _ = tx.send(Seen::Rescan);
                    }
                    if matches!(ev.kind, notify::EventKind::Access(_)) {
                        return;
                    }
                    for p in ev.paths {
                        let _ = tx.send(Seen::Path(p));
                    }
                }
                Err(_) => {
                    let _ = tx.send(Seen::Rescan);
                }
            })?;
        for r in roots {
            w.watch(r, notify::RecursiveMode::Recursive)?;
        }
        Ok(EventSource { _watcher: w, rx })
    }

    /// Waits up to `timeout` for the first event, then takes whatever else is queued.
    pub fn drain(&self, timeout: Duration, max: usize) -> Vec<Seen> {
        let mut out = Vec::new();
        if let Ok(s) = self.rx.recv_timeout(timeout) {
            out.push(s);
            while out.len() < max {
                match self.rx.try_recv() {
                    Ok(s) => out.push(s),
                    Err(_) => break,
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn temporary_and_hidden_names_are_ignored() {
        for n in [
            ".x.dcm",
            "a.part",
            "b.TMP",
            "c.dcm~",
            "~lock",
            "d.crdownload",
        ] {
            assert!(is_temp_name(n), "{n}");
        }
        for n in ["IM0001", "a.dcm", "t1.nii.gz", "part1.dcm"] {
            assert!(!is_temp_name(n), "{n}");
        }
        let root = Path::new("/in");
        assert!(is_ignored(root, Path::new("/in/.staging/IM1")));
        assert!(!is_ignored(root, Path::new("/in/study/IM1")));
    }

    #[cfg(unix)]
    #[test]
    fn a_walk_through_symlink_loops_ends_and_finds_each_file_once() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("incoming");
        let state = root.join("state");
        std::fs::create_dir_all(root.join("study")).unwrap();
        std::fs::create_dir_all(&state).unwrap();
        std::fs::write(root.join("study/IM1"), b"x").unwrap();
        std::fs::write(state.join("journal.sqlite"), b"x").unwrap();
        std::os::unix::fs::symlink("..", root.join("study/up")).unwrap();
        std::os::unix::fs::symlink(".", root.join("self")).unwrap();
        let mut files = Vec::new();
        walk(&root, &root, &state, &mut files);
        assert_eq!(files, [root.join("study/IM1")]);
    }
}
