//! `tensor.write` through the real binary: slices of a real volume stacked into safetensors
//! shards, read back with the safetensors crate, by hand (the format's 8-byte length + JSON
//! header, as any reader does) and, where python3 has `safetensors` and `numpy`, by Python.

use std::path::{Path, PathBuf};
use std::process::Command;

use mindscan_e2e::{data, mindscan, output};
use mindscan_nifti::{VoxelData, read_nifti};
use safetensors::{Dtype, SafeTensors};
use serde_json::Value;

fn q(p: &Path) -> String {
    serde_json::to_string(&p.display().to_string()).unwrap()
}

/// Writes a pipeline reading `inputs`, cutting axial slices, optionally resizing them, into
/// `tensor.write` with `params`.
fn pipeline(
    dir: &Path,
    inputs: &[PathBuf],
    slices: &str,
    resize: Option<&str>,
    sink: &str,
) -> PathBuf {
    let paths: Vec<String> = inputs.iter().map(|p| q(p)).collect();
    let mut yaml = format!(
        "pipeline: tensors\nstages:\n\
         \x20 - id: read\n    use: nifti.read\n    params: {{paths: [{}]}}\n\
         \x20 - id: cut\n    use: volume.slice\n    inputs: [read]\n\
         \x20   params: {{plane: axial, slices: {slices}}}\n",
        paths.join(", ")
    );
    let mut last = "cut";
    if let Some(r) = resize {
        yaml +=
            &format!("  - id: fit\n    use: image.resize\n    inputs: [cut]\n    params: {r}\n");
        last = "fit";
    }
    yaml += &format!("  - id: shards\n    use: tensor.write\n    inputs: [{last}]\n{sink}");
    let p = dir.join("tensors.yaml");
    std::fs::write(&p, yaml).unwrap();
    p
}

fn run(p: &Path) -> (Option<i32>, String) {
    let (code, _, stderr) = output(mindscan().args(["run", "--no-progress"]).arg(p));
    (code, stderr)
}

fn index(out: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(out.join("index.json")).unwrap()).unwrap()
}

/// Axial slice `k` of `anatomical.nii` (int16, 33 x 41 x 25, affine diag(-2, 2, 2): stored
/// LAS) as the display convention cuts it: rows from anterior (j = 40) down, columns from
/// patient left (x smallest: i = 32) to right.
fn expected_axial(k: usize) -> Vec<i16> {
    let vol = read_nifti(&data("nifti/anatomical.nii")).unwrap();
    assert_eq!(vol.dims, [33, 41, 25]);
    assert_eq!(
        [vol.affine[0][0], vol.affine[1][1], vol.affine[2][2]],
        [-2.0, 2.0, 2.0]
    );
    let VoxelData::I16(v) = &vol.data else {
        panic!("anatomical.nii is int16")
    };
    let mut out = Vec::with_capacity(41 * 33);
    for r in 0..41 {
        for c in 0..33 {
            let (i, j) = (32 - c, 40 - r);
            out.push(v[i + 33 * (j + 41 * k)]);
        }
    }
    out
}

/// The header of a safetensors file read by hand: u64 little-endian length, then JSON.
fn header(path: &Path) -> (Value, usize) {
    let bytes = std::fs::read(path).unwrap();
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let h: Value = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
    (h, bytes.len() - 8 - n)
}

