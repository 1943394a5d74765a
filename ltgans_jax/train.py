"""The lifelong training loop: ``train_and_evaluate(config, workdir)``.

For each task: move the state to the task (``begin_next_task`` swaps the twins' roles), run
its jitted steps (``durations.task_steps``: ``train.steps_per_task`` or
``train.epochs_per_task``) on deterministic batches, then write sample grids, evaluate every
task seen so far (NLL, FID, the replay audit; on the evaluation subsets of ``eval_subset``),
update ``report.md`` and save a checkpoint. Rerunning with the same workdir resumes from the
newest checkpoint.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import signal
import threading
import time
from typing import Dict, List, Sequence

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from ltgans_jax import checkpointing, config_validation, durations, loop as loop_lib, methods
from ltgans_jax import seeds as seeds_lib, seeds_report, state as state_lib, steps
from ltgans_jax import feature_net, figures, task_eval, viz, workdir_lock, writers
from ltgans_jax.data import batching, sequences


@dataclasses.dataclass
class TaskRecord:
  """What report.md says about one finished task."""
  name: str
  steps: int
  seconds: float
  last_metrics: Dict[str, float]
  evaluation: Dict[str, List[float]]  # metric -> value on tasks 0..k after task k
  pictures: Dict[str, str]  # grid name -> path relative to the workdir
  # How ``evaluation`` was measured (``evaluation_setting``): a resume with other eval settings
  # must not relabel the rows measured before it ('' in reports written before this field).
  evaluation_setting: str = ''


def evaluation_setting(config, protocol: str) -> str:
  """The test images and the IWAE settings behind a row of the matrices, as reports print it."""
  return (f'{protocol}; IWAE with {config.eval.iwae_samples} samples, {config.vae.likelihood} '
          'likelihood')


class ProgressLine:
  """Logs 'task k/K | step s/S | steps/s | ETA' every ``every`` steps."""

  def __init__(self, total_steps: int, every: int):
    self.total, self.every = total_steps, every
    self.last_time, self.last_step = None, None

  def __call__(self, global_step: int, prefix: str, metrics: Dict[str, float]):
    now = time.time()
    if self.last_time is None:
      self.last_time, self.last_step = now, global_step
      return None
    rate = (global_step - self.last_step) / max(now - self.last_time, 1e-9)
    eta = (self.total - global_step) / max(rate, 1e-9)
    self.last_time, self.last_step = now, global_step
    shown = ' '.join(f'{k.split("/")[-1]}={v:.3g}' for k, v in sorted(metrics.items())
                     if k.startswith(('critic/loss', 'generator/', 'student/loss')))
    logging.info('%s | %.2f steps/s | ETA %s | %s', prefix, rate, _duration(eta), shown)
    return rate


def _duration(seconds: float) -> str:
  minutes, secs = divmod(int(seconds), 60)
  hours, minutes = divmod(minutes, 60)
  return f'{hours}h{minutes:02d}m' if hours else f'{minutes}m{secs:02d}s'


def data_mesh() -> jax.sharding.Mesh:
  """A 1-D mesh over every device (of every host): the batch axis is split across it."""
  return jax.make_mesh((jax.device_count(),), ('data',),
                       axis_types=(jax.sharding.AxisType.Auto,))


def write_pictures(config, method, state, test_images, task, workdir, metrics_log, gstep):
  """The method's sample grids and the Student's reconstructions after ``task`` (of the first
  images of each task's evaluation subset ``test_images``); returns file names relative to the
  workdir."""
  rows = config.eval.grid_rows
  pictures = {name: viz.image_grid(images, rows)
              for name, images in method.picture_grids(state, rows * rows).items()}
  # Reconstructions: for each task seen, a row of originals above a row of reconstructions.
  vae = method.vae_view(state)
  per_task = rows
  originals = np.concatenate([test_images[j][:per_task] for j in range(task + 1)])
  images = steps.images_from_uint8(jnp.asarray(originals))
  mean, _ = vae.encode(images)
  reconstructions = jax.nn.sigmoid(vae.decode(mean)) * 2 - 1
  paired = np.stack([np.asarray(images).reshape(task + 1, per_task, *images.shape[1:]),
                     np.asarray(reconstructions).reshape(task + 1, per_task,
                                                         *images.shape[1:])], axis=1)
  pictures['student_reconstructions'] = viz.image_grid(
      paired.reshape(-1, *images.shape[1:]), 2 * (task + 1))
  files = {}
  for name, grid in pictures.items():
    files[name] = f'samples/task{task + 1}_{name}.png'
    if jax.process_index() == 0:
      viz.save_png(os.path.join(workdir, files[name]), grid, scale=2)
  metrics_log.write_images(gstep, {f'task{task + 1}/{k}': v for k, v in pictures.items()})
  return files


def write_report(config, workdir, tasks, records: List[TaskRecord], fid_source: str,
                 task_steps, protocol: str, provenance: Sequence[str] = ()) -> None:
  """report.md: per-task timing and losses, the matrices after each task (NLL, FID, KID,
  precision / recall / density / coverage, the replay audit), the grids.

  ``provenance``: one line per generative metric on what it was measured
  (``TaskEvaluator.provenance``).
  """
  if jax.process_index() != 0:
    return
  names = [t.name for t in tasks]
  lines = [f'# Run report: method `{config.method}`', '',
           f'Sequence `{config.data.sequence}`: {" -> ".join(names)}; images '
           f'{config.data.image_size}x{config.data.image_size}x{config.data.channels}; '
           f'batch {config.train.batch_size}; {durations.describe(config, task_steps)}; '
           f'devices: {jax.device_count()} x {jax.devices()[0].device_kind}.', '',
           '| task | steps | wall time | steps/s | critic loss | Student loss (data) |',
           '|---|---|---|---|---|---|']
  for r in records:
    lines.append(f'| {r.name} | {r.steps} | {_duration(r.seconds)} | '
                 f'{r.steps / max(r.seconds, 1e-9):.2f} | '
                 f'{_metric_cell(r.last_metrics, "critic/loss", 3)} | '
                 f'{_metric_cell(r.last_metrics, "student/loss_data", 2)} |')
  setting = evaluation_setting(config, protocol)
  others = [r for r in records if r.evaluation_setting != setting]
  lines += ['', '## After each task, on every task seen so far', '',
            f'Row: after learning that task; column: test set of that task ({setting}). '
            f'{task_eval.DIRECTIONS} Heatmaps and JSON in `eval/`.']
  if records and any(m.startswith('kid_') for m in records[-1].evaluation):
    lines += ['', task_eval.KID_NOTE]
  if provenance:
    lines += ['', 'What each generative metric was measured on:', ''] + list(provenance)
  if others:
    lines += ['', 'Rows marked * were measured by an earlier run of this workdir with other '
              'evaluation settings (`--mode=evaluate` measures every row afresh): ' + '; '.join(
                  f'{r.name}: {r.evaluation_setting or "not recorded"}' for r in others) + '.']
  marked = {r.name: f'{r.name}*' if r in others else r.name for r in records}
  summaries = task_eval.matrix_summaries(names, [r.evaluation for r in records]) if records else {}
  for metric, title in task_eval.METRIC_NAMES.items():
    if any(metric in r.evaluation for r in records):  # rows of an older run may lack it
      lines += ['', f'### {title}', '', '| after \\ on | ' + ' | '.join(names) + ' |',
                '|---' * (len(names) + 1) + '|']
      for r in records:
        row = r.evaluation.get(metric, [])
        cells = ([task_eval.format_value(metric, v) for v in row]
                 + [''] * (len(names) - len(row)))
        lines.append(f'| {marked[r.name]} | ' + ' | '.join(cells) + ' |')
      if metric in summaries and task_eval.forgetting_line(summaries[metric]):
        lines += ['', task_eval.forgetting_line(summaries[metric])]
  lines += task_eval.audit_markdown(names, [r.evaluation for r in records],
                                    [len(np.unique(t.train.labels)) for t in tasks])
  if records and 'fid_own_all' in records[-1].evaluation:
    lines += ['', f'{feature_net.FID_NAME} of {fid_source} against all seen test sets '
              'together, after each task: ' + ', '.join(
                  f'{r.name} {r.evaluation["fid_own_all"][0]:.2f}' for r in records)]
  lines += _all_seen_table(names, records)
  lines += ['', '## Pictures', '']
  for task, record in enumerate(records):
    lines.append(f'After task {task + 1} ({names[task]}):')
    lines += [f'- {name}: ![{name}]({path})' for name, path in record.pictures.items()]
    lines.append('')
  writers.write_atomically(os.path.join(workdir, 'report.md'), '\n'.join(lines))
  writers.write_atomically(os.path.join(workdir, 'report.json'), json.dumps(
      {'tasks': names, 'records': [dataclasses.asdict(r) for r in records],
       'forgetting': summaries}, indent=1))


def _all_seen_table(names, records: List[TaskRecord]) -> List[str]:
  """report.md lines: the ``<metric>_all`` values (samples against all seen test sets
  together) of every generative metric but the own-features FID (printed above), one row per
  task learnt."""
  metrics = [m for m in task_eval.METRIC_NAMES
             if not m.startswith('nll_') and m != 'fid_own' and records
             and f'{m}_all' in records[-1].evaluation]
  if not metrics:
    return []
  lines = ['', 'The same samples against all seen test sets together:', '',
           '| after | ' + ' | '.join(task_eval.METRIC_NAMES[m] for m in metrics) + ' |',
           '|---' * (len(metrics) + 1) + '|']
  for name, r in zip(names, records):
    cells = [task_eval.format_value(m, r.evaluation[f'{m}_all'][0])
             if f'{m}_all' in r.evaluation else '' for m in metrics]
    lines.append(f'| {name} | ' + ' | '.join(cells) + ' |')
  return lines


def _metric_cell(metrics: Dict[str, float], name: str, digits: int) -> str:
  """A report cell: the value, or 'n/a' for a method without that network (no critic)."""
  return f'{metrics[name]:.{digits}f}' if name in metrics else 'n/a'


def _load_records(workdir) -> List[TaskRecord]:
  """The rows of the finished tasks from ``workdir/report.json``; a damaged file is a
  ConfigError (raised before the run writes anything)."""
  path = os.path.join(workdir, 'report.json')
  if not os.path.exists(path):
    return []
  try:
    with open(path) as f:
      return [TaskRecord(**r) for r in json.load(f)['records']]
  except (OSError, ValueError, KeyError, TypeError) as e:
    raise config_validation.ConfigError(
        f'{path} cannot be read ({type(e).__name__}: {str(e)[:80]}); it holds the report rows '
        'of the finished tasks: restore it, or delete it (report.md then lists the tasks '
        'trained from now on; --mode=evaluate recomputes every row).') from None


DivergenceError, StopRequested = loop_lib.DivergenceError, loop_lib.StopRequested


class _StopSignal:
  """Turns SIGTERM/SIGINT into a flag the loop checks after each step (main thread only)."""

  def __init__(self):
    self.received = None
    self._previous = {}

  def __enter__(self):
    if threading.current_thread() is threading.main_thread():
      for sig in (signal.SIGTERM, signal.SIGINT):
        self._previous[sig] = signal.signal(sig, self._handle)
    return self

  def _handle(self, signum, frame):
    del frame
    self.received = signal.Signals(signum).name

  def __exit__(self, *exc):
    for sig, handler in self._previous.items():
      signal.signal(sig, handler)


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str):
  """Trains ``config.method`` (LT-GANs by default) on ``config.data.sequence``, writing
  everything into ``workdir``; returns the final state. Nothing is written before the config,
  the data and the workdir's recorded config have been checked, and only while this process
  holds the workdir's lock (``workdir_lock``)."""
  config_validation.validate(config)
  config_validation.check_workdir_name(workdir)
  tasks = sequences.build_sequence(config)
  method = methods.build(config)
  task_steps = durations.task_steps(config, method, [len(t.train.images) for t in tasks])
  config_validation.check_task_steps(config, task_steps)
  config_validation.check_memory(config, method)
  config_validation.check_workdir(config, workdir)
  # A damaged report.json stops the run here, not after a task (with seeds: each seed's).
  for report_dir in seeds_lib.report_dirs(config, workdir):
    _load_records(report_dir)
  task_eval.check_feature_net_file(workdir)
  task_eval.inception_variables(config)  # read (and checked) once, before the lock
  with workdir_lock.held(workdir):
    return _train_in_workdir(config, workdir, tasks, method, task_steps)


def hparams(config: ml_collections.ConfigDict) -> Dict[str, object]:
  """The config as flat 'a.b' -> number / string / bool pairs (tuples as text), for
  TensorBoard's hparams."""
  flat = {}

  def visit(node, prefix):
    for key, value in node.items():
      if isinstance(value, ml_collections.ConfigDict):
        visit(value, f'{prefix}{key}.')
      else:
        flat[f'{prefix}{key}'] = value if isinstance(value, (int, float, str, bool)) else str(value)
  visit(config, '')
  return flat


def evaluation_scalars(task_names: Sequence[str], results: Dict[str, List[float]]
                       ) -> Dict[str, float]:
  """One evaluation row (metric -> values on the tasks seen, or one value for '<metric>_all')
  as scalars named 'eval/<metric>/<task>' ('eval/<metric>_all' for the all-tasks ones)."""
  scalars = {}
  for metric, row in results.items():
    if metric.endswith('_all'):
      scalars[f'eval/{metric}'] = row[0]
    else:
      scalars.update({f'eval/{metric}/{task_names[j]}': v for j, v in enumerate(row)})
  return scalars


def _heatmaps(folder: str) -> Dict[str, np.ndarray]:
  """The forgetting heatmaps of ``folder`` (``task_eval.write_matrices``) as uint8 [H, W, 3]."""
  from PIL import Image  # pylint: disable=g-import-not-at-top
  images = {}
  for name in sorted(os.listdir(folder)):
    if name.endswith('.png'):
      with Image.open(os.path.join(folder, name)) as image:
        images[f'eval/{name[:-4]}'] = np.asarray(image.convert('RGB'))
  return images


@dataclasses.dataclass
class SeedOutputs:
  """Where one seed's end-of-task results go: the workdir itself for a one-seed run, else
  ``workdir/seed<s>/`` with that seed's config and method (``seeds``)."""
  config: ml_collections.ConfigDict
  method: object
  workdir: str
  metrics_log: object
  evaluator: object = None
  records: List[TaskRecord] = dataclasses.field(default_factory=list)


def _seed_outputs(config, workdir, tasks, method, metrics_log, first_task: int
                  ) -> List[SeedOutputs]:
  """One ``SeedOutputs`` per seed, with the report rows of its finished tasks. All seeds
  measure with seed 0's FID feature network (trained once, copied into the other seeds'
  folders): one measuring instrument, so the spread over seeds is the models'."""
  if seeds_lib.count(config) == 1:
    outputs = [SeedOutputs(config, method, workdir, metrics_log)]
  else:
    outputs = []
    for s, seed_dir in enumerate(seeds_lib.report_dirs(config, workdir)):
      os.makedirs(seed_dir, exist_ok=True)
      seed_config = seeds_lib.seed_config(config, s)
      seed_config.log.wandb_project = ''  # one W&B run per workdir: the top-level one
      outputs.append(SeedOutputs(seed_config, methods.build(seed_config), seed_dir,
                                 writers.MetricsLog(seed_dir, jax.process_index() == 0, '')))
  for s, out in enumerate(outputs):
    out.records = _load_records(out.workdir)[:first_task]
    if s:
      seeds_report.share_feature_net(outputs[0].workdir, out.workdir)
    out.evaluator = task_eval.TaskEvaluator(out.config, out.method, tasks, out.workdir)
  return outputs


def _train_in_workdir(config, workdir, tasks, method, task_steps):
  """``train_and_evaluate`` once the workdir is checked and locked."""
  mesh = data_mesh()
  replicated = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())
  batch_sharding = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec('data'))

  num_seeds = seeds_lib.count(config)
  template = seeds_lib.stack([method.init_state(jax.random.key(seed))
                              for seed in seeds_lib.seed_values(config)])
  checkpoints = checkpointing.make_manager(config, workdir, task_steps)
  state = checkpointing.restore_latest(checkpoints, template) or template
  config_validation.record_config(config, workdir)  # the run is known to start
  state = jax.device_put(state, replicated)
  metrics_log = writers.MetricsLog(workdir, jax.process_index() == 0,
                                  config.log.wandb_project)
  metrics_log.write_hparams(hparams(config))
  # A checkpoint taken at a task boundary holds a finished task: carry on with the next one.
  task = seeds_lib.counter(state.task)
  first_task = task + (seeds_lib.counter(state.task_step) == task_steps[task])
  logging.info('%d tasks: %s; %d seed(s); state holds %.1f MB.', len(tasks),
               ' -> '.join(t.name for t in tasks), num_seeds,
               state_lib.state_bytes(state) / 1e6)

  outputs = []
  try:
    with _StopSignal() as stop:
      loop = loop_lib.Loop(config, method, tuple(task_steps), batch_sharding, checkpoints,
                           metrics_log, ProgressLine(sum(task_steps), config.train.log_every),
                           stop)
      outputs = _seed_outputs(config, workdir, tasks, method, metrics_log, first_task)
      state = _train_tasks(loop, tasks, state, outputs, first_task, workdir)
  finally:  # Never leave an asynchronous save half-written.
    try:
      checkpointing.finish(checkpoints)
    finally:
      checkpoints.close()
      for out in outputs:
        if out.metrics_log is not metrics_log:
          out.metrics_log.close()
      metrics_log.close()
  logging.info('Finished; report in %s', os.path.join(workdir, 'report.md'))
  return state


