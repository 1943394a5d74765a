"""Parsers of the published dataset formats, checked on tiny files written here in each format,
and the offline behaviour of the TFDS loader."""

import os
import pickle
import socket
import time

import numpy as np
import pytest
import scipy.io
from PIL import Image

from ltgans_jax.data import formats
from ltgans_jax.data.local import DatasetError
from ltgans_jax.data.tfds_source import load_tfds


def _check_split(split, shape):
  assert split.images.dtype == np.uint8 and split.images.shape == shape
  assert split.labels.dtype == np.int64 and split.labels.shape == shape[:1]


# ------------------------------------------------------------------------------------ SVHN


def _write_svhn(folder, n_train=4, n_test=3, seed=0):
  """Writes the two SVHN files; returns {split: (X [32, 32, 3, N], y [N, 1])}."""
  rng = np.random.default_rng(seed)
  written = {}
  for split, n in (('train', n_train), ('test', n_test)):
    x = rng.integers(0, 256, (32, 32, 3, n), dtype=np.uint8)
    y = (np.arange(n) % 10 + 1).reshape(n, 1).astype(np.uint8)  # 1..10, like the published y
    scipy.io.savemat(os.path.join(folder, f'{split}_32x32.mat'), {'X': x, 'y': y})
    written[split] = (x, y)
  return written


def test_svhn_shapes_pixels_and_label_10_is_digit_0(tmp_path):
  written = _write_svhn(tmp_path, n_train=10, n_test=3)
  data = formats.load_svhn_mat(str(tmp_path))
  _check_split(data['train'], (10, 32, 32, 3))
  _check_split(data['test'], (3, 32, 32, 3))
  x, y = written['train']
  np.testing.assert_array_equal(data['train'].images[7], x[..., 7])
  np.testing.assert_array_equal(data['train'].labels, [1, 2, 3, 4, 5, 6, 7, 8, 9, 0])
  assert data['train'].labels.max() <= 9 and y[9, 0] == 10


def test_svhn_missing_file_names_it(tmp_path):
  _write_svhn(tmp_path)
  os.remove(tmp_path / 'test_32x32.mat')
  with pytest.raises(DatasetError, match=r'Missing SVHN file .*test_32x32\.mat'):
    formats.load_svhn_mat(str(tmp_path))


def test_svhn_wrong_keys(tmp_path):
  scipy.io.savemat(tmp_path / 'train_32x32.mat', {'images': np.zeros((2, 2), np.uint8)})
  with pytest.raises(DatasetError, match=r"\['images'\] but an SVHN file needs X and y"):
    formats.load_svhn_mat(str(tmp_path))


def test_svhn_truncated_file(tmp_path):
  _write_svhn(tmp_path)
  path = tmp_path / 'train_32x32.mat'
  path.write_bytes(path.read_bytes()[:3000])
  with pytest.raises(DatasetError, match='corrupt or truncated, download it again'):
    formats.load_svhn_mat(str(tmp_path))


def test_svhn_label_count_mismatch(tmp_path):
  scipy.io.savemat(tmp_path / 'train_32x32.mat',
                   {'X': np.zeros((32, 32, 3, 3), np.uint8), 'y': np.ones((2, 1), np.uint8)})
  with pytest.raises(DatasetError, match=r'2 labels, but SVHN needs X as \[32, 32, 3, N\]'):
    formats.load_svhn_mat(str(tmp_path))


# ------------------------------------------------------------------------------------ CIFAR


def _cifar_batch(n, label_key, seed):
  rng = np.random.default_rng(seed)
  data = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
  labels = [int(v) for v in rng.integers(0, 10, n)]
  # Python 2 wrote the published pickles, so keys are bytes after encoding='bytes'.
  return {b'batch_label': b'batch', b'data': data, label_key: labels,
          b'filenames': [b'x.png'] * n}


def _write_pickle(path, obj):
  """Protocol 2 with numpy's pre-2.0 module path, as in the published (Python 2) pickles."""
  raw = pickle.dumps(obj, protocol=2)
  # GLOBAL opcodes are newline-terminated text at protocol 2, so the rename keeps it valid.
  path.write_bytes(raw.replace(b'numpy._core.multiarray', b'numpy.core.multiarray'))


