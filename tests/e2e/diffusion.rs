//! The diffusion stages through the real binary, with the bundled brain model: synthetic
//! slices with their provenance in the manifest, the same bytes with one or three workers,
//! SDEdit variants that keep the anatomy, training pairs a PyTorch user can load, and clear
//! errors.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use mindscan_e2e::{mindscan, output, workspace_root};
use serde_json::Value;

fn q(p: &Path) -> String {
    format!("'{}'", p.display())
}

fn model() -> PathBuf {
    workspace_root().join("pipelines/models/brain-ddpm-64")
}

fn run(p: &Path) -> String {
    let (code, _, stderr) = output(mindscan().args(["-q", "run", "--no-progress"]).arg(p));
    assert_eq!(code, Some(0), "{stderr}");
    stderr
}

fn synth_pipeline(dir: &Path, workers: u32, sample_params: &str, out: &Path) -> PathBuf {
    let p = dir.join(format!("synth-{workers}.yaml"));
    std::fs::write(
        &p,
        format!(
            "pipeline: synth\nseed: 11\nstages:\n\
             \x20 - id: sample\n    use: diffusion.sample\n    workers: {workers}\n\
             \x20   params: {{model: {}, {sample_params}}}\n\
             \x20 - id: img\n    use: image.write\n    inputs: [sample]\n    workers: {workers}\n\
             \x20   params: {{out: {}, format: png, manifest: jsonl, contact_sheet: true}}\n",
            q(&model()),
            q(out),
        ),
    )
    .unwrap();
    p
}

fn pngs(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    mindscan_e2e::files_with_bytes(dir, |f| f.ends_with(".png"))
}

