"""Checks a config before anything is trained or written, so a bad value ends in one clear
sentence naming the value and what is accepted."""

from __future__ import annotations

import importlib.util
import json
import math
import os
from typing import Optional, Tuple

import jax
import jax.numpy as jnp
import ml_collections

from ltgans_jax import config_base, files, losses, memory_limit, models
from ltgans_jax.cpu import backend
from ltgans_jax.errors import ConfigError
from ltgans_jax.methods import ltgans_steps, network_state, registry


def _require(condition: bool, message: str) -> None:
  if not condition:
    raise ConfigError(message)


def wandb_missing(project: str) -> Optional[str]:
  """The error sentence for ``log.wandb_project`` set without wandb installed, else None."""
  if project and importlib.util.find_spec('wandb') is None:
    return (f"log.wandb_project={project!r} needs wandb, which is not installed; pip install "
            "'ltgans-jax[wandb]', or set --config.log.wandb_project=''.")
  return None


def _numbers(config):
  """(dotted key, value) of every int or float leaf of a config."""
  return [(key, value) for key, value in config_base.flat_items(config).items()
          if isinstance(value, (int, float)) and not isinstance(value, bool)]


# Methods whose tasks k >= 2 put round(teacher_fraction * B) Teacher samples on the critic's
# real side (registry.METHODS: the 'lakd' and 'joint_mix' phases).
TEACHER_MIXING_METHODS = ('ltgans', 'no_lakd')
FIRST_TASK_MODES = ('twins', 'copy')  # gan.first_task (config_base)


def check_keys(config) -> None:
  """Every key of the base config must be present (a config file written from scratch, or one
  that deletes a key, would otherwise end in a KeyError deep inside the run)."""
  if not isinstance(config, ml_collections.ConfigDict):
    raise ConfigError(f'The config is a {type(config).__name__}, not an ml_collections.ConfigDict; '
                      'build it on ltgans_jax.config_base.get_config().')
  missing = []
  for key in config_base.flat_items(config_base.get_config()):
    try:
      _lookup(config, key)
    except (KeyError, AttributeError, TypeError):
      missing.append(key)
  if missing:
    raise ConfigError(f'The config lacks {", ".join(missing[:5])}'
                      f'{f" and {len(missing) - 5} more keys" if len(missing) > 5 else ""}; '
                      'build it on ltgans_jax.config_base.get_config() and change only the '
                      'values you need.')