def _train_tasks(loop, tasks, state, outputs: List[SeedOutputs], first_task: int, workdir):
  """The per-task sections of ``train_and_evaluate``."""
  config, method, task_steps = loop.config, loop.method, loop.task_steps
  num_seeds = len(outputs)
  for task in range(first_task, len(tasks)):
    if seeds_lib.counter(state.task) < task:
      state = seeds_lib.per_seed(method.begin_next_task, state, num_seeds)
    prefix = f'task {task + 1}/{len(tasks)} {tasks[task].name}'
    started = time.time()
    steps_before = seeds_lib.counter(state.task_step)
    images = (np.concatenate([t.train.images for t in tasks[:task + 1]])
              if method.cumulative_data else tasks[task].train.images)
    task_batches = [batching.TaskBatches(images, config.train.batch_size, seed, task)
                    for seed in seeds_lib.seed_values(config)]
    state, last = loop_lib.run_task(loop, state, task, task_batches, prefix, tasks[task].name)
    state = seeds_lib.per_seed(lambda one: method.end_task(one, task), state, num_seeds)
    seconds = time.time() - started
    boundary = durations.global_step(task_steps, task, task_steps[task])
    for s, out in enumerate(outputs):
      one_state = state if num_seeds == 1 else seeds_lib.unstack(state, s)
      _end_of_task(out, one_state, tasks, task, task_steps, seconds, last, steps_before,
                   boundary, f'{prefix}' + (f' seed {out.config.seed}' if num_seeds > 1 else ''))
    if num_seeds > 1 and jax.process_index() == 0:
      means = seeds_report.write(workdir, config, [out.workdir for out in outputs])
      loop.metrics_log.write_scalars(boundary, evaluation_scalars([t.name for t in tasks],
                                                                  means))
    # The boundary checkpoint comes last: a run stopped before it redoes the task's end (from
    # the newest checkpoint before it), so no finished task ever lacks its files.
    checkpointing.save(loop.checkpoints, boundary, state)
  return state


