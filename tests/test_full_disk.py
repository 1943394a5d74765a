"""A real full disk: a small tmpfs that the test mounts (root only; skipped elsewhere), filled by
the run itself at each moment it writes, not an exception patched in. Each run must end, in one
sentence that says what to do, with a non-zero code, its workdir lock released and no
half-written file left where a whole one stood.

The sizes were found by experiment on ``configs/test.py`` (a checkpoint of its state takes
~400 kB, the FID feature network ~620 kB): 8 kB holds ``lock.json`` and ``config.json`` and
nothing more; 700 kB holds the feature network, the first metrics and TensorBoard events, but
not the first checkpoint.
"""

import fcntl
import os
import re
import subprocess
import sys

import numpy as np
import pytest

from ltgans_jax import files
from ltgans_jax.run import checkpointing
from tests.conftest import ROOT


@pytest.fixture
def small_disk(tmp_path):
  """``small_disk(kilobytes)``: a folder on a fresh tmpfs of that size, unmounted afterwards."""
  mounted = []

  def mount(kilobytes: int):
    folder = tmp_path / f'disk{len(mounted)}'
    folder.mkdir()
    result = subprocess.run(['mount', '-t', 'tmpfs', '-o', f'size={kilobytes}k', 'tmpfs',
                             str(folder)], capture_output=True, text=True, check=False)
    if result.returncode:
      pytest.skip(f'mounting a tmpfs is not permitted here ({result.stderr.strip()}); these '
                  'tests need root')
    mounted.append(folder)
    return folder
  yield mount
  for folder in mounted:
    if subprocess.run(['umount', str(folder)], check=False).returncode:
      subprocess.run(['umount', '-l', str(folder)], check=False)  # a child still holds it


def _train_on(workdir, timeout=120):
  """``python -m ltgans_jax.main`` on the test config; a run that hangs fails the test."""
  env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get('PYTHONPATH', ''))
  return subprocess.run([sys.executable, '-m', 'ltgans_jax.main', '--config=configs/test.py',
                         f'--workdir={workdir}'], cwd=ROOT, env=env, capture_output=True,
                        text=True, timeout=timeout, check=False)


def _assert_ended_in_one_sentence(result, workdir, pattern):
  assert result.returncode == 1, result.stderr[-3000:]
  last = result.stderr.strip().splitlines()[-1]
  assert re.fullmatch(pattern, last), last
  assert 'Traceback' not in result.stderr, result.stderr[-3000:]
  with open(os.path.join(workdir, 'lock.json')) as handle:  # released: another run may take it
    fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)


def test_disk_full_at_the_first_tensorboard_event_ends_the_run(small_disk):
  """Used to kill tensorboardX's writer thread, after which the run could block for ever on its
  queue, deaf to SIGTERM, holding the lock; and left a 0-byte feature_net.msgpack."""
  workdir = small_disk(8) / 'run'
  result = _train_on(workdir)
  _assert_ended_in_one_sentence(
      result, workdir, r'error: cannot write .*/tensorboard/events\.out\.tfevents\.\S+ \(No '
                       r'space left on device\); free space there \(or make it writable\) and '
                       r'rerun the same command: training resumes from its newest checkpoint\.')
  assert not os.path.exists(workdir / 'feature_net.msgpack')


def test_disk_full_while_pictures_are_logged_raises_at_once(small_disk):
  """A run's pictures and scalars through ``TensorboardWriter`` onto a disk they overfill, in a
  subprocess that a hang cannot outlive: tensorboardX's writer thread died at the first event
  that did not fit, and the caller blocked for ever once ten more were queued (in a run: deaf to
  SIGTERM, holding the lock). Now the write that does not fit raises its OSError, naming the
  file, in the caller's thread."""
  folder = small_disk(64)
  script = ('import numpy as np\n'
            'from ltgans_jax.run import writers\n'
            f'writer = writers.TensorboardWriter({str(folder / "tensorboard")!r})\n'
            'rng = np.random.default_rng(0)\n'
            'try:\n'
            '  for step in range(40):\n'
            '    writer.write_images(step, {"task1/samples": rng.integers(\n'
            '        0, 256, (1, 64, 64, 3), dtype=np.uint8)})\n'
            '    writer.write_scalars(step, {f"eval/fid/{k}": 1.0 for k in range(10)})\n'
            'except OSError as e:\n'
            '  print("raised", e.errno, e.filename, flush=True)\n')
  env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get('PYTHONPATH', ''))
  result = subprocess.run([sys.executable, '-c', script], cwd=ROOT, env=env, check=False,
                          capture_output=True, text=True, timeout=60)
  assert result.returncode == 0, result.stderr[-3000:]
  assert re.fullmatch(r'raised 28 .*/tensorboard/events\.out\.tfevents\.\S+\n',
                      result.stdout), result.stdout + result.stderr[-3000:]


