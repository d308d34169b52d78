//! Patch swapping: TorchIO `Swap` (`transforms/augmentation/intensity/random_swap.py`, `_swap`).

use crate::volume::Volume;

/// Swaps patches of `patch_size` voxels in place, pair after pair: for `[i1, j1, k1, i2, j2, k2]`
/// the patch with corner `(i1, j1, k1)` goes to `(i2, j2, k2)` and the other way round.
///
/// TorchIO's `_swap` does, per pair: `first = tensor[first box]` (a view, not a copy),
/// `second = tensor[second box].clone()`, then `tensor[second box] = first` and
/// `tensor[first box] = second`. For patches that do not overlap that is an exchange. When they
/// overlap (TorchIO only refuses identical corners when drawing) the first copy reads voxels it
/// has already written. PyTorch walks the copy in memory order, and TorchIO's volumes are
/// C-contiguous `(C, W, H, D)` tensors (k has stride 1, whatever the file), so this function
/// copies element by element with i slowest and k fastest, reading the live volume; checked
/// against TorchIO 1.2.1 (`bench/.venv-torch`, 10³ and 15³ patches). PyTorch itself copies
/// rows of 16 or more floats along k a SIMD vector at a time (loads before stores), so
/// patches overlapping along k with `k2 > k1` and `patch_size[2] >= 16` can differ there.
/// A patch that would leave the volume is cut to what fits at both corners (TorchIO raises).
pub fn swap(vol: &mut Volume, patch_size: [u32; 3], pairs: &[[u32; 6]]) {
    let dims = vol.dims;
    let [ni, nj, _] = dims;
    for pair in pairs {
        let a: [usize; 3] = std::array::from_fn(|x| pair[x] as usize);
        let b: [usize; 3] = std::array::from_fn(|x| pair[3 + x] as usize);
        let size: [usize; 3] = std::array::from_fn(|x| {
            (patch_size[x] as usize)
                .min(dims[x].saturating_sub(a[x]))
                .min(dims[x].saturating_sub(b[x]))
        });
        if size.contains(&0) || a == b {
            continue;
        }
        let at = |c: [usize; 3], dj: usize, dk: usize| c[0] + ni * (c[1] + dj + nj * (c[2] + dk));
        // The second patch, saved before anything moves.
        let mut second = Vec::with_capacity(size.iter().product());
        for dk in 0..size[2] {
            for dj in 0..size[1] {
                second.extend_from_slice(&vol.data[at(b, dj, dk)..][..size[0]]);
            }
        }
        // tensor[second box] = tensor[first box], reading what is there now, k fastest.
        for di in 0..size[0] {
            for dj in 0..size[1] {
                for dk in 0..size[2] {
                    vol.data[at(b, dj, dk) + di] = vol.data[at(a, dj, dk) + di];
                }
            }
        }
        // tensor[first box] = second.
        let mut rows = second.chunks(size[0]);
        for dk in 0..size[2] {
            for dj in 0..size[1] {
                let row = rows.next().expect("one saved row per patch row");
                vol.data[at(a, dj, dk)..][..size[0]].copy_from_slice(row);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::volume::IDENTITY;

    /// Expected values from TorchIO 1.2.1's `_swap` on a C-contiguous `(1, 3, 3, 2)` tensor
    /// of `100 i + 10 j + k`, patch 2³, corners (0, 1, 0) and (1, 0, 0).
    #[test]
    fn overlapping_patches_are_copied_k_fastest_from_the_live_volume_as_torchio_does() {
        let mut data = vec![0f32; 18];
        for k in 0..2 {
            for j in 0..3 {
                for i in 0..3 {
                    data[i + 3 * (j + 3 * k)] = (100 * i + 10 * j + k) as f32;
                }
            }
        }
        let mut v = Volume::new(data, [3, 3, 2], IDENTITY).unwrap();
        swap(&mut v, [2, 2, 2], &[[0, 1, 0, 1, 0, 0]]);
        let torchio = [
            0., 10., 20., 100., 200., 120., 110., 210., 220., //
            1., 11., 21., 101., 201., 121., 111., 211., 221.,
        ];
        assert_eq!(v.data, torchio);
    }
}
