"""Orbax checkpoints of the lifelong state: every ``train.checkpoint_every`` steps (the newest
``train.max_checkpoints`` kept) and at every task boundary (always kept).

Checkpoint numbers are global steps (``durations.global_step``): the steps of the tasks before
plus the step in the task.
"""

from __future__ import annotations

import copy
import errno
import gc
import inspect
import logging
import os
import re
import sys
from typing import Any, Optional, Sequence

import jax
import ml_collections
import orbax.checkpoint as ocp
from orbax.checkpoint import checkpoint_managers

from ltgans_jax import durations
from ltgans_jax.errors import CheckpointError

State = Any  # a method's state: any pytree of arrays (``methods.base.LifelongMethod``)


def make_manager(config: ml_collections.ConfigDict, workdir: str,
                 task_steps: Sequence[int]) -> ocp.CheckpointManager:
  """``task_steps``: the steps of each task (``durations.task_steps``); the checkpoints at
  their boundaries are always kept."""
  policy = checkpoint_managers.AnyPreservationPolicy([
      checkpoint_managers.LatestN(config.train.max_checkpoints),
      checkpoint_managers.CustomSteps(durations.task_boundary_steps(task_steps)),
  ])
  options = ocp.CheckpointManagerOptions(preservation_policy=policy, create=True)
  return ocp.CheckpointManager(os.path.join(os.path.abspath(workdir), 'checkpoints'),
                               options=options)


def save(manager: ocp.CheckpointManager, step: int, state: State) -> None:
  """Saves asynchronously; ``manager.wait_until_finished()`` before the process exits.

  Orbax skips (returning False) a step that is not above its newest one; every step here is
  saved once, so a skip would leave an older or damaged checkpoint standing: raise instead.
  """
  try:
    saved = manager.save(step, args=ocp.args.StandardSave(state))
  except Exception as e:  # pylint: disable=broad-except  # the previous asynchronous save
    _raise_if_disk_error(manager, e)
    raise
  if not saved:
    raise CheckpointError(
        f'checkpoint {step} was not written: {manager.directory} already holds step '
        f'{manager.latest_step()}; move that folder away, or resume with the config that '
        'wrote it.')


# A write that failed because of the disk, not the program: the run can go on once it is fixed.
DISK_ERRORS = (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EIO)


def disk_error(error: BaseException) -> Optional[OSError]:
  """The OSError of a full, read-only or failing disk in ``error``'s chain, if any. Orbax's
  writes go through TensorStore, which reports a full disk not as an OSError but as a
  ``ValueError('RESOURCE_EXHAUSTED: ... No space left on device [os_error_code=\'28\']')``:
  that one is read back into the OSError it stands for."""
  seen = set()
  while error is not None and id(error) not in seen:
    seen.add(id(error))
    if isinstance(error, OSError) and error.errno in DISK_ERRORS:
      return error
    found = _tensorstore_disk_error(str(error)) if isinstance(error, ValueError) else None
    if found is not None:
      return found
    error = error.__cause__ or error.__context__
  return None


def _tensorstore_disk_error(message: str) -> Optional[OSError]:
  """The OSError that a TensorStore status message names (its ``os_error_code``, or a
  RESOURCE_EXHAUSTED status: a full disk), if it is one of ``DISK_ERRORS``."""
  code = re.search(r"os_error_code='?(\d+)", message)
  number = int(code.group(1)) if code else (
      errno.ENOSPC if message.startswith('RESOURCE_EXHAUSTED') else None)
  if number not in DISK_ERRORS:
    return None
  return OSError(number, os.strerror(number))


def _raise_if_disk_error(manager: ocp.CheckpointManager, error: BaseException) -> None:
  disk = disk_error(error)
  if disk is None:
    return
  done = [s for s in manager.all_steps() if os.path.isdir(
      os.path.join(str(manager.directory), str(s)))]
  newest = max(done) if done else None
  raise CheckpointError(
      f'An asynchronous checkpoint save into {manager.directory} failed ({disk.strerror or disk}); '
      'free space there (or make it writable) and rerun the same command: it resumes from '
      + (f'checkpoint {newest}, the newest complete one.' if newest is not None
         else 'the start, as no checkpoint is complete yet.')) from None


