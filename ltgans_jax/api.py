"""The Python API, for notebooks and scripts: what the command line does, with arrays.

    from ltgans_jax import api

    config = api.load_config('test', {'train.steps_per_task': 4})  # a name or a file's path
    run = api.train(config, 'workdirs/api_demo')  # or: api.Run.open('workdirs/api_demo')
    images = run.sample(num=16)                   # uint8 [16, H, W, C] of the Assistant
    z = run.encode(run.tasks[0].test.images[:8])  # the Student's posterior means [8, latent]
    pictures = run.decode(z)                      # uint8 [8, H, W, C]
    results = run.evaluate()                      # metric -> forgetting matrix and summary

Training, evaluation and sampling are the command line's own functions (``train``,
``inspect_run``, ``task_eval``); this module only opens a workdir and turns arrays into the
forms a notebook wants (uint8 images, numpy latents). Progress is logged through Python's
``logging`` at INFO: ``logging.basicConfig(level=logging.INFO)`` shows it.

Errors a user can cause end in one sentence (``ConfigError``, ``CheckpointError``), as on the
command line.
"""

from __future__ import annotations

import difflib
import importlib.util
import json
import os
from typing import Any, Dict, List, Mapping, Optional, Union

import jax
import ml_collections
import numpy as np

from ltgans_jax import config_base, config_validation, durations
from ltgans_jax import named_configs, pixels, startup, train as training, viz
from ltgans_jax.errors import ConfigError
from ltgans_jax.run import checkpointing, inspect as inspect_run, seeds as seeds_lib
from ltgans_jax.run.checkpointing import CheckpointError

ConfigLike = Union[str, os.PathLike, ml_collections.ConfigDict]


def config_names() -> List[str]:
  """The names ``load_config`` and ``--config=NAME`` accept (the files of ``configs/``)."""
  return named_configs.names()


def load_config(name_or_path: Union[str, os.PathLike],
                overrides: Optional[Mapping[str, Any]] = None,
                **top_level: Any) -> ml_collections.ConfigDict:
  """A config by name (``'msfo'``, see ``config_names()``) or file path, with overrides.

  The file is read afresh on every call, so edits to it show in a notebook without a restart.

  Args:
    name_or_path: a packaged config's name or the path of a file defining ``get_config()``.
    overrides: dotted key -> value, as ``--config.a.b=value`` on the command line, e.g.
      ``{'train.steps_per_task': 100, 'data.data_dir': '/data'}``.
    **top_level: top-level keys, e.g. ``seed=1``, ``method='finetune'``.
  Returns:
    The config, locked: a misspelt key raises instead of adding a field nobody reads.
  Raises:
    ConfigError: an unknown name, a missing file, a ``get_config()`` that does not return a
      ConfigDict built on ``config_base``, or an override of a key the config lacks or with a
      value of the wrong type.
  """
  path = named_configs.resolve(os.fspath(name_or_path))
  if not os.path.isfile(path):
    raise ConfigError(f'config file {path} does not exist; pass a config file\'s path or one '
                      f'of these names: {", ".join(config_names())}.')
  config = _call_get_config(path)
  config_validation.check_keys(config)
  for dotted, value in {**(overrides or {}), **top_level}.items():
    _override(config, dotted, value)
  config.lock()
  return config


def _call_get_config(path: str) -> ml_collections.ConfigDict:
  """``get_config()`` of the file at ``path``, imported as a fresh module (not cached)."""
  stem = os.path.splitext(os.path.basename(path))[0]
  spec = importlib.util.spec_from_file_location(f'ltgans_jax_config_{stem}', path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)  # the file's own errors keep their traceback, into the file
  if not callable(getattr(module, 'get_config', None)):
    raise ConfigError(f'{path} defines no get_config(); define one returning '
                      'ltgans_jax.config_base.get_config() with your changes.')
  return module.get_config()


def _override(config: ml_collections.ConfigDict, dotted: str, value: Any) -> None:
  """Sets ``config``'s dotted key to ``value`` with ConfigDict's type checks; ConfigError for
  a key the config lacks (with the closest keys) or a value of another type."""
  *parents, leaf = dotted.split('.')
  node = config
  for part in parents:
    node = node.get(part) if isinstance(node, ml_collections.ConfigDict) else None
  if not isinstance(node, ml_collections.ConfigDict) or leaf not in node:
    close = difflib.get_close_matches(dotted, list(training.hparams(config)), 3)
    hint = f' (did you mean {" or ".join(close)}?)' if close else ''
    raise ConfigError(f'{dotted!r} is not a key of the config{hint}; fix the override.')
  try:
    node[leaf] = value
  except TypeError:
    held = type(node[leaf]).__name__
    raise ConfigError(f'{dotted}={value!r} has type {type(value).__name__}, but the config holds '
                      f'a value of type {held} there; pass one of that type.') from None


