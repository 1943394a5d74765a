import numpy as np
for n in ['ltgans_c1','ltgans_c3','ltgans_c2_withgen','no_lakd_c2','lgm','curl']:
  a=np.load(f'/work/runs/s26/golden_old/{n}.npz'); b=np.load(f'/work/runs/s26/golden_new/{n}.npz')
  same = all(np.array_equal(a[k], b[k]) for k in a.files) and set(a.files)==set(b.files)
  diff = max(float(np.max(np.abs(a[k].astype(np.float64)-b[k].astype(np.float64)))) for k in a.files)
  print(n, len(a.files), 'leaves', 'bit-identical' if same else 'DIFFERENT', 'max abs diff', diff)
