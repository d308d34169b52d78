//! `index.json`: the complete shards of an output folder, what each holds, and the per-item
//! shape and dtype of every tensor. Rewritten atomically after each shard lands, so it never
//! names a shard that is not complete.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result, bail};
use safetensors::Dtype;
use serde::{Deserialize, Serialize};

/// The `format` of `index.json` and of each shard's `__metadata__`.
pub const FORMAT: &str = "mindscan.tensor_shards.v1";

/// The index file's name in the output folder.
pub const INDEX_FILE: &str = "index.json";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Index {
    pub format: String,
    /// In file order.
    pub shards: Vec<ShardEntry>,
    /// Every tensor of every shard: its dtype and the shape of one item (a shard's tensor is
    /// `[items, ...shape]`).
    pub tensors: BTreeMap<String, TensorEntry>,
    pub total_items: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ShardEntry {
    /// File name, relative to the index.
    pub file: String,
    pub items: usize,
    /// Item keys, one per row, in row order.
    pub keys: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TensorEntry {
    /// The safetensors dtype name (`F32`, `F16`, `BF16`, `I64`, `U8`...).
    pub dtype: Dtype,
    pub shape: Vec<usize>,
}

impl Default for Index {
    fn default() -> Self {
        Index {
            format: FORMAT.into(),
            shards: Vec::new(),
            tensors: BTreeMap::new(),
            total_items: 0,
        }
    }
}

impl Index {
    /// Reads `dir/index.json`; `None` when there is none.
    pub fn read(dir: &Path) -> Result<Option<Index>> {
        let path = dir.join(INDEX_FILE);
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e).with_context(|| format!("{}: cannot read", path.display())),
        };
        let index: Index = serde_json::from_str(&text)
            .with_context(|| format!("{}: not a tensor.write index", path.display()))?;
        if index.format != FORMAT {
            bail!(
                "{}: format '{}', expected '{FORMAT}'",
                path.display(),
                index.format
            );
        }
        Ok(Some(index))
    }

    /// Adds a shard, keeping file order and the total.
    pub fn add(&mut self, entry: ShardEntry) {
        self.total_items += entry.items as u64;
        let at = self.shards.partition_point(|s| s.file < entry.file);
        self.shards.insert(at, entry);
    }

    /// Writes `dir/index.json` atomically.
    pub fn write(&self, dir: &Path) -> Result<()> {
        let path = dir.join(INDEX_FILE);
        let mut text = serde_json::to_vec_pretty(self)?;
        text.push(b'\n');
        mindscan_sdk::fsio::write_atomic(&path, &text)
            .with_context(|| format!("{}: cannot write", path.display()))
    }
}

/// The file name of shard `n`: `<prefix>-00042.safetensors`.
pub fn shard_file(prefix: &str, n: u64) -> String {
    format!("{prefix}-{n:05}.safetensors")
}

/// The number in a shard file name of this prefix, if it is one.
pub fn shard_number(prefix: &str, file: &str) -> Option<u64> {
    let digits = file
        .strip_prefix(prefix)?
        .strip_prefix('-')?
        .strip_suffix(".safetensors")?;
    if digits.len() < 5 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// The shard files of this prefix in `dir` (not in sub-folders), with their numbers, in order.
pub fn shard_files(dir: &Path, prefix: &str) -> Result<Vec<(u64, PathBuf)>> {
    let mut out = Vec::new();
    let rd = std::fs::read_dir(dir).with_context(|| format!("{}: cannot list", dir.display()))?;
    for e in rd.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if let Some(n) = shard_number(prefix, &name)
            && e.file_type().is_ok_and(|t| t.is_file())
        {
            out.push((n, e.path()));
        }
    }
    out.sort();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shard_names_number_from_zero_and_only_ours_parse_back() {
        assert_eq!(shard_file("shard", 0), "shard-00000.safetensors");
        assert_eq!(shard_file("pairs", 123456), "pairs-123456.safetensors");
        assert_eq!(shard_number("shard", "shard-00042.safetensors"), Some(42));
        assert_eq!(
            shard_number("shard", "shard-123456.safetensors"),
            Some(123456)
        );
        for other in [
            "shard-42.safetensors",
            "shard-0000x.safetensors",
            "shards-00001.safetensors",
            "shard-00001.safetensors.tmp",
            "other-00001.safetensors",
        ] {
            assert_eq!(shard_number("shard", other), None, "{other}");
        }
    }

    #[test]
    fn the_index_keeps_shards_in_file_order_and_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let mut ix = Index::default();
        for n in [2u64, 0, 1] {
            ix.add(ShardEntry {
                file: shard_file("shard", n),
                items: n as usize + 1,
                keys: vec![format!("k{n}")],
            });
        }
        ix.tensors.insert(
            "data".into(),
            TensorEntry {
                dtype: Dtype::F32,
                shape: vec![4, 5],
            },
        );
        ix.write(dir.path()).unwrap();
        let back = Index::read(dir.path()).unwrap().unwrap();
        assert_eq!(back, ix);
        assert_eq!(back.total_items, 6);
        let files: Vec<&str> = back.shards.iter().map(|s| s.file.as_str()).collect();
        assert_eq!(
            files,
            [
                "shard-00000.safetensors",
                "shard-00001.safetensors",
                "shard-00002.safetensors"
            ]
        );
        let text = std::fs::read_to_string(dir.path().join(INDEX_FILE)).unwrap();
        assert!(text.contains("\"dtype\": \"F32\""), "{text}");
        assert!(Index::read(&dir.path().join("none")).unwrap().is_none());
    }
}
