"""Named task sequences: ``build_sequence(config)`` -> list of ``Task``, all at the common
shape ``config.data.image_size`` x ``config.data.channels``, uint8.

Sequences are registered by name in ``SEQUENCES``; ``config.data.sequence`` picks one.
Datasets on disk are read from ``config.data.data_dir/<dataset>/`` in their published format.
"""

from __future__ import annotations

import os
from typing import Callable, Dict, List, NamedTuple

import ml_collections
import numpy as np

from ltgans_jax.data import local, preprocess
from ltgans_jax.data.local import DatasetError, SplitArrays


class Task(NamedTuple):
  name: str
  train: SplitArrays  # images [N, S, S, C] uint8
  test: SplitArrays


def _common_shape(splits: Dict[str, SplitArrays], config) -> Dict[str, SplitArrays]:
  size, channels = config.data.image_size, config.data.channels
  return {name: SplitArrays(preprocess.to_common_shape(s.images, size, channels), s.labels)
          for name, s in splits.items()}


def task_from_splits(name: str, splits: Dict[str, SplitArrays]) -> Task:
  return Task(name, splits['train'], splits['test'])


def _select_classes(split: SplitArrays, classes) -> SplitArrays:
  keep = np.isin(split.labels, list(classes))
  return SplitArrays(split.images[keep], split.labels[keep])


def split_by_class(name: str, splits: Dict[str, SplitArrays], num_tasks: int) -> List[Task]:
  """One dataset's classes, in order, divided into ``num_tasks`` contiguous groups."""
  classes = np.unique(splits['train'].labels)
  if not 1 <= num_tasks <= len(classes):
    raise ValueError(f'data.num_tasks={num_tasks} but {name} has {len(classes)} classes; '
                     f'use 1 to {len(classes)}.')
  tasks = []
  for group in np.array_split(classes, num_tasks):
    label = f'{name}[{group[0]}-{group[-1]}]' if len(group) > 1 else f'{name}[{group[0]}]'
    tasks.append(Task(label, _select_classes(splits['train'], group),
                      _select_classes(splits['test'], group)))
  return tasks


def _idx_dataset(config, folder_name: str) -> Dict[str, SplitArrays]:
  if not config.data.data_dir:
    raise DatasetError(f'This sequence reads {folder_name}/ from a local folder; set '
                       '--config.data.data_dir to the folder that holds it.')
  return local.load_idx_dataset(os.path.join(config.data.data_dir, folder_name))


def digits_split(config) -> List[Task]:
  """scikit-learn's bundled digits split by class into ``data.num_tasks`` tasks (no download)."""
  return split_by_class('digits', _common_shape(local.load_sklearn_digits(), config),
                        config.data.num_tasks)


def mnist_fashion(config) -> List[Task]:
  """MNIST -> Fashion-MNIST from the published IDX files under ``data.data_dir``."""
  return [task_from_splits(name, _common_shape(_idx_dataset(config, name), config))
          for name in ('mnist', 'fashion_mnist')]


SEQUENCES: Dict[str, Callable[[ml_collections.ConfigDict], List[Task]]] = {
    'digits_split': digits_split,
    'mnist_fashion': mnist_fashion,
}


def build_sequence(config: ml_collections.ConfigDict) -> List[Task]:
  name = config.data.sequence
  if name not in SEQUENCES:
    raise ValueError(f'data.sequence={name!r} is unknown; use one of {sorted(SEQUENCES)}.')
  return SEQUENCES[name](config)
