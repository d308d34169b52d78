//! `diffusion.sample` (a source: synthetic images from noise) and `diffusion.img2img` (a
//! transform: SDEdit variants of real images). Both run MONAI's DDPM or DDIM with a trained
//! UNet and record in each image's metadata (`diffusion`, a manifest column) everything that
//! made it: seed, sampler, steps, eta, strength, class and the weights' SHA-256.

use std::path::Path;

use mindscan_diffusion::sampler::{Batch, GivenStart, PhiloxNoise, Sampling};
use mindscan_diffusion::schedule::{Plan, SamplerKind};
use mindscan_diffusion::tensor_file;
use mindscan_sdk::prelude::*;
use mindscan_sdk::seed::derive_seed;

use crate::model::{Model, check_device, pool};

#[derive(Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SamplerName {
    /// Deterministic with eta 0; 50 steps by default.
    #[default]
    Ddim,
    /// Every training step by default (1000).
    Ddpm,
}

/// The sampler settings both stages share.
#[derive(Deserialize, JsonSchema, Clone, Debug)]
#[serde(deny_unknown_fields)]
pub struct SamplerParams {
    #[serde(default)]
    pub sampler: SamplerName,
    /// Inference steps (default: 50 for DDIM, the training steps for DDPM).
    pub steps: Option<usize>,
    /// DDIM's eta: 0 is deterministic, 1 is DDPM-like.
    #[serde(default)]
    pub eta: f64,
}

fn plan_for(model: &Model, p: &SamplerParams) -> Result<Plan> {
    let sched = model.card.scheduler.clone();
    let (kind, default_steps) = match p.sampler {
        SamplerName::Ddim => (
            SamplerKind::Ddim { eta: p.eta as f32 },
            50.min(sched.train_steps()),
        ),
        SamplerName::Ddpm => {
            if p.eta != 0.0 {
                bail!("eta applies to ddim only");
            }
            (SamplerKind::Ddpm, sched.train_steps())
        }
    };
    Plan::new(sched, kind, p.steps.unwrap_or(default_steps))
}

fn record(model: &Model, plan: &Plan, p: &SamplerParams, seed: u64) -> serde_json::Value {
    serde_json::json!({
        "seed": seed,
        "sampler": plan.kind.name(),
        "steps": plan.timesteps.len(),
        "eta": p.eta,
        "model": model.dir.display().to_string(),
        "model_sha256": model.sha256,
    })
}

fn classes_for(model: &Model, class: Option<u32>, n: usize) -> Result<Option<Vec<u32>>> {
    match (model.unet.config().num_class_embeds, class) {
        (Some(k), Some(c)) if (c as usize) < k => Ok(Some(vec![c; n])),
        (Some(k), Some(c)) => bail!("class {c} outside the model's {k} classes"),
        (Some(k), None) => bail!("the model is class-conditioned ({k} classes): give `class`"),
        (None, Some(_)) => bail!("the model has no class embedding: remove `class`"),
        (None, None) => Ok(None),
    }
}

/// An image item in the model's range, windowed to it for the writers.
fn image_item(key: &str, data: Vec<f32>, rows: usize, cols: usize, range: [f32; 2]) -> Item {
    let mut item =
        Item::new(kinds::IMAGE, key).with_tensor("data", Tensor::from_vec(data, &[rows, cols]));
    item.meta.set(
        keys::WINDOW,
        serde_json::json!({ "mode": "fixed", "lo": range[0], "hi": range[1] }),
    );
    item
}

// ------------------------------------------------------------------ diffusion.sample

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SampleParams {
    /// Model directory: config.json + model.safetensors (see `tools/export_monai.py`).
    pub model: String,
    /// Images to generate.
    #[schemars(range(min = 1))]
    pub count: u64,
    /// Images denoised together (memory: about batch × 40 floats per pixel).
    #[serde(default = "eight")]
    #[schemars(range(min = 1, max = 4096))]
    pub batch: usize,
    #[serde(flatten)]
    pub sampler: SamplerParams,
    /// Class label, for class-conditioned models.
    pub class: Option<u32>,
    /// Starting noise x_T as a tensor file (.safetensors tensor `noise`, or .npy), shape
    /// [N, C, H, W] with N >= count: reproduces a PyTorch run (DDIM, eta 0) from the same noise.
    pub noise_file: Option<String>,
    /// Output size [rows, cols] (default: the model's training size); the UNet is fully
    /// convolutional, sizes must divide by 2 per down level.
    pub size: Option<[usize; 2]>,
    /// Name stem of the images (`{stem}/sample_{index:03}.jpg` by image.write's default).
    #[serde(default = "synthetic")]
    pub stem: String,
    /// `auto` or `cpu` (the UNet has no CUDA path yet).
    #[serde(default = "auto")]
    pub device: String,
    /// Threads for the UNet's products (0: every core).
    #[serde(default)]
    pub threads: usize,
}

