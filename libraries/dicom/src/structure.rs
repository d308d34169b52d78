//! A walk over a file's element structure that builds nothing: every claimed length is checked
//! against what the file (or the enclosing item) holds, and sequence nesting is bounded, before
//! dicom-rs sees the file. dicom-rs recurses once per nested sequence (10,000 levels overflow
//! the stack and abort the process) and allocates what a length claims (an element claiming
//! 0xFFFFFFF0 bytes makes it touch 4 GB before failing); here both are a clear error instead.

use std::io::{BufReader, Read, Seek, SeekFrom};
use std::path::Path;

use dicom_core::dictionary::DataDictionary;
use dicom_core::{Tag, VR};
use dicom_dictionary_std::StandardDataDictionary;

/// Deepest sequence nesting accepted. Real files nest a handful of levels (enhanced
/// multi-frame: 3 or 4).
pub(crate) const MAX_DEPTH: usize = 64;

const UNDEFINED: u32 = 0xFFFF_FFFF;
const ITEM: Tag = Tag(0xFFFE, 0xE000);
const ITEM_END: Tag = Tag(0xFFFE, 0xE00D);
const SEQUENCE_END: Tag = Tag(0xFFFE, 0xE0DD);

/// How the data set after the file meta group is encoded.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Encoding {
    pub explicit_vr: bool,
    pub big_endian: bool,
}

impl Encoding {
    /// The encoding of a transfer syntax UID, or `None` for those this walk cannot follow
    /// (deflated data sets, whose inflated size is bounded elsewhere).
    pub(crate) fn of(ts: &str) -> Option<Encoding> {
        match ts.trim_end_matches('\0').trim() {
            "1.2.840.10008.1.2" => Some(Encoding {
                explicit_vr: false,
                big_endian: false,
            }),
            "1.2.840.10008.1.2.2" => Some(Encoding {
                explicit_vr: true,
                big_endian: true,
            }),
            "1.2.840.10008.1.2.1.99" => None,
            _ => Some(Encoding {
                explicit_vr: true,
                big_endian: false,
            }),
        }
    }
}

/// One open container: a sequence or an item, ending at a byte offset or at a delimiter.
struct Open {
    end: Option<u64>,
}

struct Walker<R> {
    r: R,
    pos: u64,
    len: u64,
}

impl<R: Read + Seek> Walker<R> {
    fn bytes<const N: usize>(&mut self) -> Result<[u8; N], String> {
        let mut b = [0u8; N];
        self.r
            .read_exact(&mut b)
            .map_err(|_| format!("truncated element header at byte {}", self.pos))?;
        self.pos += N as u64;
        Ok(b)
    }
    fn skip(&mut self, n: u64) -> Result<(), String> {
        // `seek_relative` keeps a BufReader's buffer: a plain seek drops it, which cost one
        // lseek and one read per element (360 system calls per file).
        self.r.seek_relative(n as i64).map_err(|e| e.to_string())?;
        self.pos += n;
        Ok(())
    }
}

fn u16_of(b: [u8; 2], be: bool) -> u16 {
    if be {
        u16::from_be_bytes(b)
    } else {
        u16::from_le_bytes(b)
    }
}
fn u32_of(b: [u8; 4], be: bool) -> u32 {
    if be {
        u32::from_be_bytes(b)
    } else {
        u32::from_le_bytes(b)
    }
}

/// Whether a VR's length field is 4 bytes (after 2 reserved bytes) in explicit VR. Only the
/// VRs PS3.5 table 7.1-2 lists have a 2-byte length; any other, unknown or damaged, is read as
/// the standard says a future VR is (PS3.5 7.1.2: the 4-byte form), which is also how dicom-rs
/// reads it, so the length it will allocate for is the one checked here.
pub(crate) fn long_length(vr: [u8; 2]) -> bool {
    !matches!(
        &vr,
        b"AE"
            | b"AS"
            | b"AT"
            | b"CS"
            | b"DA"
            | b"DS"
            | b"DT"
            | b"FL"
            | b"FD"
            | b"IS"
            | b"LO"
            | b"LT"
            | b"PN"
            | b"SH"
            | b"SL"
            | b"SS"
            | b"ST"
            | b"TM"
            | b"UI"
            | b"UL"
            | b"US"
    )
}

