//! Pixel decoding and volume assembly.

use super::deid::{DeidOptions, PhilipsSidecar, SidecarExtra, format_name, sidecar};
use super::header::{self, Opened};
use super::{
    DicomError, DicomVolume, FrameRef, Result, Series, VoxelData, transfer_syntax_supported,
};
use dicom_pixeldata::PixelDecoder;
use rayon::prelude::*;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Decoded samples of one file (all frames, frame-major).
enum Samples {
    /// Native 16-bit words as stored (sign bits extended when fewer are stored), read
    /// straight from the file: the output volume is assembled from them with one copy.
    Word16(Vec<u16>),
    /// Monochrome samples of up to 16 bits (sign handled): half the memory of `Int`, and
    /// assembled without a floating-point copy.
    Small(Vec<i32>),
    /// Monochrome integer samples of more bits (sign handled).
    Int(Vec<i64>),
    /// Monochrome floating point samples.
    Float(Vec<f64>),
    /// Interleaved RGB bytes.
    Rgb(Vec<u8>),
}

struct Decoded {
    samples: Samples,
    frame_len: usize,
}

fn decode_file(path: &Path, ts: &str, series: &Series) -> Result<Decoded> {
    let derr = |m: String| DicomError::Decode {
        path: path.to_path_buf(),
        transfer_syntax: ts.to_string(),
        message: m,
    };
    transfer_syntax_supported(ts).map_err(derr)?;
    let opened = header::open(path).map_err(|e| match e {
        DicomError::Read { message, .. } => derr(message),
        other => other,
    })?;
    let obj = match opened {
        Opened::Dicom(o) => o,
        Opened::NotDicom(r) => {
            return Err(DicomError::Read {
                path: path.to_path_buf(),
                message: r,
            });
        }
    };
    check_stream_size(&obj, &series.meta).map_err(derr)?;
    let dec = super::contain::contain(|| obj.decode_pixel_data())
        .map_err(|panic| {
            derr(format!(
                "the decoder failed on data that disagree with the header ({panic})"
            ))
        })?
        .map_err(|e| derr(header::error_chain(&e)))?;
    let m = &series.meta;
    let rows = dec.rows() as usize;
    let cols = dec.columns() as usize;
    if rows != m.rows as usize || cols != m.cols as usize {
        return Err(derr(format!(
            "image is {cols}x{rows}, series is {}x{}",
            m.cols, m.rows
        )));
    }
    let frames = dec.number_of_frames() as usize;
    let spp = dec.samples_per_pixel() as usize;
    let ba = dec.bits_allocated();
    let bs = dec.bits_stored().clamp(1, ba.max(1));
    let signed = dec.pixel_representation() == dicom_pixeldata::PixelRepresentation::Signed;
    let data = dec.data();
    let npix = rows * cols;
    let frame_len = npix;
    if spp == 3 {
        let need = npix * 3 * frames;
        if ba != 8 || data.len() < need {
            return Err(derr(format!(
                "unsupported colour pixel data: {ba} bits, {} bytes for {need}",
                data.len()
            )));
        }
        let out = if dec.planar_configuration() == dicom_pixeldata::PlanarConfiguration::PixelFirst
        {
            interleave(&data[..need], npix)
        } else {
            data[..need].to_vec()
        };
        return Ok(Decoded {
            samples: Samples::Rgb(out),
            frame_len,
        });
    }
    if spp != 1 {
        return Err(derr(format!("{spp} samples per pixel not supported")));
    }
    let n = npix * frames;
    let bytes_per = (ba as usize).div_ceil(8).max(1);
    if ba != 1 && data.len() < n * bytes_per {
        return Err(derr(format!(
            "pixel data too short: {} bytes for {n} samples of {ba} bits (truncated file?)",
            data.len()
        )));
    }
    let sext = |v: i64| -> i64 {
        if signed && (bs as u32) < 64 {
            let sh = 64 - bs as u32;
            (v << sh) >> sh
        } else {
            v
        }
    };
    let samples = match ba {
        1 | 8 => Samples::Small(data[..n].iter().map(|&b| sext(b as i64) as i32).collect()),
        16 => Samples::Small(
            data[..2 * n]
                .chunks_exact(2)
                .map(|c| sext(u16::from_ne_bytes([c[0], c[1]]) as i64) as i32)
                .collect(),
        ),
        32 if m.sop_class.contains("1.2.840.10008.5.1.4.1.1.30") => Samples::Float(
            data[..4 * n]
                .chunks_exact(4)
                .map(|c| f32::from_ne_bytes([c[0], c[1], c[2], c[3]]) as f64)
                .collect(),
        ),
        32 => Samples::Int(
            data[..4 * n]
                .chunks_exact(4)
                .map(|c| sext(u32::from_ne_bytes([c[0], c[1], c[2], c[3]]) as i64))
                .collect(),
        ),
        _ => return Err(derr(format!("{ba} bits allocated not supported"))),
    };
    Ok(Decoded { samples, frame_len })
}

