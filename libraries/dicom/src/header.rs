//! Header-only reading of one DICOM file into the attributes ingestion needs.

use super::dataset;
use super::structure::{Encoding, PixelSpan};
use super::{DicomError, Result, csa, deid::PHI_TAGS};
use dicom_core::Tag;
use dicom_dictionary_std::tags;
use dicom_object::{DefaultDicomObject, InMemDicomObject, OpenFileOptions};
use std::io::Read;
use std::path::Path;

pub(crate) type Obj<'a> = dataset::Obj<'a>;

/// Series-level attributes (taken from the first file of a series).
#[derive(Debug, Clone, Default)]
pub(crate) struct SeriesMeta {
    pub series_uid: String,
    pub study_uid: String,
    pub sop_class: String,
    pub modality: Option<String>,
    pub manufacturer: Option<String>,
    pub model: Option<String>,
    pub field_strength: Option<f64>,
    pub imaging_frequency: Option<f64>,
    pub series_description: Option<String>,
    pub protocol: Option<String>,
    pub series_number: Option<i64>,
    pub acquisition_number: Option<i64>,
    pub echo_time_ms: Option<f64>,
    pub repetition_time_ms: Option<f64>,
    pub inversion_time_ms: Option<f64>,
    pub flip_angle: Option<f64>,
    pub slice_thickness: Option<f64>,
    pub spacing_between_slices: Option<f64>,
    pub echo_number: Option<i64>,
    pub image_type: Vec<String>,
    pub acquisition_matrix: Vec<i64>,
    pub inplane_pe_dir: Option<String>,
    pub patient_position: Option<String>,
    pub software_versions: Option<String>,
    pub mr_acquisition_type: Option<String>,
    pub scanning_sequence: Option<String>,
    pub sequence_variant: Option<String>,
    pub scan_options: Option<String>,
    pub sequence_name: Option<String>,
    pub pixel_bandwidth: Option<f64>,
    pub photometric: String,
    pub rows: u32,
    pub cols: u32,
    pub samples_per_pixel: u16,
    pub bits_allocated: u16,
    pub bits_stored: u16,
    pub pixel_representation: u16,
    /// PlanarConfiguration (0028,0006) of colour data: 0 interleaved, 1 plane by plane.
    pub planar_configuration: u16,
    pub number_of_frames: u32,
    pub mosaic: Option<u32>,
    /// GE direct B0 field map: this image is the field map in Hz (the magnitude images of the
    /// same series are not), by dcm2niix's rule (see `ge_field_map_hz`).
    pub field_map_hz: bool,
    /// GE VelocityEncodeScale (0019,10E2): negative on field maps, giving the two echo times.
    pub ge_velocity_encode_scale: Option<f64>,
    /// GE protocol data block (0025,101B), the keys slice timing needs.
    pub ge_protocol: Option<GeProtocol>,
    /// GE pulse sequence name (0019,109C), e.g. `epiRT`.
    pub ge_pulse_sequence: Option<String>,
    pub csa_slice_normal: Option<[f64; 3]>,
    /// Tiles per row and rows of tiles when they are not ceil(√n) each (UIH grids).
    pub mosaic_grid: Option<(u32, u32)>,
    /// Per-slice positions of a UIH grid (0065,1051), LPS mm.
    pub mosaic_positions: Vec<[f64; 3]>,
    /// Siemens MosaicRefAcqTimes (ms), one per slice.
    pub mosaic_times_ms: Vec<f64>,
    pub orientation: Option<[f64; 6]>,
    pub pixel_spacing: Option<[f64; 2]>,
    /// Philips RealWorldValueMapping (slope, intercept), reported in the sidecar only: the
    /// private scale slope defines the values, as in dcm2niix.
    pub philips_rwv: Option<(f64, f64)>,
    /// Sidecar keys read as they are from tags (see [`acquisition_keys`]), in dcm2niix's
    /// names and units.
    pub acquisition: Vec<(&'static str, serde_json::Value)>,
    /// Inputs of the echo-spacing / readout-time keys (see `deid::readout_keys`).
    pub readout: Readout,
    /// Philips enhanced: seconds between the first and last MRImageDynamicScanBeginTime
    /// (2005,10A0) of the frames, which dcm2niix uses for the TR of 3D multi-volume scans.
    pub philips_dynamic_span_s: Option<f64>,
    pub echo_train_length: Option<i64>,
    /// MRAcquisitionPhaseEncodingStepsInPlane (0018,9231): enhanced files' AcquisitionMatrixPE.
    pub pe_steps_in_plane: Option<i64>,
    pub number_of_averages: Option<f64>,
    /// PS3.15 E.1 attributes present in the file (keyword, value) — only
    /// emitted when explicitly allow-listed.
    pub phi: Vec<(String, String)>,
}

/// What the echo spacing and readout time are derived from, per vendor, as dcm2niix does.
#[derive(Debug, Clone, Default)]
pub(crate) struct Readout {
    /// Siemens BandwidthPerPixelPhaseEncode (0019,1028), Hz.
    pub bandwidth_per_pixel_pe: Option<f64>,
    /// Siemens DwellTime (0019,1018), ns.
    pub dwell_ns: Option<f64>,
    /// Siemens CSA PhaseEncodingDirectionPositive (1: positive, 0: negative).
    pub pe_positive: Option<bool>,
    /// GE effective echo spacing (0043,102C), µs, and in-plane acceleration (0043,1083).
    pub ge_echo_spacing_us: Option<f64>,
    pub ge_asset: Option<f64>,
    /// Partial Fourier (ScanOptions PFF, or (0018,9081) YES): GE rounds PE lines to 4.
    pub partial_fourier: bool,
    /// Philips WaterFatShift (2001,1022), pixels.
    pub water_fat_shift: Option<f64>,
    /// GE phase-encoding polarity: `Some(true)` flipped (see `ge_polarity_flipped`).
    pub ge_flipped: Option<bool>,
}

/// GE's phase-encoding polarity, as dcm2niix reads it: RectilinearPhaseEncodeReordering
/// (0018,9034) when present (LINEAR: flipped, REVERSE_LINEAR: unflipped); else, for EPI, bit
/// 0x0004 of a flag in the user-defined data (0043,102A), inverted when the slices were
/// acquired bottom-up.
fn ge_polarity_flipped(o: &Obj, sc: &Scope) -> Option<bool> {
    if let Some(r) = sc.str(tags::RECTILINEAR_PHASE_ENCODE_REORDERING) {
        return match r.as_bytes().first() {
            Some(b'L') => Some(true),
            Some(b'R') => Some(false),
            _ => None,
        };
    }
    let raw = private_bytes(o, 0x0043, "GEMS_PARM_01", 0x2A)?;
    let u16_at =
        |at: usize| -> Option<u16> { Some(u16::from_le_bytes([*raw.get(at)?, *raw.get(at + 1)?])) };
    let offset = usize::from(u16_at(24)?);
    if raw.len() < offset + 916 {
        return None;
    }
    let version = f32::from_le_bytes(raw.get(offset..offset + 4)?.try_into().ok()?);
    if !(5.0..=40.0).contains(&version) {
        return None;
    }
    let (hdr, kydir) = if version >= 25.002 {
        (offset + 0x4c, 0x394 - 0x8c)
    } else {
        (offset, 0x394)
    };
    if u16_at(hdr + 0x3a)? & 0x800 == 0 {
        return None; // not EPI
    }
    let flipped = u16_at(hdr + 0x30)? & 0x0004 != 0;
    let bottom_up = u16_at(hdr + kydir)? == 2;
    Some(flipped != bottom_up)
}

/// What GE's protocol data block (0025,101B) says about slice timing.
#[derive(Debug, Clone, Default)]
pub(crate) struct GeProtocol {
    /// SLICEORDER: 0 sequential, otherwise interleaved.
    pub slice_order: Option<i64>,
    /// MBACCEL: multiband factor (0 or missing: none).
    pub multiband: i64,
    /// DELACQNOAV: group delay between volumes, seconds.
    pub group_delay_s: f64,
    /// IOPT: imaging options, e.g. "EPI, FMRI" or "MPh".
    pub options: String,
}

/// Largest inflated protocol block read (real ones are a few KB).
const GE_PROTOCOL_MAX: u64 = 1 << 20;

/// The block is a 4-byte little-endian length, then gzip-compressed `KEY "value"` lines.
fn ge_protocol(o: &Obj) -> Option<GeProtocol> {
    let raw = o.private_element(0x0025, "GEMS_SERS_01", 0x1B)?.to_bytes();
    let gz = raw.get(4..)?;
    if !gz.starts_with(&[0x1f, 0x8b, 0x08]) {
        return None;
    }
    let mut text = Vec::new();
    flate2::read::GzDecoder::new(gz)
        .take(GE_PROTOCOL_MAX)
        .read_to_end(&mut text)
        .ok()?;
    let text = String::from_utf8_lossy(&text);
    let value = |key: &str| -> Option<String> {
        let at = text.find(&format!("\n{key} "))? + key.len() + 2;
        let rest = text[at..].trim_start().strip_prefix('"')?;
        Some(rest[..rest.find('"')?].to_string())
    };
    Some(GeProtocol {
        slice_order: value("SLICEORDER").and_then(|v| v.trim().parse().ok()),
        multiband: value("MBACCEL")
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0),
        group_delay_s: value("DELACQNOAV")
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0.0),
        options: value("IOPT").unwrap_or_default(),
    })
}

