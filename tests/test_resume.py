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
from tests.helpers import write_mnist_folder

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
