"""The steps of one task, run as fused jitted calls: ``run_task(loop, state, task, ...)``.

One call runs up to ``method.steps_per_call()`` steps (for the GANs: the critic steps of one
generator update; the method says) on batches stacked
[n, B, H, W, C] and placed on the devices at once; it draws each step's key on the device
(``rng.step_key`` of the traced step number, the same keys as a step jitted alone) and adds
the step's metrics, and whether each was finite, into a small accumulator that stays on the
device. The host reads it back only every ``train.log_every`` steps and before every save,
so the devices never wait for the host between steps, and a NaN or infinite loss still stops
the run before anything is saved (``check_finite``).

With ``train.num_seeds`` S > 1 the state carries a leading seed axis and the call
``jax.vmap``s each step over it (``seeds``); a method whose step is not vmappable (CURL: its
component count is a static shape) runs its seeds one after the other inside the same call.

Calls end at multiples of ``steps_per_call`` and where a log line, a rolling checkpoint or the
task ends, so the steps, checkpoints and logs are those of one step per call; a call's compiled
program depends on the variants of its steps (``method.step_variant``: for the GANs, the phase
and whether a step updates the generators) and the method's static args. The loop knows no
phase, critic step or network: it asks the method.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Callable, Dict

import jax
import jax.numpy as jnp
import numpy as np

from ltgans_jax import durations, multihost, rng
from ltgans_jax.cpu import backend, schedule
from ltgans_jax.run import checkpointing, hooks, seeds as seeds_lib

NO_BAD_STEP = -1


@dataclasses.dataclass
class Loop:
  """What the steps of every task share: the run's config and method, where batches and
  checkpoints go, and the hooks that report progress."""
  config: object
  method: object
  task_steps: tuple
  batch_sharding: jax.sharding.NamedSharding  # of one global batch [B, ...] along 'data'
  checkpoints: object
  metrics_log: object
  progress: Callable  # (global_step, prefix, metrics) -> steps/s or None (``ProgressLine``)
  stop: object  # has ``.received``: the name of a stop signal, or None
  fused: Dict = dataclasses.field(default_factory=dict)  # compiled calls, by their statics

  @property
  def num_seeds(self) -> int:
    return seeds_lib.count(self.config)

  @functools.cached_property
  def stacked_sharding(self) -> jax.sharding.NamedSharding:
    """Of the batches of one call, [n, B, ...] (or [n, S, B, ...]), split along B."""
    leading = (None,) if self.num_seeds == 1 else (None, None)
    return jax.sharding.NamedSharding(self.batch_sharding.mesh,
                                      jax.sharding.PartitionSpec(*leading,
                                                                 *self.batch_sharding.spec))


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


def headless(config, method, task_steps, batch_sharding: jax.sharding.NamedSharding) -> Loop:
  """A ``Loop`` that saves, logs and reports nothing and is never stopped: for benchmarks and
  tests that time or compare ``run_task`` alone (give it no ``checkpoint_every`` it reaches)."""
  return Loop(config, method, tuple(task_steps), batch_sharding, _NoCheckpoints(), _NoLog(),
              lambda *args: None, _NoStop())


# The accumulator -------------------------------------------------------------------------------
def empty_accumulator(metric_shapes: Dict[str, jax.ShapeDtypeStruct]) -> dict:
  """Zeroed sums, counts and non-finite flags of every metric a step can return, and the
  first step (1-based, in the task) whose metrics were not all finite."""
  return {'sums': {k: jnp.zeros(v.shape, jnp.float32) for k, v in metric_shapes.items()},
          'counts': {k: jnp.zeros((), jnp.int32) for k in metric_shapes},
          'nonfinite': {k: jnp.zeros((), bool) for k in metric_shapes},
          'first_bad_step': jnp.full((), NO_BAD_STEP, jnp.int32)}


def accumulate(accumulator: dict, metrics: Dict[str, jnp.ndarray], step_done) -> dict:
  """Adds one step's metrics ([] or, with seeds, [S] each) into ``accumulator``."""
  sums, counts, nonfinite = (dict(accumulator[k]) for k in ('sums', 'counts', 'nonfinite'))
  any_bad = jnp.zeros((), bool)
  for name, value in metrics.items():
    value = value.astype(jnp.float32)
    bad = ~jnp.all(jnp.isfinite(value))
    sums[name] = sums[name] + value
    counts[name] = counts[name] + 1
    nonfinite[name] = nonfinite[name] | bad
    any_bad = any_bad | bad
  first = accumulator['first_bad_step']
  first = jnp.where((first == NO_BAD_STEP) & any_bad, step_done, first)
  return {'sums': sums, 'counts': counts, 'nonfinite': nonfinite, 'first_bad_step': first}


