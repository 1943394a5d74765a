"""End to end: two tasks on the test config, checkpoints, exact resume."""

import json
import os
import shutil

import numpy as np
import pytest

from ltgans_jax import train
from ltgans_jax.run import checkpointing, writers
from tests.helpers import tree_equal


def _steps_on_disk(workdir):
  return sorted(int(d) for d in os.listdir(os.path.join(workdir, 'checkpoints')) if d.isdigit())


def test_two_tasks_end_to_end_then_exact_resume(test_config, tmp_path, reference_run):
  reference_dir, final = reference_run
  assert int(final.task) == 1 and int(final.task_step) == test_config.train.steps_per_task

  # Task-boundary checkpoints (4, 8) are kept besides the newest rolling ones.
  steps_on_disk = _steps_on_disk(reference_dir)
  assert {4, 8} <= set(steps_on_disk)
  with open(os.path.join(reference_dir, 'report.json')) as f:
    report = json.load(f)
  for metric in ('nll_paper', 'nll_iwae', 'fid_own'):
    assert [len(r['evaluation'][metric]) for r in report['records']] == [1, 2]
    assert all(np.isfinite(v) for r in report['records'] for v in r['evaluation'][metric])
    assert os.path.getsize(os.path.join(reference_dir, 'eval', f'{metric}.png')) > 0
    # The continual-learning measures, in the JSON and in report.md.
    nll = [r['evaluation'][metric] for r in report['records']]
    assert report['forgetting'][metric]['backward_transfer'] == pytest.approx(nll[0][0] - nll[1][0])
  with open(os.path.join(reference_dir, 'report.md')) as f:
    assert f.read().count('max-based forgetting (Chaudhry et al. 2018') >= 3
  for record in report['records']:
    for path in record['pictures'].values():
      assert os.path.getsize(os.path.join(reference_dir, path)) > 0
  assert any('critic/loss' in row for row in writers.read_metrics(reference_dir))
  # Every evaluation value is also a scalar at its task's boundary step.
  evaluated = {row['step']: row for row in writers.read_metrics(reference_dir)
               if any(k.startswith('eval/') for k in row)}
  assert sorted(evaluated) == [4, 8]
  assert evaluated[8]['eval/nll_paper/digits[0-4]'] == pytest.approx(
      report['records'][1]['evaluation']['nll_paper'][0])
  assert evaluated[8]['eval/fid_own_all'] == pytest.approx(
      report['records'][1]['evaluation']['fid_own_all'][0])

  # Resume from inside task 2 (step 6) and from the task boundary (step 4): both must end
  # with exactly the parameters of the uninterrupted run.
  for keep_up_to in (6, 4):
    resumed_dir = str(tmp_path / f'resumed_{keep_up_to}')
    shutil.copytree(reference_dir, resumed_dir)
    for step in _steps_on_disk(resumed_dir):
      if step > keep_up_to:
        shutil.rmtree(os.path.join(resumed_dir, 'checkpoints', str(step)))
    resumed = train.train_and_evaluate(test_config, resumed_dir)
    assert tree_equal(resumed, final), f'resume from step {keep_up_to} diverged'
    assert _steps_on_disk(resumed_dir)[-1] == 8


def test_finished_workdir_rerun_trains_nothing(test_config, tmp_path):
  workdir = str(tmp_path / 'run')
  test_config.train.steps_per_task = 2
  first = train.train_and_evaluate(test_config, workdir)
  metrics_rows = len(writers.read_metrics(workdir))
  again = train.train_and_evaluate(test_config, workdir)
  assert tree_equal(first, again)
  assert len(writers.read_metrics(workdir)) == metrics_rows


def test_global_steps_count_across_tasks(test_config):
  from ltgans_jax import durations  # pylint: disable=g-import-not-at-top
  from ltgans_jax.methods import registry  # pylint: disable=g-import-not-at-top
  steps = durations.task_steps(test_config, registry.build(test_config), [100, 100])
  assert steps == (test_config.train.steps_per_task,) * 2
  assert durations.global_step(steps, 1, 3) == test_config.train.steps_per_task + 3
  assert durations.task_boundary_steps(steps) == [4, 8]


def test_epochs_count_the_data_on_the_critics_real_side(test_config):
  """An epoch is one pass of the task's data through the critic's real side: LT-GANs' tasks
  k >= 2 put B/2 data images there, so they run twice the steps (as the authors' code does);
  'joint' trains on the union of the tasks so far."""
  from ltgans_jax import durations  # pylint: disable=g-import-not-at-top
  from ltgans_jax.methods import registry  # pylint: disable=g-import-not-at-top
  test_config.train.epochs_per_task = 2.0
  test_config.train.batch_size = 8
  ltgans = durations.task_steps(test_config, registry.build(test_config), [100, 60])
  assert ltgans == (25, 30)  # ceil(2 * 100 / 8), ceil(2 * 60 / 4)
  test_config.method = 'joint'
  assert durations.task_steps(test_config, registry.build(test_config), [100, 60]) == (25, 40)
  test_config.method = 'lgm'
  lgm = registry.build(test_config)
  assert lgm.data_images_per_step(1, 8) == 4  # half of each batch replayed on task 2
  assert '2 epochs per task (25, 30 steps)' in durations.describe(
      test_config, ltgans)


