//! Noise schedules and the DDPM/DDIM schedulers, as `monai.networks.schedulers` (1.6) computes
//! them: float32 tables, float32 arithmetic in the same order as its tensor expressions, and its
//! quirks kept (DDIM's timesteps are `linspace(999, 0, N).round()` while the previous timestep is
//! `t − 1000 // N`; DDPM with fewer steps still steps to `t − 1`'s ᾱ).
//!
//! Where torch's arithmetic is not plain f32 it is reproduced: `cumprod` accumulates in f64 and
//! rounds each entry (its CPU kernel's accumulator type), `linspace` fills from both ends, `**
//! 0.5` is `sqrt`, `round` is half-to-even.

use anyhow::{Result, bail};
use serde::{Deserialize, Serialize};

/// Which β schedule, with its parameters (MONAI's `NoiseSchedules` names).
#[derive(Clone, Debug, PartialEq)]
pub enum BetaSchedule {
    LinearBeta {
        beta_start: f64,
        beta_end: f64,
    },
    ScaledLinearBeta {
        beta_start: f64,
        beta_end: f64,
    },
    SigmoidBeta {
        beta_start: f64,
        beta_end: f64,
        sig_range: f64,
    },
    Cosine {
        s: f64,
    },
}

/// MONAI's schedule names.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ScheduleName {
    #[default]
    LinearBeta,
    ScaledLinearBeta,
    SigmoidBeta,
    Cosine,
}

/// What the network predicts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Prediction {
    #[default]
    Epsilon,
    Sample,
    VPrediction,
}

/// DDPM's variance choice (the learned variants need a model with twice the output channels).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VarianceType {
    #[default]
    FixedSmall,
    FixedLarge,
}

/// A model's training scheduler: MONAI's constructor keywords (the `scheduler` block of a
/// model's config.json). Unknown keys are refused so a typo cannot silently change a schedule.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SchedulerConfig {
    #[serde(default = "default_train_steps")]
    pub num_train_timesteps: usize,
    #[serde(default)]
    pub schedule: ScheduleName,
    /// β range of the linear, scaled-linear and sigmoid schedules (MONAI: 1e-4, 2e-2).
    #[serde(default)]
    pub beta_start: Option<f64>,
    #[serde(default)]
    pub beta_end: Option<f64>,
    /// Sigmoid schedule's input range ±sig_range (MONAI: 6).
    #[serde(default)]
    pub sig_range: Option<f64>,
    /// Cosine schedule's offset s (MONAI: 8e-3).
    #[serde(default)]
    pub s: Option<f64>,
    #[serde(default)]
    pub prediction_type: Prediction,
    #[serde(default = "yes")]
    pub clip_sample: bool,
    #[serde(default = "minus_one")]
    pub clip_sample_min: f32,
    #[serde(default = "one")]
    pub clip_sample_max: f32,
    #[serde(default)]
    pub variance_type: VarianceType,
    #[serde(default = "yes")]
    pub set_alpha_to_one: bool,
    #[serde(default)]
    pub steps_offset: usize,
}

fn default_train_steps() -> usize {
    1000
}
fn yes() -> bool {
    true
}
fn minus_one() -> f32 {
    -1.0
}
fn one() -> f32 {
    1.0
}

impl SchedulerConfig {
    /// The schedule with MONAI's defaults filled in; parameters the schedule does not take are
    /// refused rather than ignored.
    pub fn beta_schedule(&self) -> Result<BetaSchedule> {
        let (start, end) = (
            self.beta_start.unwrap_or(1e-4),
            self.beta_end.unwrap_or(2e-2),
        );
        let unused = |name: &str, set: bool| -> Result<()> {
            if set {
                bail!(
                    "scheduler: `{name}` does not apply to schedule {:?}",
                    self.schedule
                );
            }
            Ok(())
        };
        Ok(match self.schedule {
            ScheduleName::LinearBeta => {
                unused("sig_range", self.sig_range.is_some())?;
                unused("s", self.s.is_some())?;
                BetaSchedule::LinearBeta {
                    beta_start: start,
                    beta_end: end,
                }
            }
            ScheduleName::ScaledLinearBeta => {
                unused("sig_range", self.sig_range.is_some())?;
                unused("s", self.s.is_some())?;
                BetaSchedule::ScaledLinearBeta {
                    beta_start: start,
                    beta_end: end,
                }
            }
            ScheduleName::SigmoidBeta => {
                unused("s", self.s.is_some())?;
                BetaSchedule::SigmoidBeta {
                    beta_start: start,
                    beta_end: end,
                    sig_range: self.sig_range.unwrap_or(6.0),
                }
            }
            ScheduleName::Cosine => {
                unused("beta_start", self.beta_start.is_some())?;
                unused("beta_end", self.beta_end.is_some())?;
                unused("sig_range", self.sig_range.is_some())?;
                BetaSchedule::Cosine {
                    s: self.s.unwrap_or(8e-3),
                }
            }
        })
    }
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        serde_json::from_str("{}").expect("defaults deserialize")
    }
}

