"""Several seeds of one method in one process (``config.train.num_seeds``, ours).

With S = ``num_seeds`` > 1 the run trains seeds ``config.seed, config.seed + 1, ...,
config.seed + S - 1`` as one state whose every leaf has a leading seed axis [S, ...], stepped by
one fused call (``fused``: a ``jax.vmap``ped step, or the seeds one after the other),
checkpointed and resumed as one pytree. Each seed draws
the keys and the data order a one-seed run with that seed would (``rng.step_key``,
``batching.TaskBatches``), so seed s of an S-seed run is the one-seed run with seed
``config.seed + s`` (up to float rounding of the batched maths; ``tests/test_seeds.py``).

Everything outside the step (initialisation, the task boundaries, evaluation, pictures) runs
one seed at a time on slices of the stacked state, with the config of that seed
(``seed_config``); each seed's report, matrices and pictures go to ``workdir/seed<s>/`` as a
one-seed run would write them, and ``seeds_report`` sums them up over seeds. With S = 1 none of
this exists: the state has no seed axis and the run is the one-seed run it always was.
"""

from __future__ import annotations

import os
from typing import Callable, List, Sequence

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np


def count(config: ml_collections.ConfigDict) -> int:
  return int(config.train.get('num_seeds', 1))


def seed_values(config: ml_collections.ConfigDict) -> List[int]:
  """The seeds of a run: ``config.seed`` onwards, one per ``train.num_seeds``."""
  return [config.seed + s for s in range(count(config))]


def seed_config(config: ml_collections.ConfigDict, index: int) -> ml_collections.ConfigDict:
  """The config of seed ``index``'s one-seed run: ``seed`` moved on by ``index``,
  ``num_seeds`` 1."""
  one = ml_collections.ConfigDict(config.to_dict())
  one.seed = config.seed + index
  one.train.num_seeds = 1
  return one


def seed_workdir(workdir: str, index: int) -> str:
  """Where seed ``index`` of a multi-seed run writes its report, matrices and pictures."""
  return os.path.join(workdir, f'seed{index}')


def report_dirs(config: ml_collections.ConfigDict, workdir: str) -> List[str]:
  """Where each seed's report.json goes: the workdir itself for a one-seed run."""
  if count(config) == 1:
    return [workdir]
  return [seed_workdir(workdir, s) for s in range(count(config))]


def stack(states: Sequence) -> object:
  """One pytree with a leading seed axis from S > 1 pytrees of the same structure; the one
  pytree itself, without a seed axis, when S = 1."""
  if len(states) == 1:
    return states[0]
  return jax.tree_util.tree_map(lambda *leaves: jnp.stack(leaves), *states)


def unstack(state, index: int):
  """Seed ``index``'s pytree from a stacked one."""
  return jax.tree_util.tree_map(lambda leaf: leaf[index], state)


def per_seed(fn: Callable, state, num_seeds: int):
  """``fn`` applied to each seed's slice of ``state`` and restacked; ``fn`` itself when there
  is no seed axis (S = 1). Used for the pure, once-a-task moves (``begin_next_task``,
  ``end_task``), which then equal a one-seed run's exactly."""
  if num_seeds == 1:
    return fn(state)
  return stack([fn(unstack(state, s)) for s in range(num_seeds)])


def counter(value) -> int:
  """``state.task`` or ``state.task_step`` as a Python int (every seed holds the same one)."""
  return int(np.asarray(value).reshape(-1)[0])


def interval95(values: Sequence[float]) -> dict:
  """Mean, sample standard deviation and the half-width of the 95% interval of the mean
  (Student's t with n - 1 degrees of freedom) of one metric over seeds."""
  from scipy import stats  # pylint: disable=g-import-not-at-top
  values = np.asarray(values, np.float64)
  n = len(values)
  mean = float(np.mean(values))
  if n < 2:
    return {'mean': mean, 'std': 0.0, 'ci95': float('nan'), 'n': n}
  std = float(np.std(values, ddof=1))
  return {'mean': mean, 'std': std, 'n': n,
          'ci95': float(stats.t.ppf(0.975, n - 1) * std / np.sqrt(n))}
