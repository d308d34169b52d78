//! Grayscale JPEG / PNG encoding and contact sheets.
//!
//! All functions take row-major pixels (row 0 at the top) and return the
//! encoded file bytes.

use std::fmt;

/// Encoding errors.
#[derive(Debug, Clone, PartialEq)]
pub enum EncodeError {
    /// `pixels.len() != rows * cols`, or an empty image.
    BadSize {
        len: usize,
        rows: usize,
        cols: usize,
    },
    /// The image is larger than the format allows (JPEG: 65535 per side).
    TooLarge { rows: usize, cols: usize },
    /// Error from the codec.
    Codec(String),
}

impl fmt::Display for EncodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EncodeError::BadSize { len, rows, cols } => {
                write!(
                    f,
                    "{len} pixels do not form a non-empty {rows}x{cols} image"
                )
            }
            EncodeError::TooLarge { rows, cols } => {
                write!(f, "image {rows}x{cols} is too large for the format")
            }
            EncodeError::Codec(e) => write!(f, "encoder error: {e}"),
        }
    }
}

impl std::error::Error for EncodeError {}

fn check_size(len: usize, rows: usize, cols: usize) -> Result<(), EncodeError> {
    if rows == 0 || cols == 0 || rows.checked_mul(cols) != Some(len) {
        return Err(EncodeError::BadSize { len, rows, cols });
    }
    Ok(())
}

/// Which library [`encode_jpeg`] uses in this build.
pub const JPEG_ENCODER: &str = if cfg!(feature = "turbojpeg") {
    "libjpeg-turbo"
} else {
    "jpeg-encoder"
};

/// Baseline grayscale JPEG; `quality` 1..=100 (clamped), IJG quantisation tables.
///
/// Uses libjpeg-turbo when built with the `turbojpeg` feature, else [`encode_jpeg_portable`].
pub fn encode_jpeg(
    pixels: &[u8],
    rows: usize,
    cols: usize,
    quality: u8,
) -> Result<Vec<u8>, EncodeError> {
    #[cfg(feature = "turbojpeg")]
    {
        encode_jpeg_turbo(pixels, rows, cols, quality)
    }
    #[cfg(not(feature = "turbojpeg"))]
    {
        encode_jpeg_portable(pixels, rows, cols, quality)
    }
}

/// [`encode_jpeg`] through the pure-Rust `jpeg-encoder` crate (the default build's encoder).
pub fn encode_jpeg_portable(
    pixels: &[u8],
    rows: usize,
    cols: usize,
    quality: u8,
) -> Result<Vec<u8>, EncodeError> {
    let (w, h) = jpeg_dims(pixels.len(), rows, cols)?;
    let mut out = Vec::with_capacity(pixels.len() / 4 + 1024);
    let enc = jpeg_encoder::Encoder::new(&mut out, quality.clamp(1, 100));
    enc.encode(pixels, w, h, jpeg_encoder::ColorType::Luma)
        .map_err(|e| EncodeError::Codec(e.to_string()))?;
    Ok(out)
}

/// (width, height) as JPEG stores them (at most 65535 each).
fn jpeg_dims(len: usize, rows: usize, cols: usize) -> Result<(u16, u16), EncodeError> {
    check_size(len, rows, cols)?;
    match (u16::try_from(cols), u16::try_from(rows)) {
        (Ok(w), Ok(h)) => Ok((w, h)),
        _ => Err(EncodeError::TooLarge { rows, cols }),
    }
}

/// Largest per-thread output buffer kept between images (a 2048x2048 slice needs about 8 MiB).
#[cfg(feature = "turbojpeg")]
const KEPT_SCRATCH: usize = 16 << 20;

