//! The corrupt-input corpus: damaged copies of the real files in `tests/data`, made
//! deterministically (fixed seeds, no clock), and a runner that drives the real binary over each
//! case under a deadline, watching peak memory and every file it writes.
//!
//! Generation is pure: `(source bytes, family, parameters) -> bytes`. The e2e test
//! (`tests/e2e/corrupt.rs`) writes each case into its own folder and checks the outcome.

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

// ---------------------------------------------------------------------------------------------
// Deterministic randomness

/// xorshift64*: the only source of "randomness" in the corpus, always from a fixed seed.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

// ---------------------------------------------------------------------------------------------
// gzip

pub fn gunzip(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    flate2::read::MultiGzDecoder::new(bytes)
        .read_to_end(&mut out)
        .expect("a source .gz inflates");
    out
}

pub fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(bytes).unwrap();
    enc.finish().unwrap()
}

/// A gzip stream of `header` followed by `zeros` zero bytes, compressed in 1 MiB chunks (so a
/// gigabyte of zeros costs a megabyte of memory and about a megabyte of file).
pub fn gzip_with_zeros(header: &[u8], zeros: u64) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    enc.write_all(header).unwrap();
    let chunk = vec![0u8; 1 << 20];
    let mut left = zeros;
    while left > 0 {
        let n = left.min(chunk.len() as u64) as usize;
        enc.write_all(&chunk[..n]).unwrap();
        left -= n as u64;
    }
    enc.finish().unwrap()
}

// ---------------------------------------------------------------------------------------------
// NIfTI header fields

/// Which NIfTI header a (decompressed) file carries, and its byte order.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct NiftiKind {
    pub version: u8,
    pub big_endian: bool,
}

pub fn nifti_kind(b: &[u8]) -> NiftiKind {
    let le = i32::from_le_bytes(b[0..4].try_into().unwrap());
    let be = i32::from_be_bytes(b[0..4].try_into().unwrap());
    match (le, be) {
        (348, _) => NiftiKind {
            version: 1,
            big_endian: false,
        },
        (_, 348) => NiftiKind {
            version: 1,
            big_endian: true,
        },
        (540, _) => NiftiKind {
            version: 2,
            big_endian: false,
        },
        (_, 540) => NiftiKind {
            version: 2,
            big_endian: true,
        },
        _ => panic!("not a NIfTI header"),
    }
}

/// A header value to write: integers and floats at the file's width and byte order.
#[derive(Clone, Copy, Debug)]
pub enum Val {
    I16(i16),
    I32(i32),
    I64(i64),
    F32(f32),
    F64(f64),
}

/// Byte offsets of the fields the corpus damages, for NIfTI-1 and NIfTI-2.
pub struct NiftiLayout {
    pub dim: usize,
    pub dim_int: fn(i64) -> Val,
    pub datatype: usize,
    pub bitpix: usize,
    pub pixdim: usize,
    pub float: fn(f64) -> Val,
    pub vox_offset: usize,
    pub vox_is_float: bool,
    pub scl_slope: usize,
    pub scl_inter: usize,
    pub qform_code: usize,
    pub sform_code: usize,
    pub code_int: fn(i64) -> Val,
    pub magic: usize,
    pub header_len: usize,
}

pub fn nifti_layout(version: u8) -> NiftiLayout {
    if version == 1 {
        NiftiLayout {
            dim: 40,
            dim_int: |v| Val::I16(v as i16),
            datatype: 70,
            bitpix: 72,
            pixdim: 76,
            float: |v| Val::F32(v as f32),
            vox_offset: 108,
            vox_is_float: true,
            scl_slope: 112,
            scl_inter: 116,
            qform_code: 252,
            sform_code: 254,
            code_int: |v| Val::I16(v as i16),
            magic: 344,
            header_len: 348,
        }
    } else {
        NiftiLayout {
            dim: 16,
            dim_int: |v| Val::I64(v),
            datatype: 12,
            bitpix: 14,
            pixdim: 104,
            float: |v| Val::F64(v),
            vox_offset: 168,
            vox_is_float: false,
            scl_slope: 176,
            scl_inter: 184,
            qform_code: 344,
            sform_code: 348,
            code_int: |v| Val::I32(v as i32),
            magic: 4,
            header_len: 540,
        }
    }
}

