//! The SDK `volume` item a NIfTI file becomes: the one place that maps a [`NiftiVolume`] onto
//! a tensor and its metadata, shared by every stage that reads NIfTI (`nifti.read`, the watch
//! source). The rest of this crate uses nothing of the SDK.

use std::path::Path;

use mindscan_sdk::prelude::*;
use mindscan_sdk::tensor::channels_last_strides;

use crate::pool::POOL;
use crate::{NiftiVolume, VoxelData};

/// File name without `.nii` / `.nii.gz`.
pub fn stem(path: &Path) -> String {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    for ext in [".nii.gz", ".nii", ".gz"] {
        if name.len() > ext.len() && name.to_ascii_lowercase().ends_with(ext) {
            return name[..name.len() - ext.len()].to_string();
        }
    }
    name
}

/// Whether a path names a NIfTI file (`.nii` or `.nii.gz`, any case).
pub fn is_nifti(p: &Path) -> bool {
    let n = p.to_string_lossy().to_ascii_lowercase();
    n.ends_with(".nii") || n.ends_with(".nii.gz")
}

/// A volume tensor whose buffer goes back to the reader's pool once released everywhere.
fn recycled<T: Element>(v: Vec<T>, dims: &[usize]) -> Tensor {
    Tensor::volume_recycled(v, dims, |v| POOL.give_back(v))
}

/// Builds the `volume` item for a NIfTI file.
pub fn volume_item(path: &Path, vol: NiftiVolume, apply_scaling: bool) -> Result<Item> {
    volume_item_named(path, &path.display().to_string(), vol, apply_scaling)
}

/// [`volume_item`] for a file known by another name than its path (the URL of an object
/// mirrored into a local cache): the name is its key and source.
pub fn volume_item_named(
    path: &Path,
    name: &str,
    mut vol: NiftiVolume,
    apply_scaling: bool,
) -> Result<Item> {
    let mut item = Item::new(kinds::VOLUME, name);
    let dims = vol.dims.clone();
    let scaled = apply_scaling && vol.has_scaling();
    let type_name = vol.data.type_name();
    let mut shape = dims.clone();
    let channels = match vol.data {
        VoxelData::Rgb24(_) => 3,
        VoxelData::Rgba32(_) => 4,
        _ => 1,
    };
    let tensor = if scaled {
        let v = vol
            .scaled_f32()
            .context("scaled data of a complex or RGB volume")?;
        // The stored values are no longer needed: the next read reuses their buffer.
        std::mem::replace(&mut vol.data, VoxelData::U8(Vec::new())).recycle();
        Tensor::volume(v, &dims)
    } else {
        match vol.data {
            VoxelData::U8(v) => recycled(v, &dims),
            VoxelData::I8(v) => recycled(v, &dims),
            VoxelData::U16(v) => recycled(v, &dims),
            VoxelData::I16(v) => recycled(v, &dims),
            VoxelData::U32(v) => recycled(v, &dims),
            VoxelData::I32(v) => recycled(v, &dims),
            VoxelData::U64(v) => recycled(v, &dims),
            VoxelData::I64(v) => recycled(v, &dims),
            VoxelData::F32(v) => recycled(v, &dims),
            VoxelData::F64(v) => recycled(v, &dims),
            VoxelData::C64(v) => recycled(v, &dims),
            VoxelData::C128(v) => recycled(v, &dims),
            VoxelData::Rgb24(v) => {
                rgb_tensor(bytemuck::cast_slice(&v).to_vec(), &dims, 3, &mut shape)
            }
            VoxelData::Rgba32(v) => {
                rgb_tensor(bytemuck::cast_slice(&v).to_vec(), &dims, 4, &mut shape)
            }
        }
    };
    item.set_tensor("data", tensor);
    let m = &mut item.meta;
    m.set(keys::SOURCE, name);
    m.set("stem", stem(path));
    m.set_affine(&vol.affine);
    m.set(
        keys::SPACING,
        vol.pixdim
            .iter()
            .take(3.min(vol.pixdim.len()))
            .collect::<Vec<_>>(),
    );
    if dims.len() > 3 {
        m.set("frames", dims[3..].iter().product::<usize>());
        if let Some(tr) = vol.pixdim.get(3) {
            m.set("frame_interval", tr);
        }
    }
    if channels > 1 {
        m.set("channels", channels);
    }
    m.set(
        "nifti",
        serde_json::json!({
            "version": vol.version,
            "datatype": type_name,
            "qform_code": vol.qform_code,
            "sform_code": vol.sform_code,
            "xyzt_units": vol.xyzt_units,
            "scl_slope": vol.scl_slope,
            "scl_inter": vol.scl_inter,
            "scaling_applied": scaled,
            "intent_code": vol.intent_code,
            "toffset": vol.toffset,
        }),
    );
    Ok(item)
}

/// RGB(A) voxels become a trailing channel axis: shape `[ni, nj, nk, .., c]`, channel fastest.
fn rgb_tensor(flat: Vec<u8>, dims: &[usize], c: usize, shape: &mut Vec<usize>) -> Tensor {
    shape.clear();
    shape.extend_from_slice(dims);
    shape.push(c);
    Tensor::from_vec_strided(flat, shape, &channels_last_strides(dims, c))
}

/// The `reference` item of a NIfTI file (no voxels; `volume.load` reads it): keyed and named
/// as [`volume_item`] keys and names it.
pub fn reference_item(path: &Path) -> Item {
    reference_item_named(path, &path.display().to_string())
}

/// [`reference_item`] for a file known by another name (an object's URL): the reference names
/// that, so a machine without this one's cache can fetch it.
pub fn reference_item_named(path: &Path, name: &str) -> Item {
    mindscan_sdk::reference::Reference::File {
        path: name.to_string(),
    }
    .into_item(name, name, &stem(path))
}