def read_config(workdir: str) -> ml_collections.ConfigDict:
  """The config a run was started with, from ``workdir/config.json``, locked.

  The values are set on ``config_base.get_base_config()``, so the types (tuples, floats) are the
  config's own, and keys added to the code since the run keep their defaults.

  Raises:
    ConfigError: the workdir holds no readable ``config.json``.
  """
  path = os.path.join(workdir, 'config.json')
  try:
    with open(path) as f:
      values = json.load(f)['config']
  except FileNotFoundError:
    raise ConfigError(f'{path} does not exist; pass the config that trained the run, e.g. '
                      f'Run.open({workdir!r}, config=api.load_config(NAME)).') from None
  except (OSError, ValueError, KeyError, TypeError) as e:
    raise ConfigError(f'{path} cannot be read ({type(e).__name__}: {str(e)[:80]}); pass the '
                      'config that trained the run with config=.') from None
  config = config_base.get_base_config()
  _set_nested(config, values)
  config.lock()
  return config


def _set_nested(node: ml_collections.ConfigDict, values: Mapping[str, Any]) -> None:
  """Sets every leaf of the nested dict ``values`` on ``node`` (new keys are added)."""
  for key, value in values.items():
    if isinstance(value, dict) and isinstance(node.get(key), ml_collections.ConfigDict):
      _set_nested(node[key], value)
    else:
      node[key] = value


def _as_config(config: ConfigLike) -> ml_collections.ConfigDict:
  return (config if isinstance(config, ml_collections.ConfigDict)
          else load_config(config))


def train(config: ConfigLike, workdir: str) -> 'Run':
  """Trains (or resumes) a run in ``workdir``, as ``--mode=train`` does, and opens it.

  Args:
    config: a config, a packaged config's name or a config file's path.
    workdir: the run's folder; a rerun with the same folder resumes from its newest checkpoint
      and trains nothing once every task is done.
  Returns:
    The finished run, opened at its newest checkpoint (``Run.open``).
  """
  startup.require_float32()
  config = _as_config(config)
  training.train_and_evaluate(config, workdir)
  return Run.open(workdir, config)