/// Writes `v` at `at` in the header's byte order.
pub fn put(b: &mut [u8], at: usize, v: Val, big_endian: bool) {
    macro_rules! w {
        ($x:expr) => {{
            let bytes = if big_endian {
                $x.to_be_bytes()
            } else {
                $x.to_le_bytes()
            };
            b[at..at + bytes.len()].copy_from_slice(&bytes);
        }};
    }
    match v {
        Val::I16(x) => w!(x),
        Val::I32(x) => w!(x),
        Val::I64(x) => w!(x),
        Val::F32(x) => w!(x),
        Val::F64(x) => w!(x),
    }
}

/// One named header edit of a NIfTI file.
pub struct NiftiEdit {
    pub name: String,
    pub apply: Box<dyn Fn(&mut Vec<u8>, &NiftiLayout, bool)>,
}

fn edit(name: &str, f: impl Fn(&mut Vec<u8>, &NiftiLayout, bool) + 'static) -> NiftiEdit {
    NiftiEdit {
        name: name.to_string(),
        apply: Box::new(f),
    }
}

/// The header overwrites: dims, datatype, bitpix, pixdim, vox_offset, scl fields, codes, magic.
pub fn nifti_overwrites() -> Vec<NiftiEdit> {
    let mut e = Vec::new();
    for (slot, vals) in [
        (0usize, &[0i64, -1, 8, 9, 1][..]),
        (1, &[0, -1, 32767, -32768, 1 << 31]),
        (2, &[0, -7, 32767]),
        (3, &[0, -1, 32767]),
        (4, &[0, -1, 1000, 32767]),
        (5, &[0, 9]),
    ] {
        for &v in vals {
            e.push(edit(&format!("dim{slot}={v}"), move |b, l, be| {
                put(
                    b,
                    l.dim + slot * if l.header_len == 348 { 2 } else { 8 },
                    (l.dim_int)(v),
                    be,
                )
            }));
        }
    }
    for (name, vals) in [
        ("all3", [32767i64, 32767, 32767]),
        ("all3-2^31", [1 << 31, 1 << 31, 1 << 31]),
    ] {
        e.push(edit(&format!("dims-{name}"), move |b, l, be| {
            let w = if l.header_len == 348 { 2 } else { 8 };
            for (i, v) in vals.iter().enumerate() {
                put(b, l.dim + (i + 1) * w, (l.dim_int)(*v), be);
            }
        }));
    }
    e.push(edit("dims-i64max", |b, l, be| {
        let w = if l.header_len == 348 { 2 } else { 8 };
        for i in 1..4 {
            put(b, l.dim + i * w, (l.dim_int)(i64::MAX), be);
        }
    }));
    for v in [0i16, 1, 3, 128, 1536, 2304, 2048, 9999, -1] {
        e.push(edit(&format!("datatype={v}"), move |b, l, be| {
            put(b, l.datatype, Val::I16(v), be)
        }));
    }
    for v in [0i16, 1, 7, 64, -8] {
        e.push(edit(&format!("bitpix={v}"), move |b, l, be| {
            put(b, l.bitpix, Val::I16(v), be)
        }));
    }
    for (slot, v) in [
        (1usize, 0.0f64),
        (1, f64::NAN),
        (1, -1.0),
        (1, 1e30),
        (2, f64::INFINITY),
        (3, 1e-30),
        (0, 7.0),
    ] {
        e.push(edit(&format!("pixdim{slot}={v}"), move |b, l, be| {
            let w = if l.header_len == 348 { 4 } else { 8 };
            put(b, l.pixdim + slot * w, (l.float)(v), be)
        }));
    }
    for v in [
        0.0f64,
        1.0,
        347.0,
        -1.0,
        1e30,
        f64::NAN,
        f64::INFINITY,
        352.5,
        2147483647.0,
        1e12,
    ] {
        e.push(edit(&format!("vox_offset={v}"), move |b, l, be| {
            let val = if l.vox_is_float {
                (l.float)(v)
            } else {
                Val::I64(if v.is_finite() { v as i64 } else { i64::MAX })
            };
            put(b, l.vox_offset, val, be)
        }));
    }
    for (field, v) in [
        ("slope", f64::NAN),
        ("slope", f64::INFINITY),
        ("slope", 0.0),
        ("slope", 1e38),
        ("inter", f64::NAN),
        ("inter", f64::NEG_INFINITY),
        ("inter", -1e38),
    ] {
        e.push(edit(&format!("scl_{field}={v}"), move |b, l, be| {
            put(
                b,
                if field == "slope" {
                    l.scl_slope
                } else {
                    l.scl_inter
                },
                (l.float)(v),
                be,
            )
        }));
    }
    for (field, v) in [
        ("qform", 99i64),
        ("qform", -1),
        ("sform", 2),
        ("sform", 32767),
    ] {
        e.push(edit(&format!("{field}_code={v}"), move |b, l, be| {
            put(
                b,
                if field == "qform" {
                    l.qform_code
                } else {
                    l.sform_code
                },
                (l.code_int)(v),
                be,
            )
        }));
    }
    e.push(edit("srow-nan", |b, l, be| {
        if l.header_len == 348 {
            for i in 0..12 {
                put(b, 280 + 4 * i, Val::F32(f32::NAN), be);
            }
        } else {
            for i in 0..12 {
                put(b, 400 + 8 * i, Val::F64(f64::NAN), be);
            }
        }
        put(b, l.sform_code, (l.code_int)(1), be);
    }));
    for m in [b"ni1\0", b"n+2\0", b"xxxx", b"\0\0\0\0"] {
        e.push(edit(
            &format!(
                "magic={}",
                String::from_utf8_lossy(m).trim_end_matches('\0')
            ),
            move |b, l, _| b[l.magic..l.magic + 4].copy_from_slice(m),
        ));
    }
    for v in [0i32, 540, 347, -348] {
        e.push(edit(&format!("sizeof_hdr={v}"), move |b, _, be| {
            put(b, 0, Val::I32(v), be)
        }));
    }
    e
}