/// Colour frames stored plane by plane (R..G..B..) as interleaved RGB triplets.
fn interleave(planar: &[u8], npix: usize) -> Vec<u8> {
    let mut out = vec![0u8; planar.len()];
    for (src, dst) in planar
        .chunks_exact(npix * 3)
        .zip(out.chunks_exact_mut(npix * 3))
    {
        for p in 0..npix {
            for c in 0..3 {
                dst[3 * p + c] = src[c * npix + p];
            }
        }
    }
    out
}

/// Refuses encapsulated pixel data whose first frame declares another size than the header:
/// decoders fill a Rows × Columns buffer and either panic or return pixels that are not the
/// image's.
fn check_stream_size(
    obj: &dicom_object::DefaultDicomObject,
    m: &header::SeriesMeta,
) -> Result<(), String> {
    let Some(first) = obj
        .get(dicom_dictionary_std::tags::PIXEL_DATA)
        .and_then(|e| e.value().fragments())
        .and_then(|f| f.first())
    else {
        return Ok(());
    };
    let Some(size) = super::codestream::declared_size(first) else {
        return Ok(());
    };
    // Colour JPEG streams carry 3 components; a grey header with a colour stream (or the
    // reverse) is as wrong as a size mismatch.
    if size.width != m.cols
        || size.height != m.rows
        || size.components != u32::from(m.samples_per_pixel)
    {
        return Err(format!(
            "the compressed stream is {}x{} with {} component(s), the header says {}x{} with {} sample(s) per pixel",
            size.width, size.height, size.components, m.cols, m.rows, m.samples_per_pixel
        ));
    }
    Ok(())
}

/// Native little-endian grey pixel data read straight from where the header pass found them,
/// without parsing the file again; `None` when the file needs the full decoder (compressed,
/// big endian, colour, float, 32-bit).
fn read_native(f: &FrameRef, series: &Series) -> Option<Result<Decoded>> {
    use std::io::{Read, Seek, SeekFrom};
    let m = &series.meta;
    let span = f.pixel?;
    let native_le = matches!(
        f.transfer_syntax.as_str(),
        "1.2.840.10008.1.2" | "1.2.840.10008.1.2.1"
    );
    let bytes = match m.bits_allocated {
        8 => 1,
        16 => 2,
        _ => return None,
    };
    // Grey, or 8-bit RGB (YBR needs the decoder's conversion).
    let rgb = m.samples_per_pixel == 3 && bytes == 1 && m.photometric == "RGB";
    if !native_le
        || !(m.samples_per_pixel == 1 || rgb)
        || m.sop_class.contains("1.2.840.10008.5.1.4.1.1.30")
    {
        return None;
    }
    let derr = |message: String| DicomError::Decode {
        path: f.path.clone(),
        transfer_syntax: f.transfer_syntax.clone(),
        message,
    };
    let npix = m.rows as usize * m.cols as usize;
    let need = npix * bytes * usize::from(m.samples_per_pixel) * f.frames_in_file.max(1) as usize;
    if (span.len as usize) < need {
        return Some(Err(derr(format!(
            "pixel data too short: {} bytes for {} frame(s) of {}x{} at {} bits",
            span.len, f.frames_in_file, m.cols, m.rows, m.bits_allocated
        ))));
    }
    // 16-bit words are read in place (the file is little endian, as is every target we
    // build for: checked below).
    let mut words = vec![0u16; if bytes == 2 { need / 2 } else { 0 }];
    let mut raw = vec![0u8; if bytes == 1 { need } else { 0 }];
    let target: &mut [u8] = if bytes == 2 {
        bytemuck::cast_slice_mut(&mut words)
    } else {
        &mut raw
    };
    let read = std::fs::File::open(&f.path)
        .and_then(|mut file| {
            file.seek(SeekFrom::Start(span.offset))?;
            file.read_exact(target)
        })
        .map_err(|e| {
            derr(format!(
                "pixel data truncated: the file ends before its {need} bytes of pixel data ({e})"
            ))
        });
    if let Err(e) = read {
        return Some(Err(e));
    }
    let signed = m.pixel_representation == 1;
    let stored = if m.bits_stored == 0 {
        m.bits_allocated
    } else {
        m.bits_stored.min(m.bits_allocated)
    };
    if bytes == 2 {
        const { assert!(cfg!(target_endian = "little")) };
        if signed && stored < 16 {
            let shift = 16 - u32::from(stored);
            for w in &mut words {
                *w = (((*w as i16) << shift) >> shift) as u16;
            }
        }
        return Some(Ok(Decoded {
            samples: Samples::Word16(words),
            frame_len: npix,
        }));
    }
    if rgb {
        let raw = if m.planar_configuration == 1 {
            interleave(&raw, npix)
        } else {
            raw
        };
        return Some(Ok(Decoded {
            samples: Samples::Rgb(raw),
            frame_len: npix,
        }));
    }
    let shift = 32 - u32::from(stored);
    let extend = |v: i32| if signed { (v << shift) >> shift } else { v };
    let samples: Vec<i32> = raw.iter().map(|&b| extend(i32::from(b))).collect();
    Some(Ok(Decoded {
        samples: Samples::Small(samples),
        frame_len: npix,
    }))
}

