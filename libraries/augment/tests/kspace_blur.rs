//! Blur, the k-space artefacts (ghosting, spike, motion), anisotropy and swap: each fast path
//! against its definition (the `*_reference` twins: TorchIO's full 3D FFT, scipy's three
//! passes), against the TorchIO 1.2.1 fixtures, and the identities they must keep, on the real
//! T1 volume the fixtures start from.

mod common;

use common::{compare, input, json, voxels};
use mindscan_augment::Volume;
use mindscan_augment::exec::{blur, kspace, resize, swap};
use mindscan_augment::spec::Interpolation;
use mindscan_augment::volume::IDENTITY;

fn arr3s(v: &serde_json::Value) -> Vec<[f64; 3]> {
    serde_json::from_value(v.clone()).unwrap()
}

/// Largest difference relative to the largest magnitude of `want`.
fn rel(got: &[f32], want: &[f32]) -> f64 {
    compare(got, want, 0.0).0
}

/// The input with its negative values cut to 0 (the spike fast path needs `x >= 0`).
fn non_negative() -> Volume {
    let mut v = input();
    v.data.iter_mut().for_each(|x| *x = x.max(0.0));
    v
}

fn shifted_down(mut v: Volume, by: f32) -> Volume {
    v.data.iter_mut().for_each(|x| *x -= by);
    v
}

/// A smooth, non-negative synthetic volume with an oblique affine and odd and even sizes.
fn synthetic(dims: [usize; 3]) -> Volume {
    let mut data = Vec::with_capacity(dims.iter().product());
    for k in 0..dims[2] {
        for j in 0..dims[1] {
            for i in 0..dims[0] {
                let (x, y, z) = (i as f32, j as f32, k as f32);
                data.push(
                    100.0
                        + 40.0 * (0.3 * x + 0.2 * y).sin()
                        + 25.0 * (0.17 * z - 0.11 * x).cos()
                        + ((i * 7 + j * 3 + k) % 5) as f32,
                );
            }
        }
    }
    let affine = [
        [0.9, 0.2, 0.0, -10.0],
        [-0.1, 1.1, 0.3, 4.0],
        [0.05, 0.0, 1.4, 2.5],
        [0.0, 0.0, 0.0, 1.0],
    ];
    Volume::new(data, dims, affine).unwrap()
}

// ---------------------------------------------------------------------------------------------
// Blur

#[test]
fn blur_preserves_the_mean_of_a_constant_volume() {
    let mut v = input();
    v.data.iter_mut().for_each(|x| *x = 321.5);
    blur::blur(&mut v, [2.0, 3.0, 5.0]);
    assert!(
        v.data.iter().all(|&x| (x - 321.5).abs() < 1e-3),
        "reflect keeps a constant constant"
    );
}

#[test]
fn blur_with_zero_std_returns_the_input_exactly() {
    let mut v = input();
    let before = v.data.clone();
    blur::blur(&mut v, [0.0, 0.0, 0.0]);
    assert_eq!(v.data, before);
}

#[test]
fn blur_equals_scipys_three_passes() {
    let cases: [(Volume, [f64; 3]); 6] = [
        (input(), [2.0, 2.0, 2.0]),
        (input(), [1.0, 3.0, 0.0]),
        (input(), [0.0, 0.7, 4.5]),
        // Kernels wider than the line along k (r = 17 > nk = 7): the reflection wraps.
        (synthetic([12, 9, 7]), [1.5, 20.0, 6.0]),
        (synthetic([31, 17, 40]), [0.4, 0.0, 2.2]),
        // A 2D image: k is one voxel long.
        (synthetic([40, 30, 1]), [1.2, 2.5, 3.0]),
    ];
    for (v, std) in cases {
        let want = blur::blur_reference(&v, std);
        let mut got = v.clone();
        blur::blur(&mut got, std);
        let r = rel(&got.data, &want);
        assert!(
            r < 1e-6,
            "{:?} std {std:?}: relative difference {r}",
            v.dims
        );
    }
}

/// The definition is TorchIO's to the bit: the kernel, radius, reflection and pass order.
#[test]
fn blur_reference_reproduces_torchios_bits() {
    for case in ["blur_2_2_2", "blur_1_3_0"] {
        let std: [f64; 3] = serde_json::from_value(json(case)["kwargs"]["std"].clone()).unwrap();
        assert_eq!(blur::blur_reference(&input(), std), voxels(case), "{case}");
    }
}

