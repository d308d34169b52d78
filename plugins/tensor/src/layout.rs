//! One item's tensors and metadata values as rows of stacked tensors: the bytes in C order
//! (row-major: what safetensors, numpy and torch mean by a shape), little-endian, in the dtype
//! written.

use anyhow::{Result, bail};
use half::{bf16, f16};
use mindscan_sdk::prelude::*;
use safetensors::Dtype;
use serde_json::Value;

#[cfg(target_endian = "big")]
compile_error!("tensor.write copies native-order bytes, and safetensors is little-endian");

/// The dtype of the tensors written.
#[derive(Deserialize, JsonSchema, Clone, Copy, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum OutDType {
    /// Each tensor's own dtype (float metadata values: float64).
    #[default]
    Keep,
    /// float32.
    F32,
    /// IEEE half precision, rounded to nearest even from float32.
    F16,
    /// bfloat16, rounded to nearest even from float32.
    Bf16,
}

impl OutDType {
    /// The dtype written for an item tensor holding `d`.
    pub fn for_tensor(self, d: DType) -> Result<Dtype> {
        if self != OutDType::Keep && matches!(d, DType::C64 | DType::C128) {
            bail!(
                "{} cannot be converted to {self:?}: take the magnitude first",
                d.name()
            );
        }
        Ok(match self {
            OutDType::Keep => safetensors_dtype(d)?,
            OutDType::F32 => Dtype::F32,
            OutDType::F16 => Dtype::F16,
            OutDType::Bf16 => Dtype::BF16,
        })
    }

    /// The dtype written for metadata values that are not all integers.
    pub fn for_float_meta(self) -> Dtype {
        match self {
            OutDType::Keep => Dtype::F64,
            OutDType::F32 => Dtype::F32,
            OutDType::F16 => Dtype::F16,
            OutDType::Bf16 => Dtype::BF16,
        }
    }
}

/// The safetensors dtype of an SDK dtype.
pub fn safetensors_dtype(d: DType) -> Result<Dtype> {
    Ok(match d {
        DType::U8 => Dtype::U8,
        DType::I8 => Dtype::I8,
        DType::U16 => Dtype::U16,
        DType::I16 => Dtype::I16,
        DType::U32 => Dtype::U32,
        DType::I32 => Dtype::I32,
        DType::U64 => Dtype::U64,
        DType::I64 => Dtype::I64,
        DType::F32 => Dtype::F32,
        DType::F64 => Dtype::F64,
        DType::C64 => Dtype::C64,
        DType::C128 => bail!("complex128 has no safetensors dtype: convert it first"),
    })
}

/// A real element type and its value as f32 (what f16 and bf16 are rounded from).
trait Real: bytemuck::Pod {
    fn to_f32(self) -> f32;
}
macro_rules! real {
    ($($t:ty),*) => { $(impl Real for $t { fn to_f32(self) -> f32 { self as f32 } })* };
}
real!(u8, i8, u16, i16, u32, i32, u64, i64, f32, f64);

/// Checks that `t` can become a row (CPU, dense, convertible to `out`) without copying it.
pub fn check_tensor(t: &Tensor, out: Dtype) -> Result<()> {
    if t.device() != Device::Cpu {
        bail!("it is on {:?}; tensor.write reads CPU tensors", t.device());
    }
    if !(t.is_c_contiguous() || t.is_f_contiguous()) {
        bail!("its strides {:?} are not dense", t.strides());
    }
    let same = safetensors_dtype(t.dtype()).ok() == Some(out);
    if !same && !matches!(out, Dtype::F32 | Dtype::F16 | Dtype::BF16) {
        bail!("{} cannot be written as {out}", t.dtype().name());
    }
    Ok(())
}

