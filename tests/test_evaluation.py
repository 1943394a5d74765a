"""Evaluation: Frechet distances, the importance-weighted NLL, forgetting summaries, the FID
Inception network, the torch-free state-dict reader (``torch_pickle``), and the project's own
feature network."""

import json
import math
import os
import pickle
import zipfile

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from ltgans_jax import losses, pixels
from ltgans_jax.data import local, preprocess
from ltgans_jax.eval import evaluation, feature_net, inception, matrices, metric_names
from ltgans_jax.eval import torch_pickle
from ltgans_jax.methods import registry
from ltgans_jax.run import report

# ------------------------------------------------------------------------------------------
# Frechet distance.


def _diagonal_closed_form(mu1, s1, mu2, s2):
  return np.sum((mu1 - mu2)**2) + np.sum(s1 + s2 - 2 * np.sqrt(s1 * s2))


def test_frechet_distance_of_diagonal_gaussians_is_the_closed_form():
  rng = np.random.default_rng(0)
  mu1, mu2 = rng.normal(size=6), rng.normal(size=6)
  s1, s2 = rng.uniform(0.1, 3.0, 6), rng.uniform(0.1, 3.0, 6)
  expected = _diagonal_closed_form(mu1, s1, mu2, s2)
  got = evaluation.frechet_distance(mu1, np.diag(s1), mu2, np.diag(s2))
  np.testing.assert_allclose(got, expected, rtol=1e-10)
  # The distance is invariant under a common rotation, which makes both covariances full.
  q, _ = np.linalg.qr(rng.normal(size=(6, 6)))
  rotated = evaluation.frechet_distance(q @ mu1, q @ np.diag(s1) @ q.T, q @ mu2,
                                        q @ np.diag(s2) @ q.T)
  np.testing.assert_allclose(rotated, expected, rtol=1e-8)


@pytest.mark.filterwarnings('ignore:Matrix is singular')  # expected here; the value is checked
def test_frechet_distance_with_singular_covariances():
  # Disjoint supports: (sigma1 sigma2) = 0, so d^2 = ||mu1 - mu2||^2 + tr sigma1 + tr sigma2.
  got = evaluation.frechet_distance(np.zeros(3), np.diag([1.0, 0.0, 0.0]), np.ones(3),
                                    np.diag([0.0, 2.0, 0.0]))
  np.testing.assert_allclose(got, 3.0 + 1.0 + 2.0, rtol=1e-10)
  # Fewer samples than dimensions: a rank-4 covariance in 10-d, distance to itself ~0.
  mu, sigma = evaluation.feature_statistics(np.random.default_rng(1).normal(size=(5, 10)))
  assert np.linalg.matrix_rank(sigma) == 4
  assert abs(evaluation.frechet_distance(mu, sigma, mu, sigma)) < 1e-6 * np.trace(sigma)


def test_feature_statistics_are_mean_and_unbiased_covariance():
  features = np.random.default_rng(2).normal(size=(50, 3)).astype(np.float32)
  mu, sigma = evaluation.feature_statistics(features)
  np.testing.assert_allclose(mu, features.mean(0), rtol=1e-6)
  centred = features - features.mean(0)
  np.testing.assert_allclose(sigma, centred.T @ centred / 49, rtol=1e-5)
  with pytest.raises(ValueError, match='N >= 2'):
    evaluation.feature_statistics(features[:1])


# ------------------------------------------------------------------------------------------
# Importance-weighted NLL on a tiny Student and a few digits.

NUM_IMAGES = 128


@pytest.fixture(scope='module')
def student():
  from configs import test as test_config_module  # pylint: disable=g-import-not-at-top
  config = test_config_module.get_config()
  networks = registry.build(config).networks
  size, channels = config.data.image_size, config.data.channels
  shapes = jax.eval_shape(networks.student.init, jax.random.key(0),
                          jax.ShapeDtypeStruct((1, size, size, channels), jnp.float32),
                          jax.ShapeDtypeStruct((1, config.vae.latent_dim), jnp.float32))
  # LeCun-normal kernels and zero biases, as Flax initialises them, drawn with numpy: XLA:CPU
  # takes seconds to compile the random initialisers, and the estimators do not care.
  rng = np.random.default_rng(config.seed)
  params = jax.tree_util.tree_map(
      lambda s: (rng.normal(0, 1 / math.sqrt(math.prod(s.shape[:-1])), s.shape)
                 if len(s.shape) > 1 else np.zeros(s.shape)).astype(np.float32),
      shapes['params'])
  digits = local.load_sklearn_digits()['test'].images[:NUM_IMAGES]
  return config, networks, params, preprocess.to_common_shape(digits, size, channels)