/// Per-frame geometry/scaling/timing.
#[derive(Debug, Clone)]
pub(crate) struct FrameInfo {
    pub frame: u32,
    pub position: Option<[f64; 3]>,
    pub orientation: Option<[f64; 6]>,
    pub pixel_spacing: Option<[f64; 2]>,
    pub slope: f64,
    pub intercept: f64,
    pub temporal: Option<i64>,
    pub acq_time: Option<f64>,
    pub echo_time_ms: Option<f64>,
    /// Philips MRScaleSlope (2005,100E): with it the stored value maps to the scanner's
    /// floating-point value, FP = (SV·RS + RI) / (RS·SS).
    pub philips_scale_slope: Option<f64>,
    /// Values of the private dimensions of an enhanced file's DimensionIndexSequence (such as
    /// Philips' ASL label type), which order volumes before time does.
    pub volume_rank: Vec<i64>,
}

#[derive(Debug, Clone)]
pub(crate) struct FileHeader {
    pub transfer_syntax: String,
    pub sop_uid: String,
    pub instance_number: Option<i64>,
    pub meta: SeriesMeta,
    pub frames: Vec<FrameInfo>,
    /// Where the native pixel data lie (set by the header pass).
    pub pixel: Option<super::structure::PixelSpan>,
}

/// Outcome of trying to open a path as DICOM.
pub(crate) enum Opened {
    Dicom(Box<DefaultDicomObject>),
    NotDicom(String),
}

fn has_magic(path: &Path) -> std::io::Result<(bool, Vec<u8>)> {
    let mut f = std::fs::File::open(path)?;
    let mut head = vec![0u8; 132];
    let mut n = 0;
    while n < head.len() {
        let r = f.read(&mut head[n..])?;
        if r == 0 {
            break;
        }
        n += r;
    }
    head.truncate(n);
    let magic = (n >= 132 && &head[128..132] == b"DICM") || head.starts_with(b"DICM");
    Ok((magic, head))
}

/// What the file meta group says (or, for a raw data set, what its elements say).
#[derive(Debug, Clone, Default)]
pub(crate) struct FileMeta {
    pub transfer_syntax: String,
    pub sop_class_uid: String,
    pub sop_instance_uid: String,
}

/// A file's header bytes (up to Pixel Data), read once, for [`dataset::parse`].
pub(crate) struct HeaderBytes {
    pub meta: FileMeta,
    bytes: Vec<u8>,
    /// Where the data set starts in `bytes`, and how it is encoded.
    data_start: usize,
    encoding: Encoding,
    /// Where the native pixel data lie in the file.
    pub pixel: Option<PixelSpan>,
}

impl HeaderBytes {
    pub(crate) fn data_set(&self) -> Result<Obj<'_>, String> {
        dataset::parse(&self.bytes[self.data_start..], self.encoding)
    }
}

pub(crate) enum OpenedHeader {
    Dicom(Box<HeaderBytes>),
    NotDicom(String),
}

fn read_prefix(path: &Path, len: u64) -> std::io::Result<Vec<u8>> {
    let mut bytes = Vec::with_capacity(len as usize);
    std::fs::File::open(path)?
        .take(len)
        .read_to_end(&mut bytes)?;
    Ok(bytes)
}

fn trimmed(o: &Obj, t: Tag) -> String {
    get_str(o, t).unwrap_or_default()
}

