//! Throughput check for the whole "all axial slices -> JPEG" job on a
//! 197x233x189 volume (MNI-like). Ignored by default; run optimised:
//! `cargo test --release -p mindscan-plugin-imaging --test imaging perf:: -- --ignored --nocapture`

use std::time::Instant;

use mindscan_plugin_imaging::core::encode::encode_jpeg;
use mindscan_plugin_imaging::core::orient::CanonicalView;
use mindscan_plugin_imaging::core::slice::{Plane, SliceOptions, extract_slice};
use mindscan_plugin_imaging::core::window::WindowSpec;
use rayon::prelude::*;

fn synthetic_brain(dims: [usize; 3]) -> Vec<f32> {
    let c = [
        dims[0] as f32 / 2.0,
        dims[1] as f32 / 2.0,
        dims[2] as f32 / 2.0,
    ];
    let mut v = Vec::with_capacity(dims.iter().product());
    for k in 0..dims[2] {
        for j in 0..dims[1] {
            for i in 0..dims[0] {
                let d = ((i as f32 - c[0]) / c[0]).powi(2)
                    + ((j as f32 - c[1]) / c[1]).powi(2)
                    + ((k as f32 - c[2]) / c[2]).powi(2);
                let noise = ((i * 31 + j * 17 + k * 7) % 97) as f32;
                v.push(if d < 0.8 {
                    300.0 + 500.0 * (1.0 - d) + noise
                } else {
                    0.0
                });
            }
        }
    }
    v
}

fn run(label: &str, data: &[f32], dims: [usize; 3], affine: &[[f64; 4]; 4], plane: Plane) -> f64 {
    let t0 = Instant::now();
    let view = CanonicalView::new(data, dims, 1, affine).unwrap();
    let window = WindowSpec::default().volume_window(data).unwrap();
    let t_win = t0.elapsed();
    let n = plane.slice_count(&view);
    let bytes: usize = (0..n)
        .into_par_iter()
        .map(|idx| {
            let s = extract_slice(&view, plane, idx, 0, &SliceOptions::default()).unwrap();
            let px = window.map_u8(&s.data);
            encode_jpeg(&px, s.rows, s.cols, 90).unwrap().len()
        })
        .sum();
    let total = t0.elapsed().as_secs_f64() * 1e3;
    println!(
        "{label}: {n} {} slices, window {:.1} ms, total {total:.1} ms, {} KiB",
        plane.name(),
        t_win.as_secs_f64() * 1e3,
        bytes / 1024
    );
    assert!(bytes > 0);
    total
}

#[test]
#[ignore = "timing; run with --release -- --ignored"]
fn all_axial_slices_to_jpeg() {
    let dims = [197, 233, 189];
    let data = synthetic_brain(dims);
    let ras = [
        [1.0, 0.0, 0.0, -98.0],
        [0.0, 1.0, 0.0, -134.0],
        [0.0, 0.0, 1.0, -72.0],
        [0.0, 0.0, 0.0, 1.0],
    ];
    let lps = [
        [-1.0, 0.0, 0.0, 98.0],
        [0.0, -1.0, 0.0, 98.0],
        [0.0, 0.0, 1.0, -72.0],
        [0.0, 0.0, 0.0, 1.0],
    ];
    let mut best = f64::MAX;
    for _ in 0..3 {
        best = best.min(run("RAS axial", &data, dims, &ras, Plane::Axial));
    }
    run("LPS axial", &data, dims, &lps, Plane::Axial);
    run("RAS sagittal", &data, dims, &ras, Plane::Sagittal);
    run("RAS coronal", &data, dims, &ras, Plane::Coronal);
    println!("best RAS axial: {best:.1} ms");
}

/// On-CPU time of this thread in ns (Linux schedstat), unaffected by waiting
/// for a core on a loaded machine.
fn thread_cpu_ns() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    s.split_whitespace().next()?.parse().ok()
}

