use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::Path;

use bytemuck::Pod;
use flate2::bufread::MultiGzDecoder;

use super::affine::{self, QformParams};
use super::error::{NiftiError, NiftiErrorKind as K};
use super::float128;
use super::types::{NiftiVolume, VoxelData, datatype};

const NI1_HDR: usize = 348;
const NI2_HDR: usize = 540;
/// Deflate cannot expand data by more than about 1032:1.
const MAX_DEFLATE_RATIO: u64 = 1100;

/// Header fields common to NIfTI-1 and NIfTI-2, widened to the NIfTI-2 types.
struct Header {
    version: u8,
    big_endian: bool,
    dim: [i64; 8],
    pixdim: [f64; 8],
    datatype: i16,
    vox_offset: f64,
    scl_slope: f64,
    scl_inter: f64,
    cal_min: f64,
    cal_max: f64,
    qform_code: i32,
    sform_code: i32,
    quatern: [f64; 3],
    qoffset: [f64; 3],
    srow: [[f64; 4]; 3],
    xyzt_units: i32,
    intent_code: i32,
    intent_params: [f64; 3],
    intent_name: String,
    descrip: String,
    toffset: f64,
    slice_duration: f64,
    dim_info: u8,
}

/// Element kind of the on-disk data.
#[derive(Clone, Copy, Debug, PartialEq)]
enum DType {
    U8,
    I8,
    U16,
    I16,
    U32,
    I32,
    U64,
    I64,
    F32,
    F64,
    F128,
    C64,
    C128,
    C256,
    Rgb24,
    Rgba32,
}

impl DType {
    fn from_code(code: i16) -> Option<Self> {
        use datatype::*;
        Some(match code {
            UINT8 => Self::U8,
            INT8 => Self::I8,
            UINT16 => Self::U16,
            INT16 => Self::I16,
            UINT32 => Self::U32,
            INT32 => Self::I32,
            UINT64 => Self::U64,
            INT64 => Self::I64,
            FLOAT32 => Self::F32,
            FLOAT64 => Self::F64,
            FLOAT128 => Self::F128,
            COMPLEX64 => Self::C64,
            COMPLEX128 => Self::C128,
            COMPLEX256 => Self::C256,
            RGB24 => Self::Rgb24,
            RGBA32 => Self::Rgba32,
            _ => return None,
        })
    }

    fn size(self) -> usize {
        match self {
            Self::U8 | Self::I8 => 1,
            Self::U16 | Self::I16 => 2,
            Self::Rgb24 => 3,
            Self::U32 | Self::I32 | Self::F32 | Self::Rgba32 => 4,
            Self::U64 | Self::I64 | Self::F64 | Self::C64 => 8,
            Self::F128 | Self::C128 => 16,
            Self::C256 => 32,
        }
    }
}

/// How [`read_nifti_with`] reads.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReadOptions {
    /// Memory budget: the most bytes of voxel data (dims x bitpix, as the header claims) a file
    /// may hold. Checked before anything is allocated or inflated; `None` = no budget.
    pub max_bytes: Option<u64>,
}

/// Read a `.nii` / `.nii.gz` file (NIfTI-1 or NIfTI-2, either byte order).
///
/// gzip is recognised by its magic bytes whatever the file is called. Errors name the
/// file and the reason; malformed input never panics. No memory budget: see
/// [`read_nifti_with`].
pub fn read_nifti(path: &Path) -> Result<NiftiVolume, NiftiError> {
    read_nifti_with(path, &ReadOptions::default())
}

/// [`read_nifti`] with options (a memory budget).
pub fn read_nifti_with(path: &Path, opts: &ReadOptions) -> Result<NiftiVolume, NiftiError> {
    read_inner(path, opts).map_err(|kind| NiftiError::new(path, kind))
}

