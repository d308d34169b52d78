//! The `tensor.write` stage: `Params` and `impl Stage`; the shards are made in [`crate::writer`].

use std::path::PathBuf;

use mindscan_sdk::prelude::*;
use mindscan_storage::Destination;

use crate::layout::OutDType;
use crate::writer::{Config, ShardWriter};

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TensorWriteParams {
    /// Output folder: `<prefix>-00000.safetensors`, ... and `index.json`; or an
    /// `s3://bucket/prefix` URL (each shard staged locally, then uploaded whole, then the
    /// index; shards of earlier runs there are not removed, the index lists this run's).
    pub out: String,
    /// Tensors of each item to write, by name (e.g. `[x_t, noise]`). Default: every tensor of
    /// the first item; then every item must carry the same ones.
    #[serde(default)]
    pub tensors: Option<Vec<String>>,
    /// Metadata values written as tensors too, one row per item: a key (`diffusion.t`: the
    /// tensor is named like the key) or `{from: diffusion.t, as: t}`. Integers become int64,
    /// other numbers float64 (or `dtype`), booleans bool; arrays of them keep their shape.
    #[serde(default)]
    pub meta: Vec<MetaField>,
    /// Items per shard; the last shard of each worker holds the rest.
    #[serde(default = "default_shard_items")]
    #[schemars(range(min = 1))]
    pub shard_items: usize,
    /// Shard file names: `<prefix>-00000.safetensors`, numbered in the order shards complete.
    #[serde(default = "default_prefix")]
    pub prefix: String,
    /// `keep` (each tensor's dtype), `f32`, `f16` or `bf16` (rounded to nearest even from
    /// float32). Integer metadata stays int64.
    #[serde(default)]
    pub dtype: OutDType,
    /// Keep the shards an earlier run listed in `index.json` and number new ones after them
    /// (for long-running pipelines). Without it, a run removes the `<prefix>-*.safetensors` of
    /// earlier runs from `out` first, so the folder holds one dataset.
    #[serde(default)]
    pub append: bool,
}

/// A metadata value to write as a tensor.
#[derive(Deserialize, JsonSchema, Clone, Debug)]
#[serde(untagged)]
pub enum MetaField {
    /// The metadata key; the tensor takes the same name.
    Key(String),
    /// A metadata key and the tensor's name.
    Renamed(MetaRename),
}

#[derive(Deserialize, JsonSchema, Clone, Debug)]
#[serde(deny_unknown_fields)]
pub struct MetaRename {
    /// Metadata key (`diffusion.t`; a dotted key also reaches into nested objects).
    pub from: String,
    /// Tensor name in the shards.
    #[serde(rename = "as")]
    pub name: String,
}

fn default_shard_items() -> usize {
    256
}
fn default_prefix() -> String {
    "shard".into()
}

/// Stacks items into safetensors shards along a new first axis (`x_t`: `[n, C, H, W]`), with
/// the item keys in each shard's metadata and an `index.json` of the complete shards.
pub struct TensorWrite {
    writer: ShardWriter,
}

impl Stage for TensorWrite {
    type Params = TensorWriteParams;
    const NAME: &'static str = "tensor.write";
    const ROLE: Role = Role::Sink;
    const INPUTS: &'static [&'static str] = &["any"];
    const OUTPUTS: &'static [&'static str] = &[];
    const DESCRIPTION: &'static str = "Write items' tensors as safetensors shards ([items, ...] per tensor) with an index.json, for torch / safetensors.torch.load_file";

    fn new(p: TensorWriteParams, host: &Host) -> Result<Self> {
        // Shards of a split run would number their safetensors files and index.json alike.
        if host.shard().is_split() {
            bail!(
                "tensor.write cannot run under --shard yet: every shard would write {}-00000.safetensors and index.json in `out`",
                p.prefix
            );
        }
        if p.append && mindscan_storage::is_url(&p.out) {
            bail!(
                "append needs a local out: {} is an object store, where a run cannot read \
                 back the shards of earlier runs",
                p.out
            );
        }
        let dest = Destination::new(&p.out)?;
        let mut cfg = config(p)?;
        cfg.out = dest.root().to_path_buf();
        let out = cfg.out.clone();
        // Temporaries of an earlier run that was killed before renaming them.
        std::fs::create_dir_all(&out)
            .with_context(|| format!("{}: cannot create the output folder", out.display()))?;
        host.remove_stale_temps(Self::NAME, &out);
        let (writer, notes) = ShardWriter::open(cfg)?;
        let writer = if dest.is_remote() {
            writer.with_destination(dest)?
        } else {
            writer
        };
        for n in notes {
            host.log(mindscan_sdk::abi::LOG_INFO, Self::NAME, &n);
        }
        Ok(TensorWrite { writer })
    }

    fn process(&self, ctx: &Context, item: Item, _out: &mut Emitter) -> Result<()> {
        if let Some(w) = self
            .writer
            .push(ctx.worker_index(), ctx.worker_count(), &item)?
        {
            ctx.debug(&format!("{} ({} items)", w.file, w.items));
        }
        Ok(())
    }

    fn finish(&self, ctx: &Context, _out: &mut Emitter) -> Result<()> {
        let result = self.writer.finish();
        let (shards, items) = self.writer.totals();
        ctx.info(&format!("{items} item(s) in {shards} shard(s), index.json"));
        result.map(|_| ())
    }
}

/// Checks the parameters into a writer configuration.
fn config(p: TensorWriteParams) -> Result<Config> {
    if p.shard_items == 0 {
        bail!("shard_items must be at least 1");
    }
    let prefix_ok = !p.prefix.is_empty()
        && p.prefix
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
        && !p.prefix.starts_with('.');
    if !prefix_ok {
        bail!(
            "prefix '{}': use letters, digits, '_', '-' and '.' (not first), no folders",
            p.prefix
        );
    }
    let meta: Vec<(String, String)> = p
        .meta
        .into_iter()
        .map(|m| match m {
            MetaField::Key(k) => (k.clone(), k),
            MetaField::Renamed(r) => (r.from, r.name),
        })
        .collect();
    let mut names: Vec<&str> = meta.iter().map(|(_, n)| n.as_str()).collect();
    if let Some(t) = &p.tensors {
        if t.is_empty() {
            bail!("tensors is empty: name at least one, or leave it out to write them all");
        }
        names.extend(t.iter().map(String::as_str));
    }
    for (i, n) in names.iter().enumerate() {
        if n.is_empty() || *n == "__metadata__" {
            bail!("'{n}' cannot name a tensor");
        }
        if names[..i].contains(n) {
            bail!("two tensors would be named '{n}': rename one with {{from: ..., as: ...}}");
        }
    }
    Ok(Config {
        out: PathBuf::from(p.out),
        tensors: p.tensors,
        meta,
        shard_items: p.shard_items,
        prefix: p.prefix,
        dtype: p.dtype,
        append: p.append,
    })
}