def validate(config: ml_collections.ConfigDict) -> None:
  check_keys(config)
  data, train, gan, vae = config.data, config.train, config.gan, config.vae
  for key, value in _numbers(config):
    _require(math.isfinite(value), f'{key}={value}; it must be a finite number.')
  from ltgans_jax.data import datasets, sequences  # pylint: disable=g-import-not-at-top
  registry.check_name(config.method)
  _require(data.source in datasets.SOURCES,
           f'data.source={data.source!r}; use one of {datasets.SOURCES}.')
  _require(data.fuzzy_variant in sequences.FUZZY_VARIANTS,
           f'data.fuzzy_variant={data.fuzzy_variant!r}; use one of {sequences.FUZZY_VARIANTS}.')
  sizes = sorted(models.BASE_RESOLUTION)
  _require(data.image_size in sizes,
           f'data.image_size={data.image_size} is not supported; use one of {sizes}.')
  _require(data.channels in (1, 3), f'data.channels={data.channels}; use 1 or 3.')
  _require(config.model.resample in models.RESAMPLE_MODES,
           f'model.resample={config.model.resample!r}; use one of {models.RESAMPLE_MODES}.')
  _require(config.model.conv_gradients in backend.CONV_GRADIENTS,
           f'model.conv_gradients={config.model.conv_gradients!r}; use one of '
           f'{backend.CONV_GRADIENTS}.')
  _require(train.seed_batching in backend.SEED_BATCHING,
           f'train.seed_batching={train.seed_batching!r}; use one of {backend.SEED_BATCHING}.')
  _require(vae.likelihood in losses.LIKELIHOODS,
           f'vae.likelihood={vae.likelihood!r}; use one of {losses.LIKELIHOODS}.')
  _require(vae.beta > 0, f'vae.beta={vae.beta}; it must be > 0 (1 is the ELBO, eq. 5).')
  _require(vae.decoder_std > 0, f'vae.decoder_std={vae.decoder_std}; it must be > 0.')
  _require(gan.gradient_penalty_weight >= 0,
           f'gan.gradient_penalty_weight={gan.gradient_penalty_weight}; it must be >= 0 '
           '(the paper uses 10).')
  _require(0.0 <= gan.teacher_fraction <= 1.0,
           f'gan.teacher_fraction={gan.teacher_fraction}; it must lie in [0, 1].')
  _require(gan.first_task in FIRST_TASK_MODES,
           f'gan.first_task={gan.first_task!r}; use one of {FIRST_TASK_MODES}.')
  _require(gan.critic_steps >= 1, f'gan.critic_steps={gan.critic_steps}; it must be >= 1.')
  for name in ('steps_per_task', 'batch_size', 'log_every', 'checkpoint_every',
               'max_checkpoints', 'num_seeds'):
    _require(train[name] >= 1, f'train.{name}={train[name]}; it must be >= 1.')
  if not train.epochs_per_task:
    check_task_steps(config, [train.steps_per_task])
  if config.method in TEACHER_MIXING_METHODS and 0 < gan.teacher_fraction < 1:
    num_teacher = round(gan.teacher_fraction * train.batch_size)
    _require(0 < num_teacher < train.batch_size,
             f'train.batch_size={train.batch_size} with gan.teacher_fraction='
             f'{gan.teacher_fraction} puts {num_teacher} of {train.batch_size} Teacher samples '
             "on the critic's real side; use a batch of at least "
             f'{math.ceil(1 / min(gan.teacher_fraction, 1 - gan.teacher_fraction))}.')
  _require(math.isfinite(train.epochs_per_task) and train.epochs_per_task >= 0,
           f'train.epochs_per_task={train.epochs_per_task}; it must be >= 0 (0 runs '
           'train.steps_per_task steps per task).')
  _require(vae.update_schedule in ltgans_steps.STUDENT_SCHEDULES,
           f'vae.update_schedule={vae.update_schedule!r}; use one of '
           f'{ltgans_steps.STUDENT_SCHEDULES}.')
  _require(vae.replay_weight >= 0,
           f'vae.replay_weight={vae.replay_weight}; it must be >= 0 (1 is eq. 5).')
  _require(vae.updates_per_step >= 1,
           f'vae.updates_per_step={vae.updates_per_step}; it must be >= 1.')
  _require(vae.replay_from in ltgans_steps.REPLAY_SOURCES,
           f'vae.replay_from={vae.replay_from!r}; use one of {ltgans_steps.REPLAY_SOURCES}.')
  opt = config.optim
  _require(opt.gan_optimizer in network_state.GAN_OPTIMIZERS,
           f'optim.gan_optimizer={opt.gan_optimizer!r}; use one of '
           f'{network_state.GAN_OPTIMIZERS}.')
  for name in ('gan_b1', 'gan_b2', 'student_b1', 'rmsprop_decay'):
    _require(0 <= opt[name] < 1, f'optim.{name}={opt[name]}; it must lie in [0, 1).')
  for name in ('gan_learning_rate', 'student_learning_rate'):
    _require(opt[name] > 0, f'optim.{name}={opt[name]}; it must be > 0.')
  _require(0 <= opt.generator_ema_decay < 1,
           f'optim.generator_ema_decay={opt.generator_ema_decay}; it must lie in [0, 1) (0: no '
           'weight averaging; 0.999 averages over about the last 1000 generator updates).')
  _require(opt.rmsprop_eps > 0, f'optim.rmsprop_eps={opt.rmsprop_eps}; it must be > 0.')
  _require(opt.rmsprop_initial_scale >= 0,
           f'optim.rmsprop_initial_scale={opt.rmsprop_initial_scale}; it must be >= 0.')
  devices = jax.device_count()
  _require(train.batch_size % devices == 0,
           f'train.batch_size={train.batch_size} is not divisible by the {devices} devices; '
           f'use a multiple of {devices}.')
  for name in ('latent_dim', 'generator_width', 'critic_width'):
    _require(config.model[name] >= 1, f'model.{name}={config.model[name]}; it must be >= 1.')
  for name in ('latent_dim', 'width'):
    _require(vae[name] >= 1, f'vae.{name}={vae[name]}; it must be >= 1.')
  _require(config.lgm.consistency_weight >= 0,
           f'lgm.consistency_weight={config.lgm.consistency_weight}; it must be >= 0.')
  curl = config.curl
  _require(curl.max_components >= 1,
           f'curl.max_components={curl.max_components}; it must be >= 1.')
  _require(curl.buffer_size >= 1, f'curl.buffer_size={curl.buffer_size}; it must be >= 1.')
  _require(curl.expansion_threshold > 0,
           f'curl.expansion_threshold={curl.expansion_threshold}; it must be > 0 (a squared '
           'error + KL per image).')
  for name in ('expansion_steps', 'min_steps_between_expansions'):
    _require(curl[name] >= 0, f'curl.{name}={curl[name]}; it must be >= 0.')
  missing_wandb = wandb_missing(config.log.wandb_project)
  _require(missing_wandb is None, missing_wandb)
  for name in ('num_examples', 'iwae_samples', 'feature_net_steps', 'grid_rows'):
    _require(config.eval[name] >= 1, f'eval.{name}={config.eval[name]}; it must be >= 1.')
  shown = max(2, config.eval.grid_rows)
  _require(config.eval.num_examples >= shown,
           f'eval.num_examples={config.eval.num_examples} is below {shown}: the FID needs two '
           f'test images per task and the grids eval.grid_rows={config.eval.grid_rows}; raise '
           'eval.num_examples or lower eval.grid_rows.')
  weights = config.eval.inception_weights
  _require(not weights or os.path.isfile(weights),
           f'eval.inception_weights={weights!r}: no such file; give the path of pytorch-fid\'s '
           'pt_inception-2015-12-05-6726825d.pth, or leave it empty for no Inception FID.')
  cache = config.eval.get('feature_net_cache', '')
  _require(not cache or not os.path.exists(cache) or os.path.isdir(cache),
           f'eval.feature_net_cache={cache!r} is a file; name a folder for the feature '
           'networks, or leave it empty for none.')
  _require(config.sample.num >= 1, f'sample.num={config.sample.num}; it must be >= 1.')
  swaps = tuple(data.fuzzy_swap_classes)
  _require(all(isinstance(c, int) and 0 <= c <= 9 for c in swaps),
           f'data.fuzzy_swap_classes={swaps}; each must be a digit class 0..9 (the fuzzy '
           'sequences exchange one class of 10 between neighbouring datasets).')
  if data.sequence == 'cifar_imagenet':
    for name in ('imagenet_sub1', 'imagenet_sub2'):
      _require(len(data[name]) > 0, f'data.{name} is empty, which would load every class of '
               'DATA_DIR/imagenet/; name its class folders (WordNet ids).')
  for name in ('seed', 'eval.subset_seed', 'sample.seed'):
    value = _lookup(config, name)
    _require(value >= 0, f'{name}={value}; it must be >= 0.')


