//! Items: what flows between stages — a kind, named tensors and JSON metadata.

use anyhow::{Context as _, Result, bail};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use crate::abi::{FfiItem, FfiNamedTensor, FfiTensor, StrRef};
use crate::tensor::Tensor;

/// Well-known item kinds.
pub mod kinds {
    /// A 3D/4D volume: tensor `data` of shape `[ni, nj, nk, (nt)]`, `i` fastest (NIfTI order),
    /// with `affine` (voxel → RAS+ mm) in the metadata.
    pub const VOLUME: &str = "volume";
    /// A 2D picture: tensor `data` of shape `[rows, cols]`, row-major, row 0 at the top.
    pub const IMAGE: &str = "image";
    /// Inputs discovered but not decoded: no tensor, a [`crate::reference::Reference`] in the
    /// metadata (`volume.load` decodes it).
    pub const REFERENCE: &str = "reference";
}

/// Well-known metadata keys. Plugins may add their own (prefer `family.name` keys).
pub mod keys {
    /// Unique, stable key of the item within a run (used to derive seeds).
    pub const KEY: &str = "key";
    /// Path of the file the item came from.
    pub const SOURCE: &str = "source";
    /// 4x4 row-major voxel → world (RAS+, mm) matrix.
    pub const AFFINE: &str = "affine";
    /// Voxel or pixel spacing in mm, one entry per spatial axis.
    pub const SPACING: &str = "spacing";
    pub const SERIES: &str = "series";
    pub const FRAME: &str = "frame";
    pub const PLANE: &str = "plane";
    pub const INDEX: &str = "index";
    /// Number of slices the volume produced in this plane (lets sinks know a volume is complete).
    pub const SLICE_COUNT: &str = "slice_count";
    pub const SEED: &str = "seed";
    /// Intensity window `{lo, hi, mode}` chosen by `intensity.window`.
    pub const WINDOW: &str = "window";
}

/// JSON metadata carried beside the tensors.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Meta(pub Map<String, Value>);

impl Meta {
    pub fn new() -> Self {
        Meta(Map::new())
    }

    pub fn get<T: DeserializeOwned>(&self, key: &str) -> Option<T> {
        self.0
            .get(key)
            .and_then(|v| serde_json::from_value(v.clone()).ok())
    }

    pub fn set(&mut self, key: &str, value: impl Serialize) {
        let v = serde_json::to_value(value).unwrap_or(Value::Null);
        self.0.insert(key.to_string(), v);
    }

    pub fn str(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(Value::as_str)
    }

    pub fn key(&self) -> &str {
        self.str(keys::KEY).unwrap_or("")
    }

    pub fn source(&self) -> Option<&str> {
        self.str(keys::SOURCE)
    }

    pub fn affine(&self) -> Option<[[f64; 4]; 4]> {
        self.get(keys::AFFINE)
    }

    pub fn set_affine(&mut self, a: &[[f64; 4]; 4]) {
        self.set(keys::AFFINE, a);
    }
}

/// One unit of work: a kind, named tensors and metadata.
#[derive(Clone, Debug)]
pub struct Item {
    pub kind: String,
    pub meta: Meta,
    pub tensors: Vec<(String, Tensor)>,
}

impl Item {
    pub fn new(kind: &str, key: &str) -> Self {
        let mut meta = Meta::new();
        meta.set(keys::KEY, key);
        Item {
            kind: kind.to_string(),
            meta,
            tensors: Vec::new(),
        }
    }

    pub fn with_tensor(mut self, name: &str, t: Tensor) -> Self {
        self.set_tensor(name, t);
        self
    }

    pub fn set_tensor(&mut self, name: &str, t: Tensor) {
        match self.tensors.iter_mut().find(|(n, _)| n == name) {
            Some(slot) => slot.1 = t,
            None => self.tensors.push((name.to_string(), t)),
        }
    }

    pub fn tensor(&self, name: &str) -> Option<&Tensor> {
        self.tensors.iter().find(|(n, _)| n == name).map(|(_, t)| t)
    }

    /// The main tensor, named `data`.
    pub fn data(&self) -> Result<&Tensor> {
        self.tensor("data")
            .with_context(|| format!("{} item '{}' has no 'data' tensor", self.kind, self.key()))
    }

    pub fn key(&self) -> &str {
        self.meta.key()
    }
}

/// An item laid out for the ABI. Keeps the buffers its raw pointers point into.
pub struct FfiItemBuf {
    kind: String,
    meta_json: String,
    names: Vec<String>,
    shapes: Vec<(Vec<i64>, Vec<i64>)>,
    tensors: Vec<FfiNamedTensor>,
    item: FfiItem,
    /// Whether the tensors' owner references were handed to a receiver.
    transferred: bool,
}