/// The fast path accumulates in f32 (16 lanes at a time): TorchIO's values to f32 rounding.
#[test]
fn blur_matches_torchio() {
    for case in ["blur_2_2_2", "blur_1_3_0"] {
        let std: [f64; 3] = serde_json::from_value(json(case)["kwargs"]["std"].clone()).unwrap();
        let mut v = input();
        blur::blur(&mut v, std);
        let r = rel(&v.data, &voxels(case));
        assert!(r < 1e-6, "{case}: relative difference {r}");
    }
}

// ---------------------------------------------------------------------------------------------
// Ghosting

#[test]
fn ghosting_with_zero_intensity_or_no_ghosts_returns_the_input() {
    for (g, s) in [(4, 0.0), (0, 0.7)] {
        let mut v = input();
        kspace::ghosting(&mut v, g, 1, s, Some(0.2));
        assert_eq!(v.data, input().data);
    }
}

#[test]
fn one_axis_ffts_equal_the_full_3d_fft_for_ghosting() {
    let vols = [input(), synthetic([16, 15, 12])];
    for v in &vols {
        for axis in 0..3u8 {
            for (g, s, restore) in [
                (4, 0.5, Some(0.02)),
                (3, 1.0, Some(0.3)),
                (7, 0.8, Some(0.5)),
                (2, 0.35, Some(0.0)),
                (5, 0.6, None),
            ] {
                let want = kspace::ghosting_reference(v, g, axis, s, restore);
                let mut got = v.clone();
                kspace::ghosting(&mut got, g, axis, s, restore);
                let r = rel(&got.data, &want);
                assert!(
                    r < 1e-5,
                    "{:?} axis {axis} ghosts {g}: relative difference {r}",
                    v.dims
                );
            }
        }
    }
}

#[test]
fn ghosting_matches_torchio() {
    for case in ["ghosting_axis0", "ghosting_axis1"] {
        let kw = &json(case)["kwargs"];
        let mut v = input();
        kspace::ghosting(
            &mut v,
            kw["num_ghosts"].as_u64().unwrap() as u32,
            kw["axis"].as_u64().unwrap() as u8,
            kw["intensity"].as_f64().unwrap(),
            kw["restore"].as_f64(),
        );
        let r = rel(&v.data, &voxels(case));
        assert!(r < 1e-5, "{case}: relative difference {r}");
    }
}

// ---------------------------------------------------------------------------------------------
// Spike

#[test]
fn spike_with_zero_intensity_or_no_spikes_returns_the_input() {
    let mut v = input();
    kspace::spike(&mut v, &[[0.1, 0.2, 0.3]], 0.0);
    kspace::spike(&mut v, &[], 2.0);
    assert_eq!(v.data, input().data);
}

#[test]
fn spike_cosines_equal_the_full_3d_fft() {
    let dc = [0.5, 0.5, 0.5];
    let cases: Vec<(Volume, Vec<[f64; 3]>, f64)> = vec![
        // Non-negative: max|S| = Σx, no FFT at all.
        (non_negative(), vec![[0.1, 0.2, 0.3]], 1.5),
        (
            non_negative(),
            vec![[0.1, 0.2, 0.3], [0.7, 0.45, 0.6], [0.1, 0.2, 0.3]],
            2.5,
        ),
        // A spike on the centre raises the maximum for the next one.
        (non_negative(), vec![dc, [0.9, 0.05, 0.4]], 1.2),
        // A negative spike on the centre: the maximum moves somewhere unknown (full FFT).
        (non_negative(), vec![dc, [0.3, 0.3, 0.3]], -0.6),
        // Negative voxels: full FFT for the maximum.
        (input(), vec![[0.1, 0.2, 0.3], [0.7, 0.45, 0.6]], 0.5),
        (
            synthetic([16, 15, 12]),
            vec![[0.99, 0.0, 0.51], [0.25, 0.75, 0.0]],
            3.0,
        ),
        // Negative voxels, spikes on the centre and twice on one position.
        (
            input(),
            vec![dc, [0.1, 0.2, 0.3], [0.1, 0.2, 0.3], [0.6, 0.6, 0.1]],
            -0.8,
        ),
        // Spikes on a position and its mirror -u (even sizes: shifted s and n - s).
        (
            shifted_down(synthetic([16, 14, 12]), 130.0),
            vec![
                [3.5 / 16.0, 2.5 / 14.0, 5.5 / 12.0],
                [13.5 / 16.0, 12.5 / 14.0, 7.5 / 12.0],
                [0.3, 0.3, 0.3],
            ],
            -0.9,
        ),
    ];
    for (v, positions, intensity) in cases {
        let want = kspace::spike_reference(&v, &positions, intensity);
        let mut got = v.clone();
        kspace::spike(&mut got, &positions, intensity);
        let r = rel(&got.data, &want);
        assert!(
            r < 1e-5,
            "{:?} {positions:?} x{intensity}: relative difference {r}",
            v.dims
        );
    }
}

