"""Bad input ends in one clear sentence naming the value and what is accepted, before any
training starts, with nothing in the workdir damaged; damaged checkpoints are skipped."""

import hashlib
import json
import os
import shutil
import subprocess
import sys

import jax
import pytest

from ltgans_jax import config_validation, files, train
from ltgans_jax.data import local
from ltgans_jax.errors import ConfigError
from ltgans_jax.methods import registry
from ltgans_jax.run import checkpointing
from tests.conftest import ROOT
from tests.helpers import set_config_value as _set, tree_equal, write_mnist_folder

# (override path, value, error type, pattern the message must match)
BAD_VALUES = [
    ('data.image_size', 48, ConfigError, r'data.image_size=48 is not supported; use one of'),
    ('data.image_size', 20, ConfigError, r'data.image_size=20 is not supported'),
    ('data.channels', 2, ConfigError, r'data.channels=2; use 1 or 3'),
    ('data.source', 'internet', ConfigError, r"data.source='internet'; use one of"),
    ('data.sequence', 'nope', ConfigError, r"data.sequence='nope' is unknown; use one of"),
    ('data.num_tasks', 11, ConfigError, r'data.num_tasks=11 but digits has 10 classes'),
    ('model.resample', 'bilinear', ConfigError, r"model.resample='bilinear'; use one of"),
    ('model.conv_gradients', 'fast', ConfigError,
     r"model.conv_gradients='fast'; use one of"),
    ('model.latent_dim', 0, ConfigError, r'model.latent_dim=0; it must be >= 1'),
    ('vae.likelihood', 'laplace', ConfigError, r"vae.likelihood='laplace'; use one of"),
    ('vae.beta', 0.0, ConfigError, r'vae.beta=0.0; it must be > 0'),
    ('vae.beta', -4.0, ConfigError, r'vae.beta=-4.0; it must be > 0'),
    ('vae.decoder_std', 0.0, ConfigError, r'vae.decoder_std=0.0; it must be > 0'),
    ('gan.gradient_penalty_weight', -10.0, ConfigError,
     r'gan.gradient_penalty_weight=-10.0; it must be >= 0'),
    ('gan.teacher_fraction', 1.5, ConfigError, r'gan.teacher_fraction=1.5; it must lie in'),
    ('gan.critic_steps', 0, ConfigError, r'gan.critic_steps=0; it must be >= 1'),
    ('train.steps_per_task', 0, ConfigError, r'train.steps_per_task=0; it must be >= 1'),
    ('train.batch_size', 0, ConfigError, r'train.batch_size=0; it must be >= 1'),
    ('train.batch_size', 5000, ConfigError,
     r'train.batch_size=5000 exceeds the \d+ training images of task digits\[0-4\]'),
    ('train.log_every', 0, ConfigError, r'train.log_every=0; it must be >= 1'),
    ('train.checkpoint_every', -1, ConfigError, r'train.checkpoint_every=-1; it must be >= 1'),
    ('train.epochs_per_task', -1.0, ConfigError, r'train.epochs_per_task=-1.0; it must be >= 0'),
    ('vae.update_schedule', 'sometimes', ConfigError,
     r"vae.update_schedule='sometimes'; use one of"),
    ('optim.gan_optimizer', 'sgd', ConfigError, r"optim.gan_optimizer='sgd'; use one of"),
    ('optim.student_b1', 1.0, ConfigError, r'optim.student_b1=1.0; it must lie in \[0, 1\)'),
    ('optim.gan_learning_rate', -1e-4, ConfigError,
     r'optim.gan_learning_rate=-0.0001; it must be > 0'),
    ('optim.student_learning_rate', 0.0, ConfigError,
     r'optim.student_learning_rate=0.0; it must be > 0'),
    ('vae.beta', float('nan'), ConfigError, r'vae.beta=nan; it must be a finite number'),
    ('gan.gradient_penalty_weight', float('inf'), ConfigError,
     r'gan.gradient_penalty_weight=inf; it must be a finite number'),
    ('gan.critic_steps', 5, ConfigError,
     r'gan.critic_steps=5 exceeds the 4 steps of the shortest task, so its generators would '
     r'never be updated'),
    ('train.batch_size', 1, ConfigError,
     r"train.batch_size=1 with gan.teacher_fraction=0.5 puts 0 of 1 Teacher samples on the "
     r"critic's real side; use a batch of at least 2"),
    ('eval.num_examples', 0, ConfigError, r'eval.num_examples=0; it must be >= 1'),
    ('eval.iwae_samples', 0, ConfigError, r'eval.iwae_samples=0; it must be >= 1'),
    ('seed', -1, ConfigError, r'seed=-1; it must be >= 0'),
    ('data.sequence', 'mnist_fashion', local.DatasetError,
     r'mnist is read from DATA_DIR/mnist/ .*set --config.data.data_dir'),
]


