//! Pure NIfTI-1 / NIfTI-2 reader and NIfTI-1 writer (no Mindscan SDK types).
//!
//! * [`read_nifti`] reads `.nii` and `.nii.gz` (gzip is detected from the magic bytes
//!   `1f 8b`, not from the extension), NIfTI-1 (348-byte header, magic `n+1`) and
//!   NIfTI-2 (540-byte header, magic `n+2`), either byte order. The byte order is
//!   detected from `sizeof_hdr` (348/540 as read little-endian, or byte-swapped).
//! * [`write_nifti`] writes single-file NIfTI-1 (`.nii`, or gzip-compressed when the
//!   name ends in `.gz`), little-endian, atomically (temporary file + rename).
//!
//! # What the `nifti` crate (0.18) is used for, and why the rest is hand-written
//!
//! The crate parses the NIfTI-1 header: [`nifti::NiftiHeader::from_reader`] turns the
//! 348 header bytes into typed fields in either byte order. Everything else is written
//! here because the crate does not cover it or does not fit the performance goal:
//! * it cannot read NIfTI-2 at all (540-byte header with 64-bit fields);
//! * its volume loading goes through `ndarray` / per-element conversion and its own
//!   `GzDecoder`, whereas this module reads the file once, inflates straight into a
//!   typed `Vec` pre-sized from the header and byte-swaps in place;
//! * its affine helpers need `nalgebra` (disabled here) and panic on odd headers,
//!   while we must reproduce nibabel's rules exactly and never panic;
//! * it has no error messages naming the file and the reason (truncated gzip etc.);
//! * its writer needs `ndarray` and cannot write a header from plain fields.
//!
//! # Conventions (checked against nibabel 5.4)
//!
//! * Voxels are kept exactly in on-disk order (i fastest, then j, k, t, ...), converted
//!   to native byte order.
//! * [`NiftiVolume::affine`] follows nibabel's `get_best_affine`: the sform when
//!   `sform_code != 0`, else the qform when `qform_code != 0`, else the fallback
//!   built from `pixdim` (x flipped, origin at the volume centre). nibabel tests
//!   `!= 0`, so negative (invalid) codes also select the transform; we do the same.
//! * Like nibabel's header "fixes": `pixdim[0]` (qfac) other than -1 or 1 counts as 1,
//!   zero spatial `pixdim` count as 1 and negative ones by their absolute value
//!   (for the qform and fallback affines; [`NiftiVolume::pixdim`] keeps the raw values).
//! * Scaling follows nibabel's `get_slope_inter`: no scaling when `scl_slope` is 0 or
//!   not finite. (nibabel raises when the slope is valid but `scl_inter` is not finite;
//!   we treat such an intercept as 0 instead of failing.)
//! * `float128` (and `complex256`) data are converted to `f64` (`F64` / `C128`).
//!   The NIfTI standard does not fix the 128-bit format: files written on x86 by
//!   numpy/nibabel hold 80-bit x87 extended values padded to 16 bytes, others IEEE
//!   binary128. If the six most significant bytes of every value are zero the data are
//!   read as x87 extended, otherwise as binary128. [`NiftiVolume::datatype`] keeps the
//!   on-disk code (1536/2048) so callers can tell.
//! * `vox_offset` of 0 means "directly after the header and the 4 extension bytes"
//!   (352 for NIfTI-1, 544 for NIfTI-2); a non-zero offset inside the header is an error.
//!   Header extensions are skipped and not kept; NIfTI pair files (`.hdr`/`.img`,
//!   magic `ni1`/`ni2`) are rejected with a clear error.

mod affine;
mod error;
mod float128;
pub mod item;
pub mod pool;
mod read;
mod types;
mod write;

pub use affine::{QformParams, fallback_affine, qform_from_affine, qform_to_affine};
pub use error::{NiftiError, NiftiErrorKind};
#[doc(hidden)]
pub use float128::{f64_to_binary128_le, f64_to_x87_le};
pub use read::{ReadOptions, read_nifti, read_nifti_header, read_nifti_with};
pub use types::{NiftiVolume, VoxelData, datatype};
pub use write::{OutputDatatype, WriteOptions, write_nifti, write_nifti_with};