/// The header of a DICOM file, for the header pass: the structure walk checks the file, then
/// the bytes before Pixel Data are read once (nothing is decoded until asked for). Files
/// without preamble / "DICM" are tried as a raw data set (implicit then explicit VR little
/// endian) when they start like one.
pub(crate) fn open_header(path: &Path) -> Result<OpenedHeader> {
    let err = |m: String| DicomError::Read {
        path: path.to_path_buf(),
        message: m,
    };
    let (magic, head) = has_magic(path).map_err(|e| err(e.to_string()))?;
    if magic {
        let walk = super::structure::check_part10(path, &head, true).map_err(err)?;
        let meta_start = if head.len() >= 132 && &head[128..132] == b"DICM" {
            132
        } else {
            4
        };
        let mut bytes = read_prefix(path, walk.header_end).map_err(|e| err(e.to_string()))?;
        let (meta_obj, data_start) = dataset::parse_meta(&bytes, meta_start).map_err(err)?;
        let meta = FileMeta {
            transfer_syntax: trimmed(&meta_obj, tags::TRANSFER_SYNTAX_UID),
            sop_class_uid: trimmed(&meta_obj, tags::MEDIA_STORAGE_SOP_CLASS_UID),
            sop_instance_uid: trimmed(&meta_obj, tags::MEDIA_STORAGE_SOP_INSTANCE_UID),
        };
        let (data_start, encoding) = match Encoding::of(&meta.transfer_syntax) {
            Some(enc) => (data_start, enc),
            None => {
                // Deflated: the walk bounded the inflated size; inflate the data set here.
                let whole = std::fs::read(path).map_err(|e| err(e.to_string()))?;
                let mut inflated = Vec::new();
                flate2::read::DeflateDecoder::new(&whole[data_start.min(whole.len())..])
                    .read_to_end(&mut inflated)
                    .map_err(|e| err(format!("deflated data set cannot be inflated: {e}")))?;
                bytes = inflated;
                (
                    0,
                    Encoding {
                        explicit_vr: true,
                        big_endian: false,
                    },
                )
            }
        };
        return Ok(OpenedHeader::Dicom(Box::new(HeaderBytes {
            meta,
            bytes,
            data_start,
            encoding,
            pixel: walk.pixel,
        })));
    }
    // Raw data set (no file meta): must start with a group 0x0008 element.
    let looks_raw = head.len() >= 8 && head[0] == 0x08 && head[1] == 0x00 && head[3] == 0x00;
    if !looks_raw {
        return Ok(OpenedHeader::NotDicom(
            "not a DICOM file (no DICM magic)".into(),
        ));
    }
    use dicom_transfer_syntax_registry::entries;
    for ts in [
        entries::IMPLICIT_VR_LITTLE_ENDIAN.erased(),
        entries::EXPLICIT_VR_LITTLE_ENDIAN.erased(),
    ] {
        let encoding = Encoding::of(ts.uid()).expect("not deflated");
        let Ok(walk) = super::structure::check_file(path, 0, encoding, true) else {
            continue;
        };
        let bytes = read_prefix(path, walk.header_end).map_err(|e| err(e.to_string()))?;
        let meta = {
            let Ok(o) = dataset::parse(&bytes, encoding) else {
                continue;
            };
            let (Some(c), Some(i)) = (
                get_str(&o, tags::SOP_CLASS_UID),
                get_str(&o, tags::SOP_INSTANCE_UID),
            ) else {
                continue;
            };
            if o.get(tags::ROWS).is_none() {
                continue;
            }
            FileMeta {
                transfer_syntax: ts.uid().to_string(),
                sop_class_uid: c,
                sop_instance_uid: i,
            }
        };
        return Ok(OpenedHeader::Dicom(Box::new(HeaderBytes {
            meta,
            bytes,
            data_start: 0,
            encoding,
            pixel: walk.pixel,
        })));
    }
    Ok(OpenedHeader::NotDicom(
        "not a DICOM file (no DICM magic, not a raw data set)".into(),
    ))
}

/// Open a whole DICOM file with dicom-rs, for decoding its pixel data.
/// Files without preamble / "DICM" are still tried as a raw data set
/// (implicit then explicit VR little endian) when they start like one.
pub(crate) fn open(path: &Path) -> Result<Opened> {
    let err = |m: String| DicomError::Read {
        path: path.to_path_buf(),
        message: m,
    };
    let (magic, head) = has_magic(path).map_err(|e| err(e.to_string()))?;
    if magic {
        // Lengths and nesting checked before dicom-rs allocates or recurses (see `structure`).
        super::structure::check_part10(path, &head, false).map_err(err)?;
        return OpenFileOptions::new()
            .open_file(path)
            .map(|o| Opened::Dicom(Box::new(o)))
            .map_err(|e| err(error_chain(&e)));
    }
    // Raw data set (no file meta): must start with a group 0x0008 element.
    let looks_raw = head.len() >= 8 && head[0] == 0x08 && head[1] == 0x00 && head[3] == 0x00;
    if !looks_raw {
        return Ok(Opened::NotDicom("not a DICOM file (no DICM magic)".into()));
    }
    let bytes = std::fs::read(path).map_err(|e| err(e.to_string()))?;
    use dicom_transfer_syntax_registry::entries;
    for ts in [
        entries::IMPLICIT_VR_LITTLE_ENDIAN.erased(),
        entries::EXPLICIT_VR_LITTLE_ENDIAN.erased(),
    ] {
        let enc = super::structure::Encoding::of(ts.uid()).expect("not deflated");
        if super::structure::check_file(path, 0, enc, false).is_err() {
            continue;
        }
        let Ok(obj) = InMemDicomObject::read_dataset_with_ts(&bytes[..], &ts) else {
            continue;
        };
        let uid = |t: Tag| {
            obj.get(t)
                .and_then(|e| e.to_str().ok())
                .map(|s| s.trim_end_matches('\0').trim().to_string())
                .filter(|s| !s.is_empty())
        };
        let sop_class = uid(tags::SOP_CLASS_UID);
        let sop_inst = uid(tags::SOP_INSTANCE_UID);
        let (Some(c), Some(i)) = (sop_class, sop_inst) else {
            continue;
        };
        if obj.get(tags::ROWS).is_none() {
            continue;
        }
        let meta = dicom_object::meta::FileMetaTableBuilder::new()
            .media_storage_sop_class_uid(c)
            .media_storage_sop_instance_uid(i)
            .transfer_syntax(ts.uid())
            .build()
            .map_err(|e| err(e.to_string()))?;
        return Ok(Opened::Dicom(Box::new(obj.with_exact_meta(meta))));
    }
    Ok(Opened::NotDicom(
        "not a DICOM file (no DICM magic, not a raw data set)".into(),
    ))
}

pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(c) = src {
        s.push_str(": ");
        s.push_str(&c.to_string());
        src = c.source();
    }
    s
}