@pytest.mark.parametrize('key, value, error, pattern', BAD_VALUES,
                         ids=[f'{k}={v}' for k, v, _, _ in BAD_VALUES])
def test_bad_value_is_refused_before_anything_is_written(test_config, tmp_path, key, value,
                                                         error, pattern):
  _set(test_config, key, value)
  workdir = tmp_path / 'run'
  with pytest.raises(error, match=pattern):
    train.train_and_evaluate(test_config, str(workdir))
  assert not workdir.exists()


def test_critic_steps_longer_than_a_task_in_epochs_is_refused(test_config, tmp_path):
  """With tasks in epochs the check runs on the computed step counts, still before anything is
  written."""
  test_config.train.epochs_per_task = 0.02  # digits tasks of ~720 images, batch 8: 2 + 4 steps
  test_config.gan.critic_steps = 3
  with pytest.raises(ConfigError, match=r'gan.critic_steps=3 exceeds the 2 steps of the '
                                        'shortest task'):
    train.train_and_evaluate(test_config, str(tmp_path / 'run'))
  assert not (tmp_path / 'run').exists()


def test_batch_must_divide_over_the_devices(test_config, monkeypatch):
  monkeypatch.setattr(config_validation.jax, 'device_count', lambda: 4)
  test_config.train.batch_size = 6
  with pytest.raises(ConfigError, match='batch_size=6 is not divisible by the 4 devices; use a '
                                        'multiple of 4'):
    config_validation.validate(test_config)


def test_missing_and_malformed_dataset_files(test_config, tmp_path):
  test_config.data.sequence = 'mnist_fashion'
  test_config.data.data_dir = str(tmp_path)
  with pytest.raises(local.DatasetError, match=r'no folder .*mnist; put the published files'):
    train.train_and_evaluate(test_config, str(tmp_path / 'a'))
  write_mnist_folder(tmp_path / 'mnist')
  write_mnist_folder(tmp_path / 'fashion_mnist')
  (tmp_path / 'fashion_mnist' / 't10k-labels-idx1-ubyte.gz').write_bytes(b'garbage')
  with pytest.raises(local.DatasetError, match='Cannot read .*t10k-labels.*download it again'):
    train.train_and_evaluate(test_config, str(tmp_path / 'b'))
  assert not (tmp_path / 'a').exists() and not (tmp_path / 'b').exists()


def test_incompatible_workdir_is_refused_and_left_intact(test_config, tmp_path):
  workdir = str(tmp_path / 'run')
  test_config.train.steps_per_task = 2
  train.train_and_evaluate(test_config, workdir)
  before = sorted(os.listdir(os.path.join(workdir, 'checkpoints')))
  test_config.data.image_size = 32
  with pytest.raises(ConfigError, match=r'incompatible config: data.image_size=28 \(this '
                                        r'config: 32\); use another --workdir'):
    train.train_and_evaluate(test_config, workdir)
  assert sorted(os.listdir(os.path.join(workdir, 'checkpoints'))) == before


