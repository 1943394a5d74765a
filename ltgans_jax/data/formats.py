"""Parsers for datasets in the formats they are published in, for machines without a network.

Each loader reads files a user already has (SVHN ``.mat``, the CIFAR python pickles, Omniglot
PNG folders, plain image folders for ImageNet subsets / CelebA / CACD / 3D Chairs) and returns
``{'train': SplitArrays, 'test': SplitArrays}`` with uint8 images [N, H, W, C] and int64
labels [N], exactly like the loaders in ``local`` and ``tfds_source``.

Anything a user can get wrong (a missing file, a wrong folder, a truncated download) raises
``DatasetError`` with one sentence saying what to do.
"""

from __future__ import annotations

import concurrent.futures
import logging
import os
import pickle
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from ltgans_jax.data.local import DatasetError, SplitArrays

log = logging.getLogger(__name__)

IMAGE_EXTENSIONS = ('.jpg', '.jpeg', '.png')
_PROGRESS_EVERY = 10000  # images between progress log lines when reading big folders


# --------------------------------------------------------------------------------------------
# SVHN (cropped digits, ``*_32x32.mat``)
# --------------------------------------------------------------------------------------------

SVHN_FILES = {'train': 'train_32x32.mat', 'test': 'test_32x32.mat'}


def _read_svhn_file(path: str) -> SplitArrays:
  """One SVHN ``.mat`` file ('X' [32, 32, 3, N] uint8, 'y' [N, 1] in 1..10) -> SplitArrays of
  [N, 32, 32, 3] uint8 images and [N] int64 labels, with label 10 mapped to digit 0."""
  import scipy.io  # pylint: disable=g-import-not-at-top
  if not os.path.isfile(path):
    raise DatasetError(f'Missing SVHN file {path}; download {os.path.basename(path)} from '
                       'http://ufldl.stanford.edu/housenumbers/ into that folder or set '
                       '--config.data.data_dir to the folder that holds it.')
  if _is_matlab_v73(path):
    mat = _read_matlab_v73(path)
  else:
    try:
      mat = scipy.io.loadmat(path)
    except Exception as e:  # scipy raises ValueError, TypeError, OSError... on a bad file
      raise DatasetError(f'Cannot read {path} as a MATLAB file ({type(e).__name__}: {e}); '
                         'the file is corrupt or truncated, download it again.') from None
  if 'X' not in mat or 'y' not in mat:
    keys = sorted(k for k in mat if not k.startswith('__'))
    raise DatasetError(f'{path} holds variables {keys} but an SVHN file needs X and y; use the '
                       'cropped-digits files (train_32x32.mat, test_32x32.mat), not the full '
                       'numbers format.')
  x, y = mat['X'], np.asarray(mat['y']).reshape(-1)
  if x.ndim != 4 or x.shape[2] != 3 or x.shape[3] != y.size:
    raise DatasetError(f'{path}: X has shape {x.shape} and y has {y.size} labels, but SVHN '
                       'needs X as [32, 32, 3, N] with N labels; download the file again.')
  if y.size and (y.min() < 0 or y.max() > 10):
    raise DatasetError(f'{path}: labels range over {y.min()}..{y.max()} but SVHN labels are '
                       '1..10; download the file again.')
  images = np.ascontiguousarray(np.transpose(x, (3, 0, 1, 2)))
  if images.dtype != np.uint8:
    images = _to_uint8(images, path)
  labels = y.astype(np.int64)
  labels[labels == 10] = 0  # SVHN writes digit 0 as class 10
  return SplitArrays(images, labels)


# A MATLAB v7.3 file is an HDF5 file behind a 512-byte MATLAB text header (HDF5's user block).
_MATLAB_HEADER_BYTES = 512
_HDF5_SIGNATURE = b'\x89HDF\r\n\x1a\n'


def _is_matlab_v73(path: str) -> bool:
  """Whether ``path`` is a MATLAB v7.3 (HDF5) file, which scipy.io.loadmat cannot read. The
  published SVHN files are v5; v7.3 ones come from re-saving them in MATLAB (``-v7.3``)."""
  with open(path, 'rb') as f:
    f.seek(_MATLAB_HEADER_BYTES)
    return f.read(len(_HDF5_SIGNATURE)) == _HDF5_SIGNATURE


