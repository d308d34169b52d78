use std::borrow::Cow;
use std::fs::{self, File};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use flate2::Compression;
use flate2::write::GzEncoder;

use super::affine;
use super::error::{NiftiError, NiftiErrorKind as K};
use super::read::swap_words;
use super::types::{NiftiVolume, VoxelData};

/// Data type of the written voxels.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub enum OutputDatatype {
    /// Keep the volume's type and its `scl_slope`/`scl_inter`.
    #[default]
    Keep,
    /// Apply the scaling ([`NiftiVolume::scaled_f32`]) and write float32 with
    /// slope 1, intercept 0. Fails for complex and RGB data.
    Float32,
    /// Apply the scaling, then store `round((value - inter) / slope)` as int16
    /// (saturating; NaN -> 0) with the given `scl_slope`/`scl_inter`.
    Int16 { slope: f64, inter: f64 },
}

/// Options for [`write_nifti_with`].
#[derive(Clone, Debug, PartialEq)]
pub struct WriteOptions {
    /// gzip level 0-9 for `.gz` output (default 1: fast).
    pub gzip_level: u32,
    /// Output data type (default: keep).
    pub datatype: OutputDatatype,
    /// `fsync` the file before renaming it into place (default false).
    pub fsync: bool,
    /// Where the file is written before it is renamed into place (default:
    /// `.<name>.tmp-<pid>` beside it). Callers that clean up after crashed runs pass a name
    /// that tells their process apart (the engine's `temp_path_for`).
    pub temp: Option<PathBuf>,
}

impl Default for WriteOptions {
    fn default() -> Self {
        Self {
            gzip_level: 1,
            datatype: OutputDatatype::Keep,
            fsync: false,
            temp: None,
        }
    }
}

/// Write `vol` as single-file NIfTI-1 with default [`WriteOptions`].
/// gzip-compressed when `path` ends in `.gz`.
pub fn write_nifti(path: &Path, vol: &NiftiVolume) -> Result<(), NiftiError> {
    write_nifti_with(path, vol, &WriteOptions::default())
}

/// Write `vol` as single-file NIfTI-1, little-endian, gzip-compressed when `path`
/// ends in `.gz`.
///
/// * The sform is `vol.affine` with `vol.sform_code`; the qform is computed from
///   `vol.affine` (rotation + voxel sizes; shears stripped) with `vol.qform_code`.
/// * `pixdim[1..=3]` are the affine's column norms, `pixdim[0]` the qfac, higher
///   `pixdim` (e.g. TR) come from `vol.pixdim`.
/// * The file is written under a temporary name in the same directory
///   (`.<name>.tmp-<pid>`) and renamed into place; on error the temporary file is removed.
/// * Header extensions are not written.
pub fn write_nifti_with(
    path: &Path,
    vol: &NiftiVolume,
    opts: &WriteOptions,
) -> Result<(), NiftiError> {
    let err = |kind| NiftiError::new(path, kind);
    let (data, slope, inter) = convert(vol, opts.datatype).map_err(err)?;
    let header = build_header(vol, &data, slope, inter).map_err(err)?;

    let file_name = path
        .file_name()
        .ok_or_else(|| err(K::Invalid("output path has no file name".into())))?;
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let tmp = opts.temp.clone().unwrap_or_else(|| {
        dir.join(format!(
            ".{}.tmp-{}",
            file_name.to_string_lossy(),
            std::process::id()
        ))
    });
    let gzip = file_name.to_string_lossy().ends_with(".gz");
    let result = write_file(&tmp, &header, &data, gzip, opts).and_then(|()| {
        fs::rename(&tmp, path).map_err(|e| K::Io("cannot rename temporary file", e))
    });
    if let Err(kind) = result {
        let _ = fs::remove_file(&tmp);
        return Err(err(kind));
    }
    Ok(())
}

fn write_file(
    tmp: &Path,
    header: &[u8; 352],
    data: &VoxelData,
    gzip: bool,
    opts: &WriteOptions,
) -> Result<(), K> {
    let file = File::create(tmp).map_err(|e| K::Io("cannot create temporary file", e))?;
    let io = |e| K::Io("cannot write", e);
    let file = if gzip {
        let mut w = BufWriter::with_capacity(1 << 20, file);
        write_gzip_parallel(&mut w, header, data, opts.gzip_level.min(9)).map_err(io)?;
        w.into_inner().map_err(|e| io(e.into_error()))?
    } else {
        let mut w = BufWriter::with_capacity(1 << 20, file);
        w.write_all(header).map_err(io)?;
        write_le(&mut w, data).map_err(io)?;
        w.into_inner().map_err(|e| io(e.into_error()))?
    };
    if opts.fsync {
        file.sync_all().map_err(|e| K::Io("cannot fsync", e))?;
    }
    Ok(())
}