@pytest.fixture(scope='module')
def bernoulli_runs(student):
  """k -> IWAEResult for k = 1, 10, 100 on the same images (independent sample streams)."""
  _, networks, params, images = student
  vae = networks.student
  return {k: evaluation.iwae_nll(vae, params, images, jax.random.key(k), k, 'bernoulli',
                                 1.0, batch_size=64, chunk_size=10)
          for k in (1, 10, 100)}


def _standard_error(values):
  return np.std(values, ddof=1) / math.sqrt(len(values))


def test_iwae_with_one_sample_is_the_elbo_and_never_exceeds_it(bernoulli_runs):
  one = bernoulli_runs[1]
  # k = 1: log-mean-exp of one log-weight is that log-weight.
  np.testing.assert_allclose(one.per_image_nll, one.per_image_negative_elbo, rtol=1e-6)
  for k in (10, 100):
    run = bernoulli_runs[k]
    assert run.per_image_nll.shape == (NUM_IMAGES,)
    # Jensen on the same samples: log mean w >= mean log w, image by image (float32 slack).
    assert np.all(run.per_image_nll <= run.per_image_negative_elbo + 1e-5 * run.nll), k
    assert run.nll < run.negative_elbo


def test_iwae_bound_tightens_with_more_samples(bernoulli_runs):
  # E[-log p_k] decreases with k (Burda et al., Thm. 1). Per image, the difference of two
  # independent runs is an unbiased estimate of the tightening, so its mean over the images
  # must exceed 3 of its standard errors: the tightening is detected, not just not refuted.
  for small, large in ((1, 10), (10, 100)):
    diff = bernoulli_runs[small].per_image_nll - bernoulli_runs[large].per_image_nll
    assert diff.mean() > 3 * _standard_error(diff), (small, large, diff.mean())


def test_iwae_negative_elbo_agrees_with_the_analytic_kl_elbo(student, bernoulli_runs):
  _, networks, params, images = student

  @jax.jit
  def one_sample_negative_elbo(key):
    x = images.astype(jnp.float32) / 127.5 - 1.0
    noise = jax.random.normal(key, (len(images), networks.student.latent_dim))
    logits, mean, log_var = networks.student.apply({'params': params}, x, noise)
    loss, _ = losses.student_loss(logits, pixels.to_unit_interval(x), mean, log_var, beta=1.0,
                                  likelihood='bernoulli', decoder_std=1.0)
    return loss

  analytic = np.asarray(one_sample_negative_elbo(jax.random.key(7)), np.float64)
  # Two unbiased estimates of the same per-image -ELBO: their paired difference has mean 0;
  # 4 standard errors make a false alarm a 1-in-16,000 event.
  diff = bernoulli_runs[100].per_image_negative_elbo - analytic
  assert abs(diff.mean()) < 4 * _standard_error(diff), diff.mean()


@pytest.fixture(scope='module')
def prior_student(student):
  """Encoder output layer zeroed (q = N(0, I) = prior), decoder output layer zeroed (logits 0,
  mean image 0.5): every log-weight is log p(x|z), the same for all z."""
  config, networks, params, images = student
  params = jax.tree_util.tree_map(np.array, params)
  for leaf in ('kernel', 'bias'):
    params['encoder']['Dense_0'][leaf][...] = 0.0  # the (mean, log_var) head
    params['decoder']['Conv_0'][leaf][...] = 0.0  # the decoder's last layer
  return config, networks, params, images[:8]


