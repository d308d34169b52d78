#!/usr/bin/env python3
"""Check TORCHIO_SEMANTICS.md against the TorchIO fixtures.

Every transform is re-implemented here from the formulas in
TORCHIO_SEMANTICS.md with numpy only (no TorchIO, no SimpleITK, no scipy),
applied to `input.f32.gz`, and compared with the fixture TorchIO wrote.
If a formula in the notes is wrong, its case fails here.  This is also a
compact executable reference for the Rust port.

    bench/.venv-torch/bin/python bench/augment/verify_semantics.py
"""

from __future__ import annotations

import gzip
import json
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
FIX = REPO / 'libraries' / 'augment' / 'tests' / 'fixtures' / 'torchio'
LPS = np.diag([-1.0, -1.0, 1.0])


def load(name: str):
    meta = json.loads((FIX / f'{name}.json').read_text())
    raw = gzip.decompress((FIX / f'{name}.f32.gz').read_bytes())
    arr = np.frombuffer(raw, dtype='<f4').reshape(meta['shape'], order='F')
    return arr, meta


# ---------------------------------------------------------------- geometry
def rx(t):
    c, s = np.cos(t), np.sin(t)
    return np.array([[1, 0, 0], [0, c, -s], [0, s, c]])


def ry(t):
    c, s = np.cos(t), np.sin(t)
    return np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]])


def rz(t):
    c, s = np.cos(t), np.sin(t)
    return np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])


def axcodes(affine):
    """Orientation letters of the voxel axes (largest component of each column)."""
    codes = []
    for j in range(3):
        col = affine[:3, j]
        k = int(np.argmax(np.abs(col)))
        codes.append(('RAS' if col[k] > 0 else 'LPI')[k])
    return codes


def sample_linear(vol, u):
    """ITK linear interpolation at continuous indices u (..., 3).

    Inside iff -0.5 <= u < n - 0.5 on every axis; neighbour indices are
    clamped to [0, n-1].  Returns (values, inside-mask).
    """
    n = np.array(vol.shape)
    inside = np.all((u >= -0.5) & (u < n - 0.5), axis=-1)
    base = np.floor(u).astype(np.int64)
    frac = u - base
    out = np.zeros(u.shape[:-1])
    for corner in range(8):
        bits = [(corner >> d) & 1 for d in range(3)]
        idx = [np.clip(base[..., d] + bits[d], 0, n[d] - 1) for d in range(3)]
        w = np.ones(u.shape[:-1])
        for d in range(3):
            w = w * (frac[..., d] if bits[d] else 1 - frac[..., d])
        out += w * vol[idx[0], idx[1], idx[2]]
    return out, inside


def sample_nearest(vol, u):
    n = np.array(vol.shape)
    inside = np.all((u >= -0.5) & (u < n - 0.5), axis=-1)
    idx = np.clip(np.floor(u + 0.5).astype(np.int64), 0, n - 1)
    return vol[idx[..., 0], idx[..., 1], idx[..., 2]], inside


def voxel_grid(shape):
    g = np.stack(np.meshgrid(*[np.arange(n, dtype=float) for n in shape], indexing='ij'), -1)
    return g


def warp(vol, affine, world_map, pad, interp='linear'):
    """output[v] = vol(A^-1 world_map(A v)); world_map works on RAS points (..., 3)."""
    v = voxel_grid(vol.shape)
    x = v @ affine[:3, :3].T + affine[:3, 3]
    y = world_map(x)
    u = (y - affine[:3, 3]) @ np.linalg.inv(affine[:3, :3]).T
    f = sample_linear if interp == 'linear' else sample_nearest
    val, inside = f(vol.astype(np.float64), u)
    return np.where(inside, val, pad)


