"""One training run per workdir (``workdir_lock``); the read-only modes run beside it."""

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys

import pytest

from ltgans_jax import train
from ltgans_jax.run import inspect as inspect_run, workdir_lock
from tests.conftest import ROOT


def _hashes(folder):
  return {os.path.relpath(os.path.join(d, f), folder):
          hashlib.sha256(open(os.path.join(d, f), 'rb').read()).hexdigest()
          for d, _, fs in os.walk(folder) for f in fs}


def test_second_run_on_a_held_workdir_refuses_at_once_naming_the_first(test_config, tmp_path):
  workdir = str(tmp_path / 'run')
  handle = workdir_lock.acquire(workdir)
  try:
    with pytest.raises(workdir_lock.WorkdirBusyError,
                       match=rf'run is in use by the run with pid {os.getpid()} on host .*; '
                             'wait for it to end or use another --workdir'):
      train.train_and_evaluate(test_config, workdir)
    assert os.listdir(workdir) == [workdir_lock.LOCK_FILE]  # nothing else written
  finally:
    workdir_lock.release(handle)
  workdir_lock.release(workdir_lock.acquire(workdir))  # free again


def test_lock_of_a_killed_run_is_taken_over(tmp_path):
  """The lock is the OS's (flock): it ends with its process, however that ends."""
  workdir = str(tmp_path / 'run')
  holder = subprocess.Popen(
      [sys.executable, '-c', 'import sys, time; from ltgans_jax.run import workdir_lock; '
       f'held = workdir_lock.acquire({workdir!r}); print("held", flush=True); time.sleep(600)'],
      cwd=ROOT, stdout=subprocess.PIPE, text=True)
  try:
    assert holder.stdout.readline().strip() == 'held'
    with pytest.raises(workdir_lock.WorkdirBusyError, match=f'pid {holder.pid} '):
      workdir_lock.acquire(workdir)
  finally:
    holder.send_signal(signal.SIGKILL)
    holder.wait()
  with open(os.path.join(workdir, workdir_lock.LOCK_FILE)) as f:
    assert json.load(f)['pid'] == holder.pid  # the stale lock file is still there ...
  handle = workdir_lock.acquire(workdir)       # ... and taken over
  with open(os.path.join(workdir, workdir_lock.LOCK_FILE)) as f:
    assert json.load(f)['pid'] == os.getpid()
  workdir_lock.release(handle)


def test_read_only_modes_run_beside_a_training_run(test_config, tmp_path, reference_run):
  """evaluate and sample take no lock and leave the training run's files as they are."""
  workdir = str(tmp_path / 'run')
  shutil.copytree(reference_run[0], workdir)
  before = _hashes(workdir)
  handle = workdir_lock.acquire(workdir)  # a run "trains" here
  try:
    test_config.sample.num = 4
    inspect_run.sample(test_config, workdir)
    inspect_run.evaluate_workdir(test_config, workdir)
  finally:
    workdir_lock.release(handle)
  after = _hashes(workdir)
  changed = {p for p in before if before[p] != after.get(p)}
  assert changed <= {workdir_lock.LOCK_FILE}
  added = set(after) - set(before)
  assert added and all(p.startswith((inspect_run.EVALUATE_FOLDER + os.sep, 'samples_'))
                       for p in added - {workdir_lock.LOCK_FILE})


def test_workdir_that_is_a_file_is_one_sentence(test_config, tmp_path):
  workdir = tmp_path / 'run'
  workdir.write_text('not a folder')
  with pytest.raises(workdir_lock.ConfigError,
                     match=r"--workdir='.*run' is a file, not a folder; choose another"):
    train.train_and_evaluate(test_config, str(workdir))
  assert workdir.read_text() == 'not a folder'


def test_read_only_workdir_is_one_sentence(test_config, tmp_path):
  workdir = tmp_path / 'run'
  workdir.mkdir()
  workdir.chmod(0o500)
  if os.access(workdir, os.W_OK):
    pytest.skip('running as a user that can write anywhere (root)')
  with pytest.raises(workdir_lock.ConfigError,
                     match=r"Cannot write into --workdir='.*run' \(Permission denied\); "
                           'choose a writable folder'):
    train.train_and_evaluate(test_config, str(workdir))