/// How Philips images that carry a private scale slope (MRScaleSlope, 2005,100E) are scaled.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum PhilipsScaling {
    /// The scanner's floating-point value, FP = (SV·RS + RI) / (RS·SS): what dcm2niix writes
    /// by default (`-p y`), comparable between series and scanners.
    #[default]
    Float,
    /// The displayed value, SV·RS + RI (RescaleSlope/RescaleIntercept only, `-p n`).
    Display,
}

/// Options of [`load_series_with`].
#[derive(Debug, Clone, Default)]
pub struct LoadOptions {
    pub deid: DeidOptions,
    pub philips_scaling: PhilipsScaling,
}

impl From<DeidOptions> for LoadOptions {
    fn from(deid: DeidOptions) -> Self {
        LoadOptions {
            deid,
            ..LoadOptions::default()
        }
    }
}

/// The (slope, intercept) that maps a frame's stored values to output values.
fn frame_scaling(f: &FrameRef, mode: PhilipsScaling) -> (f64, f64) {
    match (mode, f.philips_scale_slope) {
        (PhilipsScaling::Float, Some(ss)) => {
            (1.0 / ss, f.rescale_intercept / (f.rescale_slope * ss))
        }
        _ => (f.rescale_slope, f.rescale_intercept),
    }
}

/// Load a series with default de-identification (nothing from PS3.15 E.1 kept).
pub fn load_series(series: &Series) -> Result<DicomVolume> {
    load_series_with(series, &LoadOptions::default())
}

/// Decode and assemble a series. Files are decoded in parallel; memory is
/// bounded by the series. Any file that fails makes the whole call fail with
/// an error listing every failing file and its transfer syntax.
pub fn load_series_with(series: &Series, opts: &LoadOptions) -> Result<DicomVolume> {
    load_impl(series, opts, false).map(|(v, _)| v)
}

/// Like [`load_series_with`], but files that fail to decode do not stop the
/// series: their slices are zero-filled, a warning (instance number, no path)
/// is added to the volume and sidecar, and the per-file errors (with paths and
/// transfer syntaxes) are returned beside the volume. Fails only when no file
/// of the series can be decoded.
pub fn load_series_lenient(
    series: &Series,
    opts: &LoadOptions,
) -> Result<(DicomVolume, Vec<DicomError>)> {
    load_impl(series, opts, true)
}

