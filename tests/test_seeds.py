"""The fused training loop and several seeds in one run (``loop``, ``seeds``, issue 20).

* The loop's fused calls give, bit for bit, what one jitted step per call gave (the loop up to
  5611a4f), with one critic step per generator update and with several.
* A 2-seed run equals the two 1-seed runs with those seeds (each seed's parameters and its
  evaluation), resumes exactly, and reports mean and 95% interval over seeds.
"""

import json
import os
import shutil

import jax
import numpy as np
import pytest

from ltgans_jax import rng, train
from ltgans_jax.data import batching
from ltgans_jax.run import loop as loop_lib, seeds, seeds_report
from tests.helpers import build_method, host_copy, tree_equal


def _images(config, num=64):
  size = config.data.image_size
  return np.random.default_rng(3).integers(0, 256, (num, size, size, 1), np.uint8)


@pytest.mark.parametrize('method_name,critic_steps,num_steps', [
    ('ltgans', 1, 5), ('ltgans', 3, 7), ('no_lakd', 2, 5), ('lgm', 1, 4), ('curl', 1, 4)])
def test_fused_calls_equal_steps_jitted_alone_bit_for_bit(test_config, method_name,
                                                          critic_steps, num_steps):
  config = test_config
  config.method, config.gan.critic_steps = method_name, critic_steps
  config.train.log_every = config.train.checkpoint_every = 100
  method = build_method(config)
  task = 1  # the second task: LAKD, the no-LAKD mix, LGM's distillation, CURL's replay
  start = method.begin_next_task(method.init_state(jax.random.key(config.seed)))
  batches = batching.TaskBatches(_images(config), config.train.batch_size, config.seed, task)

  # The loop up to 5611a4f: one jitted step per call, the key drawn on the host.
  expected = jax.tree_util.tree_map(np.array, host_copy(start))
  jitted = {}  # one compiled step per (variant, static), as the old loop's train_steps had
  plan = method.plan
  for task_step in range(num_steps):
    static = (plan.static_args(expected) or (None,))[0]
    variant = plan.variant(task, task_step)
    if (variant, static) not in jitted:
      jitted[variant, static] = jax.jit(plan.step(variant, static))
    expected, _ = jitted[variant, static](expected, batches[task_step],
                                          rng.step_key(config.seed, task, task_step))

  mesh = train.data_mesh()
  loop = loop_lib.headless(config, method, (num_steps, num_steps),
                           jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec('data')))
  fused, _ = loop_lib.run_task(loop, host_copy(start), task, [batches], 'test', 'task 2')
  assert int(fused.task_step) == num_steps
  assert tree_equal(fused, expected)


def _two_seed_config(test_config, **train_values):
  config = test_config
  config.train.num_seeds = 2
  config.eval.num_examples = 8
  for name, value in train_values.items():
    config.train[name] = value
  return config


@pytest.fixture(scope='module')
def two_seed_run(tmp_path_factory):
  """A 2-seed run of the test config (seeds 0 and 1): (config, workdir, final state)."""
  from configs import test as test_config_module  # pylint: disable=g-import-not-at-top
  config = _two_seed_config(test_config_module.get_config())
  workdir = str(tmp_path_factory.mktemp('seeds') / 'two')
  return config, workdir, train.train_and_evaluate(config, workdir)


def test_two_seeds_equal_two_one_seed_runs_and_report_intervals(test_config, tmp_path,
                                                                two_seed_run):
  config, workdir, final = two_seed_run
  assert jax.tree_util.tree_leaves(final)[0].shape[0] == 2  # a leading seed axis
  # The one-seed run with seed 1, measured with the same FID feature network (seed 0's).
  one_config = seeds.seed_config(config, 1)
  one_dir = str(tmp_path / 'seed1_alone')
  os.makedirs(one_dir)
  shutil.copy(os.path.join(workdir, 'seed0', 'feature_net.msgpack'), one_dir)
  alone = train.train_and_evaluate(one_config, one_dir)
  for ours, theirs in zip(jax.tree_util.tree_leaves(seeds.unstack(final, 1)),
                          jax.tree_util.tree_leaves(alone)):
    np.testing.assert_allclose(np.asarray(ours), np.asarray(theirs), rtol=1e-5, atol=1e-5)

  with open(os.path.join(workdir, 'seed1', 'report.json')) as f:
    in_run = json.load(f)['records']
  with open(os.path.join(one_dir, 'report.json')) as f:
    one_run = json.load(f)['records']
  for ours, theirs in zip(in_run, one_run):
    for metric in ('nll_paper', 'nll_iwae', 'fid_own', 'audit_share_assistant'):
      np.testing.assert_allclose(ours['evaluation'][metric], theirs['evaluation'][metric],
                                 rtol=1e-4)

  # The workdir's report: means, and intervals computed from the seeds' own reports.
  with open(os.path.join(workdir, 'report.json')) as f:
    summary = json.load(f)
  assert summary['seeds'] == [0, 1]
  per_seed = []
  for s in (0, 1):
    with open(os.path.join(workdir, f'seed{s}', 'report.json')) as f:
      per_seed.append(json.load(f)['records'][-1]['evaluation']['nll_paper'])
  values = np.array(per_seed)  # [seeds, tasks]
  last = summary['records'][-1]
  np.testing.assert_allclose(last['evaluation']['nll_paper'], values.mean(axis=0))
  half_width = 12.706204736174707 * values.std(axis=0, ddof=1) / np.sqrt(2)  # t(0.975, 1)
  np.testing.assert_allclose(last['evaluation_ci95']['nll_paper'], half_width, rtol=1e-6)
  with open(os.path.join(workdir, 'report.md')) as f:
    report = f.read()
  assert '2 seeds' in report and ' ± ' in report and '[`seed1/`](seed1/report.md)' in report
  assert seeds_report.intervals(summary, 'nll_paper') == last['evaluation_ci95']['nll_paper']


