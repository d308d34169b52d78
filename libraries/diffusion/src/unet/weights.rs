//! Named float tensors from a safetensors file, handed out by full MONAI state-dict name through
//! a prefix builder (`Weights::pp`), with the shape checked at every `get`.
//!
//! Names are MONAI's (`down_blocks.0.resnets.1.conv1.conv.weight`); the names of MONAI
//! GenerativeModels checkpoints (`load_old_state_dict`) are accepted as aliases. After a model
//! is built, `WeightStore::finish` refuses tensors nobody asked for.

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, HashSet};
use std::fmt::Display;
use std::ops::Range;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use safetensors::{Dtype, SafeTensors};

/// Where a tensor lies in the file's bytes.
struct RawTensor {
    dtype: Dtype,
    shape: Vec<usize>,
    bytes: Range<usize>,
}

enum Source {
    File {
        bytes: Vec<u8>,
        tensors: HashMap<String, RawTensor>,
    },
    /// Every requested tensor is zeros (shape tests, parameter counts).
    Zeros,
    /// Deterministic pseudo-random values, scaled like a trained network (benchmarks).
    Random(u64),
}

/// All tensors of one safetensors file (or a synthetic source), and which have been used.
pub struct WeightStore {
    name: PathBuf,
    source: Source,
    used: RefCell<HashSet<String>>,
    handed_out: Cell<usize>,
}

/// A view of a `WeightStore` under a name prefix.
pub struct Weights<'a> {
    store: &'a WeightStore,
    prefix: String,
}

impl WeightStore {
    /// Reads the file and indexes its tensors.
    pub fn open(path: &Path) -> anyhow::Result<WeightStore> {
        let bytes = std::fs::read(path)
            .with_context(|| format!("{}: cannot read the weights", path.display()))?;
        let base = bytes.as_ptr() as usize;
        let tensors = {
            let file = SafeTensors::deserialize(&bytes)
                .with_context(|| format!("{}: not a safetensors file", path.display()))?;
            file.iter()
                .map(|(name, view)| {
                    let start = view.data().as_ptr() as usize - base;
                    let raw = RawTensor {
                        dtype: view.dtype(),
                        shape: view.shape().to_vec(),
                        bytes: start..start + view.data().len(),
                    };
                    (name.to_string(), raw)
                })
                .collect()
        };
        Ok(WeightStore::new(path, Source::File { bytes, tensors }))
    }

    /// A store that hands out zeros of whatever shape is asked for.
    pub fn zeros() -> WeightStore {
        WeightStore::new(Path::new("<zeros>"), Source::Zeros)
    }

    /// A store that hands out deterministic pseudo-random tensors: weights uniform with
    /// variance 1/fan_in, biases within ±0.1, norm scales within 1 ± 0.1.
    pub fn random(seed: u64) -> WeightStore {
        WeightStore::new(Path::new("<random>"), Source::Random(seed))
    }

    fn new(name: &Path, source: Source) -> WeightStore {
        WeightStore {
            name: name.to_path_buf(),
            source,
            used: RefCell::new(HashSet::new()),
            handed_out: Cell::new(0),
        }
    }

    /// The view at the root (no prefix).
    pub fn root(&self) -> Weights<'_> {
        Weights {
            store: self,
            prefix: String::new(),
        }
    }

    /// Runs `build` on the root and returns how many values it asked for.
    pub fn count_for(
        &self,
        build: impl FnOnce(&Weights) -> anyhow::Result<()>,
    ) -> anyhow::Result<usize> {
        let before = self.handed_out.get();
        build(&self.root())?;
        Ok(self.handed_out.get() - before)
    }

    /// Refuses tensors of the file that no `get` asked for.
    pub fn finish(&self) -> anyhow::Result<()> {
        let Source::File { tensors, .. } = &self.source else {
            return Ok(());
        };
        let used = self.used.borrow();
        let mut unexpected: Vec<&str> = tensors
            .keys()
            .filter(|k| !used.contains(k.as_str()))
            .map(String::as_str)
            .collect();
        if unexpected.is_empty() {
            return Ok(());
        }
        unexpected.sort_unstable();
        let shown = unexpected.len().min(8);
        let more = match unexpected.len() - shown {
            0 => String::new(),
            n => format!(" and {n} more"),
        };
        bail!(
            "{}: unexpected tensors for this config: {}{more}",
            self.name.display(),
            unexpected[..shown].join(", ")
        )
    }

    fn get(&self, name: &str, shape: &[usize]) -> anyhow::Result<Vec<f32>> {
        let numel: usize = shape.iter().product();
        self.handed_out.set(self.handed_out.get() + numel);
        let (bytes, tensors) = match &self.source {
            Source::Zeros => return Ok(vec![0.0; numel]),
            Source::Random(seed) => return Ok(pseudo_random(*seed, name, shape)),
            Source::File { bytes, tensors } => (bytes, tensors),
        };
        let file = self.name.display();
        let Some((found, raw)) = aliases(name).find_map(|n| tensors.get_key_value(n.as_str()))
        else {
            bail!("{file}: missing tensor {name} (shape {shape:?})");
        };
        self.used.borrow_mut().insert(found.clone());
        if raw.shape != shape {
            bail!("{file}: {found}: expected {shape:?}, found {:?}", raw.shape);
        }
        let data = &bytes[raw.bytes.clone()];
        let values: Vec<f32> = match raw.dtype {
            Dtype::F32 => data
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect(),
            Dtype::F16 => data
                .chunks_exact(2)
                .map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32())
                .collect(),
            Dtype::BF16 => data
                .chunks_exact(2)
                .map(|b| half::bf16::from_le_bytes([b[0], b[1]]).to_f32())
                .collect(),
            other => bail!("{file}: {found}: dtype {other:?} is not F32, F16 or BF16"),
        };
        if values.len() != numel {
            bail!(
                "{file}: {found}: {} values for shape {shape:?}",
                values.len()
            );
        }
        Ok(values)
    }
}

