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

Fuzzy boundaries ("-c" sets, Table 3): what the paper says, what the authors' code does, and
our two variants, ``data.fuzzy_variant`` (one of ``FUZZY_VARIANTS``), kept apart:

* The paper (Sec. 5): "we exchange certain images, from one of the classes, between two
  databases and create new databases, MNIST-c, SVHN-c and Fashion-c, while preserving the
  images for the other nine classes." It names neither the class nor the split.
* The authors' code (``TwinGenerative_Unsupervised_TaskBounders2.py`` of
  dtuzi123/Lifelong-Dual-GAN, ``Exchange_Dataset`` in ``mnist_hand.py``) swaps TWO classes, 8
  and 9, in two disjoint pairs, MNIST<->SVHN and CIFAR10<->Fashion, in the TRAINING sets only
  (it trains CIFAR10 -> SVHN -> Fashion -> MNIST and evaluates on the untouched test sets).
  Images are moved both ways (an exchange, not a copy); the label arrays are not updated. Its
  SVHN labels are the .mat labels minus 1 (``Fei_dataset.GetSVHN_DataSet``), so its SVHN
  "classes 8 and 9" are the digits 9 and 0. ``Exchange_Dataset`` also lists class 3 twice
  (``x1_arr4,x1_arr4``), doubling it in every swapped training set.
* ``'ours'`` (the default, our choice): for the i-th pair of neighbouring databases in the chain the
  images of class ``data.fuzzy_swap_classes[i]`` are exchanged, train and test alike; the
  default (8, 9) swaps MNIST's and SVHN's 8s and SVHN's and Fashion's 9s (ankle boots). We
  keep it as the default because it is the closer reading of the paper: one class per
  exchange, so MNIST-c and Fashion-c keep their other nine classes (SVHN-c, in the middle,
  keeps eight; the authors' swap keeps eight everywhere), and the paper calls the -c sets new
  databases and reports Table 3 under their names, which we read as test sets included.
  ``fuzzy_swap_classes=(8, 8)`` instead moves one class through the chain, so every database
  keeps nine.
* ``'authors_code'``: what the authors' code does, restated for our sequences: classes 8 and 9
  (in the authors' label numbering, so SVHN's digits 9 and 0) are exchanged between the 1st and
  2nd task, the 3rd and 4th, ..., in the training sets only; test sets are untouched, a last task
  without a partner is left as it is (in ``msf_fuzzy``: MNIST<->SVHN, and Fashion, whose
  partner there is CIFAR10, stays), ``fuzzy_swap_classes`` is not read and class 3 is not
  doubled. Moved images keep their own labels.
"""

from __future__ import annotations

import logging
from typing import Callable, Dict, List, NamedTuple, Sequence

import ml_collections
import numpy as np

from ltgans_jax.data import datasets, local, preprocess
from ltgans_jax.data.local import SplitArrays
from ltgans_jax.errors import ConfigError


log = logging.getLogger(__name__)


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
  if not len(classes):
    raise local.DatasetError(f'The training split of {name} holds no images; check its files '
                             'under data.data_dir (download them again).')
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


FUZZY_VARIANTS = ('ours', 'authors_code')
# The classes the authors' ``Exchange_Dataset`` swaps (its ``arr9``, ``arr10``), in its numbering.
AUTHORS_SWAP_CLASSES = (8, 9)


def exchange_classes(first: Task, second: Task, first_labels: Sequence[int],
                     second_labels: Sequence[int], splits: Sequence[str] = ('train', 'test')):
  """In each of ``splits``, ``first`` gives its images of ``first_labels`` to ``second`` and
  takes ``second``'s images of ``second_labels``; images keep their labels: -> (Task, Task)."""
  def swap(keep_from: SplitArrays, give: Sequence[int], take_from: SplitArrays,
           take: Sequence[int]) -> SplitArrays:
    kept = _select(keep_from, ~np.isin(keep_from.labels, list(give)))
    taken = _select(take_from, np.isin(take_from.labels, list(take)))
    return SplitArrays(np.concatenate([kept.images, taken.images]),
                       np.concatenate([kept.labels, taken.labels]))
  new_first, new_second = {}, {}
  for split in ('train', 'test'):
    a, b = getattr(first, split), getattr(second, split)
    if split in splits:
      a, b = (swap(a, first_labels, b, second_labels), swap(b, second_labels, a, first_labels))
    new_first[split], new_second[split] = a, b
  return first._replace(**new_first), second._replace(**new_second)


def exchange_class(first: Task, second: Task, label: int):
  """Swaps the images of class ``label`` between two tasks (train and test): -> (Task, Task)."""
  return exchange_classes(first, second, (label,), (label,))


def fuzzy_chain(tasks: Sequence[Task], swap_classes: Sequence[int]) -> List[Task]:
  """``'ours'``: exchanges class ``swap_classes[i]`` between tasks i and i+1, train and test;
  names get a '-c'."""
  if len(swap_classes) < len(tasks) - 1:
    raise ConfigError(f'data.fuzzy_swap_classes={tuple(swap_classes)} names fewer classes than '
                     f'the {len(tasks) - 1} neighbouring pairs of the sequence; give one per '
                     'pair.')
  tasks = list(tasks)
  for i in range(len(tasks) - 1):
    tasks[i], tasks[i + 1] = exchange_class(tasks[i], tasks[i + 1], swap_classes[i])
  return [t._replace(name=f'{t.name}-c') for t in tasks]


def authors_labels(name: str, classes: Sequence[int] = AUTHORS_SWAP_CLASSES) -> tuple:
  """Our labels of the authors' ``classes`` in dataset ``name``: their SVHN class k is our digit
  (k + 1) % 10 (they subtract 1 from the .mat labels 1..10, we map 10 to digit 0)."""
  if name == 'svhn':
    return tuple((c + 1) % 10 for c in classes)
  return tuple(classes)


def authors_fuzzy_pairs(tasks: Sequence[Task]) -> List[Task]:
  """``'authors_code'``: exchanges ``AUTHORS_SWAP_CLASSES`` between tasks 0 and 1, 2 and 3, ...
  in the training sets only; swapped tasks get a '-c', an unpaired last task is unchanged."""
  tasks = list(tasks)
  for i in range(0, len(tasks) - 1, 2):
    first, second = tasks[i], tasks[i + 1]
    first, second = exchange_classes(first, second, authors_labels(first.name),
                                     authors_labels(second.name), splits=('train',))
    tasks[i], tasks[i + 1] = (first._replace(name=f'{first.name}-c'),
                              second._replace(name=f'{second.name}-c'))
  return tasks


def fuzzy_sequence(config, names: Sequence[str]) -> List[Task]:
  """The datasets ``names`` with fuzzy boundaries of variant ``config.data.fuzzy_variant``."""
  variant = config.data.fuzzy_variant
  if variant not in FUZZY_VARIANTS:
    raise ConfigError(f'data.fuzzy_variant={variant!r}; use one of {FUZZY_VARIANTS}.')
  tasks = chain(config, names)
  if variant == 'authors_code':
    return authors_fuzzy_pairs(tasks)
  return fuzzy_chain(tasks, config.data.fuzzy_swap_classes)


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
    'msf_fuzzy': lambda c: fuzzy_sequence(c, ('mnist', 'svhn', 'fashion_mnist')),
    'mnist_fashion_fuzzy': lambda c: fuzzy_sequence(c, ('mnist', 'fashion_mnist')),
    'class_split': class_split,
    'cifar_imagenet': cifar_imagenet,
    'celeba_cacd': lambda c: chain(c, ('celeba', 'cacd')),
    'celeba_chairs': lambda c: chain(c, ('celeba', 'chairs')),
}