// ---------------------------------------------------------------------------------------------
// DICOM structure

/// One element found at the top level of a DICOM file (the meta group included).
#[derive(Clone, Debug)]
pub struct Elem {
    pub group: u16,
    pub element: u16,
    /// Offset of the tag.
    pub at: usize,
    /// Offset and width (2 or 4) of the length field; offset of the VR when explicit.
    pub len_at: usize,
    pub len_width: usize,
    pub vr_at: Option<usize>,
    pub value_at: usize,
    /// None for an undefined length (0xFFFFFFFF).
    pub value_len: Option<usize>,
    pub big_endian: bool,
}

impl Elem {
    pub fn is(&self, group: u16, element: u16) -> bool {
        self.group == group && self.element == element
    }
}

const LONG_VRS: [&[u8; 2]; 13] = [
    b"OB", b"OW", b"OF", b"SQ", b"UT", b"UN", b"OD", b"OL", b"UC", b"UR", b"OV", b"SV", b"UV",
];

/// The top-level elements of a DICOM Part 10 file, meta group first; stops at the first
/// undefined length (pixel data or a sequence), which is reported and ends the walk.
pub fn dicom_elements(b: &[u8]) -> Vec<Elem> {
    assert!(b.len() > 132 && &b[128..132] == b"DICM", "a Part 10 file");
    let mut out = Vec::new();
    let mut pos = 132;
    let mut ts = String::new();
    let (mut explicit, mut big) = (true, false);
    let mut in_meta = true;
    while pos + 8 <= b.len() {
        let rd16 = |p: usize, be: bool| {
            let x = [b[p], b[p + 1]];
            if be {
                u16::from_be_bytes(x)
            } else {
                u16::from_le_bytes(x)
            }
        };
        let rd32 = |p: usize, be: bool| {
            let x = [b[p], b[p + 1], b[p + 2], b[p + 3]];
            if be {
                u32::from_be_bytes(x)
            } else {
                u32::from_le_bytes(x)
            }
        };
        let group_le = rd16(pos, false);
        if in_meta && group_le != 2 {
            in_meta = false;
            explicit = ts != "1.2.840.10008.1.2";
            big = ts == "1.2.840.10008.1.2.2";
            if ts == "1.2.840.10008.1.2.1.99" {
                break; // deflated: nothing to walk
            }
        }
        let be = big && !in_meta;
        let (group, element) = (rd16(pos, be), rd16(pos + 2, be));
        let vr = &b[pos + 4..pos + 6];
        let (vr_at, len_at, len_width, value_at) = if in_meta || explicit {
            if LONG_VRS.iter().any(|v| &v[..] == vr) {
                (Some(pos + 4), pos + 8, 4, pos + 12)
            } else {
                (Some(pos + 4), pos + 6, 2, pos + 8)
            }
        } else {
            (None, pos + 4, 4, pos + 8)
        };
        if value_at > b.len() {
            break;
        }
        let raw = if len_width == 2 {
            rd16(len_at, be) as u32
        } else {
            rd32(len_at, be)
        };
        let value_len = (raw != 0xFFFF_FFFF).then_some(raw as usize);
        out.push(Elem {
            group,
            element,
            at: pos,
            len_at,
            len_width,
            vr_at,
            value_at,
            value_len,
            big_endian: be,
        });
        let Some(n) = value_len else { break };
        if (group, element) == (2, 0x10) {
            ts = String::from_utf8_lossy(&b[value_at..(value_at + n).min(b.len())])
                .trim_end_matches(['\0', ' '])
                .to_string();
        }
        pos = value_at + n;
    }
    out
}

