"""The evaluate and sample modes over a finished workdir, and the latent figures."""

import json
import os
import shutil

import numpy as np
import pytest

from ltgans_jax.errors import ConfigError
from ltgans_jax.run import inspect as inspect_run
from ltgans_jax.run.checkpointing import CheckpointError


def test_evaluate_mode_reproduces_the_in_training_matrices(test_config, tmp_path,
                                                           reference_run):
  workdir = str(tmp_path / 'run')
  shutil.copytree(reference_run[0], workdir)
  with open(os.path.join(workdir, 'report.json')) as f:
    during_training = [r['evaluation'] for r in json.load(f)['records']]
  summaries = inspect_run.evaluate_workdir(test_config, workdir)
  with open(os.path.join(workdir, 'evaluate', 'nll_paper.json')) as f:
    saved = json.load(f)
  assert set(summaries) >= {'nll_paper', 'nll_iwae', 'fid_own'}
  for after, row in enumerate(during_training):
    np.testing.assert_allclose(
        [v for v in saved['matrix'][after] if v is not None], row['nll_paper'], rtol=1e-5)
  for name in ('interpolation_same_task', 'interpolation_across_tasks', 'traversal_digits_0-4'):
    assert os.path.getsize(os.path.join(workdir, 'evaluate', 'figures',
                                        f'final_{name}.png')) > 0
  assert os.path.exists(os.path.join(workdir, 'evaluate', 'evaluation.md'))


@pytest.mark.parametrize('network', ('teacher', 'assistant', 'student'))
def test_sample_mode_writes_npz_and_grid(test_config, tmp_path, reference_run, network):
  workdir = str(tmp_path / 'run')
  shutil.copytree(reference_run[0], workdir)
  test_config.sample.network = network
  test_config.sample.num = 6
  path = inspect_run.sample(test_config, workdir)
  images = np.load(path)['images']
  assert images.shape == (6, 28, 28, 1) and images.dtype == np.uint8
  assert os.path.getsize(path.replace('.npz', '.png')) > 0


def test_modes_explain_what_is_missing(test_config, tmp_path):
  with pytest.raises(CheckpointError, match='holds no checkpoints; train first'):
    inspect_run.evaluate_workdir(test_config, str(tmp_path))
  test_config.sample.network = 'critic'
  with pytest.raises(ConfigError, match="sample.network='critic'; method 'ltgans' has"):
    inspect_run.sample(test_config, str(tmp_path))
