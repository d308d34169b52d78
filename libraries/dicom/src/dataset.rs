//! A DICOM data set read straight from its bytes for the header pass: each element keeps a
//! slice of one buffer and is decoded only when asked for. dicom-rs builds an in-memory object
//! (a B-tree per item, every value decoded and allocated), which was half the time of reading
//! a Philips series' headers; ingestion reads a few dozen tags of each file.
//!
//! Lengths and nesting were checked by the structure walk (`structure`) before this runs; the
//! reader still bounds every slice, so a file that slips past it is an error, not a panic.

use std::borrow::Cow;

use dicom_core::Tag;
use dicom_core::dictionary::DataDictionary;
use dicom_dictionary_std::StandardDataDictionary;

use super::structure::{Encoding, MAX_DEPTH, long_length};

const UNDEFINED: u32 = 0xFFFF_FFFF;
const ITEM: Tag = Tag(0xFFFE, 0xE000);
const ITEM_END: Tag = Tag(0xFFFE, 0xE00D);
const SEQUENCE_END: Tag = Tag(0xFFFE, 0xE0DD);
pub(crate) const PIXEL_DATA: Tag = Tag(0x7FE0, 0x0010);

/// One data set (the file's, or an item of a sequence), elements in tag order.
#[derive(Debug, Default)]
pub(crate) struct Obj<'a> {
    elems: Vec<Elem<'a>>,
}

/// One element: its tag, VR (from the file, or the dictionary in implicit VR; `UN` for
/// private tags there) and value bytes, or its items when it is a sequence.
#[derive(Debug)]
pub(crate) struct Elem<'a> {
    tag: Tag,
    vr: [u8; 2],
    bytes: &'a [u8],
    items: Option<Vec<Obj<'a>>>,
    big_endian: bool,
}

impl<'a> Obj<'a> {
    pub(crate) fn get(&self, tag: Tag) -> Option<&Elem<'a>> {
        self.elems
            .binary_search_by_key(&tag, |e| e.tag)
            .ok()
            .map(|i| &self.elems[i])
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = &Elem<'a>> {
        self.elems.iter()
    }

    /// The element `elem` of the private block that `creator` reserved in `group`
    /// (PS3.5 7.8.1: creator (gggg,00xx) owns (gggg,xx00)–(gggg,xxFF)).
    pub(crate) fn private_element(&self, group: u16, creator: &str, elem: u8) -> Option<&Elem<'a>> {
        let from = self.elems.partition_point(|e| e.tag < Tag(group, 0x0010));
        let block = self.elems[from..]
            .iter()
            .take_while(|e| e.tag <= Tag(group, 0x00FF))
            .find(|e| e.to_str().is_some_and(|s| s == creator))?
            .tag
            .element();
        self.get(Tag(group, (block << 8) | u16::from(elem)))
    }

    /// Elements in tag order; a tag that occurs twice keeps its last value (as dicom-rs does).
    fn sorted(mut elems: Vec<Elem<'a>>) -> Obj<'a> {
        if !elems.windows(2).all(|w| w[0].tag < w[1].tag) {
            elems.reverse();
            elems.sort_by_key(|e| e.tag);
            elems.dedup_by_key(|e| e.tag);
        }
        Obj { elems }
    }
}

fn is_text(vr: &[u8; 2]) -> bool {
    matches!(
        vr,
        b"AE"
            | b"AS"
            | b"CS"
            | b"DA"
            | b"DS"
            | b"DT"
            | b"IS"
            | b"LO"
            | b"LT"
            | b"PN"
            | b"SH"
            | b"ST"
            | b"TM"
            | b"UC"
            | b"UI"
            | b"UR"
            | b"UT"
    )
}

/// Text as stored: UTF-8 when it is (ASCII is), else Latin-1 (ISO_IR 100, the common
/// single-byte set), so a non-ASCII name never fails the element.
fn text(bytes: &[u8]) -> Cow<'_, str> {
    match std::str::from_utf8(bytes) {
        Ok(s) => Cow::Borrowed(s),
        Err(_) => Cow::Owned(bytes.iter().map(|&b| char::from(b)).collect()),
    }
}