/// `b` with element `e`'s value replaced by `value` (padded to even length with `pad`), its
/// length field updated and, for a meta element, the meta group length (0002,0000) fixed.
pub fn replace_value(b: &[u8], elems: &[Elem], e: &Elem, value: &[u8], pad: u8) -> Vec<u8> {
    let mut v = value.to_vec();
    if v.len() % 2 == 1 {
        v.push(pad);
    }
    let old = e.value_len.unwrap_or(0);
    let mut out = Vec::with_capacity(b.len() + v.len());
    out.extend_from_slice(&b[..e.value_at]);
    out.extend_from_slice(&v);
    out.extend_from_slice(&b[e.value_at + old..]);
    write_len(
        &mut out,
        e.len_at,
        e.len_width,
        v.len() as u32,
        e.big_endian,
    );
    if e.group == 2 {
        if let Some(gl) = elems.iter().find(|x| x.is(2, 0)) {
            let end_meta = elems
                .iter()
                .filter(|x| x.group == 2)
                .map(|x| x.value_at + x.value_len.unwrap_or(0))
                .max()
                .unwrap();
            let new_len = (end_meta + v.len()) as i64 - old as i64 - (gl.value_at + 4) as i64;
            out[gl.value_at..gl.value_at + 4].copy_from_slice(&(new_len as u32).to_le_bytes());
        }
    }
    out
}

pub fn write_len(b: &mut [u8], at: usize, width: usize, len: u32, be: bool) {
    if width == 2 {
        let x = len as u16;
        b[at..at + 2].copy_from_slice(&if be { x.to_be_bytes() } else { x.to_le_bytes() });
    } else {
        b[at..at + 4].copy_from_slice(&if be {
            len.to_be_bytes()
        } else {
            len.to_le_bytes()
        });
    }
}

