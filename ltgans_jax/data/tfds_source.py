"""TFDS datasets by name (mnist, svhn_cropped, fashion_mnist, omniglot, cifar10, cifar100,
celeb_a, ...), read into memory as ``{'train': SplitArrays, 'test': SplitArrays}``.

This loader never downloads. ``tfds.load`` on a machine without a network retries for minutes
before it fails; here a dataset that is not already prepared under ``data_dir`` raises
``DatasetError`` at once, saying how to prepare it elsewhere or use the published files with the
loaders in ``formats`` / ``local``.

Prepared ``array_record`` datasets are read with ``tfds.data_source`` (no TensorFlow needed);
``tfrecord`` ones fall back to ``builder.as_dataset``, which needs TensorFlow.
"""

from __future__ import annotations

import logging
from typing import Dict, Iterator, Optional, Sequence, Tuple

import numpy as np

from ltgans_jax.data.formats import center_crop_resize
from ltgans_jax.data.local import DatasetError, SplitArrays

log = logging.getLogger(__name__)

_CHUNK = 1024  # records decoded per read; bounds the memory held besides the output arrays
# TFDS stores Omniglot's 1-bit PNGs as three identical channels; keep one so the result matches
# ``formats.load_omniglot_folders``.
_GREY_STORED_AS_RGB = ('omniglot',)

Chunks = Iterator[Tuple[np.ndarray, np.ndarray]]


def _import_tfds():
  try:
    import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  except ImportError:
    raise DatasetError('tensorflow-datasets is not installed; pip install tensorflow-datasets, '
                       'or use --config.data.source=local with the published files.') from None
  return tfds


def _prepared_builder(tfds, name: str, data_dir: Optional[str]):
  """The builder of ``name`` under ``data_dir``, or DatasetError if it is not prepared there."""
  try:
    builder = tfds.builder(name, data_dir=data_dir)
  except tfds.core.DatasetNotFoundError:
    raise DatasetError(f'TFDS has no dataset named {name!r}; check the name against '
                       'https://www.tensorflow.org/datasets/catalog.') from None
  except (ValueError, AssertionError) as e:  # TFDS's errors for an unknown config or version
    raise DatasetError(f'TFDS cannot use {name!r} ({str(e).splitlines()[0]}); fix the config or '
                       'version part of the name.') from None
  # Checking the folder first spares the user TFDS's warning about a missing dataset_info.json.
  if not builder.data_path.exists() or not builder.is_prepared():
    root = data_dir or str(builder.data_dir_root)
    raise DatasetError(
        f'TFDS dataset {name!r} is not prepared under {root} and this loader never downloads '
        f'(an offline machine would hang for minutes); prepare it with `tfds build {name} '
        f'--data_dir={root}` on a machine with a network and copy that folder here, or set '
        '--config.data.source=local and --config.data.data_dir to the published files.')
  return builder


def _check_split(builder, name: str, split: str) -> None:
  """Raises DatasetError unless every base split named in ``split`` (which may use TFDS slicing
  such as ``'train[:90%]'`` or ``'train+validation'``) exists."""
  available = list(builder.info.splits)
  for part in split.split('+'):
    base = part.split('[')[0].strip()
    if base not in available:
      raise DatasetError(f'TFDS dataset {name!r} has no split {base!r}; choose split_names '
                         f'from {available}.')


def _feature_keys(builder, name: str) -> Tuple[str, Optional[str]]:
  """(image key, label key or None) of the builder's features."""
  features = builder.info.features
  if 'image' not in features:
    raise DatasetError(f'TFDS dataset {name!r} has features {sorted(features)} and no '
                       "'image'; only image datasets can be loaded here.")
  # Datasets with no class label (celeb_a) get label 0, like flat image folders.
  return 'image', ('label' if 'label' in features else None)


def _labels_of(records: Sequence[dict], label_key: Optional[str]) -> np.ndarray:
  if label_key is None:
    return np.zeros(len(records), np.int64)
  return np.asarray([r[label_key] for r in records], np.int64)


def _data_source_chunks(source, image_key: str, label_key: Optional[str]) -> Chunks:
  """Yields ([n, H, W, C] images, [n] labels) from a random-access data source."""
  for start in range(0, len(source), _CHUNK):
    records = source.__getitems__(range(start, min(start + _CHUNK, len(source))))
    yield np.stack([r[image_key] for r in records]), _labels_of(records, label_key)