/// Size of one value of a binary VR whose values have a fixed size (`None` for text, bytes
/// and sequences): from the explicit VR, or the dictionary's in implicit VR.
fn value_size(vr: Option<[u8; 2]>, tag: Tag) -> Option<u64> {
    let vr = match vr {
        Some(v) => v,
        None => {
            let e = StandardDataDictionary.by_tag(tag)?;
            let name = e.vr.relaxed().to_string();
            let b = name.as_bytes();
            [*b.first()?, *b.get(1)?]
        }
    };
    match &vr {
        b"US" | b"SS" | b"OW" => Some(2),
        b"AT" | b"FL" | b"OF" | b"OL" | b"SL" | b"UL" => Some(4),
        b"FD" | b"OD" | b"OV" | b"SV" | b"UV" => Some(8),
        _ => None,
    }
}

fn is_sequence_in_dictionary(tag: Tag) -> bool {
    StandardDataDictionary
        .by_tag(tag)
        .is_some_and(|e| e.vr.relaxed() == VR::SQ)
}

/// Checks a Part 10 file (preamble + `DICM`, or `DICM` first): the file meta group, always
/// explicit VR little endian, then the data set in the transfer syntax it names.
pub(crate) fn check_part10(path: &Path, head: &[u8], header_only: bool) -> Result<Walk, String> {
    let meta_start: u64 = if head.len() >= 132 && &head[128..132] == b"DICM" {
        132
    } else {
        4
    };
    let f = std::fs::File::open(path).map_err(|e| e.to_string())?;
    let len = f.metadata().map_err(|e| e.to_string())?.len();
    let mut r = BufReader::with_capacity(8192, f);
    r.seek(SeekFrom::Start(meta_start))
        .map_err(|e| e.to_string())?;
    let mut w = Walker {
        r,
        pos: meta_start,
        len,
    };
    let mut ts = String::new();
    // (0002,0000)'s value and where the elements it counts start.
    let mut group_length: Option<(u64, u64)> = None;
    // Meta elements until the first one of another group.
    while w.len - w.pos >= 8 {
        let group = u16::from_le_bytes(w.bytes::<2>()?);
        if group != 0x0002 {
            w.r.seek_relative(-2).map_err(|e| e.to_string())?;
            w.pos -= 2;
            break;
        }
        let element = u16::from_le_bytes(w.bytes::<2>()?);
        let vr = w.bytes::<2>()?;
        let length = if long_length(vr) {
            w.bytes::<2>()?;
            u64::from(u32::from_le_bytes(w.bytes::<4>()?))
        } else {
            u64::from(u16::from_le_bytes(w.bytes::<2>()?))
        };
        if length > w.len - w.pos {
            return Err(format!(
                "file meta element (0002,{element:04X}) claims {length} bytes, but only {} remain in the file",
                w.len - w.pos
            ));
        }
        if element == 0x0000 && length == 4 {
            let g = u64::from(u32::from_le_bytes(w.bytes::<4>()?));
            group_length = Some((g, w.pos));
            continue;
        }
        if element == 0x0010 && length <= 64 {
            let mut v = vec![0u8; length as usize];
            w.r.read_exact(&mut v).map_err(|e| e.to_string())?;
            w.pos += length;
            ts = String::from_utf8_lossy(&v).into_owned();
        } else {
            w.skip(length)?;
        }
    }
    // dicom-rs reads meta elements until the group length is used up; this walk until the
    // group changes. A group length past the elements makes dicom-rs take data-set bytes for
    // meta and parse the data set from another offset than the one checked here. One short of
    // them is harmless for a plain data set (dicom-rs reads the rest of the meta elements as
    // data-set elements, the same bytes), but not for a deflated one (it would inflate from
    // inside the meta group). Either way the two would read different bytes: refused.
    let encoding = Encoding::of(&ts);
    if let Some((g, from)) = group_length {
        let elements = w.pos - from;
        if g > elements || (encoding.is_none() && g != elements) {
            return Err(format!(
                "file meta group length says {g} bytes, but its elements take {elements}"
            ));
        }
    }
    match encoding {
        Some(enc) => check(w, enc, header_only),
        None => check_deflated(w, header_only),
    }
}

/// Largest inflated data set of a deflated file accepted (deflate is used for small objects:
/// structured reports, presentation states; a real image here is a few megabytes).
const MAX_INFLATED: u64 = 512 << 20;