/// The β, α and ᾱ tables of a schedule, float32 like MONAI's.
#[derive(Clone, Debug)]
pub struct Tables {
    pub betas: Vec<f32>,
    pub alphas: Vec<f32>,
    pub alphas_cumprod: Vec<f32>,
}

impl Tables {
    pub fn new(schedule: &BetaSchedule, n: usize) -> Result<Tables> {
        if n == 0 {
            bail!("num_train_timesteps must be at least 1");
        }
        let betas: Vec<f32> = match *schedule {
            BetaSchedule::LinearBeta {
                beta_start,
                beta_end,
            } => linspace_f32(beta_start as f32, beta_end as f32, n),
            BetaSchedule::ScaledLinearBeta {
                beta_start,
                beta_end,
            } => linspace_f32(beta_start.sqrt() as f32, beta_end.sqrt() as f32, n)
                .into_iter()
                .map(|b| b * b)
                .collect(),
            BetaSchedule::SigmoidBeta {
                beta_start,
                beta_end,
                sig_range,
            } => {
                let span = (beta_end - beta_start) as f32;
                linspace_f32(-sig_range as f32, sig_range as f32, n)
                    .into_iter()
                    .map(|x| sigmoid(x) * span + beta_start as f32)
                    .collect()
            }
            BetaSchedule::Cosine { s } => return Ok(cosine(n, s)),
        };
        let alphas: Vec<f32> = betas.iter().map(|b| 1.0 - b).collect();
        let alphas_cumprod = cumprod(&alphas);
        Ok(Tables {
            betas,
            alphas,
            alphas_cumprod,
        })
    }

    pub fn len(&self) -> usize {
        self.betas.len()
    }

    pub fn is_empty(&self) -> bool {
        self.betas.is_empty()
    }
}

/// MONAI's cosine schedule (Nichol & Dhariwal): ᾱ from the cosine, β clipped to 0.999, then ᾱ
/// recomputed from the clipped β.
fn cosine(n: usize, s: f64) -> Tables {
    let x = linspace_f32(0.0, n as f32, n + 1);
    let (s32, div, pi) = (s as f32, (1.0 + s) as f32, std::f64::consts::PI as f32);
    let mut ac: Vec<f32> = x
        .iter()
        .map(|&x| {
            let c = (((x / n as f32) + s32) / div * pi * 0.5).cos();
            c * c
        })
        .collect();
    let first = ac[0];
    for a in &mut ac {
        *a /= first;
    }
    let betas: Vec<f32> = (0..n)
        .map(|i| (1.0 - ac[i + 1] / ac[i]).clamp(0.0, 0.999))
        .collect();
    let alphas: Vec<f32> = betas.iter().map(|b| 1.0 - b).collect();
    let alphas_cumprod = cumprod(&alphas);
    Tables {
        betas,
        alphas,
        alphas_cumprod,
    }
}

fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + (-x).exp())
}

/// torch's f32 `linspace`: the first half counts up from `start`, the second half down from
/// `end`, so both ends are exact.
pub fn linspace_f32(start: f32, end: f32, steps: usize) -> Vec<f32> {
    match steps {
        0 => Vec::new(),
        1 => vec![start],
        _ => {
            let step = (end - start) / (steps - 1) as f32;
            let half = steps / 2;
            (0..steps)
                .map(|i| {
                    if i < half {
                        start + step * i as f32
                    } else {
                        end - step * (steps - i - 1) as f32
                    }
                })
                .collect()
        }
    }
}

