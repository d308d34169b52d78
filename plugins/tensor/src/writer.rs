//! The shard writer behind `tensor.write`: items become rows of one shard per worker; a full
//! shard goes to a temporary file, is renamed into place, then `index.json` is rewritten.
//!
//! Every row of every shard has the same tensors with the same per-item shapes and dtypes (the
//! *schema*), fixed by the first item written (or by the index an `append` run continues), so
//! the shards of a folder concatenate along their first axis. An item that does not fit is
//! refused with an error naming it and the tensor; the shard goes on without it.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use mindscan_sdk::prelude::*;
use safetensors::Dtype;
use safetensors::tensor::TensorView;
use serde_json::Value;

use crate::index::{FORMAT, Index, ShardEntry, TensorEntry, shard_file, shard_files, shard_number};
use mindscan_storage::Destination;

use crate::layout::{MetaValue, OutDType, append_tensor, check_tensor};

/// What to write, checked (see `TensorWriteParams` for the meaning of each field).
#[derive(Debug, Clone)]
pub struct Config {
    pub out: PathBuf,
    /// Item tensors to write; `None`: all of the first item's.
    pub tensors: Option<Vec<String>>,
    /// `(metadata key, tensor name)` pairs.
    pub meta: Vec<(String, String)>,
    pub shard_items: usize,
    pub prefix: String,
    pub dtype: OutDType,
    pub append: bool,
}

/// Where a column's rows come from.
#[derive(Debug, Clone, PartialEq)]
enum Source {
    Tensor(String),
    Meta(String),
}

/// One tensor of every shard.
#[derive(Debug, Clone, PartialEq)]
struct Column {
    name: String,
    source: Source,
    dtype: Dtype,
    /// Shape of one item's row.
    shape: Vec<usize>,
}

/// One item's value of a column, not yet copied.
enum Cell<'a> {
    Tensor(&'a Tensor),
    Meta(MetaValue),
}

/// The rows buffered for one shard: per column, the rows' bytes back to back.
struct Shard {
    keys: Vec<String>,
    data: Vec<Vec<u8>>,
}

/// A shard that landed.
#[derive(Debug, Clone, PartialEq)]
pub struct Written {
    pub file: String,
    pub items: usize,
}

