#!/usr/bin/env python3
"""Regenerate the TorchIO reference fixtures for the Rust `augment` stage.

Writes `libraries/augment/tests/fixtures/torchio/`:

* `input.f32.gz` + `input.json`: tests/data/nifti/anatomical.nii as float32.
* `<case>.f32.gz` + `<case>.json` for every case in CASES: the output of the
  *deterministic* TorchIO class (Flip, Affine, BiasField, ...) run with fixed
  parameters on that input.

Voxel files: gzip (level 9, mtime 0, no file name) of little-endian float32
voxels in NIfTI order, i fastest (numpy array [x, y, z] written order='F').
Affines are TorchIO's (RAS+, as nibabel reports them).

Runs single-threaded (torch and ITK) so that reductions and resampling give
the same bytes on every run.  Run with bench/.venv-torch/bin/python (see
bench/augment/setup.sh).  `--check` regenerates into a temporary folder and
compares byte for byte with the committed files.  `--extras` adds three
cases (EXTRA_CASES) that are not committed, to keep the folder under 2 MB.
"""

from __future__ import annotations

import argparse
import copy
import filecmp
import gzip
import hashlib
import io
import json
import sys
import tempfile
import warnings
from pathlib import Path

import nibabel
import numpy as np
import SimpleITK as sitk
import torch
import torchio as tio

REPO = Path(__file__).resolve().parents[2]
INPUT = REPO / 'tests' / 'data' / 'nifti' / 'anatomical.nii'
DEFAULT_OUT = REPO / 'libraries' / 'augment' / 'tests' / 'fixtures' / 'torchio'

# 20 fixed bias-field coefficients for order 3, in TorchIO's loop order
# (x_order outer, then y_order, then z_order; see BIAS_TERMS below).
BIAS_COEFFICIENTS = [
    0.10, -0.20, 0.05, 0.15, 0.25, -0.10, 0.08, -0.12, 0.06, 0.04,
    -0.30, 0.07, -0.05, 0.20, -0.15, 0.09, 0.12, -0.08, 0.03, -0.18,
]
BIAS_TERMS = [
    [x, y, z]
    for x in range(4)
    for y in range(4 - x)
    for z in range(4 - x - y)
]

AFFINE_FULL = {
    'scales': [1.1, 0.9, 1.05],
    'degrees': [10.0, -5.0, 7.0],
    'translation': [3.0, -2.0, 1.0],
    'center': 'image',
    'default_pad_value': 0,
    'image_interpolation': 'linear',
}


def _elastic_control_points() -> list:
    """7x7x7x3 control-point displacements (mm, ITK/LPS components).

    U(-5, 5) from a fixed numpy generator, rounded to 1e-3 so that the JSON
    holds them exactly; the two outer layers of grid axes 0 and 1 are zero,
    which is what RandomElasticDeformation(locked_borders=2) produces (axis 2
    is not locked there).
    """
    rng = np.random.default_rng(20240607)
    cp = np.round(rng.uniform(-5.0, 5.0, size=(7, 7, 7, 3)), 3)
    for i in range(2):
        cp[i, :] = 0
        cp[-1 - i, :] = 0
        cp[:, i] = 0
        cp[:, -1 - i] = 0
    cp = cp + 0.0  # turn -0.0 into 0.0
    return cp.tolist()


# Cases written only with --extras: they would push the committed fixtures
# past 2 MB (full-volume float32 outputs hardly compress: ~80-120 kB each).
EXTRA_CASES = {'anisotropy_axis0_x2.5', 'ghosting_axis2_restore_none', 'swap'}

