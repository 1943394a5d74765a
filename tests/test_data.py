"""IDX parsing, the digits source, preprocessing, class splits and batching."""

import gzip

import numpy as np
import pytest

from ltgans_jax.data import batching, local, preprocess, sequences
from tests.helpers import write_mnist_folder


def test_idx_round_trip(tmp_path):
  arrays = write_mnist_folder(tmp_path)
  splits = local.load_idx_dataset(str(tmp_path))
  for split, (images, labels) in arrays.items():
    np.testing.assert_array_equal(splits[split].images[..., 0], images)
    np.testing.assert_array_equal(splits[split].labels, labels)
    assert splits[split].images.dtype == np.uint8 and splits[split].labels.dtype == np.int64


def test_idx_errors_are_clear(tmp_path):
  with pytest.raises(local.DatasetError, match='Missing dataset file .*data_dir'):
    local.load_idx_dataset(str(tmp_path))
  write_mnist_folder(tmp_path)
  path = tmp_path / local.IDX_FILES['train'][0]
  raw = gzip.open(path).read()
  with gzip.open(path, 'wb') as f:
    f.write(raw[:-100])
  with pytest.raises(local.DatasetError, match='truncated'):
    local.load_idx_dataset(str(tmp_path))
  with gzip.open(path, 'wb') as f:
    f.write(b'not an idx file')
  with pytest.raises(local.DatasetError, match='not an unsigned-byte IDX file'):
    local.load_idx_dataset(str(tmp_path))


def test_sklearn_digits_split_is_fixed_and_disjoint():
  splits = local.load_sklearn_digits()
  assert splits['train'].images.shape[1:] == (8, 8, 1)
  assert len(splits['train'].images) + len(splits['test'].images) == 1797
  assert splits['train'].images.max() == 255
  assert set(np.unique(splits['test'].labels)) == set(range(10))


def test_preprocess_to_common_shape():
  grey = np.full((3, 28, 28, 1), 200, np.uint8)
  out = preprocess.to_common_shape(grey, 32, 3)
  assert out.shape == (3, 32, 32, 3) and out.dtype == np.uint8
  np.testing.assert_array_equal(out, 200)  # a constant image stays constant
  colour = np.zeros((2, 32, 32, 3), np.uint8)
  colour[..., 0] = 90
  assert preprocess.to_common_shape(colour, 28, 1).shape == (2, 28, 28, 1)
  np.testing.assert_array_equal(preprocess.to_common_shape(colour, 32, 1), 30)


def test_digits_split_tasks_hold_disjoint_classes(test_config):
  tasks = sequences.build_sequence(test_config)
  assert len(tasks) == 2
  assert set(np.unique(tasks[0].train.labels)) == {0, 1, 2, 3, 4}
  assert set(np.unique(tasks[1].train.labels)) == {5, 6, 7, 8, 9}
  for task in tasks:
    assert task.train.images.shape[1:] == (28, 28, 1)
    assert set(np.unique(task.test.labels)) == set(np.unique(task.train.labels))


def test_unknown_sequence_is_a_clear_error(test_config):
  test_config.data.sequence = 'nope'
  with pytest.raises(ValueError, match="data.sequence='nope' is unknown"):
    sequences.build_sequence(test_config)


def test_batches_are_deterministic_resumable_and_cover_each_epoch():
  n, b = 103, 10
  first = [batching.batch_indices(0, 1, s, n, b) for s in range(25)]
  again = [batching.batch_indices(0, 1, s, n, b) for s in range(25)]
  assert all(np.array_equal(x, y) for x, y in zip(first, again))
  epoch0 = np.concatenate(first[:10])
  assert len(np.unique(epoch0)) == 100  # no repeats within an epoch; 3 dropped
  assert not np.array_equal(first[0], first[10])  # the next epoch is reshuffled
  assert not np.array_equal(first[0], batching.batch_indices(0, 2, 0, n, b))  # per task
  assert not np.array_equal(first[0], batching.batch_indices(1, 1, 0, n, b))  # per seed
  # Resuming at step 17 needs nothing but the step number.
  np.testing.assert_array_equal(batching.batch_indices(0, 1, 17, n, b), first[17])
  with pytest.raises(ValueError, match='fewer than batch_size'):
    batching.batch_indices(0, 0, 0, 5, 10)
