//! The `augment` stage: `Params` and `impl Stage`; the transforms live in `mindscan-augment`.

use std::collections::HashSet;
use std::sync::{Arc, Mutex, Once};

use mindscan_cuda::CudaStream;

use mindscan_augment::{Geometry, Plan, TransformSpec, Volume, draw, exec, validate};
use mindscan_cuda::{DeviceRequest, Resolved};
use mindscan_sdk::prelude::*;

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AugmentParams {
    /// Items emitted per input, each a new draw of the composition.
    #[serde(default = "one")]
    #[schemars(range(min = 1, max = 10000))]
    pub variants: u32,
    /// The composition, applied in order: e.g. `[{flip: {axes: [LR]}}, {affine: {degrees: 10}}]`.
    pub transforms: Vec<TransformSpec>,
    /// Also emit the input itself (as float32, unchanged, stem suffix `_original`, after its
    /// variants), so the dataset holds the real scan beside them.
    #[serde(default)]
    pub keep_original: bool,
    /// Tensor of the item holding a label map moved with the image (nearest neighbour); it
    /// keeps only its label values. Absent tensors are fine.
    #[serde(default = "label")]
    pub label: String,
    /// `auto` (CUDA when driver, NVRTC and a GPU are there), `cpu`, `cuda` or `cuda:N`.
    #[serde(default = "auto")]
    pub device: String,
    /// Plans recorded in a manifest's `augment` column: run exactly these (one item each)
    /// instead of drawing, to regenerate dataset rows byte for byte.
    #[serde(default)]
    pub replay: Vec<Plan>,
}

fn one() -> u32 {
    1
}
fn label() -> String {
    "label".into()
}
fn auto() -> String {
    "auto".into()
}

pub struct Augment {
    specs: Vec<TransformSpec>,
    variants: u32,
    keep_original: bool,
    label: String,
    replay: Vec<Plan>,
    device: Resolved,
    announced: Once,
    /// One CUDA stream per worker, handed out and returned per item.
    streams: Mutex<Vec<Arc<CudaStream>>>,
    /// Transforms already reported as running on the CPU.
    cpu_fallbacks: Mutex<HashSet<&'static str>>,
}

impl Stage for Augment {
    type Params = AugmentParams;
    const NAME: &'static str = "augment";
    const ROLE: Role = Role::Transform;
    const INPUTS: &'static [&'static str] = &[kinds::VOLUME, kinds::IMAGE];
    const OUTPUTS: &'static [&'static str] = &["same"];
    const DESCRIPTION: &'static str = "Multiply a dataset: TorchIO's transforms (flip, affine, elastic, motion, ghosting, spike, bias field, blur, noise, gamma, ...), seeded per variant, on CPU or CUDA";

    fn new(p: AugmentParams, _host: &Host) -> Result<Self> {
        validate(&p.transforms)?;
        if p.transforms.is_empty() && p.replay.is_empty() {
            bail!("transforms is empty: list at least one transform");
        }
        let request: DeviceRequest = p.device.parse()?;
        let device = mindscan_cuda::resolve(request)?;
        Ok(Augment {
            specs: p.transforms,
            variants: p.variants,
            keep_original: p.keep_original,
            label: p.label,
            replay: p.replay,
            device,
            announced: Once::new(),
            streams: Mutex::new(Vec::new()),
            cpu_fallbacks: Mutex::new(HashSet::new()),
        })
    }

    fn process(&self, ctx: &Context, item: Item, out: &mut Emitter) -> Result<()> {
        self.announced
            .call_once(|| ctx.info(&format!("running on {}", self.device)));
        let input = Input::read(&item, &self.label)?;
        let labels = input.label.as_ref().map(|l| label_values(&l.data));
        let geo = Geometry {
            dims: input.volume.dims,
            affine: &input.volume.affine,
            labels: labels.as_deref(),
        };
        let plans: Vec<Plan> = if self.replay.is_empty() {
            (0..self.variants)
                .map(|v| draw(&self.specs, ctx.seed(), v, &geo))
                .collect::<Result<_>>()?
        } else {
            self.replay.clone()
        };
        for plan in plans {
            let (vol, label) = self.run(ctx, &plan, &input)?;
            let name = format!("aug{:03}", plan.variant);
            let mut variant = input.item_for(&item, &name, vol, label)?;
            variant.meta.set("augment", &plan);
            out.emit(variant)?;
        }
        if self.keep_original {
            // Last, so its voxels move into the item instead of being copied.
            let mut input = input;
            let empty = input.volume.clone_empty();
            let vol = std::mem::replace(&mut input.volume, empty);
            let label = input.label.take();
            out.emit(input.item_for(&item, "original", vol, label)?)?;
        }
        Ok(())
    }
}

