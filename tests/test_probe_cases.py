"""Issue 17's classes of weak behaviour, probed case by case: each bad input ends in one sentence
that says what to do, raised before anything is written to the workdir (or, for a disk that
fills up mid-run, naming the checkpoint the rerun resumes from, which stays whole).

Classes: config files; the workdir; dataset files; tiny datasets and evaluation sizes;
``--mode=sample`` / ``--mode=evaluate``; the workdir's metadata files; sizes that cannot fit in
memory; environment variables. Almost every case fails before any jit compilation.
"""

import errno
import gzip
import json
import os
import re
import subprocess
import sys

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

from ltgans_jax import config_validation, multihost, train
from ltgans_jax.data import datasets, formats, local, sequences
from ltgans_jax.errors import ConfigError
from ltgans_jax.methods import registry
from ltgans_jax.run import checkpointing, inspect as inspect_run
from tests.conftest import ROOT
from tests.helpers import set_config_value as _set, write_mnist_folder


@pytest.fixture(autouse=True)
def _fresh_dataset_cache():
  datasets._load_cached.cache_clear()  # pylint: disable=protected-access
  yield
  datasets._load_cached.cache_clear()  # pylint: disable=protected-access


def _refused_before_writing(config, workdir, error, pattern):
  """train_and_evaluate raises ``error`` matching ``pattern`` and leaves ``workdir`` as it was."""
  before = sorted(os.listdir(workdir)) if os.path.isdir(workdir) else None
  with pytest.raises(error, match=pattern):
    train.train_and_evaluate(config, str(workdir))
  assert (sorted(os.listdir(workdir)) if os.path.isdir(workdir) else None) == before


# ------------------------------------------------------------------------------------------
# Config files: missing, broken, raising (the command line's --config).

from ltgans_jax import main as main_module  # pylint: disable=g-import-not-at-top,wrong-import-position

CONFIG_FILES = [
    # (file name, its text or None for a missing file, the message)
    ('missing.py', None, r'--config=.*missing.py cannot be loaded \(no such file\); pass the '
                         r'path of a config file'),
    ('syntax.py', 'def get_config(:\n', r'syntax.py cannot be loaded \(line 1\): SyntaxError'),
    ('raising.py', 'def get_config():\n  raise RuntimeError("boom")\n',
     r'raising.py cannot be loaded: RuntimeError: boom; fix it, or pass another --config'),
    ('value_error.py', 'def get_config():\n  raise ValueError("bad size")\n',
     r'value_error.py cannot be loaded: ValueError: bad size; fix it'),
    ('no_function.py', 'x = 1\n', r"no_function.py cannot be loaded: AttributeError: .*has no "
                                  r"attribute 'get_config'"),
    ('returns_int.py', 'def get_config():\n  return 5\n',
     r'get_config\(\) returned int, not an ml_collections.ConfigDict'),
    ('returns_partial.py', 'import ml_collections\ndef get_config():\n'
                           '  return ml_collections.ConfigDict({"seed": 0})\n',
     r'The config lacks curl.buffer_size, .* and \d+ more keys; build it on '
     r'ltgans_jax.config_base.get_config\(\)'),
]


@pytest.mark.parametrize('name, text, pattern', CONFIG_FILES,
                         ids=[c[0] for c in CONFIG_FILES])
def test_config_file_ends_in_one_sentence(tmp_path, name, text, pattern):
  path = tmp_path / name
  if text is not None:
    path.write_text(text)
  argv = ['main', f'--config={path}', f'--workdir={tmp_path / "run"}']
  # config_flags loads every file as module 'config_config', into the one module object a
  # previous case left in sys.modules (a command line loads one file per process).
  sys.modules.pop('config_config', None)
  try:
    with pytest.raises((SystemExit, ConfigError), match=pattern):
      main_module.parse_flags(argv)
      config = main_module.loaded_config()
      config_validation.validate(config)
  finally:
    main_module.FLAGS.unparse_flags()
  assert not (tmp_path / 'run').exists()


def test_override_of_a_key_the_config_lacks(tmp_path):
  """Used to be a traceback ending in config_flags' AttributeError (a subprocess: absl defines
  the override flags once per process)."""
  result = subprocess.run(
      [sys.executable, '-m', 'ltgans_jax.main', '--config=configs/test.py',
       f'--workdir={tmp_path / "run"}', '--config.train.batchsize=8'],
      cwd=ROOT, capture_output=True, text=True, timeout=300)
  assert result.returncode != 0 and 'Traceback' not in result.stderr
  assert ('error: --config.train.batchsize is not a key of the config (batchsize; did you mean '
          '"batch_size" instead of "batchsize"?); fix the override.') in result.stderr
  assert not (tmp_path / 'run').exists()