def _corrupt_truncate(step_dir):
  files = [os.path.join(d, f) for d, _, fs in os.walk(step_dir) for f in fs]
  biggest = max(files, key=os.path.getsize)
  with open(biggest, 'r+b') as f:
    f.truncate(os.path.getsize(biggest) // 3)


def _corrupt_missing_item(step_dir):
  shutil.rmtree(os.path.join(step_dir, 'default'))


def _corrupt_half_written(step_dir):
  # A save killed mid-way: the step folder exists but holds only part of its files.
  for d, _, fs in os.walk(step_dir):
    for f in fs:
      if 'metadata' in f.lower() or f.startswith('_'):
        os.remove(os.path.join(d, f))


@pytest.mark.parametrize('corrupt', [_corrupt_truncate, _corrupt_missing_item,
                                     _corrupt_half_written])
def test_damaged_newest_checkpoint_falls_back_to_the_previous_one(test_config, tmp_path,
                                                                  corrupt, reference_run):
  reference_dir, reference = reference_run
  workdir = str(tmp_path / 'damaged')
  shutil.copytree(reference_dir, workdir)
  shutil.rmtree(os.path.join(workdir, 'checkpoints', '8'))  # interrupted in task 2 ...
  corrupt(os.path.join(workdir, 'checkpoints', '6'))        # ... and its newest save damaged
  resumed = train.train_and_evaluate(test_config, workdir)   # resumes from 4, with a warning
  assert tree_equal(resumed, reference)
  # The damaged step was moved aside, untouched, and written afresh.
  assert os.path.isdir(os.path.join(workdir, 'damaged_checkpoints', '6'))
  template = registry.build(test_config).init_state(jax.random.key(0))
  manager = checkpointing.make_manager(test_config, workdir, [4, 4])
  for step in (6, 8):
    checkpointing.restore_step(manager, step, template)


def _file_hashes(folder):
  return {os.path.relpath(os.path.join(d, f), folder):
          hashlib.sha256(open(os.path.join(d, f), 'rb').read()).hexdigest()
          for d, _, fs in os.walk(folder) for f in fs}


def test_damaged_final_checkpoint_of_a_finished_run_is_written_afresh(test_config, tmp_path,
                                                                      reference_run):
  """Orbax skips a save whose step is not above its newest one; the damaged final checkpoint
  must not stay behind a run that says it finished."""
  reference_dir, reference = reference_run
  workdir = str(tmp_path / 'damaged')
  shutil.copytree(reference_dir, workdir)
  final_dir = os.path.join(workdir, 'checkpoints', '8')
  _corrupt_truncate(final_dir)
  damaged = _file_hashes(final_dir)
  resumed = train.train_and_evaluate(test_config, workdir)
  assert tree_equal(resumed, reference)
  assert _file_hashes(final_dir) != damaged
  assert _file_hashes(os.path.join(workdir, 'damaged_checkpoints', '8')) == damaged
  template = registry.build(test_config).init_state(jax.random.key(0))
  manager = checkpointing.make_manager(test_config, workdir, [4, 4])
  assert tree_equal(checkpointing.restore_step(manager, 8, template), reference)


def test_no_valid_checkpoint_is_a_clear_error(test_config, tmp_path):
  workdir = str(tmp_path / 'run')
  test_config.train.steps_per_task = 2
  train.train_and_evaluate(test_config, workdir)
  for step in os.listdir(os.path.join(workdir, 'checkpoints')):
    if step.isdigit():
      _corrupt_missing_item(os.path.join(workdir, 'checkpoints', step))
  with pytest.raises(checkpointing.CheckpointError,
                     match='None of the checkpoints in .* can be restored .*move that folder'):
    train.train_and_evaluate(test_config, workdir)


@pytest.mark.parametrize('override, pattern', [
    ('--config.train.batchsize=8', 'batchsize'),
    ('--config.train.batch_size=eight', 'batch_size'),
])
def test_command_line_rejects_unknown_keys_and_wrong_types(tmp_path, override, pattern):
  result = subprocess.run(
      [sys.executable, '-m', 'ltgans_jax.main', '--config=configs/test.py',
       f'--workdir={tmp_path / "run"}', override],
      cwd=ROOT, capture_output=True, text=True, timeout=300)
  assert result.returncode != 0
  assert pattern in result.stderr
  assert not (tmp_path / 'run').exists()


def test_a_failed_start_does_not_block_the_right_command(test_config, tmp_path):
  """config.json is written once the run is known to start; one left by a start that failed
  before its first checkpoint (other values, or a 0-byte file after a full disk) protects
  nothing and is replaced. Beside checkpoints, other values are refused and an unreadable file
  is one sentence."""
  workdir = tmp_path / 'run'
  workdir.mkdir()
  for leftover in (json.dumps({'resume_keys': {'data.image_size': 32}}), ''):
    (workdir / 'config.json').write_text(leftover)
    config_validation.check_workdir(test_config, str(workdir))
    config_validation.record_config(test_config, str(workdir))
    with open(workdir / 'config.json') as f:
      assert json.load(f)['resume_keys']['data.image_size'] == 28
  (workdir / 'checkpoints' / '4').mkdir(parents=True)
  test_config.data.image_size = 32
  with pytest.raises(ConfigError, match=r'incompatible config: data.image_size=28'):
    config_validation.check_workdir(test_config, str(workdir))
  config_validation.record_config(test_config, str(workdir))  # never over checkpoints
  with open(workdir / 'config.json') as f:
    assert json.load(f)['resume_keys']['data.image_size'] == 28
  (workdir / 'config.json').write_text('')
  with pytest.raises(ConfigError, match=r'config.json cannot be read \(JSONDecodeError.*'
                                        r'delete it to resume with this config'):
    config_validation.check_workdir(test_config, str(workdir))


def test_metadata_is_written_atomically(tmp_path, monkeypatch):
  """A write that fails mid-way (a full disk) leaves the old file whole and no temporary."""
  path = tmp_path / 'report.json'
  files.write_atomically(str(path), '{"old": 1}')

  def disk_full(_):
    raise OSError(28, 'No space left on device')
  monkeypatch.setattr(files.os, 'fsync', disk_full)
  with pytest.raises(OSError, match='No space left'):
    files.write_atomically(str(path), '{"new": 2}')
  assert path.read_text() == '{"old": 1}'
  assert os.listdir(tmp_path) == ['report.json']
