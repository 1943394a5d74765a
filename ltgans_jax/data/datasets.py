"""Datasets by name, from local files in their published formats or from TFDS.

``load(name, config)`` returns ``{'train': SplitArrays, 'test': SplitArrays}`` at the common
shape of the config. ``config.data.source`` picks where the files come from:

* ``'local'`` (default, works air-gapped): ``config.data.data_dir/<folder>/`` in the format the
  dataset is published in (table below).
* ``'tfds'``: the prepared TFDS dataset under ``config.data.data_dir`` (never downloads; an
  unprepared one fails at once with a message saying how to prepare it or go local).

| name           | local folder under data_dir         | published format          | TFDS name      |
|----------------|-------------------------------------|---------------------------|----------------|
| mnist          | mnist/                              | IDX .gz                   | mnist          |
| fashion_mnist  | fashion_mnist/                      | IDX .gz                   | fashion_mnist  |
| svhn           | svhn/                               | train_32x32.mat, test_... | svhn_cropped   |
| omniglot       | omniglot/                           | images_background/, ...   | omniglot       |
| cifar10        | cifar10/                            | cifar-10-batches-py       | cifar10        |
| cifar100       | cifar100/                           | cifar-100-python          | cifar100       |
| imagenet       | imagenet/ (one folder per class)    | image folder              | (local only)   |
| celeba         | celeba/ (img_align_celeba images)   | image folder              | celeb_a        |
| cacd           | cacd/                               | image folder              | (local only)   |
| chairs         | chairs/ (rendered_chairs)           | image folder              | (local only)   |
"""

from __future__ import annotations

import functools
import os
from typing import Callable, Dict, NamedTuple, Optional, Sequence

import ml_collections

from ltgans_jax.data import formats, local, preprocess
from ltgans_jax.data.local import DatasetError, SplitArrays

SOURCES = ('local', 'tfds')


class DatasetSpec(NamedTuple):
  folder: str
  load_local: Callable[..., Dict[str, SplitArrays]]  # (folder, image_size, class_names)
  tfds_name: Optional[str]


def _sized(loader):
  """Adapts a loader of fixed-size images to the (folder, image_size, class_names) signature."""
  return lambda folder, image_size, class_names=None: loader(folder)


DATASETS: Dict[str, DatasetSpec] = {
    'mnist': DatasetSpec('mnist', _sized(local.load_idx_dataset), 'mnist'),
    'fashion_mnist': DatasetSpec('fashion_mnist', _sized(local.load_idx_dataset),
                                 'fashion_mnist'),
    'svhn': DatasetSpec('svhn', _sized(formats.load_svhn_mat), 'svhn_cropped'),
    'omniglot': DatasetSpec('omniglot', _sized(formats.load_omniglot_folders), 'omniglot'),
    'cifar10': DatasetSpec('cifar10', _sized(formats.load_cifar10_pickles), 'cifar10'),
    'cifar100': DatasetSpec('cifar100', _sized(formats.load_cifar100_pickles), 'cifar100'),
    'imagenet': DatasetSpec('imagenet', formats.load_image_folder, None),
    'celeba': DatasetSpec('celeba', formats.load_image_folder, 'celeb_a'),
    'cacd': DatasetSpec('cacd', formats.load_image_folder, None),
    'chairs': DatasetSpec('chairs', formats.load_image_folder, None),
}


def _load_raw(name: str, config: ml_collections.ConfigDict,
              class_names: Optional[Sequence[str]]) -> Dict[str, SplitArrays]:
  if name not in DATASETS:
    raise DatasetError(f'Unknown dataset {name!r}; use one of {sorted(DATASETS)}.')
  spec, data = DATASETS[name], config.data
  if data.source == 'tfds':
    if spec.tfds_name is None:
      raise DatasetError(f'{name} is not in TFDS; use --config.data.source=local with its '
                         f'published files in DATA_DIR/{spec.folder}/.')
    from ltgans_jax.data import tfds_source  # pylint: disable=g-import-not-at-top
    return tfds_source.load_tfds(spec.tfds_name, data.data_dir or None,
                                 image_size=data.image_size)
  if data.source != 'local':
    raise DatasetError(f'data.source={data.source!r}; use one of {SOURCES}.')
  if not data.data_dir:
    raise DatasetError(f'{name} is read from DATA_DIR/{spec.folder}/ in its published format; '
                       'set --config.data.data_dir=DATA_DIR (or --config.data.source=tfds).')
  folder = os.path.join(data.data_dir, spec.folder)
  if not os.path.isdir(folder):
    raise DatasetError(f'{name}: no folder {folder}; put the published files of {name} there '
                       'or point --config.data.data_dir at the folder that holds '
                       f'{spec.folder}/.')
  return spec.load_local(folder, data.image_size, class_names=class_names)


@functools.lru_cache(maxsize=8)
def _load_cached(name, source, data_dir, image_size, channels, class_names):
  config = ml_collections.ConfigDict({'data': {
      'source': source, 'data_dir': data_dir, 'image_size': image_size}})
  splits = _load_raw(name, config, class_names)
  return {split: SplitArrays(preprocess.to_common_shape(s.images, image_size, channels),
                             s.labels) for split, s in splits.items()}


def load(name: str, config: ml_collections.ConfigDict,
         class_names: Optional[Sequence[str]] = None) -> Dict[str, SplitArrays]:
  """Dataset ``name`` at [N, image_size, image_size, channels] uint8 (cached per process, so a
  sequence that uses a dataset twice reads it once)."""
  data = config.data
  return _load_cached(name, data.source, data.data_dir, data.image_size, data.channels,
                      tuple(class_names) if class_names else None)
