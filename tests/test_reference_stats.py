"""The cached reference statistics (``reference_stats``): one pass per extractor and task, files
pytorch-fid reads, stale and damaged files recomputed, and evaluation rows equal to recomputing
every reference."""

import json
import logging
import os
import shutil

import jax
import numpy as np
import pytest

from ltgans_jax import rng
from ltgans_jax.data import sequences
from ltgans_jax.data.local import SplitArrays
from ltgans_jax.eval import evaluation, generative_metrics, metric_names, reference_stats
from ltgans_jax.eval import task_eval
from ltgans_jax.methods import registry
from ltgans_jax.run import inspect as inspect_run
from tests.helpers import import_torchvision


def _images(seed, count=12):
  """uint8 [count, 4, 4, 1] images."""
  return np.random.default_rng(seed).integers(0, 256, (count, 4, 4, 1), dtype=np.uint8)


def _features(batch):
  """uint8 [B, 4, 4, 1] -> float32 [B, 3]: a cheap, deterministic stand-in extractor."""
  return batch.reshape(len(batch), -1)[:, :3].astype(np.float32) / 7


def _cache(folder, digest='a', images=None, **kwargs):
  images = [_images(0), _images(1)] if images is None else images
  return reference_stats.ReferenceCache(
      {'own': reference_stats.Extractor(_features, digest)}, images,
      None if folder is None else str(folder), **kwargs)


def test_the_file_holds_pytorch_fid_statistics_the_features_and_a_fingerprint(tmp_path):
  cache = _cache(tmp_path)
  stats = cache.task('own', 0)
  assert os.listdir(tmp_path) == ['own_task1.npz']  # no temporary file left behind
  with np.load(tmp_path / 'own_task1.npz', allow_pickle=False) as f:
    mu, sigma, features = f['mu'][:], f['sigma'][:], f['features'][:]
    stored = str(f['fingerprint'])
  assert mu.shape == (3,) and sigma.shape == (3, 3)
  assert mu.dtype == np.float64 and sigma.dtype == np.float64  # as pytorch-fid writes them
  assert features.dtype == np.float32 and features.shape == (12, 3)  # float32 is exact here
  expected = evaluation.compute_features(_features, _images(0))
  np.testing.assert_array_equal(features, expected)
  np.testing.assert_array_equal(stats.features, expected)
  for got, want in zip((mu, sigma), evaluation.feature_statistics(expected)):
    np.testing.assert_array_equal(got, want)
  assert stored == reference_stats.fingerprint('own', 'a', _images(0))


def _pytorch_fid_score():
  """pytorch-fid's ``fid_score``, or a skip."""
  pytest.importorskip('torch')
  import_torchvision()
  return pytest.importorskip('pytorch_fid.fid_score')


@pytest.mark.filterwarnings('ignore:The `disp` argument is deprecated')  # pytorch-fid's sqrtm
def test_pytorch_fid_reads_the_file_through_its_npz_path(tmp_path):
  fid_score = _pytorch_fid_score()
  cache = _cache(tmp_path)
  ours = [cache.task('own', j) for j in (0, 1)]
  # The branch of compute_statistics_of_path that loads a .npz never touches the model.
  read = [fid_score.compute_statistics_of_path(str(tmp_path / f'own_task{j + 1}.npz'), None,
                                               50, 3, 'cpu') for j in (0, 1)]
  for (mu, sigma), stats in zip(read, ours):
    np.testing.assert_array_equal(mu, stats.mu)
    np.testing.assert_array_equal(sigma, stats.sigma)
  np.testing.assert_allclose(
      fid_score.calculate_frechet_distance(*read[0], *read[1]),
      evaluation.frechet_distance(ours[0].mu, ours[0].sigma, ours[1].mu, ours[1].sigma),
      rtol=1e-10)


