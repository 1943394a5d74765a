"""How many steps each task runs, from ``train.steps_per_task`` or ``train.epochs_per_task``.

A step is one critic update on one batch (one Student update for the VAE baselines); a
generator update comes every ``gan.critic_steps``-th step. With ``train.epochs_per_task = 0``
(our default) every task runs ``train.steps_per_task`` steps. With ``epochs_per_task = E > 0``
task t runs ``ceil(E * N_t / n_t)`` steps, where N_t is the number of training images the task
trains on (the union of tasks 1..t for ``method='joint'``) and n_t the task images one step
consumes (``LifelongMethod.data_images_per_step``): an epoch is one pass of the task's data
through the critic's real side. On LT-GANs' tasks k >= 2 half of the real side is Teacher
samples, so n_t = B/2 and those tasks run twice as many steps as task 1 for the same number of
epochs. This is what the authors' code does: 20 epochs per task, batches of 64 real images on
task 1 and of 32 real + 32 Teacher images afterwards, one critic and one generator update per
batch (about 18.7k generator updates on MNIST's task 1, 37.5k on a 60k-image task k >= 2).

Checkpoint numbers are global steps: the steps of the tasks before plus the step in the task
(``global_step``).
"""

from __future__ import annotations

import math
from typing import Sequence, Tuple


def task_steps(config, method, train_sizes: Sequence[int]) -> Tuple[int, ...]:
  """Steps of each task.

  Args:
    config: the run's config (``train.steps_per_task``, ``train.epochs_per_task``,
      ``train.batch_size``).
    method: the run's ``base.LifelongMethod`` (``data_images_per_step``,
      ``cumulative_data``).
    train_sizes: training images of each task, in order.
  Returns:
    One step count per task.
  """
  train = config.train
  if not train.epochs_per_task:
    return tuple(int(train.steps_per_task) for _ in train_sizes)
  counts = []
  for task, size in enumerate(train_sizes):
    images = sum(train_sizes[:task + 1]) if method.cumulative_data else size
    per_step = method.data_images_per_step(task, train.batch_size)
    counts.append(max(1, math.ceil(train.epochs_per_task * images / per_step)))
  return tuple(counts)


def global_step(task_steps_: Sequence[int], task: int, task_step: int) -> int:
  """The checkpoint number of step ``task_step`` of task ``task`` (0-based)."""
  return sum(task_steps_[:task]) + task_step


def task_boundary_steps(task_steps_: Sequence[int]):
  """The checkpoint numbers at the end of every task."""
  return [global_step(task_steps_, t, task_steps_[t]) for t in range(len(task_steps_))]


def describe(config, task_steps_: Sequence[int]) -> str:
  """'1500 steps per task' or '20 epochs per task (18750, 37500 steps)', for reports."""
  if not config.train.epochs_per_task:
    return f'{config.train.steps_per_task} steps per task'
  return (f'{config.train.epochs_per_task:g} epochs per task '
          f'({", ".join(str(s) for s in task_steps_)} steps)')
