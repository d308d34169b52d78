//! Enhanced multi-frame (per-frame functional groups): a file synthesised from
//! three real XA30 slices must load exactly like the classic files.

use crate::common::data_dir;
use dicom_core::value::DataSetSequence;
use dicom_core::{DataElement, PrimitiveValue, Tag, VR};
use dicom_object::{InMemDicomObject, OpenFileOptions, meta::FileMetaTableBuilder};
use mindscan_dicom::{load_series, scan};

fn el(g: u16, e: u16, vr: VR, v: &str) -> DataElement<InMemDicomObject> {
    DataElement::new(Tag(g, e), vr, PrimitiveValue::from(v))
}
fn seq(g: u16, e: u16, items: Vec<InMemDicomObject>) -> DataElement<InMemDicomObject> {
    DataElement::new(Tag(g, e), VR::SQ, DataSetSequence::from(items))
}
fn item(els: Vec<DataElement<InMemDicomObject>>) -> InMemDicomObject {
    InMemDicomObject::from_element_iter(els)
}

#[test]
fn enhanced_mr_frames_sorted_and_geometry_from_functional_groups() {
    let dir = data_dir().join("series/Siemens_PrismaFit_XA30i_5001_anat-T1w_acq-tfl/DICOM");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            let n = p.file_name().unwrap().to_string_lossy().to_string();
            n.starts_with("5001040_") || n.starts_with("5001041_") || n.starts_with("5001042_")
        })
        .collect();
    files.sort();
    assert_eq!(files.len(), 3);
    let tmp = tempfile::tempdir().unwrap();
    let classic_dir = tmp.path().join("classic");
    std::fs::create_dir(&classic_dir).unwrap();
    let mut pixels: Vec<u16> = Vec::new();
    let mut per_frame = Vec::new();
    let mut shared_ori = String::new();
    // Frames stored in reverse order: the loader must sort them spatially.
    for f in files.iter().rev() {
        std::fs::copy(f, classic_dir.join(f.file_name().unwrap())).unwrap();
        let o = OpenFileOptions::new().open_file(f).unwrap();
        let s = |t: Tag| o.element(t).unwrap().to_str().unwrap().to_string();
        shared_ori = s(Tag(0x0020, 0x0037));
        per_frame.push(item(vec![
            seq(
                0x0020,
                0x9111,
                vec![item(vec![DataElement::new(
                    Tag(0x0020, 0x9057),
                    VR::UL,
                    PrimitiveValue::from(1u32),
                )])],
            ),
            seq(
                0x0020,
                0x9113,
                vec![item(vec![el(
                    0x0020,
                    0x0032,
                    VR::DS,
                    &s(Tag(0x0020, 0x0032)),
                )])],
            ),
        ]));
        pixels.extend(
            o.element(Tag(0x7FE0, 0x0010))
                .unwrap()
                .uint16_slice()
                .unwrap(),
        );
    }
    let shared = item(vec![
        seq(
            0x0020,
            0x9116,
            vec![item(vec![el(0x0020, 0x0037, VR::DS, &shared_ori)])],
        ),
        seq(
            0x0028,
            0x9110,
            vec![item(vec![
                el(0x0018, 0x0050, VR::DS, "2"),
                el(0x0028, 0x0030, VR::DS, "2\\2"),
            ])],
        ),
        seq(
            0x0028,
            0x9145,
            vec![item(vec![
                el(0x0028, 0x1052, VR::DS, "0"),
                el(0x0028, 0x1053, VR::DS, "1"),
            ])],
        ),
    ]);
    let obj = InMemDicomObject::from_element_iter([
        el(0x0008, 0x0016, VR::UI, "1.2.840.10008.5.1.4.1.1.4.1"),
        el(0x0008, 0x0018, VR::UI, "1.2.826.0.1.3680043.2.1125.99.1"),
        el(0x0008, 0x0060, VR::CS, "MR"),
        el(0x0020, 0x000E, VR::UI, "1.2.826.0.1.3680043.2.1125.99.2"),
        el(0x0020, 0x0011, VR::IS, "7"),
        DataElement::new(Tag(0x0028, 0x0002), VR::US, PrimitiveValue::from(1u16)),
        el(0x0028, 0x0004, VR::CS, "MONOCHROME2"),
        el(0x0028, 0x0008, VR::IS, "3"),
        DataElement::new(Tag(0x0028, 0x0010), VR::US, PrimitiveValue::from(128u16)),
        DataElement::new(Tag(0x0028, 0x0011), VR::US, PrimitiveValue::from(128u16)),
        DataElement::new(Tag(0x0028, 0x0100), VR::US, PrimitiveValue::from(16u16)),
        DataElement::new(Tag(0x0028, 0x0101), VR::US, PrimitiveValue::from(12u16)),
        DataElement::new(Tag(0x0028, 0x0102), VR::US, PrimitiveValue::from(11u16)),
        DataElement::new(Tag(0x0028, 0x0103), VR::US, PrimitiveValue::from(0u16)),
        seq(0x5200, 0x9229, vec![shared]),
        seq(0x5200, 0x9230, per_frame),
        DataElement::new(
            Tag(0x7FE0, 0x0010),
            VR::OW,
            PrimitiveValue::U16(pixels.into()),
        ),
    ]);
    let file = obj
        .with_meta(
            FileMetaTableBuilder::new()
                .media_storage_sop_class_uid("1.2.840.10008.5.1.4.1.1.4.1")
                .transfer_syntax("1.2.840.10008.1.2.1"),
        )
        .unwrap();
    let mf = tmp.path().join("enhanced.dcm");
    file.write_to_file(&mf).unwrap();

    let rep = scan(std::slice::from_ref(&mf));
    assert!(rep.errors.is_empty(), "{:?}", rep.errors);
    let s = &rep.series[0];
    assert_eq!(s.dims, [128, 128, 3, 1]);
    let vol = load_series(s).unwrap();
    let classic = load_series(&scan(&[classic_dir]).series[0]).unwrap();
    assert_eq!(classic.dims, vol.dims);
    assert_eq!(
        classic.voxels, vol.voxels,
        "frames sorted like the classic slices"
    );
    for r in 0..3 {
        for c in 0..4 {
            assert!((classic.affine[r][c] - vol.affine[r][c]).abs() < 1e-6);
        }
    }
}
