//! Intensity windows and mapping to 8/16-bit pixels.
//!
//! Percentiles match `numpy.percentile(..., method="linear")` (the default) on
//! the finite values of the data: NaN and ±inf are ignored (as with
//! `numpy.nanpercentile` on data without infinities). They are computed in O(n)
//! without sorting: a histogram over the value range locates the bin holding each
//! wanted rank, then only that bin's values are gathered and the exact order
//! statistic is found with `select_nth_unstable`; a bin too large to gather is
//! refined with another histogram over its own value range (or answered at once
//! when all its values are equal, e.g. a background of zeros).

use rayon::prelude::*;

use super::voxel::Voxel;

/// An intensity window `[lo, hi]`.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Window {
    pub lo: f64,
    pub hi: f64,
}

/// How to choose the window.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "mode", rename_all = "snake_case")]
pub enum WindowSpec {
    /// Percentiles over the whole volume (in percent, e.g. 0.5 and 99.5).
    Percentile { lo: f64, hi: f64 },
    /// Fixed centre / width: `lo = c - w/2`, `hi = c + w/2`.
    CenterWidth { center: f64, width: f64 },
    /// Minimum and maximum over the whole volume.
    MinMax,
    /// Minimum and maximum of each slice (med2image behaviour).
    SliceMinMax,
}

impl Default for WindowSpec {
    fn default() -> Self {
        WindowSpec::Percentile { lo: 0.5, hi: 99.5 }
    }
}

impl WindowSpec {
    /// Window computed once for the whole volume; `None` for [`WindowSpec::SliceMinMax`]
    /// or when the volume has no finite value.
    pub fn volume_window(&self, volume: &[f32]) -> Option<Window> {
        match *self {
            WindowSpec::Percentile { lo, hi } => percentile_window(volume, lo, hi),
            WindowSpec::CenterWidth { center, width } => Some(Window::center_width(center, width)),
            WindowSpec::MinMax => min_max(volume),
            WindowSpec::SliceMinMax => None,
        }
    }

    /// Window to use for one slice: the slice's min–max for [`WindowSpec::SliceMinMax`],
    /// otherwise `volume_window`. A slice without finite values gets `[0, 0]` (all black).
    pub fn slice_window(&self, volume_window: Option<Window>, slice: &[f32]) -> Window {
        let w = match self {
            WindowSpec::SliceMinMax => min_max(slice),
            _ => volume_window,
        };
        w.unwrap_or(Window { lo: 0.0, hi: 0.0 })
    }
}

impl Window {
    /// `lo = center - width / 2`, `hi = center + width / 2`.
    pub fn center_width(center: f64, width: f64) -> Window {
        Window {
            lo: center - width / 2.0,
            hi: center + width / 2.0,
        }
    }

    /// Maps `src` to 8-bit: `round(clamp((v - lo) / (hi - lo), 0, 1) * 255)`.
    /// NaN maps to 0; a window with `hi <= lo` maps everything to 0.
    pub fn map_u8_into<T: Voxel>(&self, src: &[T], dst: &mut [u8]) {
        self.map_into(src, dst, 255.0, |x| x as u8);
    }

    /// Maps `src` to 16-bit: `round(clamp((v - lo) / (hi - lo), 0, 1) * 65535)`.
    pub fn map_u16_into<T: Voxel>(&self, src: &[T], dst: &mut [u16]) {
        self.map_into(src, dst, 65535.0, |x| x as u16);
    }