/// The data set of a deflated transfer syntax, inflated (up to [`MAX_INFLATED`]) and walked
/// like any explicit little-endian one: its lengths are as able to lie as those of a plain
/// file, and dicom-rs allocates what they claim once it has inflated them. No pixel span: its
/// offsets are in the inflated stream, not in the file.
fn check_deflated<R: Read + Seek>(w: Walker<R>, header_only: bool) -> Result<Walk, String> {
    let mut inflated = Vec::new();
    flate2::read::DeflateDecoder::new(w.r)
        .take(MAX_INFLATED + 1)
        .read_to_end(&mut inflated)
        .map_err(|e| format!("deflated data set cannot be inflated: {e}"))?;
    if inflated.len() as u64 > MAX_INFLATED {
        return Err(format!(
            "deflated data set inflates past {} MiB",
            MAX_INFLATED >> 20
        ));
    }
    let len = inflated.len() as u64;
    let enc = Encoding {
        explicit_vr: true,
        big_endian: false,
    };
    let walker = Walker {
        r: std::io::Cursor::new(inflated),
        pos: 0,
        len,
    };
    check(walker, enc, header_only)
        .map(|w| Walk {
            pixel: None,
            header_end: w.header_end,
        })
        .map_err(|e| format!("{e} (in the inflated data set)"))
}

/// Checks the structure of the data set that starts at byte `start` of `path`.
pub(crate) fn check_file(
    path: &Path,
    start: u64,
    enc: Encoding,
    header_only: bool,
) -> Result<Walk, String> {
    let f = std::fs::File::open(path).map_err(|e| e.to_string())?;
    let len = f.metadata().map_err(|e| e.to_string())?.len();
    let mut r = BufReader::with_capacity(8192, f);
    r.seek(SeekFrom::Start(start)).map_err(|e| e.to_string())?;
    check(Walker { r, pos: start, len }, enc, header_only)
}

/// What the walk found: where native pixel data lie, and where the header ends (the offset of
/// the top-level Pixel Data element, or the end of the data set), so the header pass reads
/// only those bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Walk {
    pub pixel: Option<PixelSpan>,
    pub header_end: u64,
}

/// Where a file's native (defined-length) top-level Pixel Data value lies: byte offset and
/// length, so it can be read straight into a volume.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PixelSpan {
    pub offset: u64,
    pub len: u64,
}

