//! The image size a compressed frame declares in its own stream (JPEG SOF, JPEG-LS SOF55,
//! JPEG 2000 SIZ), so a header that disagrees with it is refused before a decoder is asked to
//! fill a Rows × Columns buffer from a stream of another size.

/// Width, height and component count declared by the stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct StreamSize {
    pub width: u32,
    pub height: u32,
    pub components: u32,
}

/// The size declared at the start of `fragment`, or `None` when the stream is not one of the
/// marker-coded formats or its size segment lies beyond the first fragment.
pub(crate) fn declared_size(fragment: &[u8]) -> Option<StreamSize> {
    match fragment {
        [0xFF, 0xD8, ..] => jpeg_frame_header(fragment),
        [0xFF, 0x4F, 0xFF, 0x51, ..] => j2k_siz(&fragment[2..]),
        // JP2 box wrapper: the codestream is inside; rare in DICOM, not checked.
        _ => None,
    }
}

fn u16_at(b: &[u8], i: usize) -> Option<u32> {
    Some(u32::from(u16::from_be_bytes([*b.get(i)?, *b.get(i + 1)?])))
}

fn u32_at(b: &[u8], i: usize) -> Option<u32> {
    Some(u32::from_be_bytes([
        *b.get(i)?,
        *b.get(i + 1)?,
        *b.get(i + 2)?,
        *b.get(i + 3)?,
    ]))
}

/// Walks JPEG marker segments to the first start-of-frame (SOF0..SOF15 except DHT, JPG and DAC;
/// SOF55 for JPEG-LS): precision, height, width, components.
fn jpeg_frame_header(b: &[u8]) -> Option<StreamSize> {
    let mut i = 2;
    loop {
        // Fill bytes (0xFF repeated) may precede a marker.
        while *b.get(i)? == 0xFF && *b.get(i + 1)? == 0xFF {
            i += 1;
        }
        if *b.get(i)? != 0xFF {
            return None;
        }
        let marker = *b.get(i + 1)?;
        let len = u16_at(b, i + 2)? as usize;
        let sof = matches!(marker, 0xC0..=0xCF if !matches!(marker, 0xC4 | 0xC8 | 0xCC))
            || marker == 0xF7;
        if sof {
            return Some(StreamSize {
                height: u16_at(b, i + 5)?,
                width: u16_at(b, i + 7)?,
                components: u32::from(*b.get(i + 9)?),
            });
        }
        // Start of scan before any frame header: not a stream this check understands.
        if marker == 0xDA || len < 2 {
            return None;
        }
        i += 2 + len;
    }
}

/// JPEG 2000 SIZ segment (after SOC): Lsiz, Rsiz, Xsiz, Ysiz, XOsiz, YOsiz, ..., Csiz.
fn j2k_siz(b: &[u8]) -> Option<StreamSize> {
    let x = u32_at(b, 6)?;
    let y = u32_at(b, 10)?;
    let xo = u32_at(b, 14)?;
    let yo = u32_at(b, 18)?;
    Some(StreamSize {
        width: x.checked_sub(xo)?,
        height: y.checked_sub(yo)?,
        components: u16_at(b, 38)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jpeg_sof_after_other_segments() {
        // SOI, APP0 (length 4), SOF0: precision 8, height 0x0102, width 0x0304, 3 components.
        let b = [
            0xFF, 0xD8, 0xFF, 0xE0, 0x00, 0x04, 0xAA, 0xBB, 0xFF, 0xC0, 0x00, 0x11, 0x08, 0x01,
            0x02, 0x03, 0x04, 0x03,
        ];
        assert_eq!(
            declared_size(&b),
            Some(StreamSize {
                width: 0x0304,
                height: 0x0102,
                components: 3
            })
        );
        assert_eq!(declared_size(&b[..12]), None, "cut before the size");
        assert_eq!(declared_size(&[0x00, 0x01]), None);
    }

    #[test]
    fn j2k_siz_subtracts_the_image_offset() {
        let mut b = vec![0xFF, 0x4F, 0xFF, 0x51, 0x00, 0x29, 0x00, 0x00];
        for v in [110u32, 70, 10, 20, 0, 0, 0, 0] {
            b.extend_from_slice(&v.to_be_bytes());
        }
        b.extend_from_slice(&1u16.to_be_bytes());
        assert_eq!(
            declared_size(&b),
            Some(StreamSize {
                width: 100,
                height: 50,
                components: 1
            })
        );
    }
}