def classes_missing_from_test(task: Task) -> List[int]:
  """The classes ``task`` trains on that its test set lacks, sorted; none when the two sets
  share no class at all (a split by class by design, as Omniglot's background and evaluation
  alphabets), since the task is then measured on unseen classes on purpose."""
  train, test = set(np.unique(task.train.labels)), set(np.unique(task.test.labels))
  if not train & test:
    return []
  return sorted(int(c) for c in train - test)


def warn_missing_test_classes(tasks: Sequence[Task]) -> None:
  """Logs a warning, before training, for every task whose test set lacks classes it trains
  on: its evaluation (every metric reads a class-stratified subset of the test set,
  ``eval.eval_subset``) then measures the other classes only. A warning, not an error: tiny or
  hand-made test sets are legitimate, but the researcher must know the metric changed."""
  for task in tasks:
    missing = classes_missing_from_test(task)
    if missing:
      shown = ', '.join(map(str, missing[:10])) + (' ...' if len(missing) > 10 else '')
      log.warning('Task %s has no test images of classes %s, which it trains on, so its '
                  'evaluation measures only its other classes; add test images of those '
                  'classes to compare it with runs that measure them all.', task.name, shown)


def build_sequence(config: ml_collections.ConfigDict) -> List[Task]:
  name = config.data.sequence
  if name not in SEQUENCES:
    raise ConfigError(f'data.sequence={name!r} is unknown; use one of {sorted(SEQUENCES)}.')
  tasks = SEQUENCES[name](config)
  # Each task's evaluation reads min(eval.num_examples, test images): the FID needs two, the
  # grids of reconstructions eval.grid_rows. Checked here, not after the task has trained.
  needed = max(2, config.eval.grid_rows)
  for task in tasks:
    if len(task.train.images) < config.train.batch_size:
      raise ConfigError(f'train.batch_size={config.train.batch_size} exceeds the '
                        f'{len(task.train.images)} training images of task {task.name}; use a '
                        'smaller batch.')
    if len(task.test.images) < needed:
      raise ConfigError(f'Task {task.name} has {len(task.test.images)} test images but its '
                        f'evaluation needs {needed} (two for the FID, eval.grid_rows='
                        f'{config.eval.grid_rows} for the grids); give it more test images or '
                        'lower eval.grid_rows.')
  warn_missing_test_classes(tasks)
  return tasks
