//! The NATS JetStream work queue through the real binary and a real `nats-server` (JetStream on,
//! loopback, a free port, its store in a temp dir): a publisher puts the shipped series on the
//! queue, several worker processes drain it. A worker SIGKILLed in the middle of a series, a
//! server restart, and a poison reference must cost nothing but time: every series comes out
//! once, complete, with the bytes of a one-process batch run; the poison ends in the dead-letter
//! stream with its error.
//!
//! Without `nats-server` these tests print "skipped: no nats-server"; CI installs it and sets
//! `MINDSCAN_REQUIRE_NATS=1`, which turns the skip into a failure.

use std::collections::BTreeMap;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use mindscan_e2e::{data, faulty_plugin, free_port, list_files, mindscan, output, wait_for_port};

fn q(p: &Path) -> String {
    serde_json::to_string(&p.display().to_string()).unwrap()
}

/// A JetStream server for one test.
struct Nats {
    child: Child,
    port: u16,
    store: PathBuf,
}

impl Nats {
    fn start(store: &Path) -> Option<Nats> {
        let port = free_port();
        Nats::start_on(store, port)
    }

    fn start_on(store: &Path, port: u16) -> Option<Nats> {
        let bin = [
            "nats-server",
            "/usr/sbin/nats-server",
            "/usr/bin/nats-server",
        ]
        .into_iter()
        .find(|b| {
            Command::new(b)
                .arg("--version")
                .output()
                .is_ok_and(|o| o.status.success())
        });
        let Some(bin) = bin else {
            assert!(
                std::env::var_os("MINDSCAN_REQUIRE_NATS").is_none(),
                "MINDSCAN_REQUIRE_NATS is set but nats-server is not installed"
            );
            eprintln!("skipped: no nats-server");
            return None;
        };
        std::fs::create_dir_all(store).unwrap();
        let child = Command::new(bin)
            .args(["-js", "-a", "127.0.0.1", "-p", &port.to_string(), "-sd"])
            .arg(store)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start nats-server");
        wait_for_port(port, "nats-server");
        Some(Nats {
            child,
            port,
            store: store.to_path_buf(),
        })
    }

    fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Stops the server hard and starts it again on the same port and store.
    fn restart(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let again = Nats::start_on(&self.store, self.port).unwrap();
        let old = std::mem::replace(self, again);
        std::mem::forget(old);
    }
}

