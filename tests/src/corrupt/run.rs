//! Running one case: a deadline, peak memory from /proc, and the tree before and after.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// What one process did.
#[derive(Debug)]
pub struct Outcome {
    pub code: Option<i32>,
    pub timed_out: bool,
    pub elapsed: Duration,
    /// Peak resident set (VmHWM) seen while polling, in KiB.
    pub peak_rss_kib: u64,
    pub stdout: String,
    pub stderr: String,
    /// Paths (relative to the watched root) created outside the allowed folder.
    pub escaped: Vec<String>,
}

/// Every path below `root` (not following symlinks), relative.
pub fn tree(root: &Path) -> BTreeSet<String> {
    fn walk(base: &Path, d: &Path, out: &mut BTreeSet<String>) {
        let Ok(rd) = std::fs::read_dir(d) else { return };
        for e in rd.flatten() {
            let p = e.path();
            out.insert(
                p.strip_prefix(base)
                    .unwrap_or(&p)
                    .to_string_lossy()
                    .into_owned(),
            );
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                walk(base, &p, out);
            }
        }
    }
    let mut out = BTreeSet::new();
    walk(root, root, &mut out);
    out
}

fn vm_hwm_kib(pid: u32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
}

/// Runs `cmd` with a deadline (killed when it expires), polling its peak memory, with stdout
/// and stderr into files under `logs`; every path new under `root` must lie under `allowed`
/// (relative to `root`).
pub fn run_watched(
    mut cmd: Command,
    root: &Path,
    allowed: &str,
    logs: &Path,
    deadline: Duration,
) -> Outcome {
    let before = tree(root);
    std::fs::create_dir_all(logs).unwrap();
    let (out_path, err_path) = (logs.join("stdout"), logs.join("stderr"));
    cmd.stdin(Stdio::null())
        .stdout(std::fs::File::create(&out_path).unwrap())
        .stderr(std::fs::File::create(&err_path).unwrap());
    let start = Instant::now();
    let mut child = cmd.spawn().expect("spawn mindscan");
    let pid = child.id();
    let mut peak = 0;
    let mut timed_out = false;
    let status = loop {
        if let Some(k) = vm_hwm_kib(pid) {
            peak = peak.max(k);
        }
        if let Some(s) = child.try_wait().expect("wait") {
            break s;
        }
        if start.elapsed() > deadline {
            timed_out = true;
            let _ = child.kill();
            break child.wait().expect("wait after kill");
        }
        std::thread::sleep(Duration::from_millis(3));
    };
    let elapsed = start.elapsed();
    let read =
        |p: &PathBuf| String::from_utf8_lossy(&std::fs::read(p).unwrap_or_default()).into_owned();
    let after = tree(root);
    let prefix = format!("{allowed}/");
    let escaped = after
        .difference(&before)
        .filter(|p| p.as_str() != allowed && !p.starts_with(&prefix))
        .cloned()
        .collect();
    Outcome {
        code: status.code(),
        timed_out,
        elapsed,
        peak_rss_kib: peak,
        stdout: read(&out_path),
        stderr: read(&err_path),
        escaped,
    }
}

/// The part of a file name an error message must show: its longest run of printable
/// characters (names with newlines or backslashes may be printed escaped).
pub fn printable_core(name: &str) -> String {
    name.split(|c: char| c.is_control() || c == '\\' || c == '"')
        .max_by_key(|s| s.len())
        .unwrap_or("")
        .to_string()
}
