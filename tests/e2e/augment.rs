//! The `augment` stage through the real binary: reproducible bytes whatever the worker count,
//! plans in the manifest that regenerate their rows, and clear device errors.

use std::collections::BTreeMap;
use std::path::Path;

use mindscan_e2e::{data, list_files, mindscan, output, workspace_root};
use serde_json::Value;

const TRANSFORMS: &str = "[{rescale: {}}, {flip: {axes: [LR]}}, {affine: {degrees: 12, translation: 4}}, \
     {elastic: {max_displacement: 5}}, {bias_field: {coefficients: 0.3}}, \
     {one_of: {transforms: [{noise: {std: 0.05}}, {noise: {std: 0.05, kind: rician}}]}}, \
     {gamma: {}}]";

fn q(p: &Path) -> String {
    format!("'{}'", p.display())
}

fn pipeline(dir: &Path, workers: u32, augment_params: &str, out: &Path) -> std::path::PathBuf {
    let p = dir.join(format!("augment-{workers}.yaml"));
    std::fs::write(
        &p,
        format!(
            "pipeline: aug\nseed: 99\nstages:\n\
             \x20 - id: read\n    use: nifti.read\n    workers: {workers}\n\
             \x20   params: {{paths: [{}, {}]}}\n\
             \x20 - id: aug\n    use: augment\n    inputs: [read]\n    workers: {workers}\n\
             \x20   params: {augment_params}\n\
             \x20 - id: vols\n    use: nifti.write\n    inputs: [aug]\n    workers: {workers}\n\
             \x20   params: {{out: {}, format: nii, dtype: float32}}\n\
             \x20 - id: cut\n    use: volume.slice\n    inputs: [aug]\n    params: {{plane: axial, slices: middle}}\n\
             \x20 - id: img\n    use: image.write\n    inputs: [cut]\n\
             \x20   params: {{out: {}, format: png, manifest: jsonl}}\n",
            q(&data("nifti/anatomical.nii")),
            q(&workspace_root().join("pipelines/sample-data/t1w_brain_nibabel.nii")),
            q(&out.join("volumes")),
            q(&out.join("images")),
        ),
    )
    .unwrap();
    p
}

fn run(p: &Path) {
    let (code, _, stderr) = output(mindscan().args(["-q", "run", "--no-progress"]).arg(p));
    assert_eq!(code, Some(0), "{stderr}");
}

fn files(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    mindscan_e2e::files_with_bytes(dir, |f| !f.ends_with(".jsonl"))
}

/// The same pipeline seed gives the same bytes with 1 and 4 workers per stage (inputs and
/// variants then arrive in whatever order the threads finish).
#[test]
fn augmented_datasets_are_bit_identical_with_one_and_four_workers() {
    let dir = tempfile::tempdir().unwrap();
    let params = format!("{{variants: 3, device: cpu, transforms: {TRANSFORMS}}}");
    let (a, b) = (dir.path().join("one"), dir.path().join("four"));
    run(&pipeline(dir.path(), 1, &params, &a));
    run(&pipeline(dir.path(), 4, &params, &b));
    let (fa, fb) = (files(&a), files(&b));
    // Two inputs x 3 variants: six volumes and six slices, each a distinct file.
    assert_eq!(
        fa.keys().filter(|f| f.ends_with(".nii")).count(),
        6,
        "{:?}",
        fa.keys()
    );
    assert_eq!(fa.keys().collect::<Vec<_>>(), fb.keys().collect::<Vec<_>>());
    for (name, bytes) in &fa {
        assert!(bytes == &fb[name], "{name} differs between 1 and 4 workers");
    }
    let vols: Vec<&Vec<u8>> = fa
        .iter()
        .filter(|(f, _)| f.ends_with(".nii"))
        .map(|(_, b)| b)
        .collect();
    assert_ne!(vols[0], vols[1], "variants differ from each other");
}