/// Uncompressed bytes per gzip member of [`write_gzip_parallel`].
pub(crate) const GZIP_CHUNK: usize = 1 << 20;

/// Writes header + voxels as a multi-member gzip stream (like `pigz --independent`): the
/// stream is cut into [`GZIP_CHUNK`]-byte pieces that are compressed independently, in
/// parallel (rayon), each as a complete gzip member, and written in order. RFC 1952 readers
/// (gzip, zlib's `gzread`, Python's `gzip`, nibabel, flate2's `MultiGzDecoder`) read the
/// concatenation as one file. Small files give a single member. Memory: at most a few chunks
/// per thread beyond the volume itself.
fn write_gzip_parallel<W: Write>(
    w: &mut W,
    header: &[u8; 352],
    data: &VoxelData,
    level: u32,
) -> std::io::Result<()> {
    use rayon::prelude::*;

    let bytes = data.as_bytes();
    let word = data.word_size();
    let swap = cfg!(target_endian = "big") && word > 1;
    // Piece 0 is the header plus the first voxels; the others are voxel ranges. Every cut is
    // a multiple of 8 bytes past the header (352 = 44 * 8), so words are never split.
    let first = bytes.len().min(GZIP_CHUNK - header.len());
    let rest = &bytes[first..];
    let n_pieces = 1 + rest.len().div_ceil(GZIP_CHUNK);
    let piece = |i: usize| -> Cow<'_, [u8]> {
        let mut v = if i == 0 {
            let mut v = Vec::with_capacity(header.len() + first);
            v.extend_from_slice(header);
            v.extend_from_slice(&bytes[..first]);
            v
        } else {
            let start = (i - 1) * GZIP_CHUNK;
            let part = &rest[start..(start + GZIP_CHUNK).min(rest.len())];
            if !swap {
                return Cow::Borrowed(part);
            }
            part.to_vec()
        };
        if swap {
            let skip = if i == 0 { header.len() } else { 0 };
            swap_words(&mut v[skip..], word);
        }
        Cow::Owned(v)
    };
    let compress = |i: usize| -> std::io::Result<Vec<u8>> {
        let src = piece(i);
        let mut enc = GzEncoder::new(
            Vec::with_capacity(src.len() / 2 + 64),
            Compression::new(level),
        );
        enc.write_all(&src)?;
        enc.finish()
    };
    // Compress a batch of pieces at a time so memory stays bounded for huge volumes.
    let batch = (rayon::current_num_threads() * 4).max(1);
    let mut start = 0;
    while start < n_pieces {
        let end = (start + batch).min(n_pieces);
        let members: Vec<std::io::Result<Vec<u8>>> =
            (start..end).into_par_iter().map(compress).collect();
        for m in members {
            w.write_all(&m?)?;
        }
        start = end;
    }
    Ok(())
}

/// Voxel bytes, little-endian.
fn write_le<W: Write>(w: &mut W, data: &VoxelData) -> std::io::Result<()> {
    let bytes = data.as_bytes();
    let word = data.word_size();
    if cfg!(target_endian = "little") || word == 1 {
        return w.write_all(bytes);
    }
    let mut chunk = Vec::with_capacity(1 << 20);
    for part in bytes.chunks(1 << 20) {
        chunk.clear();
        chunk.extend_from_slice(part);
        swap_words(&mut chunk, word);
        w.write_all(&chunk)?;
    }
    Ok(())
}

fn convert(vol: &NiftiVolume, dt: OutputDatatype) -> Result<(Cow<'_, VoxelData>, f64, f64), K> {
    let not_scalar = || {
        K::Invalid(format!(
            "cannot convert {} data to a scalar type",
            vol.data.type_name()
        ))
    };
    match dt {
        OutputDatatype::Keep => Ok((Cow::Borrowed(&vol.data), vol.scl_slope, vol.scl_inter)),
        OutputDatatype::Float32 => {
            let v = vol.scaled_f32().ok_or_else(not_scalar)?;
            Ok((Cow::Owned(VoxelData::F32(v)), 1.0, 0.0))
        }
        OutputDatatype::Int16 { slope, inter } => {
            if slope == 0.0 || !slope.is_finite() || !inter.is_finite() {
                return Err(K::Invalid(format!(
                    "invalid int16 scaling: slope {slope}, inter {inter}"
                )));
            }
            let v = vol.scaled_f32().ok_or_else(not_scalar)?;
            let raw = v
                .iter()
                // `as` saturates and maps NaN to 0
                .map(|&x| ((f64::from(x) - inter) / slope).round() as i16)
                .collect();
            Ok((Cow::Owned(VoxelData::I16(raw)), slope, inter))
        }
    }
}