fn eight() -> usize {
    8
}
fn synthetic() -> String {
    "synthetic".into()
}
fn auto() -> String {
    "auto".into()
}

pub struct DiffusionSample {
    model: Model,
    plan: Plan,
    params: SampleParams,
    classes: Option<u32>,
    noise: Option<tensor_file::F32Tensor>,
    size: [usize; 2],
    device: &'static str,
    pool: rayon::ThreadPool,
    shard: mindscan_sdk::shard::Shard,
}

impl Stage for DiffusionSample {
    type Params = SampleParams;
    const NAME: &'static str = "diffusion.sample";
    const ROLE: Role = Role::Source;
    const INPUTS: &'static [&'static str] = &[];
    const OUTPUTS: &'static [&'static str] = &[kinds::IMAGE];
    const DESCRIPTION: &'static str =
        "Synthetic images from a trained MONAI DiffusionModelUNet: DDPM or DDIM from seeded noise";

    fn new(p: SampleParams, host: &Host) -> Result<Self> {
        let device = check_device(&p.device)?;
        let model = Model::load(Path::new(&p.model))?;
        let plan = plan_for(&model, &p.sampler)?;
        classes_for(&model, p.class, 1)?;
        let size = p.size.unwrap_or(model.card.image_size);
        let c = model.unet.config().in_channels;
        if c != 1 {
            bail!(
                "{}: the model makes {c}-channel images; image items are single-channel",
                p.model
            );
        }
        let noise = match &p.noise_file {
            None => None,
            Some(f) => {
                let t = tensor_file::read_f32(Path::new(f), "noise")?;
                let want = [c, size[0], size[1]];
                if t.shape.len() != 4 || t.shape[1..] != want || (t.shape[0] as u64) < p.count {
                    bail!(
                        "{f}: noise of shape {:?}; this run needs [N >= {}, {}, {}, {}]",
                        t.shape,
                        p.count,
                        want[0],
                        want[1],
                        want[2]
                    );
                }
                Some(t)
            }
        };
        Ok(DiffusionSample {
            pool: pool(p.threads)?,
            classes: p.class,
            model,
            plan,
            noise,
            size,
            device,
            params: p,
            shard: host.shard(),
        })
    }

    fn produce(&self, ctx: &Context, out: &mut Emitter) -> Result<()> {
        if ctx.worker_index() == 0 {
            ctx.info(&format!(
                "{} × {} {}-step on {}, model sha256 {}",
                self.params.count,
                self.plan.kind.name(),
                self.plan.timesteps.len(),
                self.device,
                &self.model.sha256[..12]
            ));
        }
        let count = self.params.count as usize;
        let batch = self.params.batch;
        let [h, w] = self.size;
        let batches = count.div_ceil(batch);
        // Batch b always holds images b·batch.., whatever the worker count: an image's bytes
        // depend on its seed (and the batch size), not on who ran it.
        // A split run (`--shard`) samples every COUNT-th batch.
        let mine = (0..batches).filter(|&b| self.shard.keeps_number(b as u64));
        for b in mine.skip(ctx.worker_index()).step_by(ctx.worker_count()) {
            out.wait_ready()?;
            let first = b * batch;
            let n = batch.min(count - first);
            let keys: Vec<String> = (first..first + n)
                .map(|i| format!("sample-{i:06}"))
                .collect();
            let seeds: Vec<u64> = keys
                .iter()
                .map(|k| derive_seed(ctx.seed(), "sample", k))
                .collect();
            let classes = classes_for(&self.model, self.classes, n)?;
            let sampling = Sampling {
                model: &self.model.unet,
                plan: &self.plan,
                batch: Batch { n, c: 1, h, w },
                class_labels: classes.as_deref(),
            };
            let mut philox = PhiloxNoise::new(&seeds);
            let x = self.pool.install(|| match &self.noise {
                Some(t) => {
                    let il = h * w;
                    let mut given = GivenStart {
                        start: &t.data[first * il..(first + n) * il],
                        then: &mut philox,
                    };
                    sampling.from_noise(&mut given, None)
                }
                None => sampling.from_noise(&mut philox, None),
            })?;
            for (j, img) in x.chunks_exact(h * w).enumerate() {
                let i = first + j;
                let mut item = image_item(&keys[j], img.to_vec(), h, w, self.model.card.range);
                let mut rec = record(&self.model, &self.plan, &self.params.sampler, seeds[j]);
                rec["index"] = i.into();
                rec["class"] = serde_json::to_value(self.classes)?;
                rec["strength"] = serde_json::Value::Null;
                rec["noise_file"] = serde_json::to_value(&self.params.noise_file)?;
                item.meta.set("diffusion", rec);
                item.meta.set("stem", &self.params.stem);
                // One "volume" of `count` slices: image.write's contact sheet tiles them all.
                item.meta.set("volume_key", ctx.stage_id());
                item.meta.set(keys::PLANE, "sample");
                item.meta.set(keys::INDEX, i);
                item.meta.set(keys::SLICE_COUNT, count);
                out.emit(item)?;
            }
        }
        Ok(())
    }
}

