//! Exact percentiles of 8- and 16-bit integer volumes by counting: one pass, no sort, no f32 copy.
//! Gives the same numbers as numpy.percentile's default (linear) interpolation.

use mindscan_sdk::prelude::*;
use rayon::prelude::*;

use crate::core::Window;

/// Bin counts of 8-bit values (`flip` maps i8 to 0..256 by flipping the sign bit). Four
/// sub-histograms break the store-to-load dependency between equal neighbouring voxels.
fn counts8(data: &[u8], flip: u8) -> Vec<u64> {
    data.par_chunks(1 << 20)
        .map(|chunk| {
            let mut h = [[0u32; 256]; 4];
            let mut quads = chunk.chunks_exact(4);
            for q in &mut quads {
                h[0][(q[0] ^ flip) as usize] += 1;
                h[1][(q[1] ^ flip) as usize] += 1;
                h[2][(q[2] ^ flip) as usize] += 1;
                h[3][(q[3] ^ flip) as usize] += 1;
            }
            for &v in quads.remainder() {
                h[0][(v ^ flip) as usize] += 1;
            }
            (0..256)
                .map(|b| h.iter().map(|s| s[b] as u64).sum())
                .collect::<Vec<u64>>()
        })
        .reduce(|| vec![0u64; 256], add)
}

/// Bin counts of 16-bit values (`flip` maps i16 to 0..65536). Two interleaved sub-histograms,
/// as for 8 bits: MRI volumes are mostly runs of equal background values, and one table makes
/// every increment wait for the previous one (T1-sized volume: 3.2 -> 2.4 ms; the ignored
/// `histogram_speed` test measures both).
fn counts16(data: &[u16], flip: u16) -> Vec<u64> {
    data.par_chunks(1 << 20)
        .map(|chunk| {
            let mut h = vec![0u32; 2 * 65536];
            let (h0, h1) = h.split_at_mut(65536);
            let mut pairs = chunk.chunks_exact(2);
            for p in &mut pairs {
                h0[(p[0] ^ flip) as usize] += 1;
                h1[(p[1] ^ flip) as usize] += 1;
            }
            for &v in pairs.remainder() {
                h0[(v ^ flip) as usize] += 1;
            }
            h0.iter()
                .zip(h1.iter())
                .map(|(&a, &b)| a as u64 + b as u64)
                .collect::<Vec<u64>>()
        })
        .reduce(|| vec![0u64; 65536], add)
}

fn add(mut a: Vec<u64>, b: Vec<u64>) -> Vec<u64> {
    a.iter_mut().zip(b).for_each(|(x, y)| *x += y);
    a
}

/// Value of the `rank`-th smallest element (0-based) from bin counts.
fn value_at(hist: &[u64], rank: u64) -> usize {
    let mut seen = 0u64;
    for (bin, &c) in hist.iter().enumerate() {
        seen += c;
        if seen > rank {
            return bin;
        }
    }
    hist.len() - 1
}

/// numpy 'linear' percentile from counts; `offset` maps a bin back to its value.
fn percentile(hist: &[u64], n: u64, q: f64, offset: f64) -> f64 {
    let pos = q / 100.0 * (n - 1) as f64;
    let below = pos.floor();
    let frac = pos - below;
    let a = value_at(hist, below as u64) as f64 + offset;
    if frac == 0.0 {
        return a;
    }
    let b = value_at(hist, (below as u64 + 1).min(n - 1)) as f64 + offset;
    a + frac * (b - a)
}