fn build_header(
    vol: &NiftiVolume,
    data: &VoxelData,
    slope: f64,
    inter: f64,
) -> Result<[u8; 352], K> {
    let ndim = vol.dims.len();
    if !(1..=7).contains(&ndim) {
        return Err(K::InvalidDims(format!(
            "{ndim} dimensions (NIfTI needs 1..7)"
        )));
    }
    let count = vol
        .dims
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .ok_or_else(|| K::InvalidDims(format!("voxel count of {:?} overflows", vol.dims)))?;
    if count != data.len() {
        return Err(K::InvalidDims(format!(
            "dims {:?} need {count} voxels but the data has {}",
            vol.dims,
            data.len()
        )));
    }
    if let Some(d) = vol.dims.iter().find(|&&d| d == 0 || d > i16::MAX as usize) {
        return Err(K::InvalidDims(format!(
            "dimension {d} in {:?} cannot be stored in a NIfTI-1 header (1..=32767)",
            vol.dims
        )));
    }
    let a = &vol.affine;
    if a.iter().flatten().any(|v| !v.is_finite()) {
        return Err(K::Invalid("affine has non-finite values".into()));
    }

    let mut h = [0u8; 352];
    let put = |h: &mut [u8; 352], off: usize, b: &[u8]| h[off..off + b.len()].copy_from_slice(b);
    let f32le = |v: f64| (v as f32).to_le_bytes();
    let code16 = |c: i32| i16::try_from(c).unwrap_or(0).to_le_bytes();

    put(&mut h, 0, &348i32.to_le_bytes());
    h[38] = b'r';
    h[39] = vol.dim_info;
    put(&mut h, 40, &(ndim as i16).to_le_bytes());
    for (i, &d) in vol.dims.iter().enumerate() {
        put(&mut h, 42 + 2 * i, &(d as i16).to_le_bytes());
    }
    for i in ndim..7 {
        put(&mut h, 42 + 2 * i, &1i16.to_le_bytes());
    }
    for (i, p) in vol.intent_params.iter().enumerate() {
        put(&mut h, 56 + 4 * i, &f32le(*p));
    }
    put(&mut h, 68, &code16(vol.intent_code));
    put(&mut h, 70, &data.datatype_code().to_le_bytes());
    put(
        &mut h,
        72,
        &((data.bytes_per_voxel() * 8) as i16).to_le_bytes(),
    );

    let (q, _sheared) = affine::qform_from_affine(a);
    let mut pixdim = [1.0f64; 8];
    pixdim[0] = q.qfac;
    pixdim[1..4].copy_from_slice(&q.zooms);
    for i in 3..ndim {
        pixdim[i + 1] = vol.pixdim.get(i).copied().unwrap_or(1.0);
    }
    for (i, p) in pixdim.iter().enumerate() {
        put(&mut h, 76 + 4 * i, &f32le(*p));
    }
    put(&mut h, 108, &352f32.to_le_bytes());
    put(&mut h, 112, &f32le(slope));
    put(&mut h, 116, &f32le(inter));
    h[123] = u8::try_from(vol.xyzt_units).unwrap_or(0);
    put(&mut h, 124, &f32le(vol.cal_max));
    put(&mut h, 128, &f32le(vol.cal_min));
    put(&mut h, 132, &f32le(vol.slice_duration));
    put(&mut h, 136, &f32le(vol.toffset));
    put_text(&mut h[148..228], &vol.descrip);
    put(&mut h, 252, &code16(vol.qform_code));
    put(&mut h, 254, &code16(vol.sform_code));
    for i in 0..3 {
        put(&mut h, 256 + 4 * i, &f32le(q.quatern[i]));
        put(&mut h, 268 + 4 * i, &f32le(q.qoffset[i]));
    }
    for (r, row) in a.iter().take(3).enumerate() {
        for (c, v) in row.iter().enumerate() {
            put(&mut h, 280 + 16 * r + 4 * c, &f32le(*v));
        }
    }
    put_text(&mut h[328..344], &vol.intent_name);
    put(&mut h, 344, b"n+1\0");
    // bytes 348..352: extension flag 0 (no extensions)
    Ok(h)
}

