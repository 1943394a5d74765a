"""The Python API (``ltgans_jax/api.py``) and configs by name (``named_configs``,
``--config=NAME``).

The README's example runs on a copy of the session's reference run (the test config, trained
once for the whole suite): ``api.train`` resumes that finished workdir and trains nothing, so
the example costs a restore, samples and one ``evaluate``, not another training run.
"""

import configparser
import os
import re
import shutil
import sys

import numpy as np
import pytest
import setuptools

from ltgans_jax import api, main as main_module, named_configs
from ltgans_jax.errors import ConfigError
from ltgans_jax.run import inspect as inspect_run
from ltgans_jax.run.checkpointing import CheckpointError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# The README's example, verbatim (``test_readme_shows_the_example`` keeps the two the same).
EXAMPLE = """\
import matplotlib.pyplot as plt
from ltgans_jax import api

config = api.load_config('test')  # a name (api.config_names()) or a file's path
run = api.train(config, 'workdirs/api_demo')  # resumes; trains nothing once finished
run = api.Run.open('workdirs/api_demo')  # later: the config comes from its config.json
images = run.sample('assistant', num=16, seed=0)  # uint8 [16, 28, 28, 1]
z = run.encode(run.tasks[0].test.images[:8])  # the Student's posterior means [8, 4]
reconstructions = run.decode(z)  # uint8 [8, 28, 28, 1]
first = api.Run.open('workdirs/api_demo', after_task=0)  # the networks after task 1
results = run.evaluate()  # metric -> {'matrix': [2, 2] after x on, 'summary': ...}
print(run.task_names, results['nll_iwae']['matrix'], run.report['forgetting']['fid_own'])
plt.imshow(api.image_grid(images), cmap='gray')
plt.axis('off')
plt.savefig('samples.png')
"""


@pytest.fixture(scope='module')
def workdir(reference_run, tmp_path_factory):
  """A copy of the reference run (test config, two tasks of 4 steps) as workdirs/api_demo."""
  root = tmp_path_factory.mktemp('api')
  shutil.copytree(reference_run[0], root / 'workdirs' / 'api_demo')
  return root / 'workdirs' / 'api_demo'


@pytest.fixture(scope='module')
def run(workdir):
  return api.Run.open(str(workdir))


def test_readme_example_runs(workdir, monkeypatch):
  monkeypatch.chdir(workdir.parent.parent)
  monkeypatch.setenv('MPLBACKEND', 'Agg')
  names = {}
  exec(compile(EXAMPLE, 'README example', 'exec'), names)  # pylint: disable=exec-used
  assert names['images'].shape == (16, 28, 28, 1) and names['images'].dtype == np.uint8
  assert names['z'].shape == (8, 4) and np.all(np.isfinite(names['z']))
  assert names['reconstructions'].shape == (8, 28, 28, 1)
  assert names['run'].step == 8 and names['first'].step == 4
  matrix = names['results']['nll_iwae']['matrix']
  assert matrix.shape == (2, 2) and np.isnan(matrix[0, 1]) and np.isfinite(matrix[1]).all()
  assert os.path.getsize('samples.png') > 0


def test_readme_shows_the_example():
  with open(os.path.join(ROOT, 'README.md')) as f:
    readme = f.read()
  assert EXAMPLE in readme, 'README.md\'s API example differs from tests/test_api.py EXAMPLE'


# ------------------------------------------------------------------------------------------
# Configs by name.

def test_a_name_and_its_path_give_the_same_config():
  by_name = api.load_config('test')
  by_path = api.load_config(os.path.join(ROOT, 'configs', 'test.py'))
  assert by_name.to_dict() == by_path.to_dict()
  assert named_configs.resolve('msfo') == os.path.join(named_configs.folder(), 'msfo.py')
  assert {'msfo', 'mnist_fashion_cpu', 'test', 'demo'} <= set(api.config_names())
  # Paths are kept as given, existing or not (the loader says what is missing).
  assert named_configs.resolve('configs/msfo.py') == 'configs/msfo.py'
  assert named_configs.resolve('elsewhere/x.py') == 'elsewhere/x.py'


