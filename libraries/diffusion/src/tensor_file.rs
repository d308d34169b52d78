//! Reading a float32 tensor [N, C, H, W] from a `.safetensors` or `.npy` file: the starting
//! noise of a run to reproduce against PyTorch (`torch.save`-free: `safetensors.torch.save_file`
//! or `numpy.save`).

use std::path::Path;

use anyhow::{Context as _, Result, bail};

/// A dense row-major f32 tensor.
#[derive(Clone, Debug, PartialEq)]
pub struct F32Tensor {
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
}

/// Reads `path`: safetensors (the tensor named `name`, or the only tensor) or npy (`<f4`,
/// C order). f16/bf16/f64 safetensors are converted to f32.
pub fn read_f32(path: &Path, name: &str) -> Result<F32Tensor> {
    let bytes = std::fs::read(path).with_context(|| format!("{}: cannot read", path.display()))?;
    let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
    let t = if ext == "npy" || bytes.starts_with(b"\x93NUMPY") {
        read_npy(&bytes)
    } else {
        read_safetensors(&bytes, name)
    };
    t.with_context(|| format!("{}", path.display()))
}

fn read_safetensors(bytes: &[u8], name: &str) -> Result<F32Tensor> {
    use safetensors::{Dtype, SafeTensors};
    let st = SafeTensors::deserialize(bytes).context("not a safetensors file")?;
    let names = st.names();
    let chosen = if names.contains(&name) {
        name.to_string()
    } else if names.len() == 1 {
        names[0].to_string()
    } else {
        bail!("no tensor named `{name}` (it holds {names:?})");
    };
    let view = st.tensor(&chosen)?;
    let raw = view.data();
    let data: Vec<f32> = match view.dtype() {
        Dtype::F32 => raw
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect(),
        Dtype::F64 => raw
            .chunks_exact(8)
            .map(|b| f64::from_le_bytes(b.try_into().expect("8 bytes")) as f32)
            .collect(),
        Dtype::BF16 => raw
            .chunks_exact(2)
            .map(|b| f32::from_bits((u16::from_le_bytes([b[0], b[1]]) as u32) << 16))
            .collect(),
        Dtype::F16 => raw
            .chunks_exact(2)
            .map(|b| f16_to_f32(u16::from_le_bytes([b[0], b[1]])))
            .collect(),
        other => bail!("tensor `{chosen}` is {other:?}; expected a float tensor"),
    };
    Ok(F32Tensor {
        shape: view.shape().to_vec(),
        data,
    })
}

/// IEEE half → single, exact (subnormals included).
pub fn f16_to_f32(h: u16) -> f32 {
    let sign = ((h >> 15) as u32) << 31;
    let exp = ((h >> 10) & 0x1f) as u32;
    let mant = (h & 0x3ff) as u32;
    let bits = match (exp, mant) {
        (0, 0) => sign,
        (0, m) => {
            // Subnormal: m · 2^-24, exact in f32.
            let v = m as f32 * (1.0 / 16_777_216.0);
            return if sign != 0 { -v } else { v };
        }
        (0x1f, m) => sign | 0x7f80_0000 | (m << 13),
        (e, m) => sign | ((e + 112) << 23) | (m << 13),
    };
    f32::from_bits(bits)
}

/// numpy's `.npy` v1–v3: little-endian f32, C order.
fn read_npy(bytes: &[u8]) -> Result<F32Tensor> {
    if bytes.len() < 10 || !bytes.starts_with(b"\x93NUMPY") {
        bail!("not an .npy file");
    }
    let (header_len, start) = match bytes[6] {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
        2 | 3 if bytes.len() >= 12 => (
            u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize,
            12,
        ),
        v => bail!("unsupported .npy version {v}"),
    };
    let header = bytes
        .get(start..start + header_len)
        .context("truncated .npy header")?;
    let header = std::str::from_utf8(header).context(".npy header is not text")?;
    let field = |key: &str| -> Result<&str> {
        let at = header
            .find(&format!("'{key}'"))
            .with_context(|| format!(".npy header has no '{key}'"))?;
        Ok(header[at + key.len() + 2..].trim_start_matches([':', ' ']))
    };
    let descr = field("descr")?;
    if !descr.starts_with("'<f4'") {
        bail!(
            ".npy dtype {} is not little-endian float32 ('<f4')",
            descr.split(',').next().unwrap_or("")
        );
    }
    if field("fortran_order")?.starts_with("True") {
        bail!(".npy array is in Fortran order; save it C-contiguous");
    }
    let shape_text = field("shape")?;
    let close = shape_text.find(')').context(".npy shape is not a tuple")?;
    let shape: Vec<usize> = shape_text[1..close]
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| s.parse::<usize>().context(".npy shape entry"))
        .collect::<Result<_>>()?;
    let count = shape
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .context(".npy shape overflows")?;
    let body = &bytes[start + header_len..];
    if body.len() != count * 4 {
        bail!(
            ".npy shape {shape:?} needs {} bytes of data, the file holds {}",
            count * 4,
            body.len()
        );
    }
    let data = body
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    Ok(F32Tensor { shape, data })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn npy(shape: &str, values: &[f32]) -> Vec<u8> {
        let mut header = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': {shape}, }}");
        while (10 + header.len() + 1) % 64 != 0 {
            header.push(' ');
        }
        header.push('\n');
        let mut out = b"\x93NUMPY\x01\x00".to_vec();
        out.extend((header.len() as u16).to_le_bytes());
        out.extend(header.as_bytes());
        for v in values {
            out.extend(v.to_le_bytes());
        }
        out
    }

    #[test]
    fn npy_round_trip_and_lies_are_refused() {
        let v: Vec<f32> = (0..6).map(|i| i as f32 * 0.5).collect();
        let t = read_npy(&npy("(1, 2, 3)", &v)).unwrap();
        assert_eq!(t.shape, vec![1, 2, 3]);
        assert_eq!(t.data, v);
        let err = read_npy(&npy("(2, 2, 3)", &v)).unwrap_err().to_string();
        assert!(err.contains("needs 48 bytes"), "{err}");
    }

    #[test]
    fn half_floats_convert_exactly() {
        assert_eq!(f16_to_f32(0x3c00), 1.0);
        assert_eq!(f16_to_f32(0xc000), -2.0);
        assert_eq!(f16_to_f32(0x0001), 2f32.powi(-24));
        assert_eq!(f16_to_f32(0x7bff), 65504.0);
        assert!(f16_to_f32(0x7c00).is_infinite());
    }
}