pub struct ShardWriter {
    cfg: Config,
    schema: Mutex<Option<Arc<Vec<Column>>>>,
    /// One open shard per worker (a worker takes its own out while it adds a row).
    slots: Mutex<Vec<Option<Shard>>>,
    next: AtomicU64,
    index: Mutex<Index>,
    /// Where finished files are published (`None`: they stay where they were written).
    dest: Option<Destination>,
    _claim: FolderClaim,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl ShardWriter {
    /// Prepares `cfg.out`: without `append`, removes the shards of an earlier run (files named
    /// `<prefix>-NNNNN.safetensors`) and starts an empty index; with it, keeps the index and
    /// numbers new shards after every shard file there. Returns lines worth logging.
    pub fn open(cfg: Config) -> Result<(ShardWriter, Vec<String>)> {
        let out = &cfg.out;
        std::fs::create_dir_all(out)
            .with_context(|| format!("{}: cannot create the output folder", out.display()))?;
        let claim = FolderClaim::take(out)?;
        let mut notes = Vec::new();
        let existing = shard_files(out, &cfg.prefix)?;
        let (index, next) = if cfg.append {
            let index = Index::read(out)?.unwrap_or_default();
            let listed: HashSet<&str> = index.shards.iter().map(|s| s.file.as_str()).collect();
            let orphans = existing
                .iter()
                .filter(|(_, p)| {
                    !p.file_name()
                        .is_some_and(|n| listed.contains(&*n.to_string_lossy()))
                })
                .count();
            if orphans > 0 {
                notes.push(format!(
                    "{orphans} shard file(s) in {} are not in index.json (a run stopped between \
                     writing a shard and indexing it): left alone, not part of the dataset",
                    out.display()
                ));
            }
            let last = existing
                .iter()
                .map(|(n, _)| *n)
                .chain(
                    index
                        .shards
                        .iter()
                        .filter_map(|s| shard_number(&cfg.prefix, &s.file)),
                )
                .max();
            (index, last.map_or(0, |n| n + 1))
        } else {
            for (_, p) in &existing {
                std::fs::remove_file(p)
                    .with_context(|| format!("{}: cannot remove the old shard", p.display()))?;
            }
            if !existing.is_empty() {
                notes.push(format!(
                    "removed {} shard(s) of an earlier run from {} (append: true keeps them)",
                    existing.len(),
                    out.display()
                ));
            }
            (Index::default(), 0)
        };
        let schema = if index.tensors.is_empty() {
            None
        } else {
            Some(Arc::new(schema_from_index(&index, &cfg)?))
        };
        index.write(out)?;
        Ok((
            ShardWriter {
                cfg,
                schema: Mutex::new(schema),
                slots: Mutex::new(Vec::new()),
                next: AtomicU64::new(next),
                index: Mutex::new(index),
                dest: None,
                _claim: claim,
            },
            notes,
        ))
    }

    /// Publishes every finished file through `dest` (an object store: `cfg.out` is its staging
    /// folder), starting with the empty index written by [`Self::open`].
    pub fn with_destination(mut self, dest: Destination) -> Result<Self> {
        dest.commit(&self.cfg.out.join(crate::index::INDEX_FILE))?;
        self.dest = Some(dest);
        Ok(self)
    }

    fn publish(&self, path: &Path) -> Result<()> {
        self.dest.as_ref().map_or(Ok(()), |d| d.commit(path))
    }

    /// Adds `item` as a row of worker `worker`'s shard; writes the shard when it is full.
    /// A refused item leaves the shard as it was.
    pub fn push(&self, worker: usize, workers: usize, item: &Item) -> Result<Option<Written>> {
        let key = item.key();
        let cells = self.cells(item)?;
        let schema = self.schema_for(key, &cells)?;
        let cells = match_schema(key, &schema, cells, &self.cfg)?;
        let mut shard = {
            let mut slots = lock(&self.slots);
            if slots.len() < workers.max(worker + 1) {
                slots.resize_with(workers.max(worker + 1), || None);
            }
            slots[worker].take()
        }
        .unwrap_or_else(|| self.empty_shard(&schema, &cells));
        let added = shard.push(key, &schema, &cells);
        if added.is_ok() && shard.keys.len() >= self.cfg.shard_items {
            return self.write(&schema, shard).map(Some);
        }
        lock(&self.slots)[worker] = Some(shard);
        added.map(|()| None)
    }

    /// Writes every shard still open (the last, partial ones), in worker order.
    pub fn finish(&self) -> Result<Vec<Written>> {
        let open: Vec<Shard> = std::mem::take(&mut *lock(&self.slots))
            .into_iter()
            .flatten()
            .filter(|s| !s.keys.is_empty())
            .collect();
        let schema = lock(&self.schema).clone();
        let mut written = Vec::new();
        let mut first_err = None;
        for shard in open {
            let Some(schema) = &schema else { break };
            match self.write(schema, shard) {
                Ok(w) => written.push(w),
                Err(e) => first_err = first_err.or(Some(e)),
            }
        }
        match first_err {
            Some(e) => Err(e),
            None => Ok(written),
        }
    }

    /// Shards and items in the index now.
    pub fn totals(&self) -> (usize, u64) {
        let ix = lock(&self.index);
        (ix.shards.len(), ix.total_items)
    }

    /// The item's value of every tensor it should give, unchecked against the schema.
    fn cells<'a>(&self, item: &'a Item) -> Result<Vec<(String, Cell<'a>)>> {
        let key = item.key();
        let mut cells = Vec::new();
        match &self.cfg.tensors {
            None => {
                for (name, t) in &item.tensors {
                    cells.push((name.clone(), Cell::Tensor(t)));
                }
            }
            Some(names) => {
                for name in names {
                    let t = item.tensor(name).ok_or_else(|| {
                        let has: Vec<&str> = item.tensors.iter().map(|(n, _)| n.as_str()).collect();
                        anyhow!(
                            "item '{key}' has no tensor '{name}' (it has: {})",
                            has.join(", ")
                        )
                    })?;
                    cells.push((name.clone(), Cell::Tensor(t)));
                }
            }
        }
        for (from, name) in &self.cfg.meta {
            let v = meta_value(&item.meta, from)
                .ok_or_else(|| anyhow!("item '{key}' has no metadata '{from}'"))?;
            let m =
                MetaValue::parse(v).with_context(|| format!("item '{key}': metadata '{from}'"))?;
            cells.push((name.clone(), Cell::Meta(m)));
        }
        Ok(cells)
    }