def _read_matlab_v73(path: str) -> Dict[str, np.ndarray]:
  """The variables of a MATLAB v7.3 file, in the layout ``scipy.io.loadmat`` gives v5 files.

  Read with h5py when it is installed. h5py is not a dependency: the published files are v5,
  and a compiled HDF5 library is a heavy install for a file only a re-save produces; a user
  without it is told how to convert the file instead.
  """
  try:
    import h5py  # pylint: disable=g-import-not-at-top
  except ImportError:
    raise DatasetError(f'{path} is a MATLAB v7.3 (HDF5) file, which scipy cannot read; pip '
                       'install h5py to read it as it is, or save it again in MATLAB as v7 '
                       '(save(name, "X", "y", "-v7")), or download the published v5 file '
                       'again.') from None
  try:
    with h5py.File(path, 'r') as f:
      # MATLAB writes column-major arrays, which HDF5 holds with the axes reversed.
      return {k: np.asarray(v).T for k, v in f.items() if isinstance(v, h5py.Dataset)}
  except (OSError, ValueError, KeyError) as e:
    raise DatasetError(f'Cannot read {path} as a MATLAB v7.3 (HDF5) file ({type(e).__name__}: '
                       f'{e}); the file is corrupt or truncated, download it again.') from None


def _to_uint8(images: np.ndarray, path: str) -> np.ndarray:
  """Casts integer/float pixel arrays already in 0..255 to uint8; anything else is an error."""
  if images.size and (images.min() < 0 or images.max() > 255):
    raise DatasetError(f'{path}: pixel values range over {images.min()}..{images.max()}, not '
                       '0..255; download the file again.')
  return images.astype(np.uint8)


def load_svhn_mat(folder: str) -> Dict[str, SplitArrays]:
  """SVHN cropped digits from ``folder/train_32x32.mat`` and ``folder/test_32x32.mat``.

  Returns splits of [N, 32, 32, 3] uint8 images and [N] int64 labels in 0..9.
  """
  return {split: _read_svhn_file(os.path.join(folder, name))
          for split, name in SVHN_FILES.items()}


# --------------------------------------------------------------------------------------------
# CIFAR-10 / CIFAR-100 (python pickles)
# --------------------------------------------------------------------------------------------

CIFAR10_DIR = 'cifar-10-batches-py'
CIFAR10_FILES = {'train': tuple(f'data_batch_{i}' for i in range(1, 6)), 'test': ('test_batch',)}
CIFAR100_DIR = 'cifar-100-python'
CIFAR100_FILES = {'train': ('train',), 'test': ('test',)}

# The published pickles hold only a dict of lists, bytes and numpy arrays. Restricting what the
# unpickler may construct keeps a tampered file from running code when it is loaded.
_PICKLE_ALLOWED = {
    ('numpy.core.multiarray', '_reconstruct'), ('numpy._core.multiarray', '_reconstruct'),
    ('numpy.core.multiarray', 'scalar'), ('numpy._core.multiarray', 'scalar'),
    ('numpy.core.numeric', '_frombuffer'), ('numpy._core.numeric', '_frombuffer'),
    ('numpy', 'ndarray'), ('numpy', 'dtype'),
    ('_codecs', 'encode'),  # how Python 3 pickles bytes at protocol 2
}


class _NumpyOnlyUnpickler(pickle.Unpickler):
  """Unpickler that builds plain containers and numpy arrays, nothing else."""

  def find_class(self, module, name):
    if (module, name) not in _PICKLE_ALLOWED:
      raise pickle.UnpicklingError(f'unexpected object {module}.{name} in a CIFAR pickle')
    if module.startswith('numpy.core.'):
      # numpy 2 moved numpy.core to numpy._core; importing the old name only adds a warning.
      module = 'numpy._core.' + module[len('numpy.core.'):]
    return super().find_class(module, name)