fn load_impl(
    series: &Series,
    opts: &LoadOptions,
    lenient: bool,
) -> Result<(DicomVolume, Vec<DicomError>)> {
    let [ni, nj, nk, nt] = series.dims;
    let m = &series.meta;
    // Unique files → decode in parallel.
    let mut files: BTreeMap<&PathBuf, &FrameRef> = BTreeMap::new();
    for f in &series.frames {
        files.insert(&f.path, f);
    }
    let decoded: Vec<(PathBuf, Result<Decoded>)> = files
        .par_iter()
        .map(|(p, f)| {
            let d = match read_native(f, series) {
                Some(r) => r,
                None => decode_file(p, &f.transfer_syntax, series),
            };
            ((*p).clone(), d)
        })
        .collect();
    let mut ok: BTreeMap<PathBuf, Decoded> = BTreeMap::new();
    let mut failures = Vec::new();
    for (p, r) in decoded {
        match r {
            Ok(d) => {
                ok.insert(p, d);
            }
            Err(e) => failures.push(e),
        }
    }
    let mut warnings = series.warnings.clone();
    if !failures.is_empty() && (!lenient || ok.is_empty()) {
        return Err(if failures.len() == 1 && files.len() == 1 {
            failures.remove(0)
        } else {
            DicomError::Series {
                series: series.output_name("%p_%s"),
                failures,
            }
        });
    }
    if !failures.is_empty() {
        let bad: Vec<String> = series
            .frames
            .iter()
            .filter(|f| !ok.contains_key(&f.path))
            .map(|f| {
                f.instance_number
                    .map(|n| n.to_string())
                    .unwrap_or("?".into())
            })
            .collect();
        warnings.push(format!(
            "{} file(s) could not be decoded (instance(s) {}): their slices are zero-filled",
            failures.len(),
            bad.join(",")
        ));
    }
    if m.photometric == "MONOCHROME1" {
        warnings.push(
            "MONOCHROME1 (inverted grey scale): stored values kept as is, not inverted".into(),
        );
    }
    let nvox = ni * nj * nk * nt;
    let slice = ni * nj;

    // Copy a frame (or mosaic tile) into a destination slice.
    let tile_of = |fr: &FrameRef, k: usize| -> (usize, usize) {
        // (offset into the decoded buffer, row stride) for tile k (mosaic) or the frame.
        let d = &ok[&fr.path];
        let base = fr.frame as usize * d.frame_len;
        if series.mosaic.is_some() {
            let tiles = m.cols as usize / ni;
            let (tr, tc) = (k / tiles, k % tiles);
            (base + tr * nj * m.cols as usize + tc * ni, m.cols as usize)
        } else {
            (base, ni)
        }
    };
    let slot_of = |k: usize, t: usize| -> Option<(&FrameRef, usize)> {
        if series.mosaic.is_some() {
            series.slots[t].map(|i| (&series.frames[i], k))
        } else {
            series.slots[t * nk + k].map(|i| (&series.frames[i], 0))
        }
        .filter(|(f, _)| ok.contains_key(&f.path))
    };
    // Without position and orientation the geometry is nominal: rows are stored bottom-up,
    // as dcm2niix does, so that the image is upright in NIfTI viewers.
    let flip_rows = !series.geometry.from_tags;
    let row = |j: usize| if flip_rows { nj - 1 - j } else { j };
    let is_rgb = ok.values().any(|d| matches!(d.samples, Samples::Rgb(_)));
    let present: Vec<&FrameRef> = series
        .slots
        .iter()
        .flatten()
        .map(|&i| &series.frames[i])
        .filter(|f| ok.contains_key(&f.path))
        .collect();
    let scaling = |f: &FrameRef| frame_scaling(f, opts.philips_scaling);
    let s0 = present.first().map(|f| scaling(f));
    let uniform = present.iter().all(|f| Some(scaling(f)) == s0);
    let (slope, inter) = s0.unwrap_or((1.0, 0.0));

    let voxels = if is_rgb {
        let mut out = vec![0u8; nvox * 3];
        for t in 0..nt {
            for k in 0..nk {
                if let Some((fr, tk)) = slot_of(k, t)
                    && let Samples::Rgb(src) = &ok[&fr.path].samples
                {
                    let (off, stride) = tile_of(fr, tk);
                    for j in 0..nj {
                        let s = 3 * (off + j * stride);
                        let d = 3 * ((t * nk + k) * slice + row(j) * ni);
                        out[d..d + 3 * ni].copy_from_slice(&src[s..s + 3 * ni]);
                    }
                }
            }
        }
        VoxelData::Rgb8(out)
    } else {
        let float = !uniform || ok.values().any(|d| matches!(d.samples, Samples::Float(_)));
        if !uniform {
            warnings.push(
                "rescale slope/intercept differ between images: values rescaled and stored as float32"
                    .into(),
            );
        }
        let (mut mn, mut mx) = (i64::MAX, i64::MIN);
        // Each present slice's rows, in output order: (destination offset, the file's samples,
        // source offset, the frame's scaling).
        let mut rows: Vec<(usize, &Samples, usize, (f64, f64))> = Vec::new();
        for t in 0..nt {
            for k in 0..nk {
                let Some((fr, tk)) = slot_of(k, t) else {
                    continue;
                };
                let (off, stride) = tile_of(fr, tk);
                let ab = if float && !uniform {
                    scaling(fr)
                } else {
                    (1.0, 0.0)
                };
                // One map lookup per slice, not per row.
                let samples = &ok[&fr.path].samples;
                for j in 0..nj {
                    rows.push((
                        (t * nk + k) * slice + row(j) * ni,
                        samples,
                        off + j * stride,
                        ab,
                    ));
                }
            }
        }
        let signed = m.pixel_representation == 1;
        let word = |w: u16| -> i64 {
            if signed {
                i64::from(w as i16)
            } else {
                i64::from(w)
            }
        };
        let words = rows.iter().all(|r| matches!(r.1, Samples::Word16(_)));
        let small = rows.iter().all(|r| matches!(r.1, Samples::Small(_)));
        if !float && words {
            // Native 16-bit data: rows copied as stored; int16 when the values fit (signed
            // data always does), else uint16, the same words either way.
            let mut buf = vec![0u16; nvox];
            for &(d, samples, s, _) in &rows {
                if let Samples::Word16(v) = samples {
                    let src = &v[s..s + ni];
                    buf[d..d + ni].copy_from_slice(src);
                    let (lo, hi) = src.iter().fold((i64::MAX, i64::MIN), |(lo, hi), &w| {
                        let x = word(w);
                        (lo.min(x), hi.max(x))
                    });
                    mn = mn.min(lo);
                    mx = mx.max(hi);
                }
            }
            if signed || mx <= i64::from(i16::MAX) {
                VoxelData::I16(bytemuck::cast_vec(buf))
            } else {
                VoxelData::U16(buf)
            }
        } else if !float && small {
            // Up to 16-bit integers: assembled as they are, then narrowed.
            let mut buf = vec![0i32; nvox];
            for &(d, samples, s, _) in &rows {
                if let Samples::Small(v) = samples {
                    let src = &v[s..s + ni];
                    buf[d..d + ni].copy_from_slice(src);
                    let (lo, hi) = src
                        .iter()
                        .fold((i32::MAX, i32::MIN), |(lo, hi), &x| (lo.min(x), hi.max(x)));
                    mn = mn.min(i64::from(lo));
                    mx = mx.max(i64::from(hi));
                }
            }
            integer_voxels(&buf, i64::from, m, mn, mx)
        } else {
            let mut buf = vec![0f64; nvox];
            for &(d, samples, s, (a, b)) in &rows {
                match samples {
                    Samples::Word16(v) => {
                        for i in 0..ni {
                            let x = word(v[s + i]);
                            mn = mn.min(x);
                            mx = mx.max(x);
                            buf[d + i] = x as f64 * a + b;
                        }
                    }
                    Samples::Small(v) => {
                        for i in 0..ni {
                            let x = i64::from(v[s + i]);
                            mn = mn.min(x);
                            mx = mx.max(x);
                            buf[d + i] = x as f64 * a + b;
                        }
                    }
                    Samples::Int(v) => {
                        for i in 0..ni {
                            let x = v[s + i];
                            mn = mn.min(x);
                            mx = mx.max(x);
                            buf[d + i] = x as f64 * a + b;
                        }
                    }
                    Samples::Float(v) => {
                        for i in 0..ni {
                            buf[d + i] = v[s + i] * a + b;
                        }
                    }
                    Samples::Rgb(_) => {}
                }
            }
            if float {
                VoxelData::F32(buf.iter().map(|&v| v as f32).collect())
            } else {
                integer_voxels(&buf, |v| v as i64, m, mn, mx)
            }
        }
    };
    let (scl_slope, scl_inter) = if is_rgb {
        (None, None)
    } else if matches!(voxels, VoxelData::F32(_)) && !uniform {
        (Some(1.0), Some(0.0))
    } else {
        (Some(slope), Some(inter))
    };
    let a = &series.geometry.affine;
    let col = |c: usize| (a[0][c].powi(2) + a[1][c].powi(2) + a[2][c].powi(2)).sqrt();
    let (tr, tr_excitation) = volume_tr(series, &present);
    let slice_timing = (series.mosaic.is_some() && m.mosaic_times_ms.len() == nk)
        .then(|| m.mosaic_times_ms.iter().map(|v| v / 1000.0).collect())
        .or_else(|| ge_slice_timing(m, nk, nt));
    let philips = present
        .first()
        .filter(|f| f.philips_scale_slope.is_some())
        .map(|f| PhilipsSidecar {
            rescale_slope: f.rescale_slope,
            rescale_intercept: f.rescale_intercept,
            scale_slope: f.philips_scale_slope.unwrap_or(1.0),
            float_scaling: opts.philips_scaling == PhilipsScaling::Float,
        });
    let side = sidecar(
        m,
        &SidecarExtra {
            recon_rows: nj as u32,
            recon_cols: ni as u32,
            warnings: &warnings,
            slice_timing_s: slice_timing,
            philips,
            repetition_time_s: (tr > 0.0).then_some(tr),
            repetition_time_excitation_s: tr_excitation,
        },
        &opts.deid,
    );
    let tr = tr.max(0.0);
    let vol = DicomVolume {
        dims: series.dims,
        voxels,
        affine: *a,
        pixdim: [col(0), col(1), col(2), tr],
        scl_slope,
        scl_inter,
        sidecar: side,
        warnings,
        name: format_name(m, "%p_%s"),
    };
    Ok((vol, failures))
}

