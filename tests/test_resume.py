"""Resuming a workdir (issue 32): a killed run resumes into the uninterrupted run's report and
metrics; a config that cannot resume a workdir is named in one sentence, with advice that keeps
the finished work; the read-only modes check that they can write before they compute."""

import json
import os
import shutil
import tempfile

import jax
import numpy as np
import pytest

from ltgans_jax import config_validation, train
from ltgans_jax.data import datasets
from ltgans_jax.errors import ConfigError
from ltgans_jax.eval import figures, task_eval
from ltgans_jax.methods import registry
from ltgans_jax.run import checkpointing, inspect as inspect_run, seeds, writers
from tests.helpers import tree_equal, write_mnist_folder

TIMINGS = ('seconds', 'timed_steps', 'steps_per_sec')  # wall-clock fields: free to differ


def _steps_on_disk(workdir):
  return sorted(int(d) for d in os.listdir(os.path.join(workdir, 'checkpoints')) if d.isdigit())


def _listing(folder):
  return sorted(os.path.relpath(os.path.join(d, f), folder)
                for d, _, fs in os.walk(folder) for f in fs)


def _without_timings(value):
  if isinstance(value, dict):
    return {k: _without_timings(v) for k, v in value.items() if k not in TIMINGS}
  if isinstance(value, list):
    return [_without_timings(v) for v in value]
  return value


def _report(workdir):
  with open(os.path.join(workdir, 'report.json')) as f:
    return _without_timings(json.load(f))


def _metrics(workdir):
  return _without_timings(writers.read_metrics(workdir))


# ------------------------------------------------------------------------------------------
# A killed run resumes into the uninterrupted run's report and metrics.

def test_kill_and_resume_writes_the_uninterrupted_report_and_metrics(test_config, tmp_path,
                                                                     monkeypatch, reference_run):
  """Killed while drawing the last figures: task 2's steps 7-8 and its evaluation rows are in
  metrics.jsonl, its last checkpoint is step 6. Used to report 2 steps for task 2 and to
  repeat the rows of steps 7-8. Everything a task owes is written before its boundary
  checkpoint, so the resumed run redraws the figures and ends with the reference's state."""
  reference_dir, reference = reference_run
  workdir = str(tmp_path / 'run')

  def killed(*args, **kwargs):
    raise KeyboardInterrupt('killed while drawing the latent figures')
  monkeypatch.setattr(train.figures, 'write_latent_figures', killed)
  with pytest.raises(KeyboardInterrupt):
    train.train_and_evaluate(test_config, workdir)
  monkeypatch.undo()
  assert _steps_on_disk(workdir)[-1] == 6  # the final checkpoint is not written
  resumed = train.train_and_evaluate(test_config, workdir)
  assert tree_equal(resumed, reference)
  assert _report(workdir) == _report(reference_dir)
  assert _metrics(workdir) == _metrics(reference_dir)


def test_truncated_metrics_row_is_repaired_on_resume(test_config, tmp_path, reference_run):
  """A kill mid-write leaves half a row; the resumed run's next row used to be glued to it."""
  workdir = str(tmp_path / 'run')
  shutil.copytree(reference_run[0], workdir)
  for step in _steps_on_disk(workdir):
    if step > 6:
      shutil.rmtree(os.path.join(workdir, 'checkpoints', str(step)))
  with open(os.path.join(workdir, 'metrics.jsonl'), 'a') as f:
    f.write('{"step": 9, "critic/lo')  # cut short by a kill
  train.train_and_evaluate(test_config, workdir)
  assert _metrics(workdir) == _metrics(reference_run[0])


# ------------------------------------------------------------------------------------------
# Few test images: what the check lets through must also draw the figures.