def _write_cifar10(root, per_batch=2, n_test=3):
  folder = root / 'cifar-10-batches-py'
  folder.mkdir()
  batches = {}
  for i, name in enumerate([f'data_batch_{j}' for j in range(1, 6)] + ['test_batch']):
    batches[name] = _cifar_batch(n_test if name == 'test_batch' else per_batch, b'labels', i)
    _write_pickle(folder / name, batches[name])
  return folder, batches


@pytest.mark.parametrize('use_parent', [True, False])
def test_cifar10_shapes_labels_and_chw_to_hwc(tmp_path, use_parent):
  folder, batches = _write_cifar10(tmp_path)
  data = formats.load_cifar10_pickles(str(tmp_path if use_parent else folder))
  _check_split(data['train'], (10, 32, 32, 3))
  _check_split(data['test'], (3, 32, 32, 3))
  expected = np.concatenate([batches[f'data_batch_{j}'][b'labels'] for j in range(1, 6)])
  np.testing.assert_array_equal(data['train'].labels, expected)
  # Row layout: 1024 red values, then green, then blue, each row-major over (h, w).
  row = batches['test_batch'][b'data'][2]
  for c, h, w in ((0, 0, 0), (1, 5, 7), (2, 31, 30), (0, 3, 31)):
    assert data['test'].images[2, h, w, c] == row[c * 1024 + h * 32 + w]
  # Train keeps batch order: image 2 is the first image of data_batch_2.
  np.testing.assert_array_equal(data['train'].images[2].transpose(2, 0, 1).reshape(-1),
                                batches['data_batch_2'][b'data'][0])


def test_cifar100_uses_fine_labels(tmp_path):
  folder = tmp_path / 'cifar-100-python'
  folder.mkdir()
  for name, n in (('train', 4), ('test', 2)):
    batch = _cifar_batch(n, b'coarse_labels', 1)
    batch[b'fine_labels'] = [95 + i for i in range(n)]
    _write_pickle(folder / name, batch)
  data = formats.load_cifar100_pickles(str(tmp_path))
  _check_split(data['train'], (4, 32, 32, 3))
  np.testing.assert_array_equal(data['train'].labels, [95, 96, 97, 98])
  np.testing.assert_array_equal(data['test'].labels, [95, 96])


def test_cifar_missing_folder_says_what_to_extract(tmp_path):
  with pytest.raises(DatasetError, match=r'cifar-10-batches-py.*extract the python version'):
    formats.load_cifar10_pickles(str(tmp_path))
  (tmp_path / 'cifar-100-python.tar.gz').write_bytes(b'')
  with pytest.raises(DatasetError, match=r'Found the CIFAR archive .* extract it'):
    formats.load_cifar100_pickles(str(tmp_path))


def test_cifar_missing_batch_names_it(tmp_path):
  folder, _ = _write_cifar10(tmp_path)
  os.remove(folder / 'data_batch_4')
  with pytest.raises(DatasetError, match=r'Missing CIFAR file .*data_batch_4'):
    formats.load_cifar10_pickles(str(folder))


def test_cifar_truncated_and_malformed_pickles(tmp_path):
  folder, batches = _write_cifar10(tmp_path)
  path = folder / 'data_batch_3'
  path.write_bytes(path.read_bytes()[:500])
  with pytest.raises(DatasetError, match=r'data_batch_3 as a CIFAR pickle .*corrupt or trunc'):
    formats.load_cifar10_pickles(str(folder))
  _write_pickle(path, {b'pixels': batches['data_batch_1'][b'data']})
  with pytest.raises(DatasetError, match=r"keys \['pixels'\] but needs data and labels"):
    formats.load_cifar10_pickles(str(folder))
  bad = dict(batches['data_batch_1'])
  bad[b'data'] = np.zeros((2, 1024), np.uint8)
  _write_pickle(path, bad)
  with pytest.raises(DatasetError, match=r'shape \(2, 1024\) .* needs \[N, 3072\]'):
    formats.load_cifar10_pickles(str(folder))


class _RunsCode:
  def __reduce__(self):
    return (os.getcwd, ())


