"""The evaluate and sample modes over a finished workdir, and the latent figures."""

import json
import os
import shutil

import numpy as np
from PIL import Image
import pytest

from ltgans_jax import viz
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
  with Image.open(path.replace('.npz', '.png')) as grid:  # 2 rows of 3, 1-pixel borders, x2
    assert grid.size == (2 * (3 * 29 + 1), 2 * (2 * 29 + 1))


def test_small_images_are_enlarged_more_in_the_pngs():
  assert [viz.display_scale(size) for size in (16, 28, 32, 64)] == [4, 2, 2, 2]


def test_modes_explain_what_is_missing(test_config, tmp_path):
  with pytest.raises(CheckpointError, match='holds no checkpoints; train first'):
    inspect_run.evaluate_workdir(test_config, str(tmp_path))
  test_config.sample.network = 'critic'
  with pytest.raises(ConfigError, match="sample.network='critic'; method 'ltgans' has"):
    inspect_run.sample(test_config, str(tmp_path))