/// A binary value of a fixed-size numeric VR.
#[derive(Clone, Copy)]
enum Number {
    Int(i64),
    Float(f64),
}

impl<'a> Elem<'a> {
    pub(crate) fn items(&self) -> Option<&[Obj<'a>]> {
        self.items.as_deref()
    }

    pub(crate) fn to_bytes(&self) -> &'a [u8] {
        self.bytes
    }

    /// The values of a binary numeric VR (`None` for text, bytes and sequences).
    fn numbers(&self) -> Option<Vec<Number>> {
        let be = self.big_endian;
        let chunks = |n: usize| self.bytes.chunks_exact(n);
        macro_rules! read {
            ($t:ty, $n:expr, $wrap:expr) => {
                chunks($n)
                    .map(|c| {
                        let b: [u8; $n] = c.try_into().expect("chunk size");
                        $wrap(if be {
                            <$t>::from_be_bytes(b)
                        } else {
                            <$t>::from_le_bytes(b)
                        })
                    })
                    .collect()
            };
        }
        Some(match &self.vr {
            b"US" => read!(u16, 2, |v| Number::Int(i64::from(v))),
            b"SS" => read!(i16, 2, |v| Number::Int(i64::from(v))),
            b"UL" => read!(u32, 4, |v| Number::Int(i64::from(v))),
            b"SL" => read!(i32, 4, |v| Number::Int(i64::from(v))),
            b"SV" => read!(i64, 8, Number::Int),
            b"UV" => read!(u64, 8, |v: u64| Number::Int(v as i64)),
            b"FL" | b"OF" => read!(f32, 4, |v| Number::Float(f64::from(v))),
            b"FD" | b"OD" => read!(f64, 8, Number::Float),
            _ => return None,
        })
    }

    /// Text values (text VRs, and `UN`/`OB` bytes read as text, as dcm2niix reads private
    /// strings), trailing spaces and NULs removed; binary numbers as decimal text joined with
    /// `\`. `None` for sequences.
    pub(crate) fn to_str(&self) -> Option<Cow<'a, str>> {
        if self.items.is_some() {
            return None;
        }
        if let Some(numbers) = self.numbers() {
            let parts: Vec<String> = numbers
                .iter()
                .map(|n| match n {
                    Number::Int(v) => v.to_string(),
                    Number::Float(v) => v.to_string(),
                })
                .collect();
            return Some(Cow::Owned(parts.join("\\")));
        }
        if &self.vr == b"AT" {
            let tags = self.tags()?;
            let parts: Vec<String> = tags
                .iter()
                .map(|t| format!("({:04X},{:04X})", t.group(), t.element()))
                .collect();
            return Some(Cow::Owned(parts.join("\\")));
        }
        Some(match text(self.bytes) {
            Cow::Borrowed(s) => Cow::Borrowed(s.trim_end_matches([' ', '\0'])),
            Cow::Owned(s) => Cow::Owned(s.trim_end_matches([' ', '\0']).to_string()),
        })
    }

    /// Each value as text (split on `\` for text VRs).
    pub(crate) fn to_multi_str(&self) -> Option<Vec<String>> {
        if self.numbers().is_some() || &self.vr == b"AT" {
            return Some(self.to_str()?.split('\\').map(String::from).collect());
        }
        if self.items.is_some() {
            return None;
        }
        let t = text(self.bytes);
        let t = t.trim_end_matches([' ', '\0']);
        if t.is_empty() {
            return Some(Vec::new());
        }
        Some(t.split('\\').map(String::from).collect())
    }

    /// Every value as a number: binary values, or decimal text (DS, IS, and private text).
    pub(crate) fn to_multi_float64(&self) -> Option<Vec<f64>> {
        if let Some(n) = self.numbers() {
            return Some(
                n.iter()
                    .map(|v| match *v {
                        Number::Int(i) => i as f64,
                        Number::Float(f) => f,
                    })
                    .collect(),
            );
        }
        self.parsed_text()
    }

    /// Each `\\`-separated value of a text element (or private text) parsed as `T`; `None` if
    /// one does not parse, or for binary values and sequences.
    fn parsed_text<T: std::str::FromStr>(&self) -> Option<Vec<T>> {
        if !(is_text(&self.vr) || matches!(&self.vr, b"UN" | b"OB")) || self.items.is_some() {
            return None;
        }
        let t = text(self.bytes);
        let t = t.trim_matches([' ', '\0']);
        if t.is_empty() {
            return None;
        }
        t.split('\\')
            .map(|s| s.trim_matches([' ', '\0']).parse::<T>().ok())
            .collect()
    }

    pub(crate) fn to_float64(&self) -> Option<f64> {
        self.to_multi_float64()?.first().copied()
    }

    /// Every value as an integer: binary integers, or integer text (IS, or any text that
    /// reads as one). Floating-point values are not integers here (callers round them).
    pub(crate) fn to_multi_int(&self) -> Option<Vec<i64>> {
        if let Some(n) = self.numbers() {
            return n
                .iter()
                .map(|v| match *v {
                    Number::Int(i) => Some(i),
                    Number::Float(_) => None,
                })
                .collect();
        }
        self.parsed_text()
    }

    pub(crate) fn to_int(&self) -> Option<i64> {
        self.to_multi_int()?.first().copied()
    }

    fn tags(&self) -> Option<Vec<Tag>> {
        let be = self.big_endian;
        let u16_at = |c: &[u8]| {
            if be {
                u16::from_be_bytes([c[0], c[1]])
            } else {
                u16::from_le_bytes([c[0], c[1]])
            }
        };
        Some(
            self.bytes
                .chunks_exact(4)
                .map(|c| Tag(u16_at(&c[..2]), u16_at(&c[2..])))
                .collect(),
        )
    }

    /// The first value of an AT element.
    pub(crate) fn to_tag(&self) -> Option<Tag> {
        if &self.vr != b"AT" && &self.vr != b"UN" {
            return None;
        }
        self.tags()?.first().copied()
    }
}