#[test]
fn spike_matches_torchio() {
    let kw = &json("spike")["kwargs"];
    let mut v = input();
    kspace::spike(
        &mut v,
        &arr3s(&kw["spikes_positions"]),
        kw["intensity"].as_f64().unwrap(),
    );
    let r = rel(&v.data, &voxels("spike"));
    assert!(r < 1e-5, "relative difference {r}");
}

// ---------------------------------------------------------------------------------------------
// Motion

#[test]
fn motion_without_movement_returns_the_input() {
    let mut v = input();
    kspace::motion(
        &mut v,
        &[[0.0; 3]; 2],
        &[[0.0; 3]; 2],
        &[0.3, 0.65],
        Interpolation::Linear,
    );
    let r = rel(&v.data, &input().data);
    assert!(r < 1e-5, "relative difference {r}");
}

/// A volume, and per movement its degrees, translation and time.
type MotionCase = (Volume, Vec<[f64; 3]>, Vec<[f64; 3]>, Vec<f64>);

#[test]
fn one_axis_ffts_equal_the_full_3d_fft_for_motion() {
    let cases: Vec<MotionCase> = vec![
        (
            input(),
            vec![[5.0, -3.0, 2.0], [-4.0, 6.0, 1.0]],
            vec![[2.0, -1.0, 3.0], [-3.0, 2.0, -1.0]],
            vec![0.3, 0.65],
        ),
        // No time past the centre: the original fills the last segment.
        (
            synthetic([16, 15, 12]),
            vec![[1.0, 2.0, 3.0], [0.0, -2.0, 8.0], [3.0, 0.0, 0.0]],
            vec![[1.5, 0.0, -2.0], [0.0, 1.0, 0.0], [-1.0, -1.0, 1.0]],
            vec![0.1, 0.3, 0.45],
        ),
    ];
    for (v, degrees, translation, times) in cases {
        let want =
            kspace::motion_reference(&v, &degrees, &translation, &times, Interpolation::Linear);
        let mut got = v.clone();
        kspace::motion(
            &mut got,
            &degrees,
            &translation,
            &times,
            Interpolation::Linear,
        );
        let r = rel(&got.data, &want);
        assert!(r < 1e-5, "{:?}: relative difference {r}", v.dims);
    }
}

/// A 2D image has one k plane: it comes from the copy whose segment holds it (the last
/// segment; the original when no time is past 0.5, the last movement otherwise).
#[test]
fn motion_of_a_2d_image_is_the_copy_that_owns_its_single_k_plane() {
    let v = synthetic([24, 20, 1]);
    let (degrees, translation) = (
        [[0.0, 0.0, 4.0], [0.0, 0.0, -7.0]],
        [[1.5, -2.0, 0.0], [-1.0, 0.5, 0.0]],
    );
    let mut got = v.clone();
    kspace::motion(
        &mut got,
        &degrees,
        &translation,
        &[0.3, 0.45],
        Interpolation::Linear,
    );
    assert!(
        rel(&got.data, &v.data) < 1e-5,
        "the original fills the last segment"
    );
    let mut got = v.clone();
    kspace::motion(
        &mut got,
        &degrees,
        &translation,
        &[0.3, 0.65],
        Interpolation::Linear,
    );
    let last = mindscan_augment::exec::warp::resample_world(
        &v,
        &kspace::motion_map(degrees[1], translation[1]),
        Interpolation::Linear,
        v.min_max().0,
    );
    assert!(
        rel(&got.data, &last) < 1e-5,
        "the second movement fills the last segment"
    );
}

