"""The VAE-only baselines (LGM, CURL): end to end on the test config, their state's structure,
and one invariant of each algorithm."""

import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ltgans_jax import inspect_run, methods, train
from ltgans_jax.baselines import curl as curl_lib
from ltgans_jax.baselines import lgm as lgm_lib
from ltgans_jax.errors import ConfigError
from tests.helpers import copy_tree, random_batch, tree_equal


def _run_two_tasks(config, workdir):
  final = train.train_and_evaluate(config, workdir)
  report = open(os.path.join(workdir, 'report.md')).read()
  return final, report


# LGM ----------------------------------------------------------------------------------------


def test_lgm_runs_two_tasks_and_keeps_a_frozen_copy_of_the_student(test_config, tmp_path):
  test_config.method = 'lgm'
  final, report = _run_two_tasks(test_config, str(tmp_path / 'run'))
  assert isinstance(final, lgm_lib.LgmState)
  assert int(final.task) == 1 and int(final.task_step) == test_config.train.steps_per_task
  # The Teacher has the Student's structure and differs from it after task 2's training.
  assert (jax.tree_util.tree_structure(final.teacher_params)
          == jax.tree_util.tree_structure(final.student.params))
  assert not tree_equal(final.teacher_params, final.student.params)
  assert 'Run report: method `lgm`' in report and '| n/a |' in report  # no critic
  for name in ('student_samples', 'student_reconstructions'):
    assert os.path.exists(tmp_path / 'run' / 'samples' / f'task2_{name}.png')


def test_lgm_teacher_is_frozen_and_consistency_is_zero_at_the_boundary(test_config):
  test_config.method = 'lgm'
  method = methods.build(test_config)
  step_fns = method.train_steps()
  state = method.init_state(jax.random.key(0))
  state, _ = step_fns['first'](state, random_batch(test_config, 0), jax.random.key(1))
  state = method.begin_next_task(state)
  teacher = copy_tree(state.teacher_params)
  assert tree_equal(teacher, state.student.params)
  student_before = copy_tree(state.student.params)
  state, metrics = step_fns['distill'](state, random_batch(test_config, 1), jax.random.key(2))
  # The first step after the copy: the Student's posterior is the Teacher's, so KL = 0.
  np.testing.assert_allclose(float(metrics['student/consistency_kl']), 0.0, atol=1e-5)
  # Half the batch of task 2 (t=1: t/(t+1)) is Teacher samples.
  assert float(metrics['student/teacher_fraction']) == 0.5
  for seed in range(3, 6):
    state, metrics = step_fns['distill'](state, random_batch(test_config, seed),
                                         jax.random.key(seed))
  assert tree_equal(teacher, state.teacher_params)  # frozen, bit for bit
  assert not tree_equal(student_before, state.student.params)
  assert float(metrics['student/consistency_kl']) > 0


@pytest.mark.parametrize('task, batch, expected', [(0, 8, 0), (1, 8, 4), (2, 9, 6), (3, 64, 48)])
def test_lgm_teacher_share_is_t_over_t_plus_one(task, batch, expected):
  assert int(lgm_lib.teacher_count(task, batch)) == expected


# CURL ---------------------------------------------------------------------------------------


def _curl_config(config, **curl):
  config.method = 'curl'
  config.curl.max_components = 3
  config.curl.expansion_steps = 2
  for name, value in curl.items():
    config.curl[name] = value
  return config


def test_curl_runs_two_tasks_and_state_has_fixed_shapes(test_config, tmp_path):
  config = _curl_config(test_config, buffer_size=8, expansion_threshold=1.0,
                        min_steps_between_expansions=1)
  method = methods.build(config)
  initial = method.init_state(jax.random.key(config.seed))
  final, report = _run_two_tasks(config, str(tmp_path / 'run'))
  assert isinstance(final, curl_lib.CurlState)
  assert (jax.tree_util.tree_structure(final) == jax.tree_util.tree_structure(initial))
  for before, after in zip(jax.tree_util.tree_leaves(initial), jax.tree_util.tree_leaves(final)):
    assert before.shape == after.shape and before.dtype == after.dtype
  assert final.buffer.shape == (8, 28, 28, 1)
  # Every image is "poorly explained" at threshold 1, so components were added, up to the cap.
  assert 1 < int(final.active) <= 3
  assert int(final.replay_active) >= 1  # the snapshot of task 1 replays in task 2
  assert 'Run report: method `curl`' in report
  assert os.path.exists(tmp_path / 'run' / 'samples' / 'task2_mixture_samples_row_per_component.png')


