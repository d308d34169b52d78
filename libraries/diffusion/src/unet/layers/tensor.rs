//! Activations: NHWC with a one-pixel zero border, `[n][h + 2][w + 2][c]`, so that a 3x3
//! convolution reads its taps as overlapping rows of one matrix; and the `Workspace` that
//! recycles their buffers between layers and between forward passes.

use std::time::{Duration, Instant};

/// A batch of images, NHWC, each framed by one pixel of zeros.
pub(crate) struct Act {
    pub data: Vec<f32>,
    pub n: usize,
    pub h: usize,
    pub w: usize,
    pub c: usize,
}

impl Act {
    /// Padded width (pixels per stored row).
    pub fn pw(&self) -> usize {
        self.w + 2
    }

    /// Stored pixels per image.
    pub fn image_pixels(&self) -> usize {
        (self.h + 2) * (self.w + 2)
    }

    /// Stored pixels of the batch.
    pub fn pixels(&self) -> usize {
        self.n * self.image_pixels()
    }

    /// Floats of one stored row.
    pub fn row_len(&self) -> usize {
        self.pw() * self.c
    }

    /// The shape without the channels.
    pub fn same_grid(&self, other: &Act) -> bool {
        (self.n, self.h, self.w) == (other.n, other.h, other.w)
    }

    /// Index of the first float of pixel `(y, x)` (stored coordinates) of image `img`.
    pub fn at(&self, img: usize, y: usize, x: usize) -> usize {
        ((img * (self.h + 2) + y) * self.pw() + x) * self.c
    }

    #[cfg(test)]
    /// Whether stored pixel `p` (counted over the whole batch) lies on a border.
    pub fn is_border(&self, p: usize) -> bool {
        let local = p % self.image_pixels();
        let (y, x) = (local / self.pw(), local % self.pw());
        y == 0 || y == self.h + 1 || x == 0 || x == self.w + 1
    }
}

/// `buf` grown (never shrunk) to at least `len` floats, and its first `len`: thread-local
/// scratch keeps its largest size instead of being cleared and refilled between layers.
pub(crate) fn scratch(buf: &mut Vec<f32>, len: usize) -> &mut [f32] {
    if buf.len() < len {
        buf.resize(len, 0.0);
    }
    &mut buf[..len]
}

/// The kinds of layer that `Workspace::profile` reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Conv3x3,
    ConvStride2,
    GroupNorm,
    Linear,
    Attention,
    Resample,
    Other,
}

const KINDS: [(Kind, &str); 7] = [
    (Kind::Conv3x3, "conv 3x3 (+1x1 skip)"),
    (Kind::ConvStride2, "conv 3x3 stride 2"),
    (Kind::GroupNorm, "group norm (+silu)"),
    (Kind::Linear, "attention projections"),
    (Kind::Attention, "attention softmax(qk)v"),
    (Kind::Resample, "upsample / pool"),
    (Kind::Other, "residual adds, embedding, io"),
];

/// Buffers kept between layers and between calls. A sampler that calls `forward_into` with the
/// same shapes reuses every buffer from the second call on: nothing is allocated or zeroed.
#[derive(Default)]
pub struct Workspace {
    free: Vec<Vec<f32>>,
    profile: Option<Vec<Duration>>,
}

impl Workspace {
    /// An empty workspace (buffers are made on first use).
    pub fn new() -> Workspace {
        Workspace::default()
    }

    /// From now on, add up the wall time of each kind of layer (`profile`).
    pub fn enable_profile(&mut self) {
        self.profile = Some(vec![Duration::ZERO; KINDS.len()]);
    }

    /// Wall time per kind of layer since `enable_profile`, largest first (empty if not enabled).
    pub fn profile(&self) -> Vec<(&'static str, Duration)> {
        let Some(times) = &self.profile else {
            return Vec::new();
        };
        let mut out: Vec<(&'static str, Duration)> = KINDS
            .iter()
            .zip(times)
            .map(|((_, name), t)| (*name, *t))
            .collect();
        out.sort_by_key(|&(_, t)| std::cmp::Reverse(t));
        out
    }

    /// Starts timing a layer (a no-op unless profiling).
    pub(crate) fn clock(&self) -> Option<Instant> {
        self.profile.as_ref().map(|_| Instant::now())
    }

    /// Adds the time since `clock` to `kind`.
    pub(crate) fn record(&mut self, kind: Kind, since: Option<Instant>) {
        if let (Some(times), Some(t0)) = (&mut self.profile, since) {
            let i = KINDS
                .iter()
                .position(|(k, _)| *k == kind)
                .unwrap_or(KINDS.len() - 1);
            times[i] += t0.elapsed();
        }
    }

    /// A buffer of exactly `len` floats with unspecified contents (every layer writes all of
    /// its output): the smallest free buffer of `len` to `17/16 len`, else a new one. A forward
    /// pass asks for the same sizes every call, so from the second call on each request finds
    /// a buffer of its own size, and `give` has nothing to refill.
    pub(crate) fn take(&mut self, len: usize) -> Vec<f32> {
        let pick = self
            .free
            .iter()
            .enumerate()
            .filter(|(_, b)| b.capacity() >= len && b.capacity() <= len + len / 16)
            .min_by_key(|(_, b)| b.capacity())
            .map(|(i, _)| i);
        let mut buf = match pick {
            Some(i) => self.free.swap_remove(i),
            None => return vec![0.0; len],
        };
        buf.truncate(len);
        if cfg!(debug_assertions) {
            // Poison, so that a test catches any layer that leaves part of its output unwritten.
            buf.fill(f32::NAN);
        }
        buf
    }

    /// Returns a buffer for reuse, kept at its full capacity (refilling what `take` cut off).
    pub(crate) fn give(&mut self, mut buf: Vec<f32>) {
        buf.resize(buf.capacity(), 0.0);
        if buf.capacity() > 0 {
            self.free.push(buf);
        }
    }

    /// An activation with unspecified contents.
    pub(crate) fn act(&mut self, n: usize, h: usize, w: usize, c: usize) -> Act {
        let data = self.take(n * (h + 2) * (w + 2) * c);
        Act { data, n, h, w, c }
    }

    /// Returns an activation's buffer for reuse.
    pub(crate) fn recycle(&mut self, act: Act) {
        self.give(act.data);
    }
}

#[cfg(test)]
pub(crate) mod testing {
    //! Plain NCHW helpers for the layer tests.
    use super::Act;

