#!/usr/bin/env python3
"""Print the augment benchmark table from JSON lines.

    python3 bench/augment/report.py results.jsonl [more.jsonl ...]

Reads lines like {"tool": "torchio"|"monai"|"numpy"|"mindscan",
"transform": NAME, "seconds": S}; anything else (non-JSON lines, lines
without those keys) is skipped.  Prints a Markdown table

    transform | TorchIO s | MONAI s | Mindscan s | ratio

where ratio = TorchIO s / Mindscan s (how many times faster Mindscan is).
Missing sides print as '-'; the table is printed even when there is no
Mindscan line at all.  Needs only the standard library.
"""

from __future__ import annotations

import json
import sys

ORDER = [
    'copy', 'flip', 'flip_always', 'affine', 'elastic', 'anisotropy', 'motion',
    'ghosting', 'spike', 'bias_field', 'blur', 'noise', 'gamma', 'swap',
    'rescale', 'z_normalize', 'labels_to_image', 'compose5',
]
ALIASES = {
    'bias': 'bias_field', 'biasfield': 'bias_field', 'znorm': 'z_normalize',
    'z_normalization': 'z_normalize', 'rescale_intensity': 'rescale',
    'compose': 'compose5', 'elastic_deformation': 'elastic', 'numpy_copy': 'copy',
}
COLUMNS = {'torchio': 'TorchIO s', 'monai': 'MONAI s', 'mindscan': 'Mindscan s'}


def read(paths):
    table: dict[str, dict[str, float]] = {}
    for path in paths:
        with open(path) as f:
            for line in f:
                line = line.strip()
                if not line.startswith('{'):
                    continue
                try:
                    rec = json.loads(line)
                    tool = str(rec['tool']).lower()
                    name = str(rec['transform']).lower()
                    seconds = float(rec['seconds'])
                except (ValueError, KeyError, TypeError):
                    continue
                name = ALIASES.get(name, name)
                if tool == 'numpy':  # the plain-copy baseline goes in the TorchIO column
                    tool = 'torchio'
                if tool not in COLUMNS:
                    continue
                table.setdefault(name, {})[tool] = seconds  # last line wins
    return table


def fmt(x):
    if x is None:
        return '-'
    return f'{x:.4f}' if x < 0.1 else f'{x:.3f}'


def main(argv) -> int:
    if not argv:
        print(__doc__, file=sys.stderr)
        return 2
    table = read(argv)
    names = [n for n in ORDER if n in table] + sorted(n for n in table if n not in ORDER)
    print('| transform | TorchIO s | MONAI s | Mindscan s | ratio |')
    print('|---|---:|---:|---:|---:|')
    for name in names:
        row = table[name]
        t, m, r = row.get('torchio'), row.get('monai'), row.get('mindscan')
        ratio = f'{t / r:.1f}x' if t is not None and r else '-'
        label = 'copy (numpy arr.copy)' if name == 'copy' else name
        print(f'| {label} | {fmt(t)} | {fmt(m)} | {fmt(r)} | {ratio} |')
    if not any('mindscan' in row for row in table.values()):
        print('\n(no Mindscan lines: build target/release/examples/augment_bench to fill that column)')
    return 0


if __name__ == '__main__':
    sys.exit(main(sys.argv[1:]))