def finish(manager: ocp.CheckpointManager) -> None:
  """``manager.wait_until_finished()``, a failed asynchronous save of a full or read-only disk
  turned into a ``CheckpointError`` that says how to resume."""
  try:
    manager.wait_until_finished()
  except Exception as e:  # pylint: disable=broad-except  # orbax re-raises the writer's error
    _raise_if_disk_error(manager, e)
    raise


class StateMismatchError(ValueError):
  """A checkpoint is whole but holds a state of another config's shapes."""


def restore_latest(manager: ocp.CheckpointManager, template: State,
                   move_damaged: bool = True) -> Optional[State]:
  """The newest checkpoint that restores cleanly into ``template``'s pytree types, or None if
  there is none. A damaged checkpoint (truncated file, missing item) newer than a healthy one is
  moved, untouched, to ``<workdir>/damaged_checkpoints/`` for a person to inspect, so that the
  resumed run writes that step afresh; if none restores, or with ``move_damaged=False`` (the
  read-only modes), nothing is moved."""
  steps = sorted(manager.all_steps(), reverse=True)
  failures, damaged, mismatched = [], [], []
  for step in steps:
    try:
      state = restore_step(manager, step, template)
    except StateMismatchError as e:
      failures.append(f'{step}: {e}')
      mismatched.append(step)
      continue
    except Exception as e:  # pylint: disable=broad-except  # orbax raises many kinds.
      failures.append(f'{step}: {type(e).__name__}: {str(e)[:200]}')
      damaged.append(step)
      logging.warning('Checkpoint %d in %s cannot be restored (%s: %s); trying an older one.',
                      step, manager.directory, type(e).__name__, str(e)[:200])
      continue
    if damaged and move_damaged:
      _move_aside(manager, damaged)
    logging.info('Resuming from checkpoint %d in %s.', step, manager.directory)
    return state
  if failures and len(mismatched) == len(failures):
    raise CheckpointError(
        f'The checkpoints in {manager.directory} hold networks of other sizes than this config '
        f'({failures[0]}); pass the config that wrote them (its values are in config.json '
        'beside them), or use another --workdir.')
  if failures:
    advice = ('move that folder away to start afresh, or restore it from a backup'
              if move_damaged else 'restore it from a backup, or train on with --mode=train')
    raise CheckpointError(f'None of the checkpoints in {manager.directory} can be restored '
                          f'({"; ".join(failures)}); {advice}.')
  return None


def _move_aside(manager: ocp.CheckpointManager, steps: Sequence[int]) -> None:
  """Moves checkpoints ``steps`` out of the manager's folder into ``damaged_checkpoints/``
  beside it (a new name if one is there already) and makes the manager forget them."""
  if jax.process_index() == 0:
    folder = os.path.join(os.path.dirname(str(manager.directory)), 'damaged_checkpoints')
    os.makedirs(folder, exist_ok=True)
    for step in steps:
      target = os.path.join(folder, str(step))
      suffix = 1
      while os.path.exists(target):
        target, suffix = os.path.join(folder, f'{step}.{suffix}'), suffix + 1
      os.rename(os.path.join(str(manager.directory), str(step)), target)
      logging.warning('Moved damaged checkpoint %d to %s; it will be written afresh.', step,
                      target)
  manager.reload()


def restore_step(manager: ocp.CheckpointManager, step: int,
                 template: State) -> State:
  """Checkpoint ``step`` in ``template``'s types; raises if it is damaged or does not fit.

  Read with a checkpointer of its own, not ``manager.restore``: after meeting a damaged step
  the manager's inferred item layout can no longer read the healthy ones.
  """
  path = os.path.join(manager.directory, str(step), 'default')
  stored = stored_shapes(path)
  wanted = leaf_shapes(template)
  if stored is not None and stored != wanted:  # orbax may fail otherwise than on a shape
    name = next(n for n in sorted(set(stored) | set(wanted)) if stored.get(n) != wanted.get(n))
    raise StateMismatchError(f'{name} has shape {stored.get(name, "(absent)")} there, the '
                             f'config needs {wanted.get(name, "(absent)")}')
  checkpointer, failure = ocp.StandardCheckpointer(), None
  try:
    state = checkpointer.restore(path, template)
  except Exception as e:  # pylint: disable=broad-except  # orbax raises many kinds
    failure = _detached(e)
  finally:
    checkpointer.close()  # its threads and event loop, also when the restore failed
  if failure is not None:
    _collect_abandoned_reads()
    raise failure
  _check_matches(template, state)
  return state


