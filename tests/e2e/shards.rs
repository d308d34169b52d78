//! `mindscan run --shard I/N`: N processes over the same pipeline and the same output folders
//! give exactly what one process gives, each output written by one shard, and
//! `mindscan manifest merge` joins the manifest parts into the single run's manifest.

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use mindscan_e2e::{data, list_files, mindscan, output};

fn q(p: &Path) -> String {
    serde_json::to_string(&p.display().to_string()).unwrap()
}

/// DICOM series of six studies and NIfTI files, to NIfTI volumes and JPG slices with manifests.
fn pipeline(out: &Path) -> String {
    format!(
        "pipeline: shards\nstages:\n  - id: dicom\n    use: dicom.read\n    params:\n      paths: [{dicom}]\n  - id: nifti\n    use: nifti.read\n    params:\n      paths: [{n1}, {n2}, {n3}]\n  - id: volumes\n    use: nifti.write\n    inputs: [dicom, nifti]\n    params:\n      out: {vol}\n      format: nii\n  - id: window\n    use: intensity.window\n    inputs: [dicom, nifti]\n  - id: slice\n    use: volume.slice\n    inputs: [window]\n    params:\n      plane: axial\n  - id: images\n    use: image.write\n    inputs: [slice]\n    params:\n      out: {img}\n      format: jpg\n      manifest: both\n",
        dicom = q(&data("dicom/series")),
        n1 = q(&data("nifti/anatomical.nii")),
        n2 = q(&data("nifti/functional.nii")),
        n3 = q(&data("nifti/standard.nii.gz")),
        vol = q(&out.join("volumes")),
        img = q(&out.join("images")),
    )
}

fn contents(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    mindscan_e2e::files_with_bytes(dir, |_| true)
}

fn sorted_lines(bytes: &[u8], header: bool) -> Vec<String> {
    let text = String::from_utf8(bytes.to_vec()).unwrap();
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    let head = if header {
        lines.remove(0)
    } else {
        String::new()
    };
    lines.sort();
    lines.insert(0, head);
    lines
}

#[test]
fn three_shards_give_the_single_run_with_no_overlap_and_a_merged_manifest() {
    let tmp = tempfile::tempdir().unwrap();
    let single = tmp.path().join("single");
    let split = tmp.path().join("split");
    for (dir, shards) in [(&single, None), (&split, Some(3))] {
        std::fs::create_dir_all(dir).unwrap();
        let file = dir.join("pipeline.yaml");
        std::fs::write(&file, pipeline(dir)).unwrap();
        let runs: Vec<Option<String>> = match shards {
            None => vec![None],
            Some(n) => (0..n).map(|i| Some(format!("{i}/{n}"))).collect(),
        };
        // Output file → (inode, the shard that wrote it). Outputs are renamed into place, so
        // a shard writing a file another already wrote gives it a new inode.
        let mut seen: BTreeMap<String, (u64, Option<String>)> = BTreeMap::new();
        for shard in runs {
            let mut cmd = mindscan();
            cmd.args(["run", "--no-progress"]).arg(&file);
            if let Some(s) = &shard {
                cmd.args(["--shard", s]);
            }
            let (code, _, stderr) = output(&mut cmd);
            assert_eq!(code, Some(0), "{shard:?}: {stderr}");
            let mut added = 0;
            for f in list_files(dir) {
                let ino = std::fs::metadata(dir.join(&f)).unwrap().ino();
                match seen.get(&f) {
                    Some((before, by)) => assert_eq!(
                        *before, ino,
                        "{f}: written by {by:?} and again by {shard:?}"
                    ),
                    None => {
                        seen.insert(f, (ino, shard.clone()));
                        added += 1;
                    }
                }
            }
            assert!(added > 0, "{shard:?} wrote nothing");
        }
        if shards.is_some() {
            let owners: std::collections::BTreeSet<_> =
                seen.values().filter_map(|(_, by)| by.clone()).collect();
            assert_eq!(
                owners.len(),
                3,
                "every shard wrote some of the outputs: {seen:?}"
            );
        }
    }
    // Before merging, the split images folder holds manifest parts, not manifests.
    let images = split.join("images");
    assert!(!images.join("manifest.csv").exists());
    for i in 0..3 {
        assert!(images.join(format!("manifest.shard-{i}-of-3.csv")).exists());
    }
    let (code, stdout, stderr) = output(mindscan().args(["manifest", "merge"]).arg(&images));
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stdout.contains("from 3 shards"), "{stdout}");

    let a = contents(&single);
    let mut b = contents(&split);
    b.retain(|f, _| !f.contains(".shard-"));
    let names = |m: &BTreeMap<String, Vec<u8>>| -> Vec<String> {
        m.keys()
            .filter(|f| !f.starts_with("pipeline"))
            .cloned()
            .collect()
    };
    assert_eq!(names(&a), names(&b), "the same files");
    assert!(names(&a).iter().filter(|f| f.ends_with(".nii")).count() >= 9);
    for (f, bytes) in &a {
        if f.starts_with("pipeline") {
            continue;
        }
        if f.contains("manifest.") {
            // Rows in arrival order in the single run, sorted by path in the merge.
            let header = f.ends_with(".csv");
            assert_eq!(
                sorted_lines(bytes, header),
                sorted_lines(&b[f], header),
                "{f}"
            );
        } else {
            assert!(
                bytes == &b[f],
                "{f} differs between the single and the split run"
            );
        }
    }

    // A merge with a part missing names the shard and leaves the merged manifest alone.
    std::fs::remove_file(images.join("manifest.shard-1-of-3.jsonl")).unwrap();
    let (code, _, stderr) = output(mindscan().args(["manifest", "merge"]).arg(&images));
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("shard(s) 1 are missing"), "{stderr}");
}