/// torch's CPU `cumprod` for f32: a double accumulator, each entry rounded.
fn cumprod(a: &[f32]) -> Vec<f32> {
    let mut acc = 1.0f64;
    a.iter()
        .map(|&x| {
            acc *= x as f64;
            acc as f32
        })
        .collect()
}

/// `torch.linspace(first, 0, n).round().long() + offset`: the inference timesteps, descending.
fn inference_timesteps(train: usize, n: usize, offset: usize) -> Result<Vec<i64>> {
    if n == 0 || n > train {
        bail!(
            "inference steps must be in 1..={train} (the model was trained with {train} steps), got {n}"
        );
    }
    if offset >= train {
        bail!("steps_offset {offset} must be below num_train_timesteps {train}");
    }
    Ok(linspace_f32((train - 1 - offset) as f32, 0.0, n)
        .into_iter()
        .map(|v| v.round_ties_even() as i64 + offset as i64)
        .collect())
}

/// One reverse step's result: x_{t−1} and the model's estimate of x₀.
pub struct Stepped {
    pub prev_sample: Vec<f32>,
    pub pred_original: Vec<f32>,
}

/// x₀ and ε from the model output, as MONAI's DDIM computes them; DDPM uses only x₀.
fn split_prediction(
    prediction: Prediction,
    alpha_prod_t: f32,
    model_output: f32,
    sample: f32,
) -> (f32, f32) {
    let beta_prod_t = 1.0 - alpha_prod_t;
    match prediction {
        Prediction::Epsilon => (
            (sample - beta_prod_t.sqrt() * model_output) / alpha_prod_t.sqrt(),
            model_output,
        ),
        Prediction::Sample => (
            model_output,
            (sample - alpha_prod_t.sqrt() * model_output) / beta_prod_t.sqrt(),
        ),
        Prediction::VPrediction => (
            alpha_prod_t.sqrt() * sample - beta_prod_t.sqrt() * model_output,
            alpha_prod_t.sqrt() * model_output + beta_prod_t.sqrt() * sample,
        ),
    }
}

/// The pieces every scheduler shares.
#[derive(Clone, Debug)]
pub struct Scheduler {
    pub config: SchedulerConfig,
    pub tables: Tables,
}

impl Scheduler {
    pub fn new(config: SchedulerConfig) -> Result<Scheduler> {
        let tables = Tables::new(&config.beta_schedule()?, config.num_train_timesteps)?;
        Ok(Scheduler { config, tables })
    }

    pub fn train_steps(&self) -> usize {
        self.config.num_train_timesteps
    }

    fn check_t(&self, t: i64) -> Result<usize> {
        if t < 0 || t as usize >= self.train_steps() {
            bail!("timestep {t} outside 0..{}", self.train_steps());
        }
        Ok(t as usize)
    }

    /// q(x_t | x₀): `sqrt(ᾱ_t)·x₀ + sqrt(1 − ᾱ_t)·ε` (MONAI's `add_noise`).
    pub fn add_noise(&self, x0: &[f32], noise: &[f32], t: i64, out: &mut [f32]) -> Result<()> {
        let ac = self.tables.alphas_cumprod[self.check_t(t)?];
        let (a, b) = (ac.sqrt(), (1.0 - ac).sqrt());
        for ((o, &x), &e) in out.iter_mut().zip(x0).zip(noise) {
            *o = a * x + b * e;
        }
        Ok(())
    }

    /// The v-prediction target `sqrt(ᾱ_t)·ε − sqrt(1 − ᾱ_t)·x₀` (MONAI's `get_velocity`).
    pub fn velocity(&self, x0: &[f32], noise: &[f32], t: i64, out: &mut [f32]) -> Result<()> {
        let ac = self.tables.alphas_cumprod[self.check_t(t)?];
        let (a, b) = (ac.sqrt(), (1.0 - ac).sqrt());
        for ((o, &x), &e) in out.iter_mut().zip(x0).zip(noise) {
            *o = a * e - b * x;
        }
        Ok(())
    }