/// Six samples in batches of two: the same files byte for byte with one and three workers,
/// each row of the manifest says which seed, sampler and weights made it, and the contact
/// sheet tiles them all.
#[test]
fn synthetic_slices_are_reproducible_and_say_how_they_were_made() {
    let dir = tempfile::tempdir().unwrap();
    let params = "count: 6, batch: 2, sampler: ddim, steps: 4, device: cpu, threads: 1";
    let (a, b) = (dir.path().join("one"), dir.path().join("three"));
    run(&synth_pipeline(dir.path(), 1, params, &a));
    run(&synth_pipeline(dir.path(), 3, params, &b));
    let (fa, fb) = (pngs(&a), pngs(&b));
    assert_eq!(fa.len(), 7, "six samples and a sheet: {:?}", fa.keys());
    assert!(
        fa.keys().any(|f| f.ends_with("_sheet.png")),
        "{:?}",
        fa.keys()
    );
    assert_eq!(fa.keys().collect::<Vec<_>>(), fb.keys().collect::<Vec<_>>());
    for (name, bytes) in &fa {
        assert!(bytes == &fb[name], "{name} differs between 1 and 3 workers");
    }
    let samples: Vec<&Vec<u8>> = fa
        .iter()
        .filter(|(f, _)| !f.ends_with("_sheet.png"))
        .map(|(_, b)| b)
        .collect();
    assert_ne!(samples[0], samples[1], "samples differ from each other");

    let rows: Vec<Value> = std::fs::read_to_string(a.join("manifest.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rows.len(), 6);
    let sha = rows[0]["diffusion"]["model_sha256"].as_str().unwrap();
    assert_eq!(sha.len(), 64);
    let mut seeds = std::collections::HashSet::new();
    for r in &rows {
        let d = &r["diffusion"];
        assert_eq!(d["sampler"], "ddim", "{r}");
        assert_eq!(d["steps"], 4, "{r}");
        assert_eq!(d["model_sha256"], sha);
        assert!(d["strength"].is_null());
        seeds.insert(d["seed"].as_u64().unwrap());
    }
    assert_eq!(seeds.len(), 6, "one seed per image");
}

/// The pipeline seed decides: another seed gives other images.
#[test]
fn another_seed_gives_other_samples() {
    let dir = tempfile::tempdir().unwrap();
    let params = "count: 2, batch: 2, steps: 3, device: cpu, threads: 1";
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    run(&synth_pipeline(dir.path(), 1, params, &a));
    let p = synth_pipeline(dir.path(), 1, params, &b);
    let yaml = std::fs::read_to_string(&p)
        .unwrap()
        .replace("seed: 11", "seed: 12");
    std::fs::write(&p, yaml).unwrap();
    run(&p);
    let (fa, fb) = (pngs(&a), pngs(&b));
    let name = fa.keys().find(|f| !f.ends_with("_sheet.png")).unwrap();
    assert_ne!(fa[name], fb[name], "{name} did not change with the seed");
}

/// Configuration mistakes stop the run before any image, naming the problem.
#[test]
fn diffusion_mistakes_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("o");
    for (params, needle) in [
        ("count: 1, device: cuda", "CPU only"),
        ("count: 1, class: 2", "no class embedding"),
        ("count: 1, steps: 5000", "inference steps"),
        ("count: 1, sampler: ddpm, eta: 0.5", "eta applies to ddim"),
        (
            "count: 1, noise_file: /nonexistent/noise.npy",
            "/nonexistent/noise.npy",
        ),
    ] {
        let p = synth_pipeline(dir.path(), 1, params, &out);
        let (code, _, stderr) = output(mindscan().args(["-q", "run", "--no-progress"]).arg(&p));
        assert_ne!(code, Some(0), "{params}");
        assert!(stderr.contains(needle), "{params}: {stderr}");
        assert!(
            !out.exists() || pngs(&out).is_empty(),
            "{params}: wrote images"
        );
    }
    let p = dir.path().join("nomodel.yaml");
    std::fs::write(
        &p,
        "pipeline: x\nstages:\n  - {id: s, use: diffusion.sample, params: {model: /no/such/model, count: 1}}\n\
         \x20 - {id: w, use: image.write, inputs: [s], params: {out: /tmp/never}}\n",
    )
    .unwrap();
    let (code, _, stderr) = output(mindscan().args(["-q", "run", "--no-progress"]).arg(&p));
    assert_ne!(code, Some(0));
    assert!(stderr.contains("/no/such/model"), "{stderr}");
}

/// SDEdit at a low strength keeps the slice's anatomy: every variant correlates with its input
/// far more than a strength-1 sample (a brain from noise) does, and the variants differ.
#[test]
fn img2img_variants_keep_the_anatomy() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("sd");
    let p = dir.path().join("sdedit.yaml");
    std::fs::write(
        &p,
        format!(
            "pipeline: sdedit\nseed: 4\nstages:\n\
             \x20 - {{id: read, use: nifti.read, params: {{paths: [{}]}}}}\n\
             \x20 - {{id: win, use: intensity.window, inputs: [read], params: {{mode: percentile}}}}\n\
             \x20 - {{id: cut, use: volume.slice, inputs: [win], params: {{plane: axial, slices: middle}}}}\n\
             \x20 - {{id: fit, use: image.resize, inputs: [cut], params: {{size: [64, 64], mode: fit}}}}\n\
             \x20 - {{id: sd, use: diffusion.img2img, inputs: [fit], params: {{model: {}, strength: 0.3, variants: 2, steps: 10, intensity: window, device: cpu}}}}\n\
             \x20 - {{id: img, use: image.write, inputs: [sd], params: {{out: {}, format: png, manifest: jsonl}}}}\n\
             \x20 - {{id: orig, use: image.write, inputs: [fit], params: {{out: {}, format: png, manifest: none}}}}\n\
             \x20 - {{id: sd1, use: diffusion.img2img, inputs: [fit], params: {{model: {}, strength: 1.0, variants: 2, steps: 10, intensity: window, device: cpu}}}}\n\
             \x20 - {{id: img1, use: image.write, inputs: [sd1], params: {{out: {}, format: png, manifest: none}}}}\n",
            q(&workspace_root().join("pipelines/sample-data/mni152_t1_brain.nii.gz")),
            q(&model()),
            q(&out),
            q(&dir.path().join("orig")),
            q(&model()),
            q(&dir.path().join("full")),
        ),
    )
    .unwrap();
    run(&p);
    let rows: Vec<Value> = std::fs::read_to_string(out.join("manifest.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rows.len(), 2);
    for r in &rows {
        assert_eq!(r["diffusion"]["strength"], 0.3, "{r}");
    }
    let files = pngs(&out);
    let v: Vec<Vec<f64>> = files.values().map(|b| gray(b)).collect();
    assert_eq!(v.len(), 2);
    assert_ne!(v[0], v[1], "the two variants are the same image");
    let input = gray(pngs(&dir.path().join("orig")).values().next().unwrap());
    // Strength 1 starts from pure noise: a brain, but not this one.
    let full: Vec<Vec<f64>> = pngs(&dir.path().join("full"))
        .values()
        .map(|b| gray(b))
        .collect();
    assert_eq!(full.len(), 2);
    let r_full = full
        .iter()
        .map(|f| pearson(f, &input))
        .fold(f64::MIN, f64::max);
    for variant in &v {
        let r = pearson(variant, &input);
        assert!(
            r > 0.9 && r > r_full + 0.2,
            "strength 0.3 variant vs input r = {r:.3}; strength 1.0: {r_full:.3}"
        );
    }
}

fn gray(png_bytes: &[u8]) -> Vec<f64> {
    let mut reader = png::Decoder::new(std::io::Cursor::new(png_bytes))
        .read_info()
        .unwrap();
    let mut buf = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut buf).unwrap();
    assert_eq!((info.width, info.height), (64, 64));
    buf[..info.buffer_size()]
        .iter()
        .map(|&b| b as f64)
        .collect()
}

fn pearson(a: &[f64], b: &[f64]) -> f64 {
    let n = a.len() as f64;
    let (ma, mb) = (a.iter().sum::<f64>() / n, b.iter().sum::<f64>() / n);
    let (mut sab, mut saa, mut sbb) = (0.0, 0.0, 0.0);
    for (x, y) in a.iter().zip(b) {
        sab += (x - ma) * (y - mb);
        saa += (x - ma) * (x - ma);
        sbb += (y - mb) * (y - mb);
    }
    sab / (saa * sbb).sqrt()
}

/// `pipelines/diffusion-pairs.yaml` as shipped (out folder moved): every row of the shards is a
/// forward-diffusion pair, x_t = sqrt(ᾱ_t)·x₀ + sqrt(1 − ᾱ_t)·ε with ᾱ from MONAI's linear
/// schedule (recomputed here in f64), t in range, x₀ in [-1, 1].
#[test]
fn the_diffusion_pairs_pipeline_writes_consistent_pairs() {
    use safetensors::SafeTensors;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("pairs");
    let (code, _, stderr) = output(
        mindscan()
            .current_dir(workspace_root())
            .args([
                "-q",
                "run",
                "--no-progress",
                "pipelines/diffusion-pairs.yaml",
                "--set",
            ])
            .arg(format!("pairs.out={}", out.display())),
    );
    assert_eq!(code, Some(0), "{stderr}");
    let index: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("index.json")).unwrap()).unwrap();
    let total = index["total_items"].as_u64().unwrap();
    assert!(total >= 200, "{total} pairs");
    let betas: Vec<f64> = (0..1000)
        .map(|i| 1e-4 + (2e-2 - 1e-4) * i as f64 / 999.0)
        .collect();
    let mut ac = Vec::with_capacity(1000);
    let mut prod = 1.0;
    for b in &betas {
        prod *= 1.0 - b;
        ac.push(prod);
    }
    let f32s = |b: &[u8]| -> Vec<f32> {
        b.chunks_exact(4)
            .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
            .collect()
    };
    let mut rows = 0;
    let mut ts = std::collections::HashSet::new();
    for shard in index["shards"].as_array().unwrap() {
        let bytes = std::fs::read(out.join(shard["file"].as_str().unwrap())).unwrap();
        let st = SafeTensors::deserialize(&bytes).unwrap();
        let (xt, eps, x0, t) = (
            st.tensor("x_t").unwrap(),
            st.tensor("noise").unwrap(),
            st.tensor("x_0").unwrap(),
            st.tensor("t").unwrap(),
        );
        let n = shard["items"].as_u64().unwrap() as usize;
        assert_eq!(xt.shape(), &[n, 1, 64, 64]);
        assert_eq!(t.shape(), &[n]);
        let (xt, eps, x0) = (f32s(xt.data()), f32s(eps.data()), f32s(x0.data()));
        let t: Vec<i64> = t
            .data()
            .chunks_exact(8)
            .map(|c| i64::from_le_bytes(c.try_into().unwrap()))
            .collect();
        assert_eq!(t.len(), n);
        for (r, &ti) in t.iter().enumerate() {
            assert!((0..1000).contains(&ti), "t = {ti}");
            ts.insert(ti);
            let (a, b) = (ac[ti as usize].sqrt(), (1.0 - ac[ti as usize]).sqrt());
            for p in r * 4096..(r + 1) * 4096 {
                assert!((-1.0..=1.0).contains(&x0[p]), "x0 {}", x0[p]);
                let want = a * x0[p] as f64 + b * eps[p] as f64;
                assert!(
                    (xt[p] as f64 - want).abs() < 1e-4,
                    "row {r} pixel {p}: x_t {} vs {want}",
                    xt[p]
                );
            }
            rows += 1;
        }
    }
    assert_eq!(rows as u64, total);
    assert!(
        ts.len() > total as usize / 2,
        "timesteps are drawn per pair: {} distinct",
        ts.len()
    );
}

/// `pipelines/synthesize.yaml` as shipped, made shorter with `--set`: PNGs, both manifests with
/// the `diffusion` column, and the contact sheet.
#[test]
fn the_synthesize_pipeline_runs_as_shipped() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("synth");
    let (code, _, stderr) = output(
        mindscan()
            .current_dir(workspace_root())
            .args(["-q", "run", "--no-progress", "pipelines/synthesize.yaml"])
            .args([
                "--set",
                "sample.count=4",
                "--set",
                "sample.steps=5",
                "--set",
            ])
            .arg(format!("images.out={}", out.display())),
    );
    assert_eq!(code, Some(0), "{stderr}");
    let files = pngs(&out);
    assert_eq!(files.len(), 5, "{:?}", files.keys());
    let csv = std::fs::read_to_string(out.join("manifest.csv")).unwrap();
    assert!(
        csv.lines().next().unwrap().ends_with(",augment,diffusion"),
        "{csv}"
    );
    assert_eq!(csv.lines().count(), 5);
    assert!(csv.contains("model_sha256"), "{csv}");
}
