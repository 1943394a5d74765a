"""Every task sequence builder: task count, shapes, range, fuzzy swaps, class splits, and the
offline messages of sequences whose data is not here."""

import time

import numpy as np
import pytest

from ltgans_jax import config_validation
from ltgans_jax.data import datasets, sequences
from ltgans_jax.data.local import DatasetError, SplitArrays
from ltgans_jax.errors import ConfigError
from tests.helpers import write_mnist_folder


@pytest.fixture
def idx_config(test_config, tmp_path):
  write_mnist_folder(tmp_path / 'mnist', n_train=40, n_test=20, seed=1)
  write_mnist_folder(tmp_path / 'fashion_mnist', n_train=30, n_test=20, seed=2)
  test_config.data.data_dir = str(tmp_path)
  test_config.data.image_size = 32
  test_config.data.channels = 3
  datasets._load_cached.cache_clear()  # pylint: disable=protected-access
  return test_config


def _check_common_shape(tasks, size=32, channels=3):
  for task in tasks:
    for split in (task.train, task.test):
      assert split.images.shape[1:] == (size, size, channels)
      assert split.images.dtype == np.uint8 and len(split.labels) == len(split.images)


def test_mnist_fashion(idx_config):
  idx_config.data.sequence = 'mnist_fashion'
  tasks = sequences.build_sequence(idx_config)
  assert [t.name for t in tasks] == ['mnist', 'fashion_mnist']
  assert [len(t.train.images) for t in tasks] == [40, 30]
  _check_common_shape(tasks)


def test_msfo_offline_appends_inverted_domains(idx_config):
  idx_config.data.sequence = 'msfo_offline'
  tasks = sequences.build_sequence(idx_config)
  assert [t.name for t in tasks] == ['mnist', 'fashion_mnist', 'mnist-inverted',
                                     'fashion_mnist-inverted']
  _check_common_shape(tasks)
  np.testing.assert_array_equal(tasks[2].train.images, 255 - tasks[0].train.images)
  np.testing.assert_array_equal(tasks[3].test.images, 255 - tasks[1].test.images)


def test_fuzzy_sets_exchange_exactly_the_chosen_class(idx_config):
  idx_config.data.sequence = 'mnist_fashion'
  mnist, fashion = sequences.build_sequence(idx_config)
  idx_config.data.sequence = 'mnist_fashion_fuzzy'
  mnist_c, fashion_c = sequences.build_sequence(idx_config)
  assert (mnist_c.name, fashion_c.name) == ('mnist-c', 'fashion_mnist-c')

  def rows(split, label):
    return {split.images[i].tobytes() for i in np.flatnonzero(split.labels == label)}

  for split in ('train', 'test'):
    m, f = getattr(mnist, split), getattr(fashion, split)
    mc, fc = getattr(mnist_c, split), getattr(fashion_c, split)
    assert rows(mc, 8) == rows(f, 8) and rows(fc, 8) == rows(m, 8)  # class 8 moved
    for label in (0, 3, 9):  # the others stayed
      assert rows(mc, label) == rows(m, label) and rows(fc, label) == rows(f, label)
    assert len(mc.images) == len(m.images) - (m.labels == 8).sum() + (f.labels == 8).sum()


def test_fuzzy_needs_one_class_per_pair(idx_config):
  idx_config.data.sequence = 'mnist_fashion_fuzzy'
  idx_config.data.fuzzy_swap_classes = ()
  with pytest.raises(ValueError, match='one per pair'):
    sequences.build_sequence(idx_config)


def _rows(split, labels):
  return {split.images[i].tobytes() for i in np.flatnonzero(np.isin(split.labels, labels))}


def test_default_fuzzy_variant_is_ours(test_config):
  assert test_config.data.fuzzy_variant == 'ours'
  assert tuple(test_config.data.fuzzy_swap_classes) == (8, 9)


def test_authors_code_variant_swaps_8_and_9_in_train_only(idx_config):
  idx_config.data.sequence = 'mnist_fashion'
  mnist, fashion = sequences.build_sequence(idx_config)
  idx_config.data.sequence = 'mnist_fashion_fuzzy'
  idx_config.data.fuzzy_variant = 'authors_code'
  idx_config.data.fuzzy_swap_classes = ()  # not read by this variant
  config_validation.validate(idx_config)
  mnist_c, fashion_c = sequences.build_sequence(idx_config)
  assert (mnist_c.name, fashion_c.name) == ('mnist-c', 'fashion_mnist-c')
  m, f, mc, fc = mnist.train, fashion.train, mnist_c.train, fashion_c.train
  assert np.isin(m.labels, [8, 9]).any() and np.isin(f.labels, [8, 9]).any()
  assert _rows(mc, [8, 9]) == _rows(f, [8, 9]) and _rows(fc, [8, 9]) == _rows(m, [8, 9])
  kept = list(range(8))
  assert _rows(mc, kept) == _rows(m, kept) and _rows(fc, kept) == _rows(f, kept)
  assert len(mc.images) == len(m.images) - np.isin(m.labels, [8, 9]).sum() + np.isin(
      f.labels, [8, 9]).sum()
  for before, after in ((mnist, mnist_c), (fashion, fashion_c)):  # test sets untouched
    np.testing.assert_array_equal(after.test.images, before.test.images)
    np.testing.assert_array_equal(after.test.labels, before.test.labels)