/// Integer voxels in the type dcm2niix chooses: 8-bit stays 8-bit; otherwise int16 when the
/// values fit (also for unsigned data), then uint16, int32, uint32.
fn integer_voxels<T: Copy>(
    buf: &[T],
    as_i64: impl Fn(T) -> i64,
    m: &header::SeriesMeta,
    mn: i64,
    mx: i64,
) -> VoxelData {
    let signed = m.pixel_representation == 1;
    let (mn, mx) = if mn > mx { (0, 0) } else { (mn, mx) };
    let cast = |v: &T| as_i64(*v);
    if m.bits_allocated <= 8 && !signed {
        VoxelData::U8(buf.iter().map(|v| cast(v) as u8).collect())
    } else if m.bits_allocated <= 8 {
        VoxelData::I8(buf.iter().map(|v| cast(v) as i8).collect())
    } else if mn >= i16::MIN as i64 && mx <= i16::MAX as i64 {
        VoxelData::I16(buf.iter().map(|v| cast(v) as i16).collect())
    } else if mn >= 0 && mx <= u16::MAX as i64 {
        VoxelData::U16(buf.iter().map(|v| cast(v) as u16).collect())
    } else if mn >= i32::MIN as i64 && mx <= i32::MAX as i64 {
        VoxelData::I32(buf.iter().map(|v| cast(v) as i32).collect())
    } else {
        VoxelData::U32(buf.iter().map(|v| cast(v) as u32).collect())
    }
}

