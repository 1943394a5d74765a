"""``experiments/gpu_session.sh``, the script a lent accelerator runs, dry-run on the CPU at
tiny sizes (``GPU_SESSION_DRY=1``), so that it cannot fail for a typo on the day: every step
runs its real command line and exits 0."""

import os
import subprocess
import sys

from helpers import write_mnist_folder

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_gpu_session_dry_run(tmp_path):
  data, out = tmp_path / 'data', tmp_path / 'out'
  write_mnist_folder(data / 'mnist', n_train=40, n_test=20, seed=1)
  write_mnist_folder(data / 'fashion_mnist', n_train=40, n_test=20, seed=2)
  env = dict(os.environ, GPU_SESSION_DRY='1', PYTHON=sys.executable, PYTHONPATH=ROOT)
  done = subprocess.run(['bash', 'experiments/gpu_session.sh', str(data), str(out), '600'],
                        cwd=ROOT, env=env, capture_output=True, text=True, timeout=900,
                        check=False)
  assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
  runs = (out / 'runs.txt').read_text()
  assert 'loop_overhead: exit 0' in runs, (out / 'loop.log').read_text()[-3000:]
  assert 'mnist_fashion_cpu: exit 0' in runs, (out / 'mnist_fashion_cpu.log').read_text()[-3000:]
  if os.path.exists(os.path.join(ROOT, 'experiments', 'reproduce.py')):
    assert 'reproduce: exit 0' in runs, (out / 'reproduce.log').read_text()[-3000:]
  loop = (out / 'loop' / 'README.md').read_text()
  assert '| test, 1 critic step(s) |' in loop and '| 3 seeds, vmap |' in loop
  assert (out / 'mnist_fashion_cpu' / 'report.md').exists()
  assert not (out / 'workdirs').exists()
