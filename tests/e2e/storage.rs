//! `s3://` inputs and outputs through the real binary and a real S3-compatible server (s3s-fs,
//! from crates.io, on loopback on a free port, its buckets in a temp dir): the same pipeline
//! over a bucket writes what it writes over local folders, byte for byte; large files go up as
//! multipart uploads; a failed upload leaves no object and no staged file, names the object and
//! shows in the exit status; the mirror follows the bucket; credentials never reach the log.
//!
//! Without `s3s-fs` (on PATH, or `$MINDSCAN_S3S_FS`) these tests print "skipped: no s3s-fs"; CI
//! installs it and sets `MINDSCAN_REQUIRE_S3=1`, which turns the skip into a failure.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use mindscan_e2e::{data, free_port, list_files, mindscan, output, wait_for_port};

const ACCESS_KEY: &str = "mindscan-test";
const SECRET_KEY: &str = "s3cr3t-never-logged";

/// An S3 server for one test; buckets are the folders of `root`.
struct S3 {
    child: Child,
    port: u16,
    root: PathBuf,
}

impl S3 {
    fn start(root: &Path) -> Option<S3> {
        let bin = std::env::var_os("MINDSCAN_S3S_FS")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("s3s-fs"));
        if Command::new(&bin)
            .arg("--version")
            .output()
            .map_or(true, |o| !o.status.success())
        {
            assert!(
                std::env::var_os("MINDSCAN_REQUIRE_S3").is_none(),
                "MINDSCAN_REQUIRE_S3 is set but s3s-fs is not installed"
            );
            eprintln!("skipped: no s3s-fs");
            return None;
        }
        let port = free_port();
        std::fs::create_dir_all(root).unwrap();
        let child = Command::new(&bin)
            .args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .args(["--access-key", ACCESS_KEY, "--secret-key", SECRET_KEY])
            .arg(root)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start s3s-fs");
        wait_for_port(port, "s3s-fs");
        Some(S3 {
            child,
            port,
            root: root.to_path_buf(),
        })
    }

    fn bucket(&self, name: &str) -> PathBuf {
        let b = self.root.join(name);
        std::fs::create_dir_all(&b).unwrap();
        b
    }

    /// `mindscan` with this server's endpoint and credentials, and its own cache and staging.
    fn mindscan(&self, work: &Path) -> Command {
        let mut c = mindscan();
        c.env(
            "AWS_ENDPOINT_URL",
            format!("http://127.0.0.1:{}", self.port),
        )
        .env("AWS_ALLOW_HTTP", "true")
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ACCESS_KEY_ID", ACCESS_KEY)
        .env("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
        .env("MINDSCAN_CACHE", work.join("cache"))
        .env("MINDSCAN_STAGING", work.join("staging"));
        c
    }
}