pub(crate) fn get_str(o: &Obj, t: Tag) -> Option<String> {
    let e = o.get(t)?;
    let s = e.to_str()?;
    let s = s.trim_matches(|c: char| c == '\0' || c.is_whitespace());
    (!s.is_empty()).then(|| s.to_string())
}
pub(crate) fn get_f64(o: &Obj, t: Tag) -> Option<f64> {
    let e = o.get(t)?;
    e.to_float64().filter(|v| v.is_finite())
}
pub(crate) fn get_fvec(o: &Obj, t: Tag) -> Option<Vec<f64>> {
    let v = o.get(t)?.to_multi_float64()?;
    v.iter().all(|x| x.is_finite()).then_some(v)
}
pub(crate) fn get_int(o: &Obj, t: Tag) -> Option<i64> {
    let e = o.get(t)?;
    e.to_int()
        .or_else(|| get_f64(o, t).map(|f| f.round() as i64))
}
fn get_strs(o: &Obj, t: Tag) -> Vec<String> {
    o.get(t)
        .and_then(|e| e.to_multi_str())
        .unwrap_or_default()
        .into_iter()
        .map(|s| {
            s.trim_matches(|c: char| c == '\0' || c.is_whitespace())
                .to_string()
        })
        .collect()
}
fn items<'o, 'a>(o: &'o Obj<'a>, t: Tag) -> Option<&'o [Obj<'a>]> {
    o.get(t)?.items()
}
fn first_item<'o, 'a>(o: &'o Obj<'a>, t: Tag) -> Option<&'o Obj<'a>> {
    items(o, t)?.first()
}
fn arr3(v: Option<Vec<f64>>) -> Option<[f64; 3]> {
    let v = v?;
    (v.len() >= 3).then(|| [v[0], v[1], v[2]])
}
fn arr6(v: Option<Vec<f64>>) -> Option<[f64; 6]> {
    let v = v?;
    (v.len() >= 6).then(|| [v[0], v[1], v[2], v[3], v[4], v[5]])
}
fn arr2(v: Option<Vec<f64>>) -> Option<[f64; 2]> {
    let v = v?;
    (v.len() >= 2).then(|| [v[0], v[1]])
}

/// DICOM TM "HHMMSS.FFFFFF" (or with colons) → seconds since midnight.
pub(crate) fn parse_tm(s: &str) -> Option<f64> {
    let s: String = s.chars().filter(|c| *c != ':').collect();
    let (hms, frac) = match s.split_once('.') {
        Some((a, b)) => (a.to_string(), format!("0.{b}")),
        None => (s.clone(), "0".into()),
    };
    if hms.len() < 2 || !hms.chars().all(|c| c.is_ascii_digit()) {
        return None;
    }
    let h: f64 = hms.get(0..2)?.parse().ok()?;
    let m: f64 = hms.get(2..4).unwrap_or("0").parse().ok()?;
    let sec: f64 = hms.get(4..6).unwrap_or("0").parse().ok()?;
    Some(h * 3600.0 + m * 60.0 + sec + frac.parse::<f64>().unwrap_or(0.0))
}

/// DT "YYYYMMDDHHMMSS.FFFFFF" → seconds of day (date part ignored: only used to order).
fn parse_dt(s: &str) -> Option<f64> {
    let d: f64 = s.get(0..8)?.parse().ok()?;
    Some(d * 86400.0 + s.get(8..).and_then(parse_tm).unwrap_or(0.0))
}

fn private_bytes(o: &Obj, group: u16, creator: &str, elem: u8) -> Option<Vec<u8>> {
    o.private_element(group, creator, elem)
        .map(|e| e.to_bytes().to_vec())
}

const PHILIPS_MR_001: &str = "Philips MR Imaging DD 001";
const PHILIPS_MR_005: &str = "Philips MR Imaging DD 005";

fn private_f64(o: &Obj, group: u16, creator: &str, elem: u8) -> Option<f64> {
    let e = o.private_element(group, creator, elem)?;
    e.to_float64().filter(|v| v.is_finite())
}

/// MRScaleSlope, when usable (finite, non-zero).
fn philips_scale_slope(o: &Obj) -> Option<f64> {
    private_f64(o, 0x2005, PHILIPS_MR_001, 0x0E).filter(|v| *v != 0.0)
}

/// The first item of the Philips private per-frame group (2005,140F).
fn philips_frame_item<'o, 'a>(o: &'o Obj<'a>) -> Option<&'o Obj<'a>> {
    o.private_element(0x2005, PHILIPS_MR_005, 0x0F)?
        .items()?
        .first()
}

/// Indices into DimensionIndexValues of the dimensions whose pointer is a private tag.
fn private_dimensions(o: &Obj) -> Vec<usize> {
    let Some(dims) = items(o, tags::DIMENSION_INDEX_SEQUENCE) else {
        return Vec::new();
    };
    dims.iter()
        .enumerate()
        .filter(|(_, d)| {
            d.get(tags::DIMENSION_INDEX_POINTER)
                .and_then(|e| e.to_tag())
                .is_some_and(|t| t.group() % 2 == 1)
        })
        .map(|(i, _)| i)
        .collect()
}

/// Where an image's acquisition attributes live: (enhanced files) the items of the first
/// frame's functional groups and of the shared ones, one and two sequence levels down, then
/// the data set itself. Standard sequences sort before private ones, so they are searched
/// first.
struct Scope<'o, 'a> {
    objs: Vec<&'o Obj<'a>>,
}

impl<'o, 'a> Scope<'o, 'a> {
    fn of(o: &'o Obj<'a>) -> Self {
        let mut objs = Vec::new();
        let groups = [
            first_item(o, tags::PER_FRAME_FUNCTIONAL_GROUPS_SEQUENCE),
            first_item(o, tags::SHARED_FUNCTIONAL_GROUPS_SEQUENCE),
        ];
        for g in groups.into_iter().flatten() {
            for item in g.iter().filter_map(|e| e.items()?.first()) {
                objs.push(item);
                objs.extend(item.iter().filter_map(|e| e.items()?.first()));
            }
        }
        // The functional groups describe the frames; an enhanced file's top level can hold a
        // rounded copy (Philips' PixelBandwidth), so it comes last, as in dcm2niix.
        objs.push(o);
        Scope { objs }
    }
    fn f64(&self, t: Tag) -> Option<f64> {
        self.objs.iter().find_map(|o| get_f64(o, t))
    }
    fn int(&self, t: Tag) -> Option<i64> {
        self.objs.iter().find_map(|o| get_int(o, t))
    }
    fn str(&self, t: Tag) -> Option<String> {
        self.objs.iter().find_map(|o| get_str(o, t))
    }
}

