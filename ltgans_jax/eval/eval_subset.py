"""One fixed, seeded, class-stratified evaluation subset per task test set.

Test sets are often stored sorted by class (Omniglot's by alphabet, image folders class by
class), and the fuzzy "-c" sequences append the exchanged class at the end of a task's test
set. Evaluating "the first N test images" then measures a few classes only and, in the fuzzy
sequences, never the exchanged one. Every metric and every picture therefore reads the same
subset: ``count`` images per task drawn without replacement, each class holding its share of
the test set (largest-remainder rounding), in an order where every prefix is close to
stratified too (so a grid of the first 8 shows 8 different classes when there are that many).

The subset depends only on (``eval.subset_seed``, task index, the task's test labels, count):
it is the same in every run, every resume and every method, and independent of the training
seed, so that runs with different training seeds are measured on the same images. Our choice;
the paper does not say which test images it evaluates (the authors' code evaluates whole test
sets).
"""

from __future__ import annotations

from typing import List, Sequence

import numpy as np

# Mixed into the numpy generator's seed so this stream never meets another one.
_STREAM = 0x5E1EC7


def class_quotas(labels: np.ndarray, count: int) -> dict:
  """Images per class for a subset of ``count`` (capped at ``len(labels)``) in proportion to
  each class's share of ``labels`` [N], by largest remainder (ties to the smaller label)."""
  classes, sizes = np.unique(labels, return_counts=True)
  count = min(count, len(labels))
  exact = sizes * count / len(labels)
  quotas = np.floor(exact).astype(int)
  # Stable sort on minus the remainder: the largest remainders first, ties by class order.
  order = np.argsort(-(exact - quotas), kind='stable')
  quotas[order[:count - quotas.sum()]] += 1
  return {int(c): int(q) for c, q in zip(classes, quotas)}


def stratified_indices(labels: np.ndarray, count: int, seed: int, task: int) -> np.ndarray:
  """Indices into a test set with labels ``labels`` [N]: ``min(count, N)`` of them, each
  class with its ``class_quotas`` share, ordered so that every prefix is near-stratified.

  Returns int64 [min(count, N)], without repeats.
  """
  labels = np.asarray(labels)
  generator = np.random.default_rng([_STREAM, seed, task])
  quotas = class_quotas(labels, count)
  chosen, keys = [], []
  for label in generator.permutation(sorted(quotas)):
    quota = quotas[int(label)]
    members = np.flatnonzero(labels == label)
    picked = generator.choice(members, size=quota, replace=False)
    chosen.append(picked)
    # Class c's r-th image sits at (r + 0.5) / quota_c of the order: a proportional
    # interleave, classes in the random order above at equal keys.
    keys.append((np.arange(quota) + 0.5) / max(quota, 1))
  if not chosen:
    return np.zeros((0,), np.int64)
  chosen, keys = np.concatenate(chosen), np.concatenate(keys)
  return chosen[np.argsort(keys, kind='stable')].astype(np.int64)


def task_subsets(test_labels: Sequence[np.ndarray], count: int, seed: int) -> List[np.ndarray]:
  """``stratified_indices`` for every task's test labels, task index as the stream."""
  return [stratified_indices(labels, count, seed, task)
          for task, labels in enumerate(test_labels)]


def describe(count: int, seed: int) -> str:
  """The protocol, as the reports print it."""
  return (f'{count} test images per task (fewer where the test set is smaller), '
          f'class-stratified, drawn with eval.subset_seed={seed}')
