"""The memory check against a real limit: ``python -m ltgans_jax.main`` in a cgroup whose memory
limit the test sets (root only; skipped elsewhere), so that a run past it is killed by the
kernel, as in a container or on a CI runner, not by an exception patched in.

Measured on configs/test.py (``/usr/bin/time -v``, peak RSS): with networks of width 4 (state
0.2 MB) 1,601,784 KiB = 1.64 GB (1.61 GB in an earlier session), which ``CPU_RUNTIME_BYTES``
covers; with ``WIDE`` (state 52.1 MB) 1,799,900 KiB = 1.84 GB, of which the kernel can reclaim
the file-backed pages: under a 1.75 GB cgroup limit that run still finished. XLA counts 166 MB
for ``WIDE``'s heaviest step (the state in and out, donated, and 114 MB of temporaries), and the
check counts 1.97 GB in all. The check before this test read the host's RAM (24 GB here), not
the cgroup's limit, and so passed ``WIDE`` under any limit, ``BELOW_THE_RUN_S_NEED`` included,
leaving the run to the kernel's OOM killer.
"""

import os
import subprocess
import sys

import pytest

from ltgans_jax import memory_limit
from tests.conftest import ROOT

WIDE = ('--config.model.generator_width=128', '--config.model.critic_width=128',
        '--config.vae.width=128')
BELOW_THE_RUN_S_NEED = int(1.3e9)


def test_cgroup_limits_of_both_versions_and_their_ancestors(tmp_path):
  """v2's memory.max and v1's memory.limit_in_bytes, the tightest of the cgroup and every
  folder above it; 'max' and v1's huge 'no limit' count as none."""
  proc = tmp_path / 'cgroup'
  mount = tmp_path / 'fs'
  (mount / 'a' / 'b').mkdir(parents=True)
  (mount / 'a' / 'memory.max').write_text('3000000000\n')
  (mount / 'a' / 'b' / 'memory.max').write_text('max\n')
  proc.write_text('0::/a/b\n')
  assert memory_limit.cgroup_memory_limit(str(proc), str(mount)) == 3_000_000_000
  (mount / 'memory' / 'x').mkdir(parents=True)
  (mount / 'memory' / 'memory.limit_in_bytes').write_text('9223372036854771712\n')
  (mount / 'memory' / 'x' / 'memory.limit_in_bytes').write_text('2000000000\n')
  proc.write_text('4:memory:/x\n0::/a/b\n')
  assert memory_limit.cgroup_memory_limit(str(proc), str(mount)) == 2_000_000_000
  proc.write_text('4:memory:/\n')
  assert memory_limit.cgroup_memory_limit(str(proc), str(mount)) is None
  assert memory_limit.cgroup_memory_limit(str(tmp_path / 'absent'), str(mount)) is None


def _make_cgroup(name: str, limit: int) -> str:
  """A fresh cgroup at the top of the memory hierarchy with ``limit`` bytes: v1's memory
  controller where it is mounted on its own, else v2's; skips the test where neither can be made
  or limited (not root, or no memory controller)."""
  v1 = '/sys/fs/cgroup/memory'
  folder, limit_file = ((os.path.join(v1, name), 'memory.limit_in_bytes') if os.path.isdir(v1)
                        else (os.path.join('/sys/fs/cgroup', name), 'memory.max'))
  try:
    os.mkdir(folder)
  except OSError as e:
    pytest.skip(f'making a cgroup is not permitted here ({e}); this test needs root')
  try:
    with open(os.path.join(folder, limit_file), 'w') as f:
      f.write(str(limit))
  except OSError as e:
    os.rmdir(folder)
    pytest.skip(f'a cgroup memory limit cannot be set here ({e})')
  return folder


@pytest.fixture
def memory_limited():
  """``memory_limited(bytes)``: a fresh cgroup with that memory limit (its folder); the cgroups
  are removed afterwards."""
  folders = []

  def make(limit: int):
    folders.append(_make_cgroup(f'ltgans-test-{os.getpid()}-{len(folders)}', limit))
    return folders[-1]
  yield make
  for folder in folders:
    os.rmdir(folder)  # its one process has ended


def _main_in(cgroup: str, workdir, *flags, timeout=300):
  """``python -m ltgans_jax.main`` on the test config inside ``cgroup``: a shell enters it and
  execs Python (a ``preexec_fn`` would fork this multi-threaded process)."""
  env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get('PYTHONPATH', ''))
  command = [sys.executable, '-m', 'ltgans_jax.main', '--config=configs/test.py',
             f'--workdir={workdir}', *flags]
  return subprocess.run(['sh', '-c', 'echo $$ > "$0/cgroup.procs" && exec "$@"', cgroup,
                         *command], cwd=ROOT, env=env, capture_output=True, text=True,
                        timeout=timeout, check=False)


def test_a_cgroup_limit_below_the_peak_is_refused_before_anything_is_written(tmp_path,
                                                                            memory_limited):
  """Used to pass (the host's RAM was read) and start training past the limit; now one
  sentence names the cgroup's limit and what to lower, and nothing is written."""
  result = _main_in(memory_limited(BELOW_THE_RUN_S_NEED), tmp_path / 'run', *WIDE)
  assert result.returncode == 1, (result.returncode, result.stderr[-3000:])
  last = result.stderr.strip().splitlines()[-1]
  assert last.startswith('error: This run would hold about '), last
  assert last.endswith("more than the 1.3 GB of this process's cgroup memory limit; lower "
                       'train.num_seeds, train.batch_size, model.generator_width, '
                       'model.critic_width, vae.width or the latent sizes.'), last
  assert 'Traceback' not in result.stderr
  assert not os.path.exists(tmp_path / 'run')


@pytest.mark.parametrize('width', [4, 64])
def test_the_activation_bound_exceeds_twice_what_xla_counts(test_config, width):
  """``check_memory`` skips XLA's count (a compile of every task's step) when even this bound
  leaves half the memory free: the bound must hold for our networks, with a margin."""
  from ltgans_jax import config_validation  # pylint: disable=g-import-not-at-top
  from tests.helpers import build_method  # pylint: disable=g-import-not-at-top
  for key in ('model.generator_width', 'model.critic_width', 'vae.width'):
    test_config.update_from_flattened_dict({key: width})
  method = build_method(test_config)
  state, _ = config_validation.held_bytes(test_config, method, None)
  step = config_validation.step_peak_bytes(test_config, method, test_config.data.num_tasks)
  # The step's own buffers beyond the state it takes in: activations, gradients, updates.
  assert config_validation.activation_bound(test_config) > 2 * (step - state)