/// A manifest row's `augment` column is a plan; running it through `replay` regenerates the
/// row's image byte for byte.
#[test]
fn a_manifest_row_replays_to_the_same_image() {
    let dir = tempfile::tempdir().unwrap();
    let first = dir.path().join("first");
    let params = format!("{{variants: 2, device: cpu, transforms: {TRANSFORMS}}}");
    run(&pipeline(dir.path(), 2, &params, &first));
    let manifest = std::fs::read_to_string(first.join("images/manifest.jsonl")).unwrap();
    let rows: Vec<Value> = manifest
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rows.len(), 4);
    let row = rows
        .iter()
        .find(|r| {
            r["augment"]["variant"] == 1
                && r["source"].as_str().unwrap().ends_with("anatomical.nii")
        })
        .expect("variant 1 of anatomical.nii");
    let plan = &row["augment"];
    assert!(plan["seed"].as_u64().is_some());
    assert!(!plan["transforms"].as_array().unwrap().is_empty());
    // Replay from a pipeline with another seed: the plan alone decides.
    let again = dir.path().join("again");
    let replay = format!("{{device: cpu, transforms: [], replay: [{plan}]}}");
    let p = pipeline(dir.path(), 1, &replay, &again);
    let yaml = std::fs::read_to_string(&p)
        .unwrap()
        .replace("seed: 99", "seed: 5");
    std::fs::write(&p, yaml).unwrap();
    run(&p);
    let path = row["path"].as_str().unwrap();
    let want = std::fs::read(first.join("images").join(path)).unwrap();
    let got = std::fs::read(again.join("images").join(path)).unwrap();
    assert!(want == got, "replayed {path} differs");
}

/// `device: cuda` on a machine without a usable GPU stops before any item, naming what is
/// missing; `auto` runs on the CPU.
#[test]
fn cuda_without_a_gpu_is_a_clear_error_and_auto_falls_back() {
    if mindscan_cuda_present() {
        println!("skipped: this machine has a GPU");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("o");
    let p = pipeline(
        dir.path(),
        1,
        "{device: cuda, transforms: [{gamma: {}}]}",
        &out,
    );
    let (code, _, stderr) = output(mindscan().args(["-q", "run", "--no-progress"]).arg(&p));
    assert_ne!(code, Some(0));
    assert!(stderr.contains("cuda"), "{stderr}");
    assert!(!out.join("volumes").exists() || list_files(&out.join("volumes")).is_empty());
    let p = pipeline(
        dir.path(),
        1,
        "{device: auto, transforms: [{gamma: {}}]}",
        &out,
    );
    run(&p);
    assert_eq!(list_files(&out.join("volumes")).len(), 2);
}

fn mindscan_cuda_present() -> bool {
    [
        "/usr/lib/x86_64-linux-gnu/libcuda.so.1",
        "/usr/lib64/libcuda.so.1",
    ]
    .iter()
    .any(|p| Path::new(p).exists())
}

/// Slices (2D images) augment too: variants stay in their plane, `keep_original` adds the slice
/// itself, and every image gets a file of its own.
#[test]
fn two_d_slices_are_augmented_in_their_plane() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("png");
    let p = dir.path().join("slices.yaml");
    std::fs::write(
        &p,
        format!(
            "pipeline: aug2d\nseed: 3\nstages:\n\
             \x20 - {{id: read, use: nifti.read, params: {{paths: [{}]}}}}\n\
             \x20 - {{id: cut, use: volume.slice, inputs: [read], params: {{plane: axial, slices: middle}}}}\n\
             \x20 - id: aug\n    use: augment\n    inputs: [cut]\n\
             \x20   params: {{variants: 2, keep_original: true, device: cpu, transforms: \
             [{{rescale: {{}}}}, {{affine: {{degrees: 20, scales: 0.2}}}}, {{elastic: {{}}}}, {{noise: {{std: 0.02}}}}]}}\n\
             \x20 - {{id: img, use: image.write, inputs: [aug], params: {{out: {}, format: png, manifest: jsonl}}}}\n",
            q(&data("nifti/anatomical.nii")),
            q(&out),
        ),
    )
    .unwrap();
    run(&p);
    let pngs: Vec<String> = list_files(&out)
        .into_iter()
        .filter(|f| f.ends_with(".png"))
        .collect();
    assert_eq!(pngs.len(), 3, "{pngs:?}");
    assert!(pngs.iter().any(|f| f.contains("_original")), "{pngs:?}");
    let rows: Vec<Value> = std::fs::read_to_string(out.join("manifest.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    for r in rows.iter().filter(|r| !r["augment"].is_null()) {
        for t in r["augment"]["transforms"].as_array().unwrap() {
            if t["transform"] == "affine" {
                // In-plane only: no rotation about the in-plane axes, no scaling across.
                assert_eq!(t["degrees"][0], 0.0);
                assert_eq!(t["degrees"][1], 0.0);
                assert_eq!(t["scales"][2], 1.0);
            }
        }
    }
    let sizes: Vec<u64> = pngs
        .iter()
        .map(|f| std::fs::metadata(out.join(f)).unwrap().len())
        .collect();
    assert!(sizes.iter().all(|&s| s > 100), "{sizes:?}");
}