def test_cifar_pickle_that_would_run_code_is_refused(tmp_path):
  folder, _ = _write_cifar10(tmp_path)
  _write_pickle(folder / 'data_batch_1', {b'data': _RunsCode(), b'labels': []})
  with pytest.raises(DatasetError, match='unexpected object .*getcwd in a CIFAR pickle'):
    formats.load_cifar10_pickles(str(folder))


# ------------------------------------------------------------------------------------ Omniglot


def _write_omniglot_png(path, ink_at):
  """105x105 1-bit PNG as published: white (1) background, one black (0) pixel at ink_at."""
  pixels = np.ones((105, 105), bool)
  pixels[ink_at] = False
  path.parent.mkdir(parents=True, exist_ok=True)
  Image.fromarray(pixels).save(path)  # bool arrays become mode '1'


# split -> alphabet -> character -> number of drawings; written in reverse order so that
# the loader has to sort.
_OMNIGLOT_TREE = {
    'images_background': {'Beta': {'character01': 1}, 'Alpha': {'character02': 2,
                                                                 'character01': 2}},
    'images_evaluation': {'Gamma': {'character01': 3}},
}


def _write_omniglot(root):
  for split, alphabets in _OMNIGLOT_TREE.items():
    for alphabet, characters in alphabets.items():
      for character, count in characters.items():
        for k in reversed(range(count)):
          name = f'{alphabet}_{character}_{k + 1:02d}.png'
          _write_omniglot_png(root / split / alphabet / character / name, (k, len(alphabet)))


def test_omniglot_shapes_values_labels_and_order(tmp_path):
  _write_omniglot(tmp_path)
  data = formats.load_omniglot_folders(str(tmp_path))
  _check_split(data['train'], (5, 105, 105, 1))
  _check_split(data['test'], (3, 105, 105, 1))
  # Sorted: Alpha/character01 (2), Alpha/character02 (2), Beta/character01 (1).
  np.testing.assert_array_equal(data['train'].labels, [0, 0, 1, 1, 2])
  # Evaluation characters continue the global index after the background ones.
  np.testing.assert_array_equal(data['test'].labels, [3, 3, 3])
  images = data['train'].images[..., 0]
  assert set(np.unique(images)) == {0, 255}
  assert (images == 0).sum() == 5  # one ink pixel per drawing, white elsewhere
  assert images[1, 1, len('Alpha')] == 0 and images[0, 0, len('Alpha')] == 0  # file _02 second
  again = formats.load_omniglot_folders(str(tmp_path))
  np.testing.assert_array_equal(again['train'].images, data['train'].images)


def test_omniglot_missing_split_folder_says_unzip(tmp_path):
  _write_omniglot(tmp_path)
  os.rename(tmp_path / 'images_evaluation', tmp_path / 'other')
  with pytest.raises(DatasetError, match=r'Missing Omniglot folder .*images_evaluation.*unzip'):
    formats.load_omniglot_folders(str(tmp_path))


def test_omniglot_wrong_size_and_corrupt_png(tmp_path):
  _write_omniglot(tmp_path)
  path = tmp_path / 'images_evaluation' / 'Gamma' / 'character01' / 'Gamma_character01_02.png'
  Image.new('L', (28, 28), 255).save(path)
  with pytest.raises(DatasetError, match=r'is 28x28 but Omniglot images are 105x105'):
    formats.load_omniglot_folders(str(tmp_path))
  path.write_bytes(b'not a png')
  with pytest.raises(DatasetError, match=r'Cannot decode image .*Gamma_character01_02\.png'):
    formats.load_omniglot_folders(str(tmp_path))


# ------------------------------------------------------------------------------------ folders

_CLASS_COLOURS = {'cat': (255, 0, 0), 'dog': (0, 255, 0), 'owl': (0, 0, 255)}


def _write_class_folder(root, per_class=4):
  """One subfolder per class, images of several sizes and formats, filled with the class
  colour; 'owl' nests its images one level deeper (like 3D Chairs' chair/renders/)."""
  for c, colour in _CLASS_COLOURS.items():
    sub = root / c / 'renders' if c == 'owl' else root / c
    sub.mkdir(parents=True)
    for i in range(per_class):
      ext = ('png', 'jpg', 'JPEG', 'jpeg')[i % 4]
      Image.new('RGB', (20 + 10 * i, 16), colour).save(sub / f'{i:03d}.{ext}', quality=100)
  (root / 'cat' / 'notes.txt').write_text('not an image')