def check_task_steps(config: ml_collections.ConfigDict, task_steps) -> None:
  """Every task must hold at least one generator update (one per ``gan.critic_steps`` steps);
  ``task_steps``: the steps of each task (``durations.task_steps``)."""
  if config.method not in registry.GAN_METHODS:
    return
  shortest = min(task_steps)
  _require(config.gan.critic_steps <= shortest,
           f'gan.critic_steps={config.gan.critic_steps} exceeds the {shortest} '
           f'step{"s" * (shortest != 1)} of the '
           'shortest task, so its generators would never be updated; lower gan.critic_steps '
           'or lengthen the tasks.')


# Values a resumed run must share with the run that wrote the workdir: they shape the state,
# the task sequence, the data order or the checkpoint numbering.
RESUME_KEYS = ('seed', 'method', 'data.sequence', 'data.source', 'data.image_size',
               'data.channels', 'data.dataset', 'data.num_tasks', 'data.fuzzy_swap_classes',
               'data.fuzzy_variant', 'model.latent_dim', 'model.generator_width',
               'model.critic_width', 'model.resample', 'gan.first_task', 'vae.latent_dim',
               'vae.width', 'train.batch_size', 'train.steps_per_task', 'train.epochs_per_task',
               'optim.gan_optimizer', 'optim.generator_ema_decay', 'curl.max_components',
               'curl.buffer_size', 'train.num_seeds')

