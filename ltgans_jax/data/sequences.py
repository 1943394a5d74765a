"""Named task sequences: ``build_sequence(config)`` -> list of ``Task``, all at the common
shape ``config.data.image_size`` x ``config.data.channels``, uint8.

``config.data.sequence`` picks one of ``SEQUENCES``:

| sequence             | tasks                                                          | paper    |
|----------------------|----------------------------------------------------------------|----------|
| digits_split         | scikit-learn digits split by class (no files needed)           | demo     |
| mnist_fashion        | MNIST -> Fashion-MNIST                                         | issue 2  |
| msfo                 | MNIST -> SVHN -> Fashion -> Omniglot                           | Table 1  |
| msfo_offline         | MNIST -> Fashion -> inverted MNIST -> inverted Fashion         | Table 1* |
| msf_fuzzy            | MNIST-c -> SVHN-c -> Fashion-c                                 | Table 3  |
| mnist_fashion_fuzzy  | MNIST-c -> Fashion-c                                           | Table 3* |
| class_split          | ``data.dataset`` split into ``data.num_tasks`` class tasks     | Fig. 4a  |
| cifar_imagenet       | CIFAR10 -> CIFAR100 -> Sub1-ImageNet -> Sub2-ImageNet           | Table 2  |
| celeba_cacd          | CelebA -> CACD (64x64)                                         | Figs 2-3 |
| celeba_chairs        | CelebA -> 3D Chairs (64x64)                                    | Figs 2-3 |

(* offline stand-ins that run from MNIST and Fashion-MNIST alone.)

Fuzzy boundaries ("-c" sets, Table 3): for the i-th pair of neighbouring databases in the
chain, the images of class ``data.fuzzy_swap_classes[i]`` are exchanged between the two (train
and test alike), the other classes stay. The default (8, 9) swaps MNIST's and SVHN's 8s and
SVHN's and Fashion's 9s (ankle boots): the paper says "one of the classes", the authors' public
code swaps classes 8 and 9.
"""

from __future__ import annotations

from typing import Callable, Dict, List, NamedTuple, Sequence

import ml_collections
import numpy as np

from ltgans_jax.data import datasets, local, preprocess
from ltgans_jax.data.local import SplitArrays
from ltgans_jax.errors import ConfigError


class Task(NamedTuple):
  name: str
  train: SplitArrays  # images [N, S, S, C] uint8
  test: SplitArrays


def task_from_splits(name: str, splits: Dict[str, SplitArrays]) -> Task:
  return Task(name, splits['train'], splits['test'])


def _select(split: SplitArrays, keep: np.ndarray) -> SplitArrays:
  return SplitArrays(split.images[keep], split.labels[keep])


def _select_classes(split: SplitArrays, classes) -> SplitArrays:
  return _select(split, np.isin(split.labels, list(classes)))


def split_by_class(name: str, splits: Dict[str, SplitArrays], num_tasks: int) -> List[Task]:
  """One dataset's classes, in order, divided into ``num_tasks`` contiguous groups."""
  classes = np.unique(splits['train'].labels)
  if not 1 <= num_tasks <= len(classes):
    raise ConfigError(f'data.num_tasks={num_tasks} but {name} has {len(classes)} classes; '
                     f'use 1 to {len(classes)}.')
  tasks = []
  for group in np.array_split(classes, num_tasks):
    label = f'{name}[{group[0]}-{group[-1]}]' if len(group) > 1 else f'{name}[{group[0]}]'
    tasks.append(Task(label, _select_classes(splits['train'], group),
                      _select_classes(splits['test'], group)))
  return tasks


def invert_task(task: Task) -> Task:
  """The photographic negative of a task (the authors' 'inverted' domains)."""
  return Task(f'{task.name}-inverted',
              *(SplitArrays(preprocess.invert(s.images), s.labels) for s in task[1:]))