/// Sidecar keys that dcm2niix takes straight from one tag (or a vendor's private one), with
/// its conventions: numbers only when positive, strings only when not empty.
fn acquisition_keys(
    o: &Obj,
    sc: &Scope,
    manufacturer: &str,
) -> Vec<(&'static str, serde_json::Value)> {
    use serde_json::json;
    let mut out: Vec<(&'static str, serde_json::Value)> = Vec::new();
    let mut num = |key: &'static str, v: Option<f64>| {
        if let Some(v) = v.filter(|v| *v > 0.0) {
            out.push((key, json!(v)));
        }
    };
    let is = |name: &str| manufacturer.eq_ignore_ascii_case(name);
    num("PercentPhaseFOV", sc.f64(tags::PERCENT_PHASE_FIELD_OF_VIEW));
    num("PercentSampling", sc.f64(tags::PERCENT_SAMPLING));
    num(
        "SAR",
        sc.f64(tags::SAR)
            .or_else(|| sc.f64(tags::SPECIFIC_ABSORPTION_RATE_VALUE)),
    );
    num(
        "AcquisitionDuration",
        sc.f64(tags::ACQUISITION_DURATION).or_else(|| {
            is("GE")
                .then(|| private_f64(o, 0x0019, "GEMS_ACQU_01", 0x5A))
                .flatten()
                .map(|us| us / 1e6)
        }),
    );
    if is("Philips") {
        num(
            "WaterFatShift",
            private_f64(o, 0x2001, "Philips Imaging DD 001", 0x22),
        );
    }
    let mut int = |key: &'static str, v: Option<i64>, min: i64| {
        if let Some(v) = v.filter(|v| *v >= min) {
            out.push((key, json!(v)));
        }
    };
    int("EchoTrainLength", sc.int(tags::ECHO_TRAIN_LENGTH), 2);
    int(
        "PhaseEncodingSteps",
        sc.int(tags::NUMBER_OF_PHASE_ENCODING_STEPS)
            .or_else(|| sc.int(tags::MR_ACQUISITION_PHASE_ENCODING_STEPS_IN_PLANE)),
        1,
    );
    int(
        "FrequencyEncodingSteps",
        sc.int(tags::MR_ACQUISITION_FREQUENCY_ENCODING_STEPS),
        1,
    );
    int(
        "PhaseEncodingStepsOutOfPlane",
        sc.int(tags::MR_ACQUISITION_PHASE_ENCODING_STEPS_OUT_OF_PLANE),
        1,
    );
    let mut text = |key: &'static str, v: Option<String>| {
        if let Some(v) = v {
            out.push((key, json!(v)));
        }
    };
    text("BodyPart", sc.str(tags::BODY_PART_EXAMINED));
    text(
        "PulseSequenceName",
        if is("GE") {
            get_private_str(o, 0x0019, "GEMS_ACQU_01", 0x9C)
        } else {
            sc.str(tags::PULSE_SEQUENCE_NAME)
        },
    );
    if is("GE") {
        text(
            "InternalPulseSequenceName",
            get_private_str(o, 0x0019, "GEMS_ACQU_01", 0x9E),
        );
        text(
            "PrescanReuseString",
            get_private_str(o, 0x0043, "GEMS_PARM_01", 0x95),
        );
    }
    if !is("Siemens") {
        text("CoilString", sc.str(tags::RECEIVE_COIL_NAME));
    }
    if is("Siemens") {
        text(
            "ImageOrientationText",
            get_private_str(o, 0x0051, "SIEMENS MR HEADER", 0x0E),
        );
        text(
            "ReceiveCoilActiveElements",
            get_private_str(o, 0x0051, "SIEMENS MR HEADER", 0x0F),
        );
    }
    if is("GE") {
        let shim: Vec<i64> = (0x02..=0x04)
            .filter_map(|e| private_f64(o, 0x0043, "GEMS_PARM_01", e).map(|v| v as i64))
            .collect();
        if shim.len() == 3 {
            out.push(("ShimSetting", json!(shim)));
        }
        // Table position: the third value of (0043,10B2) less the table delta (0019,107F).
        let table = o
            .private_element(0x0043, "GEMS_PARM_01", 0xB2)
            .and_then(|e| e.to_multi_float64())
            .and_then(|v| v.get(2).copied());
        if let Some(z) = table {
            let delta = private_f64(o, 0x0019, "GEMS_ACQU_01", 0x7F).unwrap_or(0.0);
            out.push(("TablePosition", json!([0.0, 0.0, z - delta])));
        }
    }
    if let Some(mt) = sc.str(tags::MAGNETIZATION_TRANSFER) {
        // ON_RESONANCE and OFF_RESONANCE both mean a transfer pulse; NONE means none.
        out.push(("MTState", json!(!mt.eq_ignore_ascii_case("NONE"))));
    }
    if is("Philips")
        && let Some(z) = private_f64(o, 0x2005, PHILIPS_MR_005, 0x3C).or_else(|| {
            sc.objs
                .iter()
                .find_map(|i| private_f64(i, 0x2005, PHILIPS_MR_005, 0x3C))
        })
    {
        // dcm2niix negates z (table travel into the bore is negative in DICOM).
        let z = if z == 0.0 { 0.0 } else { -z };
        out.push(("TablePosition", json!([0.0, 0.0, z])));
    }
    out
}

/// GE direct B0 field maps hold the field map (Hz) and a magnitude image in one series with
/// the same ImageType. dcm2niix's rule: the pulse sequence is a B0 map ((0019,109C) contains
/// `b0map`, or (0019,109E) is `B0map`), ImagesInAcquisition (0020,1002) and GE's
/// LocationsInAcquisition (0021,104F) are both set and differ; then the first
/// LocationsInAcquisition instances (times the zip factor, SliceThickness over
/// SpacingBetweenSlices, when above 1) are the field map.
fn ge_field_map_hz(o: &Obj, m: &SeriesMeta) -> bool {
    let b0map = get_private_str(o, 0x0019, "GEMS_ACQU_01", 0x9C)
        .is_some_and(|v| v.contains("b0map"))
        || get_private_str(o, 0x0019, "GEMS_ACQU_01", 0x9E).is_some_and(|v| v == "B0map");
    let images = get_int(o, tags::IMAGES_IN_ACQUISITION).filter(|v| *v > 0);
    let locations = private_f64(o, 0x0021, "GEMS_RELA_01", 0x4F)
        .map(|v| v as i64)
        .filter(|v| *v > 0);
    let (true, Some(images), Some(mut locations)) = (b0map, images, locations) else {
        return false;
    };
    if images == locations {
        return false;
    }
    if let (Some(t), Some(s)) = (
        m.slice_thickness,
        m.spacing_between_slices.filter(|s| *s > 0.0),
    ) {
        let zip = (t / s).round() as i64;
        if zip > 1 {
            locations *= zip;
        }
    }
    get_int(o, tags::INSTANCE_NUMBER).is_some_and(|n| n <= locations)
}

/// Siemens keys: the protocol text's (see `phoenix`), the coil string when it is not the
/// active elements, and the table position from the CSA image header (z negated, as dcm2niix).
fn siemens_keys(o: &Obj, m: &SeriesMeta, sc: &Scope) -> Vec<(&'static str, serde_json::Value)> {
    use serde_json::json;
    let mut out = Vec::new();
    let protocol = private_bytes(o, 0x0029, "SIEMENS CSA HEADER", 0x20)
        .or_else(|| private_bytes(o, 0x0021, "SIEMENS MR SDS 01", 0x19));
    if let Some(text) = protocol.as_deref().and_then(super::phoenix::ascconv) {
        out.extend(super::phoenix::sidecar_keys(text));
    }
    let active = out
        .iter()
        .find(|(k, _)| *k == "ReceiveCoilActiveElements")
        .and_then(|(_, v)| v.as_str().map(String::from))
        .or_else(|| get_private_str(o, 0x0051, "SIEMENS MR HEADER", 0x0F));
    let coil = get_private_str(o, 0x0051, "SIEMENS MR HEADER", 0x0F)
        .or_else(|| sc.str(tags::RECEIVE_COIL_NAME));
    if let Some(c) = coil.filter(|c| Some(c) != active.as_ref()) {
        out.push(("CoilString", json!(c)));
    }
    if let Some(b) = private_bytes(o, 0x0029, "SIEMENS CSA HEADER", 0x10) {
        let csa = csa::parse(&b);
        let table: Vec<f64> = csa
            .get("ImaRelTablePosition")
            .map(|v| v.iter().filter_map(|s| s.trim().parse().ok()).collect())
            .unwrap_or_default();
        if table.len() >= 3 {
            let z = if table[2] == 0.0 { 0.0 } else { -table[2] };
            out.push(("TablePosition", json!([table[0], table[1], z])));
        }
    }
    // XA: the image type as text (0021,1175), split like ImageType.
    if let Some(t) = get_private_str(o, 0x0021, "SIEMENS MR SDS 01", 0x75) {
        let parts: Vec<String> = t
            .split(['\\', '_'])
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .map(String::from)
            .collect();
        out.push(("ImageTypeText", json!(parts)));
    }
    let _ = m;
    out
}