/// Python reads the shards with `safetensors.numpy` (what `safetensors.torch.load_file` does,
/// without needing torch): shape, dtype and the sum of every tensor. `None` when python3 has
/// no safetensors / numpy (pip install safetensors numpy).
fn python_reads(files: &[PathBuf]) -> Option<Vec<Value>> {
    let ok = Command::new("python3")
        .args(["-c", "import safetensors.numpy, numpy"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        eprintln!("skipped: Python check (pip install safetensors numpy to run it)");
        return None;
    }
    let script = "import json, sys\nfrom safetensors.numpy import load_file\nfrom safetensors import safe_open\n\
        out = []\n\
        for f in sys.argv[1:]:\n\
        \x20   d = load_file(f)\n\
        \x20   with safe_open(f, 'np') as h:\n\
        \x20       keys = json.loads(h.metadata()['keys'])\n\
        \x20   out.append({'keys': keys, 'tensors': {k: [list(v.shape), str(v.dtype), float(v.astype('float64').sum())] for k, v in d.items()}})\n\
        print(json.dumps(out))\n";
    let o = Command::new("python3")
        .arg("-c")
        .arg(script)
        .args(files)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    Some(serde_json::from_slice(&o.stdout).unwrap())
}

/// Seven axial slices with `shard_items: 3` make shards of 3, 3 and 1 whose rows are the slices
/// (values, order, keys), with the metadata asked for as tensors and an index of it all.
#[test]
fn seven_slices_in_shards_of_three_reopen_as_the_slices() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("shards");
    let sink = format!(
        "    params: {{out: {}, shard_items: 3, meta: [index, {{from: spacing, as: mm}}]}}\n",
        q(&out)
    );
    let p = pipeline(
        dir.path(),
        &[data("nifti/anatomical.nii")],
        "{start: 5, stop: 12}",
        None,
        &sink,
    );
    let (code, stderr) = run(&p);
    assert_eq!(code, Some(0), "{stderr}");

    let ix = index(&out);
    assert_eq!(ix["format"], "mindscan.tensor_shards.v1");
    assert_eq!(ix["total_items"], 7);
    let shards = ix["shards"].as_array().unwrap();
    let files: Vec<&str> = shards.iter().map(|s| s["file"].as_str().unwrap()).collect();
    assert_eq!(
        files,
        [
            "shard-00000.safetensors",
            "shard-00001.safetensors",
            "shard-00002.safetensors"
        ]
    );
    let items: Vec<u64> = shards
        .iter()
        .map(|s| s["items"].as_u64().unwrap())
        .collect();
    assert_eq!(items, [3, 3, 1]);
    assert_eq!(ix["tensors"]["data"]["dtype"], "I16");
    assert_eq!(ix["tensors"]["data"]["shape"], serde_json::json!([41, 33]));
    assert_eq!(ix["tensors"]["index"]["dtype"], "I64");
    assert_eq!(ix["tensors"]["mm"]["shape"], serde_json::json!([2]));

    let mut slice = 5usize;
    for (s, entry) in shards.iter().enumerate() {
        let path = out.join(files[s]);
        let bytes = std::fs::read(&path).unwrap();
        let st = SafeTensors::deserialize(&bytes).unwrap();
        let n = items[s] as usize;
        let d = st.tensor("data").unwrap();
        assert_eq!(d.dtype(), Dtype::I16);
        assert_eq!(d.shape(), [n, 41, 33]);
        let rows: Vec<i16> = bytemuck::pod_collect_to_vec(d.data());
        let idx: Vec<i64> = bytemuck::pod_collect_to_vec(st.tensor("index").unwrap().data());
        let mm: Vec<f64> = bytemuck::pod_collect_to_vec(st.tensor("mm").unwrap().data());
        let (_, meta) = SafeTensors::read_metadata(&bytes).unwrap();
        let keys: Vec<String> =
            serde_json::from_str(&meta.metadata().as_ref().unwrap()["keys"]).unwrap();
        assert_eq!(entry["keys"], serde_json::json!(keys));
        for row in 0..n {
            assert!(keys[row].ends_with(&format!("#axial/{slice}")), "{keys:?}");
            assert_eq!(idx[row], slice as i64);
            assert_eq!(&mm[2 * row..2 * row + 2], [2.0, 2.0]);
            let want = expected_axial(slice);
            assert!(
                rows[row * want.len()..(row + 1) * want.len()] == want[..],
                "slice {slice}"
            );
            slice += 1;
        }
        // By hand: the header a reader in any language sees.
        let (h, data_len) = header(&path);
        assert_eq!(h["data"]["dtype"], "I16");
        assert_eq!(h["data"]["shape"], serde_json::json!([n, 41, 33]));
        assert_eq!(h["__metadata__"]["format"], "mindscan.tensor_shards.v1");
        let end = ["data", "index", "mm"]
            .iter()
            .map(|t| h[t]["data_offsets"][1].as_u64().unwrap() as usize)
            .max()
            .unwrap();
        assert_eq!(end, data_len, "the tensors cover the data exactly");
    }
    assert_eq!(slice, 12);

    let paths: Vec<PathBuf> = files.iter().map(|f| out.join(f)).collect();
    if let Some(py) = python_reads(&paths) {
        for (s, shard) in py.iter().enumerate() {
            let n = items[s];
            assert_eq!(shard["tensors"]["data"][0], serde_json::json!([n, 41, 33]));
            assert_eq!(shard["tensors"]["data"][1], "int16");
            assert_eq!(shard["tensors"]["index"][1], "int64");
            assert_eq!(shard["keys"], shards[s]["keys"]);
            let first = 5 + 3 * s;
            let sum: f64 = (first..first + n as usize)
                .flat_map(expected_axial)
                .map(|v| v as f64)
                .sum();
            assert_eq!(shard["tensors"]["data"][2].as_f64().unwrap(), sum);
        }
    }

    // A second run without append replaces the dataset, never mixing in old shards.
    let sink = format!("    params: {{out: {}, shard_items: 10}}\n", q(&out));
    let p = pipeline(
        dir.path(),
        &[data("nifti/anatomical.nii")],
        "{start: 0, stop: 2}",
        None,
        &sink,
    );
    let (code, stderr) = run(&p);
    assert_eq!(code, Some(0), "{stderr}");
    let ix = index(&out);
    assert_eq!(ix["total_items"], 2);
    assert_eq!(ix["shards"].as_array().unwrap().len(), 1);
    assert!(!out.join("shard-00001.safetensors").exists());
}