def test_prior_student_nll_is_the_hand_computed_value(prior_student):
  config, networks, params, images = prior_student
  x01 = images.astype(np.float64) / 255.0
  squared_error = np.sum((0.5 - x01)**2, axis=(1, 2, 3))  # [8]
  num_pixels = x01[0].size
  # paper_nll: squared error + KL, and the KL of the prior against itself is 0.
  np.testing.assert_allclose(
      evaluation.paper_nll(networks.student, params, images, jax.random.key(0)),
      squared_error.mean(), rtol=1e-5)
  # k = 7 in chunks of 3: the last chunk's two surplus samples must be masked out, else the
  # constant weights would average to the wrong value.
  std = config.vae.decoder_std
  gaussian = evaluation.iwae_nll(networks.student, params, images, jax.random.key(0), 7, 'gaussian',
                                 std, chunk_size=3)
  expected = squared_error / (2 * std**2) + num_pixels * math.log(std * math.sqrt(2 * math.pi))
  np.testing.assert_allclose(gaussian.per_image_nll, expected, rtol=1e-5)
  np.testing.assert_allclose(gaussian.negative_elbo, expected.mean(), rtol=1e-5)
  bernoulli = evaluation.iwae_nll(networks.student, params, images, jax.random.key(0), 7,
                                  'bernoulli',
                                  1.0, batch_size=5, chunk_size=3)  # and a padded last batch
  np.testing.assert_allclose(bernoulli.per_image_nll, num_pixels * math.log(2), rtol=1e-5)


def test_iwae_rejects_unknown_likelihood(student):
  _, networks, params, images = student
  with pytest.raises(ValueError, match='likelihood'):
    evaluation.iwae_nll(networks.student, params, images, jax.random.key(0), 2, 'laplace', 1.0)


# ------------------------------------------------------------------------------------------
# Forgetting matrices.

MATRIX = [[10.0, None, None],
          [12.0, 20.0, None],
          [15.0, 22.0, 30.0]]


def test_forgetting_summary_of_a_hand_made_matrix():
  summary = matrices.forgetting_summary(MATRIX)
  assert summary['final_average'] == pytest.approx((15 + 22 + 30) / 3)
  assert summary['diagonal_average'] == pytest.approx(20.0)
  assert summary['forgetting'] == pytest.approx([5.0, 2.0, 0.0])
  assert summary['mean_forgetting'] == pytest.approx(3.5)
  # Two of three tasks learnt; NaN works like None.
  partial = matrices.forgetting_summary(np.array([[1.0, np.nan, np.nan], [4.0, 2.0, np.nan]]))
  assert partial['final_average'] == pytest.approx(3.0)
  assert partial['forgetting'] == pytest.approx([3.0, 0.0])
  assert matrices.forgetting_summary([[7.0]])['mean_forgetting'] is None
  with pytest.raises(ValueError, match='diagonal has missing'):
    matrices.forgetting_summary([[None, None], [2.0, 3.0]])


def test_max_based_forgetting_and_backward_transfer_by_direction():
  """Chaudhry et al.'s forgetting takes the best earlier value, not the just-learnt one;
  backward transfer is positive for improvement whatever the metric's direction."""
  lower = [[10.0, None, None], [8.0, 20.0, None], [15.0, 22.0, 30.0]]  # an NLL: 10 -> 8 -> 15
  summary = matrices.forgetting_summary(lower, lower_is_better=True)
  assert summary['forgetting'] == pytest.approx([5.0, 2.0, 0.0])
  assert summary['max_forgetting'] == pytest.approx([7.0, 2.0, 0.0])  # 15 - min(10, 8)
  assert summary['mean_max_forgetting'] == pytest.approx(4.5)
  assert summary['backward_transfer'] == pytest.approx(-3.5)
  higher = [[0.9, None, None], [0.95, 0.8, None], [0.7, 0.6, 0.9]]  # an accuracy
  summary = matrices.forgetting_summary(higher, lower_is_better=False)
  assert summary['max_forgetting'] == pytest.approx([0.25, 0.2, 0.0])  # max(0.9, 0.95) - 0.7
  assert summary['mean_max_forgetting'] == pytest.approx(0.225)
  assert summary['backward_transfer'] == pytest.approx(-0.2)
  one_task = matrices.forgetting_summary([[3.0]], lower_is_better=True)
  assert one_task['mean_max_forgetting'] is None and one_task['backward_transfer'] is None
  assert 'max_forgetting' not in matrices.forgetting_summary(higher)  # no direction given
  assert metric_names.lower_is_better('nll_paper') and metric_names.lower_is_better('kid_own')
  assert metric_names.lower_is_better('audit_share_teacher') is False
  assert metric_names.lower_is_better('density_own') is None
  line = report.forgetting_line(matrices.forgetting_summary(lower, lower_is_better=True))
  assert 'max-based forgetting' in line and '4.5' in line and '-3.5' in line


