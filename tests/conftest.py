"""Shared fixtures: the tiny test config and helpers to build networks and states."""

import os
import sys
import tempfile

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

# Every training run in the suite builds fresh jitted steps; a persistent compilation cache
# (shared with the subprocesses the tests start) lets identical programs compile once.
os.environ.setdefault('JAX_COMPILATION_CACHE_DIR',
                      os.path.join(tempfile.gettempdir(), 'ltgans_jax_test_compilation_cache'))
os.environ.setdefault('JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS', '0')
os.environ.setdefault('JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES', '0')

# The XLA:CPU flags every run of ``python -m ltgans_jax.main`` gets, before JAX starts here.
from ltgans_jax.cpu import xla_flags  # pylint: disable=g-import-not-at-top,wrong-import-position
xla_flags.apply_defaults()


# The tests that start real processes take minutes each: run first, they overlap the rest
# instead of leaving one xdist worker alone at the end.
SLOW_FIRST = ('test_two_processes.py', 'test_gpu_session.py', 'test_parallel.py',
              'test_reproduce.py')


def pytest_collection_modifyitems(config, items):  # pylint: disable=unused-argument
  items.sort(key=lambda item: item.path.name not in SLOW_FIRST)  # stable: order kept within


@pytest.fixture
def test_config():
  from configs import test as test_config_module  # pylint: disable=g-import-not-at-top
  return test_config_module.get_config()


@pytest.fixture(scope='session')
def reference_run(tmp_path_factory):
  """One uninterrupted 2-task run of the test config, heatmaps drawn: (workdir, final state).
  Tests copy the workdir before changing anything in it."""
  from configs import test as test_config_module  # pylint: disable=g-import-not-at-top
  from ltgans_jax import train  # pylint: disable=g-import-not-at-top
  workdir = str(tmp_path_factory.mktemp('reference') / 'run')
  config = test_config_module.get_config()
  config.eval.heatmaps = True
  final = train.train_and_evaluate(config, workdir)
  return workdir, final