def test_latent_figures_of_tasks_with_two_test_images(test_config, tmp_path):
  """The check lets a task with two test images through (two for the FID); the figures used
  to need four (IndexError after the last task, in every rerun and --mode=evaluate)."""
  method = registry.build(test_config)
  state = method.init_state(jax.random.key(0))
  images = [np.random.default_rng(t).integers(0, 256, (n, 28, 28, 1), dtype=np.uint8)
            for t, n in enumerate((2, 3))]
  files = figures.write_latent_figures(method.vae_view(state), ['a', 'b'], images,
                                       str(tmp_path))
  assert sorted(files) == ['interpolation_across_tasks', 'interpolation_same_task',
                           'traversal_a', 'traversal_b']
  assert all(os.path.getsize(tmp_path / path) > 0 for path in files.values())


def test_run_on_tasks_with_three_test_images_finishes(test_config, tmp_path):
  """eval.grid_rows=2, as the check advises for small test sets: the run draws its final
  figures and a rerun trains nothing."""
  datasets._load_cached.cache_clear()  # pylint: disable=protected-access
  write_mnist_folder(tmp_path / 'mnist', n_train=12, n_test=3)
  write_mnist_folder(tmp_path / 'fashion_mnist', n_train=12, n_test=3)
  test_config.data.sequence = 'mnist_fashion'
  test_config.data.data_dir = str(tmp_path)
  test_config.train.steps_per_task = 2
  workdir = str(tmp_path / 'run')
  try:
    train.train_and_evaluate(test_config, workdir)
  finally:
    datasets._load_cached.cache_clear()  # pylint: disable=protected-access
  assert os.path.getsize(os.path.join(workdir, 'figures',
                                      'final_interpolation_same_task.png')) > 0


# ------------------------------------------------------------------------------------------
# A config that cannot resume the workdir: named, with the value the workdir was written with.

def _zero_workdir(tmp_path, config, num_seeds=1):
  """A workdir with task-boundary checkpoints 4 and 8 of a zero state of ``config``'s shapes
  (``num_seeds`` stacked) and its config.json; no training."""
  config.train.num_seeds = num_seeds
  workdir = str(tmp_path / 'run')
  shapes = jax.eval_shape(registry.build(config).init_state, jax.random.key(config.seed))
  one = jax.tree_util.tree_map(lambda leaf: np.zeros(leaf.shape, leaf.dtype), shapes)
  manager = checkpointing.make_manager(config, workdir, [4, 4])
  for step in (4, 8):
    checkpointing.save(manager, step, seeds.stack([one] * num_seeds))
  checkpointing.finish(manager)
  manager.close()
  config_validation.record_config(config, workdir)
  if num_seeds > 1:  # the summary over seeds, with fields a one-seed report lacks
    with open(os.path.join(workdir, 'report.json'), 'w') as f:
      json.dump({'tasks': ['a', 'b'], 'seeds': [0, 1], 'records': [
          {'name': 'a', 'steps': 4, 'seconds': 1.0, 'last_metrics': {}, 'evaluation': {},
           'pictures': {}, 'evaluation_std': {}}]}, f)
  return workdir


def _refused(config, workdir, error, pattern):
  before = _listing(workdir)
  with pytest.raises(error, match=pattern):
    train.train_and_evaluate(config, workdir)
  assert _listing(workdir) == before


def test_changed_image_size_without_config_json_is_named(test_config, tmp_path):
  """Used to be 'None of the checkpoints ... can be restored ...; move that folder away to
  start afresh': advice that discards healthy checkpoints."""
  workdir = _zero_workdir(tmp_path, test_config)
  os.remove(os.path.join(workdir, 'config.json'))
  test_config.data.image_size = 32
  _refused(test_config, workdir, checkpointing.CheckpointError,
           r'hold networks of other sizes than this config because they were written with '
           r'data.image_size=28 \(this config: 32\); pass the config that wrote them '
           r'\(--config.data.image_size=28\), or use another --workdir\.$')


@pytest.mark.parametrize('written, resumed, with_config_json', [
    (2, 1, True), (2, 1, False), (1, 2, True), (1, 2, False)])
