//! Pure DICOM ingestion: discovery, series grouping, pixel decoding and
//! geometry, with de-identified BIDS-style metadata.
//!
//! This module uses nothing of the Mindscan SDK but its folder walker (symlink loops); an
//! adapter wraps it into a pipeline source.
//!
//! * [`scan`] walks files / folders / globs, reads headers only (stops before
//!   Pixel Data), groups the files into [`Series`] and sorts them spatially.
//! * [`load_series`] decodes one series into a [`DicomVolume`] (voxels in NIfTI
//!   order, RAS+ affine, scaling, sidecar).
//! * [`inspect`] summarises what a set of inputs contains.
//!
//! # Series grouping and splitting keys
//!
//! Files are first grouped by SeriesInstanceUID (0020,000E). Each group is then
//! split, like dcm2niix, on every key that cannot share one NIfTI volume:
//!
//! 1. ImageOrientationPatient (rounded to 1e-4),
//! 2. matrix size: Rows x Columns (after Siemens mosaic unpacking: tile size and
//!    number of images in the mosaic), samples per pixel and bits allocated,
//! 3. echo: EchoNumbers (0018,0086) and EchoTime (per frame for enhanced files),
//! 4. image type class: magnitude / phase / real / imaginary (from ImageType
//!    values `M`/`MAGNITUDE`, `P`/`PHASE`, `R`/`REAL`, `I`/`IMAGINARY`),
//! 5. acquisition: images that repeat a slice position are kept together as
//!    volumes of one 4D series (fMRI, as dcm2niix does); AcquisitionNumber is
//!    not a split key but is used, with AcquisitionTime, TemporalPositionIdentifier
//!    and InstanceNumber, to order the volumes.
//!
//! Within a split, images are ordered by their distance along the slice normal
//! (ImagePositionPatient · (row × column direction)), never by file name.
//! Positions that repeat become the 4th dimension.
//!
//! # De-identification
//!
//! By default nothing from the DICOM Basic Application Level Confidentiality
//! Profile (PS3.15 E.1) reaches the sidecar or generated names: patient
//! attributes, institution, station, device serial number, accession number,
//! physicians, dates and times are left out, and UIDs are replaced by stable
//! hashes (`2.25.<decimal of SHA-256 prefix>`). Keeping one of those attributes
//! requires naming its DICOM keyword in [`DeidOptions::keep`].

mod codestream;
mod contain;
mod csa;
mod dataset;
mod deid;
mod header;
pub mod item;
mod load;
mod phoenix;
mod scan;
mod structure;

use deid::format_name;
pub use deid::{DeidOptions, PHI_KEYWORDS, hash_uid, sanitize_token};
pub use load::{LoadOptions, PhilipsScaling, load_series, load_series_lenient, load_series_with};
pub use scan::{FileIdentity, ParsedHeader, identify, identify_keeping, inspect, scan, scan_with};

/// Summary of one scanned series (what [`inspect`] gives for each).
pub fn inspect_series(series: &Series) -> SeriesSummary {
    scan::summarize(series)
}

use std::path::PathBuf;

/// Errors from this module.
#[derive(Debug)]
pub enum DicomError {
    /// A file could not be read or parsed.
    Read { path: PathBuf, message: String },
    /// A folder could not be listed (its files are unknown).
    List { path: PathBuf, message: String },
    /// Pixel data of a file could not be decoded (transfer syntax named).
    Decode {
        path: PathBuf,
        transfer_syntax: String,
        message: String,
    },
    /// Several files of one series failed; the series was not assembled.
    Series {
        series: String,
        failures: Vec<DicomError>,
    },
    /// The series is not consistent enough to make a volume.
    Invalid(String),
}