    #[inline(always)]
    fn map_into<T: Voxel, D: Copy>(
        &self,
        src: &[T],
        dst: &mut [D],
        top: f32,
        narrow: impl Fn(i32) -> D + Copy,
    ) {
        assert_eq!(src.len(), dst.len());
        let width = self.hi - self.lo;
        if width.is_nan() || width <= 0.0 || width.is_infinite() {
            dst.fill(narrow(0));
            return;
        }
        let lo = self.lo as f32;
        let scale = (top as f64 / width) as f32;
        // `max(0).min(top)` on purpose: unlike `clamp`, it turns NaN into 0; the value is then
        // in [0.5, top + 0.5], so the unchecked cast is exact and the loop vectorises (a
        // saturating `as` cast would not).
        #[allow(clippy::manual_clamp)]
        let map = move |v: f32| {
            let x = ((v - lo) * scale).max(0.0).min(top) + 0.5;
            // SAFETY: x is finite and within i32 range (see above).
            narrow(unsafe { x.to_int_unchecked::<i32>() })
        };
        if let Some(src) = T::as_f32(src) {
            for (d, &v) in dst.iter_mut().zip(src) {
                *d = map(v);
            }
            return;
        }
        // Other types go through a small f32 block: converting and mapping in one loop does
        // not vectorise for 16-bit integers (5x slower per pixel).
        let mut block = [0f32; 256];
        for (s, d) in src.chunks(256).zip(dst.chunks_mut(256)) {
            let b = &mut block[..s.len()];
            for (x, &v) in b.iter_mut().zip(s) {
                *x = v.to_f32();
            }
            for (o, &v) in d.iter_mut().zip(b.iter()) {
                *o = map(v);
            }
        }
    }

    /// Allocating form of [`Window::map_u8_into`].
    pub fn map_u8<T: Voxel>(&self, src: &[T]) -> Vec<u8> {
        let mut out = vec![0u8; src.len()];
        self.map_u8_into(src, &mut out);
        out
    }

    /// Allocating form of [`Window::map_u16_into`].
    pub fn map_u16<T: Voxel>(&self, src: &[T]) -> Vec<u16> {
        let mut out = vec![0u16; src.len()];
        self.map_u16_into(src, &mut out);
        out
    }
}

const LANES: usize = 8;

/// Minimum, maximum and count of the finite values.
fn finite_stats<T: Voxel>(data: &[T]) -> (f32, f32, usize) {
    let mut mn = [f32::INFINITY; LANES];
    let mut mx = [f32::NEG_INFINITY; LANES];
    let mut cnt = [0usize; LANES];
    let chunks = data.chunks_exact(LANES);
    let rest = chunks.remainder();
    for c in chunks {
        for l in 0..LANES {
            let v = c[l].to_f32();
            let ok = v.is_finite();
            mn[l] = if ok && v < mn[l] { v } else { mn[l] };
            mx[l] = if ok && v > mx[l] { v } else { mx[l] };
            cnt[l] += ok as usize;
        }
    }
    let (mut lo, mut hi) = (f32::INFINITY, f32::NEG_INFINITY);
    let mut n: usize = cnt.iter().sum();
    for l in 0..LANES {
        lo = lo.min(mn[l]);
        hi = hi.max(mx[l]);
    }
    for v in rest {
        let v = v.to_f32();
        if v.is_finite() {
            lo = lo.min(v);
            hi = hi.max(v);
            n += 1;
        }
    }
    (lo, hi, n)
}

fn finite_stats_par<T: Voxel>(data: &[T]) -> (f32, f32, usize) {
    if data.len() < PAR_MIN {
        return finite_stats(data);
    }
    data.par_chunks(PAR_CHUNK).map(finite_stats).reduce(
        || (f32::INFINITY, f32::NEG_INFINITY, 0),
        |a, b| (a.0.min(b.0), a.1.max(b.1), a.2 + b.2),
    )
}

/// Min–max window of the finite values; `None` if there are none.
pub fn min_max<T: Voxel>(data: &[T]) -> Option<Window> {
    let (lo, hi, n) = finite_stats_par(data);
    (n > 0).then_some(Window {
        lo: lo as f64,
        hi: hi as f64,
    })
}

/// Percentile window (percent values, e.g. `0.5, 99.5`); `None` without finite values.
pub fn percentile_window(data: &[f32], lo_pct: f64, hi_pct: f64) -> Option<Window> {
    let p = percentiles(data, &[lo_pct, hi_pct])?;
    Some(Window { lo: p[0], hi: p[1] })
}

