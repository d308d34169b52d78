//! What a run leaves behind when the disk is full or a folder is not its to read or write:
//! every failure names the path and the reason, the exit status says so, the inputs that could
//! be converted are, and no file is torn or left under a temporary name.
//!
//! The disk-full cases write into a small tmpfs (needs the right to mount, as root in a
//! container); the permission cases run the binary as `nobody` through `setpriv` when the tests
//! run as root (root reads and writes everything). Both print "skipped: ..." where the machine
//! does not allow them.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use mindscan_e2e::{data, list_files, mindscan, workspace_root, wrapped};

/// The quickstart's two brains (MNI152 and nibabel's T1w).
fn sample_data() -> PathBuf {
    workspace_root().join("pipelines/sample-data")
}

/// A tmpfs of `bytes` mounted on a fresh folder for the test's life.
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    fn mount(bytes: u64) -> Option<Tmpfs> {
        let dir = tempfile::tempdir().unwrap();
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={bytes}"), "tmpfs"])
            .arg(dir.path())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        ok.then_some(Tmpfs { dir })
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.dir.path()).status();
    }
}

fn convert(inputs: &[&Path], out: &Path, extra: &[&str]) -> Output {
    let mut c = mindscan();
    c.arg("convert").args(inputs).arg("--out").arg(out);
    c.args(["--no-progress"]).args(extra);
    c.output().expect("run mindscan")
}

/// Every file under `dir` with its bytes.
fn files(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    mindscan_e2e::files_with_bytes(dir, |_| true)
}

/// Names that are not finished outputs: temporaries (`.NAME.tmp-...`) and hidden files.
fn temporaries(dir: &Path) -> Vec<String> {
    list_files(dir)
        .into_iter()
        .filter(|f| {
            let name = Path::new(f).file_name().unwrap().to_string_lossy();
            name.starts_with('.') || name.contains(".tmp")
        })
        .collect()
}

