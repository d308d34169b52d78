// y[i] = x[i] * scale + shift: a linear intensity map (DICOM rescale slope/intercept, z-score
// with precomputed mean and std). Two roundings, as in the CPU twin: compiled with --fmad=false.
extern "C" __global__ void scale_shift(float* y, const float* x, float scale, float shift,
                                       unsigned int n) {
    unsigned int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) {
        y[i] = x[i] * scale + shift;
    }
}