/// NUL-terminated text, truncated to fit (on a UTF-8 character boundary).
fn put_text(dst: &mut [u8], s: &str) {
    let mut end = s.len().min(dst.len() - 1);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    dst[..end].copy_from_slice(&s.as_bytes()[..end]);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::process::Command;

    fn volume() -> NiftiVolume {
        let dims = vec![96, 110, 90];
        let n: usize = dims.iter().product();
        // Structured but not trivially compressible values.
        let v: Vec<i16> = (0..n)
            .map(|i| ((i % 96) as i16 * 7 + (i / 9600) as i16 * 13 + (i % 13) as i16) - 500)
            .collect();
        let mut a = [[0.0; 4]; 4];
        a[0] = [-1.2, 0.0, 0.0, 50.0];
        a[1] = [0.0, 1.1, 0.0, -60.0];
        a[2] = [0.0, 0.0, 2.5, -70.0];
        a[3] = [0.0, 0.0, 0.0, 1.0];
        let mut vol = NiftiVolume::from_data(dims, VoxelData::I16(v), a);
        vol.sform_code = 1;
        vol.qform_code = 1;
        vol
    }

    #[test]
    fn parallel_gzip_is_multi_member_and_reads_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("multi.nii.gz");
        let vol = volume();
        write_nifti(&path, &vol).unwrap();
        let raw = fs::read(&path).unwrap();
        let total = 352 + vol.data.as_bytes().len();

        // A single-member decoder stops after the first member: the file has several.
        let mut first = Vec::new();
        flate2::read::GzDecoder::new(&raw[..])
            .read_to_end(&mut first)
            .unwrap();
        assert_eq!(first.len(), GZIP_CHUNK, "first member holds one chunk");
        let mut all = Vec::new();
        flate2::read::MultiGzDecoder::new(&raw[..])
            .read_to_end(&mut all)
            .unwrap();
        assert_eq!(all.len(), total);
        assert_eq!(&all[352..], vol.data.as_bytes());

        // Our reader.
        let back = crate::read_nifti(&path).unwrap();
        assert_eq!(back.dims, vol.dims);
        assert_eq!(back.data, vol.data);

        // Python's gzip module and nibabel, where available.
        let has = |m: &str| {
            Command::new("python3")
                .args(["-c", &format!("import {m}")])
                .output()
                .is_ok_and(|o| o.status.success())
        };
        if has("gzip") {
            let out = Command::new("python3")
                .args([
                    "-c",
                    "import gzip,sys,hashlib; d=gzip.open(sys.argv[1]).read(); print(len(d))",
                ])
                .arg(&path)
                .output()
                .unwrap();
            assert!(out.status.success(), "{out:?}");
            assert_eq!(
                String::from_utf8_lossy(&out.stdout).trim(),
                total.to_string()
            );
        } else {
            eprintln!("skipped: python3 gzip check");
        }
        if has("nibabel") && has("numpy") {
            let out = Command::new("python3")
                .args([
                    "-c",
                    "import nibabel as nib,numpy as np,sys; i=nib.load(sys.argv[1]); \
                     d=np.asanyarray(i.dataobj); print(list(d.shape), int(d.astype(np.int64).sum()), \
                     str(d.dtype))",
                ])
                .arg(&path)
                .output()
                .unwrap();
            assert!(out.status.success(), "{out:?}");
            let VoxelData::I16(v) = &vol.data else {
                unreachable!()
            };
            let sum: i64 = v.iter().map(|&x| x as i64).sum();
            assert_eq!(
                String::from_utf8_lossy(&out.stdout).trim(),
                format!("[96, 110, 90] {sum} int16")
            );
        } else {
            eprintln!("skipped: nibabel check (pip install nibabel numpy)");
        }
    }

    #[test]
    fn small_volume_is_one_member() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("small.nii.gz");
        let a = [
            [1.0, 0.0, 0.0, 0.0],
            [0.0, 1.0, 0.0, 0.0],
            [0.0, 0.0, 1.0, 0.0],
            [0.0, 0.0, 0.0, 1.0],
        ];
        let vol = NiftiVolume::from_data(vec![4, 4, 4], VoxelData::U8((0..64).collect()), a);
        write_nifti(&path, &vol).unwrap();
        let raw = fs::read(&path).unwrap();
        let mut first = Vec::new();
        flate2::read::GzDecoder::new(&raw[..])
            .read_to_end(&mut first)
            .unwrap();
        assert_eq!(first.len(), 352 + 64);
        assert_eq!(crate::read_nifti(&path).unwrap().data, vol.data);
    }
}