impl Drop for Nats {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

const SERIES: usize = 6;

fn publisher(dir: &Path, nats: &Nats, paths: &str) -> PathBuf {
    let y = format!(
        "pipeline: publish\nstages:\n  - id: scan\n    use: dicom.scan\n    params:\n      paths: [{paths}]\n  - id: publish\n    use: queue.publish\n    inputs: [scan]\n    params:\n      nats: {{url: \"{url}\"}}\n",
        url = nats.url()
    );
    let p = dir.join("publish.yaml");
    std::fs::write(&p, y).unwrap();
    p
}

/// queue.consume → volume.load → (a pause per series, so a kill lands mid-series) → NIfTI.
fn worker(dir: &Path, nats: &Nats, pause_ms: u64, max_deliver: u32) -> PathBuf {
    let y = format!(
        "pipeline: worker\nplugins: [{lib}]\ndead_letter: {dl}\nstages:\n  - id: queue\n    use: queue.consume\n    params:\n      nats: {{url: \"{url}\"}}\n      ack_wait: 2s\n      nak_delay: 100ms\n      max_deliver: {max_deliver}\n      until_empty: true\n  - id: load\n    use: volume.load\n    inputs: [queue]\n    on_error: dead_letter\n  - id: pause\n    use: test.sleep\n    inputs: [load]\n    params: {{every: 1, ms: {pause_ms}}}\n  - id: volumes\n    use: nifti.write\n    inputs: [pause]\n    params:\n      out: {out}\n      format: nii.gz\n",
        lib = q(&faulty_plugin()),
        dl = q(&dir.join("dead-letter.jsonl")),
        url = nats.url(),
        out = q(&dir.join("volumes")),
    );
    let p = dir.join("worker.yaml");
    std::fs::write(&p, y).unwrap();
    p
}

fn start(pipeline: &Path, log: &Path) -> Child {
    mindscan()
        .args(["run", "--no-progress"])
        .arg(pipeline)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .unwrap()
}

fn wait(child: &mut Child, log: &Path, limit: Duration) -> Option<i32> {
    let t0 = Instant::now();
    loop {
        if let Some(s) = child.try_wait().unwrap() {
            return s.code();
        }
        if t0.elapsed() > limit {
            let _ = child.kill();
            panic!(
                "still running after {limit:?}:\n{}",
                std::fs::read_to_string(log).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn publish(dir: &Path, nats: &Nats, paths: &str) {
    let (code, _, stderr) = output(
        mindscan()
            .args(["run", "--no-progress"])
            .arg(publisher(dir, nats, paths)),
    );
    assert_eq!(code, Some(0), "{stderr}");
}

/// What one process writes with `dicom.read` for the same series.
fn batch(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let y = format!(
        "pipeline: batch\nstages:\n  - id: read\n    use: dicom.read\n    params:\n      paths: [{d}]\n  - id: volumes\n    use: nifti.write\n    inputs: [read]\n    params:\n      out: {out}\n      format: nii.gz\n",
        d = q(&data("dicom/series")),
        out = q(&dir.join("volumes")),
    );
    std::fs::create_dir_all(dir).unwrap();
    let p = dir.join("batch.yaml");
    std::fs::write(&p, y).unwrap();
    let (code, _, stderr) = output(mindscan().args(["run", "--no-progress"]).arg(&p));
    assert_eq!(code, Some(0), "{stderr}");
    volumes(dir)
}

/// Finished outputs (temporaries of a killed worker aside).
fn volumes(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let out = dir.join("volumes");
    mindscan_e2e::files_with_bytes(&out, |f| {
        !f.starts_with('.') && !f.contains("/.") && !f.contains(".tmp")
    })
}

fn assert_same(got: &BTreeMap<String, Vec<u8>>, want: &BTreeMap<String, Vec<u8>>) {
    assert_eq!(
        got.keys().collect::<Vec<_>>(),
        want.keys().collect::<Vec<_>>()
    );
    for (f, b) in want {
        if f.ends_with(".json") {
            // Sidecars are text: show the difference.
            assert_eq!(
                String::from_utf8_lossy(&got[f]),
                String::from_utf8_lossy(b),
                "{f} differs from the batch run"
            );
        }
        assert!(&got[f] == b, "{f} differs from the batch run");
    }
}

#[test]
fn three_workers_one_killed_mid_series_give_every_series_once_with_the_batch_bytes() {
    let tmp = tempfile::tempdir().unwrap();
    let Some(nats) = Nats::start(&tmp.path().join("nats")) else {
        return;
    };
    let want = batch(&tmp.path().join("batch"));
    assert!(want.len() >= SERIES, "{:?}", want.keys());
    let dir = tmp.path().join("queue");
    std::fs::create_dir_all(&dir).unwrap();
    publish(&dir, &nats, &q(&data("dicom/series")));
    // Published twice (a watcher replaying after a crash): the duplicate window drops it.
    publish(&dir, &nats, &q(&data("dicom/series")));
    let pipeline = worker(&dir, &nats, 700, 5);
    let logs: Vec<PathBuf> = (0..3).map(|i| dir.join(format!("worker{i}.log"))).collect();
    let mut workers: Vec<Child> = logs.iter().map(|l| start(&pipeline, l)).collect();
    // Kill worker 0 once it holds a series (the pause keeps it from finishing).
    let t0 = Instant::now();
    while !std::fs::read_to_string(&logs[0])
        .unwrap_or_default()
        .contains("took ")
    {
        assert!(
            workers[0].try_wait().unwrap().is_none(),
            "worker 0 ended before taking a series:\n{}",
            std::fs::read_to_string(&logs[0]).unwrap_or_default()
        );
        assert!(t0.elapsed() < Duration::from_secs(60), "no series taken");
        std::thread::sleep(Duration::from_millis(10));
    }
    workers[0].kill().unwrap();
    workers[0].wait().unwrap();
    for (w, log) in workers.iter_mut().zip(&logs).skip(1) {
        assert_eq!(
            wait(w, log, Duration::from_secs(180)),
            Some(0),
            "{}",
            std::fs::read_to_string(log).unwrap()
        );
    }
    let killed = std::fs::read_to_string(&logs[0]).unwrap();
    let survivors: String = logs[1..]
        .iter()
        .map(|l| std::fs::read_to_string(l).unwrap())
        .collect();
    // What worker 0 held was delivered again to a survivor.
    let held: Vec<&str> = killed
        .lines()
        .filter_map(|l| l.split("took ").nth(1))
        .filter_map(|l| l.split(' ').next())
        .collect();
    assert!(!held.is_empty());
    for key in &held {
        assert!(
            survivors.contains(&format!("took {key} (delivery 2)")),
            "{key} was not redelivered:\n{survivors}"
        );
    }
    let took = survivors.matches("took ").count();
    assert!(
        took >= SERIES && took <= SERIES + held.len(),
        "{took} deliveries:\n{survivors}"
    );
    assert_same(&volumes(&dir), &want);
}

#[test]
fn a_server_restart_mid_run_loses_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let Some(mut nats) = Nats::start(&tmp.path().join("nats")) else {
        return;
    };
    let want = batch(&tmp.path().join("batch"));
    let dir = tmp.path().join("queue");
    std::fs::create_dir_all(&dir).unwrap();
    publish(&dir, &nats, &q(&data("dicom/series")));
    let pipeline = worker(&dir, &nats, 400, 5);
    let log = dir.join("worker.log");
    let mut w = start(&pipeline, &log);
    let t0 = Instant::now();
    while !std::fs::read_to_string(&log)
        .unwrap_or_default()
        .contains("took ")
    {
        assert!(t0.elapsed() < Duration::from_secs(60), "no series taken");
        std::thread::sleep(Duration::from_millis(10));
    }
    nats.restart();
    assert_eq!(
        wait(&mut w, &log, Duration::from_secs(180)),
        Some(0),
        "{}",
        std::fs::read_to_string(&log).unwrap()
    );
    assert_same(&volumes(&dir), &want);
}

/// The dead-letter stream's messages, read with `mindscan`'s own client would need a consumer;
/// a second pipeline is simpler: consume the dead-letter stream as a work queue? No: its
/// messages are not references. Read them with the NATS protocol directly instead.
fn dead_letters(nats: &Nats) -> Vec<serde_json::Value> {
    use std::io::{BufRead, BufReader, Write};
    let stream = TcpStream::connect(("127.0.0.1", nats.port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut w = stream.try_clone().unwrap();
    let mut r = BufReader::new(stream);
    let mut line = String::new();
    r.read_line(&mut line).unwrap(); // INFO
    w.write_all(b"CONNECT {\"verbose\":false,\"headers\":true}\r\nSUB _reply 1\r\n")
        .unwrap();
    let mut out = Vec::new();
    for seq in 1.. {
        let req = format!("{{\"seq\":{seq}}}");
        w.write_all(
            format!(
                "PUB $JS.API.STREAM.MSG.GET.MINDSCAN_DEAD _reply {}\r\n{req}\r\n",
                req.len()
            )
            .as_bytes(),
        )
        .unwrap();
        let reply = loop {
            line.clear();
            r.read_line(&mut line).unwrap();
            if line.starts_with("PING") {
                w.write_all(b"PONG\r\n").unwrap();
                continue;
            }
            if let Some(rest) = line.strip_prefix("MSG ") {
                let n: usize = rest.trim().rsplit(' ').next().unwrap().parse().unwrap();
                let mut body = vec![0u8; n + 2];
                std::io::Read::read_exact(&mut r, &mut body).unwrap();
                break serde_json::from_slice::<serde_json::Value>(&body[..n]).unwrap();
            }
        };
        let Some(data) = reply["message"]["data"].as_str() else {
            break;
        };
        out.push(serde_json::from_slice(&b64(data)).unwrap());
    }
    out
}

fn b64(s: &str) -> Vec<u8> {
    let val = |c: u8| match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'+' => 62,
        _ => 63,
    };
    let bytes: Vec<u8> = s.bytes().filter(|&c| c != b'=').collect();
    let mut out = Vec::new();
    for chunk in bytes.chunks(4) {
        let v: Vec<u32> = chunk.iter().map(|&c| u32::from(val(c))).collect();
        let n = v.iter().fold(0u32, |a, &x| (a << 6) | x) << (6 * (4 - v.len()));
        for i in 0..v.len() - 1 {
            out.push((n >> (16 - 8 * i)) as u8);
        }
    }
    out
}

#[test]
fn a_poison_reference_ends_in_the_dead_letter_stream_with_its_error() {
    let tmp = tempfile::tempdir().unwrap();
    let Some(nats) = Nats::start(&tmp.path().join("nats")) else {
        return;
    };
    let dir = tmp.path().join("queue");
    // A series whose files are overwritten after the scan: every decode fails.
    let src = dir.join("incoming/ge");
    std::fs::create_dir_all(&src).unwrap();
    for f in list_files(&data("dicom/series/GE_MR750_EPI_fMRI_mr_0004/DICOM")) {
        std::fs::copy(
            data("dicom/series/GE_MR750_EPI_fMRI_mr_0004/DICOM").join(&f),
            src.join(&f),
        )
        .unwrap();
    }
    publish(&dir, &nats, &q(&src));
    let files = list_files(&src);
    for f in &files {
        std::fs::write(src.join(f), b"overwritten after the scan").unwrap();
    }
    let pipeline = worker(&dir, &nats, 0, 2);
    let log = dir.join("worker.log");
    let mut w = start(&pipeline, &log);
    let code = wait(&mut w, &log, Duration::from_secs(120));
    let text = std::fs::read_to_string(&log).unwrap();
    // Exit 4: every input failed, nothing was converted.
    assert_eq!(code, Some(4), "nothing converted:\n{text}");
    assert!(text.contains("(delivery 2)"), "tried twice:\n{text}");
    let dead = dead_letters(&nats);
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert_eq!(dead[0]["deliveries"], 2);
    let error = dead[0]["error"].as_str().unwrap();
    assert!(
        error.contains("volume.load") && files.iter().any(|f| error.contains(f.as_str())),
        "{error}"
    );
    assert_eq!(dead[0]["reference"]["reference"]["kind"], "series");
    assert!(volumes(&dir).is_empty());
}