/// The VR of a tag in implicit VR: the dictionary's, `LO` for private creators, `UL` for
/// group lengths, `UN` for what the dictionary does not know.
fn implicit_vr(tag: Tag) -> [u8; 2] {
    if tag.element() == 0x0000 {
        return *b"UL";
    }
    if tag.group() % 2 == 1 {
        return if (0x0010..=0x00FF).contains(&tag.element()) {
            *b"LO"
        } else {
            *b"UN"
        };
    }
    match StandardDataDictionary.by_tag(tag) {
        Some(e) => {
            let name = e.vr.relaxed().to_string();
            match name.as_bytes() {
                [a, b, ..] => [*a, *b],
                _ => *b"UN",
            }
        }
        None => *b"UN",
    }
}

struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
    enc: Encoding,
}

/// Where a container ends: at a byte offset, or at its delimiter.
#[derive(Clone, Copy)]
enum End {
    At(usize),
    Delimited,
}

impl<'a> Reader<'a> {
    fn u16(&mut self) -> Result<u16, String> {
        let b = self.take(2)?;
        Ok(if self.enc.big_endian {
            u16::from_be_bytes([b[0], b[1]])
        } else {
            u16::from_le_bytes([b[0], b[1]])
        })
    }
    fn u32(&mut self) -> Result<u32, String> {
        let b = self.take(4)?;
        let b = [b[0], b[1], b[2], b[3]];
        Ok(if self.enc.big_endian {
            u32::from_be_bytes(b)
        } else {
            u32::from_le_bytes(b)
        })
    }
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|e| *e <= self.bytes.len())
            .ok_or_else(|| {
                format!(
                    "element runs past the end of the header at byte {}",
                    self.pos
                )
            })?;
        let s = &self.bytes[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    fn at_end(&self, end: End) -> bool {
        match end {
            End::At(e) => self.pos >= e,
            End::Delimited => self.pos >= self.bytes.len(),
        }
    }

    /// Elements until `end` (or an item delimiter); at the top level, until Pixel Data.
    fn data_set(&mut self, end: End, depth: usize, top: bool) -> Result<Obj<'a>, String> {
        let mut elems = Vec::new();
        while !self.at_end(end) {
            if self.bytes.len() - self.pos < 8 {
                break;
            }
            let start = self.pos;
            let group = self.u16()?;
            let element = self.u16()?;
            let tag = Tag(group, element);
            if tag == ITEM_END {
                self.u32()?;
                break;
            }
            if top && tag >= PIXEL_DATA {
                self.pos = start;
                break;
            }
            let (vr, length) = if self.enc.explicit_vr {
                let v = self.take(2)?;
                let vr = [v[0], v[1]];
                if long_length(vr) {
                    self.take(2)?;
                    (vr, self.u32()?)
                } else {
                    (vr, u32::from(self.u16()?))
                }
            } else {
                (implicit_vr(tag), self.u32()?)
            };
            let sequence =
                &vr == b"SQ" || (length == UNDEFINED && (&vr == b"UN" || !self.enc.explicit_vr));
            if sequence {
                if depth >= MAX_DEPTH {
                    return Err(format!("sequences nested deeper than {MAX_DEPTH} levels"));
                }
                let seq_end = if length == UNDEFINED {
                    End::Delimited
                } else {
                    End::At(self.pos + length as usize)
                };
                let items = self.items(seq_end, depth + 1)?;
                if let End::At(e) = seq_end {
                    self.pos = e;
                }
                elems.push(Elem {
                    tag,
                    vr: *b"SQ",
                    bytes: &[],
                    items: Some(items),
                    big_endian: self.enc.big_endian,
                });
                continue;
            }
            if length == UNDEFINED {
                return Err(format!(
                    "element ({group:04X},{element:04X}) has an undefined length but is not a sequence"
                ));
            }
            let bytes = self.take(length as usize)?;
            elems.push(Elem {
                tag,
                vr,
                bytes,
                items: None,
                big_endian: self.enc.big_endian,
            });
        }
        Ok(Obj::sorted(elems))
    }

    /// Items of a sequence until `end` or its delimiter.
    fn items(&mut self, end: End, depth: usize) -> Result<Vec<Obj<'a>>, String> {
        let mut items = Vec::new();
        while !self.at_end(end) {
            let tag = Tag(self.u16()?, self.u16()?);
            let length = self.u32()?;
            if tag == SEQUENCE_END {
                break;
            }
            if tag != ITEM {
                return Err(format!(
                    "({:04X},{:04X}) where a sequence item was expected",
                    tag.group(),
                    tag.element()
                ));
            }
            let item_end = if length == UNDEFINED {
                End::Delimited
            } else {
                End::At(self.pos + length as usize)
            };
            items.push(self.data_set(item_end, depth, false)?);
            if let End::At(e) = item_end {
                self.pos = e;
            }
        }
        Ok(items)
    }
}

