// Philox4x32-10 and the float conversions of mindscan-random (src/lib.rs), operation for operation: compiled
// with --fmad=false these give the CPU's bits.

struct u32x4 { unsigned int x, y, z, w; };

__device__ __forceinline__ u32x4 philox4x32_10(u32x4 c, unsigned int k0, unsigned int k1) {
    #pragma unroll
    for (int r = 0; r < 10; ++r) {
        if (r > 0) { k0 += 0x9E3779B9u; k1 += 0xBB67AE85u; }
        unsigned int hi0 = __umulhi(0xD2511F53u, c.x), lo0 = 0xD2511F53u * c.x;
        unsigned int hi1 = __umulhi(0xCD9E8D57u, c.z), lo1 = 0xCD9E8D57u * c.z;
        u32x4 n = { hi1 ^ c.y ^ k0, lo1, hi0 ^ c.w ^ k1, lo0 };
        c = n;
    }
    return c;
}

// Stream address: key from the seed, counter [n_lo, n_hi, variant, slot << 8 | purpose].
struct Stream { unsigned int k0, k1, variant, tag; };

__device__ __forceinline__ u32x4 stream_block(Stream s, unsigned long long n) {
    u32x4 c = { (unsigned int)n, (unsigned int)(n >> 32), s.variant, s.tag };
    return philox4x32_10(c, s.k0, s.k1);
}

__device__ __forceinline__ float unit_f32(unsigned int w) {
    return (float)(w >> 8) * (1.0f / 16777216.0f);
}

__device__ __forceinline__ float det_ln(float x) {
    unsigned int bits = __float_as_uint(x);
    int e = (int)((bits >> 23) & 0xff) - 127;
    float m = __uint_as_float((bits & 0x007fffffu) | 0x3f800000u);
    if (m > 1.41421356237309504880f) { m *= 0.5f; e += 1; }
    float s = (m - 1.0f) / (m + 1.0f);
    float s2 = s * s;
    float p = 1.0f / 9.0f;
    p = p * s2 + 1.0f / 7.0f;
    p = p * s2 + 1.0f / 5.0f;
    p = p * s2 + 1.0f / 3.0f;
    p = p * s2 + 1.0f;
    return (float)e * 0.693147180559945309417f + 2.0f * s * p;
}

__device__ __forceinline__ void det_sincos_turns(float t, float* sn, float* cs) {
    int q = (int)(t * 4.0f + 0.5f);
    float r = (t - (float)q * 0.25f) * 6.28318530717958647692f;
    float r2 = r * r;
    float s = r * (1.0f + r2 * (-1.0f / 6.0f + r2 * (1.0f / 120.0f + r2 * (-1.0f / 5040.0f + r2 / 362880.0f))));
    float c = 1.0f + r2 * (-0.5f + r2 * (1.0f / 24.0f + r2 * (-1.0f / 720.0f + r2 * (1.0f / 40320.0f))));
    switch (q & 3) {
        case 0: *sn = s; *cs = c; break;
        case 1: *sn = c; *cs = -s; break;
        case 2: *sn = -s; *cs = -c; break;
        default: *sn = -c; *cs = s; break;
    }
}

__device__ __forceinline__ void box_muller(unsigned int w0, unsigned int w1, float* a, float* b) {
    float u1 = (float)((w0 >> 8) + 1u) * (1.0f / 16777216.0f);
    float r = sqrtf(-2.0f * det_ln(u1));
    float sn, cs;
    det_sincos_turns(unit_f32(w1), &sn, &cs);
    *a = r * cs;
    *b = r * sn;
}

// Standard normal number `idx % 4` of block `idx / 4`.
__device__ __forceinline__ float normal_at(Stream s, unsigned long long idx) {
    u32x4 w = stream_block(s, idx >> 2);
    float a, b;
    unsigned int lane = (unsigned int)(idx & 3);
    if (lane < 2) box_muller(w.x, w.y, &a, &b); else box_muller(w.z, w.w, &a, &b);
    return (lane & 1) ? b : a;
}
