//! JPEG / PNG encoding decoded back, and contact sheets.

use mindscan_plugin_imaging::core::encode::{
    ContactSheetTile, contact_sheet, contact_sheet_png, encode_jpeg, encode_jpeg_portable,
    encode_png_u8, encode_png_u16,
};

fn gradient(rows: usize, cols: usize) -> Vec<u8> {
    (0..rows * cols)
        .map(|p| ((p / cols) * 255 / rows.max(1) / 2 + (p % cols) * 255 / cols.max(1) / 2) as u8)
        .collect()
}

fn decode_png(bytes: &[u8]) -> (png::OutputInfo, Vec<u8>) {
    let dec = png::Decoder::new(std::io::Cursor::new(bytes));
    let mut reader = dec.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut buf).unwrap();
    buf.truncate(info.buffer_size());
    (info, buf)
}

#[test]
fn jpeg_roundtrip_size_and_quality() {
    let (rows, cols) = (233, 197);
    let px = gradient(rows, cols);
    let jpg = encode_jpeg(&px, rows, cols, 90).unwrap();
    assert_eq!(&jpg[..2], &[0xFF, 0xD8], "JPEG SOI marker");
    let mut dec = jpeg_decoder::Decoder::new(&jpg[..]);
    let out = dec.decode().unwrap();
    let info = dec.info().unwrap();
    assert_eq!((info.height as usize, info.width as usize), (rows, cols));
    assert_eq!(info.pixel_format, jpeg_decoder::PixelFormat::L8);
    assert_eq!(out.len(), rows * cols);
    let max_err = px
        .iter()
        .zip(&out)
        .map(|(&a, &b)| (a as i32 - b as i32).abs())
        .max()
        .unwrap();
    assert!(max_err <= 8, "q90 error too large: {max_err}");
    let low = encode_jpeg(&px, rows, cols, 10).unwrap();
    assert!(low.len() < jpg.len());
    assert!(encode_jpeg(&px, rows, cols + 1, 90).is_err());
    assert!(
        encode_jpeg(&[0; 70_000], 1, 70_000, 90).is_err(),
        "JPEG side limit"
    );
}

fn decode_jpeg(bytes: &[u8]) -> Vec<u8> {
    jpeg_decoder::Decoder::new(bytes).decode().unwrap()
}

fn mean_abs_diff(a: &[u8], b: &[u8]) -> f64 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(&x, &y)| (x as f64 - y as f64).abs())
        .sum::<f64>()
        / a.len() as f64
}

/// The build's encoder (libjpeg-turbo with the `turbojpeg` feature) and the portable one
/// use the same IJG tables: same picture within rounding, sizes within a few percent.
#[test]
fn jpeg_encoders_agree() {
    let (rows, cols) = (233, 197);
    // Textured content, like tissue: a gradient plus deterministic noise.
    let px: Vec<u8> = gradient(rows, cols)
        .iter()
        .enumerate()
        .map(|(i, &g)| g.saturating_add((i * 7919 % 23) as u8))
        .collect();
    // Mean error bound per quality for this noisy picture (measured: 4.0, 1.9, 0.1).
    for (quality, bound) in [(50, 5.0), (90, 2.5), (100, 0.5)] {
        let build = encode_jpeg(&px, rows, cols, quality).unwrap();
        let portable = encode_jpeg_portable(&px, rows, cols, quality).unwrap();
        let (a, b) = (decode_jpeg(&build), decode_jpeg(&portable));
        let (ea, eb) = (mean_abs_diff(&a, &px), mean_abs_diff(&b, &px));
        eprintln!(
            "q{quality}: errors {ea:.2} / {eb:.2}, {} / {} bytes",
            build.len(),
            portable.len()
        );
        assert!(
            ea < bound && eb < bound,
            "q{quality}: errors {ea:.2} / {eb:.2}"
        );
        assert!(
            mean_abs_diff(&a, &b) < bound / 2.0,
            "q{quality}: the two encoders' pictures differ"
        );
        let ratio = build.len() as f64 / portable.len() as f64;
        assert!(
            (0.9..1.1).contains(&ratio),
            "q{quality}: sizes {} vs {} bytes",
            build.len(),
            portable.len()
        );
    }
    assert_eq!(
        mindscan_plugin_imaging::core::encode::JPEG_ENCODER,
        if cfg!(feature = "turbojpeg") {
            "libjpeg-turbo"
        } else {
            "jpeg-encoder"
        }
    );
}

#[test]
fn png8_roundtrips_exactly() {
    let (rows, cols) = (31, 57);
    let px: Vec<u8> = (0..rows * cols).map(|i| (i * 7919 % 256) as u8).collect();
    let bytes = encode_png_u8(&px, rows, cols).unwrap();
    let (info, data) = decode_png(&bytes);
    assert_eq!((info.height, info.width), (rows as u32, cols as u32));
    assert_eq!(info.bit_depth, png::BitDepth::Eight);
    assert_eq!(info.color_type, png::ColorType::Grayscale);
    assert_eq!(data, px);
    assert!(encode_png_u8(&px, 0, 0).is_err());
}

#[test]
fn png16_roundtrips_exactly_big_endian() {
    let (rows, cols) = (20, 33);
    let px: Vec<u16> = (0..rows * cols)
        .map(|i| (i as u32 * 40_503 % 65_536) as u16)
        .collect();
    let bytes = encode_png_u16(&px, rows, cols).unwrap();
    let (info, data) = decode_png(&bytes);
    assert_eq!(info.bit_depth, png::BitDepth::Sixteen);
    assert_eq!(info.color_type, png::ColorType::Grayscale);
    assert_eq!((info.height, info.width), (rows as u32, cols as u32));
    let back: Vec<u16> = data
        .chunks_exact(2)
        .map(|c| u16::from_be_bytes([c[0], c[1]]))
        .collect();
    assert_eq!(back, px);
}

#[test]
fn contact_sheet_grid() {
    let a = vec![255u8; 256 * 200]; // 256 rows x 200 cols, white
    let b = vec![100u8; 64 * 64];
    let tiles: Vec<ContactSheetTile<'_>> = (0..5)
        .map(|i| {
            if i == 4 {
                ContactSheetTile {
                    data: &b,
                    rows: 64,
                    cols: 64,
                }
            } else {
                ContactSheetTile {
                    data: &a,
                    rows: 256,
                    cols: 200,
                }
            }
        })
        .collect();
    let sheet = contact_sheet(&tiles, 128);
    // 5 tiles -> 3 columns, 2 rows; the big tile becomes 128 x 100.
    assert_eq!((sheet.rows, sheet.cols), (256, 300));
    assert_eq!(sheet.data[0], 255);
    assert_eq!(sheet.data[127 * 300 + 99], 255);
    // Tile 4 (row 1, col 1) is 64x64, centred in its 128x100 cell.
    let (top, left) = (128 + 32, 100 + 18);
    assert_eq!(sheet.data[top * 300 + left], 100);
    assert_eq!(sheet.data[(top - 1) * 300 + left], 0, "black background");
    // Empty last cell is black.
    assert!(
        sheet.data[128 * 300 + 200..129 * 300]
            .iter()
            .all(|&v| v == 0)
    );
    let png_bytes = contact_sheet_png(&tiles, 128).unwrap();
    let (info, data) = decode_png(&png_bytes);
    assert_eq!((info.height, info.width), (256, 300));
    assert_eq!(data, sheet.data);
    assert_eq!(contact_sheet(&[], 128).rows, 0);
}