def test_the_packaged_configs_are_the_repository_files():
  """setup.cfg maps ltgans_jax.configs onto configs/: one set of files, importable by name."""
  from ltgans_jax.configs import msfo  # pylint: disable=g-import-not-at-top
  assert os.path.samefile(msfo.__file__, os.path.join(ROOT, 'configs', 'msfo.py'))


def test_setup_cfg_lists_every_package():
  """find: cannot see the mapped configs folder, so setup.cfg lists the packages: a new
  subpackage must be added there, or the installed package would lack it."""
  parser = configparser.ConfigParser()
  parser.read(os.path.join(ROOT, 'setup.cfg'))
  listed = parser['options']['packages'].split()
  found = setuptools.find_packages(ROOT, include=['ltgans_jax', 'ltgans_jax.*'])
  assert sorted(listed) == sorted(found + ['ltgans_jax.configs'])
  assert parser['options']['package_dir'].split() == ['ltgans_jax.configs', '=', 'configs']


def test_unknown_name_lists_the_names():
  with pytest.raises(ConfigError, match=r"^config 'msfoo' is neither a file nor a packaged "
                                        r"config; pass a config file's path or one of these "
                                        r'names: authors_mnist_fashion, .*msfo, .*test\.$'):
    api.load_config('msfoo')


def test_overrides_are_checked():
  config = api.load_config('test', {'train.steps_per_task': 2}, seed=3)
  assert config.train.steps_per_task == 2 and config.seed == 3
  with pytest.raises(ConfigError, match=r"'train.step_per_task' is not a key of the config "
                                        r'\(did you mean train.steps_per_task'):
    api.load_config('test', {'train.step_per_task': 2})
  with pytest.raises(ConfigError, match=r"train.batch_size='8' has type str, but the config "
                                        r'holds a value of type int there; pass one of that '
                                        r'type\.'):
    api.load_config('test', {'train.batch_size': '8'})
  with pytest.raises(AttributeError):  # locked: a misspelt field is not added silently
    config.train.stepz = 1


def _parse(argv):
  sys.modules.pop('config_config', None)  # config_flags loads every file as this module
  main_module.parse_flags(['main', *argv])
  return main_module.loaded_config()


@pytest.mark.parametrize('argv', [['--config=test'], ['--config', 'test'],
                                  [f'--config={os.path.join(ROOT, "configs", "test.py")}']],
                         ids=['name', 'name_as_next_argument', 'path'])
def test_command_line_takes_a_name_or_a_path(argv, tmp_path):
  try:
    config = _parse([*argv, f'--workdir={tmp_path}'])
    assert config.to_dict() == api.load_config('test').to_dict()
  finally:
    main_module.FLAGS.unparse_flags()


def test_command_line_unknown_name_is_one_sentence(tmp_path):
  try:
    with pytest.raises(SystemExit, match=r"^error: config 'nope' is neither a file nor a "
                                         r'packaged config; .* names: .*, test\.$'):
      _parse(['--config=nope', f'--workdir={tmp_path}'])
  finally:
    main_module.FLAGS.unparse_flags()


def test_command_line_missing_path_names_the_packaged_configs(tmp_path):
  try:
    with pytest.raises(ConfigError, match=r'missing.py cannot be loaded \(no such file\); pass '
                                          r'the path of a config file such as configs/test.py, '
                                          r'or one of these packaged config names: .*msfo'):
      _parse([f'--config={tmp_path / "missing.py"}', f'--workdir={tmp_path}'])
  finally:
    main_module.FLAGS.unparse_flags()


# ------------------------------------------------------------------------------------------
# Run: reading a workdir.

def test_config_read_back_from_the_workdir(workdir, test_config):
  test_config.eval.heatmaps = True  # as the reference run trained (tests/conftest.py)
  assert api.read_config(str(workdir)).to_dict() == test_config.to_dict()


def test_samples_are_those_of_mode_sample(run):
  """``Run.sample`` draws what ``--mode=sample`` writes for the same network, number, seed."""
  path = inspect_run.sample(run.config, run.workdir)
  with np.load(path) as written:
    expected = written['images']
  assert np.array_equal(run.sample(num=len(expected), seed=run.config.sample.seed), expected)