#[test]
fn bad_shard_specs_are_refused_before_anything_runs() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("pipeline.yaml");
    std::fs::write(&file, pipeline(tmp.path())).unwrap();
    for (spec, env, says) in [
        ("3/3", None, "0 <= INDEX < COUNT"),
        ("auto", None, "neither SLURM_ARRAY_TASK_ID"),
        (
            "auto",
            Some(("JOB_COMPLETION_INDEX", "1")),
            "MINDSCAN_SHARD_COUNT",
        ),
    ] {
        let mut cmd = mindscan();
        cmd.args(["run", "--no-progress", "--shard", spec])
            .arg(&file);
        cmd.env_remove("SLURM_ARRAY_TASK_ID")
            .env_remove("JOB_COMPLETION_INDEX");
        if let Some((k, v)) = env {
            cmd.env(k, v);
        }
        let (code, _, stderr) = output(&mut cmd);
        assert_eq!(code, Some(2), "{spec}: {stderr}");
        assert!(stderr.contains(says), "{spec}: {stderr}");
        assert!(!tmp.path().join("volumes").exists(), "{spec}: nothing ran");
    }
}

/// docs/deploy/slurm-array.sh, run as Slurm would run array tasks 0, 1 and 2 (no Slurm here:
/// the variables it sets are set by hand), gives the single run's manifest after the last task.
#[test]
fn the_slurm_array_script_runs_as_three_tasks_and_merges() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("images");
    let file = tmp.path().join("pipeline.yaml");
    std::fs::write(
        &file,
        format!(
            "pipeline: slurm\nstages:\n  - id: read\n    use: nifti.read\n    params:\n      paths: [{}]\n  - id: slice\n    use: volume.slice\n    inputs: [read]\n    params:\n      plane: axial\n  - id: write\n    use: image.write\n    inputs: [slice]\n    params:\n      out: {}\n      format: png\n",
            q(&data("nifti")),
            q(&out)
        ),
    )
    .unwrap();
    let binary = mindscan().get_program().to_owned();
    let script = mindscan_e2e::workspace_root().join("docs/deploy/slurm-array.sh");
    for task in 0..3 {
        let (code, stdout, stderr) = output(
            std::process::Command::new("bash")
                .arg(&script)
                .arg(&file)
                .arg(&out)
                .env("MINDSCAN", &binary)
                .env("SLURM_ARRAY_TASK_ID", (10 + task).to_string())
                .env("SLURM_ARRAY_TASK_MIN", "10")
                .env("SLURM_ARRAY_TASK_COUNT", "3")
                .env_remove("JOB_COMPLETION_INDEX"),
        );
        assert_eq!(code, Some(0), "task {task}: {stderr}");
        // Tasks 0 and 1 find parts missing; the last one merges.
        assert_eq!(
            stdout.contains("not every shard is done yet"),
            task < 2,
            "task {task}: {stdout}"
        );
    }
    let merged = std::fs::read_to_string(out.join("manifest.csv")).unwrap();
    let rows = merged.lines().count() - 1;
    let parts: usize = (0..3)
        .map(|i| {
            let p = out.join(format!("manifest.shard-{i}-of-3.csv"));
            std::fs::read_to_string(p).unwrap().lines().count() - 1
        })
        .sum();
    let pngs = list_files(&out)
        .iter()
        .filter(|f| f.ends_with(".png"))
        .count();
    assert!(rows > 100, "{rows} rows");
    assert_eq!((rows, parts), (pngs, pngs));
}