def _resolve_cifar_dir(folder: str, subdir: str, first_file: str) -> str:
  """Returns the folder holding the CIFAR pickles: ``folder`` itself or ``folder/subdir``."""
  for candidate in (folder, os.path.join(folder, subdir)):
    if os.path.isfile(os.path.join(candidate, first_file)):
      return candidate
  if os.path.isfile(os.path.join(folder, subdir + '.tar.gz')) or folder.endswith('.tar.gz'):
    raise DatasetError(f'Found the CIFAR archive but not {subdir}/ in {folder}; extract it '
                       'there (tar xzf) first.')
  raise DatasetError(f'Missing CIFAR file {os.path.join(folder, subdir, first_file)}; extract '
                     f'the python version of the dataset so that {subdir}/ is in {folder}, or '
                     'set --config.data.data_dir to that folder.')


def _read_cifar_pickle(path: str, label_key: str) -> SplitArrays:
  """One CIFAR pickle (b'data' [N, 3072] uint8 as row-major CHW, labels under ``label_key``)
  -> SplitArrays of [N, 32, 32, 3] uint8 images and [N] int64 labels."""
  if not os.path.isfile(path):
    raise DatasetError(f'Missing CIFAR file {path}; extract the whole python archive again.')
  try:
    with open(path, 'rb') as f:
      # The pickles were written by Python 2: keys and strings come back as bytes.
      batch = _NumpyOnlyUnpickler(f, encoding='bytes').load()
  except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError,
          IndexError, KeyError) as e:
    raise DatasetError(f'Cannot read {path} as a CIFAR pickle ({type(e).__name__}: {e}); the '
                       'file is corrupt or truncated, extract the archive again.') from None
  if not isinstance(batch, dict):
    raise DatasetError(f'{path} holds a {type(batch).__name__}, not a CIFAR batch dict; '
                       'extract the python version of the archive again.')
  batch = {k.decode('latin1') if isinstance(k, bytes) else k: v for k, v in batch.items()}
  if 'data' not in batch or label_key not in batch:
    raise DatasetError(f'{path} has keys {sorted(batch)} but needs data and {label_key}; use '
                       'the python version of the archive (cifar-*-python.tar.gz).')
  data = np.asarray(batch['data'])
  labels = np.asarray(batch[label_key]).reshape(-1)
  if data.ndim != 2 or data.shape[1] != 3 * 32 * 32 or data.shape[0] != labels.size:
    raise DatasetError(f'{path}: data has shape {data.shape} with {labels.size} labels, but '
                       'CIFAR needs [N, 3072] with N labels; extract the archive again.')
  if data.dtype != np.uint8:
    data = _to_uint8(data, path)
  # Each row is the red plane, then green, then blue, each 32x32 row-major.
  images = np.ascontiguousarray(data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))
  return SplitArrays(images, labels.astype(np.int64))


def _load_cifar(folder: str, subdir: str, files: Dict[str, Tuple[str, ...]],
                label_key: str) -> Dict[str, SplitArrays]:
  root = _resolve_cifar_dir(folder, subdir, files['train'][0])
  splits = {}
  for split, names in files.items():
    parts = [_read_cifar_pickle(os.path.join(root, name), label_key) for name in names]
    splits[split] = SplitArrays(np.concatenate([p.images for p in parts]),
                                np.concatenate([p.labels for p in parts]))
  return splits


def load_cifar10_pickles(folder: str) -> Dict[str, SplitArrays]:
  """CIFAR-10 from ``cifar-10-batches-py/`` (``folder`` is that folder or its parent).

  Returns splits of [N, 32, 32, 3] uint8 images and [N] int64 labels in 0..9 (train: the five
  data batches in order, 50000 images; test: ``test_batch``, 10000).
  """
  return _load_cifar(folder, CIFAR10_DIR, CIFAR10_FILES, 'labels')


def load_cifar100_pickles(folder: str) -> Dict[str, SplitArrays]:
  """CIFAR-100 from ``cifar-100-python/`` (``folder`` is that folder or its parent).

  Returns splits of [N, 32, 32, 3] uint8 images and [N] int64 fine labels in 0..99.
  """
  return _load_cifar(folder, CIFAR100_DIR, CIFAR100_FILES, 'fine_labels')


