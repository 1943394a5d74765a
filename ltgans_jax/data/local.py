"""Local sources that need no network: IDX ``.gz`` files (MNIST, Fashion-MNIST) and
scikit-learn's bundled handwritten digits.

Every loader returns ``{'train': SplitArrays, 'test': SplitArrays}``.
"""

from __future__ import annotations

import gzip
import os
import zlib
from typing import Dict, NamedTuple

import numpy as np


class DatasetError(ValueError):
  """A dataset is missing or malformed; the message says what to do."""


class SplitArrays(NamedTuple):
  images: np.ndarray  # [N, H, W, C] uint8
  labels: np.ndarray  # [N] int64


IDX_FILES = {
    'train': ('train-images-idx3-ubyte.gz', 'train-labels-idx1-ubyte.gz'),
    'test': ('t10k-images-idx3-ubyte.gz', 't10k-labels-idx1-ubyte.gz'),
}
_IDX_DTYPES = {0x08: np.uint8}


def read_idx(path: str) -> np.ndarray:
  """Reads one IDX file (optionally gzipped) into an array of its declared shape."""
  opener = gzip.open if path.endswith('.gz') else open
  try:
    with opener(path, 'rb') as f:
      raw = f.read()
  except FileNotFoundError:
    raise DatasetError(f'Missing dataset file {path}; put the published IDX files there or '
                       'set --config.data.data_dir to the folder that holds them.') from None
  except (OSError, EOFError) as e:
    raise DatasetError(f'Cannot read {path} ({e}); download it again.') from None
  except zlib.error as e:  # the gzip header is fine but the compressed data inside is not
    raise DatasetError(f'Cannot decompress {path}: its compressed data is damaged ({e}); '
                       'download it again.') from None
  if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES:
    raise DatasetError(f'{path} is not an unsigned-byte IDX file; download it again.')
  ndim = raw[3]
  header = 4 + 4 * ndim
  if len(raw) < header:
    raise DatasetError(f'{path} ends inside its header ({len(raw)} of {header} bytes): the file '
                       'is truncated; download it again.')
  shape = tuple(int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], 'big') for i in range(ndim))
  data = np.frombuffer(raw, np.uint8, offset=header)
  if data.size != int(np.prod(shape)):
    raise DatasetError(f'{path} holds {data.size} values but its header declares shape '
                       f'{shape}: the file is truncated; download it again.')
  return data.reshape(shape)


def _published_or_unzipped(folder: str, name: str) -> str:
  """``folder/name`` (a published ``.gz``), or the file gunzip leaves if only that is there."""
  path = os.path.join(folder, name)
  unzipped = path[:-len('.gz')]
  return unzipped if not os.path.exists(path) and os.path.isfile(unzipped) else path


def load_idx_dataset(folder: str) -> Dict[str, SplitArrays]:
  """MNIST-style folder with the four published ``*-ubyte.gz`` files (or their gunzipped
  ``*-ubyte`` copies) -> splits of [N, 28, 28, 1] uint8 images and [N] labels."""
  splits = {}
  for split, (image_file, label_file) in IDX_FILES.items():
    images = read_idx(_published_or_unzipped(folder, image_file))
    labels = read_idx(_published_or_unzipped(folder, label_file)).astype(np.int64)
    if images.ndim != 3 or labels.shape != images.shape[:1]:
      raise DatasetError(f'{folder}: {image_file} has shape {images.shape} but {label_file} '
                         f'has {labels.shape}; the pair does not match, download them again.')
    splits[split] = SplitArrays(images[..., None], labels)
  return splits


def load_sklearn_digits(test_fraction: float = 0.2) -> Dict[str, SplitArrays]:
  """scikit-learn's 1797 handwritten digits (8x8, 17 grey levels) as uint8 [N, 8, 8, 1].

  The split is fixed (every fifth image of each class goes to test), so it never changes with
  the seed.
  """
  from sklearn.datasets import load_digits  # pylint: disable=g-import-not-at-top
  digits = load_digits()
  images = np.round(digits.images * (255.0 / 16.0)).astype(np.uint8)[..., None]
  labels = digits.target.astype(np.int64)
  rank_in_class = np.zeros(len(labels), np.int64)
  for c in np.unique(labels):
    members = np.flatnonzero(labels == c)
    rank_in_class[members] = np.arange(len(members))
  is_test = rank_in_class % round(1 / test_fraction) == 0
  return {'train': SplitArrays(images[~is_test], labels[~is_test]),
          'test': SplitArrays(images[is_test], labels[is_test])}
