"""``python -m ltgans_jax.main`` as it is, recording which images this process placed on its
devices for each call of the training loop (``run.loop.place_batches``), for
``tests/test_two_processes.py``: one JSON line per call in ``$LTGANS_TEST_PLACED`` (the
process, task, seed, first step, number of steps, the placed array's shape and a digest of its
bytes); and, in ``$LTGANS_TEST_WRITES``, every file it opens for writing (or renames into
place) in ``$LTGANS_TEST_WORKDIR`` outside the checkpoints, which orbax writes from every
process. One more change, to the test's time only: every process writes JAX's persistent
compilation cache (``_cache_write_from_every_process``). Everything else is the ordinary
command, flags included."""

import builtins
import hashlib
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

# pylint: disable=g-import-not-at-top,wrong-import-position
import jax
from ltgans_jax import main
from ltgans_jax.run import loop as loop_lib

_place = loop_lib.place_batches
_make_array = jax.make_array_from_process_local_data


def _recording_place(loop, task_batches, first_step, num_steps):
  placed = []

  def make_array(sharding, local, *args, **kwargs):
    placed.append(local)
    return _make_array(sharding, local, *args, **kwargs)

  jax.make_array_from_process_local_data = make_array
  try:
    batches = _place(loop, task_batches, first_step, num_steps)
  finally:
    jax.make_array_from_process_local_data = _make_array
  (local,) = placed
  with open(os.environ['LTGANS_TEST_PLACED'], 'a') as f:
    f.write(json.dumps({'process': jax.process_index(), 'task': task_batches[0].task,
                        'seeds': [b.seed for b in task_batches], 'first_step': first_step,
                        'num_steps': num_steps, 'shape': list(local.shape),
                        'digest': hashlib.sha256(local.tobytes()).hexdigest()}) + '\n')
  return batches


loop_lib.place_batches = _recording_place

def _cache_write_from_every_process(*args, **kwargs):
  """JAX's own ``_cache_write``, run as if by process 0. JAX writes persistent-cache entries
  from process 0 alone, but on the CPU process 1's cache keys differ from process 0's (its
  serialized compile options differ, even for the programs both run), so process 1 never
  found an entry: every launch compiled all its ~110 programs again, 74 s of CPU of a
  launch's 100 s here, while process 0 waited for it at the next collective. Its keys being
  its own, no two processes write one entry."""
  state = jax_distributed.global_state
  process_id, state.process_id = state.process_id, 0
  try:
    return _cache_write(*args, **kwargs)
  finally:
    state.process_id = process_id


try:  # JAX internals: where a JAX version lacks them, the test only takes longer
  from jax._src import compiler as jax_compiler
  from jax._src import distributed as jax_distributed
  _cache_write = jax_compiler._cache_write  # pylint: disable=protected-access
  assert hasattr(jax_distributed.global_state, 'process_id')
except (ImportError, AttributeError, AssertionError):
  pass
else:
  jax_compiler._cache_write = _cache_write_from_every_process  # pylint: disable=protected-access

_open, _replace = builtins.open, os.replace
_WORKDIR = os.path.abspath(os.environ['LTGANS_TEST_WORKDIR']) + os.sep


def _record_write(path):
  path = os.path.abspath(os.fsdecode(path))
  if path.startswith(_WORKDIR) and not path[len(_WORKDIR):].startswith('checkpoints'):
    with _open(os.environ['LTGANS_TEST_WRITES'], 'a') as f:
      # The launcher's variable: jax.process_index() would start JAX before its distributed
      # initialisation.
      f.write(json.dumps({'process': int(os.environ.get('JAX_PROCESS_ID', '0')),
                          'path': path[len(_WORKDIR):]}) + '\n')


def _recording_open(file, mode='r', *args, **kwargs):
  if isinstance(file, (str, bytes, os.PathLike)) and set(mode) & set('wax+'):
    _record_write(file)
  return _open(file, mode, *args, **kwargs)


def _recording_replace(source, destination, *args, **kwargs):
  _record_write(destination)
  return _replace(source, destination, *args, **kwargs)


builtins.open, os.replace = _recording_open, _recording_replace

if __name__ == '__main__':
  sys.argv[0] = 'ltgans_jax.main'
  main.run()