def _tiny_task(name, offset):
  """Ten classes, three images each, every image distinct across tasks."""
  def split(start):
    labels = np.repeat(np.arange(10), 3)
    values = offset + start + np.arange(len(labels))
    images = np.broadcast_to(values[:, None, None, None], (len(labels), 2, 2, 1))
    return SplitArrays(images.astype(np.int32), labels)
  return sequences.Task(name, split(0), split(100))


def test_authors_code_pairs_first_two_and_numbers_svhn_as_the_authors():
  tasks = [_tiny_task('mnist', 0), _tiny_task('svhn', 1000), _tiny_task('fashion_mnist', 2000)]
  mnist_c, svhn_c, fashion = sequences.authors_fuzzy_pairs(tasks)
  mnist, svhn, _ = tasks
  assert [t.name for t in (mnist_c, svhn_c, fashion)] == ['mnist-c', 'svhn-c', 'fashion_mnist']
  # The authors' SVHN classes 8 and 9 are its digits 9 and 0 (their labels are .mat label - 1).
  assert _rows(mnist_c.train, [0]) == _rows(mnist.train, [0]) | _rows(svhn.train, [0])
  assert _rows(mnist_c.train, [9]) == _rows(svhn.train, [9])
  assert _rows(mnist_c.train, [8]) == set()
  assert _rows(svhn_c.train, [8]) == _rows(svhn.train, [8]) | _rows(mnist.train, [8])
  assert _rows(svhn_c.train, [9]) == _rows(mnist.train, [9])
  assert _rows(svhn_c.train, [0]) == set()
  for k in range(1, 8):  # the other classes stay
    assert _rows(mnist_c.train, [k]) == _rows(mnist.train, [k])
    assert _rows(svhn_c.train, [k]) == _rows(svhn.train, [k])
  assert len(mnist_c.train.images) == len(svhn_c.train.images) == 30
  for before, after in zip(tasks, (mnist_c, svhn_c, fashion)):  # test sets untouched
    np.testing.assert_array_equal(after.test.images, before.test.images)
  np.testing.assert_array_equal(fashion.train.images, tasks[2].train.images)  # no partner


def test_bad_fuzzy_variant_is_refused(idx_config):
  idx_config.data.sequence = 'mnist_fashion_fuzzy'
  idx_config.data.fuzzy_variant = 'paper'
  message = r"data.fuzzy_variant='paper'; use one of \('ours', 'authors_code'\)\."
  with pytest.raises(ConfigError, match=message):
    config_validation.validate(idx_config)
  with pytest.raises(ConfigError, match=message):
    sequences.build_sequence(idx_config)


def test_class_split_puts_no_image_in_two_tasks(idx_config):
  idx_config.data.sequence = 'class_split'
  idx_config.data.num_tasks = 10
  idx_config.train.batch_size = 4  # each class task holds 4 of the 40 training images
  tasks = sequences.build_sequence(idx_config)
  assert len(tasks) == 10
  _check_common_shape(tasks)
  for k, task in enumerate(tasks):
    assert set(task.train.labels) == {k} and set(task.test.labels) == {k}
  assert sum(len(t.train.images) for t in tasks) == 40
  idx_config.data.num_tasks = 11
  with pytest.raises(ValueError, match='num_tasks=11 but mnist has 10 classes'):
    sequences.build_sequence(idx_config)


def test_digits_split_into_five_tasks(test_config):
  test_config.data.num_tasks = 5
  tasks = sequences.build_sequence(test_config)
  assert [t.name for t in tasks] == ['digits[0-1]', 'digits[2-3]', 'digits[4-5]',
                                     'digits[6-7]', 'digits[8-9]']
  _check_common_shape(tasks, 28, 1)
  pixels = np.concatenate([t.train.images.ravel() for t in tasks])
  assert pixels.min() == 0 and pixels.max() >= 250


@pytest.mark.parametrize('sequence, missing', [
    ('msfo', 'svhn'), ('msf_fuzzy', 'svhn'), ('cifar_imagenet', 'cifar10'),
    ('celeba_cacd', 'celeba'), ('celeba_chairs', 'celeba')])
def test_sequences_without_local_files_say_where_to_put_them(idx_config, sequence, missing):
  idx_config.data.sequence = sequence
  with pytest.raises(DatasetError, match=f'no folder .*{missing}.*published files'):
    sequences.build_sequence(idx_config)


def test_tfds_source_fails_at_once_when_offline(idx_config, tmp_path):
  idx_config.data.sequence = 'msfo'
  idx_config.data.source = 'tfds'
  idx_config.data.data_dir = str(tmp_path / 'tfds')
  started = time.time()
  with pytest.raises(DatasetError, match='not prepared'):
    sequences.build_sequence(idx_config)
  assert time.time() - started < 30


def test_local_only_datasets_refuse_tfds(idx_config):
  idx_config.data.sequence = 'celeba_cacd'
  idx_config.data.source = 'tfds'
  idx_config.data.data_dir = ''
  # celeb_a is looked up first and is not prepared; CACD has no TFDS builder at all.
  with pytest.raises(DatasetError):
    sequences.build_sequence(idx_config)
  with pytest.raises(DatasetError, match='cacd is not in TFDS'):
    datasets.load('cacd', idx_config)