/// Best of 5 runs, in on-CPU milliseconds when available, else wall time.
fn min_ms(mut f: impl FnMut()) -> f64 {
    (0..5)
        .map(|_| {
            let (t, c) = (Instant::now(), thread_cpu_ns());
            f();
            match (c, thread_cpu_ns()) {
                (Some(a), Some(b)) => (b - a) as f64 / 1e6,
                _ => t.elapsed().as_secs_f64() * 1e3,
            }
        })
        .fold(f64::MAX, f64::min)
}

#[test]
#[ignore = "timing; run with --release -- --ignored"]
fn phases_single_thread() {
    let dims = [197, 233, 189];
    let data = synthetic_brain(dims);
    let aff = [
        [1.0, 0.0, 0.0, 0.0],
        [0.0, 1.0, 0.0, 0.0],
        [0.0, 0.0, 1.0, 0.0],
        [0.0, 0.0, 0.0, 1.0],
    ];
    let view = CanonicalView::new(&data, dims, 1, &aff).unwrap();
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .unwrap();
    pool.install(|| {
        let mm = min_ms(|| {
            std::hint::black_box(mindscan_plugin_imaging::core::window::min_max(&data));
        });
        let pct = min_ms(|| {
            std::hint::black_box(WindowSpec::default().volume_window(&data));
        });
        let w = WindowSpec::default().volume_window(&data).unwrap();
        let n = Plane::Axial.slice_count(&view);
        let slices: Vec<_> = (0..n)
            .map(|i| extract_slice(&view, Plane::Axial, i, 0, &SliceOptions::default()).unwrap())
            .collect();
        let ext = min_ms(|| {
            for i in 0..n {
                std::hint::black_box(extract_slice(&view, Plane::Axial, i, 0, &SliceOptions::default()).unwrap());
            }
        });
        let ext_sag = min_ms(|| {
            for i in 0..Plane::Sagittal.slice_count(&view) {
                std::hint::black_box(extract_slice(&view, Plane::Sagittal, i, 0, &SliceOptions::default()).unwrap());
            }
        });
        let px: Vec<Vec<u8>> = slices.iter().map(|s| w.map_u8(&s.data)).collect();
        let map = min_ms(|| {
            for s in &slices {
                std::hint::black_box(w.map_u8(&s.data));
            }
        });
        let enc = min_ms(|| {
            for (s, p) in slices.iter().zip(&px) {
                std::hint::black_box(encode_jpeg(p, s.rows, s.cols, 90).unwrap());
            }
        });
        println!(
            "1 thread (on-CPU time): minmax {mm:.1} ms, percentile {pct:.1} ms, extract axial {ext:.1} ms, extract sagittal {ext_sag:.1} ms, map u8 {map:.1} ms, jpeg {enc:.1} ms"
        );
    });
}

/// Window mapping cost per pixel, f32 and 16-bit integer pixels.
#[test]
#[ignore]
fn window_mapping_per_pixel() {
    use mindscan_plugin_imaging::core::{Voxels, Window};
    let n = 96 * 128;
    let ints: Vec<i16> = (0..n).map(|i| (i % 1200) as i16).collect();
    let floats: Vec<f32> = ints.iter().map(|&v| v as f32).collect();
    let w = Window {
        lo: 3.0,
        hi: 1100.0,
    };
    let mut dst = vec![0u8; n];
    let bytes: Vec<u8> = ints.iter().map(|&v| (v % 256) as u8).collect();
    for (label, px) in [
        ("f32", Voxels::F32(&floats)),
        ("i16", Voxels::I16(&ints)),
        ("u8", Voxels::U8(&bytes)),
    ] {
        let t0 = Instant::now();
        for _ in 0..2000 {
            px.map_u8_into(&w, &mut dst);
            std::hint::black_box(&mut dst);
        }
        let ns = t0.elapsed().as_secs_f64() * 1e9 / (2000 * n) as f64;
        println!("{label}: {ns:.3} ns/pixel");
    }
}
