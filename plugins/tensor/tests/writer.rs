//! The shard writer behind `tensor.write`, driven with items directly: shard boundaries, the
//! index, refused items, workers, `append`, and the files read back with the safetensors crate.

use std::path::Path;

use mindscan_plugin_tensor::index::Index;
use mindscan_plugin_tensor::layout::OutDType;
use mindscan_plugin_tensor::writer::{Config, ShardWriter, Written};
use mindscan_sdk::{Item, Tensor, kinds};
use safetensors::{Dtype, SafeTensors};

fn config(out: &Path, shard_items: usize) -> Config {
    Config {
        out: out.to_path_buf(),
        tensors: None,
        meta: vec![("diffusion.t".into(), "t".into())],
        shard_items,
        prefix: "shard".into(),
        dtype: OutDType::Keep,
        append: false,
    }
}

/// A diffusion-pair-like item: `x_t` and `noise` [1, 2, 3] float32 filled with `n`, `diffusion.t`.
fn pair(n: usize) -> Item {
    let mut item = Item::new("diffusion.pair", &format!("vol#axial/{n}"))
        .with_tensor("x_t", Tensor::from_vec(vec![n as f32; 6], &[1, 2, 3]))
        .with_tensor("noise", Tensor::from_vec(vec![-(n as f32); 6], &[1, 2, 3]));
    item.meta.set("diffusion.t", 10 * n);
    item
}

fn open(cfg: Config) -> ShardWriter {
    ShardWriter::open(cfg).unwrap().0
}

fn read(path: &Path) -> (Vec<u8>, Vec<String>) {
    let bytes = std::fs::read(path).unwrap();
    let (_, meta) = SafeTensors::read_metadata(&bytes).unwrap();
    let keys = serde_json::from_str(&meta.metadata().as_ref().unwrap()["keys"]).unwrap();
    (bytes, keys)
}

#[test]
fn seven_items_in_shards_of_three_make_three_three_and_one() {
    let dir = tempfile::tempdir().unwrap();
    let w = open(config(dir.path(), 3));
    let mut written = Vec::new();
    for n in 0..7 {
        written.extend(w.push(0, 1, &pair(n)).unwrap());
        // The index lists complete shards only, at every moment.
        let ix = Index::read(dir.path()).unwrap().unwrap();
        assert_eq!(ix.total_items, 3 * ((n as u64 + 1) / 3));
    }
    written.extend(w.finish().unwrap());
    let files: Vec<(&str, usize)> = written.iter().map(|w| (w.file.as_str(), w.items)).collect();
    assert_eq!(
        files,
        [
            ("shard-00000.safetensors", 3),
            ("shard-00001.safetensors", 3),
            ("shard-00002.safetensors", 1)
        ]
    );
    let ix = Index::read(dir.path()).unwrap().unwrap();
    assert_eq!(ix.total_items, 7);
    assert_eq!(ix.tensors["x_t"].shape, [1, 2, 3]);
    assert_eq!(ix.tensors["t"].dtype, Dtype::I64);
    assert_eq!(ix.tensors["t"].shape, Vec::<usize>::new());
    for (s, entry) in ix.shards.iter().enumerate() {
        let (bytes, keys) = read(&dir.path().join(&entry.file));
        assert_eq!(keys, entry.keys);
        let st = SafeTensors::deserialize(&bytes).unwrap();
        let x = st.tensor("x_t").unwrap();
        assert_eq!(x.shape(), [entry.items, 1, 2, 3]);
        let x: Vec<f32> = bytemuck::pod_collect_to_vec(x.data());
        let t: Vec<i64> = bytemuck::pod_collect_to_vec(st.tensor("t").unwrap().data());
        for row in 0..entry.items {
            let n = 3 * s + row;
            assert_eq!(keys[row], format!("vol#axial/{n}"));
            assert_eq!(&x[6 * row..6 * row + 6], [n as f32; 6]);
            assert_eq!(t[row], 10 * n as i64);
        }
    }
    // No temporary is left behind.
    let names: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(names.iter().all(|n| !n.starts_with('.')), "{names:?}");
}