/// The volume repetition time in seconds, and the excitation TR when it is not the same, as
/// dcm2niix decides them:
/// * Philips enhanced 3D multi-volume scans with an echo train: the span of the frames'
///   dynamic scan begin times over (volumes − 1);
/// * classic files of several volumes (not GE, whose AcquisitionTime is unreliable): the
///   span of the volumes' acquisition times at the first slice position over (volumes − 1),
///   divided by NumberOfAverages if that explains it, when it differs from RepetitionTime
///   (0018,0080) by more than 50 ms. RepetitionTime then becomes RepetitionTimeExcitation.
fn volume_tr(series: &Series, present: &[&FrameRef]) -> (f64, Option<f64>) {
    let m = &series.meta;
    let nt = series.dims[3];
    let reported = m.repetition_time_ms.map(|v| v / 1000.0);
    let tr = reported.unwrap_or(0.0);
    if nt < 2 {
        return (tr, None);
    }
    let manufacturer = m.manufacturer.as_deref().unwrap_or("").to_ascii_uppercase();
    if let Some(span) = m.philips_dynamic_span_s
        && manufacturer.contains("PHILIPS")
        && m.mr_acquisition_type.as_deref() == Some("3D")
        && m.echo_train_length.is_some_and(|n| n > 1)
    {
        let est = span / (nt - 1) as f64;
        return (if (est - tr).abs() > 1e-6 { est } else { tr }, None);
    }
    let is_ge = manufacturer.starts_with("GE") || manufacturer.contains("GE MEDICAL");
    if is_ge || series.file_count() < 2 {
        return (tr, None);
    }
    // Acquisition times of the volumes at the first slice position, in volume order.
    let nk = series.dims[2];
    let times: Vec<f64> = (0..nt)
        .filter_map(|t| {
            let slot = if series.mosaic.is_some() { t } else { t * nk };
            series.slots.get(slot).copied().flatten()
        })
        .filter_map(|i| series.frames[i].acquisition_time)
        .collect();
    if times.len() != nt || present.is_empty() {
        return (tr, None);
    }
    let mut span: f64 = -1.0;
    for v in 1..nt {
        if times[v] - times[v - 1] > 0.0 {
            span = span.max(times[v] - times[0]);
        }
    }
    if span <= 0.0 {
        return (tr, None);
    }
    let mut est = span / (nt - 1) as f64;
    const TOLERANCE_S: f64 = 0.05;
    if (est - tr).abs() > TOLERANCE_S {
        if let Some(n) = m.number_of_averages.filter(|n| *n > 1.0) {
            est /= n;
        }
        if (est - tr).abs() > TOLERANCE_S {
            return (est, reported);
        }
    }
    (tr, None)
}