/// [`encode_jpeg`] through libjpeg-turbo: one compressor and one worst-case output buffer per
/// thread, so a slice costs no allocation but its result.
#[cfg(feature = "turbojpeg")]
pub fn encode_jpeg_turbo(
    pixels: &[u8],
    rows: usize,
    cols: usize,
    quality: u8,
) -> Result<Vec<u8>, EncodeError> {
    use std::cell::RefCell;
    thread_local! {
        static COMPRESSOR: RefCell<Option<(turbojpeg::Compressor, Vec<u8>)>> = const { RefCell::new(None) };
    }
    jpeg_dims(pixels.len(), rows, cols)?;
    let codec = |e: turbojpeg::Error| EncodeError::Codec(format!("libjpeg-turbo: {e}"));
    COMPRESSOR.with(|cell| {
        let mut cell = cell.borrow_mut();
        let (tj, scratch) = match cell.as_mut() {
            Some(c) => c,
            None => {
                let mut tj = turbojpeg::Compressor::new().map_err(codec)?;
                tj.set_subsamp(turbojpeg::Subsamp::Gray).map_err(codec)?;
                cell.insert((tj, Vec::new()))
            }
        };
        tj.set_quality(i32::from(quality.clamp(1, 100)))
            .map_err(codec)?;
        // The crate's `buf_len` sizes for its cached (4:4:4) subsampling; ask for grayscale.
        let need =
            turbojpeg::compressed_buf_len(cols, rows, turbojpeg::Subsamp::Gray).map_err(codec)?;
        if scratch.len() < need {
            scratch.resize(need, 0);
        }
        let image = turbojpeg::Image {
            pixels,
            width: cols,
            pitch: cols,
            height: rows,
            format: turbojpeg::PixelFormat::GRAY,
        };
        let n = tj.compress_to_slice(image, scratch).map_err(codec)?;
        let jpeg = scratch[..n].to_vec();
        if scratch.len() > KEPT_SCRATCH {
            // One huge image must not pin its worst-case buffer in every worker thread.
            *scratch = Vec::new();
        }
        Ok(jpeg)
    })
}

/// Colour JPEG of interleaved RGB bytes (the pure-Rust encoder in every build: colour slices
/// are rare, so they do not need libjpeg-turbo's speed).
pub fn encode_jpeg_rgb(
    rgb: &[u8],
    rows: usize,
    cols: usize,
    quality: u8,
) -> Result<Vec<u8>, EncodeError> {
    let (w, h) = jpeg_dims(rgb.len() / 3, rows, cols)?;
    if rgb.len() != rows * cols * 3 {
        return Err(EncodeError::Codec(format!(
            "{} bytes for a {rows}x{cols} RGB image",
            rgb.len()
        )));
    }
    let mut out = Vec::with_capacity(rgb.len() / 4 + 1024);
    let enc = jpeg_encoder::Encoder::new(&mut out, quality.clamp(1, 100));
    enc.encode(rgb, w, h, jpeg_encoder::ColorType::Rgb)
        .map_err(|e| EncodeError::Codec(e.to_string()))?;
    Ok(out)
}

/// 8-bit RGB PNG of interleaved RGB bytes.
pub fn encode_png_rgb(rgb: &[u8], rows: usize, cols: usize) -> Result<Vec<u8>, EncodeError> {
    if rgb.len() != rows * cols * 3 {
        return Err(EncodeError::Codec(format!(
            "{} bytes for a {rows}x{cols} RGB image",
            rgb.len()
        )));
    }
    encode_png_colour(rgb, rows, cols, png::BitDepth::Eight, png::ColorType::Rgb)
}

fn encode_png(
    bytes: &[u8],
    rows: usize,
    cols: usize,
    depth: png::BitDepth,
) -> Result<Vec<u8>, EncodeError> {
    encode_png_colour(bytes, rows, cols, depth, png::ColorType::Grayscale)
}

fn encode_png_colour(
    bytes: &[u8],
    rows: usize,
    cols: usize,
    depth: png::BitDepth,
    colour: png::ColorType,
) -> Result<Vec<u8>, EncodeError> {
    let (Ok(h), Ok(w)) = (u32::try_from(rows), u32::try_from(cols)) else {
        return Err(EncodeError::TooLarge { rows, cols });
    };
    let mut out = Vec::with_capacity(bytes.len() / 2 + 1024);
    {
        let mut enc = png::Encoder::new(&mut out, w, h);
        enc.set_color(colour);
        enc.set_depth(depth);
        enc.set_compression(png::Compression::Fast);
        let mut writer = enc
            .write_header()
            .map_err(|e| EncodeError::Codec(e.to_string()))?;
        writer
            .write_image_data(bytes)
            .map_err(|e| EncodeError::Codec(e.to_string()))?;
        writer
            .finish()
            .map_err(|e| EncodeError::Codec(e.to_string()))?;
    }
    Ok(out)
}

/// 8-bit grayscale PNG (fast deflate).
pub fn encode_png_u8(pixels: &[u8], rows: usize, cols: usize) -> Result<Vec<u8>, EncodeError> {
    check_size(pixels.len(), rows, cols)?;
    encode_png(pixels, rows, cols, png::BitDepth::Eight)
}