#[test]
fn motion_matches_torchio() {
    let kw = &json("motion")["kwargs"];
    let times: Vec<f64> = serde_json::from_value(kw["times"].clone()).unwrap();
    let mut v = input();
    kspace::motion(
        &mut v,
        &arr3s(&kw["degrees"]),
        &arr3s(&kw["translation"]),
        &times,
        Interpolation::Linear,
    );
    let (worst, frac) = compare(&v.data, &voxels("motion"), 1e-3);
    assert!(
        worst < 1e-3,
        "worst relative difference {worst} ({frac} of voxels above 1e-3)"
    );
}

// ---------------------------------------------------------------------------------------------
// Anisotropy

/// TorchIO 1.2.1 `RandomAnisotropy(axes=(a,), downsampling=(d, d))` on the fixtures' grid
/// (33 x 41 x 25, 2 mm, LAS) filled with `index + 1` along axis `a`. TorchIO draws the factor
/// as a float32, so 3.7 is 3.700000047...: the first coarse sample then sits just below the
/// tie 1.5 and takes voxel 1. Axis 0 by 2: the last voxel falls outside the coarse grid (0).
#[test]
fn anisotropy_matches_torchio_along_each_axis() {
    let axis0_by_2: Vec<f32> = (0..33)
        .map(|p| [2.0, (p + 1) as f32, 0.0][(p > 0) as usize + (p == 32) as usize])
        .collect();
    let axis1_by_3_7: [f32; 41] = [
        2.0, 2.0, 2.5405407, 3.6216218, 4.702703, 5.783784, 6.864865, 7.945946, 9.027027,
        10.108109, 11.189189, 12.27027, 13.351352, 14.324325, 15.135136, 15.945946, 16.756758,
        17.756758, 18.837837, 19.918919, 21.0, 22.081081, 23.162163, 24.243242, 25.243242,
        26.054054, 26.864864, 27.675676, 28.64865, 29.729729, 30.81081, 31.891891, 32.972973,
        34.054054, 35.135136, 36.216217, 37.2973, 38.37838, 39.459457, 40.0, 40.0,
    ];
    let axis2_by_2_5: [f32; 25] = [
        2.0, 2.2, 3.0, 3.8, 4.9, 6.1, 7.2, 8.0, 8.8, 9.9, 11.1, 12.2, 13.0, 13.8, 14.9, 16.1, 17.2,
        18.0, 18.8, 19.9, 21.1, 22.2, 23.0, 23.8, 24.0,
    ];
    let grid = input();
    for (axis, d, want) in [
        (0u8, 2.0f32, &axis0_by_2[..]),
        (1, 3.7, &axis1_by_3_7[..]),
        (2, 2.5, &axis2_by_2_5[..]),
    ] {
        let a = axis as usize;
        let mut v = grid.clone();
        for k in 0..v.dims[2] {
            for j in 0..v.dims[1] {
                for i in 0..v.dims[0] {
                    let e = v.index(i, j, k);
                    v.data[e] = ([i, j, k][a] + 1) as f32;
                }
            }
        }
        resize::anisotropy(&mut v, axis, d as f64);
        for k in 0..v.dims[2] {
            for j in 0..v.dims[1] {
                for i in 0..v.dims[0] {
                    let (got, w) = (v.data[v.index(i, j, k)], want[[i, j, k][a]]);
                    assert!(
                        (got - w).abs() <= 1e-5 * w.abs().max(1.0),
                        "axis {axis} at {:?}: {got} vs {w}",
                        [i, j, k]
                    );
                }
            }
        }
    }
}

#[test]
fn anisotropy_of_a_2d_image_leaves_its_single_plane_alone_along_k() {
    let mut v = synthetic([20, 16, 1]);
    let before = v.data.clone();
    resize::anisotropy(&mut v, 2, 3.0);
    assert_eq!(v.data, before);
}

// ---------------------------------------------------------------------------------------------
// Swap

#[test]
fn swap_twice_with_the_same_pair_is_the_identity() {
    let mut v = input();
    let pairs = [[2, 3, 4, 20, 25, 15], [10, 30, 2, 24, 5, 16]];
    swap::swap(&mut v, [8, 8, 6], &pairs);
    assert_ne!(v.data, input().data);
    swap::swap(&mut v, [8, 8, 6], &[pairs[1], pairs[0]]);
    assert_eq!(v.data, input().data);
}

