"""Modes of the main command over an existing workdir (no training):

* ``evaluate``: restores every task-boundary checkpoint and recomputes the forgetting matrices
  with the current ``eval`` config (e.g. ``--config.eval.iwae_samples=5000`` for final numbers,
  ``--config.eval.inception_weights=...``), writing them, ``evaluation.md`` and the Student's
  latent figures of the last finished task into ``workdir/evaluate/``. The test sets' cached
  reference statistics (``reference_stats``) are read from the training run's
  ``eval/reference/`` where their fingerprints match; the others are computed and written to
  ``evaluate/reference/``.

Neither mode takes the workdir's lock or writes into the training run's files (``eval/``,
``report.*``, ``checkpoints/``), so both may run while the workdir trains.
* ``sample``: writes ``config.sample.num`` images of ``config.sample.network`` ('teacher',
  'assistant' or 'student' for the GAN methods; 'student' for ``lgm`` and ``curl``; empty for
  the network the FID measures) from the newest checkpoint to ``samples_<network>.npz`` (uint8
  [N, H, W, C]) and a PNG grid.
"""

from __future__ import annotations

import io
import logging
import os
from typing import Optional, Sequence

import jax
import numpy as np

from ltgans_jax import config_validation, durations, files, pixels as pixel_lib, viz
from ltgans_jax.cpu import backend
from ltgans_jax.data import sequences
from ltgans_jax.errors import CheckpointError, ConfigError
from ltgans_jax.eval import feature_net, figures, matrices, task_eval
from ltgans_jax.methods import registry
from ltgans_jax.run import checkpointing, report, resume, seeds

EVALUATE_FOLDER = 'evaluate'  # everything --mode=evaluate writes, inside the workdir


def open_workdir(config, workdir, seed_index: Optional[int] = None):
  """(tasks, method, restore target, task steps, checkpoint manager) of a trained workdir,
  after the checks a run makes; CheckpointError or ConfigError saying why not. The caller
  closes the manager.

  A workdir of ``train.num_seeds`` = S > 1 seeds holds one checkpoint of every seed's state
  stacked on a leading axis: ``seed_index`` (0 <= k < S) names the seed the caller will
  ``seeds.unstack`` from the restored state; the method is then the one of that seed's
  one-seed config. The restore target keeps the leading axis [S, ...]."""
  config_validation.validate(config)
  config_validation.check_workdir_name(workdir)
  if not os.path.isdir(os.path.join(workdir, 'checkpoints')):
    raise CheckpointError(f'{workdir} holds no checkpoints; train first with --mode=train.')
  config_validation.check_workdir(config, workdir)
  files.remove_stale_temporaries(workdir)
  num_seeds = seeds.count(config)
  if num_seeds > 1 and seed_index is None:
    raise ConfigError(
        f'{workdir} trained train.num_seeds={num_seeds} seeds together; '
        '--mode=evaluate, sample and matrices read one-seed runs only so far: each seed\'s '
        f'report, matrices and pictures are in {workdir}/seed<k>/, written during training, '
        'and api.Run.open(workdir, seed_index=k) opens seed k\'s networks.')
  if seed_index is not None and not (isinstance(seed_index, (int, np.integer))
                                     and 0 <= seed_index < num_seeds):
    raise ConfigError(f'seed_index={seed_index!r}; {workdir} holds train.num_seeds='
                      f'{num_seeds} seed(s): pass 0 to {num_seeds - 1}.')
  tasks = sequences.build_sequence(config)
  layers = backend.resolve(config).layers
  method = registry.build(config, layers)
  config_validation.check_memory(config, method)
  for folder in seeds.report_dirs(config, workdir):
    feature_net.check_file(folder)
  template = _restore_target(method, seeds.seed_values(config))
  if num_seeds > 1:
    method = registry.build(seeds.seed_config(config, seed_index), layers)
  task_steps = durations.task_steps(config, method, [len(t.train.images) for t in tasks])
  return (tasks, method, template, task_steps,
          checkpointing.make_manager(config, workdir, task_steps))


def _restore_target(method, seed_values: Sequence[int]):
  """The state's shapes and dtypes on the first local device, as the restore target: nothing is
  initialised or allocated before a checkpoint is known to fit. Several seeds: their states
  stacked on a leading axis, as training saves them."""
  device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
  shapes = jax.eval_shape(lambda: seeds.stack([method.init_state(jax.random.key(seed))
                                               for seed in seed_values]))
  return jax.tree_util.tree_map(
      lambda leaf: jax.ShapeDtypeStruct(leaf.shape, leaf.dtype, sharding=device), shapes)