def averages(values: dict) -> Dict[str, float]:
  """The host copy of an accumulator -> each metric's mean over its steps (and seeds)."""
  return {name: float(np.mean(total)) / int(values['counts'][name])
          for name, total in values['sums'].items() if int(values['counts'][name])}


# The fused call --------------------------------------------------------------------------------
def _in_order(tree, dependency):
  """``tree``, computed after ``dependency`` where the backend wants the steps of a call in
  sequence (``cpu.backend.sequence_steps``: on the CPU, so that XLA compiles every step as it
  compiles a step jitted alone, the same values bit for bit; fused across steps, the values
  moved by ~1e-6 per step)."""
  return schedule.after(tree, dependency) if backend.sequence_steps() else tree


def _one_seed_steps(method, variants: tuple, static):
  """``(state, batches [n, B, ...], seed, task, accumulator) -> (state, accumulator)`` for one
  seed's state: one step of each of ``variants`` from its ``task_step``."""
  steps = [method.step_function(variant, static) for variant in variants]

  def run(state, batches, seed, task, accumulator):
    first_step = state.task_step  # the state counts its steps: nothing to send per call
    for i, step in enumerate(steps):
      if i:
        state = _in_order(state, state)
      state, metrics = step(state, batches[i], rng.step_key(seed, task, first_step + i))
      accumulator = accumulate(accumulator, metrics, first_step + i + 1)
    return state, accumulator
  return run


def fused_call(loop: Loop, variants: tuple, statics):
  """The jitted call running one step of each of ``variants`` (compiled once, cached in
  ``loop.fused``): ``(state, batches, task, accumulator) -> (state, accumulator)``; batches
  are [n, B, H, W, C] uint8, or [n, S, B, H, W, C] with seeds."""
  cache_key = (variants, statics)
  if cache_key in loop.fused:
    return loop.fused[cache_key]
  method, num_seeds = loop.method, loop.num_seeds
  seed_values = seeds_lib.seed_values(loop.config)
  if num_seeds == 1:
    run = _one_seed_steps(method, variants, statics[0] if statics else None)
    call = functools.partial(_call_one_seed, run, seed_values[0])
  elif method.vmappable and backend.seed_batching(loop.config.train.seed_batching) == 'vmap':
    run = _one_seed_steps(method, variants, None)
    call = functools.partial(_call_vmapped, run, jnp.asarray(seed_values, jnp.uint32))
  else:
    runs = [_one_seed_steps(method, variants, statics[s] if statics else None)
            for s in range(num_seeds)]
    call = functools.partial(_call_seed_by_seed, runs, seed_values)
  jitted = jax.jit(call, donate_argnums=(0, 3) if method.donate_state else (3,))
  loop.fused[cache_key] = jitted
  return jitted


def _call_one_seed(run, seed, state, batches, task, accumulator):
  return run(state, batches, seed, task, accumulator)


def _call_vmapped(run, seed_values, state, batches, task, accumulator):
  """Every seed's steps as one batched computation; metrics come out [S] per name."""
  def one(state, batches, seed):
    return run(state, batches, seed, task, zero_like(accumulator))
  state, per_seed = jax.vmap(one, in_axes=(0, 1, 0))(state, batches, seed_values)
  return state, _merge(accumulator, per_seed)


