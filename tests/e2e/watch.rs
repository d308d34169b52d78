//! Continuous ingestion through the real binary: a test that plays a scanner exporting into a
//! watched folder, crash tests (SIGKILL at several points, restart, exactly-once outputs), a
//! late-instance test and a bounded soak test with memory readings.
//!
//! The engine runs `watch.folder → nifti.write + window → slice → image.write` with short
//! `settle`/`stable_age` so the tests finish quickly. Completion is read from the watch
//! source's own journal (SQLite), the same file a lab would look at.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use mindscan_e2e::{data, list_files, mindscan};
use mindscan_nifti::read_nifti;

/// Folders of one test: what the "scanner" writes into, and what the engine writes.
struct Site {
    _tmp: tempfile::TempDir,
    root: PathBuf,
    incoming: PathBuf,
    out: PathBuf,
    state: PathBuf,
}

impl Site {
    fn new() -> Site {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().canonicalize().unwrap();
        let s = Site {
            incoming: root.join("incoming"),
            out: root.join("out"),
            state: root.join("state"),
            root,
            _tmp: tmp,
        };
        std::fs::create_dir_all(&s.incoming).unwrap();
        s
    }

    /// Writes the pipeline (a watcher and two decoder workers); `extra` goes into the watch
    /// stage's params.
    fn pipeline(&self, stable_age: &str, jpg: bool, extra: &str) -> PathBuf {
        self.pipeline_with(stable_age, jpg, extra, 3)
    }

    fn pipeline_with(&self, stable_age: &str, jpg: bool, extra: &str, workers: u32) -> PathBuf {
        self.pipeline_full("300ms", stable_age, jpg, extra, workers)
    }

    fn pipeline_full(
        &self,
        settle: &str,
        stable_age: &str,
        jpg: bool,
        extra: &str,
        workers: u32,
    ) -> PathBuf {
        let mut y = format!(
            "pipeline: watch-test
seed: 1
state_dir: {state}
dead_letter: {root}/dead-letter.jsonl
stages:
  - id: watch
    use: watch.folder
    on_error: dead_letter
    workers: {workers}
    params:
      paths: [{incoming}]
      settle: {settle}
      stable_age: {stable_age}
{extra}
  - id: nifti
    use: nifti.write
    inputs: [watch]
    on_error: dead_letter
    params:
      out: {out}/nifti
      format: nii.gz
",
            state = self.state.display(),
            root = self.root.display(),
            incoming = self.incoming.display(),
            out = self.out.display(),
        );
        if jpg {
            y.push_str(&format!(
                "  - id: window
    use: intensity.window
    inputs: [watch]
  - id: slice
    use: volume.slice
    inputs: [window]
    params:
      plane: axial
  - id: jpg
    use: image.write
    inputs: [slice]
    workers: 2
    on_error: dead_letter
    params:
      out: {out}/jpg
      manifest: both
      manifest_append: true
",
                out = self.out.display()
            ));
        }
        let p = self.root.join("pipeline.yaml");
        std::fs::write(&p, y).unwrap();
        p
    }

    fn start(&self, pipeline: &Path, log: &str) -> Child {
        let log = std::fs::File::create(self.root.join(log)).unwrap();
        mindscan()
            .args(["run", "--no-progress"])
            .arg(pipeline)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start mindscan")
    }

    fn log(&self, name: &str) -> String {
        std::fs::read_to_string(self.root.join(name)).unwrap_or_default()
    }

    fn journal(&self) -> Option<rusqlite::Connection> {
        let p = self.state.join("watch/journal.sqlite");
        p.exists()
            .then(|| {
                rusqlite::Connection::open_with_flags(
                    &p,
                    rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
                )
                .ok()
            })
            .flatten()
    }

