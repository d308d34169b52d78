//! Orientation detection, storage-order invariance of slices, the display
//! convention and square-pixel resampling.

use mindscan_plugin_imaging::core::orient::{CanonicalView, Orientation};
use mindscan_plugin_imaging::core::slice::{
    FrameSelection, Plane, SliceOptions, SlicePixels, SliceSelection, extract_slice,
    extract_slice_typed, resample_bilinear, square_pixel_geometry,
};

type Affine = [[f64; 4]; 4];

/// RAS-canonical test volume: shape `n` (x, y, z), every value distinct.
fn ras_volume(n: [usize; 3]) -> Vec<f32> {
    let mut v = Vec::with_capacity(n[0] * n[1] * n[2]);
    for z in 0..n[2] {
        for y in 0..n[1] {
            for x in 0..n[0] {
                v.push((1 + x + 100 * y + 10_000 * z) as f32);
            }
        }
    }
    v
}

/// Stores a RAS-canonical volume with the given axis codes (e.g. "LPS", "ASR").
/// Returns (storage data, dims, affine). `spacing` is per world axis (x, y, z).
fn store_as(
    ras: &[f32],
    n: [usize; 3],
    spacing: [f64; 3],
    codes: &str,
) -> (Vec<f32>, [usize; 3], Affine) {
    let codes: Vec<char> = codes.chars().collect();
    // For each storage axis: (world axis, flipped).
    let axes: Vec<(usize, bool)> = codes
        .iter()
        .map(|c| match c {
            'R' => (0, false),
            'L' => (0, true),
            'A' => (1, false),
            'P' => (1, true),
            'S' => (2, false),
            'I' => (2, true),
            _ => panic!("bad code"),
        })
        .collect();
    let dims = [n[axes[0].0], n[axes[1].0], n[axes[2].0]];
    let mut data = vec![0.0f32; ras.len()];
    for k in 0..dims[2] {
        for j in 0..dims[1] {
            for i in 0..dims[0] {
                let mut r = [0usize; 3];
                for (a, &s) in [i, j, k].iter().enumerate() {
                    let (w, flip) = axes[a];
                    r[w] = if flip { n[w] - 1 - s } else { s };
                }
                data[i + dims[0] * (j + dims[1] * k)] = ras[r[0] + n[0] * (r[1] + n[1] * r[2])];
            }
        }
    }
    let mut aff = [[0.0; 4]; 4];
    aff[3][3] = 1.0;
    for (a, &(w, flip)) in axes.iter().enumerate() {
        aff[w][a] = if flip { -spacing[w] } else { spacing[w] };
        // A translation keeping world positions consistent with the RAS layout.
        if flip {
            aff[w][3] += spacing[w] * (n[w] - 1) as f64;
        }
    }
    (data, dims, aff)
}

fn rotate_z(aff: &Affine, deg: f64) -> Affine {
    let (s, c) = deg.to_radians().sin_cos();
    let mut out = *aff;
    for col in 0..4 {
        let (x, y) = (aff[0][col], aff[1][col]);
        out[0][col] = c * x - s * y;
        out[1][col] = s * x + c * y;
    }
    out
}

const LAYOUTS: &[&str] = &[
    "RAS", "LAS", "LPS", "LPI", "PLS", "ASR", "SAR", "IPL", "RSA", "PIR",
];

#[test]
fn axcodes_of_axis_aligned_affines() {
    let n = [4, 5, 6];
    let ras = ras_volume(n);
    for &codes in LAYOUTS {
        let (_, _, aff) = store_as(&ras, n, [1.0, 2.0, 3.0], codes);
        let o = Orientation::from_affine(&aff).unwrap();
        assert_eq!(o.axcodes().iter().collect::<String>(), codes);
    }
}

#[test]
fn axcodes_match_nibabel_for_oblique_and_sheared_affines() {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/orientation_cases.json"
    ))
    .unwrap();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    let cases = v["cases"].as_array().unwrap();
    assert!(cases.len() >= 50);
    for case in cases {
        let mut aff = [[0.0; 4]; 4];
        for r in 0..4 {
            for c in 0..4 {
                aff[r][c] = case["affine"][r][c].as_f64().unwrap();
            }
        }
        let o = Orientation::from_affine(&aff).unwrap();
        let got: String = o.axcodes().iter().collect();
        assert_eq!(got, case["axcodes"].as_str().unwrap(), "affine {aff:?}");
        let mut w = o.world_axis;
        w.sort();
        assert_eq!(w, [0, 1, 2], "world axes must be a permutation");
    }
}