# The RESUME_KEYS only some methods read (the others' states and steps never see them).
GAN_ONLY_KEYS = ('model.latent_dim', 'model.generator_width', 'model.critic_width',
                 'gan.first_task', 'optim.gan_optimizer', 'optim.generator_ema_decay')
CURL_ONLY_KEYS = ('curl.max_components', 'curl.buffer_size')
# The RESUME_KEYS only some sequences read (``data.sequences``): key -> whether ``sequence``
# reads it.
SEQUENCE_KEYS = {'data.fuzzy_swap_classes': lambda sequence: 'fuzzy' in sequence,
                 'data.fuzzy_variant': lambda sequence: 'fuzzy' in sequence,
                 'data.dataset': lambda sequence: sequence == 'class_split',
                 'data.num_tasks': lambda sequence: sequence in ('class_split', 'digits_split')}


def resume_keys_read_by(method: str, sequence: str):
  """The RESUME_KEYS that ``method`` on ``sequence`` reads: a workdir written by an earlier
  version may hold another default of a key its run never reads, which must not stop it
  resuming."""
  unread = (() if method in registry.GAN_METHODS else GAN_ONLY_KEYS) + (
      () if method == 'curl' else CURL_ONLY_KEYS)
  return [key for key in RESUME_KEYS if key not in unread
          and SEQUENCE_KEYS.get(key, lambda _: True)(sequence)]


def _lookup(config, dotted: str):
  value = config
  for part in dotted.split('.'):
    value = value[part]
  return list(value) if isinstance(value, (tuple, list)) else value


def _has_checkpoints(workdir: str) -> bool:
  folder = os.path.join(workdir, 'checkpoints')
  return os.path.isdir(folder) and any(name.isdigit() for name in os.listdir(folder))


def _resume_values(config) -> dict:
  return {key: _lookup(config, key) for key in RESUME_KEYS}


def check_workdir_name(workdir: str) -> None:
  """``--workdir`` must name a folder (an empty one would scatter the run's files over the
  current directory), not a file, and what the run writes in it must be of the right kind (a
  file named ``checkpoints`` would fail the first save, after a task's work)."""
  _require(bool(workdir.strip()), '--workdir is empty; name a folder for the run, e.g. '
           '--workdir=workdirs/run1.')
  _require(not os.path.exists(workdir) or os.path.isdir(workdir),
           f'--workdir={workdir!r} is a file, not a folder; choose another --workdir.')
  for name, folder in WORKDIR_ENTRIES.items():
    path = os.path.join(workdir, name)
    _require(not os.path.exists(path) or os.path.isdir(path) == folder,
             f'{path} is a {"file" if folder else "folder"}, but the run keeps its {name} in a '
             f'{"folder" if folder else "file"} of that name; move it away and rerun.')


# What a run writes into its workdir: name -> whether it is a folder (``check_workdir_name``).
WORKDIR_ENTRIES = {'checkpoints': True, 'damaged_checkpoints': True, 'eval': True,
                   'evaluate': True, 'samples': True, 'figures': True, 'tensorboard': True,
                   'config.json': False, 'report.json': False, 'report.md': False,
                   'metrics.jsonl': False, 'lock.json': False, 'feature_net.msgpack': False,
                   'wandb': True, 'wandb_run_id.txt': False}


def check_workdir(config: ml_collections.ConfigDict, workdir: str) -> None:
  """Refuses a run whose resume-critical values differ from those in ``workdir/config.json``
  when the workdir holds checkpoints written with them; reads only. A workdir without
  checkpoints (a start that failed before its first save) holds nothing to protect. Only the
  keys the recorded method and sequence read are compared (``resume_keys_read_by``), and a key
  the record lacks counts as its default, so a workdir written by an earlier version resumes
  unless a value it was trained with differs."""
  path = os.path.join(workdir, 'config.json')
  if not os.path.exists(path) or not _has_checkpoints(workdir):
    return
  try:
    with open(path) as f:
      written = json.load(f)['resume_keys']
  except (OSError, ValueError, KeyError, TypeError) as e:
    raise ConfigError(f'{path} cannot be read ({type(e).__name__}: {str(e)[:80]}); it records '
                      'the values the checkpoints beside it were written with: restore it, or '
                      'delete it to resume with this config\'s values.') from e
  differing = _differing_resume_values(written, config)
  if differing:
    values = ', '.join(f'{k}={old!r} (this config: {new!r})' for k, old, new in differing)
    flags = ' '.join(f'--config.{k}={_flag_value(old)}' for k, old, _ in differing)
    raise ConfigError(f'{workdir} was written by an incompatible config: {values}; use another '
                      f'--workdir, or pass {flags} to resume it.')