/// The header of a `.nii` / `.nii.gz` file, without reading (or inflating) its voxels: the
/// volume's `data` is empty, of the variant the voxels would have (`F64` for float128, `C128`
/// for complex256); every other field is as [`read_nifti`] gives it. The dims are validated
/// (no overflow), but whether the file really holds that much data is not checked.
pub fn read_nifti_header(path: &Path) -> Result<NiftiVolume, NiftiError> {
    header_inner(path).map_err(|kind| NiftiError::new(path, kind))
}

fn header_inner(path: &Path) -> Result<NiftiVolume, K> {
    let file = File::open(path).map_err(|e| K::Io("cannot open", e))?;
    let mut reader = io::BufReader::new(file);
    let mut magic = [0u8; 2];
    let (n, err) = read_full(&mut reader, &mut magic);
    if let Some(e) = err {
        return Err(K::Io("cannot read", e));
    }
    reader
        .seek(SeekFrom::Start(0))
        .map_err(|e| K::Io("cannot read", e))?;
    let mut hbuf = [0u8; NI2_HDR];
    let got = if n == 2 && magic == [0x1f, 0x8b] {
        let mut dec = MultiGzDecoder::new(reader);
        let (got, err) = read_full(&mut dec, &mut hbuf[..4]);
        if let Some(e) = err {
            return Err(header_gzip_error(e, got));
        }
        let hsize = header_size(&hbuf[..got])?;
        let (more, err) = read_full(&mut dec, &mut hbuf[4..hsize]);
        if let Some(e) = err {
            return Err(header_gzip_error(e, 4 + more));
        }
        4 + more
    } else {
        let (got, err) = read_full(&mut reader, &mut hbuf);
        if let Some(e) = err {
            return Err(K::Io("cannot read", e));
        }
        got
    };
    let hdr = parse_header(&hbuf[..got])?;
    let layout = Layout::new(&hdr)?;
    let data = empty_data(layout.dtype);
    Ok(build_volume(hdr, layout, data))
}

/// No voxels, of the variant [`read_data`] would fill for `dtype`.
fn empty_data(dtype: DType) -> VoxelData {
    match dtype {
        DType::U8 => VoxelData::U8(Vec::new()),
        DType::I8 => VoxelData::I8(Vec::new()),
        DType::U16 => VoxelData::U16(Vec::new()),
        DType::I16 => VoxelData::I16(Vec::new()),
        DType::U32 => VoxelData::U32(Vec::new()),
        DType::I32 => VoxelData::I32(Vec::new()),
        DType::U64 => VoxelData::U64(Vec::new()),
        DType::I64 => VoxelData::I64(Vec::new()),
        DType::F32 => VoxelData::F32(Vec::new()),
        DType::F64 | DType::F128 => VoxelData::F64(Vec::new()),
        DType::C64 => VoxelData::C64(Vec::new()),
        DType::C128 | DType::C256 => VoxelData::C128(Vec::new()),
        DType::Rgb24 => VoxelData::Rgb24(Vec::new()),
        DType::Rgba32 => VoxelData::Rgba32(Vec::new()),
    }
}

/// Refuses a header whose voxel data would exceed the budget, before anything is allocated.
fn check_budget(layout: &Layout, opts: &ReadOptions) -> Result<(), K> {
    match opts.max_bytes {
        Some(max_bytes) if layout.nbytes > max_bytes => Err(K::OverBudget {
            dims: layout.dims.clone(),
            claimed: layout.nbytes,
            max_bytes,
        }),
        _ => Ok(()),
    }
}

fn read_inner(path: &Path, opts: &ReadOptions) -> Result<NiftiVolume, K> {
    let mut file = File::open(path).map_err(|e| K::Io("cannot open", e))?;
    let mut magic = [0u8; 2];
    let (n, err) = read_full(&mut file, &mut magic);
    if let Some(e) = err {
        return Err(K::Io("cannot read", e));
    }
    if n == 2 && magic == [0x1f, 0x8b] {
        // Read the whole compressed file at once, then inflate from memory.
        with_file_buffer(|compressed| {
            file.seek(SeekFrom::Start(0))
                .and_then(|_| file.read_to_end(compressed))
                .map_err(|e| K::Io("cannot read", e))?;
            read_gzip(compressed, opts)
        })
    } else {
        file.seek(SeekFrom::Start(0))
            .map_err(|e| K::Io("cannot read", e))?;
        read_plain(file, opts)
    }
}