/// `header_only`: skip the top-level encapsulated Pixel Data and what follows it, as the header pass
/// reads no pixels.
/// Returns where a defined-length top-level Pixel Data value lies, when there is one.
fn check<R: Read + Seek>(
    mut w: Walker<R>,
    enc: Encoding,
    header_only: bool,
) -> Result<Walk, String> {
    let mut span = None;
    let mut header_end = None;
    let be = enc.big_endian;
    let mut open: Vec<Open> = Vec::new();
    // Nesting level of open encapsulated pixel data (0: none): its items are fragments.
    let mut pixel_level = 0;
    loop {
        if open.len() < pixel_level {
            pixel_level = 0;
        }
        // Close the containers that end here.
        while let Some(o) = open.last() {
            match o.end {
                Some(end) if w.pos >= end => {
                    if w.pos > end {
                        return Err(format!(
                            "an element runs past the end of its sequence or item (byte {end})"
                        ));
                    }
                    open.pop();
                }
                _ => break,
            }
        }
        if w.pos > w.len {
            return Err(format!(
                "an element runs past the end of the file ({} bytes)",
                w.len
            ));
        }
        if w.pos == w.len {
            // Undefined-length containers left open at the end of the file: dicom-rs reports
            // those itself; nothing was claimed beyond the file.
            return Ok(Walk {
                pixel: span,
                header_end: header_end.unwrap_or(w.len),
            });
        }
        if w.len - w.pos < 8 {
            return Err(format!(
                "truncated element header at byte {} of {}",
                w.pos, w.len
            ));
        }
        let at = w.pos;
        let group = u16_of(w.bytes::<2>()?, be);
        let element = u16_of(w.bytes::<2>()?, be);
        let tag = Tag(group, element);
        let (length, vr) = if group == 0xFFFE {
            (u32_of(w.bytes::<4>()?, be), None)
        } else if enc.explicit_vr {
            let vr = w.bytes::<2>()?;
            if long_length(vr) {
                w.bytes::<2>()?;
                (u32_of(w.bytes::<4>()?, be), Some(vr))
            } else {
                (u32::from(u16_of(w.bytes::<2>()?, be)), Some(vr))
            }
        } else {
            (u32_of(w.bytes::<4>()?, be), None)
        };
        let remaining = w.len - w.pos;
        let container_end = open.iter().rev().find_map(|o| o.end).unwrap_or(w.len);
        let room = container_end.saturating_sub(w.pos).min(remaining);
        match tag {
            ITEM_END | SEQUENCE_END => {
                if open.pop().is_none() {
                    return Err(format!(
                        "delimiter ({group:04X},{element:04X}) outside any sequence at byte {at}"
                    ));
                }
                continue;
            }
            ITEM => {
                let end = if length == UNDEFINED {
                    None
                } else if u64::from(length) > room {
                    return Err(format!(
                        "an item at byte {at} claims {length} bytes, but only {room} remain"
                    ));
                } else {
                    Some(w.pos + u64::from(length))
                };
                // Items inside pixel data (fragments) hold bytes, not elements.
                if pixel_level != 0 && pixel_level == open.len() {
                    if length == UNDEFINED {
                        return Err(format!(
                            "a pixel data fragment at byte {at} has an undefined length"
                        ));
                    }
                    w.skip(u64::from(length))?;
                    continue;
                }
                open.push(Open { end });
                depth_ok(&open, at)?;
                continue;
            }
            _ => {}
        }
        // Pixel Data is read by size, not value by value, and some writers leave 8-bit data
        // of an odd pixel count unpadded.
        if length != UNDEFINED
            && tag != Tag(0x7FE0, 0x0010)
            && let Some(size) = value_size(vr, tag)
            && u64::from(length) % size != 0
        {
            // dicom-rs reads whole values and leaves the rest, so every element after this
            // one would be read from the wrong offset (and a garbage length allocated).
            return Err(format!(
                "element ({group:04X},{element:04X}) at byte {at} has length {length}, not a multiple of its {size}-byte values"
            ));
        }
        let sequence = match vr {
            Some(v) => &v == b"SQ" || (length == UNDEFINED && &v == b"UN"),
            None => length == UNDEFINED || is_sequence_in_dictionary(tag),
        };
        let pixel = tag == Tag(0x7FE0, 0x0010) && open.is_empty();
        if pixel {
            header_end.get_or_insert(at);
        }
        if pixel && length != UNDEFINED {
            span = Some(PixelSpan {
                offset: w.pos,
                len: u64::from(length),
            });
        }
        // The header pass skips encapsulated pixel data (its fragments are walked when the file
        // is decoded); after native pixel data it goes on, as a cut in what follows (trailing
        // padding, usually nothing) is still a damaged file.
        if pixel && header_only && length == UNDEFINED {
            return Ok(Walk {
                pixel: span,
                header_end: at,
            });
        }
        if length == UNDEFINED && (sequence || pixel) {
            open.push(Open { end: None });
            if pixel {
                pixel_level = open.len();
            }
            depth_ok(&open, at)?;
            continue;
        }
        if length == UNDEFINED {
            return Err(format!(
                "element ({group:04X},{element:04X}) at byte {at} has an undefined length but is not a sequence"
            ));
        }
        if u64::from(length) > room {
            return Err(format!(
                "element ({group:04X},{element:04X}) at byte {at} claims {length} bytes, but only {room} remain in the file{}",
                if room < remaining {
                    " (or its item)"
                } else {
                    " (a truncated file, or a damaged length)"
                }
            ));
        }
        if sequence {
            open.push(Open {
                end: Some(w.pos + u64::from(length)),
            });
            depth_ok(&open, at)?;
        } else {
            w.skip(u64::from(length))?;
        }
    }
}