    /// Runs `check` on the fast paths, then on the portable ones (the `gemm` crate and the
    /// baseline loops), one test at a time for the latter.
    pub fn on_both_paths(check: impl Fn()) {
        use std::sync::Mutex;
        use std::sync::atomic::Ordering;
        static PORTABLE: Mutex<()> = Mutex::new(());
        check();
        let _one = PORTABLE.lock().unwrap_or_else(|e| e.into_inner());
        crate::unet::layers::simd::FORCE_BASELINE.store(true, Ordering::Relaxed);
        let guard = Reset;
        check();
        drop(guard);
    }

    struct Reset;
    impl Drop for Reset {
        fn drop(&mut self) {
            crate::unet::layers::simd::FORCE_BASELINE
                .store(false, std::sync::atomic::Ordering::Relaxed);
        }
    }

    /// Deterministic values in [-1, 1).
    pub fn values(len: usize, seed: u32) -> Vec<f32> {
        let mut s = seed.wrapping_mul(2_654_435_761).wrapping_add(1);
        (0..len)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 17;
                s ^= s << 5;
                (s >> 8) as f32 / (1u32 << 23) as f32 - 1.0
            })
            .collect()
    }

    /// NCHW -> padded NHWC.
    pub fn to_act(nchw: &[f32], n: usize, c: usize, h: usize, w: usize) -> Act {
        let mut act = Act {
            data: vec![0.0; n * (h + 2) * (w + 2) * c],
            n,
            h,
            w,
            c,
        };
        for b in 0..n {
            for ch in 0..c {
                for y in 0..h {
                    for x in 0..w {
                        let i = act.at(b, y + 1, x + 1) + ch;
                        act.data[i] = nchw[((b * c + ch) * h + y) * w + x];
                    }
                }
            }
        }
        act
    }

    /// Padded NHWC -> NCHW, asserting that the border is zero.
    pub fn from_act(act: &Act) -> Vec<f32> {
        let (n, c, h, w) = (act.n, act.c, act.h, act.w);
        for p in 0..act.pixels() {
            if act.is_border(p) {
                assert!(
                    act.data[p * c..(p + 1) * c].iter().all(|&v| v == 0.0),
                    "border pixel {p} not zero"
                );
            }
        }
        let mut out = vec![0.0; n * c * h * w];
        for b in 0..n {
            for ch in 0..c {
                for y in 0..h {
                    for x in 0..w {
                        out[((b * c + ch) * h + y) * w + x] =
                            act.data[act.at(b, y + 1, x + 1) + ch];
                    }
                }
            }
        }
        out
    }

    /// out[b][co][y][x] = bias + sum w[co][ci][dy][dx] in[b][ci][y s + dy - 1][x s + dx - 1].
    #[allow(clippy::too_many_arguments)]
    pub fn naive_conv(
        input: &[f32],
        weight: &[f32],
        bias: &[f32],
        n: usize,
        cin: usize,
        cout: usize,
        h: usize,
        w: usize,
        k: usize,
        stride: usize,
    ) -> (Vec<f32>, usize, usize) {
        let pad = k / 2;
        let (ho, wo) = (
            (h + 2 * pad - k) / stride + 1,
            (w + 2 * pad - k) / stride + 1,
        );
        let mut out = vec![0.0f32; n * cout * ho * wo];
        for b in 0..n {
            for co in 0..cout {
                for y in 0..ho {
                    for x in 0..wo {
                        let mut acc = bias[co] as f64;
                        for ci in 0..cin {
                            for dy in 0..k {
                                for dx in 0..k {
                                    let iy = (y * stride + dy) as isize - pad as isize;
                                    let ix = (x * stride + dx) as isize - pad as isize;
                                    if iy < 0 || ix < 0 || iy >= h as isize || ix >= w as isize {
                                        continue;
                                    }
                                    let v =
                                        input[((b * cin + ci) * h + iy as usize) * w + ix as usize];
                                    acc += weight[((co * cin + ci) * k + dy) * k + dx] as f64
                                        * v as f64;
                                }
                            }
                        }
                        out[((b * cout + co) * ho + y) * wo + x] = acc as f32;
                    }
                }
            }
        }
        (out, ho, wo)
    }

    /// max |a - b| / max |b|.
    pub fn rel_err(a: &[f32], b: &[f32]) -> f64 {
        assert_eq!(a.len(), b.len());
        assert!(a.iter().all(|v| v.is_finite()), "non-finite output");
        let scale = b
            .iter()
            .fold(0.0f64, |m, &v| m.max(v.abs() as f64))
            .max(1e-30);
        let diff = a
            .iter()
            .zip(b)
            .fold(0.0f64, |m, (&x, &y)| m.max((x as f64 - y as f64).abs()));
        diff / scale
    }
}