def _detached(error: Exception) -> Exception:
  """``error`` without its traceback (a ``StateMismatchError`` if orbax found other shapes):
  the traceback holds the frames of orbax's suspended reads, which would otherwise outlive the
  failed restore."""
  if isinstance(error, ValueError) and 'stored shape' in str(error):
    return StateMismatchError(str(error).split('. ')[0])
  try:
    return copy.copy(error).with_traceback(None)
  except Exception:  # pylint: disable=broad-except  # an exception type that cannot be copied
    return RuntimeError(f'{type(error).__name__}: {error}')


def _collect_abandoned_reads() -> None:
  """Collects, now, the reads a failed orbax restore left suspended on its closed event loop.
  Left to the garbage collector, each would report 'Event loop is closed' (or 'coroutine
  ignored GeneratorExit') at some later moment: one traceback per array, after the restore's
  error has been reported."""
  hook = sys.unraisablehook

  def quiet(unraisable):
    if not inspect.iscoroutine(unraisable.object):
      hook(unraisable)
  sys.unraisablehook = quiet
  try:
    gc.collect()
    for coroutine in [o for o in gc.get_objects() if inspect.iscoroutine(o)]:
      frame = coroutine.cr_frame  # None once a coroutine has finished
      if (frame is not None and not coroutine.cr_running
          and 'orbax' in frame.f_code.co_filename and frame.f_code.co_name.startswith('_read')):
        try:
          coroutine.close()  # a read of the failed restore, suspended on its closed loop
        except Exception:  # pylint: disable=broad-except  # 'Event loop is closed'
          pass
  finally:
    sys.unraisablehook = hook


def _check_matches(template, state) -> None:
  """Raises StateMismatchError unless ``state`` has the template's structure, shapes and
  dtypes."""
  leaves_t, tree_t = jax.tree_util.tree_flatten(template)
  leaves_s, tree_s = jax.tree_util.tree_flatten(state)
  if tree_t != tree_s:
    raise StateMismatchError('the state structure differs from the config\'s')
  for a, b in zip(leaves_t, leaves_s):
    if a.shape != b.shape or a.dtype != b.dtype:
      raise StateMismatchError(f'an array has shape {b.shape} {b.dtype}, the config needs '
                               f'{a.shape} {a.dtype}')


def _key_name(key) -> str:
  for attribute in ('name', 'key', 'idx'):
    if hasattr(key, attribute):
      return str(getattr(key, attribute))
  return str(key)


def leaf_shapes(tree) -> dict:
  """Leaf name -> shape of a state (arrays or ``jax.ShapeDtypeStruct``), the names dotted as
  orbax's metadata names them ('student.params.Dense_0.kernel')."""
  return {'.'.join(_key_name(k) for k in path): tuple(leaf.shape)
          for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]}


def stored_shapes(path: str) -> Optional[dict]:
  """Leaf name -> shape of the state saved at ``path`` (a step's item folder), read from
  orbax's metadata (no array is read); None where the metadata cannot be read (a damaged or
  half-written checkpoint)."""
  checkpointer = ocp.StandardCheckpointer()
  try:
    tree = checkpointer.metadata(path).item_metadata.tree
    return {leaf.name: tuple(leaf.shape) for leaf in jax.tree_util.tree_leaves(tree)}
  except Exception:  # pylint: disable=broad-except  # orbax raises many kinds
    return None
  finally:
    checkpointer.close()  # its threads, as restore_step closes its own