def test_config_lacking_one_key_names_it(test_config):
  del test_config.train['batch_size']
  with pytest.raises(ConfigError, match=r'The config lacks train.batch_size; build it on'):
    config_validation.validate(test_config)


# ------------------------------------------------------------------------------------------
# The workdir: empty name, a file, wrong kinds of entries, a disk that fills during a save.

def test_empty_workdir_name_in_every_mode(test_config):
  pattern = r'--workdir is empty; name a folder for the run'
  with pytest.raises(ConfigError, match=pattern):
    train.train_and_evaluate(test_config, '')
  with pytest.raises(ConfigError, match=pattern):
    inspect_run.evaluate_workdir(test_config, '')
  with pytest.raises(ConfigError, match=pattern):
    inspect_run.sample(test_config, '')


@pytest.mark.parametrize('mode', [inspect_run.evaluate_workdir, inspect_run.sample])
def test_workdir_that_is_a_file_in_the_read_only_modes(test_config, tmp_path, mode):
  (tmp_path / 'afile').write_text('x')
  with pytest.raises(ConfigError, match=r"--workdir='.*afile' is a file, not a folder"):
    mode(test_config, str(tmp_path / 'afile'))


WRONG_KIND = [('checkpoints', False), ('eval', False), ('samples', False), ('lock.json', True),
              ('report.json', True), ('config.json', True)]


@pytest.mark.parametrize('name, make_folder', WRONG_KIND, ids=[n for n, _ in WRONG_KIND])
def test_workdir_entry_of_the_wrong_kind_is_refused_before_writing(test_config, tmp_path, name,
                                                                   make_folder):
  """A file named ``checkpoints`` used to fail the first save, after the feature network and a
  task's first steps; a folder named ``lock.json`` was 'Cannot write into --workdir'."""
  workdir = tmp_path / 'run'
  workdir.mkdir()
  if make_folder:
    (workdir / name).mkdir()
  else:
    (workdir / name).write_text('x')
  kind, other = ('folder', 'file') if make_folder else ('file', 'folder')
  _refused_before_writing(test_config, workdir, ConfigError,
                          rf'{name} is a {kind}, but the run keeps its {name} in a {other} of '
                          'that name; move it away and rerun')


def _fail_the_write(code):
  def fail(self):
    raise OSError(code, os.strerror(code))
  return fail


@pytest.mark.parametrize('code', [errno.ENOSPC, errno.EROFS])
def test_disk_full_during_an_asynchronous_save(test_config, tmp_path, monkeypatch, code):
  """Orbax writes in a background thread and re-raises its error at the next save or wait; it
  ends in one sentence naming the checkpoint the rerun resumes from, which stays whole."""
  manager = checkpointing.make_manager(test_config, str(tmp_path), [4, 4])
  tree = {'w': np.arange(4.0)}
  checkpointing.save(manager, 2, tree)
  checkpointing.finish(manager)
  monkeypatch.setattr(ocp.CheckpointManager, '_wait_for_checkpointers', _fail_the_write(code))
  checkpointing.save(manager, 4, tree)
  with pytest.raises(checkpointing.CheckpointError,
                     match=rf'An asynchronous checkpoint save into .* failed \({os.strerror(code)}'
                           r'\); free space there \(or make it writable\) and rerun the same '
                           r'command: it resumes from checkpoint 2, the newest complete one'):
    checkpointing.finish(manager)
  monkeypatch.undo()
  manager.close()
  restored = ocp.StandardCheckpointer().restore(tmp_path / 'checkpoints' / '2' / 'default')
  assert np.array_equal(restored['w'], tree['w'])


def test_disk_full_outside_a_checkpoint_is_one_sentence(tmp_path, monkeypatch):
  """A full disk while writing metrics or the report: main prints one sentence, no traceback."""
  def full(config, workdir):
    raise OSError(errno.ENOSPC, 'No space left on device', f'{workdir}/metrics.jsonl')
  monkeypatch.setattr(main_module.train, 'train_and_evaluate', full)
  try:
    main_module.parse_flags(['main', '--config=configs/test.py', f'--workdir={tmp_path}'])
    with pytest.raises(SystemExit, match=r'error: cannot write .*metrics.jsonl \(No space left '
                                         r'on device\); free space there .* rerun the same '
                                         'command'):
      main_module.main(['main'])
  finally:
    main_module.FLAGS.unparse_flags()


# ------------------------------------------------------------------------------------------
# Dataset files: damaged published files, every parser.

def _mnist_config(config, tmp_path):
  write_mnist_folder(tmp_path / 'mnist')
  write_mnist_folder(tmp_path / 'fashion_mnist')
  config.data.sequence = 'mnist_fashion'
  config.data.data_dir = str(tmp_path)
  return config


