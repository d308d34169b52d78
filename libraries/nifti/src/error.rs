use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

/// Error from [`read_nifti`](super::read_nifti) / [`write_nifti`](super::write_nifti).
///
/// `Display` is `"<path>: <reason>"`.
#[derive(Debug)]
pub struct NiftiError {
    /// The file being read or written.
    pub path: PathBuf,
    /// What went wrong.
    pub kind: NiftiErrorKind,
}

/// The reason part of a [`NiftiError`].
#[derive(Debug)]
#[non_exhaustive]
pub enum NiftiErrorKind {
    /// Operating-system error (open, read, write, rename ...), with what was being done.
    Io(&'static str, io::Error),
    /// The gzip stream ended before all voxel data was decompressed.
    TruncatedGzip { expected: u64, got: u64 },
    /// The gzip stream is damaged (bad deflate data, bad header, CRC mismatch ...).
    CorruptGzip(String),
    /// Fewer bytes than a header needs.
    TruncatedHeader { expected: usize, got: usize },
    /// `sizeof_hdr` is neither 348 nor 540 in either byte order.
    BadSizeofHdr(i32),
    /// Wrong magic string for the header size.
    BadMagic { version: u8, found: Vec<u8> },
    /// The (uncompressed) file or stream holds less voxel data than the dims need.
    DataTooShort { expected: u64, got: u64 },
    /// `dim` fields make no sense (dim[0] out of range, zero/negative, overflow).
    InvalidDims(String),
    /// Unknown or unsupported datatype code.
    UnsupportedDatatype(i16),
    /// The header claims more voxel data than the reader's memory budget (`max_bytes`) allows.
    OverBudget {
        dims: Vec<usize>,
        claimed: u64,
        max_bytes: u64,
    },
    /// Anything else that makes the header or the request unusable.
    Invalid(String),
}

impl NiftiError {
    pub(crate) fn new(path: &Path, kind: NiftiErrorKind) -> Self {
        Self {
            path: path.to_path_buf(),
            kind,
        }
    }
}

impl fmt::Display for NiftiErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Io(what, e) => write!(f, "{what}: {e}"),
            Self::TruncatedGzip { expected, got } => write!(
                f,
                "truncated gzip stream (expected {expected} bytes of voxel data, got {got})"
            ),
            Self::CorruptGzip(why) => write!(f, "corrupt gzip stream ({why})"),
            Self::TruncatedHeader { expected, got } => {
                write!(f, "truncated header (expected {expected} bytes, got {got})")
            }
            Self::BadSizeofHdr(v) => write!(
                f,
                "not a NIfTI file: sizeof_hdr is {v} (expected 348 or 540 in either byte order)"
            ),
            Self::BadMagic { version, found } => write!(
                f,
                "bad magic {:?} for a NIfTI-{version} header (expected \"n+{version}\")",
                String::from_utf8_lossy(found)
            ),
            Self::DataTooShort { expected, got } => write!(
                f,
                "voxel data shorter than dims require (expected {expected} bytes, got {got})"
            ),
            Self::InvalidDims(why) => write!(f, "invalid dims: {why}"),
            Self::UnsupportedDatatype(code) => write!(f, "unsupported datatype code {code}"),
            Self::OverBudget {
                dims,
                claimed,
                max_bytes,
            } => write!(
                f,
                "header claims dims {dims:?} = {claimed} bytes of voxel data, over the memory \
                 budget max_bytes = {max_bytes}; raise max_bytes to read it"
            ),
            Self::Invalid(why) => write!(f, "{why}"),
        }
    }
}

impl fmt::Display for NiftiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path.display(), self.kind)
    }
}

impl std::error::Error for NiftiError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match &self.kind {
            NiftiErrorKind::Io(_, e) => Some(e),
            _ => None,
        }
    }
}