impl Drop for S3 {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn copy_tree(from: &Path, to: &Path) {
    for f in list_files(from) {
        let dst = to.join(&f);
        std::fs::create_dir_all(dst.parent().unwrap()).unwrap();
        std::fs::copy(from.join(&f), dst).unwrap();
    }
}

/// Every file below `dir` with its bytes (the manifests aside: they name their sources).
fn files(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    mindscan_e2e::files_with_bytes(dir, |f| !f.contains("manifest."))
}

/// DICOM series → NIfTI volumes and axial JPGs with a manifest.
fn pipeline(dir: &Path, input: &str, volumes: &str, images: &str) -> PathBuf {
    let y = format!(
        "pipeline: storage\nstages:\n  - id: read\n    use: dicom.read\n    params:\n      paths: [\"{input}\"]\n  - id: volumes\n    use: nifti.write\n    inputs: [read]\n    params:\n      out: \"{volumes}\"\n  - id: window\n    use: intensity.window\n    inputs: [read]\n  - id: slice\n    use: volume.slice\n    inputs: [window]\n    params: {{plane: axial}}\n  - id: images\n    use: image.write\n    inputs: [slice]\n    params:\n      out: \"{images}\"\n"
    );
    let p = dir.join(format!("pipeline-{}.yaml", volumes.len()));
    std::fs::write(&p, y).unwrap();
    p
}

#[test]
fn a_pipeline_over_buckets_writes_what_it_writes_over_folders() {
    let tmp = tempfile::tempdir().unwrap();
    let Some(s3) = S3::start(&tmp.path().join("s3")) else {
        return;
    };
    let series = data("dicom/series/Siemens_Skyra_EPI_mosaic_mr_0003");
    copy_tree(&series, &s3.bucket("scans").join("site-a"));
    s3.bucket("datasets");

    let local = tmp.path().join("local");
    let p = pipeline(
        tmp.path(),
        &series.display().to_string(),
        &local.join("volumes").display().to_string(),
        &local.join("images").display().to_string(),
    );
    let (code, _, stderr) = output(mindscan().args(["run", "--no-progress"]).arg(&p));
    assert_eq!(code, Some(0), "{stderr}");

    let p = pipeline(
        tmp.path(),
        "s3://scans/site-a",
        "s3://datasets/run-1/volumes",
        "s3://datasets/run-1/images",
    );
    let (code, _, stderr) = output(
        s3.mindscan(tmp.path())
            .env("MINDSCAN_LOG", "debug")
            .args(["run", "--no-progress"])
            .arg(&p),
    );
    assert_eq!(code, Some(0), "{stderr}");
    assert!(!stderr.contains(SECRET_KEY), "the secret key was logged");

    let remote = s3.root.join("datasets/run-1");
    let want = files(&local);
    assert!(
        want.keys().any(|f| f.ends_with(".nii.gz")) && want.keys().any(|f| f.ends_with(".jpg")),
        "{:?}",
        want.keys()
    );
    let got = files(&remote);
    assert_eq!(
        got.keys().collect::<Vec<_>>(),
        want.keys().collect::<Vec<_>>()
    );
    for (f, b) in &want {
        assert!(
            got[f] == *b,
            "{f} differs between the folder and the bucket"
        );
    }
    // The manifest went up whole, its rows name the objects, not the local cache.
    let manifest = std::fs::read_to_string(remote.join("images/manifest.csv")).unwrap();
    let rows = manifest.lines().count() - 1;
    let local_rows = std::fs::read_to_string(local.join("images/manifest.csv"))
        .unwrap()
        .lines()
        .count()
        - 1;
    assert_eq!(rows, local_rows);
    assert!(manifest.contains("s3://scans/site-a"), "{manifest}");
    assert!(!manifest.contains("cache"), "{manifest}");
    // Nothing is left staged.
    assert_eq!(
        list_files(&tmp.path().join("staging")),
        Vec::<String>::new()
    );
}

#[test]
fn large_files_go_up_in_parts_and_a_failed_upload_leaves_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let Some(s3) = S3::start(&tmp.path().join("s3")) else {
        return;
    };
    let mni = data("nifti/mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz");
    std::fs::copy(&mni, s3.bucket("templates").join("mni.nii.gz")).unwrap();
    s3.bucket("out");
    let write = |input: &str, out: &str, secret: &str| {
        let y = format!(
            "pipeline: big\nstages:\n  - id: read\n    use: nifti.read\n    params:\n      paths: [\"{input}\"]\n  - id: write\n    use: nifti.write\n    inputs: [read]\n    params:\n      out: \"{out}\"\n      format: nii\n"
        );
        let p = tmp.path().join("big.yaml");
        std::fs::write(&p, y).unwrap();
        output(
            s3.mindscan(tmp.path())
                // The smallest part S3 allows: the uncompressed template takes two.
                .env("MINDSCAN_S3_PART_BYTES", (5 << 20).to_string())
                .env("AWS_SECRET_ACCESS_KEY", secret)
                .args(["run", "--no-progress"])
                .arg(&p),
        )
    };
    let (code, _, stderr) = write("s3://templates/mni.nii.gz", "s3://out/mni", SECRET_KEY);
    assert_eq!(code, Some(0), "{stderr}");
    let object = std::fs::read(s3.root.join("out/mni/mni.nii")).unwrap();
    assert!(
        object.len() > 5 << 20,
        "{} bytes: one part only",
        object.len()
    );
    // The same bytes as a local write of the same file.
    let mni = tmp.path().join("mni.nii.gz");
    std::fs::copy(s3.root.join("templates/mni.nii.gz"), &mni).unwrap();
    let local = tmp.path().join("local");
    let (code, _, stderr) = write(
        &mni.display().to_string(),
        &local.display().to_string(),
        SECRET_KEY,
    );
    assert_eq!(code, Some(0), "{stderr}");
    assert!(std::fs::read(local.join("mni.nii")).unwrap() == object);

    // The server refuses the upload (a wrong secret key: every request's signature fails):
    // the item fails by name, the exit status says so, and neither an object nor a staged
    // file is left.
    let wrong = "wrong-secret-never-logged";
    let (code, _, stderr) = write(&mni.display().to_string(), "s3://out/refused", wrong);
    assert_ne!(code, Some(0), "{stderr}");
    assert!(stderr.contains("s3://out/refused/mni.nii"), "{stderr}");
    assert!(!s3.root.join("out/refused").exists());
    assert_eq!(
        list_files(&tmp.path().join("staging")),
        Vec::<String>::new()
    );
    assert!(!stderr.contains(wrong), "the secret key was logged");
}

#[test]
fn the_mirror_follows_the_bucket() {
    let tmp = tempfile::tempdir().unwrap();
    let Some(s3) = S3::start(&tmp.path().join("s3")) else {
        return;
    };
    let bucket = s3.bucket("nifti");
    for f in ["anatomical.nii", "functional.nii", "standard.nii.gz"] {
        std::fs::copy(data(&format!("nifti/{f}")), bucket.join(f)).unwrap();
    }
    std::fs::write(bucket.join("notes.txt"), b"not a volume").unwrap();
    let run = |out: &Path| {
        let y = format!(
            "pipeline: mirror\nstages:\n  - id: read\n    use: nifti.read\n    params:\n      paths: [\"s3://nifti\"]\n  - id: write\n    use: nifti.write\n    inputs: [read]\n    params:\n      out: \"{}\"\n",
            out.display()
        );
        let p = tmp.path().join("mirror.yaml");
        std::fs::write(&p, y).unwrap();
        let (code, _, stderr) = output(
            s3.mindscan(tmp.path())
                .args(["run", "--no-progress"])
                .arg(&p),
        );
        assert_eq!(code, Some(0), "{stderr}");
        list_files(out)
    };
    assert_eq!(
        run(&tmp.path().join("first")),
        ["anatomical.nii.gz", "functional.nii.gz", "standard.nii.gz"]
    );
    let cached = tmp.path().join("cache/s3/nifti");
    assert!(
        !cached.join("notes.txt").exists(),
        "only what the source reads is fetched"
    );
    // An object removed from the bucket is gone from the next run too.
    std::fs::remove_file(bucket.join("functional.nii")).unwrap();
    assert_eq!(
        run(&tmp.path().join("second")),
        ["anatomical.nii.gz", "standard.nii.gz"]
    );
    assert!(!cached.join("functional.nii").exists());
}