    fn clip(&self, x: f32) -> f32 {
        if self.config.clip_sample {
            x.clamp(self.config.clip_sample_min, self.config.clip_sample_max)
        } else {
            x
        }
    }
}

/// The reverse-process samplers.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "sampler", rename_all = "snake_case", deny_unknown_fields)]
pub enum SamplerKind {
    /// MONAI's DDPMScheduler.
    Ddpm,
    /// MONAI's DDIMScheduler with `eta` (0: deterministic).
    Ddim {
        #[serde(default)]
        eta: f32,
    },
}

impl SamplerKind {
    pub fn name(&self) -> &'static str {
        match self {
            SamplerKind::Ddpm => "ddpm",
            SamplerKind::Ddim { .. } => "ddim",
        }
    }
}

/// A scheduler set to a number of inference steps: the timesteps to visit and the update rule.
#[derive(Clone, Debug)]
pub struct Plan {
    pub scheduler: Scheduler,
    pub kind: SamplerKind,
    pub timesteps: Vec<i64>,
    num_inference_steps: usize,
}

impl Plan {
    pub fn new(scheduler: Scheduler, kind: SamplerKind, steps: usize) -> Result<Plan> {
        let offset = match kind {
            SamplerKind::Ddpm => 0,
            SamplerKind::Ddim { eta } => {
                if !(eta.is_finite() && eta >= 0.0) {
                    bail!("ddim eta must be a finite number >= 0, got {eta}");
                }
                scheduler.config.steps_offset
            }
        };
        let timesteps = inference_timesteps(scheduler.train_steps(), steps, offset)?;
        Ok(Plan {
            scheduler,
            kind,
            timesteps,
            num_inference_steps: steps,
        })
    }

    /// Whether the step at timestep `t` adds fresh noise (so the caller draws it).
    pub fn needs_noise(&self, t: i64) -> bool {
        match self.kind {
            SamplerKind::Ddpm => t > 0,
            SamplerKind::Ddim { eta } => eta > 0.0,
        }
    }

    /// One reverse step from `sample` at timestep `t`; `noise` is used where
    /// [`Plan::needs_noise`] says so (and may be empty otherwise).
    pub fn step(
        &self,
        model_output: &[f32],
        t: i64,
        sample: &[f32],
        noise: &[f32],
    ) -> Result<Stepped> {
        let s = &self.scheduler;
        let ti = s.check_t(t)?;
        if model_output.len() != sample.len() {
            bail!(
                "model output has {} values, the sample {}",
                model_output.len(),
                sample.len()
            );
        }
        if self.needs_noise(t) && noise.len() != sample.len() {
            bail!(
                "step at t={t} needs {} noise values, got {}",
                sample.len(),
                noise.len()
            );
        }
        let tab = &s.tables;
        let prediction = s.config.prediction_type;
        let n = sample.len();
        let mut prev_sample = vec![0f32; n];
        let mut pred_original = vec![0f32; n];
        match self.kind {
            SamplerKind::Ddpm => {
                let apt = tab.alphas_cumprod[ti];
                let aptp = if ti > 0 {
                    tab.alphas_cumprod[ti - 1]
                } else {
                    1.0
                };
                let (bpt, bptp) = (1.0 - apt, 1.0 - aptp);
                let c0 = (aptp.sqrt() * tab.betas[ti]) / bpt;
                let ct = tab.alphas[ti].sqrt() * bptp / bpt;
                let sd = if ti > 0 {
                    let v = bptp / bpt * tab.betas[ti];
                    match s.config.variance_type {
                        VarianceType::FixedSmall => v.max(1e-20),
                        VarianceType::FixedLarge => tab.betas[ti],
                    }
                    .sqrt()
                } else {
                    0.0
                };
                for i in 0..n {
                    let (x0, _) = split_prediction(prediction, apt, model_output[i], sample[i]);
                    let x0 = s.clip(x0);
                    pred_original[i] = x0;
                    let mut p = c0 * x0 + ct * sample[i];
                    if ti > 0 {
                        p += sd * noise[i];
                    }
                    prev_sample[i] = p;
                }
            }
            SamplerKind::Ddim { eta } => {
                let prev_t = t - (s.train_steps() / self.num_inference_steps) as i64;
                let apt = tab.alphas_cumprod[ti];
                let aptp = if prev_t >= 0 {
                    tab.alphas_cumprod[prev_t as usize]
                } else if s.config.set_alpha_to_one {
                    1.0
                } else {
                    tab.alphas_cumprod[0]
                };
                let (bpt, bptp) = (1.0 - apt, 1.0 - aptp);
                let variance = (bptp / bpt) * (1.0 - apt / aptp);
                let std_dev = eta * variance.sqrt();
                let dir = (1.0 - aptp - std_dev * std_dev).sqrt();
                let noise_scale = variance.sqrt() * eta;
                for i in 0..n {
                    let (x0, eps) = split_prediction(prediction, apt, model_output[i], sample[i]);
                    let x0 = s.clip(x0);
                    pred_original[i] = x0;
                    let mut p = aptp.sqrt() * x0 + dir * eps;
                    if eta > 0.0 {
                        p += noise_scale * noise[i];
                    }
                    prev_sample[i] = p;
                }
            }
        }
        Ok(Stepped {
            prev_sample,
            pred_original,
        })
    }