/// Runs `f` with an empty buffer for a whole compressed file. Each thread keeps its buffer
/// between files up to [`KEPT_FILE_BUFFER`] bytes of capacity: a fresh one is mapped by the
/// allocator and costs a page fault per 4 KiB on every file (a T1 batch: 300 faults a volume).
fn with_file_buffer<R>(f: impl FnOnce(&mut Vec<u8>) -> R) -> R {
    thread_local! {
        static BUFFER: std::cell::Cell<Vec<u8>> = const { std::cell::Cell::new(Vec::new()) };
    }
    let mut buf = BUFFER.take();
    buf.clear();
    let result = f(&mut buf);
    if buf.capacity() <= KEPT_FILE_BUFFER {
        BUFFER.set(buf);
    }
    result
}

/// The largest compressed-file buffer a reader thread keeps for the next file (memory held
/// outside `max_in_flight`, so kept small: a typical structural scan's .nii.gz fits).
const KEPT_FILE_BUFFER: usize = 16 << 20;

/// Read as much as possible into `buf`; stops at EOF or the first error.
fn read_full<R: Read>(r: &mut R, buf: &mut [u8]) -> (usize, Option<io::Error>) {
    let mut got = 0;
    while got < buf.len() {
        match r.read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return (got, Some(e)),
        }
    }
    (got, None)
}

fn gzip_error(e: io::Error, expected: u64, got: u64) -> K {
    if e.kind() == io::ErrorKind::UnexpectedEof {
        K::TruncatedGzip { expected, got }
    } else {
        K::CorruptGzip(format!(
            "{e}; after {got} of {expected} expected bytes of voxel data"
        ))
    }
}

fn read_gzip(compressed: &[u8], opts: &ReadOptions) -> Result<NiftiVolume, K> {
    let mut dec = MultiGzDecoder::new(compressed);

    // Header: 4 bytes tell the size, then the rest.
    let mut hbuf = [0u8; NI2_HDR];
    let (got, err) = read_full(&mut dec, &mut hbuf[..4]);
    if let Some(e) = err {
        return Err(header_gzip_error(e, got));
    }
    let hsize = header_size(&hbuf[..got])?;
    let (more, err) = read_full(&mut dec, &mut hbuf[4..hsize]);
    if let Some(e) = err {
        return Err(header_gzip_error(e, 4 + more));
    }
    let hdr = parse_header(&hbuf[..4 + more])?;
    let layout = Layout::new(&hdr)?;
    check_budget(&layout, opts)?;

    let max_possible = (compressed.len() as u64)
        .saturating_mul(MAX_DEFLATE_RATIO)
        .saturating_add(1 << 20);
    if layout.data_end() > max_possible {
        return Err(K::InvalidDims(format!(
            "dims {:?} need {} bytes of voxel data but a {}-byte gzip file cannot hold more than {}",
            layout.dims,
            layout.nbytes,
            compressed.len(),
            max_possible
        )));
    }

    if let Some(data) = inflate_whole(compressed, &layout, hdr.big_endian) {
        return Ok(build_volume(hdr, layout, data));
    }

    // Skip extensions up to vox_offset.
    let mut skip = layout.vox_offset - hsize as u64;
    let mut scratch = [0u8; 4096];
    while skip > 0 {
        let want = skip.min(scratch.len() as u64) as usize;
        let (n, err) = read_full(&mut dec, &mut scratch[..want]);
        if let Some(e) = err {
            return Err(gzip_error(e, layout.nbytes, 0));
        }
        if n < want {
            return Err(K::TruncatedGzip {
                expected: layout.nbytes,
                got: 0,
            });
        }
        skip -= n as u64;
    }

    let expected = layout.nbytes;
    let data = read_data(&layout, hdr.big_endian, |buf| {
        let (n, err) = read_full(&mut dec, buf);
        match err {
            Some(e) => Err(gzip_error(e, expected, n as u64)),
            None if n < buf.len() => Err(K::TruncatedGzip {
                expected,
                got: n as u64,
            }),
            None => Ok(()),
        }
    })?;

    // Drive the decoder to the end so a damaged or missing trailer (CRC, length) is noticed.
    loop {
        match dec.read(&mut scratch) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                return Err(K::CorruptGzip(format!(
                    "stream truncated after all {expected} bytes of voxel data: gzip trailer missing ({e})"
                )));
            }
            Err(e) => {
                return Err(K::CorruptGzip(format!(
                    "{e}; after all {expected} bytes of voxel data"
                )));
            }
        }
    }
    Ok(build_volume(hdr, layout, data))
}