def _call_seed_by_seed(runs, seed_values, state, batches, task, accumulator):
  """Each seed's steps one after the other (``seed_batching`` 'loop', and methods whose step
  cannot be vmapped), each seed's after the one before (``_in_order``, as between steps)."""
  states, per_seed = [], []
  for s, run in enumerate(runs):
    one_state = seeds_lib.unstack(state, s)
    if states:
      one_state = _in_order(one_state, states[-1])
    one_state, one_accumulator = run(one_state, batches[:, s], seed_values[s], task,
                                     zero_like(accumulator))
    states.append(one_state)
    per_seed.append(one_accumulator)
  return seeds_lib.stack(states), _merge(accumulator, seeds_lib.stack(per_seed))


def zero_like(accumulator: dict) -> dict:
  """An empty accumulator for one seed: sums without the seed axis."""
  return empty_accumulator({k: jax.ShapeDtypeStruct(v.shape[1:], v.dtype)
                            for k, v in accumulator['sums'].items()})


def _merge(accumulator: dict, per_seed: dict) -> dict:
  """Adds the per-seed accumulators of one call (leaves with a leading [S]) into the run's."""
  first_call = per_seed['first_bad_step']
  first_call = jnp.min(jnp.where(first_call == NO_BAD_STEP, jnp.iinfo(jnp.int32).max,
                                 first_call))
  first = accumulator['first_bad_step']
  return {
      'sums': {k: v + per_seed['sums'][k] for k, v in accumulator['sums'].items()},
      'counts': {k: v + per_seed['counts'][k][0] for k, v in accumulator['counts'].items()},
      'nonfinite': {k: v | jnp.any(per_seed['nonfinite'][k])
                    for k, v in accumulator['nonfinite'].items()},
      'first_bad_step': jnp.where((first == NO_BAD_STEP)
                                  & (first_call != jnp.iinfo(jnp.int32).max), first_call, first)}


def _zeros(loop: Loop, task: int, state, batch_shape, statics) -> Callable:
  """A jitted ``empty_accumulator`` for ``task``'s steps: its output is placed (committed) as
  the fused calls' own outputs are, so a fresh accumulator does not compile another variant."""
  variants = task_variants(loop.method, task)
  if ('zeros', variants) not in loop.fused:
    shapes = metric_shapes(loop, variants, state, batch_shape, statics)
    loop.fused[('zeros', variants)] = jax.jit(lambda: empty_accumulator(shapes))
  return loop.fused[('zeros', variants)]


def task_variants(method, task: int) -> tuple:
  """The distinct step variants of ``task`` (those of one call's worth of steps: the pattern
  repeats every ``steps_per_call`` steps)."""
  return tuple(dict.fromkeys(method.step_variant(task, s)
                             for s in range(method.steps_per_call())))


def metric_shapes(loop: Loop, variants: tuple, state, batch_shape, statics) -> dict:
  """Every metric a step of one of ``variants`` can return ([] or [S]), traced but not run."""
  method = loop.method
  static = statics[0] if statics else None
  drop = 0 if loop.num_seeds == 1 else 1  # the seed axis
  one_state = jax.tree_util.tree_map(lambda x: jax.ShapeDtypeStruct(x.shape[drop:], x.dtype),
                                     state)
  batch = jax.ShapeDtypeStruct(batch_shape, jnp.uint8)
  shapes = {}
  for variant in variants:
    step = method.step_function(variant, static)
    shapes.update(jax.eval_shape(lambda s, b: step(s, b, jax.random.key(0))[1], one_state,
                                 batch))
  if loop.num_seeds > 1:
    shapes = {k: jax.ShapeDtypeStruct((loop.num_seeds,) + v.shape, v.dtype)
              for k, v in shapes.items()}
  return shapes