def _differing_resume_values(written: dict, config) -> list:
  """(key, recorded value, this config's value) of every resume key the method reads whose
  values differ; a key missing from the record (written before the key existed) counts as
  recorded at its default."""
  current, defaults = _resume_values(config), _resume_values(config_base.get_base_config())
  differing = []
  for key in resume_keys_read_by(written.get('method', config.method),
                                 written.get('data.sequence', config.data.sequence)):
    old = written.get(key, defaults[key])
    if old != current[key]:
      differing.append((key, old, current[key]))
  return differing


def _flag_value(value) -> str:
  """``value`` as a --config.key=value command-line flag takes it."""
  if isinstance(value, (list, tuple)):
    return '"(' + ', '.join(map(str, value)) + (',)"' if len(value) == 1 else ')"')
  return str(value)


def record_config(config: ml_collections.ConfigDict, workdir: str) -> None:
  """Writes ``workdir/config.json`` (atomically) unless checkpoints already stand on it; call
  once the run is known to start (after ``check_workdir`` and the restore)."""
  path = os.path.join(workdir, 'config.json')
  if jax.process_index() != 0 or (os.path.exists(path) and _has_checkpoints(workdir)):
    return
  files.write_atomically(path, json.dumps(
      {'resume_keys': _resume_values(config),
       'config': json.loads(config.to_json_best_effort())}, indent=1))


def _gigabytes(count: float) -> str:
  return f'{count / 1e9:.3g} GB'


# Besides one step's buffers (``step_peak_bytes``), training holds two more copies of the state:
# the restore target (the template a checkpoint restores into, alive beside the restored state)
# and the host copy an asynchronous checkpoint save makes while the next steps run.
STATE_COPIES_BESIDE_THE_STEP = 2
# On the CPU backend the device's memory is the host's, which also holds JAX's runtime, the
# compiled programs, the data and the evaluation networks: what configs/test.py peaks at with
# networks of width 4, whose state is under 1 MB, and a margin for the spread between runs (the
# measurements are in tests/test_memory_limit.py).
CPU_RUNTIME_BYTES = 1.7e9


def _heaviest_step_candidates(method, num_tasks: int) -> list:
  """The distinct variants of the last step of a call in each task (the one that also updates
  the generators, ``method.plan.variant``): which phase holds the most is not known before
  XLA has counted (the first task's joint step holds more than the later distillation steps
  for the GANs)."""
  plan = method.plan
  last = plan.steps_per_call - 1
  return list(dict.fromkeys(plan.variant(task, last) for task in range(num_tasks)))


def step_peak_bytes(config: ml_collections.ConfigDict, method, num_tasks: int) -> int:
  """XLA's own count of what one training step holds at once, for one seed, the most over the
  tasks' steps (``_heaviest_step_candidates``): its inputs (the state and a batch [B, H, W, C]
  uint8), its outputs less those that reuse a donated input, and its temporaries (activations,
  gradients, the optimiser's updates). Each step is compiled for shapes (``jax.eval_shape``)
  and not run, so nothing the size of the state is allocated."""
  shapes = jax.eval_shape(method.init_state, jax.random.key(0))
  data = config.data
  batch = jax.ShapeDtypeStruct((config.train.batch_size, data.image_size, data.image_size,
                                data.channels), jnp.uint8)
  donated = 0 if method.plan.donate_state else ()
  peaks = []
  for variant in _heaviest_step_candidates(method, num_tasks):
    step = method.plan.step(variant, None)
    analysis = jax.jit(step, donate_argnums=donated).lower(
        shapes, batch, jax.random.key(0)).compile().memory_analysis()
    peaks.append(analysis.argument_size_in_bytes + analysis.output_size_in_bytes
                 - analysis.alias_size_in_bytes + analysis.temp_size_in_bytes)
  return max(peaks)