#[test]
fn never_two_voxel_axes_on_one_world_axis() {
    // Both i and j point mostly along x; j must be given another axis.
    let aff = [
        [1.0, 0.9, 0.0, 0.0],
        [0.1, 0.5, 0.0, 0.0],
        [0.0, 0.0, 1.0, 0.0],
        [0.0, 0.0, 0.0, 1.0],
    ];
    let o = Orientation::from_affine(&aff).unwrap();
    assert_eq!(o.world_axis[2], 2);
    assert_ne!(o.world_axis[0], o.world_axis[1]);
}

#[test]
fn rejects_bad_inputs() {
    let mut aff = [[0.0; 4]; 4];
    for (i, row) in aff.iter_mut().enumerate() {
        row[i] = 1.0;
    }
    assert!(CanonicalView::new(&[0.0; 5], [2, 2, 1], 1, &aff).is_err());
    assert!(CanonicalView::<f32>::new(&[], [0, 2, 1], 1, &aff).is_err());
    aff[0][0] = f64::NAN;
    assert!(CanonicalView::new(&[0.0; 4], [2, 2, 1], 1, &aff).is_err());
}

fn all_slices(
    view: &CanonicalView<'_>,
    opts: &SliceOptions,
) -> Vec<(Plane, usize, Vec<f32>, usize, usize)> {
    let mut out = Vec::new();
    for plane in Plane::ALL {
        for idx in 0..plane.slice_count(view) {
            let s = extract_slice(view, plane, idx, 0, opts).unwrap();
            out.push((plane, idx, s.data, s.rows, s.cols));
        }
    }
    out
}

fn check_invariance(spacing: [f64; 3]) {
    let n = [5, 6, 7];
    let ras = ras_volume(n);
    let (_, _, ras_aff) = store_as(&ras, n, spacing, "RAS");
    for radiological in [false, true] {
        let opts = SliceOptions {
            radiological,
            square_pixels: true,
        };
        let reference = all_slices(&CanonicalView::new(&ras, n, 1, &ras_aff).unwrap(), &opts);
        assert_eq!(reference.len(), 5 + 6 + 7);
        for &codes in LAYOUTS {
            let (data, dims, aff) = store_as(&ras, n, spacing, codes);
            for oblique in [0.0, 12.0] {
                let aff = rotate_z(&aff, oblique);
                let view = CanonicalView::new(&data, dims, 1, &aff).unwrap();
                assert_eq!(view.shape(), n, "{codes}");
                let got = all_slices(&view, &opts);
                for (g, r) in got.iter().zip(&reference) {
                    assert_eq!(g.0, r.0);
                    assert_eq!(g.1, r.1);
                    assert_eq!((g.3, g.4), (r.3, r.4), "{codes} {:?} {}", g.0, g.1);
                    assert_eq!(
                        g.2, r.2,
                        "{codes} oblique {oblique} {:?} slice {}",
                        g.0, g.1
                    );
                }
            }
        }
    }
}

#[test]
fn slices_identical_for_every_storage_layout_isotropic() {
    check_invariance([1.0, 1.0, 1.0]);
}

#[test]
fn slices_identical_for_every_storage_layout_anisotropic() {
    check_invariance([1.0, 3.0, 2.0]);
}

