//! Replays each fuzz target's inputs on stable: the real files it starts from (`SEEDS`, the
//! list tests/fuzz/run.sh gives libFuzzer) and the inputs fuzzing kept
//! (`tests/fuzz/corpus/<target>/*`, which holds every fixed crash as a regression case).

use std::path::{Path, PathBuf};

/// Seed folders per target, relative to the workspace root.
const SEEDS: &[(&str, &[&str])] = &[
    ("nifti_read", &["tests/data/nifti"]),
    (
        "dicom_file",
        &[
            "tests/data/dicom/single/pydicom",
            "tests/data/dicom/single/dcm_qa_ts",
        ],
    ),
    ("pipeline_yaml", &["pipelines"]),
];

fn files_in(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.map(|e| e.unwrap().path())
                .filter(|p| p.is_file())
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    files
}

#[test]
fn replay_seeds_and_kept_corpus() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    for (name, target) in mindscan_fuzz_targets::TARGETS {
        let seeds = SEEDS.iter().find(|s| s.0 == *name).unwrap().1;
        let mut inputs: Vec<PathBuf> = seeds.iter().flat_map(|d| files_in(&root.join(d))).collect();
        assert!(!inputs.is_empty(), "{name}: no seeds");
        let kept = files_in(&root.join("tests/fuzz/corpus").join(name));
        let n_kept = kept.len();
        inputs.extend(kept);
        for f in &inputs {
            let data = std::fs::read(f).unwrap();
            target(&data);
        }
        println!(
            "{name}: {} seed(s), {n_kept} kept input(s) replayed",
            inputs.len() - n_kept
        );
    }
}