    /// SDEdit / img2img: the timesteps left when starting from a real image noised to
    /// `strength` (diffusers' rule: keep the last `round_down(N·strength)` steps).
    pub fn from_strength(&self, strength: f32) -> Result<&[i64]> {
        if !(strength > 0.0 && strength <= 1.0) {
            bail!("strength must be in (0, 1], got {strength}");
        }
        let n = self.timesteps.len();
        let keep = ((n as f32 * strength) as usize).clamp(1, n);
        Ok(&self.timesteps[n - keep..])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn linspace_is_exact_at_both_ends_and_symmetric() {
        let v = linspace_f32(1e-4, 2e-2, 1000);
        assert_eq!(v[0], 1e-4f32);
        assert_eq!(v[999], 2e-2f32);
        assert_eq!(linspace_f32(3.0, 5.0, 1), vec![3.0]);
        let t = linspace_f32(999.0, 0.0, 10);
        assert_eq!(t[0], 999.0);
        assert_eq!(t[9], 0.0);
    }

    #[test]
    fn ddim_timesteps_keep_monais_quirk() {
        let s = Scheduler::new(SchedulerConfig::default()).unwrap();
        let p = Plan::new(s, SamplerKind::Ddim { eta: 0.0 }, 10).unwrap();
        assert_eq!(
            p.timesteps,
            vec![999, 888, 777, 666, 555, 444, 333, 222, 111, 0]
        );
    }

    #[test]
    fn config_defaults_match_monai() {
        let c = SchedulerConfig::default();
        assert_eq!(c.num_train_timesteps, 1000);
        assert_eq!(
            c.beta_schedule().unwrap(),
            BetaSchedule::LinearBeta {
                beta_start: 1e-4,
                beta_end: 2e-2
            }
        );
        assert!(c.clip_sample && c.set_alpha_to_one);
        assert!(serde_json::from_str::<SchedulerConfig>(r#"{"shedule": "cosine"}"#).is_err());
        let cos: SchedulerConfig = serde_json::from_str(r#"{"schedule": "cosine"}"#).unwrap();
        assert_eq!(
            cos.beta_schedule().unwrap(),
            BetaSchedule::Cosine { s: 8e-3 }
        );
        let bad: SchedulerConfig =
            serde_json::from_str(r#"{"schedule": "cosine", "beta_end": 0.01}"#).unwrap();
        assert!(bad.beta_schedule().is_err());
    }

    #[test]
    fn bad_steps_and_strength_are_refused() {
        let s = Scheduler::new(SchedulerConfig::default()).unwrap();
        assert!(Plan::new(s.clone(), SamplerKind::Ddpm, 0).is_err());
        assert!(Plan::new(s.clone(), SamplerKind::Ddpm, 1001).is_err());
        assert!(Plan::new(s.clone(), SamplerKind::Ddim { eta: -1.0 }, 10).is_err());
        let p = Plan::new(s, SamplerKind::Ddim { eta: 0.0 }, 10).unwrap();
        assert_eq!(p.from_strength(0.5).unwrap(), &[444, 333, 222, 111, 0]);
        assert!(p.from_strength(0.0).is_err());
    }
}