/// One percentile (0..=100) of the finite values with a float64 result, as
/// `numpy.percentile(data, [q])[0]`.
pub fn percentile(data: &[f32], q: f64) -> Option<f64> {
    percentiles(data, &[q]).map(|v| v[0])
}

/// Several percentiles (each clamped to 0..=100) of the finite values, exactly as
/// `numpy.percentile(data, qs)` / `numpy.nanpercentile` with a *list* of `q`
/// (float64 result); `None` when there is no finite value.
pub fn percentiles(data: &[f32], qs: &[f64]) -> Option<Vec<f64>> {
    Some(
        neighbours(data, qs)?
            .into_iter()
            .map(|(a, b, g)| {
                // numpy's _lerp: b - a in the input dtype (f32), the rest in f64.
                let d = (b - a) as f64;
                if g >= 0.5 {
                    b as f64 - d * (1.0 - g)
                } else {
                    a as f64 + d * g
                }
            })
            .collect(),
    )
}

/// One percentile exactly as numpy >= 2 computes it for a *Python float* `q` on
/// float32 data: `numpy.percentile(data, q)` interpolates and returns in float32.
pub fn percentile_f32(data: &[f32], q: f64) -> Option<f32> {
    let (a, b, g) = neighbours(data, &[q])?[0];
    let d = b - a;
    Some(if g >= 0.5 {
        b - d * ((1.0 - g) as f32)
    } else {
        a + d * (g as f32)
    })
}

/// For each q: the two neighbouring order statistics and numpy's `gamma`.
fn neighbours(data: &[f32], qs: &[f64]) -> Option<Vec<(f32, f32, f64)>> {
    let (lo, hi, n) = finite_stats_par(data);
    if n == 0 {
        return None;
    }
    // numpy 'linear': virtual index h = (n - 1) * (q / 100); previous = floor(h),
    // next = previous + 1, both clamped to the last element; gamma = h - floor(h).
    let plan: Vec<(usize, usize, f64)> = qs
        .iter()
        .map(|&q| {
            let q = if q.is_nan() { 0.0 } else { q.clamp(0.0, 100.0) };
            let h = (n - 1) as f64 * (q / 100.0);
            let f = h.floor();
            let k = (f as usize).min(n - 1);
            (k, (k + 1).min(n - 1), h - f)
        })
        .collect();
    let mut ranks: Vec<usize> = plan.iter().flat_map(|p| [p.0, p.1]).collect();
    ranks.sort_unstable();
    ranks.dedup();
    let mut values = vec![0.0f32; ranks.len()];
    resolve(data, lo, hi, n, 0, &ranks, &mut values, 0);
    let value_of = |r: usize| values[ranks.binary_search(&r).expect("rank resolved")];
    Some(
        plan.iter()
            .map(|&(k0, k1, g)| (value_of(k0), value_of(k1), g))
            .collect(),
    )
}

const BINS: usize = 2048;
const GATHER_LIMIT: usize = 1 << 18;
const PAR_MIN: usize = 1 << 18;
const PAR_CHUNK: usize = 1 << 16;

/// Monotone binning of `[lo, hi]` into `BINS` bins: `v <= w` implies
/// `bin(v) <= bin(w)` (IEEE subtraction, multiplication by a positive constant
/// and truncation are all monotone), so each bin holds a contiguous block of
/// the sorted values.
#[derive(Clone, Copy)]
struct Binning {
    lo: f32,
    hi: f32,
    scale32: f32,
    scale64: f64,
    use_f32: bool,
}

impl Binning {
    fn new(lo: f32, hi: f32) -> Self {
        let width32 = hi - lo;
        let scale32 = BINS as f32 / width32;
        let use_f32 = width32.is_finite() && scale32.is_normal();
        Binning {
            lo,
            hi,
            scale32,
            scale64: BINS as f64 / (hi as f64 - lo as f64),
            use_f32,
        }
    }

    #[inline(always)]
    fn bin(&self, v: f32) -> usize {
        let b = if self.use_f32 {
            ((v - self.lo) * self.scale32) as usize
        } else {
            ((v as f64 - self.lo as f64) * self.scale64) as usize
        };
        b.min(BINS - 1)
    }