def test_curl_adds_a_component_exactly_when_the_buffer_fills(test_config):
  # Buffer of two batches; every image poor (threshold tiny); no warm-up.
  config = _curl_config(test_config, buffer_size=2 * test_config.train.batch_size,
                        expansion_threshold=1e-3, min_steps_between_expansions=0)
  method = methods.build(config)
  step = method.train_steps()['first']
  state = method.init_state(jax.random.key(0))
  state, metrics = step(state, random_batch(config, 0), jax.random.key(1))
  assert int(state.active) == 1 and int(state.buffer_count) == config.train.batch_size
  assert int(metrics['curl/expanded']) == 0
  state, metrics = step(state, random_batch(config, 1), jax.random.key(2))
  assert int(state.active) == 2 and int(state.buffer_count) == 0
  assert int(metrics['curl/expanded']) == 1
  # Never beyond max_components.
  for seed in range(3, 12):
    state, _ = step(state, random_batch(config, seed), jax.random.key(seed))
  assert int(state.active) == config.curl.max_components


def test_curl_never_expands_when_everything_is_well_explained(test_config):
  config = _curl_config(test_config, buffer_size=4, expansion_threshold=1e9,
                        min_steps_between_expansions=0)
  method = methods.build(config)
  step = method.train_steps()['first']
  state = method.init_state(jax.random.key(0))
  for seed in range(4):
    state, _ = step(state, random_batch(config, seed), jax.random.key(seed))
  assert int(state.active) == 1 and int(state.buffer_count) == 0


def test_curl_buffer_appends_only_poor_images_and_drops_overflow():
  buffer = jnp.zeros((4, 1, 1, 1), jnp.uint8)
  images = jnp.arange(1, 6, dtype=jnp.uint8).reshape(5, 1, 1, 1)
  buffer, count = curl_lib.add_to_buffer(buffer, jnp.asarray(1, jnp.int32), images,
                                         jnp.array([True, False, True, True, True]))
  assert int(count) == 4
  np.testing.assert_array_equal(np.asarray(buffer).ravel(), [0, 1, 3, 4])  # 5 did not fit


def test_curl_new_component_starts_as_a_copy(test_config):
  config = _curl_config(test_config)
  method = methods.build(config)
  params = method.init_state(jax.random.key(0)).model.params
  params = dict(params, prior_mean=params['prior_mean'].at[0].set(1.5))
  copied = curl_lib.copy_component(params, 0, 2, config.vae.latent_dim)
  np.testing.assert_array_equal(copied['prior_mean'][2], params['prior_mean'][0])
  kernel = copied['latent_head']['kernel'].reshape(-1, 3, 2 * config.vae.latent_dim)
  np.testing.assert_array_equal(kernel[:, 2], kernel[:, 0])
  np.testing.assert_array_equal(copied['cluster_head']['kernel'][:, 2],
                                params['cluster_head']['kernel'][:, 0])
  # Component 1 untouched.
  np.testing.assert_array_equal(copied['prior_mean'][1], params['prior_mean'][1])


def test_curl_with_one_component_is_a_vae_with_a_learnt_prior(test_config):
  """With one active component q(y|x) = 1, KL(q(y)||p(y)) = 0 and the loss is recon + KL_z."""
  config = _curl_config(test_config)
  method = methods.build(config)
  params = method.init_state(jax.random.key(0)).model.params
  images = jnp.asarray(random_batch(config), jnp.float32) / 127.5 - 1
  terms = method._terms(params, images, 1, jax.random.key(3))  # pylint: disable=protected-access
  np.testing.assert_allclose(terms['log_q_y'][:, 0], 0.0, atol=1e-6)
  np.testing.assert_allclose(terms['loss'], terms['recon'][:, 0] + terms['kl_z'][:, 0],
                             rtol=1e-6)


def test_vae_baselines_sample_only_their_vae(test_config, tmp_path):
  config = _curl_config(test_config)
  workdir = str(tmp_path / 'run')
  train.train_and_evaluate(config, workdir)
  config.sample.num = 4
  images = np.load(inspect_run.sample(config, workdir))['images']
  assert images.shape == (4, 28, 28, 1)
  summaries = inspect_run.evaluate_workdir(config, workdir)
  assert {'nll_paper', 'nll_iwae', 'fid_own'} <= set(summaries)
  config.sample.network = 'teacher'
  with pytest.raises(ConfigError, match="method 'curl' has \\('student',\\)"):
    inspect_run.sample(config, workdir)


@pytest.mark.parametrize('name, value, message', [
    ('max_components', 0, 'curl.max_components=0; it must be >= 1'),
    ('expansion_threshold', -1.0, 'curl.expansion_threshold=-1.0; it must be > 0'),
])
def test_curl_config_errors(test_config, tmp_path, name, value, message):
  config = _curl_config(test_config, **{name: value})
  with pytest.raises(ConfigError, match=message):
    train.train_and_evaluate(config, str(tmp_path / 'run'))
  assert not os.path.exists(tmp_path / 'run')