    /// The schema, fixed from these cells if this is the first item.
    fn schema_for(&self, key: &str, cells: &[(String, Cell)]) -> Result<Arc<Vec<Column>>> {
        let mut guard = lock(&self.schema);
        if let Some(s) = &*guard {
            return Ok(s.clone());
        }
        let mut columns: Vec<Column> = Vec::new();
        for (name, cell) in cells {
            if name == "__metadata__" || columns.iter().any(|c| &c.name == name) {
                bail!(
                    "item '{key}': two tensors would be named '{name}' (a reserved or repeated \
                     name): rename the metadata one with {{from: ..., as: ...}}"
                );
            }
            let (source, dtype, shape) = match cell {
                Cell::Tensor(t) => {
                    let d = self.cfg.dtype.for_tensor(t.dtype()).and_then(|d| {
                        check_tensor(t, d)?;
                        Ok(d)
                    });
                    let d = d.with_context(|| format!("item '{key}': tensor '{name}'"))?;
                    (Source::Tensor(name.clone()), d, t.shape().to_vec())
                }
                Cell::Meta(m) => {
                    let from = self.meta_key(name);
                    let d = m.natural_dtype(self.cfg.dtype.for_float_meta());
                    (Source::Meta(from), d, m.shape.clone())
                }
            };
            columns.push(Column {
                name: name.clone(),
                source,
                dtype,
                shape,
            });
        }
        if columns.is_empty() {
            bail!("item '{key}' has no tensors to write");
        }
        let mut ix = lock(&self.index);
        for c in &columns {
            ix.tensors.insert(
                c.name.clone(),
                TensorEntry {
                    dtype: c.dtype,
                    shape: c.shape.clone(),
                },
            );
        }
        drop(ix);
        let s = Arc::new(columns);
        *guard = Some(s.clone());
        Ok(s)
    }

    fn meta_key(&self, tensor: &str) -> String {
        self.cfg
            .meta
            .iter()
            .find(|(_, n)| n == tensor)
            .map(|(k, _)| k.clone())
            .unwrap_or_default()
    }

    /// A shard with room for `shard_items` rows (so its buffers never grow by doubling).
    fn empty_shard(&self, schema: &[Column], cells: &[Cell]) -> Shard {
        let n = self.cfg.shard_items;
        let data = schema
            .iter()
            .zip(cells)
            .map(|(c, cell)| {
                let elems = match cell {
                    Cell::Tensor(t) => t.len(),
                    Cell::Meta(_) => c.shape.iter().product(),
                };
                Vec::with_capacity(elems * (c.dtype.bitsize() / 8) * n)
            })
            .collect();
        Shard {
            keys: Vec::with_capacity(n),
            data,
        }
    }

    /// Writes `shard` as the next shard file (temporary name, then rename), then the index.
    fn write(&self, schema: &[Column], shard: Shard) -> Result<Written> {
        let n = self.next.fetch_add(1, Ordering::SeqCst);
        let file = shard_file(&self.cfg.prefix, n);
        let path = self.cfg.out.join(&file);
        let items = shard.keys.len();
        write_shard(&path, schema, &shard).with_context(|| {
            format!(
                "{}: cannot write the shard; its {items} item(s) are lost ({}...)",
                path.display(),
                shard.keys.first().map(String::as_str).unwrap_or("")
            )
        })?;
        drop(shard.data);
        self.publish(&path)?;
        let mut ix = lock(&self.index);
        ix.add(ShardEntry {
            file: file.clone(),
            items,
            keys: shard.keys,
        });
        ix.write(&self.cfg.out)?;
        // Under the index lock: a later index never goes up before an earlier one.
        self.publish(&self.cfg.out.join(crate::index::INDEX_FILE))?;
        Ok(Written { file, items })
    }
}