/// The six shipped DICOM series converted into a tmpfs that holds about half of what they
/// make: the series that fit are written whole (byte-identical to a run with room, each with
/// its sidecar), the others fail naming their output file and "No space left on device", the
/// exit status is 3 (some inputs failed) or 4 (none converted), and no temporary is left.
#[test]
fn a_full_disk_fails_the_series_that_do_not_fit_and_leaves_no_torn_file() {
    let series = data("dicom/series");
    let room = tempfile::tempdir().unwrap();
    let want_dir = room.path().join("out");
    let o = convert(&[&series], &want_dir, &["--format", "nifti", "-z", "n"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let want = files(&want_dir);
    let total: u64 = want.values().map(|b| b.len() as u64).sum();
    let volumes = want.keys().filter(|f| f.ends_with(".nii")).count();
    assert!(volumes >= 6, "{:?}", want.keys());

    let Some(disk) = Tmpfs::mount(total / 2) else {
        eprintln!("skipped: cannot mount a tmpfs here");
        return;
    };
    let out = disk.path().join("out");
    let o = convert(&[&series], &out, &["--format", "nifti", "-z", "n"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        matches!(o.status.code(), Some(3 | 4)),
        "status {:?}:\n{err}",
        o.status.code()
    );
    assert!(err.contains("No space left on device"), "{err}");
    assert!(err.contains(&out.display().to_string()), "{err}");
    assert!(temporaries(&out).is_empty(), "{:?}", temporaries(&out));

    let got = files(&out);
    let written: Vec<&String> = got.keys().filter(|f| f.ends_with(".nii")).collect();
    assert!(
        written.len() < volumes,
        "half the room cannot hold every series"
    );
    for (f, bytes) in &got {
        if f == "dead-letter.jsonl" {
            continue;
        }
        let whole = want
            .get(f)
            .unwrap_or_else(|| panic!("{f}: not an output of the run"));
        assert!(bytes == whole, "{f}: differs from the run with room");
        // A volume and its sidecar go together.
        if let Some(stem) = f.strip_suffix(".nii") {
            assert!(
                got.contains_key(&format!("{stem}.json")),
                "{f} without its sidecar"
            );
        }
        if let Some(stem) = f.strip_suffix(".json") {
            assert!(
                got.contains_key(&format!("{stem}.nii")),
                "{f} without its volume"
            );
        }
    }
}

/// Slices to JPG with a manifest into a tmpfs too small for all of them: the run fails with
/// the path and the reason, every JPG on disk decodes, and the manifest (when it could be
/// written) lists only images that exist.
#[test]
fn a_full_disk_while_slicing_leaves_whole_images_and_a_truthful_manifest() {
    let mni = sample_data();
    let room = tempfile::tempdir().unwrap();
    let want_dir = room.path().join("out");
    let o = convert(&[&mni], &want_dir, &["--format", "jpg"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let want = files(&want_dir);
    let total: u64 = want.values().map(|b| b.len() as u64).sum();

    let Some(disk) = Tmpfs::mount(total / 3) else {
        eprintln!("skipped: cannot mount a tmpfs here");
        return;
    };
    let out = disk.path().join("out");
    let o = convert(&[&mni], &out, &["--format", "jpg"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        matches!(o.status.code(), Some(1 | 3 | 4)),
        "status {:?}:\n{err}",
        o.status.code()
    );
    assert!(err.contains("No space left on device"), "{err}");
    assert!(temporaries(&out).is_empty(), "{:?}", temporaries(&out));
    let got = files(&out);
    let jpgs: Vec<&String> = got.keys().filter(|f| f.ends_with(".jpg")).collect();
    for f in &jpgs {
        assert!(got[*f] == want[*f], "{f}: differs from the run with room");
    }
    for manifest in got.keys().filter(|f| f.contains("manifest.")) {
        let text = String::from_utf8_lossy(&got[manifest]);
        for line in text.lines().filter(|l| l.contains(".jpg")) {
            let listed = jpgs.iter().any(|j| {
                let name = Path::new(j.as_str()).file_name().unwrap().to_string_lossy();
                line.contains(name.as_ref())
            });
            assert!(
                listed,
                "{manifest} lists an image that is not on disk: {line}"
            );
        }
    }
}

/// Runs `cmd` as an unprivileged user: as `nobody` through `setpriv` when the tests run as
/// root, as is otherwise. None where root cannot drop its rights here.
fn unprivileged(cmd: Command) -> Option<Command> {
    let uid = Command::new("id").arg("-u").output().ok()?;
    if String::from_utf8_lossy(&uid.stdout).trim() != "0" {
        return Some(cmd);
    }
    let drop = [
        "setpriv",
        "--reuid=65534",
        "--regid=65534",
        "--clear-groups",
        "--",
    ];
    let works = Command::new(drop[0])
        .args(&drop[1..])
        .arg("true")
        .status()
        .is_ok_and(|s| s.success());
    works.then(|| wrapped(&drop, cmd))
}

fn chmod(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// A folder the user may enter and read (tempfile makes 0700 folders).
fn shared_tempdir() -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    chmod(tmp.path(), 0o755);
    let root = tmp.path().to_path_buf();
    (tmp, root)
}

fn copy_dir(src: &Path, dst: &Path) {
    for f in list_files(src) {
        let to = dst.join(&f);
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        std::fs::copy(src.join(&f), &to).unwrap();
    }
}

/// One unreadable file in a series and one unreadable folder: each named with "Permission
/// denied" (the folder as a folder), status 3. The series goes out without the file it could
/// not read (as dcm2niix does: nothing says which series an unreadable file belongs to), with
/// the incomplete volume reported; the other series is converted whole.
#[test]
fn unreadable_inputs_are_named_and_the_rest_is_converted() {
    let (_tmp, root) = shared_tempdir();
    let input = root.join("in");
    for name in [
        "Siemens_Skyra_EPI_mosaic_mr_0003",
        "GE_MR750_EPI_fMRI_mr_0004",
    ] {
        copy_dir(
            &data(&format!("dicom/series/{name}/DICOM")),
            &input.join(name),
        );
    }
    // Every folder the walk meets must be world-readable except the one that is not.
    for d in [
        "",
        "Siemens_Skyra_EPI_mosaic_mr_0003",
        "GE_MR750_EPI_fMRI_mr_0004",
    ] {
        chmod(&input.join(d), 0o755);
    }
    let locked_dir = input.join("locked");
    std::fs::create_dir(&locked_dir).unwrap();
    std::fs::copy(
        data("dicom/series/Siemens_Skyra_EPI_mosaic_mr_0003/DICOM").join(
            list_files(&data("dicom/series/Siemens_Skyra_EPI_mosaic_mr_0003/DICOM"))[0].clone(),
        ),
        locked_dir.join("a.dcm"),
    )
    .unwrap();
    chmod(&locked_dir, 0o700);
    let ge = input.join("GE_MR750_EPI_fMRI_mr_0004");
    let first_dcm = list_files(&ge).into_iter().find(|f| f.ends_with(".dcm"));
    let unreadable = ge.join(first_dcm.unwrap());
    chmod(&unreadable, 0o600);

    let out = root.join("out");
    std::fs::create_dir(&out).unwrap();
    chmod(&out, 0o777);
    let mut cmd = mindscan();
    cmd.args(["convert", "--no-progress", "--format", "nifti"])
        .arg(&input)
        .arg("--out")
        .arg(&out);
    let Some(mut cmd) = unprivileged(cmd) else {
        eprintln!("skipped: cannot run as an unprivileged user here");
        return;
    };
    let o = cmd.output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(3), "{err}");
    assert!(err.contains("Permission denied"), "{err}");
    assert!(err.contains(&unreadable.display().to_string()), "{err}");
    let folder_named = format!(
        "cannot list folder {}: Permission denied",
        locked_dir.display()
    );
    assert!(err.contains(&folder_named), "{err}");
    assert!(err.contains("incomplete volume"), "{err}");
    let dims = |name: &str| mindscan_nifti::read_nifti(&out.join(name)).unwrap().dims;
    assert_eq!(
        dims("EPI_PE=AP_3.nii.gz"),
        [72, 72, 5, 2],
        "the mosaic, whole"
    );
    let ge = dims("DCM2NIIX_regression_test_4.nii.gz");
    assert_eq!(ge.len(), 4, "{ge:?}");
    assert!(
        ge[3] < 10,
        "the GE series without its unreadable file: {ge:?}"
    );
    assert!(temporaries(&out).is_empty(), "{:?}", temporaries(&out));
}

/// A pipeline whose sink folder is read-only for the user: the item errors name the folder and
/// "Permission denied", the run's status is not 0, and the folder stays empty.
#[test]
fn a_read_only_output_folder_fails_the_writes_with_its_path() {
    let (_tmp, root) = shared_tempdir();
    let out = root.join("read-only");
    std::fs::create_dir(&out).unwrap();
    chmod(&out, 0o555);
    let yaml = root.join("p.yaml");
    std::fs::write(
        &yaml,
        format!(
            "pipeline: t\nstages:\n  - {{id: read, use: nifti.read, params: {{paths: [{}]}}}}\n  \
             - {{id: save, use: nifti.write, inputs: [read], on_error: skip, params: {{out: {}}}}}\n",
            serde_json::to_string(&sample_data().display().to_string()).unwrap(),
            serde_json::to_string(&out.display().to_string()).unwrap(),
        ),
    )
    .unwrap();
    chmod(&yaml, 0o644);
    let mut cmd = mindscan();
    cmd.args(["run", "--no-progress"]).arg(&yaml);
    let Some(mut cmd) = unprivileged(cmd) else {
        eprintln!("skipped: cannot run as an unprivileged user here");
        return;
    };
    let o = cmd.output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "{err}");
    assert!(err.contains("Permission denied"), "{err}");
    assert!(err.contains(&out.display().to_string()), "{err}");
    assert!(list_files(&out).is_empty(), "{:?}", list_files(&out));
}