/// Appends `t` as one row of dtype `out` (see [`check_tensor`]) to `buf`, in C order: a
/// Fortran-ordered tensor (a volume, `i` fastest) is transposed on the way, so row `[i, j, k]`
/// is voxel `(i, j, k)`.
pub fn append_tensor(t: &Tensor, out: Dtype, buf: &mut Vec<u8>) -> Result<()> {
    check_tensor(t, out)?;
    let c_order = t.is_c_contiguous() || t.shape().iter().filter(|&&d| d > 1).count() <= 1;
    if c_order && safetensors_dtype(t.dtype()).ok() == Some(out) {
        buf.extend_from_slice(t.dense_bytes()?);
        return Ok(());
    }
    match t.dtype() {
        DType::U8 => append_as::<u8>(t, c_order, out, buf),
        DType::I8 => append_as::<i8>(t, c_order, out, buf),
        DType::U16 => append_as::<u16>(t, c_order, out, buf),
        DType::I16 => append_as::<i16>(t, c_order, out, buf),
        DType::U32 => append_as::<u32>(t, c_order, out, buf),
        DType::I32 => append_as::<i32>(t, c_order, out, buf),
        DType::U64 => append_as::<u64>(t, c_order, out, buf),
        DType::I64 => append_as::<i64>(t, c_order, out, buf),
        DType::F32 => append_as::<f32>(t, c_order, out, buf),
        DType::F64 => append_as::<f64>(t, c_order, out, buf),
        DType::C64 => {
            // Kept as is (check_tensor refused conversions): only the order changes.
            let s: &[[f32; 2]] = t.as_slice()?;
            buf.reserve(std::mem::size_of_val(s));
            each_c_order(s, t.shape(), t.strides(), |v| {
                buf.extend_from_slice(bytemuck::bytes_of(&v))
            });
            Ok(())
        }
        DType::C128 => bail!("complex128 has no safetensors dtype"),
    }
}

fn append_as<T: Element + Real>(
    t: &Tensor,
    c_order: bool,
    out: Dtype,
    buf: &mut Vec<u8>,
) -> Result<()> {
    let s: &[T] = t.as_slice()?;
    let (shape, strides) = (t.shape(), t.strides());
    let visit = |f: &mut dyn FnMut(T)| {
        if c_order {
            s.iter().for_each(|&v| f(v));
        } else {
            each_c_order(s, shape, strides, f);
        }
    };
    buf.reserve(s.len() * out.bitsize() / 8);
    match out {
        Dtype::F32 => visit(&mut |v| buf.extend_from_slice(&v.to_f32().to_le_bytes())),
        Dtype::F16 => {
            visit(&mut |v| buf.extend_from_slice(&f16::from_f32(v.to_f32()).to_le_bytes()))
        }
        Dtype::BF16 => {
            visit(&mut |v| buf.extend_from_slice(&bf16::from_f32(v.to_f32()).to_le_bytes()))
        }
        // The tensor's own dtype, reordered.
        _ => visit(&mut |v| buf.extend_from_slice(bytemuck::bytes_of(&v))),
    }
    Ok(())
}

/// Calls `f` with the elements of a dense tensor (`s` in memory order, strides in elements)
/// in C order: the last axis fastest.
fn each_c_order<T: Copy>(s: &[T], shape: &[usize], strides: &[isize], mut f: impl FnMut(T)) {
    if shape.iter().product::<usize>() == 0 {
        return;
    }
    let Some(last) = shape.len().checked_sub(1) else {
        f(s[0]);
        return;
    };
    let mut idx = vec![0usize; shape.len()];
    let mut off: isize = 0;
    loop {
        let step = strides[last];
        for k in 0..shape[last] as isize {
            f(s[(off + k * step) as usize]);
        }
        // The odometer over the other axes.
        let mut ax = last;
        loop {
            if ax == 0 {
                return;
            }
            ax -= 1;
            idx[ax] += 1;
            off += strides[ax];
            if idx[ax] < shape[ax] {
                break;
            }
            off -= strides[ax] * shape[ax] as isize;
            idx[ax] = 0;
        }
    }
}

/// The leaves of a metadata value (a number, a boolean, or nested arrays of them), flattened in
/// C order.
#[derive(Debug, Clone, PartialEq)]
pub enum Leaves {
    Bool(Vec<bool>),
    Int(Vec<i64>),
    Float(Vec<f64>),
}

/// A metadata value as a tensor row: its shape (`[]` for a number) and leaves.
#[derive(Debug, Clone, PartialEq)]
pub struct MetaValue {
    pub shape: Vec<usize>,
    pub leaves: Leaves,
}