/// Slices cut from an integer volume in its own dtype hold exactly the values of the float path,
/// in every storage layout; they become f32 only where square-pixel resampling interpolates.
#[test]
fn integer_volumes_are_cut_in_their_own_dtype() {
    let n = [5, 6, 7];
    let ras = ras_volume(n);
    for spacing in [[1.0, 1.0, 1.0], [1.0, 3.0, 2.0]] {
        for &codes in LAYOUTS {
            let (data, dims, aff) = store_as(&ras, n, spacing, codes);
            let ints: Vec<i32> = data.iter().map(|&v| v as i32).collect();
            let fview = CanonicalView::new(&data, dims, 1, &aff).unwrap();
            let iview = CanonicalView::new(&ints, dims, 1, &aff).unwrap();
            for plane in Plane::ALL {
                for index in [0, plane.slice_count(&fview) - 1] {
                    let opts = SliceOptions::default();
                    let f = extract_slice(&fview, plane, index, 0, &opts).unwrap();
                    let t = extract_slice_typed(&iview, plane, index, 0, &opts).unwrap();
                    assert_eq!((t.rows, t.cols), (f.rows, f.cols));
                    let (nr, nc) = plane.native_shape(&fview);
                    match t.data {
                        SlicePixels::Native(v) => {
                            assert_eq!((nr, nc), (f.rows, f.cols), "{codes} {plane:?}");
                            let as_f: Vec<f32> = v.iter().map(|&x| x as f32).collect();
                            assert_eq!(as_f, f.data, "{codes} {plane:?} {index}");
                        }
                        SlicePixels::Resampled(v) => {
                            assert_ne!((nr, nc), (f.rows, f.cols), "{codes} {plane:?}");
                            assert_eq!(v, f.data, "{codes} {plane:?} {index}");
                        }
                    }
                }
            }
        }
    }
}

/// Independent statement of the convention on the RAS-canonical volume.
#[test]
fn display_convention_formula() {
    let n = [5, 6, 7];
    let ras = ras_volume(n);
    let at = |x: usize, y: usize, z: usize| ras[x + n[0] * (y + n[1] * z)];
    for &codes in &["RAS", "LPS", "PIR"] {
        let (data, dims, aff) = store_as(&ras, n, [1.0; 3], codes);
        let view = CanonicalView::new(&data, dims, 1, &aff).unwrap();
        for radiological in [false, true] {
            let opts = SliceOptions {
                radiological,
                square_pixels: true,
            };
            let ax = extract_slice(&view, Plane::Axial, 3, 0, &opts).unwrap();
            assert_eq!((ax.rows, ax.cols), (6, 5));
            let co = extract_slice(&view, Plane::Coronal, 2, 0, &opts).unwrap();
            assert_eq!((co.rows, co.cols), (7, 5));
            let sa = extract_slice(&view, Plane::Sagittal, 1, 0, &opts).unwrap();
            assert_eq!((sa.rows, sa.cols), (7, 6));
            for r in 0..6 {
                for c in 0..5 {
                    let x = if radiological { 4 - c } else { c };
                    assert_eq!(ax.data[r * 5 + c], at(x, 5 - r, 3));
                }
            }
            for r in 0..7 {
                for c in 0..5 {
                    let x = if radiological { 4 - c } else { c };
                    assert_eq!(co.data[r * 5 + c], at(x, 2, 6 - r));
                }
                for c in 0..6 {
                    assert_eq!(sa.data[r * 6 + c], at(1, c, 6 - r));
                }
            }
        }
    }
}

/// A marker at patient Left-Anterior-Superior, stored LPS (DICOM-like).
#[test]
fn marker_left_anterior_superior() {
    let n = [8, 9, 10];
    let mut ras = vec![0.0f32; n[0] * n[1] * n[2]];
    let (x, y, z) = (0, n[1] - 1, n[2] - 1); // Left, Anterior, Superior corner
    ras[x + n[0] * (y + n[1] * z)] = 1.0;
    let (data, dims, aff) = store_as(&ras, n, [1.0; 3], "LPS");
    // In LPS storage the marker is at i = 7 (left = +i), j = 0 (anterior = -j), k = 9.
    assert_eq!(data[7 + dims[0] * dims[1] * 9], 1.0);
    let view = CanonicalView::new(&data, dims, 1, &aff).unwrap();
    let find = |s: &mindscan_plugin_imaging::core::Slice2D| {
        let p = s
            .data
            .iter()
            .position(|&v| v == 1.0)
            .expect("marker visible");
        (p / s.cols, p % s.cols)
    };
    let neuro = SliceOptions::default();
    let radio = SliceOptions {
        radiological: true,
        ..SliceOptions::default()
    };
    let ax = extract_slice(&view, Plane::Axial, n[2] - 1, 0, &neuro).unwrap();
    assert_eq!(find(&ax), (0, 0), "axial neurological: top-left");
    let ax = extract_slice(&view, Plane::Axial, n[2] - 1, 0, &radio).unwrap();
    assert_eq!(find(&ax), (0, ax.cols - 1), "axial radiological: top-right");
    let co = extract_slice(&view, Plane::Coronal, n[1] - 1, 0, &neuro).unwrap();
    assert_eq!(find(&co), (0, 0), "coronal neurological: top-left");
    let co = extract_slice(&view, Plane::Coronal, n[1] - 1, 0, &radio).unwrap();
    assert_eq!(
        find(&co),
        (0, co.cols - 1),
        "coronal radiological: top-right"
    );
    for opts in [neuro, radio] {
        let sa = extract_slice(&view, Plane::Sagittal, 0, 0, &opts).unwrap();
        assert_eq!(
            find(&sa),
            (0, sa.cols - 1),
            "sagittal: anterior on the right, top"
        );
    }
}

