//! NIfTI-1/2 header layouts and the named header overwrites of the corpus.

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