class Run:
  """A trained (or training) workdir, restored at one checkpoint, for sampling and probing.

  Attributes:
    workdir: the run's folder.
    config: its config (locked).
    method: the run's ``methods.base.LifelongMethod`` (every method: ``method.vae_view(state)``;
      the LT-GANs family: ``method.networks`` holds the modules).
    tasks: the task sequence: ``tasks[t].name``, ``tasks[t].train`` / ``.test`` with
      ``.images`` uint8 [N, H, W, C] and ``.labels`` [N].
    state: the restored state (a pytree of parameters and optimiser states).
    step: the global step of that checkpoint.
  """

  def __init__(self, workdir: str, config: ml_collections.ConfigDict, method, tasks, state,
               step: int, report_dir: Optional[str] = None):
    self.workdir, self.config, self.method = workdir, config, method
    self.tasks, self.state, self.step = tasks, state, step
    self._report_dir = report_dir or workdir  # a seed's own folder in a several-seed workdir

  @classmethod
  def open(cls, workdir: str, config: Optional[ConfigLike] = None,
           after_task: Union[int, str, None] = None,
           seed_index: Optional[int] = None) -> 'Run':
    """Restores a workdir's checkpoint; reads only (a training run may go on beside it).

    Args:
      workdir: a folder written by ``train`` or ``python -m ltgans_jax.main``.
      config: the config that trained it (a config, a name or a path); by default the one
        recorded in ``workdir/config.json``. Evaluation settings may differ from training's.
      after_task: None for the newest checkpoint, or a task (its index in ``task_names``,
        negative ones counting from the end, or its name) for the checkpoint at its end, e.g.
        0 to see what the networks held right after the first task.
      seed_index: for a workdir that trained ``train.num_seeds`` = S > 1 seeds together, the
        seed to open (0 <= k < S: seed ``config.seed + k``); the Run is then that seed's, as
        its one-seed run would be (``config.seed`` moved on by k, ``num_seeds`` 1). None (or
        0) for a one-seed workdir.
    Raises:
      ConfigError, CheckpointError: no such workdir, no config, no checkpoint, or one that
        does not fit; an ``after_task`` that is neither an int nor a name; a several-seed
        workdir without a valid ``seed_index``.
    """
    startup.require_float32()
    if after_task is not None:
      _check_task_type(after_task)
    if not os.path.exists(workdir):
      raise ConfigError(f'The workdir {workdir} does not exist, so it holds no run; pass the '
                        '--workdir a training run wrote (api.train or python -m '
                        'ltgans_jax.main).')
    config = read_config(workdir) if config is None else _as_config(config)
    # The inspect modes' own opening of a workdir (checks, restore target, checkpoint manager).
    tasks, method, template, task_steps, manager = inspect_run.open_workdir(
        config, workdir, seed_index)
    try:
      if after_task is None:
        state = checkpointing.restore_latest(manager, template, move_damaged=False)
        if state is None:
          raise CheckpointError(f'{workdir} holds no checkpoint; train it first.')
      else:
        task = _task_index(after_task, [t.name for t in tasks])
        step = durations.task_boundary_steps(task_steps)[task]
        if step not in manager.all_steps():
          raise CheckpointError(f'{workdir} has no checkpoint at the end of task '
                                f'{tasks[task].name} (step {step}); train that task first.')
        state = inspect_run.restore_boundary(manager, step, template, task)
    finally:
      manager.close()
    report_dir = workdir
    if seeds_lib.count(config) > 1:  # a leading seed axis: keep seed_index's slice
      state = seeds_lib.unstack(state, seed_index)
      report_dir = seeds_lib.seed_workdir(workdir, seed_index)
      config = seeds_lib.seed_config(config, seed_index)
      config.lock()
    step = durations.global_step(task_steps, int(state.task), int(state.task_step))
    return cls(workdir, config, method, tasks, state, step, report_dir)

  def __repr__(self):
    return (f'Run({self.workdir!r}, method={self.config.method!r}, tasks={self.task_names}, '
            f'at step {self.step}: task {int(self.state.task) + 1} step '
            f'{int(self.state.task_step)})')

  @property
  def task_names(self) -> List[str]:
    return [t.name for t in self.tasks]

  @property
  def networks(self) -> tuple:
    """The networks ``sample`` draws from ('teacher', 'assistant', 'student' for LT-GANs)."""
    return tuple(self.method.sample_networks)

  @property
  def report(self) -> Optional[dict]:
    """``report.json``: {'tasks', 'records' (one per finished task: steps, seconds, last
    metrics, its evaluation row), 'forgetting' (metric -> summary)}; None before a task ends.
    For one seed of a several-seed workdir, that seed's own (``workdir/seed<k>/``)."""
    path = os.path.join(self._report_dir, 'report.json')
    if not os.path.exists(path):
      return None
    with open(path) as f:
      return json.load(f)

  def sample(self, network: Optional[str] = None, num: int = 64, seed: int = 0) -> np.ndarray:
    """``num`` images of one network, drawn at once from ``jax.random.key(seed)``: the images
    ``--mode=sample`` writes for the same network, number and ``sample.seed``.

    Args:
      network: one of ``networks``; None for the one the FID measures (the Assistant for the
        GAN methods, the VAE decoder for ``lgm`` and ``curl``).
    Returns:
      uint8 [num, H, W, C].
    """
    network = network or self.method.fid_network()
    if network not in self.networks:
      raise ConfigError(f'network={network!r}; method {self.config.method!r} samples '
                        f'{", ".join(self.networks)}.')
    if not isinstance(num, (int, np.integer)) or num < 1:
      raise ConfigError(f'num={num!r}; pass a positive number of images.')
    return to_uint8(self.method.sample(self.state, network, jax.random.key(seed), int(num)))

  def encode(self, images: np.ndarray, with_log_var: bool = False):
    """The Student's posterior q(z | x) of ``images``.

    Args:
      images: uint8 [N, H, W, C] (as ``sample`` and ``tasks[t].test.images`` give them), or
        floats in [-1, 1].
      with_log_var: also return the posterior log-variances.
    Returns:
      means float32 [N, L] (L = ``config.vae.latent_dim``), or (means, log_vars) of [N, L].
    """
    mean, log_var = self.method.vae_view(self.state).encode(self._model_input(images))
    mean, log_var = np.asarray(mean, np.float32), np.asarray(log_var, np.float32)
    return (mean, log_var) if with_log_var else mean

  def decode(self, z: np.ndarray) -> np.ndarray:
    """The Student's mean images of latents ``z`` float [N, L] -> uint8 [N, H, W, C]."""
    z = np.asarray(z, np.float32)
    latent = self.config.vae.latent_dim
    if z.ndim != 2 or z.shape[1] != latent:
      raise ConfigError(f'z has shape {z.shape}; pass latents of shape [N, {latent}].')
    if not len(z):
      raise ConfigError(f'z has shape {z.shape}, an empty batch; pass at least one latent.')
    logits = self.method.vae_view(self.state).decode(z)
    return to_uint8(pixels.from_logits(logits))

  def reconstruct(self, images: np.ndarray) -> np.ndarray:
    """``decode(encode(images))``: uint8 [N, H, W, C] -> uint8 [N, H, W, C]."""
    return self.decode(self.encode(images))

  def _model_input(self, images) -> jax.Array:
    """uint8 or [-1, 1] images of the config's shape -> float32 [N, H, W, C] in [-1, 1]."""
    images = np.asarray(images)
    data = self.config.data
    shape = (data.image_size, data.image_size, data.channels)
    if images.ndim != 4 or images.shape[1:] != shape:
      raise ConfigError(f'images have shape {images.shape}; pass [N, {", ".join(map(str, shape))}]'
                        ' (uint8, or floats in [-1, 1]).')
    if not len(images):
      raise ConfigError(f'images have shape {images.shape}, an empty batch; pass at least one '
                        'image.')
    if images.dtype == np.uint8:
      return pixels.from_uint8(images)
    if images.size and (images.min() < -1 or images.max() > 1):
      raise ConfigError(f'float images range over [{images.min():.3g}, {images.max():.3g}]; '
                        'pass uint8 images or floats in [-1, 1].')
    return jax.numpy.asarray(images, jax.numpy.float32)

  def matrices(self) -> Dict[str, dict]:
    """The forgetting matrices training wrote after each task (``workdir/eval/``); see
    ``evaluate`` for their form."""
    return _read_matrices(os.path.join(self.workdir, 'eval'))

  def evaluate(self) -> Dict[str, dict]:
    """Measures every task-boundary checkpoint afresh with this run's ``config.eval``, as
    ``--mode=evaluate`` does (writing ``workdir/evaluate/``); slow: every NLL and sample metric
    of every row.

    Returns:
      metric -> {'metric': its title, 'task_names': [T], 'matrix': float [R, T] (row i: after
      task i; column j: on task j; NaN above the diagonal), 'summary': the forgetting
      measures (``matrices.forgetting_summary``)}.
    """
    inspect_run.evaluate_workdir(self.config, self.workdir)
    return _read_matrices(os.path.join(self.workdir, inspect_run.EVALUATE_FOLDER))


