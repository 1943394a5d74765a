"""A run killed with SIGKILL (no chance to save) and restarted with the same command ends with
exactly the parameters of an uninterrupted run."""

import os
import signal
import subprocess
import sys
import time

import pytest

from configs import test as test_config_module
from ltgans_jax import train
from tests.conftest import ROOT
from tests.helpers import tree_equal


def _kill_when(workdir, condition, timeout=300):
  process = subprocess.Popen(
      [sys.executable, '-m', 'ltgans_jax.main', '--config=configs/test.py',
       f'--workdir={workdir}'], cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
  deadline = time.time() + timeout
  try:
    while not condition() and process.poll() is None and time.time() < deadline:
      time.sleep(0.02)
  finally:
    process.send_signal(signal.SIGKILL)
    process.wait()
  return process.returncode


def _checkpoints(workdir):
  folder = os.path.join(workdir, 'checkpoints')
  return os.listdir(folder) if os.path.isdir(folder) else []


@pytest.mark.parametrize('moment', ['first_checkpoint_appears', 'task_two_starts'])
def test_sigkill_then_rerun_is_bit_identical(tmp_path, reference_run, moment):
  _, reference = reference_run
  workdir = str(tmp_path / 'run')
  if moment == 'first_checkpoint_appears':  # possibly mid-save: a tmp folder, nothing final
    condition = lambda: bool(_checkpoints(workdir))
  else:
    condition = lambda: os.path.exists(os.path.join(workdir, 'samples',
                                                    'task1_student_samples.png'))
  returncode = _kill_when(workdir, condition)
  assert returncode == -signal.SIGKILL, 'the run ended before it could be killed'
  resumed = train.train_and_evaluate(test_config_module.get_config(), workdir)
  assert tree_equal(resumed, reference)