/// Inflates the whole stream at once with libdeflate (2.3x faster than streaming zlib-rs on a
/// real T1, 1.6x on the MNI template) straight into the voxel buffer, when the gzip trailer's
/// size says the stream is exactly header, extensions and voxels (one member, nothing after).
/// `None` sends the file down the streaming path, which also gives every error its precise
/// message (truncation point, CRC, trailer).
fn inflate_whole(compressed: &[u8], layout: &Layout, big_endian: bool) -> Option<VoxelData> {
    if compressed.len() < 18 || matches!(layout.dtype, DType::F128 | DType::C256) {
        return None;
    }
    let trailer: [u8; 4] = compressed[compressed.len() - 4..].try_into().ok()?;
    let total = layout.vox_offset.checked_add(layout.nbytes)?;
    if u32::from_le_bytes(trailer) != total as u32 {
        return None;
    }
    let front = usize::try_from(layout.vox_offset).ok()?;
    let mut inflater = libdeflater::Decompressor::new();
    read_data_after(layout, big_endian, front, |buf| {
        match inflater.gzip_decompress(compressed, buf) {
            Ok(n) if n == buf.len() => Ok(()),
            _ => Err(K::CorruptGzip(String::new())),
        }
    })
    .ok()
}

fn header_gzip_error(e: io::Error, got: usize) -> K {
    if e.kind() == io::ErrorKind::UnexpectedEof {
        K::CorruptGzip(format!(
            "truncated gzip stream inside the NIfTI header (got {got} header bytes)"
        ))
    } else {
        K::CorruptGzip(format!("{e}; inside the NIfTI header (got {got} bytes)"))
    }
}

fn read_plain(mut file: File, opts: &ReadOptions) -> Result<NiftiVolume, K> {
    let file_len = file.metadata().map_err(|e| K::Io("cannot stat", e))?.len();
    let mut hbuf = [0u8; NI2_HDR];
    let want = (file_len.min(NI2_HDR as u64)) as usize;
    let (got, err) = read_full(&mut file, &mut hbuf[..want]);
    if let Some(e) = err {
        return Err(K::Io("cannot read", e));
    }
    let hdr = parse_header(&hbuf[..got])?;
    let layout = Layout::new(&hdr)?;
    check_budget(&layout, opts)?;
    if file_len < layout.data_end() {
        return Err(K::DataTooShort {
            expected: layout.nbytes,
            got: file_len.saturating_sub(layout.vox_offset),
        });
    }
    file.seek(SeekFrom::Start(layout.vox_offset))
        .map_err(|e| K::Io("cannot seek", e))?;
    let expected = layout.nbytes;
    let data = read_data(&layout, hdr.big_endian, |buf| {
        let (n, err) = read_full(&mut file, buf);
        match err {
            Some(e) => Err(K::Io("cannot read voxel data", e)),
            None if n < buf.len() => Err(K::DataTooShort {
                expected,
                got: n as u64,
            }),
            None => Ok(()),
        }
    })?;
    Ok(build_volume(hdr, layout, data))
}