def exchange_class(first: Task, second: Task, label: int):
  """Swaps the images of class ``label`` between two tasks (train and test): -> (Task, Task)."""
  def swap(keep_from: SplitArrays, take_from: SplitArrays) -> SplitArrays:
    kept = _select(keep_from, keep_from.labels != label)
    taken = _select(take_from, take_from.labels == label)
    return SplitArrays(np.concatenate([kept.images, taken.images]),
                       np.concatenate([kept.labels, taken.labels]))
  return (Task(first.name, swap(first.train, second.train), swap(first.test, second.test)),
          Task(second.name, swap(second.train, first.train), swap(second.test, first.test)))


def fuzzy_chain(tasks: Sequence[Task], swap_classes: Sequence[int]) -> List[Task]:
  """Exchanges class ``swap_classes[i]`` between tasks i and i+1; names get a '-c'."""
  if len(swap_classes) < len(tasks) - 1:
    raise ConfigError(f'data.fuzzy_swap_classes={tuple(swap_classes)} names fewer classes than '
                     f'the {len(tasks) - 1} neighbouring pairs of the sequence; give one per '
                     'pair.')
  tasks = list(tasks)
  for i in range(len(tasks) - 1):
    tasks[i], tasks[i + 1] = exchange_class(tasks[i], tasks[i + 1], swap_classes[i])
  return [t._replace(name=f'{t.name}-c') for t in tasks]


def chain(config, names: Sequence[str]) -> List[Task]:
  return [task_from_splits(name, datasets.load(name, config)) for name in names]


def digits_split(config) -> List[Task]:
  """scikit-learn's bundled digits split by class into ``data.num_tasks`` tasks (no download)."""
  size, channels = config.data.image_size, config.data.channels
  splits = {name: SplitArrays(preprocess.to_common_shape(s.images, size, channels), s.labels)
            for name, s in local.load_sklearn_digits().items()}
  return split_by_class('digits', splits, config.data.num_tasks)


def msfo_offline(config) -> List[Task]:
  mnist, fashion = chain(config, ('mnist', 'fashion_mnist'))
  return [mnist, fashion, invert_task(mnist), invert_task(fashion)]


def cifar_imagenet(config) -> List[Task]:
  tasks = chain(config, ('cifar10', 'cifar100'))
  for name, classes in (('sub1_imagenet', config.data.imagenet_sub1),
                        ('sub2_imagenet', config.data.imagenet_sub2)):
    tasks.append(task_from_splits(name, datasets.load('imagenet', config, list(classes))))
  return tasks


def class_split(config) -> List[Task]:
  name = config.data.dataset
  return split_by_class(name, datasets.load(name, config), config.data.num_tasks)


SEQUENCES: Dict[str, Callable[[ml_collections.ConfigDict], List[Task]]] = {
    'digits_split': digits_split,
    'mnist_fashion': lambda c: chain(c, ('mnist', 'fashion_mnist')),
    'msfo': lambda c: chain(c, ('mnist', 'svhn', 'fashion_mnist', 'omniglot')),
    'msfo_offline': msfo_offline,
    'msf_fuzzy': lambda c: fuzzy_chain(chain(c, ('mnist', 'svhn', 'fashion_mnist')),
                                       c.data.fuzzy_swap_classes),
    'mnist_fashion_fuzzy': lambda c: fuzzy_chain(chain(c, ('mnist', 'fashion_mnist')),
                                                 c.data.fuzzy_swap_classes),
    'class_split': class_split,
    'cifar_imagenet': cifar_imagenet,
    'celeba_cacd': lambda c: chain(c, ('celeba', 'cacd')),
    'celeba_chairs': lambda c: chain(c, ('celeba', 'chairs')),
}


def build_sequence(config: ml_collections.ConfigDict) -> List[Task]:
  name = config.data.sequence
  if name not in SEQUENCES:
    raise ConfigError(f'data.sequence={name!r} is unknown; use one of {sorted(SEQUENCES)}.')
  tasks = SEQUENCES[name](config)
  for task in tasks:
    if len(task.train.images) < config.train.batch_size:
      raise ConfigError(f'train.batch_size={config.train.batch_size} exceeds the '
                        f'{len(task.train.images)} training images of task {task.name}; use a '
                        'smaller batch.')
  return tasks