impl Augment {
    /// One plan on the chosen device: CUDA when the GPU has kernels for every step of it,
    /// otherwise the CPU (said once per transform).
    fn run(&self, ctx: &Context, plan: &Plan, input: &Input) -> Result<(Volume, Option<Volume>)> {
        if let Resolved::Cuda(gpu) = &self.device {
            match mindscan_augment::cuda::unsupported(plan) {
                None => {
                    let stream = self.streams.lock().unwrap_or_else(|p| p.into_inner()).pop();
                    let stream = match stream {
                        Some(s) => s,
                        None => gpu.stream()?,
                    };
                    let out = mindscan_augment::cuda::run(
                        gpu,
                        &stream,
                        plan,
                        &input.volume,
                        input.label.as_ref(),
                    );
                    self.streams
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .push(stream);
                    return out;
                }
                Some(what) => {
                    let first = self
                        .cpu_fallbacks
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .insert(what);
                    if first {
                        ctx.info(&format!(
                            "{what} has no CUDA kernel yet: plans with it run on the CPU"
                        ));
                    }
                }
            }
        }
        exec::run_borrowed(plan, &input.volume, input.label.as_ref())
    }
}

/// Sorted distinct values of a label map (at most 10,000: a label map, not an image).
fn label_values(data: &[f32]) -> Vec<f64> {
    let mut v: Vec<f32> = Vec::new();
    for &x in data {
        if let Err(pos) = v.binary_search_by(|a| a.total_cmp(&x)) {
            if v.len() >= 10_000 {
                break;
            }
            v.insert(pos, x);
        }
    }
    v.into_iter().map(|x| x as f64).collect()
}

/// The input item as f32 volumes (a 2D image is a volume one voxel deep).
struct Input {
    kind: String,
    shape: Vec<usize>,
    volume: Volume,
    label: Option<Volume>,
    label_dtype: Option<DType>,
    label_name: String,
}

impl Input {
    fn read(item: &Item, label_name: &str) -> Result<Input> {
        let data = item.data()?;
        let shape = data.shape().to_vec();
        let (dims, affine) = match (item.kind.as_str(), shape.as_slice()) {
            (kinds::VOLUME, [ni, nj, nk]) => {
                let affine = item.meta.affine().context("the volume has no affine")?;
                ([*ni, *nj, *nk], affine)
            }
            (kinds::VOLUME, [_, _, _, nt]) if *nt == 1 => {
                let affine = item.meta.affine().context("the volume has no affine")?;
                ([shape[0], shape[1], shape[2]], affine)
            }
            (kinds::VOLUME, s) => bail!(
                "augment takes 3D volumes; this one is {s:?} (select one frame first, e.g. \
                 volume.slice frames, or split the series)"
            ),
            (_, [rows, cols]) => {
                let sp: Vec<f64> = item
                    .meta
                    .get(keys::SPACING)
                    .unwrap_or_else(|| vec![1.0, 1.0]);
                let (sr, sc) = (
                    sp.first().copied().unwrap_or(1.0),
                    sp.get(1).copied().unwrap_or(1.0),
                );
                // Row-major [rows, cols] is i = column fastest: a volume [cols, rows, 1].
                let affine = [
                    [sc, 0.0, 0.0, 0.0],
                    [0.0, sr, 0.0, 0.0],
                    [0.0, 0.0, 1.0, 0.0],
                    [0.0, 0.0, 0.0, 1.0],
                ];
                ([*cols, *rows, 1], affine)
            }
            (k, s) => bail!("augment takes volumes and 2D images, not a {k} of shape {s:?}"),
        };
        let dense = |t: &Tensor| -> Result<Vec<f32>> {
            let ok = if item.kind == kinds::VOLUME {
                t.is_f_contiguous()
            } else {
                t.is_c_contiguous()
            };
            if !ok {
                bail!("the tensor is not stored in the item kind's dense order");
            }
            t.to_f32_vec()
        };
        let volume = Volume::new(dense(data)?, dims, affine)?;
        let (label, label_dtype) = match item.tensor(label_name) {
            Some(t) => {
                if t.shape() != data.shape() {
                    bail!(
                        "label map '{label_name}' is {:?}, the image {:?}",
                        t.shape(),
                        data.shape()
                    );
                }
                (Some(Volume::new(dense(t)?, dims, affine)?), Some(t.dtype()))
            }
            None => (None, None),
        };
        Ok(Input {
            kind: item.kind.clone(),
            shape,
            volume,
            label,
            label_dtype,
            label_name: label_name.to_string(),
        })
    }

