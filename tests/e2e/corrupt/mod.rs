//! The corrupt-input suite: about 1,500 damaged copies of the real files in `tests/data`,
//! generated here deterministically (`mindscan_e2e::corrupt`), each fed to the real binary in
//! its own folder under a deadline. Every case must end with an exit status (no signal, no
//! panic, no hang), stay under 1 GiB of peak memory, write nothing outside its output folder,
//! and either convert or fail with the README's status (3/4; `validate`: 2) naming the input.
//! Each family prints its row of the outcome table (`docs/hardening.md`).
#![allow(clippy::collapsible_if)]

use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use mindscan_e2e::corrupt::*;
use mindscan_e2e::{data, mindscan};

mod files;
mod hostile;
mod pipelines;

const DEADLINE: Duration = Duration::from_secs(60);
const RSS_LIMIT_KIB: u64 = 1 << 20;

/// How a case is run; `{in}` / `{out}` in YAML are the case's input and output folders.
#[derive(Clone)]
enum How {
    /// `convert --format nifti -z n` over every input file, each named on the command line.
    Convert,
    /// `convert` over the input folder, with extra arguments.
    ConvertFolder(Vec<&'static str>),
    /// `inspect` of the one input file.
    Inspect,
    /// `validate` of the one input file (a pipeline).
    Validate,
    /// `run` of this pipeline.
    Run(String),
}

#[derive(Clone, Copy, PartialEq)]
enum Expect {
    /// Converted or rejected (naming it), both fine.
    Any,
    /// The damage must be detected.
    Reject,
    /// Some inputs fail, the good ones go through: status 3, these outputs exist, every
    /// damaged file (name starting `bad`) named.
    Mixed(&'static [&'static str]),
    /// Everything goes through (status 0) and these outputs exist.
    Ok(&'static [&'static str]),
    /// A command line mindscan cannot act on: status 2, naming the input.
    Usage,
}

struct Case {
    id: String,
    /// (name as raw bytes, content); written into `in/`.
    files: Vec<(Vec<u8>, Vec<u8>)>,
    /// (link name in `in/`, target).
    links: Vec<(&'static str, &'static str)>,
    how: How,
    expect: Expect,
}

fn case(id: impl Into<String>, name: &str, bytes: Vec<u8>, how: How, expect: Expect) -> Case {
    Case {
        id: id.into(),
        files: vec![(name.as_bytes().to_vec(), bytes)],
        links: vec![],
        how,
        expect,
    }
}

/// Known bugs (reported in docs/hardening.md; none at present): (parts of
/// the case id, `|`-separated, all present; reason). Matching cases still run and are printed
/// with their problem, but do not fail the suite; a known case that passes is not reported.
const KNOWN: &[(&str, &str)] = &[];