impl std::fmt::Display for DicomError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DicomError::Read { path, message } => {
                write!(f, "cannot read DICOM file {}: {message}", path.display())
            }
            DicomError::List { path, message } => {
                write!(f, "cannot list folder {}: {message}", path.display())
            }
            DicomError::Decode {
                path,
                transfer_syntax,
                message,
            } => write!(
                f,
                "cannot decode pixel data of {} (transfer syntax {transfer_syntax} = {}): {message}",
                path.display(),
                transfer_syntax_name(transfer_syntax)
            ),
            DicomError::Series { series, failures } => {
                write!(f, "series {series}: {} file(s) failed:", failures.len())?;
                for e in failures {
                    write!(f, "\n  - {e}")?;
                }
                Ok(())
            }
            DicomError::Invalid(m) => write!(f, "{m}"),
        }
    }
}

impl std::error::Error for DicomError {}

impl DicomError {
    /// The file (or input) the error is about, when it is about one.
    pub fn path(&self) -> Option<&std::path::Path> {
        match self {
            DicomError::Read { path, .. }
            | DicomError::List { path, .. }
            | DicomError::Decode { path, .. } => Some(path),
            DicomError::Series { .. } | DicomError::Invalid(_) => None,
        }
    }
}

pub type Result<T, E = DicomError> = std::result::Result<T, E>;

/// A file that was passed over during the scan.
#[derive(Debug, Clone)]
pub struct SkippedFile {
    pub path: PathBuf,
    /// Why (debug note, e.g. "not a DICOM file", "DICOMDIR", "hidden file").
    pub reason: String,
}

/// Result of [`scan`].
#[derive(Debug, Default)]
pub struct ScanReport {
    /// Series found, in a stable order (series number, then UID hash, then split).
    pub series: Vec<Series>,
    /// Non-DICOM / irrelevant files that were skipped (not errors).
    pub skipped: Vec<SkippedFile>,
    /// DICOM files (or inputs) that could not be read: corrupt, truncated, missing.
    pub errors: Vec<DicomError>,
    /// Warnings not tied to one series.
    pub warnings: Vec<String>,
}

/// One image plane of a series: a whole single-frame file, one frame of a
/// multi-frame file, or a whole Siemens mosaic (which holds several slices).
#[derive(Debug, Clone)]
pub struct FrameRef {
    pub path: PathBuf,
    /// 0-based frame number inside the file.
    pub frame: u32,
    pub transfer_syntax: String,
    /// ImagePositionPatient (LPS mm), mosaic-corrected for Siemens mosaics.
    pub position: Option<[f64; 3]>,
    pub instance_number: Option<i64>,
    pub rescale_slope: f64,
    pub rescale_intercept: f64,
    /// Philips MRScaleSlope (2005,100E), per frame for enhanced files.
    pub philips_scale_slope: Option<f64>,
    /// Where the file's native pixel data lie, from the header pass: read straight into the
    /// volume, without a second parse.
    pub(crate) pixel: Option<structure::PixelSpan>,
    /// Frames the file holds.
    pub frames_in_file: u32,
    /// AcquisitionTime (or frame acquisition time), seconds; used for ordering.
    pub acquisition_time: Option<f64>,
    /// TemporalPositionIdentifier / TemporalPositionIndex.
    pub temporal_position: Option<i64>,
    pub acquisition_number: Option<i64>,
}

/// Geometry of a series (LPS inputs, RAS output).
#[derive(Debug, Clone)]
pub struct Geometry {
    /// Row and column direction cosines (ImageOrientationPatient, LPS).
    pub orientation: [f64; 6],
    /// (row spacing, column spacing) = PixelSpacing.
    pub pixel_spacing: [f64; 2],
    /// Voxel → world RAS+ mm.
    pub affine: [[f64; 4]; 4],
    /// Whether geometry came from real DICOM position/orientation tags.
    pub from_tags: bool,
}