def test_each_task_is_computed_once_and_read_back_and_the_union_costs_no_pass(tmp_path):
  cache = _cache(tmp_path)
  first = [cache.task('own', j) for j in (0, 1)]
  union = cache.union('own', 2)
  assert cache.passes == 2
  cache.task('own', 0)
  assert cache.passes == 2  # from memory
  everything = evaluation.compute_features(_features, np.concatenate([_images(0), _images(1)]))
  np.testing.assert_array_equal(union.features, everything)
  for got, want in zip(union[1:], evaluation.feature_statistics(everything)):
    np.testing.assert_array_equal(got, want)
  again = _cache(tmp_path)  # another process: the files
  for j, stats in enumerate(first):
    for got, want in zip(again.task('own', j), stats):
      np.testing.assert_array_equal(got, want)
  assert again.passes == 0


def test_a_stale_or_foreign_file_is_recomputed_and_replaced(tmp_path):
  _cache(tmp_path, digest='a').task('own', 0)
  other_extractor = _cache(tmp_path, digest='b')
  other_extractor.task('own', 0)
  assert other_extractor.passes == 1
  with np.load(tmp_path / 'own_task1.npz') as f:
    assert str(f['fingerprint']) == reference_stats.fingerprint('own', 'b', _images(0))
  other_images = _cache(tmp_path, digest='b', images=[_images(5), _images(1)])
  np.testing.assert_array_equal(other_images.task('own', 0).features, _features(_images(5)))
  assert other_images.passes == 1
  # pytorch-fid's own file (mu and sigma only, no fingerprint): never used.
  np.savez(tmp_path / 'own_task1.npz', mu=np.zeros(3), sigma=np.eye(3))
  foreign = _cache(tmp_path, digest='b')
  np.testing.assert_array_equal(foreign.task('own', 0).features, _features(_images(0)))
  assert foreign.passes == 1


