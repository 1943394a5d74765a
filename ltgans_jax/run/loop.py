"""The steps of one task: ``run_task(loop, state, task, task_batches, prefix, task_name)``.

A ``for`` over fused calls (``run.fused``: up to ``steps_per_call`` steps of the method's
``StepPlan`` in one jitted call, their metrics summed on the device), with ``%`` checks after
each: the metrics are read back and logged every ``train.log_every`` steps, a rolling
checkpoint is saved every ``train.checkpoint_every`` steps, and a stop signal saves and stops.
Calls end where a log line, a rolling checkpoint or the task ends, so the steps, checkpoints and
logs are those of one step per call; the host reads the device only at those points, and a NaN
or infinite loss still stops the run before anything is saved (``hooks.check_finite``).
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Callable, Dict, Iterator, Tuple

import jax
import numpy as np

from ltgans_jax import durations, multihost
from ltgans_jax.cpu import backend as backend_lib
from ltgans_jax.run import checkpointing, fused, hooks, seeds as seeds_lib


@dataclasses.dataclass
class Loop:
  """What the steps of every task share: the fused calls, the task lengths, where batches and
  checkpoints go, and the hooks that report progress."""
  train: object  # config.train: log_every, checkpoint_every
  fused: fused.FusedSteps
  task_steps: tuple
  batch_sharding: jax.sharding.NamedSharding  # of one global batch [B, ...] along 'data'
  checkpoints: object
  metrics_log: object
  progress: Callable  # (global_step, prefix, metrics) -> steps/s or None (``ProgressLine``)
  stop: object  # has ``.received``: the name of a stop signal, or None

  @functools.cached_property
  def stacked_sharding(self) -> jax.sharding.NamedSharding:
    """Of the batches of one call, [n, B, ...] (or [n, S, B, ...]), split along B."""
    leading = (None,) if self.fused.num_seeds == 1 else (None, None)
    return jax.sharding.NamedSharding(self.batch_sharding.mesh,
                                      jax.sharding.PartitionSpec(*leading,
                                                                 *self.batch_sharding.spec))


def call_spans(start: int, total: int, every: Tuple[int, ...]) -> Iterator[Tuple[int, int]]:
  """(first step, step after the last) of each call from task step ``start`` to ``total``: a
  call ends at the next multiple of any of ``every``, or at the task's end."""
  first = start
  while first < total:
    end = min([total] + [(first // n + 1) * n for n in every])
    yield first, end
    first = end


def run_task(loop: Loop, state, task: int, task_batches, prefix: str, task_name: str):
  """Runs the remaining steps of ``task`` (``loop.task_steps[task]`` in all) on
  ``task_batches`` (one ``batching.TaskBatches`` per seed); returns the state and the last
  averaged metrics (over the steps since the last log line, and over seeds)."""
  train, total = loop.train, loop.task_steps[task]
  every = (loop.fused.plan.steps_per_call, train.log_every, train.checkpoint_every)
  accumulator, last = None, {}

  def read_back(done: int) -> Dict[str, float]:
    """The accumulator on the host: stops on a non-finite metric, else its averages."""
    values = jax.device_get(accumulator)
    bad_step = int(values['first_bad_step'])
    hooks.check_finite({k: bool(v) for k, v in values['nonfinite'].items()}, task_name,
                       bad_step if bad_step != fused.NO_BAD_STEP else done, loop.checkpoints)
    return fused.averages(values)

  for first, done in call_spans(seeds_lib.counter(state.task_step), total, every):
    batches = place_batches(loop, task_batches, first, done - first)
    state, accumulator = loop.fused.run(state, task, first, batches, accumulator)
    step = durations.global_step(loop.task_steps, task, done)
    # At a task's last step the end-of-task section saves; the next call sees the flag.
    if _stop_received(loop, done) and done < total:
      read_back(done)
      checkpointing.save(loop.checkpoints, step, state)
      checkpointing.finish(loop.checkpoints)
      signal_name = loop.stop.received or 'a stop signal (by another process)'
      raise hooks.StopRequested(f'{signal_name} received: saved checkpoint {step} (task '
                                f'{task_name}, step {done}); rerun the same command to resume.')
    if done % train.log_every == 0 or done == total:
      last, accumulator = read_back(done), None
      rate = loop.progress(step, f'{prefix} | step {done}/{total}', last)
      loop.metrics_log.write_scalars(step, {**last, **({'steps_per_sec': rate} if rate else {})})
    if done % train.checkpoint_every == 0 and done < total:
      if accumulator is not None:
        read_back(done)
      checkpointing.save(loop.checkpoints, step, state)
  # A rolling save that failed (a full disk) stops the run now, not after the evaluation.
  checkpointing.finish(loop.checkpoints)
  return state, last


def place_batches(loop: Loop, task_batches, first_step: int, num_steps: int):
  """This host's rows of ``num_steps`` batches from ``first_step``, stacked and placed at
  once: [n, B, H, W, C] sharded along B, or [n, S, B, H, W, C] with seeds."""
  process, processes = jax.process_index(), jax.process_count()
  per_seed = [np.stack([batches.process_slice(first_step + i, process, processes)
                        for i in range(num_steps)]) for batches in task_batches]
  local = per_seed[0] if loop.fused.num_seeds == 1 else np.stack(per_seed, axis=1)
  return jax.make_array_from_process_local_data(loop.stacked_sharding, local)


def _stop_received(loop: Loop, done: int) -> bool:
  """Whether to stop after the call that ended at task step ``done``. Every process of a
  multi-process run must save the same checkpoint, so there they agree first (a collective),
  at each log line: a signal that reached one process stops all of them there."""
  if not multihost.running():
    return loop.stop.received is not None
  return (done % loop.train.log_every == 0
          and multihost.any_process(loop.stop.received is not None))


# A loop with no outputs, for benchmarks and tests ------------------------------------------------
class _NoCheckpoints:
  def latest_step(self):
    return None

  def wait_until_finished(self):
    pass


class _NoLog:
  def write_scalars(self, step, scalars):
    del step, scalars


class _NoStop:
  received = None


def headless(config, method, task_steps, batch_sharding: jax.sharding.NamedSharding,
             backend=None) -> Loop:
  """A ``Loop`` of ``method`` that saves, logs and reports nothing and is never stopped: for
  benchmarks and tests that time or compare ``run_task`` alone (give it no
  ``checkpoint_every`` it reaches). ``backend``: ``cpu.backend.resolve(config)`` unless
  given."""
  backend = backend or backend_lib.resolve(config)
  steps = fused.FusedSteps(method.plan, backend, seeds_lib.seed_values(config))
  return Loop(config.train, steps, tuple(task_steps), batch_sharding, _NoCheckpoints(), _NoLog(),
              lambda *args: None, _NoStop())
