//! Philips private scaling (MRScaleSlope, 2005,100E): dcm2niix's floating-point values by
//! default, the displayed values on request, in classic and enhanced files alike.

use crate::common::data_dir;
use mindscan_dicom::{LoadOptions, PhilipsScaling, load_series_with, scan};

fn load(dir: &str, mode: PhilipsScaling) -> mindscan_dicom::DicomVolume {
    let rep = scan(&[data_dir().join("series").join(dir).join("DICOM")]);
    assert_eq!(rep.series.len(), 1, "{dir}");
    let opts = LoadOptions {
        philips_scaling: mode,
        ..LoadOptions::default()
    };
    load_series_with(&rep.series[0], &opts).unwrap()
}

const RESCALE_SLOPE: f64 = 1.25787545787545; // (0028,1053) of every file
const SCALE_SLOPE: f32 = 1.196_020_8e-5; // (2005,100E), an FL

#[test]
fn float_scaling_is_the_default_and_display_scaling_is_rescale_slope() {
    for dir in [
        "Philips_Ingenia_402_3D_pCASL_classic",
        "Philips_Ingenia_402_3D_pCASL_enhanced",
    ] {
        let fp = load(dir, PhilipsScaling::Float);
        let slope = fp.scl_slope.unwrap();
        assert!(
            (slope - 1.0 / SCALE_SLOPE as f64).abs() < 1e-6 * slope,
            "{dir}: {slope}"
        );
        assert_eq!(fp.scl_inter, Some(0.0));
        assert_eq!(fp.sidecar["UsePhilipsFloatNotDisplayScaling"], 1);
        assert_eq!(fp.sidecar["PhilipsScaleSlope"], SCALE_SLOPE as f64);

        let dv = load(dir, PhilipsScaling::Display);
        assert_eq!(dv.scl_slope, Some(RESCALE_SLOPE), "{dir}");
        assert_eq!(dv.sidecar["UsePhilipsFloatNotDisplayScaling"], 0);
        // Same stored values: only the scaling differs.
        assert_eq!(fp.voxels, dv.voxels, "{dir}");
    }
}

#[test]
fn real_world_value_mapping_is_reported_not_applied() {
    let v = load(
        "Philips_Ingenia_402_3D_pCASL_classic",
        PhilipsScaling::Float,
    );
    assert_eq!(v.sidecar["PhilipsRWVSlope"], 1.2578754578754578);
    assert!((v.scl_slope.unwrap() - 1.0 / SCALE_SLOPE as f64).abs() < 1e-2);
}