fn read(rel: &str) -> Vec<u8> {
    std::fs::read(data(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

/// Runs one case in `root`; returns the problems found.
fn run_case(c: &Case, root: &Path, logs: &Path) -> Vec<String> {
    let work = root.join("a/b");
    let input = work.join("in");
    std::fs::create_dir_all(&input).unwrap();
    let mut names = Vec::new();
    for (name, bytes) in &c.files {
        let name = PathBuf::from(OsString::from_vec(name.clone()));
        std::fs::write(input.join(&name), bytes).unwrap();
        names.push(name);
    }
    for (link, target) in &c.links {
        std::os::unix::fs::symlink(target, input.join(link)).unwrap();
    }
    let mut cmd: Command = mindscan();
    cmd.current_dir(&work).env("MINDSCAN_LOG", "warn");
    match &c.how {
        How::Convert => {
            cmd.args([
                "convert",
                "--no-progress",
                "--format",
                "nifti",
                "-z",
                "n",
                "--out",
                "out",
            ]);
            cmd.args(names.iter().map(|n| Path::new("in").join(n)));
        }
        How::ConvertFolder(extra) => {
            cmd.args(["convert", "--no-progress", "--out", "out"])
                .args(extra)
                .arg("in");
        }
        How::Inspect => {
            cmd.arg("inspect").arg(Path::new("in").join(&names[0]));
        }
        How::Validate => {
            cmd.arg("validate").arg(Path::new("in").join(&names[0]));
        }
        How::Run(yaml) => {
            std::fs::write(work.join("p.yaml"), yaml).unwrap();
            cmd.args(["run", "--no-progress", "p.yaml"]);
        }
    }
    let o = run_watched(cmd, root, "a/b/out", logs, DEADLINE);
    let mut problems = Vec::new();
    if o.timed_out {
        problems.push(format!("hung: killed after {:?}", o.elapsed));
    }
    let Some(code) = o.code else {
        problems.push("ended by a signal (abort or crash)".into());
        return with_stderr(problems, &o);
    };
    if o.stderr.contains("panicked") {
        problems.push("panicked".into());
    }
    if o.peak_rss_kib > RSS_LIMIT_KIB {
        problems.push(format!("peak RSS {} MiB over 1 GiB", o.peak_rss_kib >> 10));
    }
    if !o.escaped.is_empty() {
        problems.push(format!("wrote outside the output folder: {:?}", o.escaped));
    }
    let outputs = mindscan_e2e::list_files(&work.join("out"));
    let named = |n: &Path| o.stderr.contains(&printable_core(&n.to_string_lossy()));
    match (&c.how, c.expect) {
        (How::Validate, _) => {
            if code == 2 && !o.stderr.contains("p.yaml") && !named(&names[0]) {
                problems.push("status 2 without naming the pipeline file".into());
            } else if code != 0 && code != 2 {
                problems.push(format!("validate: status {code}, expected 0 or 2"));
            }
        }
        (How::Inspect, _) => {
            if code != 0 && !named(&names[0]) {
                problems.push(format!("inspect: status {code} without naming the file"));
            }
            if code != 0 && code != 1 {
                problems.push(format!("inspect: status {code}"));
            }
        }
        (_, Expect::Usage) => {
            if code != 2 || !named(&names[0]) {
                problems.push(format!(
                    "status {code}, expected 2 naming {}",
                    names[0].display()
                ));
            }
        }
        (_, Expect::Mixed(good)) | (_, Expect::Ok(good)) => {
            let want = if matches!(c.expect, Expect::Ok(_)) {
                0
            } else {
                3
            };
            if code != want {
                problems.push(format!("status {code}, expected {want}"));
            }
            for g in good {
                if !outputs.iter().any(|p| p.contains(g)) {
                    problems.push(format!(
                        "good input's output {g} missing (have {outputs:?})"
                    ));
                }
            }
            for n in names
                .iter()
                .filter(|n| n.to_string_lossy().starts_with("bad"))
            {
                if !summary_names(&o.stderr, n) {
                    problems.push(format!("summary does not list {}", n.display()));
                }
            }
        }
        (_, expect) => match code {
            0 => {
                if outputs.is_empty() {
                    problems.push("status 0 but no output".into());
                }
                if expect == Expect::Reject {
                    problems.push("status 0: the damage went undetected".into());
                }
            }
            3 | 4 => {
                if let Some(n) = names.iter().find(|n| !named(n)) {
                    if names.len() == 1 || expect == Expect::Reject {
                        problems.push(format!("status {code} without naming {}", n.display()));
                    }
                }
            }
            other => problems.push(format!("status {other}, expected 0, 3 or 4")),
        },
    }
    with_stderr(problems, &o)
}

/// The closing summary (`error: N input(s) failed ...` then `  - path (stage): reason`) lists `n`.
fn summary_names(stderr: &str, n: &Path) -> bool {
    let core = printable_core(&n.to_string_lossy());
    stderr
        .split_once("input(s) failed or were skipped")
        .is_some_and(|(_, list)| {
            list.lines()
                .any(|l| l.starts_with("  - ") && l.contains(&core))
        })
}

fn with_stderr(mut problems: Vec<String>, o: &Outcome) -> Vec<String> {
    if !problems.is_empty() {
        let tail: String = o
            .stderr
            .chars()
            .rev()
            .take(1500)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect();
        problems.push(format!(
            "status {:?}, {:?}, stderr: {tail}",
            o.code, o.elapsed
        ));
    }
    problems
}

static TABLE: Mutex<Vec<String>> = Mutex::new(Vec::new());

/// Runs a family's cases (two at a time), prints its table row, fails on any problem that is
/// not a known bug.
fn run_family(family: &str, cases: Vec<Case>) {
    let tmp = tempfile::tempdir().unwrap();
    let cases_dir = tmp.path().join("cases");
    let logs_dir = tmp.path().join("logs");
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<(usize, Vec<String>)>> = Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for _ in 0..2 {
            s.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::SeqCst);
                    let Some(c) = cases.get(i) else { break };
                    let root = cases_dir.join(format!("{i:04}"));
                    let p = run_case(c, &root, &logs_dir.join(format!("{i:04}")));
                    std::fs::remove_dir_all(&root).ok();
                    results.lock().unwrap().push((i, p));
                }
            });
        }
    });
    // Nothing may appear beside the case folders either (an escape deeper than a/b).
    let stray: Vec<String> = tree(tmp.path())
        .into_iter()
        .filter(|p| {
            !(p == "cases" || p.starts_with("cases/") || p == "logs" || p.starts_with("logs/"))
        })
        .collect();
    let mut results = results.into_inner().unwrap();
    results.sort_by_key(|r| r.0);
    let (mut failed, mut known) = (Vec::new(), Vec::new());
    for (i, problems) in results.iter().filter(|r| !r.1.is_empty()) {
        let id = &cases[*i].id;
        match KNOWN
            .iter()
            .find(|k| k.0.split('|').all(|part| id.contains(part)))
        {
            Some((_, why)) => known.push(format!(
                "{id}: known bug ({why}): {}",
                problems[..problems.len() - 1].join("; ")
            )),
            None => failed.push(format!("{id}: {}", problems.join("; "))),
        }
    }
    let row = format!(
        "| {family} | {} | {} | {} | {} |",
        cases.len(),
        cases.len() - failed.len() - known.len(),
        failed.len(),
        known.len()
    );
    println!("corrupt-suite {row}");
    for k in &known {
        println!("corrupt-suite skipped (known bug): {k}");
    }
    TABLE.lock().unwrap().push(row);
    assert!(
        stray.is_empty(),
        "{family}: files outside every case folder: {stray:?}"
    );
    assert!(
        failed.is_empty(),
        "{family}: {} case(s) failed:\n{}",
        failed.len(),
        failed.join("\n\n")
    );
}