/// The data set in `bytes` (which start at its first element), up to top-level Pixel Data.
pub(crate) fn parse(bytes: &[u8], enc: Encoding) -> Result<Obj<'_>, String> {
    Reader { bytes, pos: 0, enc }.data_set(End::Delimited, 0, true)
}

/// The file meta group of a Part 10 file (always explicit VR little endian), starting at
/// `start`: its elements and the offset where the data set begins.
pub(crate) fn parse_meta(bytes: &[u8], start: usize) -> Result<(Obj<'_>, usize), String> {
    let mut r = Reader {
        bytes,
        pos: start,
        enc: Encoding {
            explicit_vr: true,
            big_endian: false,
        },
    };
    let mut elems = Vec::new();
    while bytes.len() - r.pos >= 8 {
        if u16::from_le_bytes([bytes[r.pos], bytes[r.pos + 1]]) != 0x0002 {
            break;
        }
        let tag = Tag(r.u16()?, r.u16()?);
        let v = r.take(2)?;
        let vr = [v[0], v[1]];
        let length = if long_length(vr) {
            r.take(2)?;
            r.u32()?
        } else {
            u32::from(r.u16()?)
        };
        let bytes = r.take(length as usize)?;
        elems.push(Elem {
            tag,
            vr,
            bytes,
            items: None,
            big_endian: false,
        });
    }
    Ok((Obj::sorted(elems), r.pos))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::structure::tests::explicit;

    const LE: Encoding = Encoding {
        explicit_vr: true,
        big_endian: false,
    };

    #[test]
    fn values_decode_by_vr() {
        let mut b = explicit(0x0018, 0x0050, b"DS", b"1.5\\2 ");
        b.extend(explicit(0x0020, 0x0013, b"IS", b" 12 "));
        b.extend(explicit(0x0028, 0x0010, b"US", &64u16.to_le_bytes()));
        b.extend(explicit(0x0029, 0x0010, b"LO", b"SIEMENS CSA HEADER"));
        b.extend(explicit(0x0029, 0x1010, b"OB", b"\x01\x02"));
        b.extend(explicit(0x7FE0, 0x0010, b"OW", &[0u8; 4]));
        let o = parse(&b, LE).unwrap();
        assert_eq!(
            o.get(Tag(0x0018, 0x0050)).unwrap().to_multi_float64(),
            Some(vec![1.5, 2.0])
        );
        assert_eq!(o.get(Tag(0x0020, 0x0013)).unwrap().to_int(), Some(12));
        assert_eq!(o.get(Tag(0x0028, 0x0010)).unwrap().to_int(), Some(64));
        assert_eq!(o.get(Tag(0x0028, 0x0010)).unwrap().to_str().unwrap(), "64");
        let csa = o
            .private_element(0x0029, "SIEMENS CSA HEADER", 0x10)
            .unwrap();
        assert_eq!(csa.to_bytes(), b"\x01\x02");
        assert!(o.private_element(0x0029, "OTHER", 0x10).is_none());
        assert!(o.get(PIXEL_DATA).is_none(), "stops before Pixel Data");
    }

    #[test]
    fn sequences_of_both_length_kinds() {
        // An undefined-length sequence with one undefined-length item, then a defined one.
        let inner = explicit(0x0020, 0x0032, b"DS", b"1\\2\\3 ");
        let mut b = Vec::new();
        b.extend_from_slice(&[0x08, 0x00, 0x15, 0x11, b'S', b'Q', 0, 0]);
        b.extend_from_slice(&UNDEFINED.to_le_bytes());
        b.extend_from_slice(&[0xFE, 0xFF, 0x00, 0xE0]);
        b.extend_from_slice(&UNDEFINED.to_le_bytes());
        b.extend_from_slice(&inner);
        b.extend_from_slice(&[0xFE, 0xFF, 0x0D, 0xE0, 0, 0, 0, 0]);
        b.extend_from_slice(&[0xFE, 0xFF, 0xDD, 0xE0, 0, 0, 0, 0]);
        let mut item = vec![0xFE, 0xFF, 0x00, 0xE0];
        item.extend_from_slice(&(inner.len() as u32).to_le_bytes());
        item.extend_from_slice(&inner);
        b.extend(explicit(0x5200, 0x9230, b"SQ", &item));
        b.extend(explicit(0x0028, 0x0010, b"US", &7u16.to_le_bytes()));
        let o = parse(&b, LE).unwrap();
        for t in [Tag(0x0008, 0x1115), Tag(0x5200, 0x9230)] {
            let items = o.get(t).unwrap().items().unwrap();
            assert_eq!(items.len(), 1);
            assert_eq!(
                items[0]
                    .get(Tag(0x0020, 0x0032))
                    .unwrap()
                    .to_multi_float64(),
                Some(vec![1.0, 2.0, 3.0])
            );
        }
        // Out of tag order in the file: found all the same (the last one wins).
        assert_eq!(o.get(Tag(0x0028, 0x0010)).unwrap().to_int(), Some(7));
    }

    #[test]
    fn damaged_lengths_are_errors_not_panics() {
        let mut b = explicit(0x0010, 0x0010, b"PN", b"Doe^J ");
        b.extend_from_slice(&[0x10, 0x00, 0x20, 0x00, b'L', b'O', 0xFF, 0x00]);
        assert!(parse(&b, LE).is_err());
    }
}