fn depth_ok(open: &[Open], at: u64) -> Result<(), String> {
    if open.len() > 2 * MAX_DEPTH {
        return Err(format!(
            "sequences nested deeper than {MAX_DEPTH} levels (at byte {at})"
        ));
    }
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::io::Cursor;

    fn walk(bytes: Vec<u8>, explicit: bool) -> Result<(), String> {
        let len = bytes.len() as u64;
        check(
            Walker {
                r: Cursor::new(bytes),
                pos: 0,
                len,
            },
            Encoding {
                explicit_vr: explicit,
                big_endian: false,
            },
            false,
        )
        .map(|_| ())
    }

    /// One explicit VR little-endian element (shared with the `dataset` tests).
    pub(crate) fn explicit(group: u16, element: u16, vr: &[u8; 2], value: &[u8]) -> Vec<u8> {
        let mut b = Vec::new();
        b.extend_from_slice(&group.to_le_bytes());
        b.extend_from_slice(&element.to_le_bytes());
        b.extend_from_slice(vr);
        if long_length(*vr) {
            b.extend_from_slice(&[0, 0]);
            b.extend_from_slice(&(value.len() as u32).to_le_bytes());
        } else {
            b.extend_from_slice(&(value.len() as u16).to_le_bytes());
        }
        b.extend_from_slice(value);
        b
    }

    /// `depth` sequences of undefined length, each with one undefined-length item.
    fn nested(depth: usize, closed: bool) -> Vec<u8> {
        let mut b = Vec::new();
        for _ in 0..depth {
            b.extend_from_slice(&[0x08, 0x00, 0x15, 0x11, b'S', b'Q', 0, 0]);
            b.extend_from_slice(&UNDEFINED.to_le_bytes());
            b.extend_from_slice(&[0xFE, 0xFF, 0x00, 0xE0]);
            b.extend_from_slice(&UNDEFINED.to_le_bytes());
        }
        if closed {
            for _ in 0..depth {
                b.extend_from_slice(&[0xFE, 0xFF, 0x0D, 0xE0, 0, 0, 0, 0]);
                b.extend_from_slice(&[0xFE, 0xFF, 0xDD, 0xE0, 0, 0, 0, 0]);
            }
        }
        b
    }

    #[test]
    fn plain_elements_pass() {
        let mut b = explicit(0x0010, 0x0010, b"PN", b"Doe^J ");
        b.extend(explicit(0x0028, 0x0010, b"US", &64u16.to_le_bytes()));
        b.extend(explicit(0x7FE0, 0x0010, b"OW", &[0u8; 16]));
        assert_eq!(walk(b.clone(), true), Ok(()));
        // The pixel data's place is found for the direct read.
        let len = b.len() as u64;
        let span = check(
            Walker {
                r: Cursor::new(b),
                pos: 0,
                len,
            },
            Encoding {
                explicit_vr: true,
                big_endian: false,
            },
            true,
        );
        assert_eq!(
            span,
            Ok(Walk {
                pixel: Some(PixelSpan {
                    offset: len - 16,
                    len: 16
                }),
                // The header ends where the Pixel Data element (12-byte header) starts.
                header_end: len - 16 - 12,
            })
        );
    }

    #[test]
    fn lying_lengths_are_refused_before_any_allocation() {
        let mut b = explicit(0x0010, 0x0010, b"PN", b"Doe^J ");
        b.extend_from_slice(&[0x09, 0x00, 0x10, 0x10, b'O', b'B', 0, 0]);
        b.extend_from_slice(&0xFFFF_FFF0u32.to_le_bytes());
        b.extend_from_slice(&[0u8; 32]);
        let e = walk(b, true).unwrap_err();
        assert!(e.contains("(0009,1010)") && e.contains("4294967280"), "{e}");
        // Implicit VR: a PatientName claiming 4 GB.
        let mut b = vec![0x10, 0x00, 0x10, 0x00];
        b.extend_from_slice(&0xFFFF_FFF0u32.to_le_bytes());
        b.extend_from_slice(b"Doe^J ");
        assert!(walk(b, false).unwrap_err().contains("claims"));
    }

    #[test]
    fn binary_values_of_a_partial_size_are_refused() {
        // Found by fuzzing: CS edited to AT on a 10-byte value; dicom-rs reads 2 tags and goes
        // on 2 bytes early, onto a length of 1.1 GB.
        let mut b = explicit(0x0008, 0x0005, b"AT", b"ISO_IR 194");
        b.extend(explicit(0x0010, 0x0010, b"PN", b"Doe^J "));
        let e = walk(b, true).unwrap_err();
        assert!(
            e.contains("(0008,0005)") && e.contains("4-byte values"),
            "{e}"
        );
        // Implicit VR: the dictionary's VR (Rows is US) decides.
        let mut b = vec![0x28, 0x00, 0x10, 0x00, 3, 0, 0, 0, 1, 2, 3];
        assert!(
            walk(b.clone(), false)
                .unwrap_err()
                .contains("2-byte values")
        );
        b[4] = 2;
        b.pop();
        assert_eq!(walk(b, false), Ok(()));
        assert_eq!(
            walk(explicit(0x0028, 0x0010, b"US", &[64, 0]), true),
            Ok(())
        );
    }

    #[test]
    fn a_fragment_of_undefined_length_is_refused() {
        // Found by fuzzing: encapsulated Pixel Data whose fragment claims 0xFFFFFFFF bytes.
        let mut b = vec![0xE0, 0x7F, 0x10, 0x00, b'O', b'B', 0, 0];
        b.extend_from_slice(&UNDEFINED.to_le_bytes());
        b.extend_from_slice(&[0xFE, 0xFF, 0x00, 0xE0]);
        b.extend_from_slice(&UNDEFINED.to_le_bytes());
        b.extend_from_slice(&[0u8; 16]);
        let e = walk(b, true).unwrap_err();
        assert!(e.contains("undefined length"), "{e}");
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_stack_overflow() {
        assert_eq!(walk(nested(10, true), true), Ok(()));
        for closed in [true, false] {
            let e = walk(nested(10_000, closed), true).unwrap_err();
            assert!(e.contains("nested deeper"), "{e}");
        }
    }
}