// ---------------------------------------------------------------------------------------------
// NIfTI sources: (file, decompressed bytes, gzip?)

fn nifti_sources() -> Vec<(&'static str, Vec<u8>, bool)> {
    [
        "anatomical.nii",
        "functional.nii",
        "standard.nii.gz",
        "example_nifti2.nii.gz",
        "example4d.nii.gz",
    ]
    .into_iter()
    .map(|n| {
        let raw = read(&format!("nifti/{n}"));
        let gz = n.ends_with(".gz");
        (n, if gz { gunzip(&raw) } else { raw }, gz)
    })
    .collect()
}

fn vox_offset(b: &[u8]) -> usize {
    let k = nifti_kind(b);
    let l = nifti_layout(k.version);
    let f = |r: [u8; 4]| {
        if k.big_endian {
            f32::from_be_bytes(r)
        } else {
            f32::from_le_bytes(r)
        }
    };
    if k.version == 1 {
        f(b[l.vox_offset..l.vox_offset + 4].try_into().unwrap()) as usize
    } else {
        let r: [u8; 8] = b[l.vox_offset..l.vox_offset + 8].try_into().unwrap();
        (if k.big_endian {
            i64::from_be_bytes(r)
        } else {
            i64::from_le_bytes(r)
        }) as usize
    }
}

fn nifti_name(stem: &str, gz: bool) -> String {
    format!("{stem}{}", if gz { ".nii.gz" } else { ".nii" })
}

fn encode(bytes: Vec<u8>, gz: bool) -> Vec<u8> {
    if gz { gzip(&bytes) } else { bytes }
}

fn skip_pipeline(reader: &str) -> String {
    format!(
        "pipeline: t\nstages:\n  - {{id: read, use: {reader}, on_error: skip, params: {{paths: [in]}}}}\n  \
         - {{id: save, use: nifti.write, inputs: [read], on_error: skip, params: {{out: out, format: nii}}}}\n"
    )
}