def _gzip_bytes(path, raw):
  with gzip.open(path, 'wb') as f:
    f.write(raw)


IDX_DAMAGE = [
    ('header cut after the magic', lambda p: _gzip_bytes(p, bytes([0, 0, 8, 3, 0, 0])),
     r'train-images-idx3-ubyte.gz ends inside its header \(6 of 16 bytes\): the file is '
     'truncated; download it again'),
    ('not gzipped', lambda p: p.write_bytes(gzip.decompress(p.read_bytes())),
     r'Cannot read .*train-images-idx3-ubyte.gz \(Not a gzipped file'),
    ('int16 values', lambda p: _gzip_bytes(p, bytes([0, 0, 0x0B, 1, 0, 0, 0, 1, 0, 0])),
     r'is not an unsigned-byte IDX file; download it again'),
    ('a folder in its place', lambda p: (p.unlink(), p.mkdir()),
     r'Cannot read .*train-images-idx3-ubyte.gz \(.*Is a directory'),
]


@pytest.mark.parametrize('damage, pattern', [c[1:] for c in IDX_DAMAGE],
                         ids=[c[0] for c in IDX_DAMAGE])
def test_damaged_idx_file(test_config, tmp_path, damage, pattern):
  config = _mnist_config(test_config, tmp_path)
  damage(tmp_path / 'mnist' / 'train-images-idx3-ubyte.gz')
  _refused_before_writing(config, tmp_path / 'run', local.DatasetError, pattern)


def test_gunzipped_idx_files_are_read(test_config, tmp_path):
  """MNIST copies unpacked by gunzip (or torchvision) used to be 'Missing dataset file'."""
  config = _mnist_config(test_config, tmp_path)
  for name in os.listdir(tmp_path / 'mnist'):
    path = tmp_path / 'mnist' / name
    path.with_suffix('').write_bytes(gzip.decompress(path.read_bytes()))
    path.unlink()
  tasks = sequences.build_sequence(config)
  assert tasks[0].train.images.shape == (12, 28, 28, 1)


def _write_png(path, size=8, value=128):
  from PIL import Image  # pylint: disable=g-import-not-at-top
  path.parent.mkdir(parents=True, exist_ok=True)
  Image.fromarray(np.full((size, size), value, np.uint8)).save(path)


PARSER_DAMAGE = [
    ('svhn: a text file', lambda d: (d.mkdir(), (d / 'train_32x32.mat').write_text('hello')),
     formats.load_svhn_mat, r'Cannot read .*train_32x32.mat as a MATLAB file .*download it again'),
    ('cifar: a pickled list', lambda d: (d.mkdir(), (d / 'data_batch_1').write_bytes(
        __import__('pickle').dumps([1, 2]))), formats.load_cifar10_pickles,
     r'data_batch_1 holds a list, not a CIFAR batch dict'),
    ('omniglot: no PNG', lambda d: (d / 'images_background' / 'A' / 'c1').mkdir(parents=True),
     formats.load_omniglot_folders, r'No PNG images under .*images_background'),
    ('image folder: a 0-byte jpg', lambda d: (d.mkdir(), (d / 'a.jpg').write_bytes(b'')),
     lambda d: formats.load_image_folder(d, 32), r'Cannot decode image .*a.jpg .*delete or '
                                                 'replace that file'),
    ('image folder: text named .png', lambda d: (_write_png(d / 'ok.png'),
                                                 (d / 'bad.png').write_text('not an image')),
     lambda d: formats.load_image_folder(d, 32), r'Cannot decode image .*bad.png'),
]


@pytest.mark.parametrize('damage, loader, pattern', [c[1:] for c in PARSER_DAMAGE],
                         ids=[c[0] for c in PARSER_DAMAGE])
def test_damaged_file_of_each_parser(tmp_path, damage, loader, pattern):
  folder = tmp_path / 'data'
  damage(folder)
  with pytest.raises(local.DatasetError, match=pattern):
    loader(str(folder))


# ------------------------------------------------------------------------------------------
# Tiny or empty datasets and evaluation sizes: refused before training, not after task 1.

def test_empty_test_split_is_refused_before_training(test_config, tmp_path):
  """Used to train task 1, then fail its evaluation with ZeroDivisionError."""
  config = _mnist_config(test_config, tmp_path)
  write_mnist_folder(tmp_path / 'fashion_mnist', n_train=12, n_test=0)
  _refused_before_writing(config, tmp_path / 'run', ConfigError,
                          r'Task fashion_mnist has 0 test images but its evaluation needs 2 \(two '
                          r'for the FID, eval.grid_rows=2 for the grids\)')