impl MetaValue {
    /// Reads a number, a boolean or a rectangular (nested) array of them.
    pub fn parse(v: &Value) -> Result<MetaValue> {
        let mut shape = Vec::new();
        let mut probe = v;
        while let Value::Array(a) = probe {
            shape.push(a.len());
            match a.first() {
                Some(first) => probe = first,
                None => break,
            }
        }
        let mut flat = Vec::new();
        flatten(v, &shape, &mut flat)?;
        let leaves = if flat.iter().all(|x| x.is_boolean()) {
            Leaves::Bool(flat.iter().filter_map(|x| x.as_bool()).collect())
        } else if flat.iter().all(|x| x.is_i64()) {
            Leaves::Int(flat.iter().filter_map(|x| x.as_i64()).collect())
        } else if flat.iter().all(|x| x.is_number()) {
            Leaves::Float(flat.iter().filter_map(|x| x.as_f64()).collect())
        } else {
            let odd = flat.iter().copied().find(|x| !x.is_number()).unwrap_or(v);
            bail!(
                "{} is not a number, a boolean or an array of them (and numbers and booleans \
                 do not mix); only those become tensors (item keys are in each shard's \
                 metadata)",
                short(odd)
            );
        };
        Ok(MetaValue { shape, leaves })
    }

    /// The dtype it is written as: bool, int64, or `float` for other numbers.
    pub fn natural_dtype(&self, float: Dtype) -> Dtype {
        match self.leaves {
            Leaves::Bool(_) => Dtype::BOOL,
            Leaves::Int(_) => Dtype::I64,
            Leaves::Float(_) => float,
        }
    }

    /// Appends the leaves as `dtype` (integers also go into a float column; nothing else
    /// changes kind).
    pub fn append(&self, dtype: Dtype, buf: &mut Vec<u8>) -> Result<()> {
        let floats = |v: &mut dyn Iterator<Item = f64>, buf: &mut Vec<u8>| -> Result<()> {
            for x in v {
                match dtype {
                    Dtype::F64 => buf.extend_from_slice(&x.to_le_bytes()),
                    Dtype::F32 => buf.extend_from_slice(&(x as f32).to_le_bytes()),
                    Dtype::F16 => buf.extend_from_slice(&f16::from_f32(x as f32).to_le_bytes()),
                    Dtype::BF16 => buf.extend_from_slice(&bf16::from_f32(x as f32).to_le_bytes()),
                    _ => bail!("numbers cannot be written as {dtype}"),
                }
            }
            Ok(())
        };
        match (&self.leaves, dtype) {
            (Leaves::Bool(v), Dtype::BOOL) => buf.extend(v.iter().map(|&b| b as u8)),
            (Leaves::Int(v), Dtype::I64) => v
                .iter()
                .for_each(|x| buf.extend_from_slice(&x.to_le_bytes())),
            (Leaves::Int(v), _) => floats(&mut v.iter().map(|&x| x as f64), buf)?,
            (Leaves::Float(v), Dtype::F64 | Dtype::F32 | Dtype::F16 | Dtype::BF16) => {
                floats(&mut v.iter().copied(), buf)?
            }
            (l, d) => bail!("{} cannot be written as {d}", leaf_kind(l)),
        }
        Ok(())
    }
}

fn leaf_kind(l: &Leaves) -> &'static str {
    match l {
        Leaves::Bool(_) => "a boolean",
        Leaves::Int(_) => "an integer",
        Leaves::Float(_) => "a fractional number",
    }
}

fn flatten<'v>(v: &'v Value, shape: &[usize], out: &mut Vec<&'v Value>) -> Result<()> {
    match (v, shape.split_first()) {
        (Value::Array(a), Some((&n, rest))) => {
            if a.len() != n {
                bail!(
                    "arrays of different lengths ({} and {n}) are not a tensor",
                    a.len()
                );
            }
            a.iter().try_for_each(|x| flatten(x, rest, out))
        }
        (Value::Array(_), None) => bail!("arrays nested unevenly are not a tensor"),
        (_, Some(_)) => bail!("{} sits where an array was expected", short(v)),
        (_, None) => {
            out.push(v);
            Ok(())
        }
    }
}