# --------------------------------------------------------------------------------------------
# Omniglot (PNG folders)
# --------------------------------------------------------------------------------------------

OMNIGLOT_DIRS = {'train': 'images_background', 'test': 'images_evaluation'}
OMNIGLOT_SIZE = 105


def _omniglot_characters(split_dir: str) -> List[str]:
  """Sorted ``alphabet/character`` folders of one Omniglot split folder."""
  characters = []
  for alphabet in sorted(os.listdir(split_dir)):
    alphabet_dir = os.path.join(split_dir, alphabet)
    if os.path.isdir(alphabet_dir):
      characters += [os.path.join(alphabet_dir, c) for c in sorted(os.listdir(alphabet_dir))
                     if os.path.isdir(os.path.join(alphabet_dir, c))]
  return characters


def _read_grey(path: str, size: int) -> np.ndarray:
  """One Omniglot PNG -> [size, size] uint8 (0 = ink, 255 = white background)."""
  from PIL import Image  # pylint: disable=g-import-not-at-top
  try:
    with Image.open(path) as image:
      grey = np.asarray(eight_bit(image).convert('L'))
  except (OSError, ValueError, SyntaxError) as e:  # PIL's errors for corrupt/truncated files
    raise DatasetError(f'Cannot decode image {path} ({e}); the file is corrupt, unzip the '
                       'Omniglot archive again.') from None
  if grey.shape != (size, size):
    raise DatasetError(f'{path} is {grey.shape[1]}x{grey.shape[0]} but Omniglot images are '
                       f'{size}x{size}; use the published images_background/images_evaluation '
                       'files, not resized copies.')
  return grey


def load_omniglot_folders(folder: str) -> Dict[str, SplitArrays]:
  """Omniglot from ``folder/images_background`` (train) and ``folder/images_evaluation``
  (test), each laid out as ``alphabet/character/*.png``.

  Returns splits of [N, 105, 105, 1] uint8 images as published (255 = white background, 0 =
  ink) and [N] int64 labels: a global character index, counting the background characters in
  sorted (alphabet, character) order first (0..963 for the full set) and then the evaluation
  ones (964..1622), so train and test classes never share a label. Images are in sorted path
  order.
  """
  splits, next_label = {}, 0
  for split, name in OMNIGLOT_DIRS.items():
    split_dir = os.path.join(folder, name)
    if not os.path.isdir(split_dir):
      hint = (f'unzip {name}.zip there' if os.path.isfile(split_dir + '.zip')
              else f'unzip {name}.zip (from github.com/brendenlake/omniglot) there or set '
                   '--config.data.data_dir to the folder that holds it')
      raise DatasetError(f'Missing Omniglot folder {split_dir}; {hint}.')
    paths, labels = [], []
    for character_dir in _omniglot_characters(split_dir):
      pngs = sorted(f for f in os.listdir(character_dir) if f.lower().endswith('.png'))
      paths += [os.path.join(character_dir, f) for f in pngs]
      labels += [next_label] * len(pngs)
      next_label += 1
    if not paths:
      raise DatasetError(f'No PNG images under {split_dir}; it should hold '
                         'alphabet/character/*.png folders, unzip the archive again.')
    images = np.stack([_read_grey(p, OMNIGLOT_SIZE) for p in paths])[..., None]
    splits[split] = SplitArrays(images, np.asarray(labels, np.int64))
    log.info('Omniglot %s: %d images of %d characters', split, len(paths), len(set(labels)))
  return splits


# --------------------------------------------------------------------------------------------
# Plain image folders (ImageNet subsets, CelebA, CACD, 3D Chairs)
# --------------------------------------------------------------------------------------------


def _is_image(name: str) -> bool:
  return name.lower().endswith(IMAGE_EXTENSIONS) and not name.startswith('.')


def _images_under(folder: str) -> List[str]:
  """Sorted image paths anywhere under ``folder`` (3D Chairs nests ``chair/renders/*.png``)."""
  found = []
  for root, dirs, files in os.walk(folder):
    dirs.sort()  # os.walk order is the file system's; sort for a reproducible dataset
    found += [os.path.join(root, f) for f in sorted(files) if _is_image(f)]
  return found