def test_one_test_image_is_refused_before_training(test_config, tmp_path):
  """Used to fail after training with 'features must be [N >= 2, D]'."""
  config = _mnist_config(test_config, tmp_path)
  write_mnist_folder(tmp_path / 'mnist', n_train=12, n_test=1)
  _refused_before_writing(config, tmp_path / 'run', ConfigError,
                          r'Task mnist has 1 test images but its evaluation needs 2')


def test_image_folder_too_small_for_a_test_split(test_config, tmp_path):
  """Nine images per class put floor(9 * 0.1) = 0 of them in the test split."""
  for i in range(9):
    _write_png(tmp_path / 'celeba' / f'{i}.png', value=20 * i)
    _write_png(tmp_path / 'cacd' / f'{i}.png', value=20 * i)
  _set(test_config, 'data.sequence', 'celeba_cacd')
  test_config.data.data_dir = str(tmp_path)
  test_config.data.image_size = 32
  _refused_before_writing(test_config, tmp_path / 'run', ConfigError,
                          r'Task celeba has 0 test images but its evaluation needs 2')


def test_class_split_of_an_empty_training_split(test_config, tmp_path):
  """Used to say 'data.num_tasks=2 but mnist has 0 classes; use 1 to 0'."""
  write_mnist_folder(tmp_path / 'mnist', n_train=0, n_test=5)
  test_config.data.sequence = 'class_split'
  test_config.data.data_dir = str(tmp_path)
  _refused_before_writing(test_config, tmp_path / 'run', local.DatasetError,
                          r'The training split of mnist holds no images; check its files')


EVAL_SIZES = [
    ({'eval.num_examples': 1}, r'eval.num_examples=1 is below 2: the FID needs two test images '
                               'per task'),
    ({'eval.num_examples': 4, 'eval.grid_rows': 8},
     r'eval.num_examples=4 is below 8: .* the grids eval.grid_rows=8; raise eval.num_examples '
     'or lower eval.grid_rows'),
    ({'data.fuzzy_swap_classes': (12, 13)},
     r'data.fuzzy_swap_classes=\(12, 13\); each must be a digit class 0..9'),
    ({'data.sequence': 'cifar_imagenet', 'data.imagenet_sub1': ()},
     r'data.imagenet_sub1 is empty, which would load every class'),
]


@pytest.mark.parametrize('values, pattern', EVAL_SIZES,
                         ids=[','.join(v) for v, _ in EVAL_SIZES])
def test_evaluation_sizes_and_class_lists(test_config, tmp_path, values, pattern):
  for key, value in values.items():
    _set(test_config, key, value)
  _refused_before_writing(test_config, tmp_path / 'run', ConfigError, pattern)


# ------------------------------------------------------------------------------------------
# --mode=evaluate and --mode=sample over damaged workdirs.

@pytest.fixture(scope='module')
def boundary_workdir(tmp_path_factory):
  """A workdir with task-boundary checkpoints 4 and 8 of a state of the test config's shapes
  (zeros) and its config.json (no training: the cases fail at the restore)."""
  from configs import test as test_config_module  # pylint: disable=g-import-not-at-top
  config = test_config_module.get_config()
  workdir = tmp_path_factory.mktemp('boundary') / 'run'
  shapes = jax.eval_shape(registry.build(config).init_state, jax.random.key(config.seed))
  state = jax.tree_util.tree_map(lambda leaf: np.zeros(leaf.shape, leaf.dtype), shapes)
  manager = checkpointing.make_manager(config, str(workdir), [4, 4])
  for step in (4, 8):
    checkpointing.save(manager, step, state)
  checkpointing.finish(manager)
  manager.close()
  config_validation.record_config(config, str(workdir))
  return workdir


def _copy(workdir, tmp_path):
  import shutil  # pylint: disable=g-import-not-at-top
  target = tmp_path / 'run'
  shutil.copytree(workdir, target)
  return target


def _listing(folder):
  return sorted(os.path.relpath(os.path.join(d, f), folder)
                for d, _, fs in os.walk(folder) for f in fs)