fn short(v: &Value) -> String {
    let s = v.to_string();
    if s.chars().count() > 60 {
        format!("{}...", s.chars().take(57).collect::<String>())
    } else {
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn f32s(b: &[u8]) -> Vec<f32> {
        bytemuck::pod_collect_to_vec(b)
    }

    #[test]
    fn a_fortran_ordered_volume_is_written_in_c_order() {
        // Voxel (i, j, k) holds 100i + 10j + k; the volume stores i fastest.
        let dims = [2usize, 3, 4];
        let mut v = Vec::new();
        for k in 0..4 {
            for j in 0..3 {
                for i in 0..2 {
                    v.push((100 * i + 10 * j + k) as f32);
                }
            }
        }
        let t = Tensor::volume(v, &dims);
        let mut buf = Vec::new();
        append_tensor(&t, Dtype::F32, &mut buf).unwrap();
        let got = f32s(&buf);
        let mut want = Vec::new();
        for i in 0..2 {
            for j in 0..3 {
                for k in 0..4 {
                    want.push((100 * i + 10 * j + k) as f32);
                }
            }
        }
        assert_eq!(got, want);
    }

    #[test]
    fn half_and_bfloat16_round_to_nearest_even_from_float32() {
        // 1 + 2^-11 lies halfway between two f16 values: even mantissa (1.0) wins; 1 + 3*2^-11
        // rounds up to 1 + 2^-9. For bf16 the same with 2^-8 halfway points.
        let vals = [
            1.0f32,
            1.0 + 2f32.powi(-11),
            1.0 + 3.0 * 2f32.powi(-11),
            1.0 + 2f32.powi(-8),
            1.0 + 3.0 * 2f32.powi(-8),
            -2.5,
            65504.0,
        ];
        let t = Tensor::from_vec(vals.to_vec(), &[vals.len()]);
        let mut h = Vec::new();
        append_tensor(&t, Dtype::F16, &mut h).unwrap();
        let h: Vec<u16> = bytemuck::pod_collect_to_vec(&h);
        assert_eq!(h[0], 0x3c00);
        assert_eq!(h[1], 0x3c00, "halfway rounds to even");
        assert_eq!(h[2], 0x3c02, "halfway rounds to even (up)");
        assert_eq!(h[5], 0xc100);
        assert_eq!(h[6], 0x7bff);
        let mut b = Vec::new();
        append_tensor(&t, Dtype::BF16, &mut b).unwrap();
        let b: Vec<u16> = bytemuck::pod_collect_to_vec(&b);
        assert_eq!(b[0], 0x3f80);
        assert_eq!(b[3], 0x3f80, "halfway rounds to even");
        assert_eq!(b[4], 0x3f82, "halfway rounds to even (up)");
        assert_eq!(b[5], 0xc020);
    }

    #[test]
    fn integer_images_keep_their_bytes_or_become_float32() {
        let t = Tensor::from_vec(vec![-3i16, 0, 7, 300], &[2, 2]);
        let mut keep = Vec::new();
        append_tensor(&t, Dtype::I16, &mut keep).unwrap();
        assert_eq!(keep, bytemuck::cast_slice::<i16, u8>(&[-3, 0, 7, 300]));
        let mut f = Vec::new();
        append_tensor(&t, Dtype::F32, &mut f).unwrap();
        assert_eq!(f32s(&f), [-3.0, 0.0, 7.0, 300.0]);
        assert!(append_tensor(&t, Dtype::I64, &mut f).is_err());
    }

    #[test]
    fn metadata_numbers_booleans_and_arrays_become_rows() {
        let t = MetaValue::parse(&json!(417)).unwrap();
        assert_eq!(t.shape, Vec::<usize>::new());
        assert_eq!(t.natural_dtype(Dtype::F64), Dtype::I64);
        let mut buf = Vec::new();
        t.append(Dtype::I64, &mut buf).unwrap();
        assert_eq!(buf, 417i64.to_le_bytes());

        let s = MetaValue::parse(&json!([[1.5, 2], [3, 4]])).unwrap();
        assert_eq!(s.shape, [2, 2]);
        assert_eq!(s.leaves, Leaves::Float(vec![1.5, 2.0, 3.0, 4.0]));
        assert_eq!(s.natural_dtype(Dtype::F32), Dtype::F32);

        let b = MetaValue::parse(&json!([true, false])).unwrap();
        assert_eq!(b.natural_dtype(Dtype::F64), Dtype::BOOL);

        // An integer fits a float column; a fraction does not fit an integer one.
        let mut buf = Vec::new();
        t.append(Dtype::F32, &mut buf).unwrap();
        assert_eq!(f32s(&buf), [417.0]);
        assert!(s.append(Dtype::I64, &mut buf).is_err());

        for bad in [
            json!("T1"),
            json!(null),
            json!([1, [2]]),
            json!([[1], [2, 3]]),
        ] {
            assert!(MetaValue::parse(&bad).is_err(), "{bad}");
        }
        let e = MetaValue::parse(&json!("T1")).unwrap_err().to_string();
        assert!(e.contains("\"T1\" is not a number"), "{e}");
    }
}
