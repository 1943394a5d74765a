"""Deterministic, resumable batches by index.

The order of task ``t``'s examples in epoch ``e`` is a permutation drawn from
``(seed, t, e)``, so batch ``s`` of a task can be computed directly: a run resumed at step s
reads the same batches the uninterrupted run would have, without replaying the data. Each epoch
drops its last partial batch. Indices within a batch are sorted (fast contiguous gathers).
"""

from __future__ import annotations

import functools

import numpy as np


def batch_indices(seed: int, task: int, step: int, num_examples: int,
                  batch_size: int) -> np.ndarray:
  """Indices [batch_size] into a task's training set for the task's ``step``-th batch."""
  if num_examples < batch_size:
    raise ValueError(f'task {task} has {num_examples} training images, fewer than '
                     f'batch_size={batch_size}; lower --config.train.batch_size.')
  batches_per_epoch = num_examples // batch_size
  epoch, position = divmod(step, batches_per_epoch)
  order = epoch_order(seed, task, epoch, num_examples)
  return np.sort(order[position * batch_size:(position + 1) * batch_size])


@functools.lru_cache(maxsize=4)
def epoch_order(seed: int, task: int, epoch: int, num_examples: int) -> np.ndarray:
  """The permutation of a task's examples in one epoch (cached: one draw per epoch, not per
  step, keeps the host out of the accelerator's way)."""
  order = np.random.default_rng([seed, task, epoch]).permutation(num_examples)
  order.setflags(write=False)
  return order


class TaskBatches:
  """The training batches of one task: ``batches[step]`` -> uint8 [B, H, W, C]."""

  def __init__(self, images: np.ndarray, batch_size: int, seed: int, task: int):
    self.images = images
    self.batch_size = batch_size
    self.seed = seed
    self.task = task

  def __getitem__(self, step: int) -> np.ndarray:
    return self.images[batch_indices(self.seed, self.task, step, len(self.images),
                                     self.batch_size)]

  def process_slice(self, step: int, process_index: int, process_count: int) -> np.ndarray:
    """This host's contiguous share [B / process_count, H, W, C] of the global batch ``step``:
    every host draws the same global indices and loads only its own rows."""
    indices = batch_indices(self.seed, self.task, step, len(self.images), self.batch_size)
    per_process = self.batch_size // process_count
    return self.images[indices[process_index * per_process:(process_index + 1) * per_process]]