def test_authors_code_settings_run_by_epochs_and_resume_exactly(test_config, tmp_path):
  """The authors' optimisers and schedule (RMSProp, one critic step, the Student with the
  generators, tasks in epochs) end to end, with checkpoints at the uneven task boundaries."""
  from ltgans_jax import config_base  # pylint: disable=g-import-not-at-top
  config = config_base.authors_code_settings(test_config)
  config.vae.latent_dim = 4  # keep the test config's sizes
  config.train.epochs_per_task = 0.02  # digits tasks of ~720 images, batch 8: 2 + 4 steps
  workdir = str(tmp_path / 'run')
  final = train.train_and_evaluate(config, workdir)
  with open(os.path.join(workdir, 'report.json')) as f:
    steps = [r['steps'] for r in json.load(f)['records']]
  assert steps[1] > steps[0] > 0
  assert int(final.task) == 1 and int(final.task_step) == steps[1]
  assert {steps[0], steps[0] + steps[1]} <= set(_steps_on_disk(workdir))
  resumed_dir = str(tmp_path / 'resumed')
  shutil.copytree(workdir, resumed_dir)
  for step in _steps_on_disk(resumed_dir):
    if step > steps[0]:
      shutil.rmtree(os.path.join(resumed_dir, 'checkpoints', str(step)))
  assert tree_equal(train.train_and_evaluate(config, resumed_dir), final)


@pytest.mark.parametrize('method', ['no_lakd', 'finetune', 'joint'])
def test_baselines_run_two_tasks(test_config, tmp_path, method):
  test_config.method = method
  test_config.train.steps_per_task = 2
  final = train.train_and_evaluate(test_config, str(tmp_path / method))
  assert int(final.task) == 1 and int(final.teacher_id) == 0  # no role swap


def test_first_task_copy_trains_one_generator_and_copies_it(test_config, tmp_path):
  """gan.first_task='copy': task 1 is the plain WGAN-GP step of the Assistant; the task-1
  boundary checkpoint holds the Teacher as its copy; task 2 is LAKD with that Teacher."""
  import jax  # pylint: disable=g-import-not-at-top
  from ltgans_jax.methods import registry  # pylint: disable=g-import-not-at-top
  test_config.gan.first_task = 'copy'
  test_config.train.steps_per_task = 2
  method = registry.build(test_config)
  assert [method.phase(t) for t in range(3)] == ['plain', 'lakd', 'lakd']
  workdir = str(tmp_path / 'run')
  final = train.train_and_evaluate(test_config, workdir)
  template = method.init_state(jax.random.key(0))
  manager = checkpointing.make_manager(test_config, workdir, [2, 2])
  after_task_1 = checkpointing.restore_step(manager, 2, template)
  assert tree_equal(after_task_1.teacher.params, after_task_1.assistant.params)
  # Task 2 froze that copy as its Teacher (the roles swapped) and trained the other twin.
  assert tree_equal(final.teacher.params, after_task_1.assistant.params)
  assert not tree_equal(final.assistant.params, final.teacher.params)
  test_config.method = 'no_lakd'
  assert registry.build(test_config).phase(0) == 'plain'
  test_config.gan.first_task = 'twins'
  assert registry.build(test_config).phase(0) == 'joint'


def test_resume_with_other_eval_settings_keeps_the_old_rows_labelled(test_config, tmp_path,
                                                                     reference_run):
  """A row keeps the evaluation setting it was measured with; the report marks the rows an
  earlier run measured differently instead of relabelling them."""
  workdir = str(tmp_path / 'run')
  shutil.copytree(reference_run[0], workdir)
  for step in _steps_on_disk(workdir):
    if step > 4:  # back to the end of task 1
      shutil.rmtree(os.path.join(workdir, 'checkpoints', str(step)))
  test_config.eval.num_examples = 12
  train.train_and_evaluate(test_config, workdir)
  with open(os.path.join(workdir, 'report.json')) as f:
    settings = [r['evaluation_setting'] for r in json.load(f)['records']]
  assert settings[0].startswith('16 test images') and settings[1].startswith('12 test images')
  with open(os.path.join(workdir, 'report.md')) as f:
    text = f.read()
  assert 'test set of that task (12 test images' in text
  assert 'Rows marked * were measured by an earlier run' in text
  assert '| digits[0-4]* |' in text and '| digits[5-9] |' in text