def test_evaluate_with_a_damaged_boundary_checkpoint(test_config, tmp_path, boundary_workdir):
  """Used to end in orbax's JSONDecodeError, after training the feature network."""
  workdir = _copy(boundary_workdir, tmp_path)
  files = [os.path.join(d, f) for d, _, fs in os.walk(workdir / 'checkpoints' / '4') for f in fs]
  biggest = max(files, key=os.path.getsize)
  with open(biggest, 'r+b') as f:  # a save cut short by a crash
    f.truncate(os.path.getsize(biggest) // 3)
  before = _listing(workdir)
  with pytest.raises(checkpointing.CheckpointError,
                     match=r'The checkpoint at the end of task 1 \(step 4\) cannot be restored '
                           r'.*restore that step folder from a backup'):
    inspect_run.evaluate_workdir(test_config, str(workdir))
  assert _listing(workdir) == before


@pytest.mark.parametrize('mode, pattern', [
    (inspect_run.evaluate_workdir, r'The checkpoint at the end of task 1 \(step 4\) holds '
                                   r'networks of other sizes than this config'),
    (inspect_run.sample, r'The checkpoints in .* hold networks of other sizes than this config '
                         r'.*pass the config that wrote them'),
], ids=['evaluate', 'sample'])
def test_modes_with_another_config_and_no_config_json(test_config, tmp_path, boundary_workdir,
                                                      mode, pattern):
  """Used to be a raw orbax ValueError (evaluate) or 'move that folder away to start afresh'
  (sample, and a training run): advice that discards good checkpoints."""
  workdir = _copy(boundary_workdir, tmp_path)
  (workdir / 'config.json').unlink()
  test_config.model.generator_width = 8
  before = _listing(workdir)
  with pytest.raises(checkpointing.CheckpointError, match=pattern):
    mode(test_config, str(workdir))
  assert _listing(workdir) == before


@pytest.mark.parametrize('mode', [inspect_run.evaluate_workdir, inspect_run.sample,
                                  train.train_and_evaluate])
def test_damaged_feature_network_file(test_config, tmp_path, mode):
  workdir = tmp_path / 'run'
  (workdir / 'checkpoints').mkdir(parents=True)
  (workdir / 'feature_net.msgpack').write_bytes(b'\x00garbage')
  before = _listing(workdir)
  with pytest.raises(checkpointing.CheckpointError,
                     match=r'feature_net.msgpack is damaged \(.*\); delete it and the run trains '
                           'the FID feature network afresh'):
    mode(test_config, str(workdir))
  assert _listing(workdir) == before


@pytest.mark.parametrize('after_task', [1.0, True, [0]])
def test_api_after_task_of_another_type_is_refused(boundary_workdir, after_task):
  """after_task=1.0 used to end in 'TypeError: list indices must be integers or slices, not
  float' at the checkpoint lookup (issue 32)."""
  from ltgans_jax import api  # pylint: disable=g-import-not-at-top
  with pytest.raises(ConfigError, match=rf'after_task={re.escape(repr(after_task))} is a '
                                        rf'{type(after_task).__name__}; pass a task index \(an '
                                        r'int such as 1\) or a task name\.'):
    api.Run.open(str(boundary_workdir), after_task=after_task)


# ------------------------------------------------------------------------------------------
# The workdir's metadata files.

REPORTS = [
    ('truncated', '{"tasks": [', r'report.json cannot be read \(JSONDecodeError'),
    ('other fields', json.dumps({'tasks': [], 'records': [{'x': 1}]}),
     r'report.json cannot be read \(TypeError'),
    ('no records', json.dumps({'tasks': []}), r'report.json cannot be read \(KeyError'),
]


@pytest.mark.parametrize('text, pattern', [r[1:] for r in REPORTS], ids=[r[0] for r in REPORTS])
def test_damaged_report_json_is_refused_before_the_lock(test_config, tmp_path, text, pattern):
  """Used to end in a raw JSONDecodeError after the lock, the restore and config.json."""
  workdir = tmp_path / 'run'
  workdir.mkdir()
  (workdir / 'report.json').write_text(text)
  _refused_before_writing(test_config, workdir, ConfigError,
                          pattern + r'.*restore it, or delete it')


def test_inception_weights_missing_or_damaged(test_config, tmp_path):
  """Used to raise FileNotFoundError / a pickle error after the lock and config.json."""
  test_config.eval.inception_weights = str(tmp_path / 'nowhere.pth')
  _refused_before_writing(test_config, tmp_path / 'run', ConfigError,
                          r"eval.inception_weights='.*nowhere.pth': no such file")
  (tmp_path / 'bad.pth').write_bytes(b'not a torch file')
  test_config.eval.inception_weights = str(tmp_path / 'bad.pth')
  _refused_before_writing(test_config, tmp_path / 'run', ConfigError,
                          r"eval.inception_weights='.*bad.pth' cannot be read \(.*\); use "
                          "pytorch-fid's pt_inception")


def test_a_feature_net_cache_that_is_a_file_is_refused(test_config, tmp_path):
  (tmp_path / 'cache').write_text('a file')
  test_config.eval.feature_net_cache = str(tmp_path / 'cache')
  _refused_before_writing(test_config, tmp_path / 'run', ConfigError,
                          r"eval.feature_net_cache='.*cache' is a file; name a folder")


# ------------------------------------------------------------------------------------------
# Sizes that cannot fit in memory: measured with jax.eval_shape, refused before allocating.

@pytest.mark.parametrize('key, value, pattern', [
    ('model.generator_width', 10 ** 6, r"This run would hold about .* GB at its peak \(the "
                                       r"networks' parameters and optimiser state, .* GB, .*\), "
                                       r"more than the .* GB of (the host's RAM|this process's "
                                       r'cgroup memory limit); lower '),
    ('vae.width', 10 ** 6, r'This run would hold about .* GB at its peak'),
    ('sample.num', 10 ** 12, r'sample.num=1000000000000 needs about .* GB for its images'),
], ids=['generator_width', 'vae_width', 'sample_num'])
def test_sizes_that_cannot_fit_in_memory(test_config, tmp_path, key, value, pattern):
  _set(test_config, key, value)
  _refused_before_writing(test_config, tmp_path / 'run', ConfigError, pattern)


# ------------------------------------------------------------------------------------------
# Environment variables: the multi-host variables and the JAX backend.

ENVIRONMENTS = [
    ({'JAX_COORDINATOR_ADDRESS': 'h:1234', 'JAX_NUM_PROCESSES': '2'},
     r'JAX_COORDINATOR_ADDRESS=h:1234 with only one of JAX_NUM_PROCESSES and JAX_PROCESS_ID set'),
    ({'JAX_COORDINATOR_ADDRESS': 'h:1234', 'JAX_NUM_PROCESSES': '2', 'JAX_PROCESS_ID': '2'},
     r'JAX_PROCESS_ID=2 with JAX_NUM_PROCESSES=2; the id must lie in 0..1'),
    ({'JAX_COORDINATOR_ADDRESS': 'h:1234', 'JAX_NUM_PROCESSES': 'two', 'JAX_PROCESS_ID': '0'},
     r"JAX_NUM_PROCESSES='two' is not a whole number"),
]


@pytest.mark.parametrize('environ, pattern', ENVIRONMENTS,
                         ids=['missing id', 'id out of range', 'not a number'])
def test_bad_multi_host_variables(environ, pattern, monkeypatch):
  monkeypatch.setattr(jax.distributed, 'initialize', lambda **kw: pytest.fail('initialized'))
  with pytest.raises(ConfigError, match=pattern):
    multihost.initialize_from_environment(environ)


@pytest.mark.parametrize('environ, expected', [
    ({'SLURM_JOB_ID': '7'}, None),  # a shell inside salloc: one process
    ({'SLURM_JOB_ID': '7', 'SLURM_STEP_NODELIST': 'n1', 'SLURM_NTASKS': '1', 'SLURM_PROCID': '0',
      'SLURM_LOCALID': '0'}, None),  # a one-task srun step
    ({'SLURM_JOB_ID': '7', 'SLURM_STEP_NODELIST': 'n[1-2]', 'SLURM_NTASKS': '2',
      'SLURM_PROCID': '1', 'SLURM_LOCALID': '0'}, {}),
    ({'JAX_COORDINATOR_ADDRESS': 'h:1', 'JAX_NUM_PROCESSES': '4', 'JAX_PROCESS_ID': '3'},
     {'num_processes': 4, 'process_id': 3}),
], ids=['salloc shell', 'one-task step', 'two-task step', 'address and counts'])
def test_multi_host_variables_that_work(environ, expected):
  """SLURM_JOB_ID alone used to call jax.distributed.initialize, which then failed with
  'coordinator_address should be defined'; JAX_NUM_PROCESSES / JAX_PROCESS_ID were ignored."""
  assert multihost.distributed_arguments(environ) == expected


def test_failed_distributed_start_is_one_sentence(monkeypatch):
  def initialize(**kwargs):
    del kwargs
    raise ValueError('Number of processes must be defined.')
  monkeypatch.setattr(jax.distributed, 'initialize', initialize)
  with pytest.raises(ConfigError, match=r'jax.distributed.initialize failed \(Number of '
                                        r'processes must be defined.\); set JAX_COORDINATOR_'):
    multihost.initialize_from_environment({'JAX_COORDINATOR_ADDRESS': 'h:1234'})


@pytest.mark.parametrize('variable, value, pattern', [
    ('JAX_PLATFORMS', 'cuda', "JAX cannot start the backend JAX_PLATFORMS='cuda' asks for"),
    ('XLA_FLAGS', '--xla_no_such_flag=1', 'Unknown flag in XLA_FLAGS: --xla_no_such_flag=1'),
], ids=['JAX_PLATFORMS', 'XLA_FLAGS'])
def test_backend_variables_end_before_anything_is_written(tmp_path, variable, value, pattern):
  environ = {**os.environ, variable: value}
  result = subprocess.run(
      [sys.executable, '-m', 'ltgans_jax.main', '--config=configs/test.py',
       f'--workdir={tmp_path / "run"}'], cwd=ROOT, env=environ, capture_output=True, text=True,
      timeout=300)
  assert result.returncode != 0
  assert pattern in result.stderr and 'Traceback' not in result.stderr
  assert not (tmp_path / 'run').exists()



# ------------------------------------------------------------------------------------------
# Issue 32: test sets that lack a class; XLA_FLAGS and JAX_ENABLE_X64 before JAX starts.

def test_task_whose_test_set_lacks_classes_is_named_before_training(test_config, tmp_path,
                                                                    caplog):
  """Five MNIST test images hold classes 0..4 only; the evaluation used to measure those
  without a word, a different metric from a run with a full test set."""
  config = _mnist_config(test_config, tmp_path)
  write_mnist_folder(tmp_path / 'fashion_mnist', n_train=12, n_test=10)
  with caplog.at_level('WARNING', logger='ltgans_jax.data.sequences'):
    sequences.build_sequence(config)
  warnings = [r.getMessage() for r in caplog.records if 'has no test images of' in r.getMessage()]
  assert warnings == ['Task mnist has no test images of classes 5, 6, 7, 8, 9, which it trains '
                      'on, so its evaluation measures only its other classes; add test images of '
                      'those classes to compare it with runs that measure them all.']


def test_class_disjoint_test_set_is_by_design():
  """Omniglot's test set holds other characters than its training set, on purpose."""
  def task(train_labels, test_labels):
    split = lambda labels: local.SplitArrays(np.zeros((len(labels), 1)), np.asarray(labels))
    return sequences.Task('t', split(train_labels), split(test_labels))
  assert sequences.classes_missing_from_test(task([0, 1], [2, 3])) == []
  assert sequences.classes_missing_from_test(task([0, 1, 2], [1])) == [0, 2]
  assert sequences.classes_missing_from_test(task([0, 1], [1, 0, 5])) == []


def _main(tmp_path, environ, code=None):
  """``python -m ltgans_jax.main`` on the test config (or ``code`` run with ``python -c``)."""
  command = ['-c', code] if code else ['-m', 'ltgans_jax.main', '--config=configs/test.py',
                                       f'--workdir={tmp_path / "run"}']
  return subprocess.run([sys.executable, *command], cwd=ROOT, env={**os.environ, **environ},
                        capture_output=True, text=True, timeout=300)


BAD_XLA_FLAGS = [
    ('--xla_force_host_platform_device_count=abc',
     "error: XLA refuses your flag --xla_force_host_platform_device_count=abc in XLA_FLAGS "
     "(Couldn't interpret value abc for flag xla_force_host_platform_device_count); fix or remove "
     'it and rerun (the flag ltgans_jax adds, --xla_cpu_experimental_ynn_fusion_type=, is not the '
     'problem).'),
    ('--xla_cpu_experimental_ynn_fusion_type=bogus',
     'error: XLA refuses your flag --xla_cpu_experimental_ynn_fusion_type=bogus in XLA_FLAGS '
     "(Illegal value for --xla_cpu_experimental_ynn_fusion_type 'LIBRARY_FUSION_TYPE_BOGUS'); "
     'fix or remove it and rerun.'),
    ('--xla_force_host_platform_device_count 4',
     'error: XLA refuses your flag --xla_force_host_platform_device_count in XLA_FLAGS (Unknown '
     'flag in XLA_FLAGS: --xla_force_host_platform_device_count); write it as --name=value (no '
     'space) or remove it and rerun (the flag ltgans_jax adds, '
     '--xla_cpu_experimental_ynn_fusion_type=, is not the problem).'),
    ('xla_force_host_platform_device_count=4',
     "error: XLA_FLAGS='xla_force_host_platform_device_count=4' does not start with --, so XLA "
     'reads it as the name of a file of flags and cannot open that file; write the flags as '
     '--name=value, or name a readable file.'),
]


@pytest.mark.parametrize('value, message', BAD_XLA_FLAGS,
                         ids=['bad number', 'bad value of our flag', 'a space', 'no dashes'])
def test_bad_xla_flags_name_the_users_flag(tmp_path, value, message):
  """Used to be XLA's check failure and a usage dump of every flag, with the package's own
  flag appended to the value shown as if the user had typed it."""
  result = _main(tmp_path, {'XLA_FLAGS': value})
  assert result.returncode != 0
  assert message in result.stderr
  assert 'usage:' not in result.stderr and 'Check failed' not in result.stderr
  assert not (tmp_path / 'run').exists()


def test_xla_refusing_our_own_flag_is_told_apart(monkeypatch):
  """Were a jaxlib to refuse the flag the package adds, the user's flags are not blamed."""
  from ltgans_jax.cpu import xla_flags  # pylint: disable=g-import-not-at-top
  monkeypatch.setattr(xla_flags, 'CPU_FLAGS', ('--xla_no_such_flag_of_ours=1',))
  with pytest.raises(ConfigError, match=r'XLA refuses the flag ltgans_jax adds to XLA_FLAGS, '
                                        r'--xla_no_such_flag_of_ours=1 \(Unknown flag in '
                                        r"XLA_FLAGS: --xla_no_such_flag_of_ours=1\), not yours "
                                        r"\('--xla_force_host_platform_device_count=2'\); set "
                                        r'LTGANS_XLA_CPU_DEFAULTS=0'):
    xla_flags.check_flags({**os.environ,
                           'XLA_FLAGS': '--xla_force_host_platform_device_count=2'})


def test_jax_enable_x64_runs_in_float32(tmp_path):
  """Used to end in 'lax.conv_general_dilated requires arguments to have the same dtypes, got
  float32, float64' when the networks were built. ``main.run`` up to the start of training,
  which here builds the networks and one generator sample."""
  code = ('import sys, jax\n'
          'from ltgans_jax import main, train\n'
          'from ltgans_jax.methods import registry\n'
          'def start(config, workdir):\n'
          '  method = registry.build(config)\n'
          '  state = method.init_state(jax.random.key(0))\n'
          '  print("dtype", method.sample(state, "assistant", jax.random.key(1), 2).dtype)\n'
          'train.train_and_evaluate = start\n'
          f'sys.argv = ["main", "--config=configs/test.py", "--workdir={tmp_path / "run"}"]\n'
          'main.run()\n')
  result = _main(tmp_path, {'JAX_ENABLE_X64': '1'}, code)
  assert result.returncode == 0, result.stderr[-2000:]
  assert 'dtype float32' in result.stdout
  assert ('JAX_ENABLE_X64 is set, but ltgans_jax computes and checkpoints in float32, so this run '
          "turns JAX's 64-bit mode off and runs in float32.") in result.stderr

def test_a_sample_killed_mid_write_leaves_no_npz(tmp_path, boundary_workdir):
  """A real SIGKILL while ``--mode=sample`` writes its .npz used to leave a 0-byte
  samples_*.npz for good; it is written whole or not at all."""
  workdir = _copy(boundary_workdir, tmp_path)
  script = ('import os, signal, zipfile\n'
            'from configs import test\n'
            'from ltgans_jax.run import inspect as inspect_run\n'
            'zipfile.ZipFile.open = lambda *a, **k: os.kill(os.getpid(), signal.SIGKILL)\n'
            f'inspect_run.sample(test.get_config(), {str(workdir)!r})\n')
  env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get('PYTHONPATH', ''))
  killed = subprocess.run([sys.executable, '-c', script], cwd=ROOT, env=env, check=False,
                          capture_output=True, text=True, timeout=120)
  assert killed.returncode == -9, killed.stderr[-2000:]
  assert not [name for name in os.listdir(workdir) if 'samples_' in name]