def _end_of_task(out: SeedOutputs, state, tasks, task: int, task_steps, seconds: float,
                 last: Dict[str, float], steps_before: int, boundary: int, prefix: str):
  """Evaluates one seed's finished ``task`` on every task seen, draws its pictures, and writes
  its report, matrices and evaluation scalars into ``out.workdir``."""
  config, method, evaluator, workdir = out.config, out.method, out.evaluator, out.workdir
  results = evaluator.evaluate(state, task)
  for metric, row in results.items():
    logging.info('%s done: %s %s', prefix, metric,
                 ', '.join(f'{tasks[j].name}={v:.2f}' for j, v in enumerate(row)))
  pictures = write_pictures(config, method, state, evaluator.test_images, task, workdir,
                            out.metrics_log, boundary)
  out.records = out.records[:task] + [TaskRecord(
      tasks[task].name, task_steps[task] - steps_before, seconds, last, results, pictures,
      evaluation_setting(config, evaluator.protocol))]
  records = out.records
  # The evaluation as scalars, and the forgetting heatmaps as images, for TensorBoard.
  out.metrics_log.write_scalars(boundary, evaluation_scalars([t.name for t in tasks], results))
  if jax.process_index() == 0:
    task_eval.write_matrices(os.path.join(workdir, 'eval'), [t.name for t in tasks],
                             [r.evaluation for r in records])
    out.metrics_log.write_images(boundary, _heatmaps(os.path.join(workdir, 'eval')))
  if task == len(tasks) - 1:  # Figs. 2-3: the Student's latent space after the last task.
    records[-1].pictures.update(figures.write_latent_figures(
        method.vae_view(state), [t.name for t in tasks], evaluator.test_images, workdir))
  write_report(config, workdir, tasks, records, fid_source=method.fid_source,
               task_steps=task_steps, protocol=evaluator.protocol,
               provenance=evaluator.provenance())
