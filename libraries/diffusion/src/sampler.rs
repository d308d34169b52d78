//! The reverse process: a [`Plan`] (scheduler + timesteps) driving a [`UNet`] over a batch,
//! with noise per image from the counter-based generator, so an image depends only on its own
//! seed — not on the batch it shared, the worker that ran it or the device.
//!
//! Noise addresses (mindscan-random streams, key = the image's seed, variant 0): the starting
//! noise x_T (or the ε of SDEdit's forward noising) is `(slot 0, Purpose::Start)`; the noise a
//! step adds is `(slot t, Purpose::Step)` with `t` the step's timestep; values in C·H·W order.

use anyhow::{Result, bail};
use mindscan_random::{Purpose, Stream, fill_normals};

use crate::schedule::Plan;
use crate::unet::UNet;

/// Where the random numbers of a sampling run come from.
pub trait NoiseSource {
    /// Standard normals for the start of image `image` (x_T, or SDEdit's ε).
    fn start(&mut self, image: usize, out: &mut [f32]) -> Result<()>;
    /// Standard normals added by the step at timestep `t` (`index`: the step's position).
    fn step(&mut self, image: usize, index: usize, t: i64, out: &mut [f32]) -> Result<()>;
}

impl<N: NoiseSource + ?Sized> NoiseSource for &mut N {
    fn start(&mut self, image: usize, out: &mut [f32]) -> Result<()> {
        (**self).start(image, out)
    }
    fn step(&mut self, image: usize, index: usize, t: i64, out: &mut [f32]) -> Result<()> {
        (**self).step(image, index, t, out)
    }
}

/// Philox noise keyed by one seed per image.
pub struct PhiloxNoise<'a> {
    seeds: &'a [u64],
    words: Vec<u32>,
}

impl<'a> PhiloxNoise<'a> {
    pub fn new(seeds: &'a [u64]) -> Self {
        PhiloxNoise {
            seeds,
            words: Vec::new(),
        }
    }

    fn fill(&mut self, image: usize, slot: u32, purpose: Purpose, out: &mut [f32]) -> Result<()> {
        let Some(&seed) = self.seeds.get(image) else {
            bail!("no seed for image {image}");
        };
        fill_normals(
            &Stream::new(seed, 0, slot, purpose),
            0,
            &mut self.words,
            out,
        );
        Ok(())
    }
}

impl NoiseSource for PhiloxNoise<'_> {
    fn start(&mut self, image: usize, out: &mut [f32]) -> Result<()> {
        self.fill(image, 0, Purpose::Start, out)
    }
    fn step(&mut self, image: usize, _index: usize, t: i64, out: &mut [f32]) -> Result<()> {
        self.fill(image, t as u32, Purpose::Step, out)
    }
}

/// The starting noise is given (e.g. read from a tensor file, to reproduce a PyTorch run); the
/// step noise still comes from `then`.
pub struct GivenStart<'a, N> {
    pub start: &'a [f32],
    pub then: N,
}

impl<N: NoiseSource> NoiseSource for GivenStart<'_, N> {
    fn start(&mut self, image: usize, out: &mut [f32]) -> Result<()> {
        let n = out.len();
        let Some(src) = self.start.get(image * n..(image + 1) * n) else {
            bail!(
                "the starting noise holds {} values, image {image} needs {}..{}",
                self.start.len(),
                image * n,
                (image + 1) * n
            );
        };
        out.copy_from_slice(src);
        Ok(())
    }
    fn step(&mut self, image: usize, index: usize, t: i64, out: &mut [f32]) -> Result<()> {
        self.then.step(image, index, t, out)
    }
}

/// The shape of a batch: `n` images of `c`×`h`×`w`, NCHW.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Batch {
    pub n: usize,
    pub c: usize,
    pub h: usize,
    pub w: usize,
}

impl Batch {
    pub fn image_len(&self) -> usize {
        self.c * self.h * self.w
    }
    pub fn len(&self) -> usize {
        self.n * self.image_len()
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Optional per-step observer (progress, trajectories in tests): step index, timestep, x.
pub type OnStep<'a> = &'a mut dyn FnMut(usize, i64, &[f32]);

/// One sampling run over a batch.
pub struct Sampling<'a> {
    pub model: &'a UNet,
    pub plan: &'a Plan,
    pub batch: Batch,
    pub class_labels: Option<&'a [u32]>,
}

impl Sampling<'_> {
    fn check(&self) -> Result<()> {
        let cfg = self.model.config();
        if self.batch.c != cfg.in_channels || cfg.out_channels != cfg.in_channels {
            bail!(
                "the model maps {} channels to {}; sampling needs the same count in and out, and \
                 images of {} channels",
                cfg.in_channels,
                cfg.out_channels,
                self.batch.c
            );
        }
        if let Some(l) = self.class_labels
            && l.len() != self.batch.n
        {
            bail!("{} class labels for {} images", l.len(), self.batch.n);
        }
        Ok(())
    }

    /// From pure noise through every timestep of the plan: x_T → x₀.
    pub fn from_noise(
        &self,
        noise: &mut dyn NoiseSource,
        on_step: Option<OnStep>,
    ) -> Result<Vec<f32>> {
        self.check()?;
        let mut x = vec![0f32; self.batch.len()];
        let il = self.batch.image_len();
        for (i, img) in x.chunks_exact_mut(il).enumerate() {
            noise.start(i, img)?;
        }
        self.denoise(x, &self.plan.timesteps, noise, on_step)
    }

    /// SDEdit / img2img: `x0` (NCHW, the model's intensity range) is noised with the start
    /// noise to the first of the timesteps `strength` keeps, then denoised from there.
    pub fn from_image(
        &self,
        x0: &[f32],
        strength: f32,
        noise: &mut dyn NoiseSource,
        on_step: Option<OnStep>,
    ) -> Result<Vec<f32>> {
        self.check()?;
        if x0.len() != self.batch.len() {
            bail!(
                "image batch holds {} values, expected {}",
                x0.len(),
                self.batch.len()
            );
        }
        let timesteps = self.plan.from_strength(strength)?;
        let il = self.batch.image_len();
        let mut eps = vec![0f32; il];
        let mut x = vec![0f32; x0.len()];
        for (i, (img, src)) in x.chunks_exact_mut(il).zip(x0.chunks_exact(il)).enumerate() {
            noise.start(i, &mut eps)?;
            self.plan
                .scheduler
                .add_noise(src, &eps, timesteps[0], img)?;
        }
        self.denoise(x, timesteps, noise, on_step)
    }

    fn denoise(
        &self,
        mut x: Vec<f32>,
        timesteps: &[i64],
        noise: &mut dyn NoiseSource,
        mut on_step: Option<OnStep>,
    ) -> Result<Vec<f32>> {
        let b = self.batch;
        let il = b.image_len();
        let mut step_noise = Vec::new();
        for (index, &t) in timesteps.iter().enumerate() {
            let ts = vec![t as f32; b.n];
            let out = self
                .model
                .forward(&x, b.n, b.h, b.w, &ts, self.class_labels)?;
            step_noise.clear();
            if self.plan.needs_noise(t) {
                step_noise.resize(x.len(), 0.0);
                for (i, img) in step_noise.chunks_exact_mut(il).enumerate() {
                    noise.step(i, index, t, img)?;
                }
            }
            x = self.plan.step(&out, t, &x, &step_noise)?.prev_sample;
            if let Some(f) = on_step.as_mut() {
                f(index, t, &x);
            }
        }
        Ok(x)
    }
}