def test_image_folder_classes_shapes_and_split(tmp_path):
  _write_class_folder(tmp_path)
  data = formats.load_image_folder(str(tmp_path), image_size=8, test_fraction=0.25)
  _check_split(data['train'], (9, 8, 8, 3))
  _check_split(data['test'], (3, 8, 8, 3))
  np.testing.assert_array_equal(data['train'].labels, [0, 0, 0, 1, 1, 1, 2, 2, 2])
  np.testing.assert_array_equal(data['test'].labels, [0, 1, 2])
  for split in data.values():
    for image, label in zip(split.images, split.labels):
      colour = list(_CLASS_COLOURS.values())[label]
      np.testing.assert_allclose(image.mean((0, 1)), colour, atol=4)  # jpeg is near, not exact
  again = formats.load_image_folder(str(tmp_path), image_size=8, test_fraction=0.25)
  np.testing.assert_array_equal(again['train'].images, data['train'].images)


def test_image_folder_class_names_filter_and_order(tmp_path):
  _write_class_folder(tmp_path)
  data = formats.load_image_folder(str(tmp_path), 4, test_fraction=0.0,
                                   class_names=['owl', 'cat'])
  _check_split(data['train'], (8, 4, 4, 3))
  _check_split(data['test'], (0, 4, 4, 3))
  np.testing.assert_array_equal(data['train'].labels, [0] * 4 + [1] * 4)  # owl first, as given
  assert data['train'].images[0, ..., 2].min() > 240  # owl is blue
  with pytest.raises(DatasetError, match=r"no subfolder for classes \['n01440764'\]"):
    formats.load_image_folder(str(tmp_path), 4, class_names=['cat', 'n01440764'])


def test_image_folder_center_crop(tmp_path):
  # 30x10: red | green | blue thirds. The centered square is the green third.
  pixels = np.zeros((10, 30, 3), np.uint8)
  pixels[:, :10, 0] = pixels[:, 10:20, 1] = pixels[:, 20:, 2] = 255
  Image.fromarray(pixels).save(tmp_path / 'wide.png')
  Image.fromarray(pixels.transpose(1, 0, 2)).save(tmp_path / 'tall.png')  # 10x30
  data = formats.load_image_folder(str(tmp_path), 5, test_fraction=0.0)
  for image in data['train'].images:
    np.testing.assert_array_equal(image.reshape(-1, 3), [[0, 255, 0]] * 25)
  up = formats.load_image_folder(str(tmp_path), 16, test_fraction=0.0)  # bicubic enlarging
  assert up['train'].images.shape == (2, 16, 16, 3) and up['train'].images[:, 8, 8, 1].min() > 250


def test_flat_folder_gets_label_0(tmp_path):
  for i in range(10):
    Image.new('RGB', (178, 218), (i * 20, 0, 0)).save(tmp_path / f'{i:06d}.jpg')
  data = formats.load_image_folder(str(tmp_path), 16)
  _check_split(data['train'], (9, 16, 16, 3))
  _check_split(data['test'], (1, 16, 16, 3))
  assert not data['train'].labels.any() and not data['test'].labels.any()
  assert abs(int(data['test'].images[0, 8, 8, 0]) - 9 * 20) <= 3  # the 10th file is test


def test_image_folder_errors(tmp_path):
  with pytest.raises(DatasetError, match=r'Missing image folder .*nowhere'):
    formats.load_image_folder(str(tmp_path / 'nowhere'), 8)
  (tmp_path / 'empty_class').mkdir()
  with pytest.raises(DatasetError, match='No jpg/png images in'):
    formats.load_image_folder(str(tmp_path), 8)
  with pytest.raises(DatasetError, match=r"\['empty_class'\] .* hold no jpg/png images"):
    formats.load_image_folder(str(tmp_path), 8, class_names=['empty_class'])
  (tmp_path / 'broken.jpg').write_bytes(b'\xff\xd8 truncated jpeg')
  with pytest.raises(DatasetError, match=r'Cannot decode image .*broken\.jpg'):
    formats.load_image_folder(str(tmp_path), 8)
  with pytest.raises(DatasetError, match='image_size must be a positive integer'):
    formats.load_image_folder(str(tmp_path), 0)