def test_save_forgetting_writes_json_and_heatmap(tmp_path):
  names = ['MNIST', 'SVHN', 'Fashion']
  summary = matrices.save_forgetting(str(tmp_path / 'f.json'), str(tmp_path / 'plots/f.png'),
                                     MATRIX, names, 'paper NLL')
  record = json.loads((tmp_path / 'f.json').read_text())
  assert record['metric'] == 'paper NLL' and record['task_names'] == names
  assert record['matrix'] == MATRIX
  assert record['summary'] == summary
  image = np.asarray(Image.open(tmp_path / 'plots/f.png'))
  assert image.ndim == 3 and min(image.shape[:2]) > 100
  assert image[..., :3].std() > 10  # not a blank canvas


def _evaluation_row(task, with_sample_metrics=True):
  """A TaskEvaluator-like row after ``task`` (0-based)."""
  seen = task + 1
  row = {'nll_paper': [100.0 + j for j in range(seen)], 'fid_own': [3.0 + j for j in range(seen)],
         'fid_own_all': [3.5]}
  if with_sample_metrics:
    for metric, value in (('kid_own', 0.0123456), ('precision_own', 0.5), ('recall_own', 0.25),
                          ('density_own', 1.25), ('coverage_own', 0.75)):
      row[metric] = [value + 0.01 * j for j in range(seen)]
      row[f'{metric}_all'] = [value]
  return row


def test_sample_metrics_are_the_generative_metrics_of_the_same_features():
  from ltgans_jax.eval import generative_metrics
  rng = np.random.default_rng(0)
  real, fake = rng.normal(size=(30, 6)), rng.normal(size=(20, 6))
  got = generative_metrics.sample_metrics(real, fake)
  assert got == {'kid': generative_metrics.kid(real, fake),
                 **generative_metrics.prdc(real, fake, generative_metrics.NEAREST_K)}
  assert generative_metrics.sample_metrics(real, fake, with_prdc=False) == {'kid': got['kid']}
  titles = metric_names.matrix_titles(_evaluation_row(1))
  assert set(titles) == {'nll_paper', 'fid_own', 'kid_own', 'precision_own', 'recall_own',
                         'density_own', 'coverage_own'}  # the *_all values are no matrices


def test_write_matrices_skips_metrics_the_earlier_rows_lack(tmp_path):
  old_then_new = [_evaluation_row(0, with_sample_metrics=False), _evaluation_row(1)]
  summaries = matrices.write_matrices(str(tmp_path / 'a'), ['A', 'B'], old_then_new)
  assert set(summaries) == {'nll_paper', 'fid_own'}
  summaries = matrices.write_matrices(str(tmp_path / 'b'), ['A', 'B'],
                                      [_evaluation_row(0), _evaluation_row(1)])
  assert summaries['coverage_own']['final_average'] == pytest.approx(0.755)
  with open(tmp_path / 'b' / 'kid_own.json') as f:
    assert json.load(f)['matrix'] == [[0.0123456, None], [0.0123456, 0.0223456]]