#[test]
fn four_d_frames_and_selection() {
    let n = [3, 4, 2];
    let vox = n[0] * n[1] * n[2];
    let data: Vec<f32> = (0..vox * 3).map(|v| v as f32).collect();
    let (_, _, aff) = store_as(&data[..vox], n, [1.0; 3], "RAS");
    let view = CanonicalView::new(&data, n, 3, &aff).unwrap();
    let s = extract_slice(&view, Plane::Axial, 1, 2, &SliceOptions::default()).unwrap();
    // Frame 2, z = 1, top row is y = 3.
    let first = (2 * vox + 3 * 4 + 3 * 3) as f32;
    assert_eq!(&s.data[..3], &[first, first + 1.0, first + 2.0]);
    assert!(extract_slice(&view, Plane::Axial, 2, 0, &SliceOptions::default()).is_err());
    assert!(extract_slice(&view, Plane::Axial, 0, 3, &SliceOptions::default()).is_err());

    assert_eq!(FrameSelection::All.resolve(3).unwrap(), vec![0, 1, 2]);
    assert_eq!(
        FrameSelection::Indices(vec![2]).resolve(3).unwrap(),
        vec![2]
    );
    assert!(FrameSelection::Indices(vec![3]).resolve(3).is_err());
    assert_eq!(SliceSelection::All.resolve(4).unwrap(), vec![0, 1, 2, 3]);
    assert_eq!(SliceSelection::Middle.resolve(189).unwrap(), vec![94]);
    assert_eq!(
        SliceSelection::Indices(vec![5, 1]).resolve(6).unwrap(),
        vec![5, 1]
    );
    assert!(SliceSelection::Indices(vec![6]).resolve(6).is_err());
    let r = SliceSelection::Range {
        start: 1,
        stop: 100,
        step: 3,
    };
    assert_eq!(r.resolve(10).unwrap(), vec![1, 4, 7]);
    let zero = SliceSelection::Range {
        start: 0,
        stop: 5,
        step: 0,
    };
    assert!(zero.resolve(10).is_err());
}

#[test]
fn anisotropic_voxels_give_square_pixels() {
    // Voxels 1 x 3 x 2 mm (x, y, z), stored RAS.
    let n = [6, 4, 5];
    let ras = ras_volume(n);
    let (data, dims, aff) = store_as(&ras, n, [1.0, 3.0, 2.0], "RAS");
    let view = CanonicalView::new(&data, dims, 1, &aff).unwrap();
    let opts = SliceOptions::default();
    // Axial: rows along y (3 mm, 4 px -> 12), cols along x (1 mm, 6 px).
    let ax = extract_slice(&view, Plane::Axial, 2, 0, &opts).unwrap();
    assert_eq!((ax.rows, ax.cols), (12, 6));
    assert!((ax.spacing_row - 1.0).abs() < 1e-12 && (ax.spacing_col - 1.0).abs() < 1e-12);
    // Coronal: rows along z (2 mm, 5 -> 10), cols along x (6).
    let co = extract_slice(&view, Plane::Coronal, 1, 0, &opts).unwrap();
    assert_eq!((co.rows, co.cols), (10, 6));
    // Sagittal: rows z (2 mm, 5 px), cols y (3 mm, 4 px) -> min 2 mm: 5 x 6.
    let sa = extract_slice(&view, Plane::Sagittal, 0, 0, &opts).unwrap();
    assert_eq!((sa.rows, sa.cols), (5, 6));
    assert!((sa.spacing_col - 2.0).abs() < 1e-12);
    // Without resampling the native grid comes back.
    let native = SliceOptions {
        square_pixels: false,
        ..opts
    };
    let ax_n = extract_slice(&view, Plane::Axial, 2, 0, &native).unwrap();
    assert_eq!((ax_n.rows, ax_n.cols), (4, 6));
    // Resampled values stay within the neighbouring voxel values (bilinear),
    // columns (isotropic axis) are exact copies of voxel columns at the edges.
    for c in 0..6 {
        assert_eq!(
            ax.data[c], ax_n.data[c],
            "top row clamps to the first voxel row"
        );
        assert_eq!(ax.data[11 * 6 + c], ax_n.data[3 * 6 + c]);
    }
    // Row 2 of 12 sits at source row (2.5 * 4 / 12 - 0.5) = 1/3: a 2:1 blend.
    let expect = ax_n.data[0] + (ax_n.data[6] - ax_n.data[0]) / 3.0;
    assert!(
        (ax.data[2 * 6] - expect).abs() < 1e-3,
        "{} vs {expect}",
        ax.data[12]
    );
}