/// The `[lo_pct, hi_pct]` window of an integer tensor, or `None` when the dtype is not an 8- or
/// 16-bit integer (the caller then uses the float path).
pub fn integer_percentile_window(t: &Tensor, lo_pct: f64, hi_pct: f64) -> Result<Option<Window>> {
    let (hist, offset) = match t.dtype() {
        DType::U8 => (counts8(t.as_slice::<u8>()?, 0), 0.0),
        DType::I8 => (
            counts8(bytemuck::cast_slice(t.as_slice::<i8>()?), 0x80),
            -128.0,
        ),
        DType::U16 => (counts16(t.as_slice::<u16>()?, 0), 0.0),
        DType::I16 => (
            counts16(bytemuck::cast_slice(t.as_slice::<i16>()?), 0x8000),
            -32768.0,
        ),
        _ => return Ok(None),
    };
    let n: u64 = hist.iter().sum();
    if n == 0 {
        return Ok(None);
    }
    Ok(Some(Window {
        lo: percentile(&hist, n, lo_pct, offset),
        hi: percentile(&hist, n, hi_pct, offset),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reference: sort and interpolate like numpy.
    fn reference(mut v: Vec<f64>, q: f64) -> f64 {
        v.sort_by(f64::total_cmp);
        let pos = q / 100.0 * (v.len() - 1) as f64;
        let lo = pos.floor() as usize;
        let hi = (lo + 1).min(v.len() - 1);
        v[lo] + (pos - lo as f64) * (v[hi] - v[lo])
    }

    #[test]
    fn matches_sorting_for_every_integer_type() {
        let raw: Vec<i64> = (0..10_007i64).map(|i| (i * 7919 % 4001) - 2000).collect();
        let i16s: Vec<i16> = raw.iter().map(|&v| v as i16).collect();
        let u8s: Vec<u8> = raw.iter().map(|&v| (v.rem_euclid(256)) as u8).collect();
        for q in [0.0, 0.5, 1.0, 37.3, 50.0, 99.5, 100.0] {
            let w =
                integer_percentile_window(&Tensor::from_vec(i16s.clone(), &[i16s.len()]), q, 100.0)
                    .unwrap()
                    .unwrap();
            assert_eq!(
                w.lo,
                reference(i16s.iter().map(|&v| v as f64).collect(), q),
                "i16 q={q}"
            );
            let w =
                integer_percentile_window(&Tensor::from_vec(u8s.clone(), &[u8s.len()]), q, 100.0)
                    .unwrap()
                    .unwrap();
            assert_eq!(
                w.lo,
                reference(u8s.iter().map(|&v| v as f64).collect(), q),
                "u8 q={q}"
            );
        }
        let f = Tensor::from_vec(vec![1.0f32, 2.0], &[2]);
        assert!(integer_percentile_window(&f, 1.0, 99.0).unwrap().is_none());
    }
}

#[cfg(test)]
mod timing {
    use super::*;

    /// `cargo test --release -p mindscan-plugin-imaging --lib histogram_speed -- --ignored --nocapture`
    #[test]
    #[ignore]
    fn histogram_speed() {
        // A T1-like volume: 60% background zeros in long runs, the rest noisy tissue.
        let n = 96 * 128 * 128;
        let v: Vec<i16> = (0..n)
            .map(|i| {
                if (i / 96) % 5 < 3 {
                    0
                } else {
                    (300 + (i * 7919) % 900) as i16
                }
            })
            .collect();
        let t = Tensor::from_vec(v, &[n]);
        let t0 = std::time::Instant::now();
        for _ in 0..50 {
            std::hint::black_box(integer_percentile_window(&t, 0.5, 99.5).unwrap());
        }
        println!(
            "i16 percentile window: {:.2} ms per volume",
            t0.elapsed().as_secs_f64() * 20.0
        );
        // One table, for comparison.
        let raw: &[u16] = bytemuck::cast_slice(t.as_slice::<i16>().unwrap());
        let t0 = std::time::Instant::now();
        for _ in 0..50 {
            let h = raw
                .par_chunks(1 << 20)
                .map(|c| {
                    let mut h = vec![0u32; 65536];
                    for &v in c {
                        h[(v ^ 0x8000) as usize] += 1;
                    }
                    h.iter().map(|&c| c as u64).collect::<Vec<u64>>()
                })
                .reduce(|| vec![0u64; 65536], add);
            std::hint::black_box(h);
        }
        println!(
            "one table, counts only: {:.2} ms per volume",
            t0.elapsed().as_secs_f64() * 20.0
        );
        let t0 = std::time::Instant::now();
        for _ in 0..50 {
            std::hint::black_box(counts16(raw, 0x8000));
        }
        println!(
            "two tables, counts only: {:.2} ms per volume",
            t0.elapsed().as_secs_f64() * 20.0
        );
    }
}