def _check_task_type(task) -> None:
  """ConfigError unless ``task`` is an int (not a bool) or a str: a float such as 1.0 is not
  a task, and rounding it could pick another checkpoint than the one meant."""
  if isinstance(task, (bool, np.bool_)) or not isinstance(task, (int, np.integer, str)):
    raise ConfigError(f'after_task={task!r} is a {type(task).__name__}; pass a task index (an '
                      'int such as 1) or a task name.')


def _task_index(task: Union[int, str], names: List[str]) -> int:
  """A task given by index (negative from the end) or by name -> its index in ``names``."""
  if isinstance(task, str):
    if task not in names:
      raise ConfigError(f'after_task={task!r} is not a task of this run; use one of {names}.')
    return names.index(task)
  if not -len(names) <= task < len(names):
    raise ConfigError(f'after_task={task} is out of range for {len(names)} tasks; use 0 to '
                      f'{len(names) - 1} or a name of {names}.')
  return task % len(names)


def _read_matrices(folder: str) -> Dict[str, dict]:
  """metric -> the record ``matrices.save_forgetting`` wrote in ``folder``, its matrix as a
  float array with NaN for the missing entries."""
  if not os.path.isdir(folder):
    return {}
  out = {}
  for name in sorted(os.listdir(folder)):
    if name.endswith('.json'):
      with open(os.path.join(folder, name)) as f:
        record = json.load(f)
      if isinstance(record, dict) and 'matrix' in record:
        record['matrix'] = np.array([[np.nan if v is None else v for v in row]
                                     for row in record['matrix']], np.float64)
        out[name[:-len('.json')]] = record
  return out


def to_uint8(images) -> np.ndarray:
  """Images in [-1, 1] [N, H, W, C] -> uint8 [N, H, W, C] (rounded, as every saved picture)."""
  return pixels.to_uint8(images)


def image_grid(images: np.ndarray, rows: Optional[int] = None) -> np.ndarray:
  """uint8 [N, H, W, C] -> one uint8 picture for ``plt.imshow``: [h, w] for grey images
  (``cmap='gray'``), [h, w, 3] for colour. ``rows`` defaults to the most square layout."""
  images = np.asarray(images)
  n = len(images)
  rows = rows or max(r for r in range(1, int(np.sqrt(n)) + 1) if n % r == 0)
  if n % rows:
    raise ConfigError(f'{n} images do not fill {rows} rows; pass a multiple of rows.')
  grid = viz.image_grid(pixels.from_uint8(images), rows)
  return grid[..., 0] if grid.shape[-1] == 1 else grid