#[test]
fn isotropic_is_exact_copy_and_geometry_rules() {
    assert_eq!(
        square_pixel_geometry(10, 20, 0.7, 0.7),
        Some((10, 20, 0.7, 0.7))
    );
    let (r, c, sr, sc) = square_pixel_geometry(10, 20, 1.5, 1.0).unwrap();
    assert_eq!((r, c), (15, 20));
    assert_eq!((sr, sc), (1.0, 1.0));
    let img: Vec<f32> = (0..12).map(|v| v as f32 * 1.5).collect();
    assert_eq!(resample_bilinear(&img, 3, 4, 3, 4), img);
    // 2x upsampling of a linear ramp stays monotone and keeps the end values.
    let up = resample_bilinear(&[0.0, 10.0], 1, 2, 1, 4);
    assert_eq!(up, vec![0.0, 2.5, 7.5, 10.0]);
}

/// A voxel size of 1e30 mm beside 1 mm would resample to a slice 10^31 pixels tall: refused,
/// as are spacings that are not finite and positive; a long side within the bound is fine.
#[test]
fn absurd_spacings_give_no_geometry_instead_of_a_giant_slice() {
    assert_eq!(square_pixel_geometry(10, 20, 1e30, 1.0), None);
    assert_eq!(square_pixel_geometry(10, 20, 1.0, 1e30), None);
    assert_eq!(square_pixel_geometry(10, 20, f64::NAN, 1.0), None);
    assert_eq!(square_pixel_geometry(10, 20, f64::INFINITY, 1.0), None);
    assert_eq!(square_pixel_geometry(10, 20, 0.0, 1.0), None);
    assert_eq!(square_pixel_geometry(10, 20, -1.0, 1.0), None);
    let (r, c, _, _) = square_pixel_geometry(16, 20, 1024.0, 1.0).unwrap();
    assert_eq!((r, c), (16384, 20));
    assert_eq!(square_pixel_geometry(17, 20, 1024.0, 1.0), None);
}

/// Through the slicer: an affine with a 1e30 mm voxel is an error naming the spacing, not a
/// capacity-overflow panic.
#[test]
fn slicing_a_volume_with_a_1e30_voxel_size_is_an_error_naming_the_spacing() {
    let data = ras_volume([4, 5, 6]);
    let mut affine: Affine = [[0.0; 4]; 4];
    affine[0][0] = 1e30;
    affine[1][1] = 1.0;
    affine[2][2] = 1.0;
    affine[3][3] = 1.0;
    let view = CanonicalView::new(&data[..], [4, 5, 6], 1, &affine).unwrap();
    let msg = match extract_slice_typed(&view, Plane::Axial, 0, 0, &SliceOptions::default()) {
        Ok(s) => panic!("a 1e30 mm voxel sliced into {} x {}", s.rows, s.cols),
        Err(e) => e.to_string(),
    };
    assert!(msg.contains("1.000e30") && msg.contains("axial"), "{msg}");
    // Without square pixels nothing is resampled, so the native slice is fine.
    let opts = SliceOptions {
        square_pixels: false,
        ..SliceOptions::default()
    };
    let s = extract_slice_typed(&view, Plane::Axial, 0, 0, &opts).unwrap();
    assert_eq!((s.rows, s.cols), (5, 4));
}