    /// Waits (hang guard only) until `ready` holds, while the engine runs.
    fn wait_until(&self, what: &str, child: &mut Child, log: &str, ready: impl Fn(&Site) -> bool) {
        let t0 = Instant::now();
        while !ready(self) {
            if let Ok(Some(status)) = child.try_wait() {
                panic!(
                    "mindscan exited ({status}) before {what}:\n{}",
                    self.log(log)
                );
            }
            if t0.elapsed() > Duration::from_secs(120) {
                let _ = child.kill();
                panic!("no {what} after 120 s:\n{}", self.log(log));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn count(&self, sql: &str) -> i64 {
        self.journal()
            .and_then(|c| c.query_row(sql, [], |r| r.get(0)).ok())
            .unwrap_or(0)
    }

    /// Waits (hang guard only) until the engine watches and the journal has `n` series
    /// versions done.
    fn wait_done(&self, n: i64, child: &mut Child, log: &str) {
        let t0 = Instant::now();
        while !self.log(log).contains("INFO watching ") {
            if let Ok(Some(status)) = child.try_wait() {
                panic!(
                    "mindscan exited ({status}) before watching:\n{}",
                    self.log(log)
                );
            }
            assert!(t0.elapsed() < Duration::from_secs(120), "{}", self.log(log));
            std::thread::sleep(Duration::from_millis(20));
        }
        loop {
            let done = self.count("SELECT COUNT(*) FROM series WHERE state = 'done'");
            if done >= n {
                return;
            }
            if let Ok(Some(status)) = child.try_wait() {
                panic!(
                    "mindscan exited ({status}) with {done}/{n} series done:\n{}",
                    self.log(log)
                );
            }
            if t0.elapsed() > Duration::from_secs(300) {
                let _ = child.kill();
                let states: Vec<(String, i64, String)> = self
                    .journal()
                    .map(|c| {
                        let mut st = c
                            .prepare(
                                "SELECT stem, version, state FROM series WHERE state <> 'done'",
                            )
                            .unwrap();
                        st.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
                            .unwrap()
                            .map(|r| r.unwrap())
                            .collect()
                    })
                    .unwrap_or_default();
                let files = self.count("SELECT COUNT(*) FROM files");
                panic!(
                    "{done}/{n} series done after 300 s ({files} files in the journal; not done: {states:?}):\n{}",
                    self.log(log)
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// SIGTERM, then the exit code (the run stops gracefully: 130, as for every interrupted run).
fn stop(child: &mut Child) -> Option<i32> {
    let ok = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill -TERM failed");
    let t0 = Instant::now();
    loop {
        if let Some(s) = child.try_wait().unwrap() {
            return s.code();
        }
        if t0.elapsed() > Duration::from_secs(120) {
            let _ = child.kill();
            panic!("mindscan did not stop within 120 s of SIGTERM");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The DICOM files of one shipped series, sorted.
fn series_files(name: &str) -> Vec<PathBuf> {
    let dir = data(&format!("dicom/series/{name}/DICOM"));
    list_files(&dir)
        .into_iter()
        .filter(|f| f.ends_with(".dcm"))
        .map(|f| dir.join(f))
        .collect()
}

const GE: &str = "GE_MR750_EPI_fMRI_mr_0004";
const MOSAIC: &str = "Siemens_Skyra_EPI_mosaic_mr_0003";
const XA30: &str = "Siemens_PrismaFit_XA30i_5001_anat-T1w_acq-tfl";

/// dims of the dcm2niix reference of a shipped series.
fn reference_dims(name: &str) -> Vec<usize> {
    let dir = data(&format!("dicom/series/{name}/Ref"));
    let f = list_files(&dir)
        .into_iter()
        .find(|f| f.ends_with(".nii.gz"))
        .unwrap();
    read_nifti(&dir.join(f)).unwrap().dims
}

/// How a file reaches the watched folder.
#[derive(Clone, Copy, Debug)]
enum Arrival {
    /// One `cp`-like write.
    Plain,
    /// Written in four chunks with pauses shorter than `settle`.
    Chunks,
    /// Written under a temporary name, then renamed into place.
    Renamed,
}

fn deliver(src: &Path, dst: &Path, how: Arrival) {
    std::fs::create_dir_all(dst.parent().unwrap()).unwrap();
    let bytes = std::fs::read(src).unwrap();
    match how {
        Arrival::Plain => std::fs::write(dst, &bytes).unwrap(),
        Arrival::Chunks => {
            let mut f = std::fs::File::create(dst).unwrap();
            for part in bytes.chunks(bytes.len().div_ceil(4).max(1)) {
                f.write_all(part).unwrap();
                f.flush().unwrap();
                std::thread::sleep(Duration::from_millis(60));
            }
        }
        Arrival::Renamed => {
            let name = dst.file_name().unwrap().to_string_lossy();
            let tmp = dst.with_file_name(format!("{name}.part"));
            std::fs::write(&tmp, &bytes).unwrap();
            std::fs::rename(&tmp, dst).unwrap();
        }
    }
}

/// Files under `dir` whose name marks a temporary or partial file.
fn temporaries(dir: &Path) -> Vec<String> {
    list_files(dir)
        .into_iter()
        .filter(|f| {
            let name = Path::new(f)
                .file_name()
                .unwrap()
                .to_string_lossy()
                .to_string();
            name.starts_with('.') || name.contains(".tmp")
        })
        .collect()
}

/// Manifest rows as (path, volume, plane, index), sorted.
fn manifest_rows(jpg: &Path) -> Vec<(String, String, String, u64)> {
    let text = std::fs::read_to_string(jpg.join("manifest.jsonl")).unwrap_or_default();
    let mut rows: Vec<_> = text
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l)
                .unwrap_or_else(|e| panic!("manifest line is not JSON ({e}): {l}"));
            (
                v["path"].as_str().unwrap().to_string(),
                v["volume"].as_str().unwrap().to_string(),
                v["plane"].as_str().unwrap().to_string(),
                v["index"].as_u64().unwrap(),
            )
        })
        .collect();
    rows.sort();
    rows
}

/// Every output file (manifests aside) with its bytes.
fn outputs(out: &Path) -> BTreeMap<String, Vec<u8>> {
    mindscan_e2e::files_with_bytes(out, |f| !f.contains("manifest."))
}

#[test]
fn a_scanner_exporting_series_gets_each_one_out_once_and_complete() {
    let site = Site::new();
    let pipeline = site.pipeline("1500ms", true, "");
    let mut child = site.start(&pipeline, "run.log");

    // The scanner: three series interleaved file by file, each arriving its own way, into
    // a study folder, a flat folder and a nested one; duplicates and junk on the side.
    let plans = [
        (
            series_files(XA30),
            site.incoming.join("study1/t1"),
            Arrival::Renamed,
        ),
        (series_files(GE), site.incoming.join("flat"), Arrival::Plain),
        (
            series_files(MOSAIC),
            site.incoming.join("flat"),
            Arrival::Chunks,
        ),
    ];
    let longest = plans.iter().map(|p| p.0.len()).max().unwrap();
    for i in 0..longest {
        for (files, dir, how) in &plans {
            if let Some(src) = files.get(i) {
                // File names carry the series so the flat folder has no clashes.
                let name = format!("{}_{}", dir.file_name().unwrap().to_string_lossy(), i);
                let name = format!("{name}_{}", src.file_name().unwrap().to_string_lossy());
                deliver(src, &dir.join(name), *how);
            }
        }
    }
    // Second copies of five GE instances, under other names in another folder.
    for (i, src) in series_files(GE).iter().take(5).enumerate() {
        deliver(
            src,
            &site.incoming.join(format!("resent/dup{i}.dcm")),
            Arrival::Plain,
        );
    }
    std::fs::write(site.incoming.join("flat/README.txt"), "not an image").unwrap();
    std::fs::write(
        site.incoming.join("flat/IM9999.dcm.part"),
        b"never finished",
    )
    .unwrap();

    site.wait_done(3, &mut child, "run.log");
    // Nothing more comes out later (duplicates do not make a new version).
    std::thread::sleep(Duration::from_millis(2500));
    assert_eq!(stop(&mut child), Some(130), "{}", site.log("run.log"));
    let log = site.log("run.log");
    assert!(log.contains("this run: 3 series done, 0 failed"), "{log}");

    assert_eq!(site.count("SELECT COUNT(*) FROM series"), 3, "{log}");
    assert_eq!(
        site.count("SELECT COUNT(*) FROM files WHERE kind = 'duplicate'"),
        5
    );
    assert_eq!(
        site.count("SELECT COUNT(*) FROM files WHERE kind = 'rejected'"),
        0
    );
    assert!(
        !site.root.join("dead-letter.jsonl").exists(),
        "{}",
        std::fs::read_to_string(site.root.join("dead-letter.jsonl")).unwrap_or_default()
    );

    // One NIfTI per series, each as complete as dcm2niix's.
    let nifti_dir = site.out.join("nifti");
    let niis: Vec<String> = list_files(&nifti_dir)
        .into_iter()
        .filter(|f| f.ends_with(".nii.gz"))
        .collect();
    assert_eq!(niis.len(), 3, "{niis:?}");
    // Compared as (sorted spatial dims, volumes): dcm2niix may store the axes in another order.
    let shape = |d: Vec<usize>| {
        let mut xyz = d[..3].to_vec();
        xyz.sort();
        (xyz, d.get(3).copied().unwrap_or(1))
    };
    let mut ours: Vec<_> = niis
        .iter()
        .map(|f| shape(read_nifti(&nifti_dir.join(f)).unwrap().dims))
        .collect();
    let mut want: Vec<_> = [XA30, GE, MOSAIC]
        .iter()
        .map(|s| shape(reference_dims(s)))
        .collect();
    ours.sort();
    want.sort();
    assert_eq!(ours, want, "every slice and volume of every series");

    // Every JPG once in the manifest, and nothing else.
    let jpg = site.out.join("jpg");
    let rows = manifest_rows(&jpg);
    let paths: BTreeSet<&String> = rows.iter().map(|r| &r.0).collect();
    assert_eq!(paths.len(), rows.len(), "a row appears twice");
    let jpgs: BTreeSet<String> = list_files(&jpg)
        .into_iter()
        .filter(|f| f.ends_with(".jpg"))
        .collect();
    assert_eq!(jpgs.iter().collect::<BTreeSet<_>>(), paths);
    let volumes: BTreeSet<&String> = rows.iter().map(|r| &r.1).collect();
    assert_eq!(volumes.len(), 3);
    assert!(
        temporaries(&site.out).is_empty(),
        "{:?}",
        temporaries(&site.out)
    );
}

/// The files of the crash scenario (GE fMRI + Siemens mosaic), with their arrival names.
fn crash_files(site: &Site) -> Vec<(PathBuf, PathBuf)> {
    let mut v = Vec::new();
    for (name, dir) in [(GE, "ge"), (MOSAIC, "mosaic")] {
        for src in series_files(name) {
            let dst = site.incoming.join(dir).join(src.file_name().unwrap());
            v.push((src, dst));
        }
    }
    v
}

#[test]
fn killed_at_any_point_and_restarted_every_series_comes_out_exactly_once() {
    // Reference: the same files, processed without interruption.
    let reference = Site::new();
    for (src, dst) in crash_files(&reference) {
        deliver(&src, &dst, Arrival::Plain);
    }
    let p = reference.pipeline("2s", true, "      once: true");
    let mut c = reference.start(&p, "run.log");
    assert_eq!(
        c.wait().unwrap().code(),
        Some(0),
        "{}",
        reference.log("run.log")
    );
    let want_files = outputs(&reference.out);
    let want_rows = manifest_rows(&reference.out.join("jpg"));
    assert!(want_files.keys().filter(|f| f.ends_with(".nii.gz")).count() == 2);
    assert!(!want_rows.is_empty());

    // Kill points: while files arrive (about the first second), while the series wait to be
    // stable (2 s after the last file), while they are decoded and the sinks write.
    // `stable_age` is long enough that a busy machine cannot pause the copy for that long
    // (which would rightly emit a series early, as a real scanner pause would).
    for (round, kill_ms) in [150u64, 800, 2200, 3250, 3400, 3550]
        .into_iter()
        .enumerate()
    {
        let site = Site::new();
        let p = site.pipeline("2s", true, "");
        let mut child = site.start(&p, "first.log");
        let files = crash_files(&site);
        let copier = std::thread::spawn(move || {
            for (src, dst) in files {
                deliver(&src, &dst, Arrival::Renamed);
                std::thread::sleep(Duration::from_millis(4));
            }
        });
        std::thread::sleep(Duration::from_millis(kill_ms));
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        copier.join().unwrap();

        let mut child = site.start(&p, "second.log");
        site.wait_done(2, &mut child, "second.log");
        assert_eq!(stop(&mut child), Some(130), "{}", site.log("second.log"));
        let what = format!(
            "round {round} (kill after {kill_ms} ms)\n--- first run:\n{}\n--- second run:\n{}",
            site.log("first.log"),
            site.log("second.log")
        );

        assert_eq!(
            site.count("SELECT COUNT(*) FROM series"),
            2,
            "{what}: one version per series"
        );
        assert!(
            temporaries(&site.out).is_empty(),
            "{what}: {:?}",
            temporaries(&site.out)
        );
        assert_eq!(
            site.count("SELECT COUNT(*) FROM series WHERE state <> 'done'"),
            0,
            "{what}"
        );
        let got = outputs(&site.out);
        assert_eq!(
            got.keys().collect::<Vec<_>>(),
            want_files.keys().collect::<Vec<_>>(),
            "{what}"
        );
        for (f, bytes) in &want_files {
            // Sidecars name the source folder, which differs per site.
            if !f.ends_with(".json") {
                assert!(
                    &got[f] == bytes,
                    "{what}: {f} differs from the uninterrupted run"
                );
            }
        }
        assert_eq!(manifest_rows(&site.out.join("jpg")), want_rows, "{what}");
        let second = site.log("second.log");
        eprintln!(
            "round {round}: killed after {kill_ms} ms; restart replayed {} series, removed \
             temporaries: {}",
            second.matches("replaying ").count(),
            second.contains("temporary file(s) left by an interrupted run")
        );
    }
}

/// `unshare` as a container runtime would start the engine: pid 1 of a new pid namespace, with
/// its own /proc, killed with the namespace when the launcher dies.
const AS_PID_1: [&str; 6] = [
    "unshare",
    "--pid",
    "--fork",
    "--mount-proc",
    "--kill-child=SIGKILL",
    "--",
];

/// Sends `signal` to the engine under an `AS_PID_1` launcher (the launcher itself does not
/// pass signals on).
fn signal_pid_1(launcher: &Child, signal: &str) {
    let engine = pid_1_of(launcher).to_string();
    let sent = Command::new("kill")
        .args([signal, &engine])
        .status()
        .unwrap();
    assert!(sent.success(), "kill {signal} {engine}");
}

/// The engine's own pid (seen from here) under an `AS_PID_1` launcher.
fn pid_1_of(launcher: &Child) -> u32 {
    let t0 = Instant::now();
    let children = format!("/proc/{0}/task/{0}/children", launcher.id());
    loop {
        let text = std::fs::read_to_string(&children).unwrap_or_default();
        if let Some(pid) = text.split_whitespace().next() {
            return pid.parse().unwrap();
        }
        assert!(
            t0.elapsed() < Duration::from_secs(30),
            "unshare started nothing"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// In a container the engine is pid 1 on every start. Killed and started again as pid 1, it
/// must take the temporaries the dead pid 1 left for stale (same pid, another start), remove
/// them, emit every series once, and stop on SIGTERM (pid 1 gets no default signal action).
#[test]
fn restarted_as_pid_1_it_removes_what_the_dead_pid_1_left() {
    let available = Command::new(AS_PID_1[0])
        .args(&AS_PID_1[1..])
        .arg("true")
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !available {
        eprintln!("skipped: no pid namespaces here (unshare --pid)");
        return;
    }
    let site = Site::new();
    for (src, dst) in crash_files(&site) {
        deliver(&src, &dst, Arrival::Plain);
    }
    let p = site.pipeline("1s", true, "");
    let start = |log: &str| {
        let mut cmd = mindscan();
        cmd.args(["run", "--no-progress"]).arg(&p);
        mindscan_e2e::wrapped(&AS_PID_1, cmd)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(site.root.join(log)).unwrap())
            .spawn()
            .expect("start mindscan as pid 1")
    };

    let mut first = start("first.log");
    site.wait_done(1, &mut first, "first.log");
    signal_pid_1(&first, "-KILL");
    first.wait().unwrap();
    // What a pid 1 killed between writing and renaming leaves behind: pid 1 again in the next
    // run, with another start time and nonce.
    let stale = site.out.join("nifti/.EPI_PE=AP_3.nii.gz.tmp-1-s1r0-0");
    std::fs::write(&stale, b"torn").unwrap();

    let mut second = start("second.log");
    site.wait_done(2, &mut second, "second.log");
    signal_pid_1(&second, "-TERM");
    let code = second.wait().unwrap().code();
    let what = format!(
        "--- first run:\n{}\n--- second run:\n{}",
        site.log("first.log"),
        site.log("second.log")
    );
    assert_eq!(code, Some(130), "pid 1 stops on SIGTERM\n{what}");
    assert!(!stale.exists(), "{what}");
    assert!(
        site.log("second.log")
            .contains("temporary file(s) left by an interrupted run"),
        "{what}"
    );
    assert!(
        temporaries(&site.out).is_empty(),
        "{:?}\n{what}",
        temporaries(&site.out)
    );
    assert_eq!(site.count("SELECT COUNT(*) FROM series"), 2, "{what}");
    let volumes: Vec<String> = list_files(&site.out.join("nifti"))
        .into_iter()
        .filter(|f| f.ends_with(".nii.gz"))
        .collect();
    assert_eq!(volumes.len(), 2, "{volumes:?}\n{what}");
}

#[test]
fn a_late_instance_makes_a_new_version_and_leaves_the_first_alone() {
    let site = Site::new();
    // One worker: the watcher decodes series itself.
    let pipeline = site.pipeline_with("800ms", false, "", 1);
    let mut child = site.start(&pipeline, "run.log");
    let files = series_files(MOSAIC);
    assert_eq!(files.len(), 2);
    deliver(
        &files[0],
        &site.incoming.join(files[0].file_name().unwrap()),
        Arrival::Plain,
    );
    site.wait_done(1, &mut child, "run.log");
    deliver(
        &files[1],
        &site.incoming.join(files[1].file_name().unwrap()),
        Arrival::Plain,
    );
    site.wait_done(2, &mut child, "run.log");
    assert_eq!(stop(&mut child), Some(130));
    let log = site.log("run.log");
    assert!(log.contains("will be emitted again as version 2"), "{log}");

    let dir = site.out.join("nifti");
    let v1 = read_nifti(&dir.join("EPI_PE=AP_3.nii.gz")).unwrap();
    let v2 = read_nifti(&dir.join("EPI_PE=AP_3_v2.nii.gz")).unwrap();
    assert_eq!(
        v1.dims.get(3).copied().unwrap_or(1),
        1,
        "version 1: the first volume"
    );
    assert_eq!(
        v2.dims,
        reference_dims(MOSAIC),
        "version 2: the whole series"
    );
}

/// `stable_age` runs from the landing of the last file seen, settled or not: an instance that
/// lands a little less than `stable_age` after the previous one, and is still settling when
/// the series would be due, joins the same version. (It used to be counted only once settled,
/// so the real window was `stable_age - settle`: here 5 s, against a gap of 6.5 s.)
#[test]
fn an_instance_landing_just_under_stable_age_after_the_last_joins_its_version() {
    let site = Site::new();
    let pipeline = site.pipeline_full("3s", "8s", false, "", 1);
    let mut child = site.start(&pipeline, "run.log");
    site.wait_done(0, &mut child, "run.log"); // watching
    let files = series_files(MOSAIC);
    assert_eq!(files.len(), 2);
    for (i, f) in files.iter().enumerate() {
        if i > 0 {
            std::thread::sleep(Duration::from_millis(6500));
        }
        deliver(
            f,
            &site.incoming.join(f.file_name().unwrap()),
            Arrival::Plain,
        );
    }
    site.wait_done(1, &mut child, "run.log");
    assert_eq!(stop(&mut child), Some(130));
    let log = site.log("run.log");
    assert_eq!(
        site.count("SELECT COUNT(*) FROM files WHERE kind = 'dicom' AND version = 1"),
        2,
        "both instances in version 1:\n{log}"
    );
    assert_eq!(site.count("SELECT COUNT(*) FROM series"), 1, "{log}");
    let nii = read_nifti(&site.out.join("nifti/EPI_PE=AP_3.nii.gz")).unwrap();
    assert_eq!(nii.dims, reference_dims(MOSAIC), "{log}");
}

/// Version 1 is still being written when a late instance is journaled, and the engine is
/// killed before the late instance's version goes out. After the restart, v1's replay reads
/// only the file v1 was built from, and the late instance comes out as v2. (The replay used to
/// claim every file without a version, so the late instance became part of v1 and no v2 came.)
#[test]
fn killed_between_a_late_instance_and_its_new_version_the_restart_emits_v2() {
    let site = Site::new();
    let files = series_files(MOSAIC);
    // The first instance was there an hour before the start: version 1 goes out at once.
    let first = site.incoming.join(files[0].file_name().unwrap());
    deliver(&files[0], &first, Arrival::Plain);
    std::fs::File::options()
        .write(true)
        .open(&first)
        .unwrap()
        .set_modified(std::time::SystemTime::now() - Duration::from_secs(3600))
        .unwrap();
    // First run: a sink that never finishes v1, and a stable_age that keeps v2 back past the
    // kill.
    let lib = mindscan_e2e::faulty_plugin();
    let stuck = site.root.join("stuck.yaml");
    std::fs::write(
        &stuck,
        format!(
            "pipeline: watch-stuck
state_dir: {state}
plugins: [{lib}]
stages:
  - id: watch
    use: watch.folder
    params: {{paths: [{incoming}], settle: 300ms, stable_age: 60s}}
  - id: stuck
    use: test.slow_sink
    inputs: [watch]
    params: {{delay_ms: 3600000, report: {root}/report.json}}
",
            state = site.state.display(),
            lib = lib.display(),
            incoming = site.incoming.display(),
            root = site.root.display(),
        ),
    )
    .unwrap();
    let mut child = site.start(&stuck, "first.log");
    site.wait_until("version 1 emitted", &mut child, "first.log", |s| {
        s.count("SELECT COUNT(*) FROM series WHERE version = 1 AND state = 'emitted'") == 1
    });
    let late = site.incoming.join(files[1].file_name().unwrap());
    deliver(&files[1], &late, Arrival::Plain);
    site.wait_until(
        "the late instance journaled",
        &mut child,
        "first.log",
        |s| s.count("SELECT COUNT(*) FROM files WHERE kind = 'dicom'") == 2,
    );
    assert_eq!(
        site.count("SELECT COUNT(*) FROM series"),
        1,
        "v2 waits for stable_age:\n{}",
        site.log("first.log")
    );
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();

    let pipeline = site.pipeline_with("1s", false, "", 1);
    let mut child = site.start(&pipeline, "second.log");
    let version_of_late = format!(
        "SELECT COALESCE(version, 0) FROM files WHERE path = '{}'",
        late.display()
    );
    site.wait_until(
        "the late instance in a version",
        &mut child,
        "second.log",
        |s| s.count(&version_of_late) > 0,
    );
    let what = format!(
        "--- first run:\n{}\n--- second run:\n{}",
        site.log("first.log"),
        site.log("second.log")
    );
    assert_eq!(site.count(&version_of_late), 2, "{what}");
    site.wait_done(2, &mut child, "second.log");
    assert_eq!(stop(&mut child), Some(130));
    let dir = site.out.join("nifti");
    let v1 = read_nifti(&dir.join("EPI_PE=AP_3.nii.gz")).unwrap();
    let v2 = read_nifti(&dir.join("EPI_PE=AP_3_v2.nii.gz")).unwrap();
    assert_eq!(
        v1.dims.get(3).copied().unwrap_or(1),
        1,
        "v1: its one instance\n{what}"
    );
    assert_eq!(
        v2.dims,
        reference_dims(MOSAIC),
        "v2: the whole series\n{what}"
    );
}

#[test]
fn polling_alone_finds_series_where_events_never_arrive() {
    let site = Site::new();
    let pipeline = site.pipeline("600ms", false, "      events: false\n      poll: 300ms");
    let mut child = site.start(&pipeline, "run.log");
    site.wait_done(0, &mut child, "run.log"); // watching
    for f in series_files(MOSAIC) {
        deliver(
            &f,
            &site.incoming.join("share/x").join(f.file_name().unwrap()),
            Arrival::Renamed,
        );
    }
    site.wait_done(1, &mut child, "run.log");
    assert_eq!(stop(&mut child), Some(130));
    let nii = read_nifti(&site.out.join("nifti/EPI_PE=AP_3.nii.gz")).unwrap();
    assert_eq!(nii.dims, reference_dims(MOSAIC));
}

#[test]
fn a_stage_failing_with_on_error_fail_stops_the_watch() {
    let site = Site::new();
    let lib = mindscan_e2e::faulty_plugin();
    let p = site.root.join("fail.yaml");
    std::fs::write(
        &p,
        format!(
            "pipeline: watch-fail
state_dir: {state}
plugins: [{lib}]
stages:
  - id: watch
    use: watch.folder
    workers: 3
    params: {{paths: [{incoming}], settle: 200ms, stable_age: 500ms}}
  - id: broken
    use: test.fail
    inputs: [watch]
    on_error: fail
    params: {{every: 1}}
  - id: nifti
    use: nifti.write
    inputs: [broken]
    params: {{out: {out}}}
",
            state = site.state.display(),
            lib = lib.display(),
            incoming = site.incoming.display(),
            out = site.out.display(),
        ),
    )
    .unwrap();
    let mut child = site.start(&p, "run.log");
    site.wait_done(0, &mut child, "run.log"); // watching
    for f in series_files(MOSAIC) {
        deliver(
            &f,
            &site.incoming.join(f.file_name().unwrap()),
            Arrival::Plain,
        );
    }
    // The run ends by itself (hang guard only), as a batch run would, with the stage's error.
    let t0 = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if t0.elapsed() > Duration::from_secs(120) {
            let _ = child.kill();
            panic!(
                "the watch kept running after a fail error:\n{}",
                site.log("run.log")
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let log = site.log("run.log");
    assert!(!status.success(), "{log}");
    assert!(log.contains("deliberate failure"), "{log}");
    // Left `emitted`, so a restart (with the stage fixed) processes it again.
    assert_eq!(
        site.count("SELECT COUNT(*) FROM series WHERE state = 'emitted'"),
        1,
        "{log}"
    );
    assert_eq!(site.count("SELECT COUNT(*) FROM series"), 1, "{log}");
}

/// Resident memory of a process, from /proc (Linux).
fn rss_kib(pid: u32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines()
        .find(|l| l.starts_with("VmRSS:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// Writes `n` one-file series made from a real Siemens mosaic: new Series and SOP Instance
/// UIDs, the rest (pixels, geometry) untouched.
fn make_series(template: &Path, dir: &Path, first: usize, n: usize) {
    use dicom_core::{DataElement, PrimitiveValue, VR};
    use dicom_dictionary_std::tags;
    let base = dicom_object::open_file(template).unwrap();
    std::fs::create_dir_all(dir).unwrap();
    for i in first..first + n {
        let mut obj = base.clone();
        let series = format!("1.2.826.0.1.3680043.10.1234.{}", 1000 + i);
        let sop = format!("{series}.1");
        obj.put(DataElement::new(
            tags::SERIES_INSTANCE_UID,
            VR::UI,
            PrimitiveValue::from(series.as_str()),
        ));
        obj.put(DataElement::new(
            tags::SOP_INSTANCE_UID,
            VR::UI,
            PrimitiveValue::from(sop.as_str()),
        ));
        // Also recomputes the meta group length for the new UID.
        obj.update_meta(|m| m.media_storage_sop_instance_uid = sop.clone());
        let tmp = dir.join(format!(".s{i}.part"));
        obj.write_to_file(&tmp).unwrap();
        std::fs::rename(&tmp, dir.join(format!("s{i}.dcm"))).unwrap();
    }
}

#[test]
fn soak_hundreds_of_series_with_flat_memory() {
    let site = Site::new();
    let pipeline = site.pipeline("300ms", false, "");
    let mut child = site.start(&pipeline, "run.log");
    let template = &series_files(MOSAIC)[0];
    let (batches, per_batch) = (4usize, 75usize);
    let mut readings = Vec::new();
    for b in 0..batches {
        make_series(
            template,
            &site.incoming.join(format!("batch{b}")),
            b * per_batch,
            per_batch,
        );
        site.wait_done(((b + 1) * per_batch) as i64, &mut child, "run.log");
        readings.push(rss_kib(child.id()).unwrap_or(0));
    }
    assert_eq!(stop(&mut child), Some(130));
    let total = batches * per_batch;
    let niis = list_files(&site.out.join("nifti"))
        .into_iter()
        .filter(|f| f.ends_with(".nii.gz"))
        .count();
    assert_eq!(niis, total, "one NIfTI per series");
    assert_eq!(
        site.count("SELECT COUNT(DISTINCT stem) FROM series"),
        total as i64,
        "names are unique across series with the same protocol"
    );
    // Memory after the first batch vs after the last: flat (not growing with the count).
    eprintln!(
        "soak: {total} series; RSS after each batch of {per_batch}: {:?} KiB",
        readings
    );
    let (start, end) = (readings[0], *readings.last().unwrap());
    assert!(start > 0, "no RSS reading");
    assert!(
        end <= start + start / 4 + 4096,
        "RSS grew from {start} KiB to {end} KiB over {total} series"
    );
}

/// The pipeline with `watch.scan` (references) and a `volume.load` stage in front of every
/// stage the watch fed.
fn with_scan_and_load(pipeline: &Path) {
    let y = std::fs::read_to_string(pipeline).unwrap();
    let y = y
        .replace("use: watch.folder", "use: watch.scan")
        .replace("inputs: [watch]", "inputs: [load]")
        .replace(
            "  - id: nifti\n",
            "  - id: load\n    use: volume.load\n    inputs: [watch]\n    workers: 2\n    on_error: dead_letter\n  - id: nifti\n",
        );
    std::fs::write(pipeline, y).unwrap();
}

#[test]
fn watch_scan_and_volume_load_write_what_watch_folder_writes_and_journal_it_done() {
    let mut runs = Vec::new();
    for scan in [false, true] {
        let site = Site::new();
        for name in [GE, MOSAIC] {
            for f in series_files(name) {
                deliver(
                    &f,
                    &site.incoming.join(name).join(f.file_name().unwrap()),
                    Arrival::Plain,
                );
            }
        }
        let pipeline = site.pipeline("300ms", true, "      once: true");
        if scan {
            with_scan_and_load(&pipeline);
        }
        let status = mindscan()
            .args(["run", "--no-progress"])
            .arg(&pipeline)
            .stderr(std::fs::File::create(site.root.join("run.log")).unwrap())
            .status()
            .unwrap();
        assert_eq!(status.code(), Some(0), "{}", site.log("run.log"));
        assert_eq!(
            site.count("SELECT COUNT(*) FROM series WHERE state = 'done'"),
            2,
            "{}",
            site.log("run.log")
        );
        let out = outputs(&site.out);
        assert!(
            out.keys().any(|f| f.ends_with(".nii.gz")),
            "{:?}",
            out.keys()
        );
        runs.push((out, manifest_rows(&site.out.join("jpg")).len()));
    }
    assert_eq!(runs[0].1, runs[1].1);
    assert_eq!(
        runs[0].0.keys().collect::<Vec<_>>(),
        runs[1].0.keys().collect::<Vec<_>>()
    );
    for (f, bytes) in &runs[0].0 {
        assert!(bytes == &runs[1].0[f], "{f} differs");
    }
}

#[test]
fn watch_scan_refuses_decoding_parameters() {
    let site = Site::new();
    let pipeline = site.pipeline("300ms", false, "      once: true\n      lenient: true");
    with_scan_and_load(&pipeline);
    let out = mindscan()
        .args(["run", "--no-progress"])
        .arg(&pipeline)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_ne!(out.status.code(), Some(0));
    assert!(stderr.contains("volume.load parameters"), "{stderr}");
}
