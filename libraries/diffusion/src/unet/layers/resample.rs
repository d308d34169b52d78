//! Nearest-neighbour x2 upsampling and 2x2 average pooling of padded activations.

use rayon::prelude::*;

use super::tensor::Act;

/// `out` (2h x 2w) = each pixel of `src` repeated 2x2.
pub(crate) fn upsample_nearest2(src: &Act, out: &mut Act) {
    assert_eq!(
        (out.n, out.h, out.w, out.c),
        (src.n, 2 * src.h, 2 * src.w, src.c)
    );
    let (c, h, pw) = (out.c, out.h, out.pw());
    {
        let len = out.row_len();
        out.data.par_chunks_mut(len)
    }
    .enumerate()
    .for_each(|(r, row)| {
        let (img, y) = (r / (h + 2), r % (h + 2));
        if y == 0 || y == h + 1 {
            row.fill(0.0);
            return;
        }
        row[..c].fill(0.0);
        row[(pw - 1) * c..].fill(0.0);
        let from = src.at(img, (y - 1) / 2 + 1, 1);
        let src_row = &src.data[from..from + src.w * c];
        for (x, pair) in row[c..(pw - 1) * c].chunks_exact_mut(2 * c).enumerate() {
            let px = &src_row[x * c..(x + 1) * c];
            pair[..c].copy_from_slice(px);
            pair[c..].copy_from_slice(px);
        }
    });
}

/// `out` (h/2 x w/2) = the mean of each 2x2 block of `src` (PyTorch's AvgPool2d(2, 2): odd
/// trailing rows and columns are dropped).
pub(crate) fn avg_pool2(src: &Act, out: &mut Act) {
    assert_eq!(
        (out.n, out.h, out.w, out.c),
        (src.n, src.h / 2, src.w / 2, src.c)
    );
    let (c, h, pw) = (out.c, out.h, out.pw());
    {
        let len = out.row_len();
        out.data.par_chunks_mut(len)
    }
    .enumerate()
    .for_each(|(r, row)| {
        let (img, y) = (r / (h + 2), r % (h + 2));
        if y == 0 || y == h + 1 {
            row.fill(0.0);
            return;
        }
        row[..c].fill(0.0);
        row[(pw - 1) * c..].fill(0.0);
        let top = src.at(img, 2 * y - 1, 1);
        let bottom = src.at(img, 2 * y, 1);
        for (x, px) in row[c..(pw - 1) * c].chunks_exact_mut(c).enumerate() {
            let (t, b) = (top + 2 * x * c, bottom + 2 * x * c);
            for (ch, v) in px.iter_mut().enumerate() {
                let d = &src.data;
                *v = (d[t + ch] + d[t + c + ch] + d[b + ch] + d[b + c + ch]) * 0.25;
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::unet::layers::tensor::testing::{from_act, to_act, values};

    #[test]
    fn nearest_upsampling_repeats_each_pixel_two_by_two() {
        let (n, c, h, w) = (2, 3, 3, 5);
        let x = values(n * c * h * w, 1);
        let mut out = Act {
            data: vec![f32::NAN; n * (2 * h + 2) * (2 * w + 2) * c],
            n,
            h: 2 * h,
            w: 2 * w,
            c,
        };
        upsample_nearest2(&to_act(&x, n, c, h, w), &mut out);
        let got = from_act(&out);
        for b in 0..n {
            for ch in 0..c {
                for y in 0..2 * h {
                    for xx in 0..2 * w {
                        let want = x[((b * c + ch) * h + y / 2) * w + xx / 2];
                        assert_eq!(got[((b * c + ch) * 2 * h + y) * 2 * w + xx], want);
                    }
                }
            }
        }
    }

    #[test]
    fn average_pooling_takes_the_mean_of_each_two_by_two_block() {
        let (n, c, h, w) = (2, 3, 4, 6);
        let x = values(n * c * h * w, 2);
        let mut out = Act {
            data: vec![f32::NAN; n * (h / 2 + 2) * (w / 2 + 2) * c],
            n,
            h: h / 2,
            w: w / 2,
            c,
        };
        avg_pool2(&to_act(&x, n, c, h, w), &mut out);
        let got = from_act(&out);
        for b in 0..n {
            for ch in 0..c {
                for y in 0..h / 2 {
                    for xx in 0..w / 2 {
                        let at = |dy: usize, dx: usize| {
                            x[((b * c + ch) * h + 2 * y + dy) * w + 2 * xx + dx]
                        };
                        let want = (at(0, 0) + at(0, 1) + at(1, 0) + at(1, 1)) / 4.0;
                        let g = got[((b * c + ch) * (h / 2) + y) * (w / 2) + xx];
                        assert!((g - want).abs() < 1e-6);
                    }
                }
            }
        }
    }
}
