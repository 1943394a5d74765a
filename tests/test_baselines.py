"""The VAE-only baselines (LGM, CURL): end to end on the test config, their state's structure,
and one invariant of each algorithm."""

import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ltgans_jax import train
from ltgans_jax.errors import ConfigError
from ltgans_jax.methods import curl as curl_lib, lgm as lgm_lib
from ltgans_jax.run import inspect as inspect_run
from tests.helpers import build_method, host_copy, random_batch, tree_equal


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
  method = build_method(test_config)
  step_fns = method.train_steps()
  state = method.init_state(jax.random.key(0))
  state, _ = step_fns['first'](state, random_batch(test_config, 0), jax.random.key(1))
  state = method.begin_next_task(state)
  teacher = host_copy(state.teacher_params)
  assert tree_equal(teacher, state.student.params)
  student_before = host_copy(state.student.params)
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


def test_lgm_next_task_starts_a_fresh_student_optimiser(test_config):
  """The original builds a new optimiser for the Student at each fork (main.py, train_loop);
  the Student keeps its weights (StudentTeacher.fork copies the Teacher's into it)."""
  test_config.method = 'lgm'
  method = build_method(test_config)
  state = method.init_state(jax.random.key(0))
  state, _ = method.train_steps()['first'](state, random_batch(test_config, 0),
                                           jax.random.key(1))
  fresh = method.optimizer.init(state.student.params)
  assert not tree_equal(state.student.opt_state, fresh)  # Adam's moments moved
  params = host_copy(state.student.params)
  state = method.begin_next_task(state)
  assert (jax.tree_util.tree_structure(state.student.opt_state)
          == jax.tree_util.tree_structure(fresh))
  assert tree_equal(state.student.opt_state, method.optimizer.init(state.student.params))
  assert tree_equal(state.student.params, params)
  assert tree_equal(state.teacher_params, params)


@pytest.mark.parametrize('task, batch, expected', [(0, 8, 0), (1, 8, 4), (2, 9, 6), (3, 64, 48),
                                                     (2, 64, 42)])
def test_lgm_teacher_share_is_t_over_t_plus_one(task, batch, expected):
  # floor(B t / (t + 1)), the original's int(batch_size * ratio): 64 * 2/3 -> 42.
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
  method = build_method(config)
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
  method = build_method(config)
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
  method = build_method(config)
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
  method = build_method(config)
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


def test_curl_expansion_trains_only_the_new_component(test_config):
  """As the original's train_step_expansion: the trunk, the decoder and every other component
  come out of an expansion bit for bit (their Adam moments too); the new one is trained."""
  config = _curl_config(test_config, buffer_size=test_config.train.batch_size)
  method = build_method(config)
  state = method.init_state(jax.random.key(0))
  # One ordinary step first (no buffer yet: warm-up), so every Adam moment is non-zero.
  state, _ = method.train_steps()['first'](state, random_batch(config, 0), jax.random.key(1))
  before, mu_before = host_copy(state.model.params), host_copy(state.model.opt_state[0].mu)
  model, active, count, _ = method._expand(  # pylint: disable=protected-access
      state.model, jnp.asarray(random_batch(config, 1)), state.buffer_count,
      state.steps_since_expansion, num_active=1, key=jax.random.key(2))
  after, mu_after = model.params, model.opt_state[0].mu
  assert int(active) == 2 and int(count) == 0
  for name in ('trunk', 'decoder'):
    assert tree_equal(before[name], after[name]), name
    assert tree_equal(mu_before[name], mu_after[name]), name
  two_l = 2 * config.vae.latent_dim
  per_component = {  # [..., component, ...] views, component axis 1 or 0
      'cluster_kernel': lambda p: p['cluster_head']['kernel'],
      'cluster_bias': lambda p: p['cluster_head']['bias'][None],
      'latent_kernel': lambda p: p['latent_head']['kernel'].reshape(-1, 3, two_l),
      'latent_bias': lambda p: p['latent_head']['bias'].reshape(1, 3, two_l),
      'prior_mean': lambda p: p['prior_mean'].T,
      'prior_log_var': lambda p: p['prior_log_var'].T,
  }
  for name, view in per_component.items():
    old, new = np.asarray(view(before)), np.asarray(view(after))
    # Component 0 (the copy's source) and 2 (inactive): untouched, bit for bit.
    np.testing.assert_array_equal(new[:, 0], old[:, 0], err_msg=name)
    np.testing.assert_array_equal(new[:, 2], old[:, 2], err_msg=name)
    np.testing.assert_array_equal(np.asarray(view(mu_after))[:, 0],
                                  np.asarray(view(mu_before))[:, 0], err_msg=name)
    # Component 1 started as a copy of 0 and was then trained.
    assert not np.array_equal(new[:, 1], old[:, 0]), name


def test_curl_replay_draws_components_in_proportion_to_usage():
  """Replay draws y with probability proportional to each component's summed q(y|x), as the
  original's get_generated_data does with cumulative_component_counts."""
  num = 100_000
  usage = jnp.array([3.0, 1.0, 0.0])
  draws = np.asarray(curl_lib.replay_components(jax.random.key(0), usage, jnp.asarray(2), num))
  frequencies = np.bincount(draws, minlength=3) / num
  # A frequency of N draws at p = 0.75 has a binomial standard deviation of
  # sqrt(0.75 * 0.25 / N) = 0.0014 for N = 1e5; atol 0.01 is about 7 standard deviations (a
  # false failure has probability < 1e-11; the key is fixed anyway), while uniform draws (0.5)
  # are 180 standard deviations away.
  np.testing.assert_allclose(frequencies[:2], [0.75, 0.25], atol=0.01)
  assert frequencies[2] == 0  # the inactive component, never
  # Never an inactive component even if it had usage; uniform over the active before any.
  draws = np.asarray(curl_lib.replay_components(jax.random.key(1), jnp.array([3.0, 1.0, 5.0]),
                                                jnp.asarray(2), 1000))
  assert set(np.unique(draws)) <= {0, 1}
  draws = np.asarray(curl_lib.replay_components(jax.random.key(2), jnp.zeros(3),
                                                jnp.asarray(2), num))
  np.testing.assert_allclose(np.bincount(draws, minlength=3) / num, [0.5, 0.5, 0.0], atol=0.01)


def test_curl_usage_sums_q_y_over_real_images_and_is_snapshot_at_the_boundary(test_config):
  config = _curl_config(test_config)
  method = build_method(config)
  step = method.train_steps()['first']
  state = method.init_state(jax.random.key(0))
  np.testing.assert_array_equal(state.usage, np.zeros(3))
  for seed in range(2):
    state, _ = step(state, random_batch(config, seed), jax.random.key(seed))
  # One active component: q(y=0|x) = 1 for each of the 2 * B images.
  np.testing.assert_allclose(state.usage, [2.0 * config.train.batch_size, 0.0, 0.0],
                             rtol=1e-6)
  state = method.begin_next_task(state)
  np.testing.assert_array_equal(state.replay_usage, state.usage)
  usage = np.asarray(state.usage)
  state, _ = method.train_steps()['replay'](state, random_batch(config, 2), jax.random.key(2))
  # Replayed samples are not counted: B more, from the real batch alone.
  np.testing.assert_allclose(state.usage[0], usage[0] + config.train.batch_size, rtol=1e-6)


def test_curl_with_one_component_is_a_vae_with_a_learnt_prior(test_config):
  """With one active component q(y|x) = 1, KL(q(y)||p(y)) = 0 and the loss is recon + KL_z."""
  config = _curl_config(test_config)
  method = build_method(config)
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
