// Fused spatial resampling (CPU twin: exec/warp.rs resample). One thread per output voxel
// composes the chain of voxel-space steps, then interpolates the input once. Steps, packed as
// floats in evaluation order:
//   linear:  [0, m00 m01 m02 m03  m10 .. m13  m20 .. m23]              (13 floats)
//   elastic: [1, n0, n1, n2, scale0, scale1, scale2, offset]            (8 floats)
// with elastic coefficients (3 floats per control point, i fastest) at `coef + offset`.

__device__ __forceinline__ void bspline(float u, int cells, int* first, float w[4]) {
    int cell = u < 0.0f ? 0 : (int)u;
    if (cell > cells - 1) cell = cells - 1;
    if (cell < 0) cell = 0;
    float t = u - (float)cell;
    float it = 1.0f - t;
    float t2 = t * t;
    float t3 = t2 * t;
    w[0] = it * it * it / 6.0f;
    w[1] = (3.0f * t3 - 6.0f * t2 + 4.0f) / 6.0f;
    w[2] = (-3.0f * t3 + 3.0f * t2 + 3.0f * t + 1.0f) / 6.0f;
    w[3] = t3 / 6.0f;
    *first = cell;
}

__device__ __forceinline__ bool inside(float x, float y, float z, unsigned int ni, unsigned int nj, unsigned int nk) {
    return x >= -0.5f && y >= -0.5f && z >= -0.5f &&
           x < (float)ni - 0.5f && y < (float)nj - 0.5f && z < (float)nk - 0.5f;
}

__device__ __forceinline__ int clampi(int v, int lo, int hi) { return v < lo ? lo : (v > hi ? hi : v); }

// floor(x) for x >= -1 by truncation, exactly as the CPU twin computes it.
__device__ __forceinline__ int floor_m1(float x) { return (int)(x + 1.0f) - 1; }

extern "C" __global__ void warp(float* out, const float* src, unsigned int ni, unsigned int nj,
                                unsigned int nk, const float* steps, unsigned int n_words,
                                const float* coef, int nearest, float pad) {
    unsigned long long n = (unsigned long long)ni * nj * nk;
    unsigned long long idx = (unsigned long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (idx >= n) return;
    float p[3] = { (float)(idx % ni), (float)((idx / ni) % nj), (float)(idx / ((unsigned long long)ni * nj)) };
    unsigned int at = 0;
    while (at < n_words) {
        if (steps[at] == 0.0f) {
            const float* m = steps + at + 1;
            float q[3];
            // The first step on the grid sums as the CPU twin does (row start, then i).
            for (int a = 0; a < 3; ++a)
                q[a] = at == 0 ? m[4 * a] * p[0] + (m[4 * a + 1] * p[1] + m[4 * a + 2] * p[2]) + m[4 * a + 3]
                               : m[4 * a] * p[0] + m[4 * a + 1] * p[1] + m[4 * a + 2] * p[2] + m[4 * a + 3];
            p[0] = q[0]; p[1] = q[1]; p[2] = q[2];
            at += 13;
        } else {
            int nc[3] = { (int)steps[at + 1], (int)steps[at + 2], (int)steps[at + 3] };
            float sc[3] = { steps[at + 4], steps[at + 5], steps[at + 6] };
            const float* c = coef + (unsigned int)steps[at + 7];
            int f[3];
            float w[3][4];
            for (int a = 0; a < 3; ++a) bspline(p[a] * sc[a], nc[a] - 3, &f[a], w[a]);
            float d[3] = { 0.0f, 0.0f, 0.0f };
            for (int z = 0; z < 4; ++z)
                for (int y = 0; y < 4; ++y) {
                    int base = nc[0] * ((f[1] + y) + nc[1] * (f[2] + z));
                    for (int x = 0; x < 4; ++x) {
                        float ww = w[0][x] * w[1][y] * w[2][z];
                        const float* v = c + 3 * (base + f[0] + x);
                        d[0] += ww * v[0]; d[1] += ww * v[1]; d[2] += ww * v[2];
                    }
                }
            p[0] += d[0]; p[1] += d[1]; p[2] += d[2];
            at += 8;
        }
    }
    if (!inside(p[0], p[1], p[2], ni, nj, nk)) { out[idx] = pad; return; }
    if (nearest) {
        int ii = clampi(floor_m1(p[0] + 0.5f), 0, ni - 1);
        int jj = clampi(floor_m1(p[1] + 0.5f), 0, nj - 1);
        int kk = clampi(floor_m1(p[2] + 0.5f), 0, nk - 1);
        out[idx] = src[ii + (unsigned long long)ni * (jj + (unsigned long long)nj * kk)];
        return;
    }
    int fx = floor_m1(p[0]), fy = floor_m1(p[1]), fz = floor_m1(p[2]);
    float tx = p[0] - (float)fx, ty = p[1] - (float)fy, tz = p[2] - (float)fz;
    int i0 = clampi(fx, 0, ni - 1), i1 = clampi(fx + 1, 0, ni - 1);
    int j0 = clampi(fy, 0, nj - 1), j1 = clampi(fy + 1, 0, nj - 1);
    int k0 = clampi(fz, 0, nk - 1), k1 = clampi(fz + 1, 0, nk - 1);
    unsigned long long sj = ni, sk = (unsigned long long)ni * nj;
#define AT(a, b, c) src[(a) + sj * (b) + sk * (c)]
    float c00 = AT(i0, j0, k0) + tx * (AT(i1, j0, k0) - AT(i0, j0, k0));
    float c10 = AT(i0, j1, k0) + tx * (AT(i1, j1, k0) - AT(i0, j1, k0));
    float c01 = AT(i0, j0, k1) + tx * (AT(i1, j0, k1) - AT(i0, j0, k1));
    float c11 = AT(i0, j1, k1) + tx * (AT(i1, j1, k1) - AT(i0, j1, k1));
#undef AT
    float c0 = c00 + ty * (c10 - c00);
    float c1 = c01 + ty * (c11 - c01);
    out[idx] = c0 + tz * (c1 - c0);
}