# Bytes of activations and gradients a training step holds per value of one batch at every
# network's width, [B, H, W, sum of widths]: more than twice what XLA counts for our networks
# (``tests/test_memory_limit.py`` checks the margin), so that a run this bound lets start
# without XLA's count is one that count would have let start too.
ACTIVATION_BYTES_PER_BATCH_VALUE = 32 * 4


def activation_bound(config: ml_collections.ConfigDict) -> int:
  """A cheap upper bound on one training step's activations and gradients, every seed's."""
  data, model = config.data, config.model
  widths = model.generator_width + model.critic_width + config.vae.width
  values = config.train.batch_size * data.image_size ** 2 * widths
  return config.train.num_seeds * ACTIVATION_BYTES_PER_BATCH_VALUE * values


def held_bytes(config: ml_collections.ConfigDict, method, num_tasks: Optional[int]
               ) -> Tuple[int, int]:
  """(the state's bytes, what a run holds at its peak): every seed's training step
  (``step_peak_bytes``; seeds stepped one after the other on the CPU hold one step's
  temporaries at a time, but counting each seed's keeps the bound simple and safe), or with
  ``num_tasks`` None (the evaluate and sample modes, which train nothing) the state alone; the
  state's other copies (``STATE_COPIES_BESIDE_THE_STEP``) and, on the CPU backend, the
  runtime."""
  shapes = jax.eval_shape(method.init_state, jax.random.key(0))
  seeds = config.train.num_seeds
  state = seeds * sum(leaf.size * leaf.dtype.itemsize
                      for leaf in jax.tree_util.tree_leaves(shapes))
  runtime = CPU_RUNTIME_BYTES if jax.default_backend() == 'cpu' else 0
  step = (state if num_tasks is None
          else seeds * step_peak_bytes(config, method, num_tasks))
  held = step + STATE_COPIES_BESIDE_THE_STEP * state + runtime
  return state, int(held)


def check_memory(config: ml_collections.ConfigDict, method,
                 num_tasks: Optional[int] = None) -> None:
  """Refuses networks for which training (or, without ``num_tasks``, evaluating) holds more
  than the memory here (``held_bytes`` against ``memory_limit.memory``: the device's, or on
  the CPU the host's or its cgroup's limit), and a ``sample.num`` whose images exceed half of
  it, before anything is written; ``method``: the run's ``base.LifelongMethod``,
  ``num_tasks``: its tasks, when it trains. The kernel would otherwise kill the run without a
  word, mid-save."""
  memory, source = memory_limit.memory()
  # Without a step the state is counted once more: a step holds at least the state it takes
  # in. Networks that do not fit even so are refused without compiling their steps.
  state, held = held_bytes(config, method, None)
  # XLA's count costs a compile of every task's step before training; a run that fits with room
  # to spare even under a generous bound on its activations (``activation_bound``) starts
  # without it.
  counts_step = (num_tasks is not None and held <= memory
                 and held + activation_bound(config) > memory / 2)
  if counts_step:
    state, held = held_bytes(config, method, num_tasks)
  parts = [f"the networks' parameters and optimiser state, {_gigabytes(state)}",
           'two more copies of them',
           "a training step's activations and gradients" if counts_step else
           'the state a step takes in' if num_tasks else 'the restored state']
  if jax.default_backend() == 'cpu':
    parts.append('the runtime')
  _require(held <= memory,
           f'This run would hold about {_gigabytes(held)} at its peak ({", ".join(parts)}), '
           f'more than the {_gigabytes(memory)} of {source}; lower '
           'train.num_seeds, train.batch_size, model.generator_width, model.critic_width, '
           'vae.width or the latent sizes.')
  image = config.data.image_size ** 2 * config.data.channels
  samples = 4 * 4 * config.sample.num * image  # float32 images, host copies and the grid
  _require(2 * samples <= memory,
           f'sample.num={config.sample.num} needs about {_gigabytes(samples)} for its images, '
           f'more than half of the {_gigabytes(memory)} of memory here; lower sample.num and '
           'draw the rest with other sample.seed values.')