def test_api_opens_each_seed_of_a_two_seed_workdir(two_seed_run):
  from ltgans_jax import api  # pylint: disable=g-import-not-at-top
  from ltgans_jax.errors import ConfigError  # pylint: disable=g-import-not-at-top
  config, workdir, final = two_seed_run
  for s in (0, 1):
    run = api.Run.open(workdir, seed_index=s)
    assert tree_equal(run.state, seeds.unstack(final, s))
    assert (run.config.seed, run.config.train.num_seeds) == (config.seed + s, 1)
    with open(os.path.join(workdir, f'seed{s}', 'report.json')) as f:
      assert run.report == json.load(f)
    size = config.data.image_size
    assert run.sample(num=2).shape == (2, size, size, config.data.channels)
  first = api.Run.open(workdir, after_task=0, seed_index=1)
  assert int(first.state.task) == 0
  with pytest.raises(ConfigError, match=r'api.Run.open\(workdir, seed_index=k\)'):
    api.Run.open(workdir)
  with pytest.raises(ConfigError, match=r'seed_index=2; .* pass 0 to 1.'):
    api.Run.open(workdir, seed_index=2)


def test_two_seed_run_resumes_exactly(tmp_path, two_seed_run):
  config, workdir, final = two_seed_run
  for keep_up_to in (6, 4):
    resumed_dir = str(tmp_path / f'resumed_{keep_up_to}')
    shutil.copytree(workdir, resumed_dir)
    checkpoints = os.path.join(resumed_dir, 'checkpoints')
    for step in os.listdir(checkpoints):
      if step.isdigit() and int(step) > keep_up_to:
        shutil.rmtree(os.path.join(checkpoints, step))
    resumed = train.train_and_evaluate(config, resumed_dir)
    assert tree_equal(resumed, final), f'resume from step {keep_up_to} diverged'


@pytest.mark.parametrize('method_name', ['ltgans', 'curl'])
def test_each_seed_of_a_call_equals_its_one_seed_call(test_config, method_name):
  """Seeds stepped by one call ('vmap', the accelerators' choice, where the method allows,
    and 'loop', the CPU's) equal each seed stepped alone; LT-GANs' 'loop' bit for bit."""
  config = test_config
  config.method, config.train.num_seeds = method_name, 2
  config.train.log_every = config.train.checkpoint_every = 100
  task, num_steps = 1, 3
  method = build_method(config)
  starts = [method.begin_next_task(method.init_state(jax.random.key(s))) for s in (0, 1)]
  batches = [batching.TaskBatches(_images(config), config.train.batch_size, s, task)
             for s in (0, 1)]
  sharding = jax.sharding.NamedSharding(train.data_mesh(), jax.sharding.PartitionSpec('data'))

  def run(config, state, task_batches):
    loop = loop_lib.headless(config, build_method(config), (num_steps, num_steps), sharding)
    return loop_lib.run_task(loop, host_copy(state), task, task_batches, 'test', 'task 2')[0]

  alone = [run(seeds.seed_config(config, s), starts[s], [batches[s]]) for s in (0, 1)]
  for mode in ('vmap', 'loop'):
    config.train.seed_batching = mode
    together = run(config, seeds.stack(starts), batches)
    for s in (0, 1):
      if mode == 'loop' and method_name == 'ltgans':  # CURL's seeds differ by float rounding
        assert tree_equal(seeds.unstack(together, s), alone[s])
      for a, b in zip(jax.tree_util.tree_leaves(seeds.unstack(together, s)),
                      jax.tree_util.tree_leaves(alone[s])):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-5)


def test_bad_seed_settings_end_in_one_sentence(test_config, tmp_path):
  from ltgans_jax.errors import ConfigError  # pylint: disable=g-import-not-at-top
  test_config.train.num_seeds = 0
  with pytest.raises(ConfigError, match=r'train.num_seeds=0; it must be >= 1.'):
    train.train_and_evaluate(test_config, str(tmp_path / 'a'))
  test_config.train.num_seeds = 2
  test_config.train.seed_batching = 'pmap'
  with pytest.raises(ConfigError, match=r"train.seed_batching='pmap'; use one of"):
    train.train_and_evaluate(test_config, str(tmp_path / 'b'))