def _list_classes(folder: str, class_names: Optional[Sequence[str]]
                  ) -> List[Tuple[str, List[str]]]:
  """[(class name, sorted image paths)] for an image folder; a flat folder is one class ''."""
  if not os.path.isdir(folder):
    raise DatasetError(f'Missing image folder {folder}; set --config.data.data_dir to the '
                       'folder that holds the images (or one subfolder per class).')
  entries = sorted(os.listdir(folder))
  if class_names is not None:
    missing = [c for c in class_names if not os.path.isdir(os.path.join(folder, c))]
    if missing:
      raise DatasetError(f'{folder} has no subfolder for classes {missing[:5]}'
                         f'{" ..." if len(missing) > 5 else ""}; check class_names against '
                         'the folder names (e.g. ImageNet wnids like n01440764).')
    subdirs = list(class_names)
  else:
    subdirs = [e for e in entries if os.path.isdir(os.path.join(folder, e))]
  classes = [(c, _images_under(os.path.join(folder, c))) for c in subdirs]
  classes = [(c, paths) for c, paths in classes if paths or class_names is not None]
  flat = [os.path.join(folder, e) for e in entries if _is_image(e)
          and os.path.isfile(os.path.join(folder, e))]
  if class_names is not None:
    empty = [c for c, paths in classes if not paths]
    if empty:
      raise DatasetError(f'Class folders {empty[:5]} in {folder} hold no jpg/png images; '
                         'remove them from class_names or fill them.')
    return classes
  if flat and not classes:
    return [('', flat)]
  if classes and flat:
    # Dropping them would change the dataset unseen; labelling them would invent a class.
    names = ', '.join(os.path.basename(p) for p in flat[:3]) + (' ...' if len(flat) > 3 else '')
    images, them = ('image', 'it') if len(flat) == 1 else ('images', 'them')
    raise DatasetError(f'{folder} holds {len(flat)} loose {images} ({names}) next to '
                       f'{len(classes)} class folders; move {them} into a class folder or out of '
                       f'{folder}, since a folder is read either as one subfolder per class or '
                       'as a flat folder of images.')
  if classes:
    return classes
  raise DatasetError(f'No jpg/png images in {folder} or its subfolders; point '
                     '--config.data.data_dir at the extracted image folder.')


def _test_mask(n: int, test_fraction: float) -> np.ndarray:
  """[n] bool: spreads floor(n * test_fraction) test items evenly over a sorted list, so the
  split depends only on file names, never on a seed."""
  i = np.arange(n)
  return np.floor((i + 1) * test_fraction) > np.floor(i * test_fraction)


def _square_resize(image, image_size: int):
  """PIL image -> PIL image of image_size x image_size: the centered square crop, resized with
  area averaging when shrinking (no aliasing) and bicubic when enlarging."""
  from PIL import Image  # pylint: disable=g-import-not-at-top
  w, h = image.size
  side = min(w, h)
  left, top = (w - side) // 2, (h - side) // 2
  resample = Image.Resampling.BOX if side > image_size else Image.Resampling.BICUBIC
  return image.resize((image_size, image_size), resample,
                      box=(left, top, left + side, top + side))


def center_crop_resize(image: np.ndarray, image_size: int) -> np.ndarray:
  """[H, W, C] uint8 (C = 1 or 3) -> [image_size, image_size, C] uint8, cropped and resized
  exactly as ``load_image_folder`` does it."""
  from PIL import Image  # pylint: disable=g-import-not-at-top
  grey = image.shape[-1] == 1
  resized = np.asarray(_square_resize(Image.fromarray(image[..., 0] if grey else image),
                                      image_size), np.uint8)
  return resized[..., None] if grey else resized


def _read_square_rgb(path: str, image_size: int) -> np.ndarray:
  """One image file -> [image_size, image_size, 3] uint8 RGB, center-cropped and resized."""
  from PIL import Image  # pylint: disable=g-import-not-at-top
  try:
    with Image.open(path) as image:
      # For JPEG, let the decoder skip detail we would average away (much faster on ImageNet);
      # it keeps both sides >= image_size.
      image.draft('RGB', (image_size, image_size))
      return np.asarray(_square_resize(eight_bit(image).convert('RGB'), image_size), np.uint8)
  except (OSError, ValueError, SyntaxError) as e:  # PIL's errors for corrupt/truncated files
    raise DatasetError(f'Cannot decode image {path} ({e}); delete or replace that file.') from None