impl Shard {
    /// Adds one row (cells in schema order); on error every column is cut back.
    fn push(&mut self, key: &str, schema: &[Column], cells: &[Cell]) -> Result<()> {
        let before: Vec<usize> = self.data.iter().map(Vec::len).collect();
        let mut added = || -> Result<()> {
            for ((col, cell), buf) in schema.iter().zip(cells).zip(&mut self.data) {
                match cell {
                    Cell::Tensor(t) => append_tensor(t, col.dtype, buf),
                    Cell::Meta(m) => m.append(col.dtype, buf),
                }
                .with_context(|| format!("item '{key}': tensor '{}'", col.name))?;
            }
            Ok(())
        };
        match added() {
            Ok(()) => {
                self.keys.push(key.to_string());
                Ok(())
            }
            Err(e) => {
                for (buf, len) in self.data.iter_mut().zip(before) {
                    buf.truncate(len);
                }
                Err(e)
            }
        }
    }
}

/// Puts the cells in schema order, checking names, shapes and dtypes.
fn match_schema<'a>(
    key: &str,
    schema: &[Column],
    mut cells: Vec<(String, Cell<'a>)>,
    cfg: &Config,
) -> Result<Vec<Cell<'a>>> {
    if cfg.tensors.is_none() {
        let tensors = |names: Vec<&str>| {
            let mut v: Vec<String> = names.into_iter().map(String::from).collect();
            v.sort();
            v
        };
        let has = tensors(
            cells
                .iter()
                .filter(|(_, c)| matches!(c, Cell::Tensor(_)))
                .map(|(n, _)| n.as_str())
                .collect(),
        );
        let want = tensors(
            schema
                .iter()
                .filter(|c| matches!(c.source, Source::Tensor(_)))
                .map(|c| c.name.as_str())
                .collect(),
        );
        if has != want {
            bail!(
                "item '{key}' has tensors [{}]; the shards hold [{}] (every item gives the same \
                 tensors; `tensors:` picks a fixed subset)",
                has.join(", "),
                want.join(", ")
            );
        }
    }
    let mut out = Vec::with_capacity(schema.len());
    for col in schema {
        let at = cells
            .iter()
            .position(|(n, _)| *n == col.name)
            .ok_or_else(|| anyhow!("item '{key}' gives no '{}'", col.name))?;
        let (_, cell) = cells.swap_remove(at);
        let (shape, what) = match &cell {
            Cell::Tensor(t) => (t.shape().to_vec(), format!("tensor '{}'", col.name)),
            Cell::Meta(m) => (m.shape.clone(), format!("metadata tensor '{}'", col.name)),
        };
        let fits = match &cell {
            Cell::Tensor(t) => {
                let same = cfg.dtype.for_tensor(t.dtype()).ok() == Some(col.dtype);
                if same && let Err(e) = check_tensor(t, col.dtype) {
                    bail!("item '{key}': tensor '{}': {e}", col.name);
                }
                same
            }
            Cell::Meta(m) => {
                let natural = m.natural_dtype(col.dtype);
                natural == col.dtype || (natural == Dtype::I64 && is_float(col.dtype))
            }
        };
        if shape != col.shape || !fits {
            let dtype = match &cell {
                Cell::Tensor(t) => t.dtype().name().to_string(),
                Cell::Meta(m) => m.natural_dtype(Dtype::F64).to_string(),
            };
            bail!(
                "item '{key}': {what} is {shape:?} {dtype}, the shards hold {:?} {} (one shape \
                 and dtype per tensor in a folder: resize the images first, e.g. image.resize)",
                col.shape,
                col.dtype
            );
        }
        out.push(cell);
    }
    Ok(out)
}

fn is_float(d: Dtype) -> bool {
    matches!(d, Dtype::F64 | Dtype::F32 | Dtype::F16 | Dtype::BF16)
}

