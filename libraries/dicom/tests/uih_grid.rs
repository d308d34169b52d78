#![allow(clippy::needless_range_loop)]
//! UIH grid mosaics ("VFRAME"): each file tiles NumberOfImagesInGrid (0065,1050) slices in
//! ceil(√n) columns by ceil(n / columns) rows (not a square grid), with each slice's position
//! in the private sequence (0065,1051) and no top-level ImagePositionPatient (dcm2niix's
//! UIH/README.md). No public UIH series is in the test data, so this fixture is made from the
//! real Siemens mosaic (5 slices of 72x72 in a 3x3 grid of a 216x216 image) by editing it
//! into UIH's layout:
//! * Manufacturer -> `UIH`; ImageType without MOSAIC; the Siemens CSA headers removed;
//! * the image cut to the 2 tile rows UIH uses for 5 slices (216x144), Rows -> 144;
//! * (0065,1050) = 5, and (0065,1051) holding each slice's position, taken from the Siemens
//!   conversion (which matches dcm2niix's reference); the top-level position removed.
//!
//! The UIH reading must then give the Siemens volume: same voxels, same affine.

use crate::common::data_dir;
use dicom_core::value::DataSetSequence;
use dicom_core::{DataElement, PrimitiveValue, Tag, VR};
use dicom_dictionary_std::tags;
use dicom_object::InMemDicomObject;
use mindscan_dicom::{load_series, scan};

fn mosaic_dir() -> std::path::PathBuf {
    data_dir().join("series/Siemens_Skyra_EPI_mosaic_mr_0003/DICOM")
}

#[test]
fn uih_grid_mosaic_reads_as_the_same_volume_as_the_siemens_mosaic() {
    let siemens = scan(&[mosaic_dir()]);
    let siemens = load_series(&siemens.series[0]).unwrap();
    let a = siemens.affine;
    // Slice k's position (LPS) from the Siemens affine (RAS): origin + k · slice vector.
    let lps = |r: usize, v: f64| if r < 2 { -v } else { v };
    let position =
        |k: usize| -> [f64; 3] { [0, 1, 2].map(|r| lps(r, a[r][3] + k as f64 * a[r][2])) };

    let tmp = tempfile::tempdir().unwrap();
    let mut files: Vec<_> = std::fs::read_dir(mosaic_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "dcm"))
        .collect();
    files.sort();
    for f in &files {
        let mut obj = dicom_object::open_file(f).unwrap();
        obj.put(DataElement::new(
            tags::MANUFACTURER,
            VR::LO,
            PrimitiveValue::from("UIH"),
        ));
        obj.put(DataElement::new(
            tags::IMAGE_TYPE,
            VR::CS,
            PrimitiveValue::from("ORIGINAL\\PRIMARY\\M\\ND\\VFRAME"),
        ));
        let private: Vec<Tag> = obj
            .iter()
            .map(|e| e.header().tag)
            .filter(|t| t.group() == 0x0029 || t.group() == 0x0019)
            .collect();
        for t in private {
            obj.remove_element(t);
        }
        // Keep the first two rows of tiles: 144 of the 216 image rows.
        let px = obj
            .element(tags::PIXEL_DATA)
            .unwrap()
            .to_bytes()
            .unwrap()
            .to_vec();
        let kept: Vec<u16> = px[..216 * 144 * 2]
            .chunks_exact(2)
            .map(|c| u16::from_le_bytes([c[0], c[1]]))
            .collect();
        obj.put(DataElement::new(
            tags::PIXEL_DATA,
            VR::OW,
            PrimitiveValue::U16(kept.into()),
        ));
        obj.put(DataElement::new(
            tags::ROWS,
            VR::US,
            PrimitiveValue::from(144u16),
        ));
        obj.remove_element(tags::IMAGE_POSITION_PATIENT);
        obj.put(DataElement::new(
            Tag(0x0065, 0x0010),
            VR::LO,
            PrimitiveValue::from("Image Private Header"),
        ));
        obj.put(DataElement::new(
            Tag(0x0065, 0x1050),
            VR::DS,
            PrimitiveValue::from("5"),
        ));
        let items: Vec<InMemDicomObject> = (0..5)
            .map(|k| {
                let p = position(k);
                InMemDicomObject::from_element_iter([DataElement::new(
                    tags::IMAGE_POSITION_PATIENT,
                    VR::DS,
                    PrimitiveValue::from(format!("{:.6}\\{:.6}\\{:.6}", p[0], p[1], p[2])),
                )])
            })
            .collect();
        obj.put(DataElement::new(
            Tag(0x0065, 0x1051),
            VR::SQ,
            DataSetSequence::from(items),
        ));
        obj.write_to_file(tmp.path().join(f.file_name().unwrap()))
            .unwrap();
    }

    let rep = scan(&[tmp.path().to_path_buf()]);
    assert!(rep.errors.is_empty(), "{:?}", rep.errors);
    assert_eq!(rep.series.len(), 1);
    assert_eq!(rep.series[0].mosaic, Some(5));
    let uih = load_series(&rep.series[0]).unwrap();
    assert_eq!(
        uih.dims,
        [72, 72, 5, 2],
        "5 slices of 72x72 from a 3x2 grid"
    );
    assert!(
        uih.voxels == siemens.voxels,
        "same voxels as the Siemens mosaic"
    );
    for r in 0..3 {
        for c in 0..4 {
            assert!(
                (uih.affine[r][c] - a[r][c]).abs() < 1e-3,
                "affine [{r}][{c}]: {} vs {}",
                uih.affine[r][c],
                a[r][c]
            );
        }
    }
}