/// Keys dcm2niix derives from ImageType: NonlinearGradientCorrection (DIS2D/DIS3D: true, ND:
/// false) and RawImage (false for DERIVED images).
fn image_type_keys(image_type: &[String]) -> Vec<(&'static str, serde_json::Value)> {
    use serde_json::json;
    let has = |v: &str| image_type.iter().any(|t| t.eq_ignore_ascii_case(v));
    let mut out = Vec::new();
    if has("ND") {
        out.push(("NonlinearGradientCorrection", json!(false)));
    } else if has("DIS2D") || has("DIS3D") {
        out.push(("NonlinearGradientCorrection", json!(true)));
    }
    if image_type
        .first()
        .is_some_and(|t| t.eq_ignore_ascii_case("DERIVED"))
    {
        out.push(("RawImage", json!(false)));
    }
    out
}

fn get_private_str(o: &Obj, group: u16, creator: &str, elem: u8) -> Option<String> {
    let e = o.private_element(group, creator, elem)?;
    let s = e.to_str()?;
    let s = s.trim_matches(|c: char| c == '\0' || c.is_whitespace());
    (!s.is_empty()).then(|| s.to_string())
}

/// `value` when it lies in `lo..=hi`; otherwise an error that names the element.
fn in_range(name: &str, value: i64, lo: i64, hi: i64) -> Result<i64, String> {
    if (lo..=hi).contains(&value) {
        Ok(value)
    } else {
        Err(format!("{name} is {value}: outside {lo}..={hi}"))
    }
}