    /// An output item: the input's metadata, a new key and stem, the transformed tensors.
    fn item_for(
        &self,
        item: &Item,
        name: &str,
        vol: Volume,
        label: Option<Volume>,
    ) -> Result<Item> {
        let key = format!("{}#{name}", item.key());
        let mut meta = item.meta.clone();
        meta.set(keys::KEY, &key);
        let stem = item
            .meta
            .str("stem")
            .map(str::to_string)
            .unwrap_or_else(|| file_stem(item.meta.source().unwrap_or(item.key())));
        meta.set("stem", format!("{stem}_{name}"));
        // Slices of this variant name their own volume (manifest `volume` column).
        meta.0.remove("volume_key");
        meta.0.remove(keys::WINDOW);
        let tensor = |data: Vec<f32>| -> Tensor {
            if self.kind == kinds::VOLUME {
                Tensor::volume(data, &self.shape)
            } else {
                Tensor::from_vec(data, &self.shape)
            }
        };
        let mut out = Item {
            kind: self.kind.clone(),
            meta,
            tensors: Vec::new(),
        };
        for (n, t) in &item.tensors {
            if n != "data" && *n != self.label_name {
                out.tensors.push((n.clone(), t.clone()));
            }
        }
        out.set_tensor("data", tensor(vol.data));
        if let (Some(l), Some(dt)) = (label, self.label_dtype) {
            let t = cast_label(l.data, dt, &self.shape, &self.kind);
            out.set_tensor(&self.label_name, t);
        }
        Ok(out)
    }
}

/// Back to the label map's own dtype (nearest neighbour kept every value exact).
fn cast_label(data: Vec<f32>, dt: DType, shape: &[usize], kind: &str) -> Tensor {
    fn make<T: Element>(v: Vec<T>, shape: &[usize], kind: &str) -> Tensor {
        if kind == kinds::VOLUME {
            Tensor::volume(v, shape)
        } else {
            Tensor::from_vec(v, shape)
        }
    }
    macro_rules! cast {
        ($($d:ident => $t:ty),*) => {
            match dt {
                $(DType::$d => make(data.into_iter().map(|v| v as $t).collect::<Vec<$t>>(), shape, kind),)*
                _ => make(data, shape, kind),
            }
        };
    }
    cast!(U8 => u8, I8 => i8, U16 => u16, I16 => i16, U32 => u32, I32 => i32, F64 => f64)
}

/// File name without `.nii`, `.nii.gz`, `.dcm`.
fn file_stem(path: &str) -> String {
    let name = path.rsplit(['/', '\\']).next().unwrap_or(path);
    let lower = name.to_ascii_lowercase();
    for ext in [".nii.gz", ".nii", ".dcm"] {
        if lower.ends_with(ext) && lower.len() > ext.len() {
            return name[..name.len() - ext.len()].to_string();
        }
    }
    name.to_string()
}
