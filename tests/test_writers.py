"""Metric writers: TensorBoard events without TensorFlow, clu's interface, W&B offline."""

import glob
import os
import subprocess
import sys

import numpy as np
import pytest

from ltgans_jax import config_validation, train
from ltgans_jax.errors import ConfigError
from ltgans_jax.run import writers

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _event_accumulator(folder):
  event_accumulator = pytest.importorskip(
      'tensorboard.backend.event_processing.event_accumulator')
  accumulator = event_accumulator.EventAccumulator(folder, size_guidance={
      event_accumulator.SCALARS: 0, event_accumulator.IMAGES: 0, event_accumulator.TENSORS: 0})
  return accumulator.Reload()


def test_a_run_writes_losses_evaluation_scalars_heatmaps_and_hparams_to_tensorboard(
    reference_run):
  workdir, _ = reference_run
  tags = _event_accumulator(os.path.join(workdir, 'tensorboard')).Tags()
  assert 'generator/loss_assistant' in tags['scalars']
  # TensorBoard tags cannot hold brackets: the task 'digits[0-4]' is spelt 'digits_0-4_' there
  assert {'eval/nll_paper/digits_0-4_', 'eval/fid_own_all'} <= set(tags['scalars'])
  assert any(t.startswith('eval/') for t in tags['images'])  # the forgetting heatmaps
  hparams = _event_accumulator(os.path.join(workdir, 'tensorboard')).PluginTagToContent(
      'hparams')
  assert hparams, 'no hparams summary in the event file'


def test_tensorboard_events_are_written_without_tensorflow(tmp_path):
  """A subprocess in which ``import tensorflow`` fails writes the events all the same."""
  script = (
      'import sys; sys.modules["tensorflow"] = None\n'
      'import numpy as np\n'
      'from ltgans_jax.run import writers\n'
      f'log = writers.MetricsLog({str(tmp_path)!r})\n'
      'log.write_hparams({"train.batch_size": 64, "method": "ltgans"})\n'
      'log.write_scalars(7, {"loss": 1.25})\n'
      'log.write_images(7, {"grid": np.zeros((4, 4, 3), np.uint8)})\n'
      'log.close()\n'
      'assert sys.modules["tensorflow"] is None\n')
  subprocess.run([sys.executable, '-c', script], check=True, cwd=ROOT)
  accumulator = _event_accumulator(str(tmp_path / 'tensorboard'))
  scalars = accumulator.Scalars('loss')
  assert [(e.step, e.value) for e in scalars] == [(7, 1.25)]
  image = accumulator.Images('grid')[0]
  assert (image.step, image.width, image.height) == (7, 4, 4)


@pytest.mark.parametrize('writer', [writers.TensorboardWriter, writers.WandbWriter])
def test_writers_keep_clus_metric_writer_signatures(writer):
  """The methods our writers share with clu's ``MetricWriter`` take the same arguments, so
  code written against clu's interface runs on them."""
  import inspect  # pylint: disable=g-import-not-at-top
  interface = pytest.importorskip('clu.metric_writers.interface')  # clu imports TensorFlow
  shared = [name for name in interface.MetricWriter.__abstractmethods__ if hasattr(writer, name)]
  assert {'write_scalars', 'write_images', 'write_hparams', 'flush', 'close'} <= set(shared)
  for name in shared:
    ours = list(inspect.signature(getattr(writer, name)).parameters)
    clus = list(inspect.signature(getattr(interface.MetricWriter, name)).parameters)
    assert ours == clus, name


def test_wandb_offline_logs_scalars_images_and_config_and_resumes_the_same_run(
    tmp_path, monkeypatch):
  pytest.importorskip('wandb')
  monkeypatch.setenv('WANDB_MODE', 'offline')
  monkeypatch.setenv('WANDB_SILENT', 'true')
  monkeypatch.setenv('WANDB_DIR', str(tmp_path))
  workdir = str(tmp_path / 'run')
  for attempt in range(2):  # a second start (a resumed training) continues the same W&B run
    log = writers.MetricsLog(workdir, wandb_project='ltgans-test')
    log.write_hparams({'train.batch_size': 64, 'method': 'ltgans'})
    log.write_scalars(10 + attempt, {'eval/fid_own/mnist': 3.5 + attempt})
    log.write_images(10 + attempt, {'eval/fid_own': np.zeros((6, 6, 3), np.uint8)})
    run = log.writers[-1]._run  # pylint: disable=protected-access
    # What the W&B run holds in this process. Its records file is written by wandb's own
    # process, which on CI had written only the file's header when finish() returned, so the
    # logged scalars are not read back from it here.
    assert run.offline and run.project == 'ltgans-test' and run.id
    assert run.config['train.batch_size'] == 64 and run.config['method'] == 'ltgans'
    log.close()
  with open(os.path.join(workdir, writers.WANDB_ID_FILE)) as f:
    run_id = f.read().strip()
  runs = sorted(glob.glob(os.path.join(workdir, 'wandb', 'offline-run-*')))
  assert len(runs) == 2 and all(r.endswith(run_id) for r in runs)
  for run_folder in runs:
    assert os.path.exists(os.path.join(run_folder, f'run-{run_id}.wandb'))
    assert glob.glob(os.path.join(run_folder, 'files', 'media', 'images', '**', '*.png'),
                     recursive=True)


def test_training_hands_the_wandb_project_to_the_metrics_log(test_config, tmp_path,
                                                             monkeypatch):
  made = []

  class RecordingWriter:  # stands in for W&B; records what a run sends it

    def __init__(self, workdir, project):
      made.append((workdir, project, []))

    def write_scalars(self, step, scalars):
      made[-1][2].append(('scalars', step, dict(scalars)))

    def write_images(self, step, images):
      made[-1][2].append(('images', step, sorted(images)))

    def write_hparams(self, hparams):
      made[-1][2].append(('hparams', dict(hparams)))

    def flush(self):
      pass

    def close(self):
      made[-1][2].append(('closed',))

  monkeypatch.setattr(writers, 'WandbWriter', RecordingWriter)
  monkeypatch.setattr(config_validation, 'wandb_missing', lambda project: None)
  test_config.train.steps_per_task = 2
  test_config.log.wandb_project = 'ltgans-test'
  train.train_and_evaluate(test_config, str(tmp_path / 'run'))
  (workdir, project, calls), = made
  assert (workdir, project) == (str(tmp_path / 'run'), 'ltgans-test')
  assert calls[0] == ('hparams', train.hparams(test_config)) and calls[-1] == ('closed',)
  logged = {k for call in calls if call[0] == 'scalars' for k in call[2]}
  assert 'eval/fid_own_all' in logged and 'critic/loss' in logged


def test_a_wandb_project_without_wandb_installed_stops_before_training(test_config,
                                                                       monkeypatch):
  monkeypatch.setattr(config_validation.importlib.util, 'find_spec',
                      lambda name: None if name == 'wandb' else object())
  test_config.log.wandb_project = 'ltgans-test'
  with pytest.raises(ConfigError, match=r"needs wandb, which is not installed; pip install "
                     r"'ltgans-jax\[wandb\]', or set --config.log.wandb_project=''\."):
    config_validation.validate(test_config)