def test_report_shows_the_sample_metrics_with_their_provenance(test_config, tmp_path):
  from types import SimpleNamespace  # pylint: disable=g-import-not-at-top
  tasks = [SimpleNamespace(name=n, train=SimpleNamespace(labels=np.arange(3))) for n in 'AB']
  setting = report.evaluation_setting(test_config, 'protocol')
  records = [report.TaskRecord(name, 4, 1.0, {}, _evaluation_row(j, with_sample_metrics=j > 0),
                              {}, setting) for j, name in enumerate('AB')]
  provenance = ['- KID (own features): features of the classifier; 16 real test images per task']
  report.write_report(test_config, str(tmp_path), tasks, records, 'the Assistant', [4, 4],
                      'protocol', provenance=provenance)
  text = (tmp_path / 'report.md').read_text()
  assert report.KID_NOTE in text and provenance[0] in text
  assert 'the FID is not' in report.KID_NOTE
  assert '### KID (own features)\n\n| after \\ on | A | B |\n|---|---|---|\n| A |  |  |\n' \
      '| B | 0.01235 | 0.02235 |' in text  # 4 significant digits; the older row left blank
  assert '| B | 0.75 | 0.76 |' in text  # coverage, 2 decimals
  assert '| B | 0.01235 | 0.50 | 0.25 | 1.25 | 0.75 |' in text  # against all seen together


# ------------------------------------------------------------------------------------------
# torch.save files without torch.


def test_state_dict_writer_and_reader_round_trip(tmp_path):
  rng = np.random.default_rng(0)
  state_dict = {
      'a.conv.weight': rng.normal(size=(4, 3, 1, 7)).astype(np.float32),
      'a.bn.num_batches_tracked': np.array(5, np.int64),  # 0-d
      'b.transposed': rng.normal(size=(3, 5)).T,  # float64, not C-contiguous
      'c.half': rng.normal(size=(2,)).astype(np.float16),
  }
  path = str(tmp_path / 'sd.pth')
  torch_pickle.save_torch_state_dict(path, state_dict)
  with zipfile.ZipFile(path) as archive:
    assert set(archive.namelist()) == {'sd/data.pkl', 'sd/byteorder', 'sd/version', 'sd/data/0',
                                       'sd/data/1', 'sd/data/2', 'sd/data/3'}
  back = torch_pickle.read_torch_state_dict(path)
  assert list(back) == list(state_dict)
  for name, value in state_dict.items():
    assert back[name].dtype == value.dtype and back[name].shape == value.shape, name
    np.testing.assert_array_equal(back[name], value)


def test_reader_refuses_globals_outside_a_state_dict(tmp_path):
  class Payload:
    def __reduce__(self):
      return (print, ('must not run',))

  path = tmp_path / 'evil.pth'
  with zipfile.ZipFile(path, 'w') as archive:
    archive.writestr('evil/data.pkl', pickle.dumps({'x': Payload()}, protocol=2))
  with pytest.raises(torch_pickle.TorchFormatError,
                     match='print is not part of a tensor state dict'):
    torch_pickle.read_torch_state_dict(str(path))


def test_reader_matches_torch_both_formats(tmp_path):
  torch = pytest.importorskip('torch')
  generator = torch.Generator().manual_seed(0)
  state_dict = {'w': torch.randn(3, 2, 5, generator=generator),
                'strided': torch.randn(4, 6, generator=generator)[:, ::2],  # a view
                'count': torch.tensor(3), 'flag': torch.tensor([True, False])}
  for zipped in (True, False):
    path = str(tmp_path / f'{zipped}.pth')
    torch.save(state_dict, path, _use_new_zipfile_serialization=zipped)
    back = torch_pickle.read_torch_state_dict(path)
    for name, value in state_dict.items():
      np.testing.assert_array_equal(back[name], value.numpy(), err_msg=name)
  # And torch reads what the pure-Python writer writes (with its safe weights_only loader).
  ours = {name: value.numpy() for name, value in state_dict.items()}
  torch_pickle.save_torch_state_dict(str(tmp_path / 'ours.pth'), ours)
  loaded = torch.load(str(tmp_path / 'ours.pth'), weights_only=True)
  for name, value in ours.items():
    np.testing.assert_array_equal(loaded[name].numpy(), value, err_msg=name)


# ------------------------------------------------------------------------------------------
# The FID Inception network.