/// Size of the header (348 or 540) from the first four bytes.
fn header_size(b: &[u8]) -> Result<usize, K> {
    let Some(first) = b.get(..4) else {
        return Err(K::TruncatedHeader {
            expected: NI1_HDR,
            got: b.len(),
        });
    };
    let le = i32::from_le_bytes([first[0], first[1], first[2], first[3]]);
    match le {
        348 => Ok(NI1_HDR),
        540 => Ok(NI2_HDR),
        _ => match le.swap_bytes() {
            348 => Ok(NI1_HDR),
            540 => Ok(NI2_HDR),
            _ => Err(K::BadSizeofHdr(le)),
        },
    }
}

/// Little/big-endian field reader over a header buffer.
struct Fields<'a> {
    b: &'a [u8],
    big: bool,
}

impl Fields<'_> {
    fn bytes<const N: usize>(&self, off: usize) -> [u8; N] {
        let mut a = [0u8; N];
        a.copy_from_slice(&self.b[off..off + N]);
        if self.big {
            a.reverse();
        }
        a
    }
    fn i16(&self, off: usize) -> i16 {
        i16::from_le_bytes(self.bytes(off))
    }
    fn i32(&self, off: usize) -> i32 {
        i32::from_le_bytes(self.bytes(off))
    }
    fn i64(&self, off: usize) -> i64 {
        i64::from_le_bytes(self.bytes(off))
    }
    fn f64(&self, off: usize) -> f64 {
        f64::from_le_bytes(self.bytes(off))
    }
    fn text(&self, off: usize, len: usize) -> String {
        c_string(&self.b[off..off + len])
    }
}

fn c_string(b: &[u8]) -> String {
    let end = b.iter().position(|&c| c == 0).unwrap_or(b.len());
    String::from_utf8_lossy(&b[..end]).into_owned()
}

fn parse_header(b: &[u8]) -> Result<Header, K> {
    let hsize = header_size(b)?;
    if b.len() < hsize {
        return Err(K::TruncatedHeader {
            expected: hsize,
            got: b.len(),
        });
    }
    let big_endian = i32::from_le_bytes([b[0], b[1], b[2], b[3]]) != hsize as i32;
    if hsize == NI1_HDR {
        parse_nifti1(&b[..NI1_HDR], big_endian)
    } else {
        parse_nifti2(&b[..NI2_HDR], big_endian)
    }
}

/// NIfTI-1: field decoding by the `nifti` crate.
fn parse_nifti1(b: &[u8], big_endian: bool) -> Result<Header, K> {
    let magic = &b[344..348];
    if magic == b"ni1\0" {
        return Err(K::Invalid(
            "NIfTI-1 pair header (magic \"ni1\", data in a separate .img file) is not supported"
                .into(),
        ));
    }
    if magic != b"n+1\0" {
        return Err(K::BadMagic {
            version: 1,
            found: magic.to_vec(),
        });
    }
    // Our own dim[0] check first: the crate picks the byte order from dim[0].
    let f = Fields { b, big: big_endian };
    let dim0 = f.i16(40);
    if !(1..=7).contains(&dim0) {
        return Err(K::InvalidDims(format!("dim[0] = {dim0} (must be 1..7)")));
    }
    let h = nifti::NiftiHeader::from_reader(b)
        .map_err(|e| K::Invalid(format!("cannot parse NIfTI-1 header: {e}")))?;
    let crate_big = h.endianness == nifti::Endianness::Big;
    if crate_big != big_endian {
        return Err(K::Invalid(
            "inconsistent byte order between sizeof_hdr and dim[0]".into(),
        ));
    }
    let mut dim = [0i64; 8];
    for (d, &s) in dim.iter_mut().zip(&h.dim) {
        *d = i64::from(s as i16);
    }
    Ok(Header {
        version: 1,
        big_endian,
        dim,
        pixdim: h.pixdim.map(f64::from),
        datatype: h.datatype,
        vox_offset: f64::from(h.vox_offset),
        scl_slope: f64::from(h.scl_slope),
        scl_inter: f64::from(h.scl_inter),
        cal_min: f64::from(h.cal_min),
        cal_max: f64::from(h.cal_max),
        qform_code: i32::from(h.qform_code),
        sform_code: i32::from(h.sform_code),
        quatern: [h.quatern_b, h.quatern_c, h.quatern_d].map(f64::from),
        qoffset: [h.quatern_x, h.quatern_y, h.quatern_z].map(f64::from),
        srow: [
            h.srow_x.map(f64::from),
            h.srow_y.map(f64::from),
            h.srow_z.map(f64::from),
        ],
        xyzt_units: i32::from(h.xyzt_units),
        intent_code: i32::from(h.intent_code),
        intent_params: [h.intent_p1, h.intent_p2, h.intent_p3].map(f64::from),
        intent_name: c_string(&h.intent_name),
        descrip: c_string(&h.descrip),
        toffset: f64::from(h.toffset),
        slice_duration: f64::from(h.slice_duration),
        dim_info: h.dim_info,
    })
}