def boundary_states(config, workdir: str):
  """(tasks, method, states): the run's task sequence, its ``base.LifelongMethod`` and the
  state at the end of every finished task, in order; CheckpointError if one is missing or
  cannot be restored."""
  tasks, method, template, task_steps, manager = open_workdir(config, workdir)
  try:
    boundaries = durations.task_boundary_steps(task_steps)
    available = set(manager.all_steps())
    finished = [t for t, step in enumerate(boundaries) if step in available]
    if not finished:
      raise CheckpointError(f'{workdir} has no task-boundary checkpoint yet; finish a task '
                            'first.')
    states = []  # every boundary state, restored before anything is trained or written
    for task in range(max(finished) + 1):
      if task not in finished:
        raise CheckpointError(f'The checkpoint at the end of task {task + 1} (step '
                              f'{boundaries[task]}) is missing; the matrix needs every one.')
      states.append(restore_boundary(manager, boundaries[task], template, task))
  finally:
    manager.close()
  return tasks, method, states


def evaluate_workdir(config, workdir: str) -> dict:
  """Recomputes the per-task metrics from the task-boundary checkpoints; returns summaries."""
  tasks, method, states = boundary_states(config, workdir)
  out = os.path.join(workdir, EVALUATE_FOLDER)
  resume.check_writable(out, 'evaluate', 'its matrices, figures and evaluation.md')
  # Reads the training run's cached reference statistics; writes what it lacks into out/.
  evaluator = task_eval.TaskEvaluator(config, method, tasks, workdir,
                                      reference_folder=os.path.join(out, 'reference'))
  rows = []
  for task, state in enumerate(states):
    rows.append(evaluator.evaluate(state, task))
    logging.info('Evaluated the state after task %d: %s', task + 1, rows[-1])
  summaries = matrices.write_matrices(out, [t.name for t in tasks], rows, config.eval.heatmaps)
  seen = len(states)
  figure_files = figures.write_latent_figures(
      method.vae_view(states[-1]), [t.name for t in tasks[:seen]], evaluator.test_images[:seen],
      out)
  report.write_evaluation_md(config, out, tasks, rows, summaries, figure_files,
                             evaluator.protocol, evaluator.provenance())
  return summaries


def restore_boundary(manager, step: int, template, task: int):
  """Checkpoint ``step`` (the end of ``task``), or CheckpointError saying why it cannot be."""
  try:
    return checkpointing.restore_step(manager, step, template)
  except checkpointing.StateMismatchError as e:
    raise CheckpointError(f'The checkpoint at the end of task {task + 1} (step {step}) holds '
                          f'networks of other sizes than this config ({e}); pass the config '
                          'that wrote it (its values are in config.json).') from None
  except Exception as e:  # pylint: disable=broad-except  # orbax raises many kinds
    raise CheckpointError(f'The checkpoint at the end of task {task + 1} (step {step}) cannot '
                          f'be restored ({type(e).__name__}: {str(e)[:120]}); the matrix needs '
                          'every one: restore that step folder from a backup.') from None


def sample(config, workdir: str) -> str:
  """Writes N samples of one network from the newest checkpoint; returns the .npz path."""
  method = registry.build(config, backend.resolve(config).layers)
  network = config.sample.network or method.fid_network()
  if network not in method.sample_networks:
    raise ConfigError(f'sample.network={network!r}; method {config.method!r} has '
                      f'{method.sample_networks}.')
  _, method, template, _, manager = open_workdir(config, workdir)
  try:
    resume.check_checkpoint_shapes(config, workdir)
    resume.check_writable(workdir, 'sample', f'samples_{network}.npz and .png')
  except Exception:
    manager.close()
    raise
  state = checkpointing.restore_latest(manager, template, move_damaged=False)
  if state is None:
    raise CheckpointError(f'{workdir} holds no checkpoint; train first with --mode=train.')
  images = method.sample(state, network, jax.random.key(config.sample.seed), config.sample.num)
  pixels = pixel_lib.to_uint8(images)
  path = os.path.join(workdir, f'samples_{network}.npz')
  buffer = io.BytesIO()  # a kill or a full disk mid-write leaves no half .npz behind
  np.savez_compressed(buffer, images=pixels)
  files.write_atomically(path, buffer.getvalue())
  rows = max(r for r in range(1, int(np.sqrt(len(pixels))) + 1) if len(pixels) % r == 0)
  viz.save_png(path.replace('.npz', '.png'), viz.image_grid(np.asarray(images), rows),
               scale=viz.display_scale(pixels.shape[1]))
  manager.close()
  logging.info('Wrote %d %s samples (task %d, step %d) to %s', len(pixels), network,
               int(state.task) + 1, int(state.task_step), path)
  return path
