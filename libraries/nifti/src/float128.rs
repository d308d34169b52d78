//! Conversion of 128-bit "long double" voxels to f64 (see the module docs of `format`).

/// `x * 2^e` without intermediate overflow/underflow of the power of two.
fn ldexp(mut x: f64, mut e: i32) -> f64 {
    let big = 2f64.powi(1000);
    let small = 2f64.powi(-1000);
    while e > 1000 {
        x *= big;
        e -= 1000;
        if x.is_infinite() {
            return x;
        }
    }
    while e < -1000 {
        x *= small;
        e += 1000;
        if x == 0.0 {
            return x;
        }
    }
    x * 2f64.powi(e)
}

/// 80-bit x87 extended precision: 64-bit mantissa with explicit integer bit in bytes
/// 0..8, sign and 15-bit exponent in bytes 8..10 (little-endian layout).
fn x87_to_f64(b: &[u8; 16]) -> f64 {
    let m = u64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]);
    let se = u16::from_le_bytes([b[8], b[9]]);
    let sign = if se & 0x8000 != 0 { -1.0 } else { 1.0 };
    let e = i32::from(se & 0x7fff);
    if e == 0x7fff {
        return if m << 1 == 0 {
            sign * f64::INFINITY
        } else {
            f64::NAN
        };
    }
    if m == 0 {
        return sign * 0.0;
    }
    let e = if e == 0 { 1 } else { e };
    sign * ldexp(m as f64, e - 16383 - 63)
}

/// IEEE 754 binary128 (little-endian layout).
fn binary128_to_f64(b: &[u8; 16]) -> f64 {
    let bits = u128::from_le_bytes(*b);
    let sign = if bits >> 127 != 0 { -1.0 } else { 1.0 };
    let e = ((bits >> 112) & 0x7fff) as i32;
    let frac = bits & ((1u128 << 112) - 1);
    if e == 0x7fff {
        return if frac == 0 {
            sign * f64::INFINITY
        } else {
            f64::NAN
        };
    }
    let (full, e) = if e == 0 {
        (frac, 1)
    } else {
        (frac | (1u128 << 112), e)
    };
    if full == 0 {
        return sign * 0.0;
    }
    // keep the top 64 of the 113 significant bits, with a sticky bit for rounding
    let sticky = u64::from(full & ((1u128 << 49) - 1) != 0);
    let m = (full >> 49) as u64 | sticky;
    sign * ldexp(m as f64, e - 16383 - 112 + 49)
}

/// Put a value in little-endian layout.
fn le_layout(v: &[u8; 16], big_endian: bool) -> [u8; 16] {
    let mut b = *v;
    if big_endian {
        b.reverse();
    }
    b
}

/// True when every value looks like an x87 extended value padded to 16 bytes.
fn looks_like_x87(v: &[[u8; 16]], big_endian: bool) -> bool {
    v.iter()
        .all(|x| le_layout(x, big_endian)[10..].iter().all(|&b| b == 0))
}

/// Convert raw 16-byte floats (as on disk) to f64.
pub(crate) fn to_f64(v: &[[u8; 16]], big_endian: bool) -> Vec<f64> {
    let conv = if looks_like_x87(v, big_endian) {
        x87_to_f64
    } else {
        binary128_to_f64
    };
    v.iter().map(|x| conv(&le_layout(x, big_endian))).collect()
}

/// Encode an f64 as binary128 (little-endian layout); used by tests to craft files.
#[doc(hidden)]
pub fn f64_to_binary128_le(x: f64) -> [u8; 16] {
    let bits = x.to_bits();
    let sign = u128::from(bits >> 63) << 127;
    let e = ((bits >> 52) & 0x7ff) as i32;
    let frac = u128::from(bits & ((1u64 << 52) - 1));
    let out = if e == 0 && frac == 0 {
        sign
    } else if e == 0x7ff {
        sign | (0x7fffu128 << 112) | (frac << 60)
    } else if e == 0 {
        // subnormal f64: normalise
        let lz = frac.leading_zeros() as i32 - (128 - 52);
        let frac = (frac << (lz + 1)) & ((1u128 << 52) - 1);
        let exp = (-1022 - lz - 1 + 16383) as u128;
        sign | (exp << 112) | (frac << 60)
    } else {
        sign | (((e - 1023 + 16383) as u128) << 112) | (frac << 60)
    };
    out.to_le_bytes()
}

/// Encode an f64 as x87 extended padded to 16 bytes (little-endian layout).
#[doc(hidden)]
pub fn f64_to_x87_le(x: f64) -> [u8; 16] {
    let bits = x.to_bits();
    let sign = ((bits >> 63) as u16) << 15;
    let e = ((bits >> 52) & 0x7ff) as i32;
    let frac = bits & ((1u64 << 52) - 1);
    let (m, se) = if e == 0 && frac == 0 {
        (0u64, sign)
    } else if e == 0x7ff {
        ((1u64 << 63) | (frac << 11), sign | 0x7fff)
    } else if e == 0 {
        let lz = frac.leading_zeros() as i32 - 12;
        let m = frac << (11 + lz + 1);
        (m, sign | (-1022 - lz - 1 + 16383) as u16)
    } else {
        (
            (1u64 << 63) | (frac << 11),
            sign | (e - 1023 + 16383) as u16,
        )
    };
    let mut out = [0u8; 16];
    out[..8].copy_from_slice(&m.to_le_bytes());
    out[8..10].copy_from_slice(&se.to_le_bytes());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const VALUES: [f64; 9] = [
        0.0,
        1.0,
        -2.5,
        1e300,
        -1e-300,
        5e-324,
        123456.789,
        f64::INFINITY,
        -0.0,
    ];

    #[test]
    fn binary128_round_trip() {
        for be in [false, true] {
            let raw: Vec<[u8; 16]> = VALUES
                .iter()
                .map(|&x| le_layout(&f64_to_binary128_le(x), be))
                .collect();
            assert!(!looks_like_x87(&raw, be));
            let back = to_f64(&raw, be);
            for (a, b) in VALUES.iter().zip(&back) {
                assert_eq!(a.to_bits(), b.to_bits(), "{a} -> {b}");
            }
        }
    }

    #[test]
    fn x87_round_trip() {
        for be in [false, true] {
            let raw: Vec<[u8; 16]> = VALUES
                .iter()
                .map(|&x| le_layout(&f64_to_x87_le(x), be))
                .collect();
            assert!(looks_like_x87(&raw, be));
            let back = to_f64(&raw, be);
            for (a, b) in VALUES.iter().zip(&back) {
                assert_eq!(a.to_bits(), b.to_bits(), "{a} -> {b}");
            }
        }
    }
}