/// NIfTI-2: 540-byte header, 64-bit fields (layout from the NIfTI-2 standard).
fn parse_nifti2(b: &[u8], big_endian: bool) -> Result<Header, K> {
    let magic = &b[4..12];
    if &magic[..4] == b"ni2\0" {
        return Err(K::Invalid(
            "NIfTI-2 pair header (magic \"ni2\", data in a separate .img file) is not supported"
                .into(),
        ));
    }
    if magic != b"n+2\0\r\n\x1a\n" {
        return Err(K::BadMagic {
            version: 2,
            found: magic.to_vec(),
        });
    }
    let f = Fields { b, big: big_endian };
    let mut dim = [0i64; 8];
    let mut pixdim = [0f64; 8];
    for i in 0..8 {
        dim[i] = f.i64(16 + 8 * i);
        pixdim[i] = f.f64(104 + 8 * i);
    }
    let row = |off: usize| [f.f64(off), f.f64(off + 8), f.f64(off + 16), f.f64(off + 24)];
    Ok(Header {
        version: 2,
        big_endian,
        dim,
        pixdim,
        datatype: f.i16(12),
        vox_offset: f.i64(168) as f64,
        scl_slope: f.f64(176),
        scl_inter: f.f64(184),
        cal_max: f.f64(192),
        cal_min: f.f64(200),
        slice_duration: f.f64(208),
        toffset: f.f64(216),
        descrip: f.text(240, 80),
        qform_code: f.i32(344),
        sform_code: f.i32(348),
        quatern: [f.f64(352), f.f64(360), f.f64(368)],
        qoffset: [f.f64(376), f.f64(384), f.f64(392)],
        srow: [row(400), row(432), row(464)],
        xyzt_units: f.i32(500),
        intent_code: f.i32(504),
        intent_params: [f.f64(80), f.f64(88), f.f64(96)],
        intent_name: f.text(508, 16),
        dim_info: b[524],
    })
}

/// Validated geometry of the data.
struct Layout {
    dims: Vec<usize>,
    dtype: DType,
    count: usize,
    nbytes: u64,
    vox_offset: u64,
}

