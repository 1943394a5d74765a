"""Final states of the test-config cases at f13d791 against the redesign: leaf by leaf."""
import json, os, sys
import numpy as np
old, new = sys.argv[1], sys.argv[2]
for n in ['ltgans_c1', 'ltgans_c3', 'ltgans_c2_withgen', 'no_lakd_c2', 'lgm', 'curl']:
  a, b = np.load(f'{old}/{n}.npz'), np.load(f'{new}/{n}.npz')
  same = set(a.files) == set(b.files) and all(np.array_equal(a[k], b[k]) for k in a.files)
  diff = max(float(np.max(np.abs(a[k].astype(np.float64) - b[k].astype(np.float64))))
             for k in a.files)
  scale = max(float(np.max(np.abs(a[k].astype(np.float64)))) for k in a.files)
  ra = json.load(open(f'{old}/wd_{n}/report.json'))['records'][-1]['evaluation']
  rb = json.load(open(f'{new}/wd_{n}/report.json'))['records'][-1]['evaluation']
  nll = (ra['nll_paper'], rb['nll_paper'])
  print(f'{n}: {len(a.files)} leaves, ' + ('bit-identical' if same else 'not bit-identical') +
        f', max abs diff {diff:.3g} (largest |value| {scale:.3g}); final nll_paper '
        f'{[round(x, 4) for x in nll[0]]} -> {[round(x, 4) for x in nll[1]]}')