/// Two sink workers write shards that never collide; every item lands once; f16 rounds.
#[test]
fn several_workers_write_distinct_shards_holding_every_item_once() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("shards");
    let sink = format!(
        "    workers: 2\n    params: {{out: {}, shard_items: 3, dtype: f16, prefix: slices}}\n",
        q(&out)
    );
    let p = pipeline(
        dir.path(),
        &[data("nifti/anatomical.nii")],
        "all",
        None,
        &sink,
    );
    let (code, stderr) = run(&p);
    assert_eq!(code, Some(0), "{stderr}");
    let ix = index(&out);
    assert_eq!(ix["total_items"], 25);
    let mut keys: Vec<String> = Vec::new();
    for (n, s) in ix["shards"].as_array().unwrap().iter().enumerate() {
        assert_eq!(s["file"], format!("slices-{n:05}.safetensors"));
        let bytes = std::fs::read(out.join(s["file"].as_str().unwrap())).unwrap();
        let st = SafeTensors::deserialize(&bytes).unwrap();
        let d = st.tensor("data").unwrap();
        assert_eq!(d.dtype(), Dtype::F16);
        let rows = s["items"].as_u64().unwrap() as usize;
        assert!((1..=3).contains(&rows));
        assert_eq!(d.shape(), [rows, 41, 33]);
        let h: Vec<u16> = bytemuck::pod_collect_to_vec(d.data());
        for (row, key) in s["keys"].as_array().unwrap().iter().enumerate() {
            let key = key.as_str().unwrap().to_string();
            let k: usize = key.rsplit('/').next().unwrap().parse().unwrap();
            let want = expected_axial(k);
            for (p, &v) in want.iter().enumerate() {
                assert_eq!(
                    h[row * want.len() + p],
                    half::f16::from_f32(v as f32).to_bits()
                );
            }
            keys.push(key);
        }
    }
    keys.sort();
    keys.dedup();
    assert_eq!(keys.len(), 25, "every slice once");
}

/// An item whose tensor has another shape or dtype than the shards is refused with an error
/// naming it and the tensor; with `on_error: skip` the run goes on and the index stays valid.
#[test]
fn an_item_of_another_shape_is_refused_by_name_and_the_rest_written() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("shards");
    let sink = format!("    on_error: skip\n    params: {{out: {}}}\n", q(&out));
    let inputs = [data("nifti/anatomical.nii"), data("nifti/standard.nii.gz")];
    let p = pipeline(dir.path(), &inputs, "middle", None, &sink);
    let (code, stderr) = run(&p);
    assert_eq!(code, Some(3), "one item refused: {stderr}");
    let ix = index(&out);
    assert_eq!(ix["total_items"], 1);
    let kept = ix["shards"][0]["keys"][0].as_str().unwrap();
    let refused = if kept.contains("anatomical") {
        "standard.nii.gz#axial"
    } else {
        "anatomical.nii#axial"
    };
    assert!(stderr.contains(refused), "{stderr}");
    assert!(stderr.contains("tensor 'data' is ["), "{stderr}");
    assert!(stderr.contains("the shards hold"), "{stderr}");

    // The default policy (fail) stops the run with a non-zero exit; complete items are kept.
    let sink = format!("    params: {{out: {}}}\n", q(&out));
    let p = pipeline(dir.path(), &inputs, "middle", None, &sink);
    let (code, stderr) = run(&p);
    assert_eq!(code, Some(1), "{stderr}");
    assert_eq!(index(&out)["total_items"], 1);
}

/// `image.resize` makes slices of differently sized volumes one shape, so they stack.
#[test]
fn resized_slices_of_different_volumes_stack_into_one_shard() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("shards");
    let sink = format!("    params: {{out: {}, meta: [resize.scale]}}\n", q(&out));
    let inputs = [data("nifti/anatomical.nii"), data("nifti/standard.nii.gz")];
    let resize = "{size: [64, 48], mode: fit, interpolation: area}";
    let p = pipeline(dir.path(), &inputs, "middle", Some(resize), &sink);
    let (code, stderr) = run(&p);
    assert_eq!(code, Some(0), "{stderr}");
    let ix = index(&out);
    assert_eq!(ix["total_items"], 2);
    let bytes = std::fs::read(out.join("shard-00000.safetensors")).unwrap();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let d = st.tensor("data").unwrap();
    assert_eq!((d.dtype(), d.shape()), (Dtype::F32, &[2usize, 64, 48][..]));
    assert_eq!(st.tensor("resize.scale").unwrap().shape(), [2, 2]);
}