impl Layout {
    fn new(h: &Header) -> Result<Self, K> {
        let ndim = h.dim[0];
        if !(1..=7).contains(&ndim) {
            return Err(K::InvalidDims(format!("dim[0] = {ndim} (must be 1..7)")));
        }
        let raw = &h.dim[1..=ndim as usize];
        let mut dims = Vec::with_capacity(raw.len());
        for (i, &d) in raw.iter().enumerate() {
            if d < 1 {
                return Err(K::InvalidDims(format!(
                    "dim[{}] = {d} (must be >= 1); dims {raw:?}",
                    i + 1
                )));
            }
            dims.push(
                usize::try_from(d)
                    .map_err(|_| K::InvalidDims(format!("dim[{}] = {d} too large", i + 1)))?,
            );
        }
        let dtype = DType::from_code(h.datatype).ok_or(K::UnsupportedDatatype(h.datatype))?;
        let count = dims
            .iter()
            .try_fold(1usize, |a, &d| a.checked_mul(d))
            .ok_or_else(|| K::InvalidDims(format!("voxel count of dims {dims:?} overflows")))?;
        let nbytes = (count as u64)
            .checked_mul(dtype.size() as u64)
            .filter(|&n| n < (isize::MAX as u64) / 2)
            .ok_or_else(|| K::InvalidDims(format!("data size of dims {dims:?} overflows")))?;
        let min_offset = if h.version == 1 { 352 } else { 544 };
        let off = h.vox_offset;
        if !(0.0..=1e15).contains(&off) {
            return Err(K::Invalid(format!("invalid vox_offset {off}")));
        }
        let vox_offset = if off == 0.0 {
            min_offset
        } else if off < min_offset as f64 {
            return Err(K::Invalid(format!(
                "vox_offset {off} lies inside the header (minimum {min_offset})"
            )));
        } else {
            off as u64
        };
        Ok(Self {
            dims,
            dtype,
            count,
            nbytes,
            vox_offset,
        })
    }

    fn data_end(&self) -> u64 {
        self.vox_offset.saturating_add(self.nbytes)
    }
}

/// Swap every `word`-byte unit of `bytes` in place. `bytes` must be aligned for the
/// word type when it comes from a typed Vec (it is: we only pass `Vec<T>` buffers whose
/// alignment is at least the word size); falls back to a byte loop otherwise.
pub(crate) fn swap_words(bytes: &mut [u8], word: usize) {
    match word {
        2 => match bytemuck::try_cast_slice_mut::<u8, u16>(bytes) {
            Ok(w) => w.iter_mut().for_each(|x| *x = x.swap_bytes()),
            Err(_) => bytes.chunks_exact_mut(2).for_each(|c| c.reverse()),
        },
        4 => match bytemuck::try_cast_slice_mut::<u8, u32>(bytes) {
            Ok(w) => w.iter_mut().for_each(|x| *x = x.swap_bytes()),
            Err(_) => bytes.chunks_exact_mut(4).for_each(|c| c.reverse()),
        },
        8 => match bytemuck::try_cast_slice_mut::<u8, u64>(bytes) {
            Ok(w) => w.iter_mut().for_each(|x| *x = x.swap_bytes()),
            Err(_) => bytes.chunks_exact_mut(8).for_each(|c| c.reverse()),
        },
        _ => {}
    }
}

/// A buffer of `n` elements: an idle one from [`super::pool::POOL`], else a fresh zeroed one.
fn alloc<T: Pod + Send>(n: usize) -> Result<Vec<T>, K> {
    if let Some(v) = super::pool::POOL.take(n) {
        return Ok(v);
    }
    bytemuck::allocation::try_zeroed_vec(n).map_err(|_| {
        K::Invalid(format!(
            "cannot allocate {n} voxels of {} bytes",
            std::mem::size_of::<T>()
        ))
    })
}

/// Allocate the typed buffer, let `fill` write the on-disk bytes into it, fix byte order.
fn read_data(
    layout: &Layout,
    big_endian: bool,
    fill: impl FnMut(&mut [u8]) -> Result<(), K>,
) -> Result<VoxelData, K> {
    read_data_after(layout, big_endian, 0, fill)
}