# ---------------------------------------------------------------- transforms
def t_flip(x, a, kw):
    codes = axcodes(a)
    opposite = dict(zip('LRAPIS', 'RLPASI'))
    axes = []
    for label in kw['axes']:
        letter = label[0].upper()
        axes.append(codes.index(letter) if letter in codes else codes.index(opposite[letter]))
    return np.flip(x, axis=tuple(sorted(axes)))


def t_affine(x, a, kw):
    s = np.array(kw['scales'], float)
    th = np.radians(kw['degrees'])
    t = np.array(kw['translation'], float)
    n = np.array(x.shape)
    c = a[:3, :3] @ ((n - 1) / 2) + a[:3, 3] if kw['center'] == 'image' else np.zeros(3)
    r = rz(th[2]) @ rx(th[0]) @ ry(th[1])  # RAS, right-handed about +x,+y,+z

    def inverse_forward(y):  # F(x) = c + S (R (x - c) + t)  ->  F^-1(y)
        return c + ((y - c) / s - t) @ r  # (..)@r == R^T applied to row vectors

    return warp(x, a, inverse_forward, float(kw['default_pad_value']))


def bspline3(t):
    t = np.abs(t)
    return np.where(t < 1, (4 - 6 * t**2 + 3 * t**3) / 6, np.where(t < 2, (2 - t) ** 3 / 6, 0.0))


def t_elastic(x, a, kw):
    cp = np.array(kw['control_points'], float)  # [gx, gy, gz, comp], LPS grid and components
    n = np.array(x.shape)
    ncp = np.array(cp.shape[:3])
    # ITK image in LPS: index -> LPS point
    m_lps = LPS @ a[:3, :3]
    o_lps = LPS @ a[:3, 3]
    spacing = np.linalg.norm(a[:3, :3], axis=0)
    corners = []
    for k in range(8):
        idx = np.array([(n[d] - 0.5) if (k >> d) & 1 else -0.5 for d in range(3)])
        corners.append(m_lps @ idx + o_lps)
    corners = np.array(corners)
    # axis-aligned (LPS) bounding box; each LPS axis is padded by 1/8 of the
    # spacing of the voxel axis that runs along it
    owner = np.argmax(np.abs(m_lps), axis=1)  # LPS axis d runs along voxel axis owner[d]
    pad = 0.125 * spacing[owner]
    lo = corners.min(0) - pad
    hi = corners.max(0) + pad
    gsp = (hi - lo) / (ncp - 3)
    gorigin = lo - gsp
    v = voxel_grid(x.shape)
    p = v @ m_lps.T + o_lps
    ug = (p - gorigin) / gsp
    start = np.floor(ug - 1).astype(np.int64)
    disp = np.zeros_like(p)
    for i in range(4):
        wi = bspline3(ug[..., 0] - (start[..., 0] + i))
        for j in range(4):
            wj = bspline3(ug[..., 1] - (start[..., 1] + j))
            for k in range(4):
                wk = bspline3(ug[..., 2] - (start[..., 2] + k))
                c = cp[start[..., 0] + i, start[..., 1] + j, start[..., 2] + k]
                disp += (wi * wj * wk)[..., None] * c
    q = p + disp  # output(p) = input(p + d(p)), LPS
    u = (q - o_lps) @ np.linalg.inv(m_lps).T
    val, inside = sample_linear(x.astype(np.float64), u)
    return np.where(inside, val, x.min())