# ------------------------------------------------------------------------------------ TFDS


def test_load_tfds_unprepared_fails_fast_without_network(tmp_path, monkeypatch):
  attempts = []

  def no_network(*args, **kwargs):
    attempts.append(args)
    raise OSError('network disabled in this test')

  monkeypatch.setattr(socket.socket, 'connect', no_network)
  monkeypatch.setattr(socket, 'getaddrinfo', no_network)
  start = time.monotonic()
  with pytest.raises(DatasetError, match=r"'mnist' is not prepared under .*`tfds build mnist "
                                         r'.*--config\.data\.source=local'):
    load_tfds('mnist', str(tmp_path))
  with pytest.raises(DatasetError, match="TFDS has no dataset named 'no_such_dataset'"):
    load_tfds('no_such_dataset', str(tmp_path))
  with pytest.raises(DatasetError, match=r"TFDS cannot use 'mnist/no_config' .*BuilderConfig"):
    load_tfds('mnist/no_config', str(tmp_path))
  assert time.monotonic() - start < 10
  assert not attempts


@pytest.fixture(scope='module')
def tiny_tfds(tmp_path_factory):
  """A tiny grey image dataset prepared with TFDS in both file formats (needs TensorFlow to
  encode the images); returns (name, {format: data_dir})."""
  pytest.importorskip('tensorflow')
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top

  # Not registered: load_tfds must find it from the prepared files alone, as it would a
  # dataset prepared on another machine.
  class TinyGreyForLtgansTest(tfds.core.GeneratorBasedBuilder, skip_registration=True):
    VERSION = tfds.core.Version('1.0.0')

    def _info(self):
      return tfds.core.DatasetInfo(builder=self, features=tfds.features.FeaturesDict({
          'image': tfds.features.Image(shape=(6, 6, 1)),
          'label': tfds.features.ClassLabel(num_classes=3)}))

    def _split_generators(self, dl_manager):
      return {'train': self._generate_examples(10), 'test': self._generate_examples(4)}

    def _generate_examples(self, n):
      for i in range(n):
        yield i, {'image': np.full((6, 6, 1), 20 * i, np.uint8), 'label': i % 3}

  dirs = {}
  for file_format in ('array_record', 'tfrecord'):
    dirs[file_format] = str(tmp_path_factory.mktemp(file_format))
    TinyGreyForLtgansTest(data_dir=dirs[file_format], file_format=file_format
                          ).download_and_prepare()
  return TinyGreyForLtgansTest.name, dirs


@pytest.mark.parametrize('file_format', ['array_record', 'tfrecord'])
def test_load_tfds_reads_prepared_dataset(tiny_tfds, file_format):
  name, dirs = tiny_tfds
  data = load_tfds(name, dirs[file_format])
  _check_split(data['train'], (10, 6, 6, 1))
  _check_split(data['test'], (4, 6, 6, 1))
  order = np.argsort(data['train'].images[:, 0, 0, 0])  # tfds may shuffle records on write
  np.testing.assert_array_equal(data['train'].images[order, 3, 3, 0], 20 * np.arange(10))
  np.testing.assert_array_equal(data['train'].labels[order], np.arange(10) % 3)


def test_load_tfds_slices_resizes_and_checks_splits(tiny_tfds):
  name, dirs = tiny_tfds
  data = load_tfds(name, dirs['array_record'], ('train[:60%]', 'train[60%:]'), image_size=4)
  _check_split(data['train'], (6, 4, 4, 1))
  _check_split(data['test'], (4, 4, 4, 1))
  with pytest.raises(DatasetError, match=r"no split 'validation'; choose split_names from"):
    load_tfds(name, dirs['array_record'], ('train', 'validation'))