#[test]
fn swap_exchanges_two_disjoint_patches() {
    let before = input();
    let mut v = before.clone();
    swap::swap(&mut v, [8, 8, 6], &[[2, 3, 4, 20, 25, 15]]);
    for k in 0..6 {
        for j in 0..8 {
            for i in 0..8 {
                let a = before.index(2 + i, 3 + j, 4 + k);
                let b = before.index(20 + i, 25 + j, 15 + k);
                assert_eq!(v.data[a], before.data[b]);
                assert_eq!(v.data[b], before.data[a]);
            }
        }
    }
    let moved = v
        .data
        .iter()
        .zip(&before.data)
        .filter(|(x, y)| x != y)
        .count();
    assert!(moved <= 2 * 8 * 8 * 6);
}

// ---------------------------------------------------------------------------------------------
// Speed

/// `cargo test --release -p mindscan-augment --test kspace_blur -- --ignored --nocapture`:
/// times on the MNI volume (197 x 233 x 189) dumped by bench/augment, or a synthetic one.
#[test]
#[ignore]
fn speed_on_an_mni_sized_volume() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../bench/results/augment/dump/mni.f32");
    let dims = [197, 233, 189];
    let mut affine = IDENTITY;
    affine[0][3] = -98.0;
    affine[1][3] = -134.0;
    affine[2][3] = -72.0;
    let data: Vec<f32> = match std::fs::read(&path) {
        Ok(b) => b
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect(),
        Err(_) => synthetic(dims).data,
    };
    let vol = Volume::new(data, dims, affine).unwrap();
    let time = |name: &str, f: &dyn Fn(&mut Volume)| {
        let mut best = f64::INFINITY;
        for _ in 0..5 {
            let mut v = vol.clone();
            let t = std::time::Instant::now();
            f(&mut v);
            best = best.min(t.elapsed().as_secs_f64() * 1e3);
        }
        println!(
            "{name:<40} {best:8.1} ms ({} threads)",
            rayon::current_num_threads()
        );
    };
    time("blur std 1 mm", &|v| blur::blur(v, [1.0, 1.0, 1.0]));
    time("blur std (0, 2, 2) mm", &|v| blur::blur(v, [0.0, 2.0, 2.0]));
    for axis in 0..3 {
        time(&format!("ghosting axis {axis}"), &|v| {
            kspace::ghosting(v, 6, axis, 0.7, Some(0.02))
        });
    }
    time("spike x1 (x >= 0: no FFT)", &|v| {
        kspace::spike(v, &[[0.1, 0.2, 0.3]], 2.0)
    });
    time("spike x2 (x >= 0: one DFT coefficient)", &|v| {
        kspace::spike(v, &[[0.1, 0.2, 0.3], [0.7, 0.4, 0.6]], 2.0)
    });
    time("spike x1 on x - 100 (full f32 FFT)", &|v| {
        v.data.iter_mut().for_each(|x| *x -= 100.0);
        kspace::spike(v, &[[0.1, 0.2, 0.3]], 2.0)
    });
    let (deg, tr) = (
        [[5.0, -3.0, 2.0], [-4.0, 6.0, 1.0]],
        [[2.0, -1.0, 3.0], [-3.0, 2.0, -1.0]],
    );
    time("motion x2 (with its 2 resamplings)", &|v| {
        kspace::motion(v, &deg, &tr, &[0.3, 0.65], Interpolation::Linear)
    });
    time("motion x2: the 2 resamplings alone", &|v| {
        for m in 0..2 {
            let _ = mindscan_augment::exec::warp::resample_world(
                v,
                &kspace::motion_map(deg[m], tr[m]),
                Interpolation::Linear,
                0.0,
            );
        }
    });
    time("anisotropy axis 0 by 2.5", &|v| {
        resize::anisotropy(v, 0, 2.5)
    });
    time("anisotropy axis 2 by 2.5", &|v| {
        resize::anisotropy(v, 2, 2.5)
    });
    let pairs: Vec<[u32; 6]> = (0..100u32)
        .map(|n| {
            [
                n % 180,
                (n * 7) % 210,
                (n * 3) % 170,
                (n * 11) % 180,
                (n * 5) % 210,
                (n * 13) % 170,
            ]
        })
        .collect();
    time("swap 100 pairs of 15^3", &|v| {
        swap::swap(v, [15, 15, 15], &pairs)
    });
}
