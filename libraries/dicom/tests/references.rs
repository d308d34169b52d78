//! Series references: what `dicom.scan` emits and `volume.load` decodes on any machine. A
//! reference that went through JSON resolves to the series it was made from, and decodes to the
//! same volume; one whose files changed since is an error that names the series and the cause.

use crate::common::data_dir;
use mindscan_dicom::item::{load_planned, plan_series, reference_item, resolve};
use mindscan_dicom::{DeidOptions, scan};
use mindscan_sdk::item::Item;
use mindscan_sdk::reference::Reference;
use std::path::{Path, PathBuf};

fn series_dir(name: &str) -> PathBuf {
    data_dir().join("series").join(name).join("DICOM")
}

/// The reference as another machine receives it: serialised to JSON and parsed again.
fn across_the_wire(item: &Item) -> Reference {
    let json = serde_json::to_string(&Reference::of(item).unwrap()).unwrap();
    serde_json::from_str(&json).unwrap()
}

fn no_warnings(_: &str) {}

fn voxels(item: &Item) -> Vec<u8> {
    let t = item.tensor("data").unwrap();
    let bytes = if t.is_channels_last() {
        t.channels_last_bytes()
    } else {
        t.dense_bytes()
    };
    bytes.unwrap().to_vec()
}

#[test]
fn every_series_resolves_and_decodes_to_the_volume_of_a_direct_read() {
    let rep = scan(&[data_dir().join("series")]);
    assert!(rep.errors.is_empty(), "{:?}", rep.errors);
    let planned = plan_series(rep.series, "{series_number}_{series_description}");
    assert!(planned.len() >= 6, "{} series", planned.len());
    let deid = DeidOptions::default();
    for p in &planned {
        let item = reference_item(p);
        assert!(item.tensors.is_empty(), "a reference carries no pixels");
        let r = across_the_wire(&item);
        let back = resolve(&r, &p.stem, &p.source).unwrap();
        assert_eq!(back.series.id, p.series.id);
        let direct = load_planned(p, &deid, false, &no_warnings).unwrap();
        let via = load_planned(&back, &deid, false, &no_warnings).unwrap();
        assert_eq!(voxels(&direct), voxels(&via), "{}", p.stem);
        assert_eq!(&direct.meta.0, &via.meta.0, "{}", p.stem);
    }
}

fn copy_series(name: &str, dst: &Path) {
    std::fs::create_dir_all(dst).unwrap();
    for e in std::fs::read_dir(series_dir(name)).unwrap() {
        let p = e.unwrap().path();
        std::fs::copy(&p, dst.join(p.file_name().unwrap())).unwrap();
    }
}

fn reference_of(dir: &Path) -> (Reference, String, String) {
    let rep = scan(&[dir.to_path_buf()]);
    assert!(rep.errors.is_empty(), "{:?}", rep.errors);
    let mut planned = plan_series(rep.series, "{series_number}");
    assert_eq!(planned.len(), 1);
    let p = planned.pop().unwrap();
    let r = across_the_wire(&reference_item(&p));
    (r, p.stem, p.source)
}

#[test]
fn a_file_removed_since_the_scan_is_an_error_naming_it() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("ge");
    copy_series("GE_MR750_EPI_fMRI_mr_0004", &dir);
    let (r, stem, source) = reference_of(&dir);
    let Reference::Series { files, .. } = &r else {
        panic!("not a series: {}", r.describe())
    };
    let gone = files[files.len() / 2].clone();
    std::fs::remove_file(&gone).unwrap();
    let err = format!("{:#}", resolve(&r, &stem, &source).err().unwrap());
    assert!(err.contains(&gone), "{err}");
}

#[test]
fn a_file_replaced_by_another_series_is_an_error_not_a_wrong_volume() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("ge");
    copy_series("GE_MR750_EPI_fMRI_mr_0004", &dir);
    let (r, stem, source) = reference_of(&dir);
    let Reference::Series { files, .. } = &r else {
        panic!("not a series: {}", r.describe())
    };
    // Every file now holds a slice of another series.
    let other = std::fs::read_dir(series_dir("Siemens_Skyra_EPI_mosaic_mr_0003"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .next()
        .unwrap();
    for f in files {
        std::fs::copy(&other, f).unwrap();
    }
    let err = format!("{:#}", resolve(&r, &stem, &source).err().unwrap());
    assert!(err.contains("no longer hold"), "{err}");
}

#[test]
fn a_file_reference_is_not_a_series() {
    let r = Reference::File {
        path: "/data/a.nii".into(),
    };
    let err = format!("{:#}", resolve(&r, "a", "/data").err().unwrap());
    assert!(err.contains("not a DICOM series reference"), "{err}");
}
