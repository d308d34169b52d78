//! The UNet's building operations on padded NHWC activations.

pub(crate) mod attention;
pub(crate) mod conv;
pub(crate) mod gemm;
pub(crate) mod kernel;
pub(crate) mod linear;
pub(crate) mod norm;
pub(crate) mod resample;
pub(crate) mod simd;
pub(crate) mod tensor;
pub(crate) mod winograd;