# name -> (TorchIO class name, JSON kwargs, note)
CASES: list[tuple[str, str, dict, str]] = [
    ('flip_lr', 'Flip', {'axes': ['LR']},
     "anatomical label; 'L' found in orientation ('L','A','S') -> voxel axis 0"),
    ('flip_ap', 'Flip', {'axes': ['AP']},
     "anatomical label; 'A' -> voxel axis 1"),
    ('affine_full', 'Affine', dict(AFFINE_FULL), 'scale+rotate+translate about the image centre'),
    ('affine_full_origin', 'Affine', dict(AFFINE_FULL, center='origin'),
     'same parameters, rotation/scaling about the world origin (0,0,0)'),
    ('affine_rot_z15', 'Affine',
     dict(AFFINE_FULL, scales=[1.0, 1.0, 1.0], degrees=[0.0, 0.0, 15.0], translation=[0.0, 0.0, 0.0]),
     'pure rotation of 15 degrees about the RAS S (z) axis through the image centre'),
    ('affine_translate_x4', 'Affine',
     dict(AFFINE_FULL, scales=[1.0, 1.0, 1.0], degrees=[0.0, 0.0, 0.0], translation=[4.0, 0.0, 0.0]),
     'pure translation 4 mm towards RAS +x (Right); LAS image -> content moves 2 voxels towards -i'),
    ('elastic_explicit', 'ElasticDeformation',
     {'control_points': _elastic_control_points(), 'max_displacement': [5.0, 5.0, 5.0],
      'image_interpolation': 'linear'},
     'extra case: fixed 7x7x7 control points (array [gx][gy][gz][component], ITK LPS grid)'),
    ('anisotropy_axis0_x2.5', 'RandomAnisotropy',
     {'axes': [0], 'downsampling': [2.5, 2.5], 'image_interpolation': 'linear'},
     'extra case: degenerate ranges make the Random class deterministic'),
    ('bias_order3', 'BiasField', {'coefficients': BIAS_COEFFICIENTS, 'order': 3}, ''),
    ('gamma_0.8', 'Gamma', {'gamma': 0.8},
     'raw input has negative values, so TorchIO uses sign(x)*|x|^gamma'),
    ('blur_2_2_2', 'Blur', {'std': [2.0, 2.0, 2.0]}, 'std in mm; spacing 2 mm -> sigma 1 voxel'),
    ('blur_1_3_0', 'Blur', {'std': [1.0, 3.0, 0.0]}, 'sigma (0.5, 1.5, 0) voxels; axis 2 untouched'),
    ('ghosting_axis0', 'Ghosting', {'num_ghosts': 4, 'axis': 0, 'intensity': 0.5, 'restore': 0.02},
     'restore 0.02 * 33 rounds to 1 -> empty restore slice'),
    ('ghosting_axis1', 'Ghosting', {'num_ghosts': 4, 'axis': 1, 'intensity': 0.5, 'restore': 0.02},
     'restore 0.02 * 41 rounds to 1 -> empty restore slice'),
    ('ghosting_axis2_restore_none', 'Ghosting',
     {'num_ghosts': 3, 'axis': 2, 'intensity': 0.8, 'restore': None},
     'extra case: restore None keeps only the central plane'),
    ('spike', 'Spike',
     {'spikes_positions': [[0.1, 0.2, 0.3], [0.7, 0.45, 0.6]], 'intensity': 0.5}, ''),
    ('motion', 'Motion',
     {'degrees': [[5.0, -3.0, 2.0], [-4.0, 6.0, 1.0]],
      'translation': [[2.0, -1.0, 3.0], [-3.0, 2.0, -1.0]],
      'times': [0.3, 0.65], 'image_interpolation': 'linear'},
     'degrees/translation/times are float32 arrays, as RandomMotion makes them'),
    ('swap', 'Swap',
     {'patch_size': [8, 8, 6], 'locations': [[[2, 3, 4], [20, 25, 15]], [[10, 30, 2], [24, 5, 16]]]},
     'extra case: two non-overlapping swaps, applied in order'),
    ('rescale_p0.5_99.5', 'RescaleIntensity', {'out_min_max': [0, 1], 'percentiles': [0.5, 99.5]}, ''),
    ('znorm', 'ZNormalization', {}, ''),
]