def test_encode_accepts_uint8_and_floats(run):
  images = run.tasks[1].test.images[:4]
  means, log_vars = run.encode(images, with_log_var=True)
  assert means.shape == log_vars.shape == (4, run.config.vae.latent_dim)
  np.testing.assert_allclose(run.encode(images / 127.5 - 1), means, rtol=1e-5, atol=1e-6)
  assert run.reconstruct(images).shape == images.shape


def test_run_errors_are_one_sentence(run, tmp_path):
  cases = [
      (lambda: run.sample('critic'), r"network='critic'; method 'ltgans' samples teacher, "
                                     r'assistant, student\.'),
      (lambda: run.sample(num=0), r'num=0; pass a positive number of images\.'),
      (lambda: run.encode(np.zeros((2, 32, 32, 1), np.uint8)),
       r'images have shape \(2, 32, 32, 1\); pass \[N, 28, 28, 1\]'),
      (lambda: run.encode(np.full((2, 28, 28, 1), 3.0)), r'float images range over \[3, 3\]'),
      (lambda: run.decode(np.zeros((2, 5))), r'z has shape \(2, 5\); pass latents of shape '
                                             r'\[N, 4\]\.'),
      (lambda: api.Run.open(run.workdir, after_task=2), r'after_task=2 is out of range for 2 '
                                                        r'tasks'),
      (lambda: api.Run.open(run.workdir, after_task='svhn'), r"after_task='svhn' is not a task "
                                                             r'of this run'),
      (lambda: api.Run.open(str(tmp_path)), r'config.json does not exist; pass the config that '
                                            r'trained the run'),
  ]
  for call, pattern in cases:
    with pytest.raises(ConfigError, match=pattern):
      call()
  with pytest.raises(CheckpointError, match=r'holds no checkpoints'):
    api.Run.open(str(tmp_path), config='test')


def test_boundary_checkpoint_by_name(run):
  first = api.Run.open(run.workdir, after_task=run.task_names[0])
  assert (first.step, int(first.state.task)) == (4, 0)
  assert re.search(r"at step 4: task 1 step 4\)$", repr(first))
  assert first.matrices()['nll_paper']['matrix'].shape == (2, 2)


# ------------------------------------------------------------------------------------------
# Issue 32: arguments that used to end in a TypeError, a ZeroDivisionError or a misleading
# sentence; none needs a trained run.

def test_open_a_missing_workdir_says_so(tmp_path):
  """Used to say '.../config.json does not exist', as if only that file were missing."""
  missing = str(tmp_path / 'no_such_run')
  for config in (None, 'test'):
    with pytest.raises(ConfigError, match=rf'The workdir {re.escape(missing)} does not exist, so '
                                          r'it holds no run; pass the --workdir a training run '
                                          r'wrote'):
      api.Run.open(missing, config=config)


def test_encode_and_decode_of_an_empty_batch(test_config, tmp_path):
  """encode() of an empty batch used to end in a ZeroDivisionError."""
  import jax  # pylint: disable=g-import-not-at-top
  from ltgans_jax.methods import registry  # pylint: disable=g-import-not-at-top
  method = registry.build(test_config)
  run = api.Run(str(tmp_path), test_config, method, [], method.init_state(jax.random.key(0)), 0)
  with pytest.raises(ConfigError, match=r'images have shape \(0, 28, 28, 1\), an empty batch; '
                                        r'pass at least one image\.'):
    run.encode(np.zeros((0, 28, 28, 1), np.uint8))
  with pytest.raises(ConfigError, match=r'z has shape \(0, 4\), an empty batch; pass at least '
                                        r'one latent\.'):
    run.decode(np.zeros((0, 4)))
  assert run.encode(np.zeros((1, 28, 28, 1), np.uint8)).shape == (1, 4)


def test_api_refuses_64_bit_mode(tmp_path):
  """The API shares JAX's settings with the caller, so it says so instead of changing them."""
  import jax  # pylint: disable=g-import-not-at-top
  jax.config.update('jax_enable_x64', True)
  try:
    with pytest.raises(ConfigError, match=r"JAX's 64-bit mode is on .*; call "
                                          r"jax.config.update\('jax_enable_x64', False\)"):
      api.Run.open(str(tmp_path))
  finally:
    jax.config.update('jax_enable_x64', False)