/// 16-bit grayscale PNG (samples written big-endian as the PNG spec requires).
pub fn encode_png_u16(pixels: &[u16], rows: usize, cols: usize) -> Result<Vec<u8>, EncodeError> {
    check_size(pixels.len(), rows, cols)?;
    let mut be = Vec::with_capacity(pixels.len() * 2);
    for &p in pixels {
        be.extend_from_slice(&p.to_be_bytes());
    }
    encode_png(&be, rows, cols, png::BitDepth::Sixteen)
}

/// An owned 8-bit grayscale image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrayImage {
    pub data: Vec<u8>,
    pub rows: usize,
    pub cols: usize,
}

/// One input image of a contact sheet.
#[derive(Debug, Clone, Copy)]
pub struct ContactSheetTile<'a> {
    pub data: &'a [u8],
    pub rows: usize,
    pub cols: usize,
}

/// Thumbnail size keeping aspect: the longer side becomes at most `max_tile`.
fn thumb_size(rows: usize, cols: usize, max_tile: usize) -> (usize, usize) {
    let longest = rows.max(cols);
    if longest <= max_tile {
        return (rows, cols);
    }
    let s = max_tile as f64 / longest as f64;
    let f = |n: usize| ((n as f64 * s).round() as usize).clamp(1, max_tile);
    (f(rows), f(cols))
}

/// Box-filter (area average) downscale into `dst` at `(top, left)` of a canvas
/// `canvas_cols` wide.
fn blit_downscaled(
    tile: &ContactSheetTile<'_>,
    th: usize,
    tw: usize,
    canvas: &mut [u8],
    canvas_cols: usize,
    top: usize,
    left: usize,
) {
    let (rows, cols) = (tile.rows, tile.cols);
    for y in 0..th {
        let r0 = y * rows / th;
        let r1 = ((y + 1) * rows / th).max(r0 + 1);
        let dst_row = &mut canvas[(top + y) * canvas_cols + left..][..tw];
        for (x, d) in dst_row.iter_mut().enumerate() {
            let c0 = x * cols / tw;
            let c1 = ((x + 1) * cols / tw).max(c0 + 1);
            let mut sum = 0u64;
            for r in r0..r1 {
                sum += tile.data[r * cols + c0..r * cols + c1]
                    .iter()
                    .map(|&v| v as u64)
                    .sum::<u64>();
            }
            let n = ((r1 - r0) * (c1 - c0)) as u64;
            *d = ((sum + n / 2) / n) as u8;
        }
    }
}

/// Tiles thumbnails of `tiles` (in order, row by row) into one grid image on a
/// black background: `ceil(sqrt(n))` columns, each cell as large as the largest
/// thumbnail, thumbnails at most `max_tile` px on their longer side (aspect kept,
/// area-averaged) and centred in their cell. Tiles whose `data` does not match
/// `rows * cols` are left black. Zero tiles give a 0x0 image.
pub fn contact_sheet(tiles: &[ContactSheetTile<'_>], max_tile: usize) -> GrayImage {
    let n = tiles.len();
    let max_tile = max_tile.max(1);
    if n == 0 {
        return GrayImage {
            data: Vec::new(),
            rows: 0,
            cols: 0,
        };
    }
    let sizes: Vec<(usize, usize)> = tiles
        .iter()
        .map(|t| thumb_size(t.rows, t.cols, max_tile))
        .collect();
    let cell_h = sizes.iter().map(|s| s.0).max().unwrap_or(1).max(1);
    let cell_w = sizes.iter().map(|s| s.1).max().unwrap_or(1).max(1);
    let grid_cols = (n as f64).sqrt().ceil() as usize;
    let grid_rows = n.div_ceil(grid_cols);
    let (rows, cols) = (grid_rows * cell_h, grid_cols * cell_w);
    let mut data = vec![0u8; rows * cols];
    for (i, (tile, &(th, tw))) in tiles.iter().zip(&sizes).enumerate() {
        if th == 0 || tw == 0 || tile.data.len() != tile.rows * tile.cols {
            continue;
        }
        let top = (i / grid_cols) * cell_h + (cell_h - th) / 2;
        let left = (i % grid_cols) * cell_w + (cell_w - tw) / 2;
        blit_downscaled(tile, th, tw, &mut data, cols, top, left);
    }
    GrayImage { data, rows, cols }
}

/// [`contact_sheet`] encoded as an 8-bit PNG.
pub fn contact_sheet_png(
    tiles: &[ContactSheetTile<'_>],
    max_tile: usize,
) -> Result<Vec<u8>, EncodeError> {
    let sheet = contact_sheet(tiles, max_tile);
    encode_png_u8(&sheet.data, sheet.rows, sheet.cols)
}