/// A series after grouping / splitting, ready to load.
#[derive(Debug, Clone)]
pub struct Series {
    /// Stable de-identified id: hash of the SeriesInstanceUID plus split index.
    pub id: String,
    /// Split keys that distinguish this series from its siblings (human readable).
    pub split_key: String,
    /// dims [ni, nj, nk, nt].
    pub dims: [usize; 4],
    /// Image planes. `slots[t * nk + k]` indexes into `frames` (None = missing
    /// slice, filled with zeros on load, always with a warning).
    pub frames: Vec<FrameRef>,
    pub slots: Vec<Option<usize>>,
    /// Siemens mosaic: number of slices packed in each image.
    pub mosaic: Option<u32>,
    pub geometry: Geometry,
    pub transfer_syntaxes: Vec<String>,
    pub warnings: Vec<String>,
    pub(crate) meta: header::SeriesMeta,
}

impl Series {
    /// Number of distinct files in the series.
    /// What keeps a study's series on one shard of a split run (`--shard`): the
    /// StudyInstanceUID, or the series id when the files carry none.
    pub fn shard_key(&self) -> &str {
        if self.meta.study_uid.is_empty() {
            &self.id
        } else {
            &self.meta.study_uid
        }
    }

    pub fn file_count(&self) -> usize {
        let mut p: Vec<&PathBuf> = self.frames.iter().map(|f| &f.path).collect();
        p.sort();
        p.dedup();
        p.len()
    }
    /// Output name from a dcm2niix-like template (`%p` protocol, `%s` series
    /// number, `%d` description, `%m` modality, `%e` echo number, `%j` hashed
    /// series UID), sanitised. PHI specifiers (`%n`, `%i`, `%t`...) are not
    /// supported and expand to nothing.
    pub fn output_name(&self, template: &str) -> String {
        format_name(&self.meta, template)
    }
    /// Modality (0008,0060).
    pub fn modality(&self) -> Option<&str> {
        self.meta.modality.as_deref()
    }
    pub fn series_number(&self) -> Option<i64> {
        self.meta.series_number
    }
}

/// Voxel storage, native typed.
#[derive(Debug, Clone, PartialEq)]
pub enum VoxelData {
    U8(Vec<u8>),
    I8(Vec<i8>),
    U16(Vec<u16>),
    I16(Vec<i16>),
    U32(Vec<u32>),
    I32(Vec<i32>),
    F32(Vec<f32>),
    F64(Vec<f64>),
    /// Interleaved RGB triplets (3 bytes per voxel).
    Rgb8(Vec<u8>),
}

impl VoxelData {
    /// Number of voxels.
    pub fn len(&self) -> usize {
        match self {
            VoxelData::U8(v) => v.len(),
            VoxelData::I8(v) => v.len(),
            VoxelData::U16(v) => v.len(),
            VoxelData::I16(v) => v.len(),
            VoxelData::U32(v) => v.len(),
            VoxelData::I32(v) => v.len(),
            VoxelData::F32(v) => v.len(),
            VoxelData::F64(v) => v.len(),
            VoxelData::Rgb8(v) => v.len() / 3,
        }
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Stored value at voxel `i` as f64 (RGB: the red channel).
    pub fn get_f64(&self, i: usize) -> f64 {
        match self {
            VoxelData::U8(v) => v[i] as f64,
            VoxelData::I8(v) => v[i] as f64,
            VoxelData::U16(v) => v[i] as f64,
            VoxelData::I16(v) => v[i] as f64,
            VoxelData::U32(v) => v[i] as f64,
            VoxelData::I32(v) => v[i] as f64,
            VoxelData::F32(v) => v[i] as f64,
            VoxelData::F64(v) => v[i],
            VoxelData::Rgb8(v) => v[3 * i] as f64,
        }
    }
    /// NIfTI datatype code.
    pub fn nifti_datatype(&self) -> i16 {
        match self {
            VoxelData::U8(_) => 2,
            VoxelData::I16(_) => 4,
            VoxelData::I32(_) => 8,
            VoxelData::F32(_) => 16,
            VoxelData::F64(_) => 64,
            VoxelData::Rgb8(_) => 128,
            VoxelData::I8(_) => 256,
            VoxelData::U16(_) => 512,
            VoxelData::U32(_) => 768,
        }
    }
}

/// A decoded series.
#[derive(Debug, Clone)]
pub struct DicomVolume {
    /// [ni, nj, nk, nt]; index = i + ni*(j + nj*(k + nk*t)).
    pub dims: [usize; 4],
    pub voxels: VoxelData,
    /// Voxel → world RAS+ mm.
    pub affine: [[f64; 4]; 4],
    /// Voxel size (mm, mm, mm, s) as dcm2niix writes pixdim.
    pub pixdim: [f64; 4],
    /// NIfTI scl_slope / scl_inter (None = leave unset).
    pub scl_slope: Option<f64>,
    pub scl_inter: Option<f64>,
    /// De-identified BIDS-style metadata (times in seconds).
    pub sidecar: serde_json::Map<String, serde_json::Value>,
    pub warnings: Vec<String>,
    /// Sanitised default name (`%p_%s`).
    pub name: String,
}

/// Summary of one series for `mindscan inspect`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SeriesSummary {
    pub id: String,
    pub name: String,
    pub modality: Option<String>,
    pub series_number: Option<i64>,
    pub description: Option<String>,
    pub file_count: usize,
    pub dims: [usize; 4],
    /// e.g. "Tra", "Sag", "Cor", "Obl" plus the three-letter RAS axis code.
    pub orientation: String,
    pub voxel_size: [f64; 3],
    pub transfer_syntaxes: Vec<String>,
    pub mosaic: Option<u32>,
    pub warnings: Vec<String>,
}