/// GE slice times (seconds), as dcm2niix estimates them from the protocol data block for EPI
/// fMRI (`epiRT`, or IOPT with FMRI) and multi-phase EPI: the TR (less the group delay)
/// shared by the excitations, sequential or interleaved (even slices first) by SLICEORDER,
/// repeating every ceil(slices / multiband) slices. Not for 3D, single-volume or diffusion
/// series (dcm2niix leaves those out as well).
fn ge_slice_timing(m: &super::header::SeriesMeta, nk: usize, nt: usize) -> Option<Vec<f64>> {
    let p = m.ge_protocol.as_ref()?;
    let tr_ms = m.repetition_time_ms?;
    if nk < 2 || nt < 2 || m.mr_acquisition_type.as_deref() == Some("3D") {
        return None;
    }
    if m.software_versions.as_deref().unwrap_or("").len() < 10 {
        return None;
    }
    let epi_rt = m.ge_pulse_sequence.as_deref() == Some("epiRT") || p.options.contains("FMRI");
    let multiphase = m.ge_pulse_sequence.as_deref() == Some("epi") || p.options.contains("MPh");
    let group_delay_ms = p.group_delay_s * 1000.0;
    let (interleaved, tr_ms) = if epi_rt {
        (p.slice_order? != 0, tr_ms)
    } else if multiphase && group_delay_ms >= -0.5 {
        (p.slice_order? != 0, tr_ms + group_delay_ms.max(0.0))
    } else {
        return None;
    };
    let mb = p.multiband.max(1) as usize;
    let mut excitations = nk.div_ceil(mb);
    if mb > 1 && excitations.is_multiple_of(2) {
        excitations += 1;
    }
    let per_slice = (tr_ms - group_delay_ms.max(0.0)) / excitations as f64;
    let odd_start = (excitations - 1) / 2;
    let time = |i: usize| -> f64 {
        let slot = if !interleaved {
            i
        } else if i.is_multiple_of(2) {
            i / 2
        } else {
            odd_start + i.div_ceil(2)
        };
        slot as f64 * per_slice / 1000.0
    };
    Some((0..nk).map(|i| time(i % excitations)).collect())
}

#[cfg(test)]
mod tests {
    #[test]
    fn planar_colour_is_interleaved_frame_by_frame() {
        // Two frames of two pixels: R R G G B B per frame.
        let planar = [1, 2, 10, 20, 100, 200, 3, 4, 30, 40, 130, 140];
        assert_eq!(
            super::interleave(&planar, 2),
            vec![1, 10, 100, 2, 20, 200, 3, 30, 130, 4, 40, 140]
        );
    }
}