    #[inline(always)]
    fn contains(&self, v: f32) -> bool {
        v >= self.lo && v <= self.hi
    }

    /// Smallest and largest f32 in `[lo, hi]` falling in bin `b` (found by
    /// bisection over the ordered f32 bit patterns).
    fn edges(&self, b: usize) -> (f32, f32) {
        let (klo, khi) = (order_key(self.lo), order_key(self.hi));
        // First key with bin >= b.
        let first_ge = |target: usize| {
            let (mut a, mut z) = (klo, khi);
            if self.bin(from_order_key(z)) < target {
                return None;
            }
            while a < z {
                let m = a + (z - a) / 2;
                if self.bin(from_order_key(m)) >= target {
                    z = m;
                } else {
                    a = m + 1;
                }
            }
            Some(a)
        };
        let start = first_ge(b).expect("bin is not empty");
        let end = match first_ge(b + 1) {
            Some(k) => k - 1,
            None => khi,
        };
        (from_order_key(start), from_order_key(end))
    }
}

/// Maps f32 (non-NaN) to u32 so that integer order equals float order.
fn order_key(v: f32) -> u32 {
    let b = v.to_bits();
    if b >> 31 == 1 { !b } else { b | 0x8000_0000 }
}

fn from_order_key(k: u32) -> f32 {
    f32::from_bits(if k >> 31 == 1 { k & 0x7fff_ffff } else { !k })
}

/// Histogram of the values in `[bins.lo, bins.hi]`, plus how many equal `bins.lo`.
///
/// Four interleaved sub-histograms break the store-to-load dependency chain
/// when consecutive values fall in the same bin (long runs of background).
fn histogram(data: &[f32], bins: Binning) -> (Vec<u64>, u64) {
    let hist_chunk = |chunk: &[f32], acc: &mut [u64]| -> u64 {
        let mut local = vec![0u32; 4 * BINS];
        let (h0, rest) = local.split_at_mut(BINS);
        let (h1, rest) = rest.split_at_mut(BINS);
        let (h2, h3) = rest.split_at_mut(BINS);
        let mut eq = [0u32; 4];
        let quads = chunk.chunks_exact(4);
        let tail = quads.remainder();
        for q in quads {
            for (l, h) in [
                (0usize, &mut *h0),
                (1, &mut *h1),
                (2, &mut *h2),
                (3, &mut *h3),
            ] {
                let v = q[l];
                if bins.contains(v) {
                    h[bins.bin(v)] += 1;
                    eq[l] += (v == bins.lo) as u32;
                }
            }
        }
        for &v in tail {
            if bins.contains(v) {
                h0[bins.bin(v)] += 1;
                eq[0] += (v == bins.lo) as u32;
            }
        }
        for (b, a) in acc.iter_mut().enumerate() {
            *a += h0[b] as u64 + h1[b] as u64 + h2[b] as u64 + h3[b] as u64;
        }
        eq.iter().map(|&e| e as u64).sum()
    };
    if data.len() < PAR_MIN {
        let mut h = vec![0u64; BINS];
        let mut eq = 0;
        for c in data.chunks(PAR_CHUNK) {
            eq += hist_chunk(c, &mut h);
        }
        return (h, eq);
    }
    data.par_chunks(PAR_CHUNK)
        .fold(
            || (vec![0u64; BINS], 0u64),
            |(mut acc, eq), chunk| {
                let e = hist_chunk(chunk, &mut acc);
                (acc, eq + e)
            },
        )
        .reduce(
            || (vec![0u64; BINS], 0),
            |(mut a, ea), (b, eb)| {
                for (x, y) in a.iter_mut().zip(b) {
                    *x += y;
                }
                (a, ea + eb)
            },
        )
}