# Facts of pytorch-fid's pt_inception-2015-12-05-6726825d.pth (FID InceptionV3, 1008 classes,
# no auxiliary head): 94 conv + batch-norm layers and fc.
REAL_SHAPES = {
    'Conv2d_1a_3x3.conv.weight': (32, 3, 3, 3),
    'Conv2d_4a_3x3.bn.running_var': (192,),
    'Mixed_5b.branch_pool.conv.weight': (32, 192, 1, 1),
    'Mixed_6b.branch7x7_2.conv.weight': (128, 128, 1, 7),
    'Mixed_6e.branch7x7dbl_5.conv.weight': (192, 192, 1, 7),
    'Mixed_7a.branch7x7x3_4.conv.weight': (192, 192, 3, 3),
    'Mixed_7c.branch3x3dbl_3b.conv.weight': (384, 384, 3, 1),
    'Mixed_7c.branch_pool.conv.weight': (192, 2048, 1, 1),
    'fc.weight': (1008, 2048),
}
NUM_STATE_DICT_VALUES = 23_885_392  # all tensors but the num_batches_tracked counters


def _fid_state_dict(seed=0):
  """A state dict with pytorch-fid's names and shapes (from the Flax tree, mapped back) and
  weights that keep activations O(1): He-scaled convolutions, BN near identity."""
  rng = np.random.default_rng(seed)
  shapes = inception.variable_shapes(with_logits=True)
  state_dict = {}
  for path, leaf in jax.tree_util.tree_leaves_with_path(shapes):
    collection, *names, leaf_name = [p.key for p in path]
    name = '.'.join(names)
    shape = leaf.shape
    if leaf_name == 'kernel' and names == ['fc']:
      state_dict['fc.weight'] = rng.normal(0, 0.02, (shape[1], shape[0])).astype(np.float32)
    elif leaf_name == 'kernel':
      kh, kw, cin, cout = shape
      weight = rng.normal(0, math.sqrt(2 / (kh * kw * cin)), (cout, cin, kh, kw))
      state_dict[f'{name}.weight'] = weight.astype(np.float32)
    else:
      torch_leaf = {('params', 'scale'): 'weight', ('params', 'bias'): 'bias',
                    ('batch_stats', 'mean'): 'running_mean',
                    ('batch_stats', 'var'): 'running_var'}[(collection, leaf_name)]
      centre = {'weight': 1.0, 'running_var': 1.0}.get(torch_leaf, 0.0)
      state_dict[f'{name}.{torch_leaf}'] = (
          centre + 0.1 * rng.uniform(-1, 1, shape)).astype(np.float32)
      if torch_leaf == 'running_var':
        state_dict[f'{name}.num_batches_tracked'] = np.array(0, np.int64)
  return state_dict


@pytest.fixture(scope='module')
def fid_weights_file(tmp_path_factory):
  state_dict = _fid_state_dict()
  path = str(tmp_path_factory.mktemp('weights') / inception.WEIGHTS_FILE)
  torch_pickle.save_torch_state_dict(path, state_dict)
  return path, state_dict


def test_fid_state_dict_has_the_real_names_and_shapes(fid_weights_file):
  _, state_dict = fid_weights_file
  for name, shape in REAL_SHAPES.items():
    assert state_dict[name].shape == shape, name
  assert len(state_dict) == 94 * 6 + 2
  assert sum(v.size for k, v in state_dict.items()
             if not k.endswith('num_batches_tracked')) == NUM_STATE_DICT_VALUES


@pytest.fixture(scope='module')
def fid_variables(fid_weights_file):
  return inception.load_fid_inception_params(fid_weights_file[0], include_fc=True)