def t_anisotropy(x, a, kw):
    axis = kw['axes'][0]
    factor = kw['downsampling'][0]
    n = np.array(x.shape)
    spacing = np.linalg.norm(a[:3, :3], axis=0)
    new_sp = spacing.copy()
    new_sp[axis] *= factor
    new_n = np.floor(n * spacing / new_sp).astype(int)
    new_n[n == 1] = 1
    dirs = a[:3, :3] / spacing
    centre = a[:3, :3] @ ((n - 1) / 2) + a[:3, 3]
    a_low = np.eye(4)
    a_low[:3, :3] = dirs * new_sp
    a_low[:3, 3] = centre - dirs @ ((new_n - 1) / 2 * new_sp)
    # downsample: nearest, default 0
    v = voxel_grid(tuple(new_n))
    world = v @ a_low[:3, :3].T + a_low[:3, 3]
    u = (world - a[:3, 3]) @ np.linalg.inv(a[:3, :3]).T
    val, inside = sample_nearest(x, u)
    low = np.where(inside, val, 0).astype(np.float32)
    # upsample back: linear, default 0
    v = voxel_grid(x.shape)
    world = v @ a[:3, :3].T + a[:3, 3]
    u = (world - a_low[:3, 3]) @ np.linalg.inv(a_low[:3, :3]).T
    val, inside = sample_linear(low.astype(np.float64), u)
    return np.where(inside, val, 0)


def t_bias(x, a, kw):
    order = kw['order']
    coeffs = kw['coefficients']
    axes = []
    for n in x.shape:
        r = np.arange(n) - (n - 1) / 2
        axes.append(r / r.max() if r.max() > 0 else r)
    X, Y, Z = np.meshgrid(*axes, indexing='ij')
    field = np.zeros(x.shape)
    i = 0
    for px in range(order + 1):
        for py in range(order + 1 - px):
            for pz in range(order + 1 - px - py):
                field += coeffs[i] * X**px * Y**py * Z**pz
                i += 1
    return x * np.exp(field).astype(np.float32)


def t_gamma(x, a, kw):
    g = kw['gamma']
    if x.min() < 0:
        return np.sign(x) * np.abs(x.astype(np.float64)) ** g
    return x.astype(np.float64) ** g


def gauss_1d(vol, sigma, axis):
    if sigma <= 0:
        return vol
    radius = int(4.0 * sigma + 0.5)
    k = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma) ** 2)
    k /= k.sum()
    v = np.moveaxis(vol.astype(np.float64), axis, 0)
    n = v.shape[0]
    idx = np.arange(-radius, n + radius)
    # 'reflect' = half-sample symmetric: d c b a | a b c d | d c b a
    period = 2 * n
    idx = np.mod(idx, period)
    idx = np.where(idx >= n, period - 1 - idx, idx)
    padded = v[idx]
    out = np.zeros_like(v)
    for j, w in enumerate(k):
        out += w * padded[j:j + n]
    return np.moveaxis(out, 0, axis).astype(np.float32)  # float32 between passes


def t_blur(x, a, kw):
    spacing = np.linalg.norm(a[:3, :3], axis=0)
    sig = np.array(kw['std']) / spacing
    out = x
    for axis in range(3):
        out = gauss_1d(out, sig[axis], axis)
    return out


def fft_c(x):
    return np.fft.fftshift(np.fft.fftn(x))


def ifft_c(s):
    return np.fft.ifftn(np.fft.ifftshift(s)).real


def t_ghosting(x, a, kw):
    s = fft_c(x.astype(np.float64))
    axis, ng, inten, restore = kw['axis'], kw['num_ghosts'], kw['intensity'], kw['restore']
    n = x.shape[axis]
    mid = n // 2
    if restore is None:
        lo, hi = mid, mid + 1
    else:
        size = int(np.round(restore * n))
        lo, hi = mid - size // 2, mid + size // 2
    keep = np.take(s, np.arange(lo, hi), axis=axis).copy()
    sl = [slice(None)] * 3
    sl[axis] = slice(None, None, ng)
    s[tuple(sl)] *= 1 - inten
    sl[axis] = slice(lo, hi)
    s[tuple(sl)] = keep
    return ifft_c(s)


def t_spike(x, a, kw):
    s = fft_c(x.astype(np.float64))
    shape = np.array(x.shape)
    for pos in kw['spikes_positions']:
        i, j, k = np.floor(np.array(pos) * shape).astype(int)
        s[i, j, k] += np.abs(s).max() * kw['intensity']  # max re-read after each spike
    return ifft_c(s)