fn dicom_sources() -> Vec<(&'static str, Vec<u8>)> {
    let ge =
        "dicom/series/GE_MR750_EPI_fMRI_mr_0004/DICOM/axial_epi_fmri_interleaved_i_to_s-00001.dcm";
    [
        "dicom/single/pydicom/MR_small.dcm",
        "dicom/single/pydicom/MR_small_implicit.dcm",
        "dicom/single/pydicom/MR_small_bigendian.dcm",
        "dicom/single/pydicom/MR_small_RLE.dcm",
        "dicom/single/pydicom/MR_small_jp2klossless.dcm",
        "dicom/single/pydicom/CT_small.dcm",
        "dicom/single/pydicom/SC_rgb_jpeg_dcmtk.dcm",
        "dicom/single/dcm_qa_ts/4.dcm",
        ge,
    ]
    .into_iter()
    .map(|p| (p, read(p)))
    .collect()
}

// ---------------------------------------------------------------------------------------------
// DICOM header damage

fn us_bytes(v: u16, be: bool) -> [u8; 2] {
    if be { v.to_be_bytes() } else { v.to_le_bytes() }
}

/// `b` with the value of the top-level element (group, element) overwritten in place by `v`
/// (same length), or None when the file has no such element.
fn overwrite(b: &[u8], group: u16, element: u16, v: &[u8]) -> Option<Vec<u8>> {
    let e = dicom_elements(b)
        .into_iter()
        .find(|e| e.is(group, element))?;
    let mut out = b.to_vec();
    out[e.value_at..e.value_at + v.len().min(e.value_len?)]
        .copy_from_slice(&v[..v.len().min(e.value_len?)]);
    Some(out)
}

/// `b` with a string element's value replaced (or the element inserted in tag order).
fn set_string(b: &[u8], group: u16, element: u16, vr: &[u8; 2], value: &[u8]) -> Vec<u8> {
    let elems = dicom_elements(b);
    if let Some(e) = elems.iter().find(|e| e.is(group, element)) {
        return replace_value(b, &elems, e, value, b' ');
    }
    let at = elems
        .iter()
        .find(|e| e.group != 2 && (e.group, e.element) > (group, element))
        .expect("an element after it");
    let mut v = value.to_vec();
    if v.len() % 2 == 1 {
        v.push(b' ');
    }
    let el = if at.vr_at.is_none() {
        let mut x = group.to_le_bytes().to_vec();
        x.extend(element.to_le_bytes());
        x.extend((v.len() as u32).to_le_bytes());
        x.extend(&v);
        x
    } else if at.big_endian {
        let mut x = group.to_be_bytes().to_vec();
        x.extend(element.to_be_bytes());
        x.extend(vr);
        x.extend((v.len() as u16).to_be_bytes());
        x.extend(&v);
        x
    } else {
        explicit_le(group, element, vr, &v)
    };
    let mut out = b[..at.at].to_vec();
    out.extend(el);
    out.extend(&b[at.at..]);
    out
}

/// The runner itself: a write beside the output folder is seen, and a process past its deadline
/// is killed and reported (so a pass above means something).
#[test]
fn corrupt_runner_sees_an_escape_and_a_hang() {
    let tmp = tempfile::tempdir().unwrap();
    let work = tmp.path().join("a");
    std::fs::create_dir_all(&work).unwrap();
    let mut cmd = Command::new("sh");
    cmd.current_dir(&work)
        .args(["-c", "mkdir -p out && touch out/fine ../escaped"]);
    let logs = tempfile::tempdir().unwrap();
    let o = run_watched(cmd, tmp.path(), "a/out", logs.path(), DEADLINE);
    assert_eq!(o.code, Some(0));
    assert_eq!(o.escaped, ["escaped"], "{o:?}");
    let mut cmd = Command::new("sleep");
    cmd.arg("30");
    let o = run_watched(cmd, &work, "out", logs.path(), Duration::from_millis(300));
    assert!(o.timed_out && o.code.is_none(), "{o:?}");
    assert!(o.elapsed < Duration::from_secs(5), "{o:?}");
}