def eight_bit(image):
  """A PIL image with 8-bit channels. 16-bit grey PNGs open in mode 'I;16' (or 'I'), which
  PIL's ``convert`` clips to 255 instead of scaling: scale them by 255 / 65535 here."""
  from PIL import Image  # pylint: disable=g-import-not-at-top
  if image.mode not in ('I;16', 'I;16B', 'I;16L', 'I'):
    return image
  values = np.asarray(image, np.float64)
  if values.min() < 0 or values.max() > 65535:
    name = getattr(image, 'filename', '') or 'an image'
    raise DatasetError(f'{name} has {image.mode} pixels outside [0, 65535]; save it as an 8- or '
                       '16-bit image.')
  return Image.fromarray(np.round(values * (255 / 65535)).astype(np.uint8), mode='L')


def _read_images(paths: Sequence[str], image_size: int) -> np.ndarray:
  """Reads ``paths`` in order into [len(paths), image_size, image_size, 3] uint8."""
  out = np.empty((len(paths), image_size, image_size, 3), np.uint8)
  # PIL releases the GIL while decoding and resizing, so threads give a real speed-up. Work is
  # submitted a chunk at a time so a 200k-image folder does not queue 200k futures at once.
  workers = min(8, os.cpu_count() or 1)
  chunk = 64 * workers
  with concurrent.futures.ThreadPoolExecutor(workers) as pool:
    for start in range(0, len(paths), chunk):
      batch = paths[start:start + chunk]
      for i, image in enumerate(pool.map(lambda p: _read_square_rgb(p, image_size), batch)):
        out[start + i] = image
      if (start // chunk + 1) % max(1, _PROGRESS_EVERY // chunk) == 0:
        log.info('read %d / %d images', start + len(batch), len(paths))
  return out


def load_image_folder(folder: str, image_size: int, test_fraction: float = 0.1,
                      class_names: Optional[Sequence[str]] = None) -> Dict[str, SplitArrays]:
  """A folder of jpg/png images -> splits of [N, image_size, image_size, 3] uint8 RGB images
  and [N] int64 labels.

  Layouts: one subfolder per class (ImageNet style; images may sit deeper, as in 3D Chairs'
  ``chair/renders/*.png``), labelled 0.. in sorted folder order, or in the order of
  ``class_names`` when given (which also restricts the load to those subfolders); or a flat
  folder of images (CelebA, CACD), all labelled 0. Without ``class_names``, images beside class
  folders are an error (DatasetError naming them): the folder is neither layout, and skipping
  them would change the dataset unseen. With ``class_names`` only those subfolders are read.

  Every image is center-cropped to a square and resized to ``image_size``. Within each class,
  files are taken in sorted order and floor(count * test_fraction) of them, spread evenly, go to
  the test split, so the split is the same on every run and machine.
  """
  if not isinstance(image_size, (int, np.integer)) or image_size <= 0:
    raise DatasetError(f'image_size must be a positive integer, got {image_size!r}.')
  if not 0.0 <= test_fraction < 1.0:
    raise DatasetError(f'test_fraction must be in [0, 1), got {test_fraction}.')
  classes = _list_classes(folder, class_names)
  split_paths = {'train': [], 'test': []}
  split_labels = {'train': [], 'test': []}
  for label, (_, paths) in enumerate(classes):
    is_test = _test_mask(len(paths), test_fraction)
    for path, test in zip(paths, is_test):
      split = 'test' if test else 'train'
      split_paths[split].append(path)
      split_labels[split].append(label)
  log.info('%s: %d classes, %d train and %d test images', folder, len(classes),
           len(split_paths['train']), len(split_paths['test']))
  return {split: SplitArrays(_read_images(split_paths[split], int(image_size)),
                             np.asarray(split_labels[split], np.int64))
          for split in split_paths}
