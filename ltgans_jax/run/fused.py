"""Several steps of one task in one jitted call, with their metrics summed on the device.

``FusedSteps.run(state, task, first_step, batches, accumulator)`` runs one step of a method per
batch of ``batches`` [n, B, H, W, C] (or [n, S, B, H, W, C] with S seeds), each step the
variant the method's ``StepPlan`` names. It draws each step's key on the device
(``rng.step_key`` of the traced step number: the keys of a step jitted alone) and adds the
step's metrics, and whether each was finite, into a small accumulator that stays on the device
until the loop reads it back (``averages``). A call's compiled program depends on the variants
of its steps and the plan's static args; each is compiled once and kept.

With S > 1 seeds the state carries a leading seed axis, and a call steps the seeds one of three
ways: 'vmap' (one batched computation), 'loop' (one seed after the other in the same call;
``Backend.seed_batching``), or one after the other because the step cannot be vmapped (CURL:
its component count is a static shape). Where the backend sequences the steps
(``Backend.sequence_steps``: the CPU) the steps of a call, and the seeds of a 'loop' call, run
one after the other behind ``cpu.schedule.after``, so that XLA compiles each step as it
compiles a step jitted alone: the same values, bit for bit (``tests/test_seeds.py``).
"""

from __future__ import annotations

import functools
from typing import Dict, List

import jax
import jax.numpy as jnp
import numpy as np

from ltgans_jax import rng
from ltgans_jax.cpu import schedule
from ltgans_jax.methods.base import StepPlan
from ltgans_jax.run import seeds as seeds_lib

NO_BAD_STEP = -1


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


# One seed's steps ------------------------------------------------------------------------------
def _in_order(tree, dependency, sequence: bool):
  """``tree``, computed after ``dependency`` when ``sequence`` (``Backend.sequence_steps``)."""
  return schedule.after(tree, dependency) if sequence else tree


def _one_seed_steps(steps: list, sequence: bool):
  """``(seed, state, batches [n, B, ...], task, accumulator) -> (state, accumulator)`` for
  one seed's state: one step of each of ``steps`` (``(state, batch, key) -> (state,
  metrics)``) from its ``task_step``."""

  def run(seed, state, batches, task, accumulator):
    first_step = state.task_step  # the state counts its steps: nothing to send per call
    for i, step in enumerate(steps):
      if i:
        state = _in_order(state, state, sequence)
      state, metrics = step(state, batches[i], rng.step_key(seed, task, first_step + i))
      accumulator = accumulate(accumulator, metrics, first_step + i + 1)
    return state, accumulator
  return run


# Several seeds: batched, or one after the other ----------------------------------------------------
def _call_vmapped(run, seed_values, state, batches, task, accumulator):
  """Every seed's steps as one batched computation; metrics come out [S] per name."""
  def one(state, batches, seed):
    return run(seed, state, batches, task, zero_like(accumulator))
  state, per_seed = jax.vmap(one, in_axes=(0, 1, 0))(state, batches, seed_values)
  return state, _merge(accumulator, per_seed)


def _call_seed_by_seed(runs, seed_values, sequence, state, batches, task, accumulator):
  """Each seed's steps one after the other ('loop', and methods whose step cannot be vmapped),
  each seed's after the one before where the backend sequences steps."""
  states, per_seed = [], []
  for s, run in enumerate(runs):
    one_state = seeds_lib.unstack(state, s)
    if states:
      one_state = _in_order(one_state, states[-1], sequence)
    one_state, one_accumulator = run(seed_values[s], one_state, batches[:, s], task,
                                     zero_like(accumulator))
    states.append(one_state)
    per_seed.append(one_accumulator)
  return seeds_lib.stack(states), _merge(accumulator, seeds_lib.stack(per_seed))