#[test]
fn an_item_of_another_shape_is_refused_by_name_and_the_shard_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let w = open(config(dir.path(), 2));
    w.push(0, 1, &pair(0)).unwrap();
    let mut odd = pair(1);
    odd.set_tensor("noise", Tensor::from_vec(vec![0f32; 8], &[1, 2, 4]));
    let e = format!("{:#}", w.push(0, 1, &odd).unwrap_err());
    assert!(e.contains("item 'vol#axial/1'"), "{e}");
    assert!(e.contains("tensor 'noise' is [1, 2, 4] float32"), "{e}");
    assert!(e.contains("the shards hold [1, 2, 3] F32"), "{e}");
    let mut other_dtype = pair(2);
    other_dtype.set_tensor("x_t", Tensor::from_vec(vec![0f64; 6], &[1, 2, 3]));
    let e = format!("{:#}", w.push(0, 1, &other_dtype).unwrap_err());
    assert!(e.contains("tensor 'x_t' is [1, 2, 3] float64"), "{e}");
    let mut extra = pair(3);
    extra.set_tensor("x_0", Tensor::from_vec(vec![0f32; 6], &[1, 2, 3]));
    let e = format!("{:#}", w.push(0, 1, &extra).unwrap_err());
    assert!(e.contains("has tensors [noise, x_0, x_t]"), "{e}");
    let mut no_t = pair(4);
    no_t.meta.0.remove("diffusion.t");
    let e = format!("{:#}", w.push(0, 1, &no_t).unwrap_err());
    assert!(e.contains("has no metadata 'diffusion.t'"), "{e}");
    // The shard was not touched by the refusals: the next good item completes it.
    let done = w.push(0, 1, &pair(5)).unwrap().expect("the shard is full");
    assert_eq!(done.items, 2);
    let (bytes, keys) = read(&dir.path().join(&done.file));
    assert_eq!(keys, ["vol#axial/0", "vol#axial/5"]);
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let noise: Vec<f32> = bytemuck::pod_collect_to_vec(st.tensor("noise").unwrap().data());
    assert_eq!(noise, [[0.0; 6], [-5.0; 6]].concat());
}

#[test]
fn each_worker_fills_its_own_shard_and_names_never_collide() {
    let dir = tempfile::tempdir().unwrap();
    let w = std::sync::Arc::new(open(config(dir.path(), 4)));
    let threads: Vec<_> = (0..3)
        .map(|worker| {
            let w = w.clone();
            std::thread::spawn(move || {
                (0..10)
                    .flat_map(|i| w.push(worker, 3, &pair(worker * 100 + i)).unwrap())
                    .collect::<Vec<Written>>()
            })
        })
        .collect();
    let mut written: Vec<Written> = threads
        .into_iter()
        .flat_map(|t| t.join().unwrap())
        .collect();
    written.extend(w.finish().unwrap());
    // 10 items per worker: 4 + 4 + 2 each.
    assert_eq!(written.len(), 9);
    let mut files: Vec<String> = written.iter().map(|w| w.file.clone()).collect();
    files.sort();
    let want: Vec<String> = (0..9)
        .map(|n| format!("shard-{n:05}.safetensors"))
        .collect();
    assert_eq!(files, want);
    let ix = Index::read(dir.path()).unwrap().unwrap();
    assert_eq!(ix.total_items, 30);
    for s in &ix.shards {
        // A shard holds one worker's items.
        let workers: std::collections::BTreeSet<usize> = s
            .keys
            .iter()
            .map(|k| k.rsplit('/').next().unwrap().parse::<usize>().unwrap() / 100)
            .collect();
        assert!(workers.len() <= 1, "{:?}", s.keys);
    }
}