/// Human name of a transfer syntax UID.
pub fn transfer_syntax_name(uid: &str) -> &'static str {
    match uid.trim_end_matches('\0').trim() {
        "1.2.840.10008.1.2" => "Implicit VR Little Endian",
        "1.2.840.10008.1.2.1" => "Explicit VR Little Endian",
        "1.2.840.10008.1.2.1.99" => "Deflated Explicit VR Little Endian",
        "1.2.840.10008.1.2.2" => "Explicit VR Big Endian",
        "1.2.840.10008.1.2.5" => "RLE Lossless",
        "1.2.840.10008.1.2.4.50" => "JPEG Baseline (Process 1)",
        "1.2.840.10008.1.2.4.51" => "JPEG Extended (Process 2 & 4)",
        "1.2.840.10008.1.2.4.57" => "JPEG Lossless (Process 14)",
        "1.2.840.10008.1.2.4.70" => "JPEG Lossless SV1 (Process 14, Selection Value 1)",
        "1.2.840.10008.1.2.4.80" => "JPEG-LS Lossless",
        "1.2.840.10008.1.2.4.81" => "JPEG-LS Near-Lossless",
        "1.2.840.10008.1.2.4.90" => "JPEG 2000 Lossless",
        "1.2.840.10008.1.2.4.91" => "JPEG 2000",
        "1.2.840.10008.1.2.4.201" => "HTJ2K Lossless",
        "1.2.840.10008.1.2.4.203" => "HTJ2K",
        _ => "unknown transfer syntax",
    }
}

/// Whether this build can decode the transfer syntax; `Err` explains why not.
pub fn transfer_syntax_supported(uid: &str) -> std::result::Result<(), String> {
    let uid = uid.trim_end_matches('\0').trim();
    if uid.starts_with("1.2.840.10008.1.2.4.8") && !cfg!(feature = "jpegls") {
        return Err(format!(
            "JPEG-LS ({uid}) support is not compiled in: rebuild mindscan with `--features jpegls` (needs cmake and a C++ compiler)"
        ));
    }
    use dicom_encoding::TransferSyntaxIndex;
    match dicom_transfer_syntax_registry::TransferSyntaxRegistry.get(uid) {
        None => Err(format!("unknown transfer syntax {uid}")),
        Some(ts) if !ts.can_decode_all() => Err(format!(
            "transfer syntax {uid} ({}) cannot be decoded by this build",
            transfer_syntax_name(uid)
        )),
        Some(_) => Ok(()),
    }
}