/// An explicit-VR little-endian element.
pub fn explicit_le(group: u16, element: u16, vr: &[u8; 2], value: &[u8]) -> Vec<u8> {
    let mut v = Vec::new();
    v.extend_from_slice(&group.to_le_bytes());
    v.extend_from_slice(&element.to_le_bytes());
    v.extend_from_slice(vr);
    if LONG_VRS.iter().any(|x| *x == vr) {
        v.extend_from_slice(&[0, 0]);
        v.extend_from_slice(&(value.len() as u32).to_le_bytes());
    } else {
        v.extend_from_slice(&(value.len() as u16).to_le_bytes());
    }
    v.extend_from_slice(value);
    v
}

/// A Part 10 preamble and meta group for `transfer_syntax`.
pub fn dicom_meta(transfer_syntax: &str) -> Vec<u8> {
    let ui = |s: &str| {
        let mut v = s.as_bytes().to_vec();
        if v.len() % 2 == 1 {
            v.push(0);
        }
        v
    };
    let mut body = Vec::new();
    body.extend(explicit_le(2, 1, b"OB", &[0, 1]));
    body.extend(explicit_le(2, 2, b"UI", &ui("1.2.840.10008.5.1.4.1.1.4")));
    body.extend(explicit_le(2, 3, b"UI", &ui("1.2.826.0.1.3680043.8.498.1")));
    body.extend(explicit_le(2, 0x10, b"UI", &ui(transfer_syntax)));
    let mut out = vec![0u8; 128];
    out.extend_from_slice(b"DICM");
    out.extend(explicit_le(2, 0, b"UL", &(body.len() as u32).to_le_bytes()));
    out.extend(body);
    out
}

/// `depth` nested sequences (each one item of undefined length) after the meta group, with
/// (`closed`) or without their delimiters, then a tiny 1x1 image.
pub fn deep_nesting(depth: usize, closed: bool, defined_lengths: bool) -> Vec<u8> {
    let mut out = dicom_meta("1.2.840.10008.1.2.1");
    out.extend(explicit_le(8, 0x60, b"CS", b"MR"));
    if defined_lengths {
        // Exact lengths, outermost first: level i (1 = innermost) is an SQ of one item holding
        // level i-1; level 0 is one short string element.
        let base = explicit_le(8, 0x103E, b"LO", b"deep");
        let mut sizes = vec![base.len()]; // sizes[i] = bytes of level i
        for i in 1..=depth {
            sizes.push(12 + 8 + sizes[i - 1]);
        }
        for i in (1..=depth).rev() {
            out.extend_from_slice(&[0x08, 0x00, 0x15, 0x11, b'S', b'Q', 0, 0]);
            out.extend_from_slice(&((8 + sizes[i - 1]) as u32).to_le_bytes());
            out.extend_from_slice(&[0xFE, 0xFF, 0x00, 0xE0]);
            out.extend_from_slice(&(sizes[i - 1] as u32).to_le_bytes());
            if !closed && i == 1 {
                break; // the innermost item claims bytes that are not there
            }
        }
        if closed {
            out.extend(base);
        }
    } else {
        for _ in 0..depth {
            out.extend_from_slice(&[
                0x08, 0x00, 0x15, 0x11, b'S', b'Q', 0, 0, 0xFF, 0xFF, 0xFF, 0xFF,
            ]);
            out.extend_from_slice(&[0xFE, 0xFF, 0x00, 0xE0, 0xFF, 0xFF, 0xFF, 0xFF]);
        }
        if closed {
            for _ in 0..depth {
                out.extend_from_slice(&[0xFE, 0xFF, 0x0D, 0xE0, 0, 0, 0, 0]); // item delimiter
                out.extend_from_slice(&[0xFE, 0xFF, 0xDD, 0xE0, 0, 0, 0, 0]); // sequence delimiter
            }
        }
    }
    out.extend(explicit_le(
        0x20,
        0x0E,
        b"UI",
        b"1.2.826.0.1.3680043.8.498.2\0",
    ));
    out.extend(explicit_le(0x28, 2, b"US", &1u16.to_le_bytes()));
    out.extend(explicit_le(0x28, 4, b"CS", b"MONOCHROME2 "));
    out.extend(explicit_le(0x28, 0x10, b"US", &1u16.to_le_bytes()));
    out.extend(explicit_le(0x28, 0x11, b"US", &1u16.to_le_bytes()));
    out.extend(explicit_le(0x28, 0x100, b"US", &16u16.to_le_bytes()));
    out.extend(explicit_le(0x28, 0x101, b"US", &16u16.to_le_bytes()));
    out.extend(explicit_le(0x28, 0x102, b"US", &15u16.to_le_bytes()));
    out.extend(explicit_le(0x28, 0x103, b"US", &0u16.to_le_bytes()));
    out.extend(explicit_le(0x7FE0, 0x10, b"OW", &[7, 0]));
    out
}

