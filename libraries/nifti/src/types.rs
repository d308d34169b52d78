use super::affine;

/// NIfTI `datatype` codes.
pub mod datatype {
    pub const UINT8: i16 = 2;
    pub const INT16: i16 = 4;
    pub const INT32: i16 = 8;
    pub const FLOAT32: i16 = 16;
    pub const COMPLEX64: i16 = 32;
    pub const FLOAT64: i16 = 64;
    pub const RGB24: i16 = 128;
    pub const INT8: i16 = 256;
    pub const UINT16: i16 = 512;
    pub const UINT32: i16 = 768;
    pub const INT64: i16 = 1024;
    pub const UINT64: i16 = 1280;
    pub const FLOAT128: i16 = 1536;
    pub const COMPLEX128: i16 = 1792;
    pub const COMPLEX256: i16 = 2048;
    pub const RGBA32: i16 = 2304;
}

/// Voxel values in native byte order, in on-disk voxel order (i fastest, then j, k, t, ...).
#[derive(Clone, Debug, PartialEq)]
pub enum VoxelData {
    U8(Vec<u8>),
    I8(Vec<i8>),
    U16(Vec<u16>),
    I16(Vec<i16>),
    U32(Vec<u32>),
    I32(Vec<i32>),
    U64(Vec<u64>),
    I64(Vec<i64>),
    F32(Vec<f32>),
    /// float64, and float128 / converted to f64.
    F64(Vec<f64>),
    /// complex64: `[re, im]`.
    C64(Vec<[f32; 2]>),
    /// complex128 (and complex256 converted): `[re, im]`.
    C128(Vec<[f64; 2]>),
    Rgb24(Vec<[u8; 3]>),
    Rgba32(Vec<[u8; 4]>),
}

macro_rules! for_each_variant {
    ($self:expr, $v:ident => $body:expr) => {
        match $self {
            VoxelData::U8($v) => $body,
            VoxelData::I8($v) => $body,
            VoxelData::U16($v) => $body,
            VoxelData::I16($v) => $body,
            VoxelData::U32($v) => $body,
            VoxelData::I32($v) => $body,
            VoxelData::U64($v) => $body,
            VoxelData::I64($v) => $body,
            VoxelData::F32($v) => $body,
            VoxelData::F64($v) => $body,
            VoxelData::C64($v) => $body,
            VoxelData::C128($v) => $body,
            VoxelData::Rgb24($v) => $body,
            VoxelData::Rgba32($v) => $body,
        }
    };
}

impl VoxelData {
    /// Hands the buffer to [`super::pool::POOL`] for a later read (once its values are used).
    pub fn recycle(self) {
        for_each_variant!(self, v => super::pool::POOL.give_back(v))
    }

    /// Number of voxels.
    pub fn len(&self) -> usize {
        for_each_variant!(self, v => v.len())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The NIfTI datatype code these values are written with.
    pub fn datatype_code(&self) -> i16 {
        use datatype::*;
        match self {
            Self::U8(_) => UINT8,
            Self::I8(_) => INT8,
            Self::U16(_) => UINT16,
            Self::I16(_) => INT16,
            Self::U32(_) => UINT32,
            Self::I32(_) => INT32,
            Self::U64(_) => UINT64,
            Self::I64(_) => INT64,
            Self::F32(_) => FLOAT32,
            Self::F64(_) => FLOAT64,
            Self::C64(_) => COMPLEX64,
            Self::C128(_) => COMPLEX128,
            Self::Rgb24(_) => RGB24,
            Self::Rgba32(_) => RGBA32,
        }
    }

    /// Short type name (`"uint8"`, `"int16"`, `"complex64"`, `"rgb24"` ...).
    pub fn type_name(&self) -> &'static str {
        match self {
            Self::U8(_) => "uint8",
            Self::I8(_) => "int8",
            Self::U16(_) => "uint16",
            Self::I16(_) => "int16",
            Self::U32(_) => "uint32",
            Self::I32(_) => "int32",
            Self::U64(_) => "uint64",
            Self::I64(_) => "int64",
            Self::F32(_) => "float32",
            Self::F64(_) => "float64",
            Self::C64(_) => "complex64",
            Self::C128(_) => "complex128",
            Self::Rgb24(_) => "rgb24",
            Self::Rgba32(_) => "rgba32",
        }
    }