def test_load_fid_inception_params_places_every_tensor(fid_weights_file, fid_variables):
  path, state_dict = fid_weights_file
  variables = fid_variables
  expected = inception.variable_shapes(with_logits=True)
  assert (jax.tree_util.tree_structure(variables)
          == jax.tree_util.tree_structure(jax.tree_util.tree_map(lambda s: 0, expected)))
  for (path_, leaf), (_, want) in zip(jax.tree_util.tree_leaves_with_path(variables),
                                      jax.tree_util.tree_leaves_with_path(expected)):
    assert leaf.shape == want.shape, jax.tree_util.keystr(path_)
  params, stats = variables['params'], variables['batch_stats']
  weight = state_dict['Mixed_6b.branch7x7_2.conv.weight']  # [O, I, 1, 7]
  kernel = params['Mixed_6b']['branch7x7_2']['conv']['kernel']  # [1, 7, I, O]
  assert kernel.shape == (1, 7, 128, 128)
  assert kernel[0, 5, 17, 3] == weight[3, 17, 0, 5]
  np.testing.assert_array_equal(kernel, weight.transpose(2, 3, 1, 0))
  bn = 'Mixed_7c.branch3x3dbl_3b.bn'
  np.testing.assert_array_equal(params['Mixed_7c']['branch3x3dbl_3b']['bn']['scale'],
                                state_dict[f'{bn}.weight'])
  np.testing.assert_array_equal(params['Mixed_7c']['branch3x3dbl_3b']['bn']['bias'],
                                state_dict[f'{bn}.bias'])
  np.testing.assert_array_equal(stats['Mixed_7c']['branch3x3dbl_3b']['bn']['mean'],
                                state_dict[f'{bn}.running_mean'])
  np.testing.assert_array_equal(stats['Mixed_7c']['branch3x3dbl_3b']['bn']['var'],
                                state_dict[f'{bn}.running_var'])
  np.testing.assert_array_equal(params['fc']['kernel'], state_dict['fc.weight'].T)
  assert 'fc' not in inception.load_fid_inception_params(path)['params']


def test_load_rejects_incomplete_weights(tmp_path, fid_weights_file):
  _, state_dict = fid_weights_file
  partial = {k: v for k, v in state_dict.items() if not k.startswith('Mixed_7c.branch_pool')}
  torch_pickle.save_torch_state_dict(str(tmp_path / 'partial.pth'), partial)
  with pytest.raises(torch_pickle.TorchFormatError, match='missing .*Mixed_7c.*branch_pool'):
    inception.load_fid_inception_params(str(tmp_path / 'partial.pth'))


def test_inception_forward_gives_pool3_features(fid_variables):
  variables = {c: {k: v for k, v in tree.items() if k != 'fc'}
               for c, tree in fid_variables.items()}
  images = np.random.default_rng(0).integers(0, 256, (2, 75, 75, 3), dtype=np.uint8)
  features = inception.features_fn(variables, resize_input=False)(images)
  assert features.shape == (2, inception.FEATURE_DIM)
  assert np.all(np.isfinite(features)) and np.all(features >= 0)  # a mean of ReLU outputs
  assert features.std() > 0


def test_inception_layers_match_torch_conventions(fid_weights_file, fid_variables):
  torch = pytest.importorskip('torch')
  functional = torch.nn.functional
  t = lambda a: torch.from_numpy(np.asarray(a))
  _, state_dict = fid_weights_file
  rng = np.random.default_rng(1)
  # A strided convolution and a (1, 7) padded one, each with its batch norm (eps 1e-3) and
  # ReLU, with the loaded variables against torch's functional ops on the file's tensors.
  for name, module, channels, stride, padding in (
      ('Conv2d_1a_3x3', inception.BasicConv2d(32, (3, 3), strides=(2, 2)), 3, 2, (0, 0)),
      ('Mixed_6b.branch7x7_2', inception.BasicConv2d(128, (1, 7), padding=(0, 3)), 128, 1,
       (0, 3))):
    x = rng.normal(size=(2, 9, 11, channels)).astype(np.float32)
    variables = fid_variables
    for part in name.split('.'):
      variables = {collection: tree[part] for collection, tree in variables.items()}
    ours = np.asarray(module.apply(variables, x))
    sd = lambda leaf: t(state_dict[f'{name}.{leaf}'])  # pylint: disable=cell-var-from-loop
    ref = functional.conv2d(t(x).permute(0, 3, 1, 2), sd('conv.weight'), stride=stride,
                            padding=padding)
    ref = functional.relu(functional.batch_norm(
        ref, sd('bn.running_mean'), sd('bn.running_var'), sd('bn.weight'), sd('bn.bias'),
        training=False, eps=1e-3))
    np.testing.assert_allclose(ours, ref.permute(0, 2, 3, 1).numpy(), rtol=1e-4, atol=1e-4,
                               err_msg=name)
  x = rng.normal(size=(2, 7, 6, 3)).astype(np.float32)
  np.testing.assert_allclose(
      inception._avg_pool_3x3_same(x),  # pylint: disable=protected-access
      functional.avg_pool2d(torch.from_numpy(x).permute(0, 3, 1, 2), 3, 1, 1,
                            count_include_pad=False).permute(0, 2, 3, 1).numpy(), rtol=1e-5)
  for size in (28, 400):  # up and down: no antialiasing either way
    x = rng.normal(size=(1, size, size, 3)).astype(np.float32)
    ref = functional.interpolate(torch.from_numpy(x).permute(0, 3, 1, 2), size=(299, 299),
                                 mode='bilinear', align_corners=False)
    np.testing.assert_allclose(inception.resize_bilinear(x, 299),
                               ref.permute(0, 2, 3, 1).numpy(), rtol=1e-4, atol=1e-5)