impl FfiItemBuf {
    /// Lays out `item`; each tensor's owner holds one new reference, released on drop unless
    /// [`FfiItemBuf::mark_transferred`] says the receiver took them.
    pub fn new(item: &Item) -> Self {
        let mut buf = FfiItemBuf {
            kind: item.kind.clone(),
            meta_json: serde_json::to_string(&item.meta.0).unwrap_or_else(|_| "{}".into()),
            names: item.tensors.iter().map(|(n, _)| n.clone()).collect(),
            shapes: vec![(Vec::new(), Vec::new()); item.tensors.len()],
            tensors: Vec::with_capacity(item.tensors.len()),
            item: FfiItem {
                kind: StrRef::EMPTY,
                meta_json: StrRef::EMPTY,
                tensors: std::ptr::null(),
                n_tensors: 0,
            },
            transferred: false,
        };
        for (i, (_, t)) in item.tensors.iter().enumerate() {
            let (s, st) = &mut buf.shapes[i];
            let ffi: FfiTensor = t.to_ffi(s, st);
            buf.tensors.push(FfiNamedTensor {
                name: StrRef::new(&buf.names[i]),
                tensor: ffi,
            });
        }
        buf.item = FfiItem {
            kind: StrRef::new(&buf.kind),
            meta_json: StrRef::new(&buf.meta_json),
            tensors: buf.tensors.as_ptr(),
            n_tensors: buf.tensors.len(),
        };
        buf
    }

    pub fn as_ptr(&self) -> *const FfiItem {
        &self.item
    }

    /// The receiver took ownership of the tensors' references (an emit that returned).
    pub fn mark_transferred(&mut self) {
        self.transferred = true;
    }
}

impl Drop for FfiItemBuf {
    fn drop(&mut self) {
        if !self.transferred {
            for t in &self.tensors {
                // SAFETY: one reference per tensor was taken in `new` and never handed over.
                unsafe { (t.tensor.release)(t.tensor.owner) };
            }
        }
    }
}

/// Reads an item from the ABI. With `take_ownership`, the tensors' owner references are taken
/// over (emitted items); otherwise they are retained (borrowed inputs).
///
/// # Safety
/// `item` must point to a valid `FfiItem` per the ABI rules.
pub unsafe fn item_from_ffi(item: *const FfiItem, take_ownership: bool) -> Result<Item> {
    if item.is_null() {
        bail!("null item");
    }
    // SAFETY: the caller guarantees validity for the call.
    let item = unsafe { &*item };
    let tensors: &[FfiNamedTensor] = if item.n_tensors == 0 || item.tensors.is_null() {
        &[]
    } else {
        // SAFETY: the ABI guarantees `n_tensors` entries.
        unsafe { std::slice::from_raw_parts(item.tensors, item.n_tensors) }
    };
    let mut out = Vec::with_capacity(tensors.len());
    let mut first_err = None;
    for t in tensors {
        // SAFETY: valid per the ABI; on error the reference is released inside from_ffi.
        match unsafe { Tensor::from_ffi(&t.tensor, take_ownership) } {
            Ok(tensor) => out.push((unsafe { t.name.as_str() }.to_string(), tensor)),
            Err(e) => first_err = first_err.or(Some(e)),
        }
    }
    if let Some(e) = first_err {
        return Err(e);
    }
    // SAFETY: borrowed strings valid for the call.
    let kind = unsafe { item.kind.as_str() }.to_string();
    let meta_json = unsafe { item.meta_json.as_str() };
    let meta = if meta_json.is_empty() {
        Map::new()
    } else {
        match serde_json::from_str::<Value>(meta_json).context("item metadata is not JSON")? {
            Value::Object(m) => m,
            _ => bail!("item metadata is not a JSON object"),
        }
    };
    Ok(Item {
        kind,
        meta: Meta(meta),
        tensors: out,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Metadata crosses the ABI as JSON: every float must come back with the same bits, or an
    /// output would depend on whether a (separately built) plugin stage touched the item.
    #[test]
    fn float_metadata_crosses_the_abi_bit_for_bit() {
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut values: Vec<f64> = vec![1.6666666666666665, 0.1, 2.0 / 3.0, 5e-324, 1e308];
        for _ in 0..20_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let v = f64::from_bits(x);
            if v.is_finite() {
                values.push(v);
            }
            values.push((x >> 11) as f64 / (1u64 << 53) as f64 * 1000.0);
        }
        let mut item = Item::new(kinds::VOLUME, "k");
        item.meta.set("values", &values);
        let buf = FfiItemBuf::new(&item);
        let back = unsafe { item_from_ffi(buf.as_ptr(), false) }.unwrap();
        let got: Vec<f64> = back.meta.get("values").unwrap();
        assert_eq!(got.len(), values.len());
        for (a, b) in values.iter().zip(&got) {
            assert_eq!(a.to_bits(), b.to_bits(), "{a:e} came back as {b:e}");
        }
    }
}