def test_a_run_that_fits_only_without_its_step_s_temporaries_is_refused(test_config,
                                                                        monkeypatch):
  """Used to count 4 copies of the state and a fixed runtime, nothing for a step's activations
  and gradients; now XLA's own count of the heaviest step is added (more than the state it
  takes in), and a memory one byte short of the total is refused in one sentence."""
  from ltgans_jax import memory_limit  # pylint: disable=g-import-not-at-top
  method = registry.build(test_config)
  state, held = config_validation.held_bytes(test_config, method, 2)
  runtime = config_validation.CPU_RUNTIME_BYTES if jax.default_backend() == 'cpu' else 0
  assert held > (config_validation.STATE_COPIES_BESIDE_THE_STEP + 1) * state + runtime
  monkeypatch.setattr(memory_limit, 'memory', lambda: (held - 1, "the host's RAM"))
  with pytest.raises(ConfigError, match=r'^This run would hold about .* GB at its peak \(.*a '
                                        r"training step's activations and gradients.*\), more "
                                        r"than the .* GB of the host's RAM; lower "
                                        r'train.num_seeds, train.batch_size, .*\.$'):
    config_validation.check_memory(test_config, method, 2)
  monkeypatch.setattr(memory_limit, 'memory', lambda: (held, "the host's RAM"))
  config_validation.check_memory(test_config, method, 2)