# ------------------------------------------------------------------------------------------
# The project's own feature network and FID.


@pytest.mark.filterwarnings('ignore:Matrix is singular')  # dead ReLU units: singular covariance
def test_feature_net_fid():
  digits = local.load_sklearn_digits()
  train, test = digits['train'], digits['test']
  params = feature_net.train_feature_net(train.images, train.labels, 10, steps=150,
                                         key=jax.random.key(0), width=8, feature_dim=32)
  assert feature_net.accuracy(params, test.images, test.labels) > 0.5  # chance is 0.1
  features = feature_net.features_fn(params)
  assert features(test.images[:3]).shape == (3, 32)
  assert feature_net.FID_NAME != inception.FID_NAME
  low, high = test.labels < 5, test.labels >= 5
  same = evaluation.fid(features, test.images[low], test.images[low], batch_size=100)
  trace = np.trace(evaluation.feature_statistics(
      evaluation.compute_features(features, test.images[low]))[1])
  assert abs(same) < 1e-6 * trace
  # Same classes, disjoint images: far closer than other classes.
  within = evaluation.fid(features, train.images[train.labels < 5], test.images[low])
  across = evaluation.fid(features, test.images[low], test.images[high])
  assert 0 < within < across / 3, (within, across)


def test_feature_net_cache_serves_the_next_run_and_survives_a_damaged_file(tmp_path,
                                                                            monkeypatch):
  """eval.feature_net_cache: the second run on the same images, classes, steps and key reads
  the first run's classifier instead of training; other images or another key train their
  own; a damaged cache file is retrained and replaced, never the run's end."""
  digits = local.load_sklearn_digits()
  images, labels = digits['train'].images[:256], digits['train'].labels[:256]
  cache, key = str(tmp_path / 'cache'), jax.random.key(0)
  for run in 'abcd':
    os.makedirs(tmp_path / run)
  first = feature_net.trained_params(str(tmp_path / 'a'), images, labels, 10, 3, key, cache)
  cached = feature_net.cache_file(cache, images, labels, 10, 3, key)
  assert os.listdir(cache) == [os.path.basename(cached)]
  trained = []
  real_train = feature_net.train_feature_net
  monkeypatch.setattr(feature_net, 'train_feature_net',
                      lambda *a, **k: trained.append(a[3]) or real_train(*a, **k))
  second = feature_net.trained_params(str(tmp_path / 'b'), images, labels, 10, 3, key, cache)
  assert [s for s in trained if s] == []  # read, not trained (0 steps: the shape template)
  assert all(np.array_equal(x, y) for x, y in zip(jax.tree_util.tree_leaves(first),
                                                    jax.tree_util.tree_leaves(second)))
  assert os.path.exists(tmp_path / 'b' / feature_net.FILE_NAME)  # the run keeps its own copy
  assert feature_net.cache_file(cache, images, labels, 10, 3, jax.random.key(1)) != cached
  assert feature_net.cache_file(cache, images[::-1], labels[::-1], 10, 3, key) != cached
  with open(cached, 'wb') as f:
    f.write(b'not a network')
  third = feature_net.trained_params(str(tmp_path / 'c'), images, labels, 10, 3, key, cache)
  assert [s for s in trained if s] == [3]  # retrained once ...
  assert all(np.array_equal(x, y) for x, y in zip(jax.tree_util.tree_leaves(first),
                                                    jax.tree_util.tree_leaves(third)))
  feature_net.trained_params(str(tmp_path / 'd'), images, labels, 10, 3, key, cache)
  assert [s for s in trained if s] == [3]  # ... and the cache file replaced