/// Extract everything needed from a (header-only) object.
pub(crate) fn extract(o: &Obj, meta: &FileMeta, file_len: u64) -> Result<FileHeader, String> {
    let ts = meta.transfer_syntax.clone();
    let sop_uid =
        get_str(o, tags::SOP_INSTANCE_UID).unwrap_or_else(|| meta.sop_instance_uid.clone());
    let rows = get_int(o, tags::ROWS).ok_or("missing Rows (0028,0010): not an image")?;
    let cols = get_int(o, tags::COLUMNS).ok_or("missing Columns (0028,0011)")?;
    // US values: anything outside their range is a damaged header, not a value to wrap.
    let rows = in_range("Rows (0028,0010)", rows, 1, 0xFFFF)? as u32;
    let cols = in_range("Columns (0028,0011)", cols, 1, 0xFFFF)? as u32;
    let frames = in_range(
        "NumberOfFrames (0028,0008)",
        get_int(o, tags::NUMBER_OF_FRAMES).unwrap_or(1).max(1),
        1,
        i64::from(u32::MAX),
    )? as u32;
    let samples_per_pixel = in_range(
        "SamplesPerPixel (0028,0002)",
        get_int(o, tags::SAMPLES_PER_PIXEL).unwrap_or(1),
        1,
        4,
    )? as u16;
    let bits_allocated = in_range(
        "BitsAllocated (0028,0100)",
        get_int(o, tags::BITS_ALLOCATED).unwrap_or(16),
        1,
        64,
    )? as u16;
    let sc = Scope::of(o);
    let mut m = SeriesMeta {
        series_uid: get_str(o, tags::SERIES_INSTANCE_UID).unwrap_or_default(),
        study_uid: get_str(o, tags::STUDY_INSTANCE_UID).unwrap_or_default(),
        sop_class: get_str(o, tags::SOP_CLASS_UID).unwrap_or_default(),
        modality: get_str(o, tags::MODALITY),
        manufacturer: get_str(o, tags::MANUFACTURER),
        model: get_str(o, tags::MANUFACTURER_MODEL_NAME),
        field_strength: get_f64(o, tags::MAGNETIC_FIELD_STRENGTH),
        imaging_frequency: sc.f64(tags::IMAGING_FREQUENCY),
        series_description: get_str(o, tags::SERIES_DESCRIPTION),
        protocol: get_str(o, tags::PROTOCOL_NAME),
        series_number: get_int(o, tags::SERIES_NUMBER),
        acquisition_number: get_int(o, tags::ACQUISITION_NUMBER),
        echo_time_ms: get_f64(o, tags::ECHO_TIME),
        repetition_time_ms: sc.f64(tags::REPETITION_TIME),
        inversion_time_ms: sc.f64(tags::INVERSION_TIME),
        flip_angle: sc.f64(tags::FLIP_ANGLE),
        slice_thickness: get_f64(o, tags::SLICE_THICKNESS),
        spacing_between_slices: sc.f64(tags::SPACING_BETWEEN_SLICES),
        echo_number: get_int(o, tags::ECHO_NUMBERS),
        image_type: get_strs(o, tags::IMAGE_TYPE),
        acquisition_matrix: o
            .get(tags::ACQUISITION_MATRIX)
            .and_then(|e| e.to_multi_int())
            .unwrap_or_default(),
        echo_train_length: sc.int(tags::ECHO_TRAIN_LENGTH),
        pe_steps_in_plane: sc.int(tags::MR_ACQUISITION_PHASE_ENCODING_STEPS_IN_PLANE),
        number_of_averages: sc.f64(tags::NUMBER_OF_AVERAGES),
        inplane_pe_dir: sc.str(tags::IN_PLANE_PHASE_ENCODING_DIRECTION),
        patient_position: get_str(o, tags::PATIENT_POSITION),
        // All values, joined with `\` as they are stored (as dcm2niix writes them).
        software_versions: Some(get_strs(o, tags::SOFTWARE_VERSIONS).join("\\"))
            .filter(|s| !s.is_empty()),
        mr_acquisition_type: sc.str(tags::MR_ACQUISITION_TYPE),
        scanning_sequence: sc.str(tags::SCANNING_SEQUENCE),
        sequence_variant: sc.str(tags::SEQUENCE_VARIANT),
        scan_options: get_str(o, tags::SCAN_OPTIONS),
        sequence_name: get_str(o, tags::SEQUENCE_NAME),
        pixel_bandwidth: sc.f64(tags::PIXEL_BANDWIDTH),
        photometric: get_str(o, tags::PHOTOMETRIC_INTERPRETATION)
            .unwrap_or_else(|| "MONOCHROME2".into()),
        rows,
        cols,
        samples_per_pixel,
        bits_allocated,
        bits_stored: get_int(o, tags::BITS_STORED).unwrap_or(0).clamp(0, 64) as u16,
        planar_configuration: get_int(o, tags::PLANAR_CONFIGURATION)
            .unwrap_or(0)
            .clamp(0, 1) as u16,
        pixel_representation: get_int(o, tags::PIXEL_REPRESENTATION)
            .unwrap_or(0)
            .clamp(0, 1) as u16,
        number_of_frames: frames,
        orientation: arr6(get_fvec(o, tags::IMAGE_ORIENTATION_PATIENT)),
        pixel_spacing: arr2(get_fvec(o, tags::PIXEL_SPACING))
            .or_else(|| arr2(get_fvec(o, tags::IMAGER_PIXEL_SPACING))),
        ..Default::default()
    };
    // A frame takes at least its pixels (native data) or an 8-byte item header (encapsulated):
    // a count the file cannot hold is refused before a per-frame list is built from it.
    let native = matches!(
        ts.as_str(),
        "1.2.840.10008.1.2" | "1.2.840.10008.1.2.1" | "1.2.840.10008.1.2.2"
    );
    let min_frame_bytes = if native {
        (u64::from(m.rows)
            * u64::from(m.cols)
            * u64::from(m.samples_per_pixel)
            * u64::from(m.bits_allocated))
        .div_ceil(8)
        .max(1)
    } else {
        8
    };
    if u64::from(m.number_of_frames).saturating_mul(min_frame_bytes) > file_len {
        return Err(format!(
            "truncated file, or a lying NumberOfFrames (0028,0008): {} frame(s) of at least {min_frame_bytes} bytes need more than the file's {file_len} bytes",
            m.number_of_frames
        ));
    }
    let philips = m
        .manufacturer
        .as_deref()
        .is_some_and(|v| v.to_ascii_uppercase().contains("PHILIPS"));
    if philips {
        m.philips_rwv = first_item(o, tags::REAL_WORLD_VALUE_MAPPING_SEQUENCE).and_then(|i| {
            Some((
                get_f64(i, tags::REAL_WORLD_VALUE_SLOPE)?,
                get_f64(i, tags::REAL_WORLD_VALUE_INTERCEPT).unwrap_or(0.0),
            ))
        });
    }
    let base_philips_ss = philips.then(|| philips_scale_slope(o)).flatten();
    let vendor = super::deid::normalize_manufacturer(m.manufacturer.as_deref().unwrap_or(""));
    if vendor == "GE" {
        m.field_map_hz = ge_field_map_hz(o, &m);
        m.ge_velocity_encode_scale = private_f64(o, 0x0019, "GEMS_ACQU_01", 0xE2);
        m.ge_protocol = ge_protocol(o);
        m.ge_pulse_sequence = get_private_str(o, 0x0019, "GEMS_ACQU_01", 0x9C);
    }
    m.readout = Readout {
        bandwidth_per_pixel_pe: (vendor == "Siemens")
            .then(|| private_f64(o, 0x0019, "SIEMENS MR HEADER", 0x28))
            .flatten(),
        dwell_ns: (vendor == "Siemens")
            .then(|| private_f64(o, 0x0019, "SIEMENS MR HEADER", 0x18))
            .flatten(),
        pe_positive: None,
        ge_echo_spacing_us: (vendor == "GE")
            .then(|| private_f64(o, 0x0043, "GEMS_PARM_01", 0x2C))
            .flatten(),
        ge_asset: (vendor == "GE")
            .then(|| private_f64(o, 0x0043, "GEMS_PARM_01", 0x83))
            .flatten(),
        partial_fourier: m.scan_options.as_deref().is_some_and(|v| v.contains("PFF"))
            || sc
                .str(tags::PARTIAL_FOURIER)
                .is_some_and(|v| v.starts_with('Y')),
        water_fat_shift: (vendor == "Philips")
            .then(|| private_f64(o, 0x2001, "Philips Imaging DD 001", 0x22))
            .flatten(),
        ge_flipped: (vendor == "GE")
            .then(|| ge_polarity_flipped(o, &sc))
            .flatten(),
    };
    if let Some(flipped) = m.readout.ge_flipped {
        m.readout.pe_positive = Some(!flipped);
    }
    m.acquisition = acquisition_keys(
        o,
        &sc,
        &super::deid::normalize_manufacturer(m.manufacturer.as_deref().unwrap_or("")),
    );
    if vendor == "Siemens" {
        m.acquisition.extend(siemens_keys(o, &m, &sc));
    }
    m.acquisition.extend(image_type_keys(&m.image_type));
    let private_dims = private_dimensions(o);
    for (kw, g, e) in PHI_TAGS {
        if let Some(v) = get_str(o, Tag(*g, *e)) {
            m.phi.push((kw.to_string(), v));
        }
    }
    // Siemens mosaic: CSA image header, else private (0019,xx0A).
    let is_mosaic = m
        .image_type
        .iter()
        .any(|s| s.eq_ignore_ascii_case("MOSAIC"));
    if let Some(b) = private_bytes(o, 0x0029, "SIEMENS CSA HEADER", 0x10) {
        let c = csa::parse(&b);
        if let Some(n) = c
            .get("NumberOfImagesInMosaic")
            .and_then(|v| v.first())
            .and_then(|s| s.parse::<f64>().ok())
        {
            m.mosaic = Some(n as u32);
        }
        if let Some(v) = c.get("SliceNormalVector")
            && v.len() >= 3
        {
            let p: Vec<f64> = v.iter().filter_map(|s| s.parse().ok()).collect();
            if p.len() >= 3 {
                m.csa_slice_normal = Some([p[0], p[1], p[2]]);
            }
        }
        if let Some(v) = c.get("MosaicRefAcqTimes") {
            m.mosaic_times_ms = v.iter().filter_map(|s| s.parse().ok()).collect();
        }
        m.readout.pe_positive = c
            .get("PhaseEncodingDirectionPositive")
            .and_then(|v| v.first())
            .and_then(|s| s.trim().parse::<i64>().ok())
            .map(|v| v == 1);
    }
    if m.mosaic.is_none()
        && let Some(e) = o.private_element(0x0019, "SIEMENS MR HEADER", 0x0A)
        && let Some(n) = e.to_int()
    {
        m.mosaic = Some(n as u32);
    }
    if !is_mosaic || m.mosaic.is_some_and(|n| n <= 1) {
        m.mosaic = None;
    }
    // UIH grid mosaics ("VFRAME", see dcm2niix's UIH/README.md): NumberOfImagesInGrid
    // (0065,1050) slices tiled ceil(√n) columns by ceil(n / columns) rows, each slice's
    // position in the items of (0065,1051), none at the top level.
    if vendor == "UIH"
        && let Some(n) = get_f64(o, Tag(0x0065, 0x1050))
            .map(|v| v.round() as i64)
            .filter(|n| (2..=4096).contains(n))
    {
        let n = n as u32;
        let columns = (f64::from(n)).sqrt().ceil() as u32;
        m.mosaic = Some(n);
        m.mosaic_grid = Some((columns, n.div_ceil(columns)));
        m.mosaic_positions = items(o, Tag(0x0065, 0x1051))
            .map(|it| {
                it.iter()
                    .filter_map(|i| arr3(get_fvec(i, tags::IMAGE_POSITION_PATIENT)))
                    .collect()
            })
            .unwrap_or_default();
    }

    let mut frames = Vec::new();
    let shared = first_item(o, Tag(0x5200, 0x9229));
    let per_frame = items(o, Tag(0x5200, 0x9230));
    let base_time = get_str(o, tags::ACQUISITION_TIME)
        .or_else(|| get_str(o, tags::CONTENT_TIME))
        .and_then(|s| parse_tm(&s))
        .or_else(|| get_str(o, tags::ACQUISITION_DATE_TIME).and_then(|s| parse_dt(&s)));
    let base_slope = get_f64(o, tags::RESCALE_SLOPE).filter(|s| *s != 0.0);
    let base_inter = get_f64(o, tags::RESCALE_INTERCEPT);
    if let Some(pf) = per_frame.filter(|p| !p.is_empty()) {
        // Enhanced multi-frame: functional groups.
        let fg = |f: &Obj, seq: Tag, t: Tag| -> Option<Vec<f64>> {
            first_item(f, seq).and_then(|i| get_fvec(i, t)).or_else(|| {
                shared
                    .and_then(|s| first_item(s, seq))
                    .and_then(|i| get_fvec(i, t))
            })
        };
        let (mut dyn_min, mut dyn_max) = (f64::INFINITY, f64::NEG_INFINITY);
        for (i, f) in pf.iter().enumerate() {
            let content = first_item(f, tags::FRAME_CONTENT_SEQUENCE);
            let pm = fg(f, tags::PIXEL_MEASURES_SEQUENCE, tags::PIXEL_SPACING);
            let slope = fg(
                f,
                tags::PIXEL_VALUE_TRANSFORMATION_SEQUENCE,
                tags::RESCALE_SLOPE,
            )
            .and_then(|v| v.first().copied())
            .or(base_slope)
            .filter(|s| *s != 0.0);
            let inter = fg(
                f,
                tags::PIXEL_VALUE_TRANSFORMATION_SEQUENCE,
                tags::RESCALE_INTERCEPT,
            )
            .and_then(|v| v.first().copied())
            .or(base_inter);
            let philips_ss = philips
                .then(|| {
                    philips_frame_item(f)
                        .and_then(philips_scale_slope)
                        .or_else(|| {
                            shared
                                .and_then(philips_frame_item)
                                .and_then(philips_scale_slope)
                        })
                })
                .flatten()
                .or(base_philips_ss);
            if let Some(t) = philips
                .then(|| {
                    philips_frame_item(f).and_then(|i| private_f64(i, 0x2005, PHILIPS_MR_001, 0xA0))
                })
                .flatten()
            {
                dyn_min = dyn_min.min(t);
                dyn_max = dyn_max.max(t);
            }
            let index_values: Vec<i64> = content
                .and_then(|c| c.get(tags::DIMENSION_INDEX_VALUES))
                .and_then(|e| e.to_multi_int())
                .unwrap_or_default();
            frames.push(FrameInfo {
                philips_scale_slope: philips_ss,
                volume_rank: private_dims
                    .iter()
                    .map(|&d| index_values.get(d).copied().unwrap_or(0))
                    .collect(),
                frame: i as u32,
                position: arr3(fg(
                    f,
                    tags::PLANE_POSITION_SEQUENCE,
                    tags::IMAGE_POSITION_PATIENT,
                )),
                orientation: arr6(fg(
                    f,
                    tags::PLANE_ORIENTATION_SEQUENCE,
                    tags::IMAGE_ORIENTATION_PATIENT,
                ))
                .or(m.orientation),
                pixel_spacing: arr2(pm).or(m.pixel_spacing),
                slope: slope.unwrap_or(1.0),
                intercept: inter.unwrap_or(0.0),
                temporal: content.and_then(|c| get_int(c, tags::TEMPORAL_POSITION_INDEX)),
                acq_time: content
                    .and_then(|c| get_str(c, tags::FRAME_ACQUISITION_DATE_TIME))
                    .and_then(|s| parse_dt(&s))
                    .or(base_time),
                echo_time_ms: fg(f, tags::MR_ECHO_SEQUENCE, tags::EFFECTIVE_ECHO_TIME)
                    .and_then(|v| v.first().copied())
                    .or(m.echo_time_ms),
            });
        }
        if dyn_max > dyn_min {
            m.philips_dynamic_span_s = Some(dyn_max - dyn_min);
        }
        if m.orientation.is_none() {
            m.orientation = frames.first().and_then(|f| f.orientation);
        }
        if m.pixel_spacing.is_none() {
            m.pixel_spacing = frames.first().and_then(|f| f.pixel_spacing);
        }
        if m.slice_thickness.is_none() {
            m.slice_thickness = first_item(
                pf.first().unwrap_or(&Obj::default()),
                tags::PIXEL_MEASURES_SEQUENCE,
            )
            .or_else(|| shared.and_then(|s| first_item(s, tags::PIXEL_MEASURES_SEQUENCE)))
            .and_then(|i| get_f64(i, tags::SLICE_THICKNESS));
        }
        if m.echo_time_ms.is_none() {
            m.echo_time_ms = frames.first().and_then(|f| f.echo_time_ms);
        }
    } else {
        let pos = arr3(get_fvec(o, tags::IMAGE_POSITION_PATIENT))
            .or_else(|| m.mosaic_positions.first().copied());
        for i in 0..m.number_of_frames {
            frames.push(FrameInfo {
                philips_scale_slope: base_philips_ss,
                volume_rank: Vec::new(),
                frame: i,
                position: pos,
                orientation: m.orientation,
                pixel_spacing: m.pixel_spacing,
                slope: base_slope.unwrap_or(1.0),
                intercept: base_inter.unwrap_or(0.0),
                temporal: get_int(o, tags::TEMPORAL_POSITION_IDENTIFIER),
                acq_time: base_time,
                echo_time_ms: m.echo_time_ms,
            });
        }
    }
    Ok(FileHeader {
        transfer_syntax: ts,
        sop_uid,
        instance_number: get_int(o, tags::INSTANCE_NUMBER),
        meta: m,
        frames,
        pixel: None,
    })
}