def t_motion(x, a, kw):
    deg = np.asarray(kw['degrees'], np.float32).astype(np.float64)
    tra = np.asarray(kw['translation'], np.float32).astype(np.float64)
    times = np.asarray(kw['times'], np.float32)
    images = [x.astype(np.float64)]
    for d, t in zip(deg, tra):
        th = np.radians(d)
        r_lps = rz(th[2]) @ rx(th[0]) @ ry(th[1])  # angles used as LPS angles

        def world_map(y_ras, r_lps=r_lps, t=t):  # sample at R y + t in LPS, about LPS origin
            y = y_ras @ LPS
            return (y @ r_lps.T + t) @ LPS

        images.append(warp(x, a, world_map, float(x.min())).astype(np.float32))
    spectra = [fft_c(im.astype(np.float64)) for im in images]
    idx = int(np.where(times > 0.5)[0].min()) if np.any(times > 0.5) else len(spectra) - 1
    spectra[0], spectra[idx] = spectra[idx], spectra[0]
    last = x.shape[2]
    bounds = list((last * times).astype(int)) + [last]
    out = np.empty_like(spectra[0])
    ini = 0
    for sp, fin in zip(spectra, bounds):
        out[..., ini:fin] = sp[..., ini:fin]
        ini = fin
    return ifft_c(out)


def t_swap(x, a, kw):
    y = x.copy()
    p = np.array(kw['patch_size'])
    for first, second in kw['locations']:
        f = tuple(slice(s, s + q) for s, q in zip(first, p))
        g = tuple(slice(s, s + q) for s, q in zip(second, p))
        pf, pg = y[f].copy(), y[g].copy()
        y[g] = pf
        y[f] = pg
    return y


def t_rescale(x, a, kw):
    lo, hi = np.percentile(x, kw['percentiles'])  # 'linear' method
    y = np.clip(x, lo, hi)
    in_min, in_max = y.min(), y.max()
    omin, omax = kw['out_min_max']
    return (y - in_min) / (in_max - in_min) * (omax - omin) + omin


def t_znorm(x, a, kw):
    return (x - x.mean(dtype=np.float64)) / x.std(ddof=1, dtype=np.float64)


IMPL = {
    'Flip': t_flip, 'Affine': t_affine, 'ElasticDeformation': t_elastic,
    'RandomAnisotropy': t_anisotropy, 'BiasField': t_bias, 'Gamma': t_gamma,
    'Blur': t_blur, 'Ghosting': t_ghosting, 'Spike': t_spike, 'Motion': t_motion,
    'Swap': t_swap, 'RescaleIntensity': t_rescale, 'ZNormalization': t_znorm,
}
# max |ours - torchio| / (max(torchio) - min(torchio)) allowed per transform
TOL = {'Motion': 2e-5, 'Ghosting': 2e-6, 'Spike': 2e-6, 'ElasticDeformation': 1e-5}


def main() -> int:
    x, xin = load('input')
    a = np.array(xin['affine_ras'])
    failed = 0
    for f in sorted(FIX.glob('*.json')):
        if f.stem == 'input':
            continue
        ref, meta = load(f.stem)
        ours = IMPL[meta['transform']](x, a, meta['kwargs'])
        ref64 = ref.astype(np.float64)
        span = float(ref64.max() - ref64.min()) or 1.0
        err = np.abs(np.asarray(ours, np.float64) - ref64)
        rel = float(err.max()) / span
        tol = TOL.get(meta['transform'], 1e-6)
        ok = rel <= tol
        failed += not ok
        print(f'{"ok  " if ok else "FAIL"} {f.stem:30s} max|diff|={err.max():.3e} '
              f'rel={rel:.2e} (tol {tol:.0e}) n>1e-3*span={int((err > 1e-3 * span).sum())}')
    print(f'{failed} failed')
    return 1 if failed else 0


if __name__ == '__main__':
    sys.exit(main())