/// `name` first, then its MONAI GenerativeModels spelling if it has one.
fn aliases(name: &str) -> impl Iterator<Item = String> {
    let old = [
        (".attn.to_q.", ".to_q."),
        (".attn.to_k.", ".to_k."),
        (".attn.to_v.", ".to_v."),
        (".attn.out_proj.", ".proj_attn."),
        (".postconv.", ".conv."),
    ]
    .iter()
    .find(|(new, _)| name.contains(new))
    .map(|(new, old)| name.replacen(new, old, 1));
    std::iter::once(name.to_string()).chain(old)
}

impl<'a> Weights<'a> {
    /// The view under `prefix.name`.
    pub fn pp(&self, name: impl Display) -> Weights<'a> {
        let prefix = if self.prefix.is_empty() {
            name.to_string()
        } else {
            format!("{}.{name}", self.prefix)
        };
        Weights {
            store: self.store,
            prefix,
        }
    }

    /// The tensor `prefix.name` as float32, which must have exactly `shape`.
    pub fn get(&self, name: &str, shape: &[usize]) -> anyhow::Result<Vec<f32>> {
        self.store.get(&self.pp(name).prefix, shape)
    }
}

/// splitmix64 over a hash of the name, so each tensor gets its own reproducible stream.
fn pseudo_random(seed: u64, name: &str, shape: &[usize]) -> Vec<f32> {
    let mut state = name.bytes().fold(0xcbf2_9ce4_8422_2325 ^ seed, |h, b| {
        (h ^ b as u64).wrapping_mul(0x100_0000_01b3)
    });
    let mut uniform = move || {
        state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
        ((z >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    };
    let numel: usize = shape.iter().product();
    let (scale, offset) = match shape {
        [_] if name.ends_with(".weight") => (0.1, 1.0),
        [_] => (0.1, 0.0),
        [_, rest @ ..] => ((3.0 / rest.iter().product::<usize>() as f32).sqrt(), 0.0),
        [] => (0.1, 0.0),
    };
    (0..numel).map(|_| offset + scale * uniform()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_names_come_first_and_old_monai_generative_names_are_aliases() {
        let names: Vec<String> = aliases("mid.attention.attn.to_q.weight").collect();
        assert_eq!(
            names,
            [
                "mid.attention.attn.to_q.weight",
                "mid.attention.to_q.weight"
            ]
        );
        let names: Vec<String> = aliases("up_blocks.0.attentions.1.attn.out_proj.bias").collect();
        assert_eq!(names[1], "up_blocks.0.attentions.1.proj_attn.bias");
        let names: Vec<String> = aliases("up_blocks.1.upsampler.postconv.conv.weight").collect();
        assert_eq!(names[1], "up_blocks.1.upsampler.conv.conv.weight");
        assert_eq!(aliases("conv_in.conv.weight").count(), 1);
    }

    #[test]
    fn prefixes_join_with_dots() {
        let store = WeightStore::zeros();
        let w = store.root().pp("down_blocks").pp(0).pp("resnets");
        assert_eq!(w.prefix, "down_blocks.0.resnets");
        assert_eq!(w.get("x", &[2, 3]).unwrap().len(), 6);
        assert_eq!(store.handed_out.get(), 6);
    }

    #[test]
    fn random_weights_are_reproducible_and_differ_between_tensors() {
        let a = pseudo_random(1, "a.weight", &[4, 8]);
        assert_eq!(a, pseudo_random(1, "a.weight", &[4, 8]));
        assert_ne!(a, pseudo_random(1, "b.weight", &[4, 8]));
        assert!(a.iter().all(|v| v.abs() <= (3.0f32 / 8.0).sqrt()));
    }
}