    /// Bytes per voxel.
    pub fn bytes_per_voxel(&self) -> usize {
        for_each_variant!(self, v => elem_size_of(v))
    }

    /// Size of the byte-swap unit (1 for u8/rgb, 4 for complex64 ...).
    pub(crate) fn word_size(&self) -> usize {
        match self {
            Self::U8(_) | Self::I8(_) | Self::Rgb24(_) | Self::Rgba32(_) => 1,
            Self::U16(_) | Self::I16(_) => 2,
            Self::U32(_) | Self::I32(_) | Self::F32(_) | Self::C64(_) => 4,
            Self::U64(_) | Self::I64(_) | Self::F64(_) | Self::C128(_) => 8,
        }
    }

    /// The values as bytes, native byte order.
    pub fn as_bytes(&self) -> &[u8] {
        for_each_variant!(self, v => bytemuck::cast_slice(&v[..]))
    }

    /// The values as little-endian bytes (what nibabel's `tobytes` gives for a
    /// little-endian array in on-disk voxel order).
    pub fn to_le_bytes(&self) -> Vec<u8> {
        let mut out = self.as_bytes().to_vec();
        if cfg!(target_endian = "big") {
            super::read::swap_words(&mut out, self.word_size());
        }
        out
    }

    /// Value `i` as f64 (real part for complex, `None` for RGB or out of range).
    pub fn get_f64(&self, i: usize) -> Option<f64> {
        Some(match self {
            Self::U8(v) => *v.get(i)? as f64,
            Self::I8(v) => *v.get(i)? as f64,
            Self::U16(v) => *v.get(i)? as f64,
            Self::I16(v) => *v.get(i)? as f64,
            Self::U32(v) => *v.get(i)? as f64,
            Self::I32(v) => *v.get(i)? as f64,
            Self::U64(v) => *v.get(i)? as f64,
            Self::I64(v) => *v.get(i)? as f64,
            Self::F32(v) => *v.get(i)? as f64,
            Self::F64(v) => *v.get(i)?,
            Self::C64(v) => v.get(i)?[0] as f64,
            Self::C128(v) => v.get(i)?[0],
            Self::Rgb24(_) | Self::Rgba32(_) => return None,
        })
    }
}

fn elem_size_of<T>(_: &[T]) -> usize {
    std::mem::size_of::<T>()
}

/// A NIfTI image: header fields as plain values plus the voxel data.
#[derive(Clone, Debug, PartialEq)]
pub struct NiftiVolume {
    /// 1 for NIfTI-1, 2 for NIfTI-2.
    pub version: u8,
    /// `dim[1..=dim[0]]`.
    pub dims: Vec<usize>,
    /// `pixdim[1..=dim[0]]` exactly as stored (voxel sizes, then TR ...).
    pub pixdim: Vec<f64>,
    /// `pixdim[0]` as stored (qfac; nibabel counts anything but -1 as 1).
    pub qfac: f64,
    /// On-disk datatype code (e.g. 1536 for float128 even though `data` is `F64`).
    pub datatype: i16,
    /// Voxel values, native byte order, on-disk voxel order.
    pub data: VoxelData,
    /// Whether the file was big-endian.
    pub big_endian: bool,
    pub scl_slope: f64,
    pub scl_inter: f64,
    pub cal_min: f64,
    pub cal_max: f64,
    pub qform_code: i32,
    pub sform_code: i32,
    /// Affine from the quaternion fields (whatever `qform_code` says).
    pub qform: [[f64; 4]; 4],
    /// Affine from `srow_x/y/z` (whatever `sform_code` says).
    pub sform: [[f64; 4]; 4],
    /// The voxel-to-world affine nibabel would use (see module docs).
    pub affine: [[f64; 4]; 4],
    pub xyzt_units: i32,
    pub intent_code: i32,
    pub intent_params: [f64; 3],
    pub intent_name: String,
    pub descrip: String,
    pub toffset: f64,
    pub slice_duration: f64,
    pub dim_info: u8,
    /// Byte offset of the voxel data in the (uncompressed) file.
    pub vox_offset: u64,
}