def test_disk_full_at_the_first_checkpoint_ends_the_run_before_evaluating(small_disk):
  """Orbax reports a full disk as a ValueError('RESOURCE_EXHAUSTED ...') from its threads,
  after ~1000 lines of tracebacks; the run used to hang there (or evaluate on and end in a
  traceback)."""
  workdir = small_disk(700) / 'run'
  result = _train_on(workdir)
  _assert_ended_in_one_sentence(
      result, workdir, r'error: An asynchronous checkpoint save into .*/checkpoints failed \(No '
                       r'space left on device\); free space there \(or make it writable\) and '
                       r'rerun the same command: it resumes from the start, as no checkpoint is '
                       r'complete yet\.')
  assert len(result.stderr.splitlines()) < 80, result.stderr[-3000:]
  evaluated = [f for _, _, names in os.walk(workdir / 'eval') for f in names]
  assert not evaluated, f'evaluated after a failed save: {evaluated}'


def test_disk_full_during_a_checkpoint_save_names_the_newest_whole_one(test_config, small_disk):
  """In process, with a real full disk: orbax's ValueError is read as the OSError it stands
  for, and the checkpoint saved before stays whole."""
  manager = checkpointing.make_manager(test_config, str(small_disk(256)), [4, 4])
  small = {'w': np.arange(1000.0)}
  big = {'w': np.random.default_rng(0).random(100_000)}  # ~800 kB that do not compress
  try:
    checkpointing.save(manager, 2, small)
    checkpointing.finish(manager)
    checkpointing.save(manager, 4, big)
    with pytest.raises(checkpointing.CheckpointError,
                       match=r'An asynchronous checkpoint save into .* failed \(No space left on '
                             r'device\); free space there .* it resumes from checkpoint 2, the '
                             r'newest complete one\.'):
      checkpointing.finish(manager)
    assert np.array_equal(checkpointing.restore_step(manager, 2, small)['w'], small['w'])
  finally:
    manager.close()


def test_atomic_writes_respect_the_umask(tmp_path):
  """``mkstemp`` made 0600 files: a colleague could not read report.md or config.json."""
  old = os.umask(0o022)
  try:
    files.write_atomically(str(tmp_path / 'report.md'), 'text')
  finally:
    os.umask(old)
  assert (tmp_path / 'report.md').stat().st_mode & 0o777 == 0o644


def test_a_killed_atomic_write_leaves_a_temporary_the_next_start_removes(tmp_path):
  """A real SIGKILL between the write and the rename; a live process's temporary stays."""
  script = ('import os, signal\n'
            'from ltgans_jax import files\n'
            'os.replace = lambda *a: os.kill(os.getpid(), signal.SIGKILL)\n'
            f'files.write_atomically({str(tmp_path / "report.md")!r}, "text")\n')
  env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get('PYTHONPATH', ''))
  killed = subprocess.run([sys.executable, '-c', script], cwd=ROOT, env=env, check=False)
  assert killed.returncode == -9
  [left] = os.listdir(tmp_path)
  live = tmp_path / 'eval' / f'.matrix.json.{os.getpid()}.0123abcd.tmp'
  live.parent.mkdir()
  live.write_text('being written')
  assert files.remove_stale_temporaries(str(tmp_path)) == [str(tmp_path / left)]
  assert os.listdir(tmp_path) == ['eval'] and live.exists()