def _truncate(path):
  with open(path, 'rb') as f:
    data = f.read()
  with open(path, 'wb') as f:
    f.write(data[:len(data) // 2])


def _overwrite_with_garbage(path):
  with open(path, 'wb') as f:
    f.write(b'not an npz file' * 10)


def _flip_a_byte_of_the_features(path):
  # The zip member's CRC-32 catches it (np.savez stores without compression).
  with open(path, 'rb') as f:
    data = bytearray(f.read())
  data[data.index(b'features.npy') + 200] ^= 0xFF
  with open(path, 'wb') as f:
    f.write(bytes(data))


def _wrong_shapes(path):
  with np.load(path) as f:
    fingerprint = f['fingerprint']
  np.savez(path, mu=np.zeros(3), sigma=np.eye(3), features=np.zeros((5, 3)),
           fingerprint=fingerprint)


@pytest.mark.parametrize('damage', [_truncate, _overwrite_with_garbage,
                                    _flip_a_byte_of_the_features, _wrong_shapes])
def test_a_damaged_file_is_recomputed_with_a_warning(tmp_path, caplog, damage):
  expected = _cache(tmp_path).task('own', 0)
  damage(str(tmp_path / 'own_task1.npz'))
  cache = _cache(tmp_path)
  with caplog.at_level(logging.WARNING):
    stats = cache.task('own', 0)
  assert cache.passes == 1
  assert any('own_task1.npz' in r.message and 'recomputing' in r.message
             for r in caplog.records if r.levelno == logging.WARNING)
  for got, want in zip(stats, expected):
    np.testing.assert_array_equal(got, want)
  repaired = _cache(tmp_path)
  repaired.task('own', 0)
  assert repaired.passes == 0


def test_disabled_recomputes_every_reference_and_writes_nothing(tmp_path):
  cache = _cache(tmp_path / 'reference', enabled=False)
  cache.task('own', 0)
  cache.task('own', 0)
  cache.union('own', 2)
  assert cache.passes == 3  # the union in a pass of its own, as before the cache
  assert not os.path.exists(tmp_path / 'reference')


def test_read_folders_are_read_and_never_written(tmp_path):
  """--mode=evaluate: the training run's files are reused; what they lack goes elsewhere."""
  run, evaluate = tmp_path / 'eval' / 'reference', tmp_path / 'evaluate' / 'reference'
  _cache(run).task('own', 0)
  before = (run / 'own_task1.npz').read_bytes()
  reuse = _cache(evaluate, read_folders=[str(run)])
  reuse.task('own', 0)
  assert reuse.passes == 0 and not os.path.exists(evaluate)
  other = _cache(evaluate, digest='b', read_folders=[str(run)])
  other.task('own', 0)
  assert other.passes == 1 and os.listdir(evaluate) == ['own_task1.npz']
  assert (run / 'own_task1.npz').read_bytes() == before


def test_only_the_main_process_writes_and_a_failed_write_only_warns(tmp_path, monkeypatch,
                                                                  caplog):
  monkeypatch.setattr(reference_stats.jax, 'process_index', lambda: 1)
  _cache(tmp_path / 'reference').task('own', 0)
  assert not os.path.exists(tmp_path / 'reference')
  monkeypatch.undo()
  (tmp_path / 'a_file').write_text('')
  cache = _cache(tmp_path / 'a_file')  # a folder that cannot be made
  with caplog.at_level(logging.WARNING):
    stats = cache.task('own', 0)
  np.testing.assert_array_equal(stats.features, _features(_images(0)))
  assert any('Cannot write' in r.message for r in caplog.records)


def test_tree_digest_changes_with_any_value_or_name():
  tree = {'dense': {'kernel': np.ones((2, 3), np.float32), 'bias': np.zeros(3, np.float32)}}
  digest = reference_stats.tree_digest(tree)
  assert digest == reference_stats.tree_digest(jax.tree_util.tree_map(np.copy, tree))
  changed = jax.tree_util.tree_map(np.copy, tree)
  changed['dense']['bias'][1] = 1e-7
  assert reference_stats.tree_digest(changed) != digest
  renamed = {'other': tree['dense']}
  assert reference_stats.tree_digest(renamed) != digest


# ------------------------------------------------------------------------------------------
# Through the evaluator.


def _count_feature_passes(monkeypatch):
  """A list that receives the number of images of every ``evaluation.compute_features`` call."""
  sizes = []
  compute_features = evaluation.compute_features
  monkeypatch.setattr(evaluation, 'compute_features',
                      lambda fn, images: sizes.append(len(images)) or compute_features(fn, images))
  return sizes


def _random_tasks(num_tasks=2, per_class=6, num_classes=4):
  """Tasks of random 28x28x1 images, ``per_class`` of each class in train and test alike."""
  generator = np.random.default_rng(0)

  def split():
    labels = np.repeat(np.arange(num_classes), per_class)
    images = generator.integers(0, 256, (len(labels), 28, 28, 1), dtype=np.uint8)
    return SplitArrays(images, labels)
  return [sequences.Task(f't{t}', split(), split()) for t in range(num_tasks)]


@pytest.mark.filterwarnings('ignore:Matrix is singular')  # 16 images, 128-d features
def test_evaluate_reads_the_cache_back_and_equals_recomputing_every_reference(
    test_config, tmp_path, monkeypatch):
  """Cold cache (a training run), warm cache (a resume or --mode=evaluate) and no cache (the
  behaviour before it) give the same rows; the warm one pushes no reference image through the
  feature network."""
  tasks = _random_tasks()
  method = registry.build(test_config)
  state = method.init_state(jax.random.key(0))
  sizes = _count_feature_passes(monkeypatch)  # the number of images of every feature pass
  cold = task_eval.TaskEvaluator(test_config, method, tasks, str(tmp_path))
  cold.evaluate(state, 0)
  # The Assistant's samples, task 1's test images, the Student's samples (its rows read the
  # same references, from memory).
  assert sizes == [16, 16, 16]
  rows_cold = cold.evaluate(state, 1)
  assert sizes[3:] == [16, 16, 16]  # as above with task 2's test images: task 1's from memory
  folder = tmp_path / task_eval.REFERENCE_FOLDER
  assert sorted(os.listdir(folder)) == ['fid_own_task1.npz', 'fid_own_task2.npz']
  sizes.clear()
  rows_warm = task_eval.TaskEvaluator(test_config, method, tasks, str(tmp_path)).evaluate(state,
                                                                                          1)
  assert sizes == [16, 16]  # the two networks' samples only
  sizes.clear()
  test_config.eval.cache_reference_stats = False
  rows_old = task_eval.TaskEvaluator(test_config, method, tasks, str(tmp_path)).evaluate(state, 1)
  assert sizes == [16, 16, 16, 32] * 2  # per network: its samples, each test set, their union
  assert rows_cold.keys() == rows_warm.keys() == rows_old.keys()
  assert any(m.startswith(('fid_', 'kid_', 'precision_')) for m in rows_cold)
  for metric in rows_cold:
    np.testing.assert_array_equal(rows_warm[metric], rows_cold[metric], err_msg=metric)
    np.testing.assert_allclose(rows_old[metric], rows_cold[metric], rtol=1e-6, atol=1e-9,
                               err_msg=metric)


@pytest.mark.filterwarnings('ignore:Matrix is singular')  # 16 images, 128-d features
def test_evaluate_mode_reuses_the_training_runs_files_and_reproduces_its_fids(
    test_config, tmp_path, reference_run, monkeypatch):
  workdir = str(tmp_path / 'run')
  shutil.copytree(reference_run[0], workdir)
  folder = os.path.join(workdir, task_eval.REFERENCE_FOLDER)
  assert sorted(os.listdir(folder)) == ['fid_own_task1.npz', 'fid_own_task2.npz']
  sizes = _count_feature_passes(monkeypatch)
  inspect_run.evaluate_workdir(test_config, workdir)
  assert sizes == [16] * 4  # each boundary's Assistant and Student samples; no test image
  assert not os.path.exists(os.path.join(workdir, inspect_run.EVALUATE_FOLDER, 'reference'))
  with open(os.path.join(workdir, 'report.json')) as f:
    during_training = [r['evaluation'] for r in json.load(f)['records']]
  for metric in ('fid_own', 'kid_own', 'precision_own', 'coverage_own'):  # the matrices
    with open(os.path.join(workdir, inspect_run.EVALUATE_FOLDER, f'{metric}.json')) as f:
      matrix = json.load(f)['matrix']
    for after, row in enumerate(during_training):
      np.testing.assert_allclose([v for v in matrix[after] if v is not None], row[metric],
                                 rtol=1e-6, err_msg=metric)


@pytest.mark.filterwarnings('ignore:Matrix is singular')  # 16 images, 128-d features
@pytest.mark.parametrize('method_name', ['ltgans', 'lgm'])
def test_the_students_samples_get_their_own_rows_in_the_gan_methods(test_config, tmp_path,
                                                                    method_name):
  """LT-GANs' Student is a generative model too: its prior samples are measured with the same
  features and references as the Assistant's, in rows ending '_student'. A VAE baseline's
  generator is its Student already, so it has no such rows."""
  test_config.method = method_name
  tasks = _random_tasks()
  method = registry.build(test_config)
  state = method.init_state(jax.random.key(0))
  evaluator = task_eval.TaskEvaluator(test_config, method, tasks, str(tmp_path))
  rows = evaluator.evaluate(state, 1)
  student_rows = {m for m in rows if metric_names.STUDENT_ROWS in m and not m.startswith('audit_')}
  if method_name == 'lgm':
    assert not student_rows
    return
  assert {'fid_own_student', 'fid_own_student_all', 'kid_own_student',
          'coverage_own_student_all'} <= student_rows
  samples = evaluator.samples(state, 'student', 16,
                              rng.stream_key(test_config.seed, rng.FID_LATENTS))
  features = evaluation.compute_features(evaluator.features['fid_own'], samples)
  for j in (0, 1):
    reference = evaluator.references.task('fid_own', j)
    expected = generative_metrics.sample_metrics(reference.features, features, evaluator.with_prdc)
    assert rows['kid_own_student'][j] == pytest.approx(expected['kid'], rel=1e-6)
    assert rows['fid_own_student'][j] == pytest.approx(evaluation.frechet_distance(
        *evaluation.feature_statistics(features), reference.mu, reference.sigma), rel=1e-6)
  # The Assistant's rows are another network's: the two differ.
  assert rows['fid_own_student'] != rows['fid_own']
  assert metric_names.METRIC_NAMES['kid_own_student'] == 'KID (own features), Student samples'
