//! `diffusion.noise`: the forward process q(x_t | x₀) on real images or volumes — training pairs
//! (x_t, ε, t) for people who train elsewhere, written by `tensor.write`.

use std::path::Path;

use mindscan_diffusion::schedule::{Scheduler, SchedulerConfig};
use mindscan_random::{Purpose, Stream, fill_normals};
use mindscan_sdk::prelude::*;

use crate::model::{Card, to_model_range};

#[derive(Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum Intensity {
    /// Each image's minimum and maximum map to the model's range (default [-1, 1]).
    #[default]
    Minmax,
    /// The window recorded by `intensity.window` maps to the model's range, clipped (as the
    /// training script scaled its slices: percentiles 0.5–99.5 → [-1, 1]).
    Window,
    /// Intensities are used as they come (already in the model's range).
    None,
}

/// `x` in the model's range as `mode` says; `meta` may hold a recorded window.
pub fn scale(mode: Intensity, meta: &Meta, x: &mut [f32], range: [f32; 2]) -> Result<()> {
    match mode {
        Intensity::Minmax => to_model_range(x, range),
        Intensity::None => {}
        Intensity::Window => {
            let w = meta.0.get(keys::WINDOW);
            let lo = w.and_then(|w| w.get("lo")).and_then(|v| v.as_f64());
            let hi = w.and_then(|w| w.get("hi")).and_then(|v| v.as_f64());
            let (Some(lo), Some(hi)) = (lo, hi) else {
                bail!("intensity: window needs a window from intensity.window before this stage");
            };
            let (lo, span) = (lo as f32, (hi - lo) as f32);
            for v in x.iter_mut() {
                let u = if span > 0.0 {
                    ((*v - lo) / span).clamp(0.0, 1.0)
                } else {
                    0.0
                };
                *v = range[0] + u * (range[1] - range[0]);
            }
        }
    }
    Ok(())
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NoiseParams {
    /// A model directory: its training scheduler and intensity range are used.
    pub model: Option<String>,
    /// The scheduler, when there is no model yet (MONAI's DDPMScheduler keywords:
    /// `num_train_timesteps`, `schedule`, `beta_start`, ...). Default: MONAI's defaults.
    #[schemars(with = "Option<serde_json::Value>")]
    pub scheduler: Option<SchedulerConfig>,
    /// Noise every pair to this timestep; default: a random timestep per pair.
    pub timestep: Option<i64>,
    /// Random timesteps are drawn uniformly from `[lo, hi]` (inclusive; default all).
    pub timesteps: Option<[i64; 2]>,
    /// Pairs per input, each with its own timestep and noise.
    #[serde(default = "one")]
    #[schemars(range(min = 1, max = 10000))]
    pub pairs: u32,
    /// How input intensities reach the model's range.
    #[serde(default)]
    pub intensity: Intensity,
    /// Also emit `v`, the v-prediction target sqrt(ᾱ)ε − sqrt(1−ᾱ)x₀.
    #[serde(default)]
    pub velocity: bool,
}

fn one() -> u32 {
    1
}

pub struct DiffusionNoise {
    scheduler: Scheduler,
    range: [f32; 2],
    t_range: [i64; 2],
    fixed_t: Option<i64>,
    pairs: u32,
    intensity: Intensity,
    velocity: bool,
}

impl Stage for DiffusionNoise {
    type Params = NoiseParams;
    const NAME: &'static str = "diffusion.noise";
    const ROLE: Role = Role::Transform;
    const INPUTS: &'static [&'static str] = &[kinds::IMAGE, kinds::VOLUME];
    const OUTPUTS: &'static [&'static str] = &[PAIR];
    const DESCRIPTION: &'static str = "Forward diffusion q(x_t | x0): noised training pairs (x_t, noise, t) from real images, MONAI's schedules";

    fn new(p: NoiseParams, _host: &Host) -> Result<Self> {
        let (scheduler, range) = match (&p.model, p.scheduler) {
            (Some(_), Some(_)) => bail!("give `model` or `scheduler`, not both"),
            (Some(dir), None) => {
                let card = Card::read(Path::new(dir))?;
                (card.scheduler, card.range)
            }
            (None, s) => (Scheduler::new(s.unwrap_or_default())?, [-1.0, 1.0]),
        };
        let n = scheduler.train_steps() as i64;
        let t_range = p.timesteps.unwrap_or([0, n - 1]);
        if !(0 <= t_range[0] && t_range[0] <= t_range[1] && t_range[1] < n) {
            bail!("timesteps {t_range:?} must satisfy 0 <= lo <= hi < {n}");
        }
        if let Some(t) = p.timestep {
            if p.timesteps.is_some() {
                bail!("give `timestep` or `timesteps`, not both");
            }
            if !(0..n).contains(&t) {
                bail!("timestep {t} outside 0..{n}");
            }
        }
        Ok(DiffusionNoise {
            scheduler,
            range,
            t_range,
            fixed_t: p.timestep,
            pairs: p.pairs,
            intensity: p.intensity,
            velocity: p.velocity,
        })
    }

    fn process(&self, ctx: &Context, item: Item, out: &mut Emitter) -> Result<()> {
        let data = item.data()?;
        // Images [rows, cols] → [1, rows, cols]; volumes (NIfTI order, i fastest) are the same
        // memory as a C-order [1, nk, nj, ni] (torch's D, H, W).
        let shape: Vec<usize> = match (item.kind.as_str(), data.shape()) {
            (kinds::IMAGE, [r, c]) => vec![1, *r, *c],
            (kinds::VOLUME, [i, j, k]) if data.is_f_contiguous() => vec![1, *k, *j, *i],
            (kind, s) => {
                bail!("diffusion.noise takes 2D images or 3D volumes, got a {kind} of shape {s:?}")
            }
        };
        let mut x0 = data.to_f32_vec()?;
        scale(self.intensity, &item.meta, &mut x0, self.range)?;
        let n = x0.len();
        let mut words = Vec::new();
        for pair in 0..self.pairs {
            let t = match self.fixed_t {
                Some(t) => t,
                None => {
                    let span = (self.t_range[1] - self.t_range[0] + 1) as u32;
                    let mut draws = Stream::new(ctx.seed(), pair, 0, Purpose::Draw).reader();
                    self.t_range[0] + draws.below(span) as i64
                }
            };
            let mut eps = vec![0f32; n];
            fill_normals(
                &Stream::new(ctx.seed(), pair, 0, Purpose::Start),
                0,
                &mut words,
                &mut eps,
            );
            let mut xt = vec![0f32; n];
            self.scheduler.add_noise(&x0, &eps, t, &mut xt)?;
            let key = format!("{}#noise{pair:03}", item.key());
            let mut meta = item.meta.clone();
            meta.set(keys::KEY, &key);
            meta.set("diffusion.t", t);
            meta.set(
                "diffusion",
                serde_json::json!({ "stage": "noise", "t": t, "pair": pair, "seed": ctx.seed() }),
            );
            let mut pair_item = Item {
                kind: PAIR.to_string(),
                meta,
                tensors: Vec::new(),
            };
            if self.velocity {
                let mut v = vec![0f32; n];
                self.scheduler.velocity(&x0, &eps, t, &mut v)?;
                pair_item.set_tensor("v", Tensor::from_vec(v, &shape));
            }
            pair_item.set_tensor("x_t", Tensor::from_vec(xt, &shape));
            pair_item.set_tensor("noise", Tensor::from_vec(eps, &shape));
            pair_item.set_tensor("x_0", Tensor::from_vec(x0.clone(), &shape));
            out.emit(pair_item)?;
        }
        Ok(())
    }
}

/// Item kind of a training pair: tensors `x_t`, `noise`, `x_0` (and `v`), [C, ...spatial].
pub const PAIR: &str = "diffusion.pair";
