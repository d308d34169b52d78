//! Linear layers: PyTorch's `y = x W^T + b`, `W` `[out, in]`. Small ones (time embedding) run
//! as plain loops; token-wise ones as row-blocked GEMMs.

use rayon::prelude::*;

use super::gemm::{Init, Seg, matmul};
use crate::unet::weights::Weights;

pub(crate) struct Linear {
    pub inputs: usize,
    pub outputs: usize,
    /// `[in][out]`.
    packed: Vec<f32>,
    pub bias: Vec<f32>,
}

impl Linear {
    /// `weight` `[out, in]` and `bias` `[out]` under `w`.
    pub fn load(w: &Weights, inputs: usize, outputs: usize) -> anyhow::Result<Linear> {
        let weight = w.get("weight", &[outputs, inputs])?;
        let bias = w.get("bias", &[outputs])?;
        Ok(Linear::from_torch(&weight, bias, inputs, outputs))
    }

    /// From PyTorch's `[out, in]` layout.
    pub fn from_torch(weight: &[f32], bias: Vec<f32>, inputs: usize, outputs: usize) -> Linear {
        assert_eq!(weight.len(), inputs * outputs);
        assert_eq!(bias.len(), outputs);
        let mut packed = vec![0.0; inputs * outputs];
        for o in 0..outputs {
            for i in 0..inputs {
                packed[i * outputs + o] = weight[o * inputs + i];
            }
        }
        Linear {
            inputs,
            outputs,
            packed,
            bias,
        }
    }

    /// Several layers side by side: one input, their outputs concatenated.
    pub fn concat(parts: &[Linear]) -> Linear {
        let inputs = parts[0].inputs;
        assert!(parts.iter().all(|p| p.inputs == inputs));
        let outputs = parts.iter().map(|p| p.outputs).sum();
        let mut packed = Vec::with_capacity(inputs * outputs);
        for i in 0..inputs {
            for p in parts {
                packed.extend_from_slice(&p.packed[i * p.outputs..(i + 1) * p.outputs]);
            }
        }
        let bias = parts.iter().flat_map(|p| p.bias.iter().copied()).collect();
        Linear {
            inputs,
            outputs,
            packed,
            bias,
        }
    }

    /// `rows` inputs of `inputs` floats each -> `rows x outputs`, in plain loops (for a few
    /// rows, where a GEMM call costs more than it saves).
    pub fn small(&self, x: &[f32]) -> Vec<f32> {
        let rows = x.len() / self.inputs;
        let mut out = Vec::with_capacity(rows * self.outputs);
        for row in x.chunks_exact(self.inputs) {
            let mut acc = self.bias.clone();
            for (&v, w) in row.iter().zip(self.packed.chunks_exact(self.outputs)) {
                for (a, &wv) in acc.iter_mut().zip(w) {
                    *a += v * wv;
                }
            }
            out.extend_from_slice(&acc);
        }
        out
    }

    /// `dst[r] = bias + x[r] W^T` for `x` `[rows][inputs]`, `dst` `[rows][outputs]`, in
    /// parallel row blocks.
    pub fn rows(&self, x: &[f32], dst: &mut [f32]) {
        let rows = x.len() / self.inputs;
        assert_eq!(x.len(), rows * self.inputs);
        assert_eq!(dst.len(), rows * self.outputs);
        let block = rows
            .div_ceil(4 * rayon::current_num_threads())
            .clamp(16, 256);
        let (inputs, outputs) = (self.inputs, self.outputs);
        dst.par_chunks_mut(block * outputs)
            .enumerate()
            .for_each(|(b, d)| {
                let m = d.len() / outputs;
                let seg = Seg {
                    a: x[b * block * inputs..].as_ptr(),
                    a_rs: inputs,
                    k: inputs,
                    b: self.packed.as_ptr(),
                    ldb: outputs,
                };
                // SAFETY: rows b block .. + m of x, the [in][out] weights, this task's rows of dst.
                let init = Init::Bias {
                    bias: self.bias.as_ptr(),
                    residual: None,
                };
                // SAFETY: as above; the bias has `outputs` values.
                unsafe { matmul(m, outputs, &[seg], d.as_mut_ptr(), outputs, init, 1.0) };
            });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::unet::layers::tensor::testing::{on_both_paths, rel_err, values};

    fn naive(x: &[f32], w: &[f32], b: &[f32], inputs: usize, outputs: usize) -> Vec<f32> {
        x.chunks_exact(inputs)
            .flat_map(|row| {
                (0..outputs).map(move |o| {
                    b[o] + row
                        .iter()
                        .enumerate()
                        .map(|(i, &v)| v as f64 * w[o * inputs + i] as f64)
                        .sum::<f64>() as f32
                })
            })
            .collect()
    }

    #[test]
    fn linear_rows_small_and_concat_agree_with_x_w_transpose_plus_b() {
        on_both_paths(|| {
            let (rows, inputs, outputs) = (37, 7, 5);
            let x = values(rows * inputs, 1);
            let w = values(outputs * inputs, 2);
            let b = values(outputs, 3);
            let want = naive(&x, &w, &b, inputs, outputs);
            let lin = Linear::from_torch(&w, b.clone(), inputs, outputs);
            let mut got = vec![f32::NAN; rows * outputs];
            lin.rows(&x, &mut got);
            assert!(rel_err(&got, &want) < 1e-6);
            assert!(rel_err(&lin.small(&x), &want) < 1e-6);
            let w2 = values(3 * inputs, 4);
            let b2 = values(3, 5);
            let both = Linear::concat(&[lin, Linear::from_torch(&w2, b2.clone(), inputs, 3)]);
            let want2 = naive(&x, &w2, &b2, inputs, 3);
            let mut got = vec![f32::NAN; rows * 8];
            both.rows(&x, &mut got);
            for r in 0..rows {
                assert!(rel_err(&got[r * 8..r * 8 + 5], &want[r * 5..r * 5 + 5]) < 1e-6);
                assert!(rel_err(&got[r * 8 + 5..r * 8 + 8], &want2[r * 3..r * 3 + 3]) < 1e-6);
            }
        });
    }
}