/// Values in `[lo, hi]`.
fn gather(data: &[f32], lo: f32, hi: f32, count: usize) -> Vec<f32> {
    let mut vals = Vec::with_capacity(count);
    if data.len() < PAR_MIN {
        vals.extend(data.iter().copied().filter(|&v| v >= lo && v <= hi));
        return vals;
    }
    let parts: Vec<Vec<f32>> = data
        .par_chunks(PAR_CHUNK)
        .map(|c| c.iter().copied().filter(|&v| v >= lo && v <= hi).collect())
        .collect();
    for p in parts {
        vals.extend_from_slice(&p);
    }
    vals
}

/// Minimum and maximum of the values in `[lo, hi]` (branchless, vectorisable).
fn range_min_max(data: &[f32], lo: f32, hi: f32) -> (f32, f32) {
    let chunk_mm = |c: &[f32]| {
        let mut mn = [f32::INFINITY; LANES];
        let mut mx = [f32::NEG_INFINITY; LANES];
        let it = c.chunks_exact(LANES);
        let rest = it.remainder();
        for ch in it {
            for l in 0..LANES {
                let v = ch[l];
                let ok = v >= lo && v <= hi;
                mn[l] = if ok && v < mn[l] { v } else { mn[l] };
                mx[l] = if ok && v > mx[l] { v } else { mx[l] };
            }
        }
        let (mut a, mut b) = (f32::INFINITY, f32::NEG_INFINITY);
        for l in 0..LANES {
            a = a.min(mn[l]);
            b = b.max(mx[l]);
        }
        for &v in rest {
            if v >= lo && v <= hi {
                a = a.min(v);
                b = b.max(v);
            }
        }
        (a, b)
    };
    if data.len() < PAR_MIN {
        return chunk_mm(data);
    }
    data.par_chunks(PAR_CHUNK).map(chunk_mm).reduce(
        || (f32::INFINITY, f32::NEG_INFINITY),
        |a, b| (a.0.min(b.0), a.1.max(b.1)),
    )
}

/// Finds the values of the sorted (ascending) `ranks` among the finite values.
///
/// Only values in `[lo, hi]` are considered; there are `count` of them and
/// `below` finite values are smaller than `lo`. Every rank lies in
/// `below..below + count`.
#[allow(clippy::too_many_arguments)]
fn resolve(
    data: &[f32],
    lo: f32,
    hi: f32,
    count: usize,
    below: usize,
    ranks: &[usize],
    out: &mut [f32],
    depth: u32,
) {
    if lo == hi {
        out.fill(lo);
        return;
    }
    if count <= GATHER_LIMIT || depth >= 8 {
        let mut vals = gather(data, lo, hi, count);
        for (o, &r) in out.iter_mut().zip(ranks) {
            let (_, v, _) = vals.select_nth_unstable_by(r - below, f32::total_cmp);
            *o = *v;
        }
        return;
    }
    let bins = Binning::new(lo, hi);
    let (hist, n_eq_lo) = histogram(data, bins);
    // Group the (sorted) ranks by bin.
    let mut cum = below;
    let mut b = 0;
    let mut i = 0;
    while i < ranks.len() {
        while cum + hist[b] as usize <= ranks[i] {
            cum += hist[b] as usize;
            b += 1;
        }
        let bin_count = hist[b] as usize;
        let mut j = i;
        while j < ranks.len() && ranks[j] < cum + bin_count {
            j += 1;
        }
        let (e_lo, e_hi) = bins.edges(b);
        if ranks[j - 1] < below + n_eq_lo as usize {
            // All these ranks fall on copies of the minimum (e.g. background zeros).
            out[i..j].fill(lo);
        } else if bin_count <= GATHER_LIMIT {
            let mut vals = gather(data, e_lo, e_hi, bin_count);
            debug_assert_eq!(vals.len(), bin_count);
            for k in i..j {
                let (_, v, _) = vals.select_nth_unstable_by(ranks[k] - cum, f32::total_cmp);
                out[k] = *v;
            }
        } else {
            // Large bin: often a single repeated value (background zeros).
            let (mn, mx) = range_min_max(data, e_lo, e_hi);
            resolve(
                data,
                mn,
                mx,
                bin_count,
                cum,
                &ranks[i..j],
                &mut out[i..j],
                depth + 1,
            );
        }
        i = j;
    }
}