class FusedSteps:
  """The fused calls of one run: ``plan``'s steps for ``seed_values`` on ``backend``, each
  compiled call kept by its variants and static args."""

  def __init__(self, plan: StepPlan, backend, seed_values: List[int]):
    self.plan, self.backend, self.seed_values = plan, backend, list(seed_values)
    self.calls, self.zero_calls, self.steps = {}, {}, {}
    self._task_index = {}

  @property
  def num_seeds(self) -> int:
    return len(self.seed_values)

  def run(self, state, task: int, first_step: int, batches, accumulator=None):
    """Steps ``first_step``, ... of ``task``, one per batch of ``batches``, from ``state``;
    returns (state, accumulator), the accumulator a fresh one when None is given."""
    variants = tuple(self.plan.variant(task, s)
                     for s in range(first_step, first_step + batches.shape[0]))
    statics = self.plan.static_args(state)
    if accumulator is None:
      accumulator = self._zeros(task, state, batches.shape[-4:], statics)()
    if task not in self._task_index:
      self._task_index[task] = jnp.asarray(task, jnp.int32)
    return self._call(variants, statics)(state, batches, self._task_index[task], accumulator)

  def _step(self, variant, static):
    """The plan's step ``variant`` with ``static``, jitted once and kept: the fused calls and
    the accumulator's shapes then trace it once between them (a jitted function is traced
    once per input shapes; nested in a call, XLA inlines it when it compiles the call)."""
    if (variant, static) not in self.steps:
      self.steps[variant, static] = jax.jit(self.plan.step(variant, static))
    return self.steps[variant, static]

  def _call(self, variants: tuple, statics):
    """The jitted ``(state, batches, task, accumulator) -> (state, accumulator)`` running one
    step of each of ``variants``."""
    if (variants, statics) in self.calls:
      return self.calls[variants, statics]
    plan, sequence = self.plan, self.backend.sequence_steps
    steps = lambda static: [self._step(variant, static) for variant in variants]
    if self.num_seeds == 1:
      run = _one_seed_steps(steps(statics[0] if statics else None), sequence)
      call = functools.partial(run, self.seed_values[0])
    elif plan.vmappable and self.backend.seed_batching == 'vmap':
      run = _one_seed_steps(steps(None), sequence)
      call = functools.partial(_call_vmapped, run, jnp.asarray(self.seed_values, jnp.uint32))
    else:
      runs = [_one_seed_steps(steps(statics[s] if statics else None), sequence)
              for s in range(self.num_seeds)]
      call = functools.partial(_call_seed_by_seed, runs, self.seed_values, sequence)
    self.calls[variants, statics] = jax.jit(
        call, donate_argnums=(0, 3) if plan.donate_state else (3,))
    return self.calls[variants, statics]

  def _zeros(self, task: int, state, batch_shape, statics):
    """A jitted ``empty_accumulator`` for ``task``'s steps: its output is placed (committed)
    as the fused calls' own outputs are, so a fresh accumulator does not compile another
    variant."""
    variants = self._task_variants(task)
    if variants not in self.zero_calls:
      shapes = self._metric_shapes(variants, state, batch_shape, statics)
      self.zero_calls[variants] = jax.jit(lambda: empty_accumulator(shapes))
    return self.zero_calls[variants]

  def _task_variants(self, task: int) -> tuple:
    """The distinct step variants of ``task`` (those of one call's worth of steps: the
    pattern repeats every ``steps_per_call`` steps)."""
    return tuple(dict.fromkeys(self.plan.variant(task, s)
                               for s in range(self.plan.steps_per_call)))

  def _metric_shapes(self, variants: tuple, state, batch_shape, statics) -> dict:
    """Every metric a step of one of ``variants`` can return ([] or [S]), traced, not run."""
    static = statics[0] if statics else None
    drop = 0 if self.num_seeds == 1 else 1  # the seed axis
    one_state = jax.tree_util.tree_map(
        lambda x: jax.ShapeDtypeStruct(x.shape[drop:], x.dtype), state)
    batch = jax.ShapeDtypeStruct(batch_shape, jnp.uint8)
    shapes = {}
    for variant in variants:
      step = self._step(variant, static)
      shapes.update(jax.eval_shape(step, one_state, batch, jax.random.key(0))[1])
    if self.num_seeds > 1:
      shapes = {k: jax.ShapeDtypeStruct((self.num_seeds,) + v.shape, v.dtype)
                for k, v in shapes.items()}
    return shapes