def _to_python(kwargs: dict, cls_name: str) -> dict:
    """JSON kwargs -> the Python objects the TorchIO class expects."""
    kw = copy.deepcopy(kwargs)
    for key in ('axes', 'scales', 'degrees', 'translation', 'std', 'out_min_max',
                'percentiles', 'downsampling', 'max_displacement', 'patch_size'):
        if key in kw and isinstance(kw[key], list) and cls_name != 'Motion':
            kw[key] = tuple(kw[key])
    if cls_name == 'Motion':
        for key in ('degrees', 'translation', 'times'):
            kw[key] = np.asarray(kw[key], dtype=np.float32)
    if cls_name == 'ElasticDeformation':
        kw['control_points'] = np.asarray(kw['control_points'], dtype=np.float64)
    if cls_name == 'Spike':
        kw['spikes_positions'] = np.asarray(kw['spikes_positions'], dtype=np.float64)
    if cls_name == 'Swap':
        kw['locations'] = [tuple(tuple(p) for p in pair) for pair in kw['locations']]
    return kw


def jsonable(obj):
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return jsonable(obj.tolist())
    if isinstance(obj, torch.Tensor):
        return jsonable(obj.tolist())
    if isinstance(obj, (np.floating,)):
        return float(obj)
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (bool, int, float, str)) or obj is None:
        return obj
    return repr(obj)


def gz_bytes(raw: bytes) -> bytes:
    buf = io.BytesIO()
    with gzip.GzipFile(filename='', mode='wb', compresslevel=9, fileobj=buf, mtime=0) as g:
        g.write(raw)
    return buf.getvalue()


def voxels_raw(arr: np.ndarray) -> bytes:
    assert arr.ndim == 3
    return np.asarray(arr, dtype='<f4').tobytes(order='F')


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def load_input() -> tio.ScalarImage:
    """anatomical.nii read by TorchIO, then cast to float32 (same affine)."""
    native = tio.ScalarImage(INPUT)
    return tio.ScalarImage(tensor=native.data.float(), affine=native.affine.copy())


def lps_index_to_physical(img: sitk.Image) -> np.ndarray:
    """4x4 matrix: ITK continuous index -> LPS physical point."""
    m = np.eye(4)
    d = np.array(img.GetDirection()).reshape(3, 3)
    m[:3, :3] = d * np.array(img.GetSpacing())
    m[:3, 3] = img.GetOrigin()
    return m


def voxel_map(transform: sitk.Transform, img: sitk.Image) -> list:
    """4x4 map output voxel index -> input (sampled) voxel index for a linear transform."""
    a = lps_index_to_physical(img)
    a_inv = np.linalg.inv(a)
    cols = []
    pts = [np.zeros(3), np.eye(3)[0], np.eye(3)[1], np.eye(3)[2]]
    mapped = []
    for p in pts:
        phys = a @ np.append(p, 1)
        q = np.array(transform.TransformPoint(phys[:3].tolist()))
        mapped.append((a_inv @ np.append(q, 1))[:3])
    m = np.eye(4)
    m[:3, 3] = mapped[0]
    for j in range(3):
        cols.append(mapped[j + 1] - mapped[0])
        m[:3, j] = cols[-1]
    return m.tolist()