/// [`read_data`] where `fill` writes `front` bytes (header, extensions) before the voxels: the
/// voxels are then moved to the start of the same buffer, so no second copy of the volume is
/// ever allocated.
fn read_data_after(
    layout: &Layout,
    big_endian: bool,
    front: usize,
    mut fill: impl FnMut(&mut [u8]) -> Result<(), K>,
) -> Result<VoxelData, K> {
    let n = layout.count;
    let swap = big_endian != cfg!(target_endian = "big");
    macro_rules! load {
        ($t:ty, $word:expr) => {{
            let size = std::mem::size_of::<$t>();
            let mut v: Vec<$t> = alloc(n + front.div_ceil(size))?;
            let bytes: &mut [u8] = bytemuck::cast_slice_mut(&mut v[..]);
            fill(&mut bytes[..front + n * size])?;
            if front > 0 {
                bytes.copy_within(front..front + n * size, 0);
            }
            v.truncate(n);
            let bytes: &mut [u8] = bytemuck::cast_slice_mut(&mut v[..]);
            if swap {
                swap_words(bytes, $word);
            }
            v
        }};
    }
    Ok(match layout.dtype {
        DType::U8 => VoxelData::U8(load!(u8, 1)),
        DType::I8 => VoxelData::I8(load!(i8, 1)),
        DType::U16 => VoxelData::U16(load!(u16, 2)),
        DType::I16 => VoxelData::I16(load!(i16, 2)),
        DType::U32 => VoxelData::U32(load!(u32, 4)),
        DType::I32 => VoxelData::I32(load!(i32, 4)),
        DType::U64 => VoxelData::U64(load!(u64, 8)),
        DType::I64 => VoxelData::I64(load!(i64, 8)),
        DType::F32 => VoxelData::F32(load!(f32, 4)),
        DType::F64 => VoxelData::F64(load!(f64, 8)),
        DType::C64 => VoxelData::C64(load!([f32; 2], 4)),
        DType::C128 => VoxelData::C128(load!([f64; 2], 8)),
        DType::Rgb24 => VoxelData::Rgb24(load!([u8; 3], 1)),
        DType::Rgba32 => VoxelData::Rgba32(load!([u8; 4], 1)),
        DType::F128 => {
            debug_assert_eq!(
                front, 0,
                "inflate_whole leaves float128 to the streaming path"
            );
            let mut raw: Vec<[u8; 16]> = alloc(n)?;
            fill(bytemuck::cast_slice_mut(&mut raw[..]))?;
            VoxelData::F64(float128::to_f64(&raw, big_endian))
        }
        DType::C256 => {
            let mut raw: Vec<[u8; 16]> = alloc(
                n.checked_mul(2)
                    .ok_or_else(|| K::InvalidDims("complex256 voxel count overflows".into()))?,
            )?;
            fill(bytemuck::cast_slice_mut(&mut raw[..]))?;
            let flat = float128::to_f64(&raw, big_endian);
            VoxelData::C128(flat.chunks_exact(2).map(|c| [c[0], c[1]]).collect())
        }
    })
}

fn build_volume(h: Header, layout: Layout, data: VoxelData) -> NiftiVolume {
    let ndim = layout.dims.len();
    let pixdim: Vec<f64> = h.pixdim[1..=ndim].to_vec();
    let qform = affine::qform_to_affine(
        &QformParams {
            quatern: h.quatern,
            qoffset: h.qoffset,
            zooms: [h.pixdim[1], h.pixdim[2], h.pixdim[3]],
            qfac: h.pixdim[0],
        },
        h.version,
    );
    let mut sform = affine::IDENTITY;
    sform[..3].copy_from_slice(&h.srow);
    let affine = if h.sform_code != 0 {
        sform
    } else if h.qform_code != 0 {
        qform
    } else {
        affine::fallback_affine(&layout.dims, &pixdim)
    };
    NiftiVolume {
        version: h.version,
        dims: layout.dims,
        pixdim,
        qfac: h.pixdim[0],
        datatype: h.datatype,
        data,
        big_endian: h.big_endian,
        scl_slope: h.scl_slope,
        scl_inter: h.scl_inter,
        cal_min: h.cal_min,
        cal_max: h.cal_max,
        qform_code: h.qform_code,
        sform_code: h.sform_code,
        qform,
        sform,
        affine,
        xyzt_units: h.xyzt_units,
        intent_code: h.intent_code,
        intent_params: h.intent_params,
        intent_name: h.intent_name,
        descrip: h.descrip,
        toffset: h.toffset,
        slice_duration: h.slice_duration,
        dim_info: h.dim_info,
        vox_offset: layout.vox_offset,
    }
}
