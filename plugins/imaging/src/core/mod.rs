//! Pure imaging functions: orientation, slicing, intensity windowing, encoding,
//! file naming, dataset manifests and atomic writes.
//!
//! Nothing here depends on the Mindscan SDK; the pipeline adapter wraps these
//! functions into the `volume.slice`, `intensity.window` and `image.write` stages.
//!
//! # Conventions
//!
//! * A volume is a `&[T]` of any real [`Voxel`] type with dims `[ni, nj, nk]` (plus an optional frame
//!   count `nt`), stored with `i` fastest (NIfTI order):
//!   `index = i + ni * (j + nj * (k + nk * t))`.
//! * The 4x4 `affine` maps voxel `(i, j, k)` to world RAS+ millimetres
//!   (x = Right, y = Anterior, z = Superior).
//! * A 2D image is row-major with `rows` x `cols` pixels; row 0 is the top of the
//!   picture and column 0 its left side.
//!
//! See [`slice`] for the display convention (neurological by default).

pub mod encode;
pub mod fsio;
pub mod manifest;
pub mod naming;
pub mod orient;
pub mod resize;
pub mod slice;
pub mod voxel;
pub mod window;

pub use encode::{
    ContactSheetTile, EncodeError, GrayImage, contact_sheet, contact_sheet_png, encode_jpeg,
    encode_jpeg_rgb, encode_png_rgb, encode_png_u8, encode_png_u16,
};
pub use fsio::write_atomic;
pub use manifest::{ManifestFormat, ManifestRow, ManifestWriter, relative_path};
pub use naming::{NameFields, NameTemplate, NamingError, file_stem};
pub use orient::{CanonicalView, OrientError, Orientation};
pub use resize::{Interpolation, ResizeMode, ResizePlan};
pub use slice::{
    EmptySliceRule, FrameSelection, Plane, Slice2D, SliceError, SliceOptions, SlicePixels,
    SliceSelection, extract_native_into, extract_slice, extract_slice_typed, foreground_fraction,
    is_near_empty, resample_bilinear,
};
pub use voxel::{Voxel, Voxels};
pub use window::{
    Window, WindowSpec, min_max, percentile, percentile_f32, percentile_window, percentiles,
};