#[test]
fn a_new_run_replaces_the_shards_and_append_continues_them() {
    let dir = tempfile::tempdir().unwrap();
    let w = open(config(dir.path(), 2));
    for n in 0..5 {
        w.push(0, 1, &pair(n)).unwrap();
    }
    w.finish().unwrap();
    drop(w);
    assert!(dir.path().join("shard-00002.safetensors").exists());

    let mut cfg = config(dir.path(), 2);
    cfg.append = true;
    let (w, notes) = ShardWriter::open(cfg.clone()).unwrap();
    assert!(notes.is_empty(), "{notes:?}");
    w.push(0, 1, &pair(5)).unwrap();
    let done = w.push(0, 1, &pair(6)).unwrap().unwrap();
    assert_eq!(done.file, "shard-00003.safetensors");
    // The schema of the earlier run holds: another shape is refused.
    let mut odd = pair(7);
    odd.set_tensor("x_t", Tensor::from_vec(vec![0f32; 4], &[1, 2, 2]));
    assert!(w.push(0, 1, &odd).is_err());
    drop(w);
    assert_eq!(Index::read(dir.path()).unwrap().unwrap().total_items, 7);

    // Appending other tensors to the folder is refused before anything is written.
    let mut other = cfg.clone();
    other.tensors = Some(vec!["x_0".into()]);
    let e = ShardWriter::open(other).err().unwrap().to_string();
    assert!(e.contains("index.json: the shards there hold"), "{e}");

    let (w, notes) = ShardWriter::open(config(dir.path(), 2)).unwrap();
    assert!(notes[0].contains("removed 4 shard(s)"), "{notes:?}");
    assert_eq!(Index::read(dir.path()).unwrap().unwrap().total_items, 0);
    assert!(!dir.path().join("shard-00000.safetensors").exists());
    // Two writers cannot share a folder.
    let e = ShardWriter::open(config(dir.path(), 2))
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("another tensor.write stage writes there"), "{e}");
    drop(w);
}

#[test]
fn chosen_tensors_volumes_and_float_conversion() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path(), 8);
    cfg.tensors = Some(vec!["data".into()]);
    cfg.meta = vec![("spacing".into(), "spacing".into())];
    cfg.dtype = OutDType::Bf16;
    let w = open(cfg);
    // A 2 x 3 x 1 volume stored i fastest: voxel (i, j, 0) = 10 i + j.
    let vox: Vec<i16> = (0..3)
        .flat_map(|j| (0..2).map(move |i| 10 * i + j))
        .collect();
    let mut item =
        Item::new(kinds::VOLUME, "v").with_tensor("data", Tensor::volume(vox, &[2, 3, 1]));
    item.set_tensor("label", Tensor::volume(vec![1u8; 6], &[2, 3, 1]));
    item.meta.set("spacing", [1.5, 1.5, 3.0]);
    w.push(0, 1, &item).unwrap();
    let done = w.finish().unwrap();
    let (bytes, _) = read(&dir.path().join(&done[0].file));
    let st = SafeTensors::deserialize(&bytes).unwrap();
    assert_eq!(st.names().len(), 2, "label was not asked for");
    let d = st.tensor("data").unwrap();
    assert_eq!(
        (d.dtype(), d.shape()),
        (Dtype::BF16, &[1usize, 2, 3, 1][..])
    );
    let v: Vec<f32> = bytemuck::pod_collect_to_vec::<u8, u16>(d.data())
        .into_iter()
        .map(|b| half::bf16::from_bits(b).to_f32())
        .collect();
    assert_eq!(v, [0.0, 1.0, 2.0, 10.0, 11.0, 12.0], "C order: [i, j, k]");
    let sp = st.tensor("spacing").unwrap();
    assert_eq!((sp.dtype(), sp.shape()), (Dtype::BF16, &[1usize, 3][..]));
}
