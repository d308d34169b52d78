// Point-wise steps fused in one pass (CPU twin: exec/intensity.rs run_points). One thread per
// voxel runs every step in order. Compiled after philox.cuh (prepended by kernels.rs). Steps are packed as doubles:
//   gamma: [0, g]
//   noise: [1, mean, std, rician, k0, k1, variant, tag_a, tag_b]
//   bias:  [2, order, n_terms, (px, py, pz, c) * n_terms]

__device__ __forceinline__ double axis_coord(unsigned int i, unsigned int n) {
    if (n <= 1) return 0.0;
    double half = ((double)n - 1.0) / 2.0;
    return ((double)i - half) / half;
}

__device__ __forceinline__ double ipow(double x, int p) {
    double r = 1.0;
    for (int k = 0; k < p; ++k) r *= x;
    return r;
}

extern "C" __global__ void points(float* data, unsigned int ni, unsigned int nj, unsigned int nk,
                                  const double* steps, unsigned int n_words) {
    unsigned long long n = (unsigned long long)ni * nj * nk;
    unsigned long long idx = (unsigned long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (idx >= n) return;
    unsigned int i = (unsigned int)(idx % ni);
    unsigned int j = (unsigned int)((idx / ni) % nj);
    unsigned int k = (unsigned int)(idx / ((unsigned long long)ni * nj));
    float v = data[idx];
    unsigned int at = 0;
    while (at < n_words) {
        int kind = (int)steps[at];
        if (kind == 0) {
            float g = (float)steps[at + 1];
            float s = v > 0.0f ? 1.0f : (v < 0.0f ? -1.0f : 0.0f);
            v = s * powf(fabsf(v), g);
            if (isnan(v)) v = 0.0f;
            at += 2;
        } else if (kind == 1) {
            float mean = (float)steps[at + 1], std = (float)steps[at + 2];
            bool rician = steps[at + 3] != 0.0;
            Stream a = { (unsigned int)steps[at + 4], (unsigned int)steps[at + 5],
                         (unsigned int)steps[at + 6], (unsigned int)steps[at + 7] };
            float n1 = normal_at(a, idx);
            if (!rician) {
                v = v + mean + std * n1;
            } else {
                Stream b = a;
                b.tag = (unsigned int)steps[at + 8];
                float n2 = normal_at(b, idx);
                float re = v + mean + std * n1;
                float im = std * n2;
                v = sqrtf(re * re + im * im);
            }
            at += 9;
        } else {
            int order = (int)steps[at + 1];
            unsigned int terms = (unsigned int)steps[at + 2];
            double x = axis_coord(i, ni), y = axis_coord(j, nj), z = axis_coord(k, nk);
            double e = 0.0;
            for (unsigned int t = 0; t < terms; ++t) {
                const double* q = steps + at + 3 + 4 * t;
                e += q[3] * ipow(x, (int)q[0]) * ipow(y, (int)q[1]) * ipow(z, (int)q[2]);
            }
            (void)order;
            v *= (float)exp(e);
            at += 3 + 4 * terms;
        }
    }
    data[idx] = v;
}