/// A metadata value by key: the flat key (`diffusion.t`) first, else the dotted path through
/// nested objects (`{"diffusion": {"t": ...}}`).
fn meta_value<'m>(meta: &'m Meta, key: &str) -> Option<&'m Value> {
    if let Some(v) = meta.0.get(key) {
        return Some(v);
    }
    let mut parts = key.split('.');
    let mut v = meta.0.get(parts.next()?)?;
    for p in parts {
        v = v.get(p)?;
    }
    Some(v)
}

/// The schema an `append` run continues: the tensors the index lists, each from the source the
/// configuration gives it.
fn schema_from_index(index: &Index, cfg: &Config) -> Result<Vec<Column>> {
    let mut columns = Vec::new();
    for (name, t) in &index.tensors {
        let source = match cfg.meta.iter().find(|(_, n)| n == name) {
            Some((from, _)) => Source::Meta(from.clone()),
            None => Source::Tensor(name.clone()),
        };
        columns.push(Column {
            name: name.clone(),
            source,
            dtype: t.dtype,
            shape: t.shape.clone(),
        });
    }
    let listed: Vec<&str> = columns.iter().map(|c| c.name.as_str()).collect();
    let mut wanted: Vec<&str> = cfg.meta.iter().map(|(_, n)| n.as_str()).collect();
    if let Some(t) = &cfg.tensors {
        wanted.extend(t.iter().map(String::as_str));
    }
    let missing: Vec<&str> = wanted
        .iter()
        .copied()
        .filter(|n| !listed.contains(n))
        .collect();
    let extra = cfg.tensors.as_ref().map(|t| {
        columns
            .iter()
            .filter(|c| matches!(c.source, Source::Tensor(_)) && !t.contains(&c.name))
            .count()
    });
    if !missing.is_empty() || extra.is_some_and(|n| n > 0) {
        bail!(
            "{}: the shards there hold [{}]; this stage writes other tensors ([{}]): append to \
             a folder of the same tensors, or use another `out`",
            cfg.out.join(crate::index::INDEX_FILE).display(),
            listed.join(", "),
            wanted.join(", ")
        );
    }
    Ok(columns)
}

/// Writes one shard file: `[rows, ...]` tensors, and `__metadata__` with the format and the
/// item keys in row order. Readers never see it half written (temporary name, then rename).
fn write_shard(path: &Path, schema: &[Column], shard: &Shard) -> Result<()> {
    let rows = shard.keys.len();
    let mut views = Vec::with_capacity(schema.len());
    for (c, data) in schema.iter().zip(&shard.data) {
        let mut shape = Vec::with_capacity(c.shape.len() + 1);
        shape.push(rows);
        shape.extend_from_slice(&c.shape);
        let view = TensorView::new(c.dtype, shape, data)
            .map_err(|e| anyhow!("tensor '{}': {e}", c.name))?;
        views.push((c.name.clone(), view));
    }
    let mut meta = std::collections::HashMap::new();
    meta.insert("format".to_string(), FORMAT.to_string());
    meta.insert("keys".to_string(), serde_json::to_string(&shard.keys)?);
    let tmp = mindscan_sdk::fsio::temp_path_for(path)?;
    let result = safetensors::serialize_to_file(views, Some(meta), &tmp)
        .map_err(|e| anyhow!("{e}"))
        .and_then(|()| std::fs::rename(&tmp, path).map_err(Into::into));
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Output folders in use by a `tensor.write` of this process: two writing one `index.json`
/// would overwrite each other's entries.
static IN_USE: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());

struct FolderClaim(PathBuf);

impl FolderClaim {
    fn take(dir: &Path) -> Result<FolderClaim> {
        let dir = dir
            .canonicalize()
            .with_context(|| format!("{}: cannot resolve", dir.display()))?;
        let mut used = lock(&IN_USE);
        if used.contains(&dir) {
            bail!(
                "{}: another tensor.write stage writes there: give each its own `out`",
                dir.display()
            );
        }
        used.push(dir.clone());
        Ok(FolderClaim(dir))
    }
}

impl Drop for FolderClaim {
    fn drop(&mut self) {
        lock(&IN_USE).retain(|d| d != &self.0);
    }
}