/// The reader against dicom-rs on every DICOM file of the repository's test data: the same
/// elements at every level, the same text and the same numbers.
#[cfg(test)]
mod parity {
    use super::*;
    use crate::header::{OpenedHeader, open_header};
    use dicom_core::VR;
    use dicom_object::{InMemDicomObject, OpenFileOptions};
    use std::path::{Path, PathBuf};

    fn files(dir: &Path, out: &mut Vec<PathBuf>) {
        for e in std::fs::read_dir(dir).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                files(&p, out);
            } else {
                out.push(p);
            }
        }
    }

    fn compare(theirs: &InMemDicomObject, ours: &Obj, at: &str) -> usize {
        let mut checked = 0;
        for e in theirs.iter() {
            let tag = e.header().tag;
            let here = format!("{at} ({:04X},{:04X})", tag.group(), tag.element());
            let mine = ours
                .get(tag)
                .unwrap_or_else(|| panic!("{here}: missing from the reader"));
            if let Some(items) = e.items() {
                let my_items = mine
                    .items()
                    .unwrap_or_else(|| panic!("{here}: not a sequence"));
                assert_eq!(items.len(), my_items.len(), "{here}: item count");
                for (i, (a, b)) in items.iter().zip(my_items).enumerate() {
                    checked += compare(a, b, &format!("{here}[{i}]"));
                }
                continue;
            }
            let vr = e.vr();
            if matches!(vr, VR::OB | VR::UN | VR::OW) {
                assert_eq!(
                    e.to_bytes().unwrap().as_ref(),
                    mine.to_bytes(),
                    "{here}: bytes"
                );
            } else if matches!(
                vr,
                VR::US | VR::SS | VR::UL | VR::SL | VR::FL | VR::FD | VR::DS | VR::IS
            ) {
                let a = e.to_multi_float64().ok();
                assert_eq!(a, mine.to_multi_float64(), "{here}: numbers");
            } else if vr != VR::AT && vr != VR::SQ {
                let a = e.to_str().unwrap();
                let trim = |s: &str| {
                    s.trim_matches(|c: char| c == '\0' || c.is_whitespace())
                        .to_string()
                };
                assert_eq!(trim(&a), trim(&mine.to_str().unwrap()), "{here}: text");
            }
            checked += 1;
        }
        checked
    }

    #[test]
    fn reads_what_dicom_rs_reads() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/data/dicom");
        let mut all = Vec::new();
        files(&root, &mut all);
        all.sort();
        let (mut n_files, mut n_elems) = (0, 0);
        for p in all {
            let Ok(OpenedHeader::Dicom(h)) = open_header(&p) else {
                continue;
            };
            if h.meta.transfer_syntax.starts_with("1.2.840.10008.1.2.1.99") {
                continue; // dicom-rs reads deflated files here only with a feature we leave off
            }
            let Ok(theirs) = OpenFileOptions::new()
                .read_until(dicom_dictionary_std::tags::PIXEL_DATA)
                .open_file(&p)
            else {
                continue;
            };
            let ours = h.data_set().unwrap();
            n_elems += compare(&theirs, &ours, &p.display().to_string());
            n_files += 1;
        }
        eprintln!("compared {n_elems} elements of {n_files} files");
        assert!(n_files > 500, "only {n_files} DICOM files compared");
        assert!(n_elems > 50_000, "only {n_elems} elements compared");
    }
}
