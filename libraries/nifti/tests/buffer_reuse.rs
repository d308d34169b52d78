//! `nifti.read`'s volumes hand their voxel buffer back when released, and the next read of a
//! same-sized volume reuses it (no fresh, page-faulting allocation). One test in its own
//! process: the pool is shared by the whole plugin.

use std::path::PathBuf;

use mindscan_nifti::item::volume_item;
use mindscan_nifti::{VoxelData, read_nifti, write_nifti};

fn t1() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/data/nifti/t1w_siemens_xa30.nii.gz")
}

#[test]
fn a_released_volume_buffer_is_reused_by_the_next_read() {
    let path = t1();
    let first = volume_item(&path, read_nifti(&path).unwrap(), true).unwrap();
    let ptr = first.data().unwrap().as_slice::<i16>().unwrap().as_ptr();
    let values: Vec<i16> = first.data().unwrap().as_slice::<i16>().unwrap().to_vec();

    // While the first volume is alive, the second read gets its own buffer.
    let second = volume_item(&path, read_nifti(&path).unwrap(), true).unwrap();
    let second_ptr = second.data().unwrap().as_slice::<i16>().unwrap().as_ptr();
    assert_ne!(second_ptr, ptr);

    // Another volume of the same size and type, with other values.
    let dir = tempfile::tempdir().unwrap();
    let other = dir.path().join("inverted.nii.gz");
    let mut vol = read_nifti(&path).unwrap();
    let VoxelData::I16(v) = &mut vol.data else {
        panic!("the sample T1 is int16")
    };
    v.iter_mut().for_each(|x| *x = 1000 - *x);
    write_nifti(&other, &vol).unwrap();

    drop(first);
    let third = volume_item(&other, read_nifti(&other).unwrap(), true).unwrap();
    let data = third.data().unwrap().as_slice::<i16>().unwrap();
    assert_eq!(data.as_ptr(), ptr, "the released buffer is reused");
    assert!(
        data.iter().zip(&values).all(|(&a, &b)| a == 1000 - b),
        "and holds the new volume's voxels"
    );

    // A scaled volume becomes float32; its stored int16 buffer goes back at once and the next
    // read gets it (second and third still hold the other buffers, so the pool was empty).
    let scaled = dir.path().join("scaled.nii.gz");
    vol.scl_slope = 2.0;
    write_nifti(&scaled, &vol).unwrap();
    let raw = read_nifti(&scaled).unwrap();
    let VoxelData::I16(v) = &raw.data else {
        panic!("stored as int16")
    };
    let raw_ptr = v.as_ptr();
    let as_float = volume_item(&scaled, raw, true).unwrap();
    assert_eq!(
        as_float.data().unwrap().dtype(),
        mindscan_sdk::prelude::DType::F32
    );
    // (Read a file written like `scaled`: same header size, so the buffer fits exactly.)
    let fourth = volume_item(&other, read_nifti(&other).unwrap(), true).unwrap();
    let data = fourth.data().unwrap().as_slice::<i16>().unwrap();
    assert_eq!(
        data.as_ptr(),
        raw_ptr,
        "the scaled volume's stored buffer is reused"
    );
    assert!(data.iter().zip(&values).all(|(&a, &b)| a == 1000 - b));
    drop((second, third));
}