def test_16_bit_grey_png_is_scaled_not_clipped(tmp_path):
  """PIL's convert('RGB') clips mode I;16 (a 46% grey would load as 255)."""
  path = str(tmp_path / 'grey16.png')
  value = round(0.46 * 65535)
  Image.fromarray(np.full((8, 8), value, np.uint16)).save(path)
  with Image.open(path) as image:
    assert image.mode.startswith('I')
  rgb = formats._read_square_rgb(path, 8)  # pylint: disable=protected-access
  assert rgb.shape == (8, 8, 3)
  np.testing.assert_array_equal(rgb, round(value * 255 / 65535))  # 117, not 255


# ------------------------------------------------------------------ Issue 32: bad input files


def _write_svhn_v73(path, x, y):
  """Writes ``{'X': x, 'y': y}`` as MATLAB v7.3 does: an HDF5 file (column-major arrays held
  with the axes reversed) behind a 512-byte MATLAB header whose version bytes say 0x0200."""
  h5py = pytest.importorskip('h5py')
  with h5py.File(path, 'w', userblock_size=512) as f:
    f['X'] = x.T
    f['y'] = y.astype(np.float64).T
  text = b'MATLAB 7.3 MAT-file, Platform: GLNXA64, Created on: Mon Dec  7 01:00:00 2026 HDF5 '
  with open(path, 'r+b') as f:
    f.write(text.ljust(116) + b'\0' * 8 + b'\x00\x02IM')


def test_svhn_matlab_v73_file_is_read_with_h5py(tmp_path):
  """Used to say the file is corrupt (scipy's NotImplementedError for v7.3 files)."""
  written = _write_svhn(tmp_path, n_train=10, n_test=3)
  v5 = formats.load_svhn_mat(str(tmp_path))
  _write_svhn_v73(tmp_path / 'train_32x32.mat', *written['train'])
  with pytest.raises(NotImplementedError):  # what scipy does with it
    scipy.io.loadmat(tmp_path / 'train_32x32.mat')
  v73 = formats.load_svhn_mat(str(tmp_path))
  np.testing.assert_array_equal(v73['train'].images, v5['train'].images)
  np.testing.assert_array_equal(v73['train'].labels, v5['train'].labels)


def test_svhn_matlab_v73_file_without_h5py_says_how_to_convert(tmp_path, monkeypatch):
  written = _write_svhn(tmp_path)
  _write_svhn_v73(tmp_path / 'train_32x32.mat', *written['train'])
  monkeypatch.setitem(__import__('sys').modules, 'h5py', None)  # as if not installed
  with pytest.raises(DatasetError, match=r'train_32x32.mat is a MATLAB v7.3 \(HDF5\) file, which '
                                         r'scipy cannot read; pip install h5py to read it as it '
                                         r'is, or save it again in MATLAB as v7'):
    formats.load_svhn_mat(str(tmp_path))


def test_idx_file_with_a_damaged_deflate_stream(tmp_path):
  """Used to end in a raw zlib.error: the gzip header is intact, the compressed data is not."""
  from ltgans_jax.data import local  # pylint: disable=g-import-not-at-top
  from tests.helpers import write_mnist_folder  # pylint: disable=g-import-not-at-top
  write_mnist_folder(tmp_path)
  path = tmp_path / 'train-images-idx3-ubyte.gz'
  raw = bytearray(path.read_bytes())
  raw[10:40] = b'\xff' * 30  # right after the 10-byte gzip header: an invalid deflate block
  path.write_bytes(bytes(raw))
  with pytest.raises(DatasetError, match=r'Cannot decompress .*train-images-idx3-ubyte.gz: its '
                                         r'compressed data is damaged \(.*\); download it again'):
    local.load_idx_dataset(str(tmp_path))


def test_loose_images_next_to_class_folders_are_an_error(tmp_path):
  """Used to drop them with only a warning, changing the dataset unseen."""
  _write_class_folder(tmp_path)
  Image.new('RGB', (8, 8)).save(tmp_path / 'stray.png')
  with pytest.raises(DatasetError, match=r'holds 1 loose image \(stray.png\) next to 3 class '
                                         r'folders; move it into a class folder or out of'):
    formats.load_image_folder(str(tmp_path), 8)
  # With class_names only those subfolders are read, as documented.
  data = formats.load_image_folder(str(tmp_path), 8, test_fraction=0.0, class_names=['cat'])
  _check_split(data['train'], (4, 8, 8, 3))
