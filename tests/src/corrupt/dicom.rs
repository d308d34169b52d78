//! A minimal walk over a DICOM file's top-level elements (where each tag, VR, length and value
//! lies), edits that keep the rest of the file intact, and hand-built files (meta group, deep
//! nesting).

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