def test_other_number_of_seeds_is_named(test_config, tmp_path, written, resumed,
                                         with_config_json):
  """Two seeds resumed with one used to say 'report.json cannot be read ...; restore it, or
  delete it', one resumed with two 'networks of other sizes' with tracebacks."""
  workdir = _zero_workdir(tmp_path, test_config, num_seeds=written)
  if not with_config_json:
    os.remove(os.path.join(workdir, 'config.json'))
  test_config.train.num_seeds = resumed
  _refused(test_config, workdir, (ConfigError, checkpointing.CheckpointError),
           rf'train.num_seeds={written} \(this config: {resumed}\).*'
           rf'--config.train.num_seeds={written}')


def test_old_workdir_with_other_defaults_of_keys_the_method_never_reads(test_config, tmp_path,
                                                                        reference_run):
  """An LT-GANs workdir whose config.json holds an older default of a CURL setting, and lacks
  a key added since (at its default): it resumes (here: trains nothing, it is finished)."""
  workdir = str(tmp_path / 'run')
  shutil.copytree(reference_run[0], workdir)
  path = os.path.join(workdir, 'config.json')
  with open(path) as f:
    recorded = json.load(f)
  recorded['resume_keys']['curl.buffer_size'] = 50
  recorded['resume_keys'].pop('train.num_seeds', None)
  recorded['resume_keys'].pop('gan.first_task')
  with open(path, 'w') as f:
    json.dump(recorded, f)
  config_validation.check_workdir(test_config, workdir)
  # A key the method reads still refuses, naming how to resume.
  recorded['resume_keys']['vae.width'] = 6
  with open(path, 'w') as f:
    json.dump(recorded, f)
  with pytest.raises(ConfigError, match=r'vae.width=6 \(this config: 4\); use another '
                                        r'--workdir, or pass --config.vae.width=6 to resume it'):
    config_validation.check_workdir(test_config, workdir)
  # A key absent from the record holds its default there; another value is refused.
  recorded['resume_keys']['vae.width'] = 4
  with open(path, 'w') as f:
    json.dump(recorded, f)
  test_config.gan.first_task = 'copy'
  with pytest.raises(ConfigError, match=r"gan.first_task='twins' \(this config: 'copy'\)"):
    config_validation.check_workdir(test_config, workdir)


# ------------------------------------------------------------------------------------------
# The read-only modes check that they can write before computing anything.

@pytest.mark.parametrize('mode', ['evaluate', 'sample'])
def test_read_only_modes_on_a_read_only_workdir(test_config, tmp_path, reference_run,
                                                monkeypatch, mode):
  """Used to compute everything, then fail advising that 'training resumes from its newest
  checkpoint' (evaluate), or to need a write that fails after the sampling (sample). The test
  runs as root, so the read-only folder is simulated where files are created in it."""
  import errno  # pylint: disable=g-import-not-at-top
  workdir = str(tmp_path / 'run')
  shutil.copytree(reference_run[0], workdir)
  real_mkstemp, real_open = tempfile.mkstemp, open

  def refused(path):
    if os.path.abspath(str(path)).startswith(workdir):
      raise PermissionError(errno.EACCES, 'Permission denied', str(path))

  def mkstemp(*args, dir=None, **kwargs):  # pylint: disable=redefined-builtin
    refused(dir or '.')
    return real_mkstemp(*args, dir=dir, **kwargs)

  def open_(path, mode_='r', *args, **kwargs):
    if any(c in mode_ for c in 'wax+'):
      refused(path)
    return real_open(path, mode_, *args, **kwargs)
  monkeypatch.setattr(tempfile, 'mkstemp', mkstemp)
  monkeypatch.setattr('builtins.open', open_)
  evaluated = []
  monkeypatch.setattr(task_eval.TaskEvaluator, 'evaluate',
                      lambda *args, **kwargs: evaluated.append(1) or {})
  before = _listing(workdir)
  run = inspect_run.evaluate_workdir if mode == 'evaluate' else inspect_run.sample
  with pytest.raises(ConfigError, match=rf'--mode={mode} writes .* into .*run.* which is not '
                                        r'writable \(Permission denied\); make it writable'):
    run(test_config, workdir)
  assert not evaluated
  assert _listing(workdir) == before