impl NiftiVolume {
    /// A new NIfTI-1 volume from data and an affine (sform_code 2 "aligned" like
    /// nibabel's `Nifti1Image`, qform_code 0; qform computed from the affine).
    /// `data.len()` should equal the product of `dims`; the writer checks it.
    pub fn from_data(dims: Vec<usize>, data: VoxelData, affine: [[f64; 4]; 4]) -> Self {
        let zooms = affine::column_norms(&affine);
        let pixdim = (0..dims.len())
            .map(|i| if i < 3 { zooms[i] } else { 1.0 })
            .collect();
        let (q, _) = affine::qform_from_affine(&affine);
        let qform = affine::qform_to_affine(&q, 1);
        Self {
            version: 1,
            datatype: data.datatype_code(),
            dims,
            pixdim,
            qfac: q.qfac,
            data,
            big_endian: false,
            scl_slope: 1.0,
            scl_inter: 0.0,
            cal_min: 0.0,
            cal_max: 0.0,
            qform_code: 0,
            sform_code: 2,
            qform,
            sform: affine,
            affine,
            xyzt_units: 2, // mm
            intent_code: 0,
            intent_params: [0.0; 3],
            intent_name: String::new(),
            descrip: String::new(),
            toffset: 0.0,
            slice_duration: 0.0,
            dim_info: 0,
            vox_offset: 352,
        }
    }

    /// Number of voxels (product of `dims`).
    pub fn voxel_count(&self) -> usize {
        self.dims.iter().product()
    }

    /// `(slope, inter)` if nibabel would scale the data: slope finite and non-zero,
    /// and not the identity (1, 0). A non-finite intercept counts as 0.
    pub fn scaling(&self) -> Option<(f64, f64)> {
        let slope = self.scl_slope;
        if slope == 0.0 || !slope.is_finite() {
            return None;
        }
        let inter = if self.scl_inter.is_finite() {
            self.scl_inter
        } else {
            0.0
        };
        if slope == 1.0 && inter == 0.0 {
            None
        } else {
            Some((slope, inter))
        }
    }

    /// Whether [`scaled_f32`](Self::scaled_f32) changes the values (see [`scaling`](Self::scaling)).
    pub fn has_scaling(&self) -> bool {
        self.scaling().is_some()
    }

    /// Values as f32 with `scl_slope`/`scl_inter` applied the way nibabel's
    /// `get_fdata` does (computed in f64, then rounded to f32). `None` for complex
    /// and RGB data, which have no single real value per voxel.
    pub fn scaled_f32(&self) -> Option<Vec<f32>> {
        fn conv<T: Copy>(v: &[T], s: Option<(f64, f64)>, f: impl Fn(T) -> f64) -> Vec<f32> {
            match s {
                None => v.iter().map(|&x| f(x) as f32).collect(),
                Some((m, b)) => v.iter().map(|&x| (f(x) * m + b) as f32).collect(),
            }
        }
        let s = self.scaling();
        Some(match &self.data {
            VoxelData::U8(v) => match s {
                None => v.iter().map(|&x| x as f32).collect(),
                Some(_) => conv(v, s, |x| x as f64),
            },
            VoxelData::I8(v) => conv(v, s, |x| x as f64),
            VoxelData::U16(v) => conv(v, s, |x| x as f64),
            VoxelData::I16(v) => match s {
                None => v.iter().map(|&x| x as f32).collect(),
                Some(_) => conv(v, s, |x| x as f64),
            },
            VoxelData::U32(v) => conv(v, s, |x| x as f64),
            VoxelData::I32(v) => conv(v, s, |x| x as f64),
            VoxelData::U64(v) => conv(v, s, |x| x as f64),
            VoxelData::I64(v) => conv(v, s, |x| x as f64),
            VoxelData::F32(v) => match s {
                None => v.clone(),
                Some(_) => conv(v, s, |x| x as f64),
            },
            VoxelData::F64(v) => conv(v, s, |x| x),
            VoxelData::C64(_) | VoxelData::C128(_) | VoxelData::Rgb24(_) | VoxelData::Rgba32(_) => {
                return None;
            }
        })
    }
}