// ---------------------------------------------------------------------------------------------
// Running one case

/// What one process did.
#[derive(Debug)]
pub struct Outcome {
    pub code: Option<i32>,
    pub timed_out: bool,
    pub elapsed: Duration,
    /// Peak resident set (VmHWM) seen while polling, in KiB.
    pub peak_rss_kib: u64,
    pub stdout: String,
    pub stderr: String,
    /// Paths (relative to the watched root) created outside the allowed folder.
    pub escaped: Vec<String>,
}

/// Every path below `root` (not following symlinks), relative.
pub fn tree(root: &Path) -> BTreeSet<String> {
    fn walk(base: &Path, d: &Path, out: &mut BTreeSet<String>) {
        let Ok(rd) = std::fs::read_dir(d) else { return };
        for e in rd.flatten() {
            let p = e.path();
            out.insert(
                p.strip_prefix(base)
                    .unwrap_or(&p)
                    .to_string_lossy()
                    .into_owned(),
            );
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                walk(base, &p, out);
            }
        }
    }
    let mut out = BTreeSet::new();
    walk(root, root, &mut out);
    out
}

fn vm_hwm_kib(pid: u32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
}

/// Runs `cmd` with a deadline (killed when it expires), polling its peak memory, with stdout
/// and stderr into files under `logs`; every path new under `root` must lie under `allowed`
/// (relative to `root`).
pub fn run_watched(
    mut cmd: Command,
    root: &Path,
    allowed: &str,
    logs: &Path,
    deadline: Duration,
) -> Outcome {
    let before = tree(root);
    std::fs::create_dir_all(logs).unwrap();
    let (out_path, err_path) = (logs.join("stdout"), logs.join("stderr"));
    cmd.stdin(Stdio::null())
        .stdout(std::fs::File::create(&out_path).unwrap())
        .stderr(std::fs::File::create(&err_path).unwrap());
    let start = Instant::now();
    let mut child = cmd.spawn().expect("spawn mindscan");
    let pid = child.id();
    let mut peak = 0;
    let mut timed_out = false;
    let status = loop {
        if let Some(k) = vm_hwm_kib(pid) {
            peak = peak.max(k);
        }
        if let Some(s) = child.try_wait().expect("wait") {
            break s;
        }
        if start.elapsed() > deadline {
            timed_out = true;
            let _ = child.kill();
            break child.wait().expect("wait after kill");
        }
        std::thread::sleep(Duration::from_millis(3));
    };
    let elapsed = start.elapsed();
    let read =
        |p: &PathBuf| String::from_utf8_lossy(&std::fs::read(p).unwrap_or_default()).into_owned();
    let after = tree(root);
    let prefix = format!("{allowed}/");
    let escaped = after
        .difference(&before)
        .filter(|p| p.as_str() != allowed && !p.starts_with(&prefix))
        .cloned()
        .collect();
    Outcome {
        code: status.code(),
        timed_out,
        elapsed,
        peak_rss_kib: peak,
        stdout: read(&out_path),
        stderr: read(&err_path),
        escaped,
    }
}

/// The part of a file name an error message must show: its longest run of printable
/// characters (names with newlines or backslashes may be printed escaped).
pub fn printable_core(name: &str) -> String {
    name.split(|c: char| c.is_control() || c == '\\' || c == '"')
        .max_by_key(|s| s.len())
        .unwrap_or("")
        .to_string()
}