def derived_info(name: str, cls_name: str, kwargs: dict, image: tio.ScalarImage) -> dict:
    """Intermediate quantities computed from TorchIO/ITK, to debug a port."""
    from torchio.data.io import nib_to_sitk

    info: dict = {}
    shape = np.array(image.spatial_shape)
    sitk_img = nib_to_sitk(image.data[:1], image.affine, force_3d=True)
    if cls_name == 'Affine':
        tr = tio.Affine(**_to_python(kwargs, cls_name))
        t = tr.get_affine_transform(image)
        info['image_center_ras'] = list(image.get_center())
        info['output_voxel_to_input_voxel'] = voxel_map(t, sitk_img)
        info['note'] = ('output[v] = interp(input, M @ v) with M = output_voxel_to_input_voxel; '
                        'outside -0.5 <= u < n-0.5 -> default_pad_value')
    elif cls_name == 'Motion':
        tr = tio.Motion(**_to_python(kwargs, cls_name))
        ts = tr.get_rigid_transforms(np.asarray(kwargs['degrees'], np.float32),
                                     np.asarray(kwargs['translation'], np.float32), sitk_img)
        info['output_voxel_to_input_voxel_per_movement'] = [voxel_map(t, sitk_img) for t in ts[1:]]
        times = np.asarray(kwargs['times'], dtype=np.float32)
        last = int(shape[2])
        bounds = [int(v) for v in (last * times).astype(int).tolist()] + [last]
        order = list(range(len(times) + 1))
        if np.any(times > 0.5):
            idx = int(np.where(times > 0.5)[0].min())
        else:
            idx = len(order) - 1
        order[0], order[idx] = order[idx], order[0]
        segs, ini = [], 0
        for src, fin in zip(order, bounds):
            segs.append({'k_from': ini, 'k_to': fin, 'image': 'original' if src == 0 else f'movement {src}'})
            ini = fin
        info['kspace_segments_along_axis2'] = segs
    elif cls_name == 'Ghosting':
        n = int(shape[kwargs['axis']])
        mid = n // 2
        r = kwargs['restore']
        if r is None:
            sl = [mid, mid + 1]
        else:
            size = int(np.round(r * n))
            sl = [mid - size // 2, mid + size // 2]
        info['planes_scaled'] = f'shifted-spectrum indices 0, {kwargs["num_ghosts"]}, ... along axis {kwargs["axis"]}'
        info['restored_slice_half_open'] = sl
    elif cls_name == 'Spike':
        pos = np.asarray(kwargs['spikes_positions'])
        info['spike_indices_in_shifted_spectrum'] = np.floor(pos * shape).astype(int).tolist()
    elif cls_name == 'BiasField':
        info['terms_xyz_exponents_in_coefficient_order'] = BIAS_TERMS
    elif cls_name == 'Blur':
        sig = np.array(kwargs['std']) / np.array(image.spacing)
        info['sigma_voxels'] = sig.tolist()
        info['kernel_radius_voxels'] = [int(4.0 * s + 0.5) if s > 0 else 0 for s in sig]
    elif cls_name == 'RescaleIntensity':
        vals = image.data.numpy().astype(np.float32).ravel()
        info['percentile_cutoffs'] = np.percentile(vals, kwargs['percentiles']).tolist()
    elif cls_name == 'ZNormalization':
        vals = image.data.float()
        info['mean'] = float(vals.mean())
        info['std_unbiased'] = float(vals.std())
    elif cls_name == 'ElasticDeformation':
        from torchio.transforms.augmentation.spatial.random_elastic_deformation import ElasticDeformation
        tr = ElasticDeformation(**_to_python(kwargs, cls_name))
        b = tr.get_bspline_transform(sitk_img)
        c = b.GetCoefficientImages()[0]
        info['grid_origin_lps'] = list(c.GetOrigin())
        info['grid_spacing'] = list(c.GetSpacing())
        info['grid_direction_lps'] = list(c.GetDirection())
        info['grid_size'] = list(c.GetSize())
    return info


def run_case(name: str, cls_name: str, kwargs: dict, note: str, input_meta: dict, out_dir: Path) -> None:
    image = load_input()
    subject = tio.Subject(image=image)
    cls = getattr(tio, cls_name, None)
    if cls is None:
        from torchio.transforms.augmentation.spatial.random_elastic_deformation import ElasticDeformation
        cls = {'ElasticDeformation': ElasticDeformation}[cls_name]
    transform = cls(**_to_python(kwargs, cls_name))
    torch.manual_seed(0)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter('always')
        result = transform(subject)
    out = result['image']
    data = out.data
    assert data.shape[0] == 1
    arr = data[0].numpy()
    assert arr.dtype == np.float32, (name, arr.dtype)
    raw = voxels_raw(arr)
    (out_dir / f'{name}.f32.gz').write_bytes(gz_bytes(raw))
    history = [{'name': n, 'arguments': jsonable(a)} for n, a in result.applied_transforms]
    if cls_name == 'ElasticDeformation':  # the control points are already in kwargs
        for h in history:
            h['arguments'].pop('control_points', None)
    meta = {
        'case': name,
        'transform': cls_name,
        'kwargs': kwargs,
        'note': note,
        'torchio_version': tio.__version__,
        'torch_version': torch.__version__,
        'simpleitk_version': sitk.Version_VersionString(),
        'numpy_version': np.__version__,
        'input': 'input.f32.gz',
        'input_sha256_f32': input_meta['sha256_f32'],
        'input_nifti_sha256': input_meta['nifti_sha256'],
        'output_file': f'{name}.f32.gz',
        'output_sha256_f32': sha256(raw),
        'dtype': 'float32 little-endian',
        'layout': 'NIfTI order, i fastest (numpy [x,y,z] order=F)',
        'shape': list(arr.shape),
        'affine_ras': np.asarray(out.affine, dtype=float).tolist(),
        'orientation': ''.join(out.orientation),
        'stats': {'min': float(arr.min()), 'max': float(arr.max()),
                  'mean': float(arr.astype(np.float64).mean())},
        'history': history,
        'derived': derived_info(name, cls_name, kwargs, load_input()),
        'warnings': sorted({str(w.message) for w in caught}),
    }
    (out_dir / f'{name}.json').write_text(json.dumps(meta, indent=1) + '\n')


def write_input(out_dir: Path) -> dict:
    image = load_input()
    arr = image.data[0].numpy()
    raw = voxels_raw(arr)
    (out_dir / 'input.f32.gz').write_bytes(gz_bytes(raw))
    meta = {
        'source': 'tests/data/nifti/anatomical.nii (nibabel test data, MIT)',
        'nifti_sha256': sha256(INPUT.read_bytes()),
        'sha256_f32': sha256(raw),
        'original_dtype': str(tio.ScalarImage(INPUT).data.dtype).replace('torch.', ''),
        'dtype': 'float32 little-endian',
        'layout': 'NIfTI order, i fastest (numpy [x,y,z] order=F)',
        'shape': list(arr.shape),
        'affine_ras': np.asarray(image.affine, dtype=float).tolist(),
        'orientation': ''.join(image.orientation),
        'spacing': list(image.spacing),
        'center_ras': [float(v) for v in image.get_center()],
        'stats': {'min': float(arr.min()), 'max': float(arr.max()),
                  'mean': float(arr.astype(np.float64).mean())},
        'torchio_version': tio.__version__,
        'torch_version': torch.__version__,
        'simpleitk_version': sitk.Version_VersionString(),
        'numpy_version': np.__version__,
        'nibabel_version': nibabel.__version__,
    }
    (out_dir / 'input.json').write_text(json.dumps(meta, indent=1) + '\n')
    return meta


def generate(out_dir: Path, only: list[str] | None = None, extras: bool = False) -> None:
    torch.set_num_threads(1)
    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(1)
    out_dir.mkdir(parents=True, exist_ok=True)
    input_meta = write_input(out_dir)
    for name, cls_name, kwargs, note in CASES:
        if only and name not in only:
            continue
        if name in EXTRA_CASES and not extras and not only:
            continue
        run_case(name, cls_name, kwargs, note, input_meta, out_dir)
        size = (out_dir / f'{name}.f32.gz').stat().st_size
        print(f'{name:32s} {cls_name:20s} {size:8d} bytes')


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--out', type=Path, default=DEFAULT_OUT)
    parser.add_argument('--only', nargs='*', help='case names to regenerate')
    parser.add_argument('--extras', action='store_true',
                        help='also write the extra cases: ' + ', '.join(sorted(EXTRA_CASES)))
    parser.add_argument('--check', action='store_true',
                        help='regenerate into a temp dir and compare with --out byte for byte')
    args = parser.parse_args()
    if args.check:
        with tempfile.TemporaryDirectory() as tmp:
            generate(Path(tmp), args.only, args.extras)
            bad = []
            for f in sorted(Path(tmp).iterdir()):
                ref = args.out / f.name
                if not ref.exists() or not filecmp.cmp(f, ref, shallow=False):
                    bad.append(f.name)
            if bad:
                print('DIFFERENT:', ' '.join(bad))
                return 1
            print('fixtures reproduce byte for byte')
        return 0
    generate(args.out, args.only, args.extras)
    return 0


if __name__ == '__main__':
    sys.exit(main())
