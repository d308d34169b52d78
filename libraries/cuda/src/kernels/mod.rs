//! Kernels, one file each: the `.cu` source, its CPU twin, the launch, and the parity tests.

pub mod scale_shift;
