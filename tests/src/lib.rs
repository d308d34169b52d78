//! Helpers for the end-to-end tests: build and locate the `mindscan` binary and plugin libraries.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

/// The workspace root (parent of this package).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

/// The cargo target folder the tests were built into.
pub fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .map(|p| {
            if p.is_relative() {
                workspace_root().join(p)
            } else {
                p
            }
        })
        .unwrap_or_else(|| workspace_root().join("target"))
}

fn profile_dir() -> PathBuf {
    // Test binaries live in <target>/<profile>/deps.
    std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().and_then(Path::parent).map(Path::to_path_buf))
        .unwrap_or_else(|| target_dir().join("debug"))
}

static BUILT: Mutex<bool> = Mutex::new(false);

/// Builds the workspace's binaries and plugin libraries (once per test process) with the same
/// profile as the tests. Always the whole workspace in one `cargo build`:
/// building single packages (`-p`) unifies dependency features differently, and recompiled
/// half of the dependency tree on every first build of a test run.
pub fn build_workspace() {
    let mut built = BUILT.lock().unwrap_or_else(|p| p.into_inner());
    if *built {
        return;
    }
    let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cmd.current_dir(workspace_root())
        .args(["build", "--quiet", "--workspace"]);
    if profile_dir().file_name().is_some_and(|n| n == "release") {
        cmd.arg("--release");
    }
    // MINDSCAN_E2E_FEATURES=turbojpeg: the tests drive a `mindscan` built with those features.
    if let Some(features) = e2e_features() {
        cmd.arg("--features").arg(
            features
                .split(',')
                .map(|f| format!("mindscan/{}", f.trim()))
                .collect::<Vec<_>>()
                .join(","),
        );
    }
    let status = cmd.status().expect("run cargo build");
    assert!(status.success(), "cargo build --workspace failed");
    *built = true;
}

/// Cargo features of `mindscan` the suite runs against (`MINDSCAN_E2E_FEATURES`, comma-separated).
pub fn e2e_features() -> Option<String> {
    std::env::var("MINDSCAN_E2E_FEATURES")
        .ok()
        .filter(|f| !f.trim().is_empty())
}

/// A `mindscan` command (the binary is built on first use).
pub fn mindscan() -> Command {
    build_workspace();
    let mut c = Command::new(profile_dir().join("mindscan"));
    c.env("MINDSCAN_LOG", "info")
        .env_remove("MINDSCAN_PLUGIN_PATH");
    c
}

/// `cmd` run through a launcher (`prefix`: its program and arguments, e.g. `setpriv ... --` or
/// `unshare ... --`), with `cmd`'s environment and working folder.
pub fn wrapped(prefix: &[&str], cmd: Command) -> Command {
    let mut w = Command::new(prefix[0]);
    w.args(&prefix[1..])
        .arg(cmd.get_program())
        .args(cmd.get_args());
    for (k, v) in cmd.get_envs() {
        match v {
            Some(v) => w.env(k, v),
            None => w.env_remove(k),
        };
    }
    if let Some(dir) = cmd.get_current_dir() {
        w.current_dir(dir);
    }
    w
}

/// Path of a plugin `cdylib` built from `package` whose library is named `lib_name`.
pub fn cdylib(package: &str, lib_name: &str) -> PathBuf {
    build_workspace();
    let file = format!(
        "{}{lib_name}{}",
        std::env::consts::DLL_PREFIX,
        std::env::consts::DLL_SUFFIX
    );
    let path = profile_dir().join(file);
    assert!(path.exists(), "{package} built no {}", path.display());
    path
}

/// A file under tests/data.
pub fn data(rel: &str) -> PathBuf {
    workspace_root().join("tests/data").join(rel)
}

/// Every file below `dir`, relative, sorted.
pub fn list_files(dir: &Path) -> Vec<String> {
    fn walk(base: &Path, d: &Path, out: &mut Vec<String>) {
        if let Ok(rd) = std::fs::read_dir(d) {
            for e in rd.flatten() {
                let p = e.path();
                if p.is_dir() {
                    walk(base, &p, out);
                } else {
                    out.push(p.strip_prefix(base).unwrap_or(&p).display().to_string());
                }
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

/// Every file below `dir` whose relative path `keep` accepts, with its bytes, sorted by path.
pub fn files_with_bytes(
    dir: &Path,
    keep: impl Fn(&str) -> bool,
) -> std::collections::BTreeMap<String, Vec<u8>> {
    list_files(dir)
        .into_iter()
        .filter(|f| keep(f))
        .map(|f| {
            let bytes = std::fs::read(dir.join(&f))
                .unwrap_or_else(|e| panic!("{}: {e}", dir.join(&f).display()));
            (f, bytes)
        })
        .collect()
}

/// The `faulty` test plugin (`test.source`, `test.panic`, `test.fail`, `test.sleep`,
/// `test.slow_sink`).
pub fn faulty_plugin() -> PathBuf {
    cdylib("mindscan-test-plugin-faulty", "mindscan_test_faulty")
}

/// The example third-party plugin (`example.threshold`).
pub fn threshold_plugin() -> PathBuf {
    cdylib("mindscan-example-threshold", "mindscan_example_threshold")
}

/// Runs a command to completion and returns (exit code, stdout, stderr).
pub fn output(cmd: &mut Command) -> (Option<i32>, String, String) {
    let out = cmd.output().expect("run command");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}
pub mod corrupt;

/// A loopback port free at the time of asking (for a test's own server).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind a loopback port")
        .port()
}

/// Waits until something listens on the loopback `port` (a server the test started).
pub fn wait_for_port(port: u16, server: &str) {
    let t0 = std::time::Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            t0.elapsed() < std::time::Duration::from_secs(20),
            "{server} did not start"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}