# One task ------------------------------------------------------------------------------------
def _call_length(task_step: int, total: int, per_call: int, config) -> int:
  """Steps of the call starting at ``task_step``: up to the next multiple of ``per_call``, log
  line, rolling checkpoint or the task's end, whichever comes first."""
  ends = [total]
  for every in (per_call, config.train.log_every, config.train.checkpoint_every):
    ends.append((task_step // every + 1) * every)
  return min(ends) - task_step


def place_batches(loop: Loop, task_batches, first_step: int, num_steps: int):
  """This host's rows of ``num_steps`` batches from ``first_step``, stacked and placed at
  once: [n, B, H, W, C] sharded along B, or [n, S, B, H, W, C] with seeds."""
  process, processes = jax.process_index(), jax.process_count()
  per_seed = [np.stack([batches.process_slice(first_step + i, process, processes)
                        for i in range(num_steps)]) for batches in task_batches]
  local = per_seed[0] if loop.num_seeds == 1 else np.stack(per_seed, axis=1)
  return jax.make_array_from_process_local_data(loop.stacked_sharding, local)


def _stop_received(loop: Loop, done: int) -> bool:
  """Whether to stop after the call that ended at task step ``done``. Every process of a
  multi-process run must save the same checkpoint, so there they agree first (a collective),
  at each log line: a signal that reached one process stops all of them there."""
  if not multihost.running():
    return loop.stop.received is not None
  return (done % loop.config.train.log_every == 0
          and multihost.any_process(loop.stop.received is not None))


def run_task(loop: Loop, state, task: int, task_batches, prefix: str, task_name: str):
  """Runs the remaining steps of ``task`` (``loop.task_steps[task]`` in all) on
  ``task_batches`` (one ``batching.TaskBatches`` per seed); returns the state and the last
  averaged metrics (over the steps since the last log line, and over seeds)."""
  config, method = loop.config, loop.method
  start, total = seeds_lib.counter(state.task_step), loop.task_steps[task]
  per_call = method.steps_per_call()
  accumulator, last, done = None, {}, start
  task_index = jnp.asarray(task, jnp.int32)

  def read_back(accumulator, done) -> Dict[str, float]:
    """The accumulator on the host: stops on a non-finite metric, else its averages."""
    values = jax.device_get(accumulator)
    bad_step = int(values['first_bad_step'])
    hooks.check_finite({k: bool(v) for k, v in values['nonfinite'].items()}, task_name,
                 bad_step if bad_step != NO_BAD_STEP else done, loop.checkpoints)
    return averages(values)

  while done < total:
    num_steps = _call_length(done, total, per_call, config)
    variants = tuple(method.step_variant(task, s) for s in range(done, done + num_steps))
    statics = method.static_step_args(state)
    batches = place_batches(loop, task_batches, done, num_steps)
    if accumulator is None:
      accumulator = _zeros(loop, task, state, batches.shape[-4:], statics)()
    call = fused_call(loop, variants, statics)
    state, accumulator = call(state, batches, task_index, accumulator)
    done += num_steps
    gstep = durations.global_step(loop.task_steps, task, done)
    # At a task's last step the end-of-task section saves; the next call sees the flag.
    if _stop_received(loop, done) and done < total:
      read_back(accumulator, done)
      checkpointing.save(loop.checkpoints, gstep, state)
      checkpointing.finish(loop.checkpoints)
      signal_name = loop.stop.received or 'a stop signal (by another process)'
      raise hooks.StopRequested(f'{signal_name} received: saved checkpoint {gstep} (task '
                          f'{task_name}, step {done}); rerun the same command to resume.')
    if done % config.train.log_every == 0 or done == total:
      last = read_back(accumulator, done)
      accumulator = None
      rate = loop.progress(gstep, f'{prefix} | step {done}/{total}', last)
      loop.metrics_log.write_scalars(gstep, {**last,
                                             **({'steps_per_sec': rate} if rate else {})})
    if done % config.train.checkpoint_every == 0 and done < total:
      if accumulator is not None:
        read_back(accumulator, done)
      checkpointing.save(loop.checkpoints, gstep, state)
  if accumulator is not None:  # the end-of-task section saves next
    read_back(accumulator, done)
  # A rolling save that failed (a full disk) stops the run now, not after the evaluation.
  checkpointing.finish(loop.checkpoints)
  return state, last