// ------------------------------------------------------------------ diffusion.img2img

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Img2ImgParams {
    /// Model directory: config.json + model.safetensors.
    pub model: String,
    /// How far toward noise each image goes before denoising: 0 keeps it, 1 is pure noise.
    /// SDEdit keeps the last ⌊steps·strength⌋ steps.
    #[serde(default = "half")]
    pub strength: f64,
    /// Variants per input image.
    #[serde(default = "one")]
    #[schemars(range(min = 1, max = 10000))]
    pub variants: u32,
    /// Variants denoised together.
    #[serde(default = "eight")]
    #[schemars(range(min = 1, max = 4096))]
    pub batch: usize,
    #[serde(flatten)]
    pub sampler: SamplerParams,
    pub class: Option<u32>,
    /// How input intensities reach the model's range: `minmax` (per image), `window` (the one
    /// `intensity.window` recorded) or `none`.
    #[serde(default)]
    pub intensity: crate::noise::Intensity,
    #[serde(default = "auto")]
    pub device: String,
    #[serde(default)]
    pub threads: usize,
}

fn half() -> f64 {
    0.5
}
fn one() -> u32 {
    1
}

pub struct DiffusionImg2Img {
    model: Model,
    plan: Plan,
    params: Img2ImgParams,
    pool: rayon::ThreadPool,
}

impl Stage for DiffusionImg2Img {
    type Params = Img2ImgParams;
    const NAME: &'static str = "diffusion.img2img";
    const ROLE: Role = Role::Transform;
    const INPUTS: &'static [&'static str] = &[kinds::IMAGE];
    const OUTPUTS: &'static [&'static str] = &[kinds::IMAGE];
    const DESCRIPTION: &'static str = "SDEdit: real images noised to a strength and denoised by a trained UNet into variants that keep the anatomy";

    fn new(p: Img2ImgParams, _host: &Host) -> Result<Self> {
        check_device(&p.device)?;
        let model = Model::load(Path::new(&p.model))?;
        let plan = plan_for(&model, &p.sampler)?;
        plan.from_strength(p.strength as f32)?;
        classes_for(&model, p.class, 1)?;
        if model.unet.config().in_channels != 1 {
            bail!("{}: img2img needs a single-channel model", p.model);
        }
        Ok(DiffusionImg2Img {
            pool: pool(p.threads)?,
            model,
            plan,
            params: p,
        })
    }

    fn process(&self, ctx: &Context, item: Item, out: &mut Emitter) -> Result<()> {
        let data = item.data()?;
        let [h, w] = match data.shape() {
            [r, c] => [*r, *c],
            s => bail!("diffusion.img2img takes 2D images, got shape {s:?}"),
        };
        let mut x0 = data.to_f32_vec()?;
        crate::noise::scale(
            self.params.intensity,
            &item.meta,
            &mut x0,
            self.model.card.range,
        )?;
        let stem = item.meta.str("stem").unwrap_or(item.key()).to_string();
        let variants = self.params.variants as usize;
        for first in (0..variants).step_by(self.params.batch) {
            let n = self.params.batch.min(variants - first);
            let keys: Vec<String> = (first..first + n)
                .map(|v| format!("{}#sdedit{v:03}", item.key()))
                .collect();
            let seeds: Vec<u64> = (first..first + n)
                .map(|v| derive_seed(ctx.seed(), "sdedit", &v.to_string()))
                .collect();
            let classes = classes_for(&self.model, self.params.class, n)?;
            let batch_x0: Vec<f32> = (0..n).flat_map(|_| x0.iter().copied()).collect();
            let sampling = Sampling {
                model: &self.model.unet,
                plan: &self.plan,
                batch: Batch { n, c: 1, h, w },
                class_labels: classes.as_deref(),
            };
            let mut philox = PhiloxNoise::new(&seeds);
            let x = self
                .pool
                .install(|| {
                    sampling.from_image(&batch_x0, self.params.strength as f32, &mut philox, None)
                })
                .with_context(|| item.meta.source().unwrap_or(item.key()).to_string())?;
            for (j, img) in x.chunks_exact(h * w).enumerate() {
                let v = first + j;
                let mut variant = image_item(&keys[j], img.to_vec(), h, w, self.model.card.range);
                let mut meta = item.meta.clone();
                meta.0.remove(keys::WINDOW);
                for (k, val) in variant.meta.0 {
                    meta.0.insert(k, val);
                }
                variant.meta = meta;
                let mut rec = record(&self.model, &self.plan, &self.params.sampler, seeds[j]);
                rec["variant"] = v.into();
                rec["strength"] = self.params.strength.into();
                rec["class"] = serde_json::to_value(self.params.class)?;
                variant.meta.set("diffusion", rec);
                variant.meta.set("stem", format!("{stem}_sdedit{v:03}"));
                out.emit(variant)?;
            }
        }
        Ok(())
    }
}
