//! What the diffusion stages share: a trained model directory (UNet, training scheduler,
//! intensity range, checksum), the device choice and the thread pool.

use std::io::Read as _;
use std::path::{Path, PathBuf};

use mindscan_diffusion::schedule::{Scheduler, SchedulerConfig};
use mindscan_diffusion::unet::UNet;
use mindscan_sdk::prelude::*;
use sha2::{Digest, Sha256};

/// The parts of a model's config.json the stages read besides the architecture.
#[derive(Deserialize, Default)]
struct CardFile {
    #[serde(default)]
    scheduler: Option<SchedulerConfig>,
    #[serde(default)]
    image_size: Option<[usize; 2]>,
    #[serde(default)]
    intensity_range: Option<[f32; 2]>,
}

/// How a model was trained: its scheduler, image size and intensity range.
pub struct Card {
    pub scheduler: Scheduler,
    /// Size the model was trained on, [rows, cols].
    pub image_size: [usize; 2],
    /// Intensities the model works in (MONAI pipelines: [-1, 1] or [0, 1]).
    pub range: [f32; 2],
}

impl Card {
    /// Reads `dir/config.json` (not the weights).
    pub fn read(dir: &Path) -> Result<Card> {
        let path = dir.join("config.json");
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("{}: cannot read the model config", path.display()))?;
        let card: CardFile = serde_json::from_str(&text)
            .with_context(|| format!("{}: bad model config", path.display()))?;
        let scheduler = Scheduler::new(card.scheduler.unwrap_or_default())
            .with_context(|| format!("{}: scheduler", path.display()))?;
        let range = card.intensity_range.unwrap_or([-1.0, 1.0]);
        if range[0].partial_cmp(&range[1]) != Some(std::cmp::Ordering::Less) {
            bail!("{}: intensity_range {range:?} is empty", path.display());
        }
        Ok(Card {
            scheduler,
            image_size: card.image_size.unwrap_or([64, 64]),
            range,
        })
    }
}

/// A trained denoiser loaded from `dir` (config.json + model.safetensors).
pub struct Model {
    pub dir: PathBuf,
    pub unet: UNet,
    pub card: Card,
    /// SHA-256 of model.safetensors: which weights made an image (manifest `diffusion`).
    pub sha256: String,
}

impl Model {
    pub fn load(dir: &Path) -> Result<Model> {
        let card = Card::read(dir)?;
        let unet = UNet::load_dir(dir)?;
        Ok(Model {
            dir: dir.to_path_buf(),
            unet,
            card,
            sha256: sha256_file(&dir.join("model.safetensors"))?,
        })
    }
}

fn sha256_file(path: &Path) -> Result<String> {
    let mut f =
        std::fs::File::open(path).with_context(|| format!("{}: cannot open", path.display()))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f
            .read(&mut buf)
            .with_context(|| format!("{}: read", path.display()))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(h.finalize().iter().map(|b| format!("{b:02x}")).collect())
}

/// `device:` of a diffusion stage. The UNet has no CUDA path yet: `auto` runs on the CPU and
/// says so; `cuda` is refused rather than silently run elsewhere.
pub fn check_device(device: &str) -> Result<&'static str> {
    let request: mindscan_cuda::DeviceRequest = device.parse()?;
    match request {
        mindscan_cuda::DeviceRequest::Cpu => Ok("cpu"),
        mindscan_cuda::DeviceRequest::Auto => Ok("cpu (the diffusion UNet has no CUDA path yet)"),
        _ => bail!(
            "device `{device}`: the diffusion UNet runs on the CPU only so far; use `cpu` or `auto`"
        ),
    }
}

/// A thread pool for the UNet's products, `threads` wide (0: every core).
pub fn pool(threads: usize) -> Result<rayon::ThreadPool> {
    let n = if threads == 0 {
        std::thread::available_parallelism().map_or(1, |n| n.get())
    } else {
        threads
    };
    rayon::ThreadPoolBuilder::new()
        .num_threads(n)
        .thread_name(|i| format!("diffusion-{i}"))
        .build()
        .context("cannot start the diffusion thread pool")
}

/// The model's intensities → [lo, hi] of the input: min-max of each image.
pub fn to_model_range(data: &mut [f32], range: [f32; 2]) {
    let (mut lo, mut hi) = (f32::INFINITY, f32::NEG_INFINITY);
    for &v in data.iter() {
        if v.is_finite() {
            lo = lo.min(v);
            hi = hi.max(v);
        }
    }
    let span = hi - lo;
    for v in data.iter_mut() {
        *v = if span > 0.0 && v.is_finite() {
            range[0] + (*v - lo) / span * (range[1] - range[0])
        } else {
            range[0]
        };
    }
}
