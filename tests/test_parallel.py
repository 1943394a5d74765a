"""Data parallelism under 4 simulated CPU devices (in a subprocess: the device count is fixed
when JAX starts)."""

import os
import subprocess
import sys


def test_data_parallel_step_matches_single_device_and_lifelong_run_works():
  script = os.path.join(os.path.dirname(__file__), 'parallel_check.py')
  result = subprocess.run([sys.executable, script], capture_output=True, text=True,
                          timeout=900)
  assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
  assert 'PARALLEL OK' in result.stdout