def _tf_dataset_chunks(builder, split: str, image_key: str, label_key: Optional[str]) -> Chunks:
  """Yields ([n, H, W, C] images, [n] labels) through tf.data (needs TensorFlow)."""
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  try:
    dataset = builder.as_dataset(split=split, batch_size=_CHUNK, shuffle_files=False)
  except ImportError:
    raise DatasetError(f'{builder.name} is prepared as {builder.info.file_format}, which '
                       'needs TensorFlow to read; pip install tensorflow-cpu, or rebuild it with '
                       '`tfds build --file_format=array_record`.') from None
  for batch in tfds.as_numpy(dataset):
    images = batch[image_key]
    labels = (np.zeros(len(images), np.int64) if label_key is None
              else np.asarray(batch[label_key], np.int64))
    yield images, labels


def _chunks(builder, split: str, image_key: str, label_key: Optional[str]) -> Chunks:
  try:
    source = builder.as_data_source(split=split)
  except (NotImplementedError, ValueError) as e:
    # Raised when the files are tfrecord (no random access); tf.data can still read them.
    log.info('%s/%s has no random-access files (%s); reading through tf.data', builder.name,
             split, str(e).splitlines()[0])
    return _tf_dataset_chunks(builder, split, image_key, label_key)
  return _data_source_chunks(source, image_key, label_key)


def _read_split(builder, name: str, split: str, image_size: Optional[int]) -> SplitArrays:
  """Reads one split into [N, H, W, C] uint8 images (resized if ``image_size``) and [N]
  int64 labels, filling preallocated arrays chunk by chunk."""
  image_key, label_key = _feature_keys(builder, name)
  n = builder.info.splits[split].num_examples
  images, labels, pos = None, np.empty(n, np.int64), 0
  grey_copies = name.split('/')[0].split(':')[0] in _GREY_STORED_AS_RGB
  for chunk_images, chunk_labels in _chunks(builder, split, image_key, label_key):
    if chunk_images.dtype != np.uint8 or chunk_images.ndim != 4:
      raise DatasetError(f'TFDS dataset {name!r} gives {chunk_images.dtype} images of shape '
                         f'{chunk_images.shape[1:]}, not uint8 [H, W, C]; it cannot be loaded '
                         'here.')
    if grey_copies:
      chunk_images = chunk_images[..., :1]
    if image_size:
      chunk_images = np.stack([center_crop_resize(im, image_size) for im in chunk_images])
    if images is None:
      images = np.empty((n,) + chunk_images.shape[1:], np.uint8)
    images[pos:pos + len(chunk_images)] = chunk_images
    labels[pos:pos + len(chunk_labels)] = chunk_labels
    pos += len(chunk_images)
    log.info('%s/%s: read %d / %d examples', name, split, pos, n)
  if pos != n:
    raise DatasetError(f'TFDS dataset {name!r} split {split!r} declares {n} examples but '
                       f'holds {pos}; the prepared files are incomplete, prepare them again.')
  if images is None:  # an empty split: keep a 4-d shape so batching code sees [0, H, W, C]
    shape = builder.info.features[image_key].shape
    images = np.zeros((0,) + tuple(image_size or d for d in shape[:2]) + shape[2:], np.uint8)
  return SplitArrays(images, labels)


def load_tfds(name: str, data_dir: Optional[str],
              split_names: Sequence[str] = ('train', 'test'),
              image_size: Optional[int] = None) -> Dict[str, SplitArrays]:
  """Reads a prepared TFDS image dataset into memory; never downloads.

  Args:
    name: TFDS name, optionally with config/version ('mnist', 'cifar10', 'celeb_a:2.1.0').
    data_dir: the TFDS data folder (None: TFDS's default, ``$TFDS_DATA_DIR`` or
      ``~/tensorflow_datasets``).
    split_names: the two TFDS splits returned as 'train' and 'test' (TFDS slicing works, e.g.
      ``('train[:90%]', 'train[90%:]')``; celeb_a may use 'validation').
    image_size: if set, every image is center-cropped to a square and resized to this size as
      ``formats.load_image_folder`` does (keeps e.g. celeb_a small enough to hold in memory).

  Returns:
    {'train': SplitArrays, 'test': SplitArrays}: uint8 images [N, H, W, C] (grey datasets have
    C = 1; omniglot too, its three identical channels folded into one) and int64 labels [N]
    (the 'label' feature; zeros for datasets without one, such as celeb_a).
  """
  if len(split_names) != 2:
    raise DatasetError(f'split_names must name two TFDS splits (train, test), got '
                       f'{tuple(split_names)}.')
  tfds = _import_tfds()
  builder = _prepared_builder(tfds, name, data_dir)
  for split in split_names:
    _check_split(builder, name, split)
  return {key: _read_split(builder, name, split, image_size)
          for key, split in zip(('train', 'test'), split_names)}
