"""The lifelong training loop: ``train_and_evaluate(config, workdir)``.

The backend's choices are resolved once (``cpu.backend.resolve``) and handed down: the
convolution layers to the method, the rest to the loop. For each task: move the state to the
task (``method.begin_next_task``; LT-GANs swaps the twins' roles), run its steps
(``run.loop.run_task``; ``durations.task_steps``: ``train.steps_per_task`` or
``train.epochs_per_task``) on deterministic batches, then evaluate every task seen so far
(``eval.task_eval``), write the pictures and ``report.md`` (``run.report``) and save a
checkpoint (``run.checkpointing``). Rerunning with the same workdir resumes from the newest
checkpoint. The hooks the loop calls (progress, stop signal, divergence) are in ``run.hooks``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import time
from typing import Dict, List

import jax
import ml_collections
import numpy as np

from ltgans_jax import config_base, config_validation, durations, files, multihost
from ltgans_jax.cpu import backend as backend_lib
from ltgans_jax.data import batching, sequences
from ltgans_jax.eval import feature_net, figures, inception, matrices, task_eval
from ltgans_jax.methods import network_state, registry
from ltgans_jax.run import checkpointing, fused, hooks, loop as loop_lib, report, resume
from ltgans_jax.run import seeds as seeds_lib, seeds_report, workdir_lock, writers


def data_mesh() -> jax.sharding.Mesh:
  """A 1-D mesh over every device (of every host): the batch axis is split across it."""
  return jax.make_mesh((jax.device_count(),), ('data',),
                       axis_types=(jax.sharding.AxisType.Auto,))


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str):
  """Trains ``config.method`` (LT-GANs by default) on ``config.data.sequence``, writing
  everything into ``workdir``; returns the final state. Nothing is written before the config,
  the data and the workdir's recorded config have been checked, and only while this process
  holds the workdir's lock (``workdir_lock``)."""
  backend, tasks, method, task_steps = _checked_run(config, workdir)
  num_seeds, seed_values = seeds_lib.count(config), seeds_lib.seed_values(config)
  mesh = data_mesh()
  with workdir_lock.held(workdir):
    state, checkpoints, metrics_log, first_task = _start(config, workdir, method, task_steps,
                                                         mesh)
    logging.info('%d tasks: %s; %d seed(s); state holds %.1f MB.', len(tasks),
                 ' -> '.join(t.name for t in tasks), num_seeds,
                 network_state.state_bytes(state) / 1e6)
    metrics_logs = [metrics_log]
    with _finished_and_closed(checkpoints, metrics_logs), hooks.StopSignal() as stop:
      loop = loop_lib.Loop(config.train, fused.FusedSteps(method.plan, backend, seed_values),
                           tuple(task_steps),
                           jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec('data')),
                           checkpoints, metrics_log,
                           hooks.ProgressLine(sum(task_steps), config.train.log_every), stop)
      outputs = _seed_outputs(config, workdir, tasks, method, metrics_log, first_task,
                              backend.layers)
      metrics_logs[:0] = [o.metrics_log for o in outputs if o.metrics_log is not metrics_log]
      for task in range(first_task, len(tasks)):
        if seeds_lib.counter(state.task) < task:
          state = seeds_lib.per_seed(method.begin_next_task, state, num_seeds)
        prefix = f'task {task + 1}/{len(tasks)} {tasks[task].name}'
        started, steps_before = time.time(), seeds_lib.counter(state.task_step)
        batches = _task_batches(config, method, tasks, task)
        state, last = loop_lib.run_task(loop, state, task, batches, prefix, tasks[task].name)
        state = seeds_lib.per_seed(lambda one: method.end_task(one, task), state, num_seeds)
        trained = TrainedTask(task, prefix, time.time() - started,
                              task_steps[task] - steps_before, last,
                              durations.global_step(task_steps, task, task_steps[task]))
        for s, out in enumerate(outputs):
          _end_of_task(out, state if num_seeds == 1 else seeds_lib.unstack(state, s), tasks,
                       task_steps, trained)
        if num_seeds > 1 and jax.process_index() == 0:
          means = seeds_report.write(workdir, config, [out.workdir for out in outputs])
          metrics_log.write_scalars(trained.boundary,
                                    report.evaluation_scalars([t.name for t in tasks], means))
        # The boundary checkpoint comes last: a run stopped before it redoes the task's end
        # (from the newest checkpoint before it), so no finished task ever lacks its files.
        checkpointing.save(checkpoints, trained.boundary, state)
  logging.info('Finished; report in %s', os.path.join(workdir, 'report.md'))
  return state


def _checked_run(config: ml_collections.ConfigDict, workdir: str):
  """(the backend's choices, the tasks, the method, each task's steps) of a run whose config,
  data and workdir pass every check made before anything is written."""
  config_validation.validate(config)
  config_validation.check_workdir_name(workdir)
  backend = backend_lib.resolve(config)  # once: handed down to the method and the loop
  tasks = sequences.build_sequence(config)
  method = registry.build(config, backend.layers)
  task_steps = durations.task_steps(config, method, [len(t.train.images) for t in tasks])
  config_validation.check_task_steps(config, task_steps)
  config_validation.check_memory(config, method, len(tasks))
  config_validation.check_workdir(config, workdir)
  resume.check_checkpoint_shapes(config, workdir)  # config.json may be gone
  # A damaged report.json stops the run here, not after a task (with seeds: each seed's).
  for report_dir in seeds_lib.report_dirs(config, workdir):
    report.load_records(report_dir)
  feature_net.check_file(workdir)
  inception.fid_variables(config.eval.inception_weights)  # read (and checked) once, before the lock
  return backend, tasks, method, task_steps


def _task_batches(config, method, tasks, task: int) -> List[batching.TaskBatches]:
  """The deterministic batches of ``task``, one ``TaskBatches`` per seed."""
  images = (np.concatenate([t.train.images for t in tasks[:task + 1]])
            if method.cumulative_data else tasks[task].train.images)
  return [batching.TaskBatches(images, config.train.batch_size, seed, task)
          for seed in seeds_lib.seed_values(config)]


def hparams(config: ml_collections.ConfigDict) -> Dict[str, object]:
  """The config as flat 'a.b' -> number / string / bool pairs (tuples as text), for
  TensorBoard's hparams."""
  return {key: value if isinstance(value, (int, float, str, bool)) else str(value)
          for key, value in config_base.flat_items(config).items()}


@dataclasses.dataclass
class SeedOutputs:
  """Where one seed's end-of-task results go: the workdir itself for a one-seed run, else
  ``workdir/seed<s>/`` with that seed's config and method (``seeds``)."""
  config: ml_collections.ConfigDict
  method: object
  workdir: str
  metrics_log: object
  label: str = ''  # after a log line's prefix: ' seed <seed>' in a run of several seeds
  evaluator: object = None
  records: List[report.TaskRecord] = dataclasses.field(default_factory=list)


def _seed_outputs(config, workdir, tasks, method, metrics_log, first_task: int, layers
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
      outputs.append(SeedOutputs(seed_config, registry.build(seed_config, layers), seed_dir,
                                 writers.MetricsLog(seed_dir, jax.process_index() == 0, ''),
                                 label=f' seed {seed_config.seed}'))
  for s, out in enumerate(outputs):
    out.records = report.load_records(out.workdir)[:first_task]
    if s:
      seeds_report.share_feature_net(outputs[0].workdir, out.workdir)
    out.evaluator = task_eval.TaskEvaluator(out.config, out.method, tasks, out.workdir)
  return outputs


@dataclasses.dataclass(frozen=True)
class TrainedTask:
  """One task's training, as its end-of-task section reports it."""
  index: int
  prefix: str  # 'task k/K name', the head of its log lines
  seconds: float  # wall time of its steps in this run
  timed_steps: int  # its steps in this run (fewer than its length when resumed mid-task)
  last_metrics: Dict[str, float]  # averaged over the steps since the last log line
  boundary: int  # the global step at its end


@contextlib.contextmanager
def _finished_and_closed(checkpoints, metrics_logs: List):
  """Never leaves an asynchronous save half-written, unless another process has ended: a save
  commits only once every process has written its part, which the lost one never will (the
  newest committed checkpoint is whole, and the rerun resumes from it). Closes the checkpoint
  manager and ``metrics_logs`` (a list that may grow inside the block) at the end."""
  peer_lost = False
  try:
    yield
  except Exception as e:  # pylint: disable=broad-except
    peer_lost = multihost.lost_peer(e)
    raise
  finally:
    try:
      if not peer_lost:
        checkpointing.finish(checkpoints)
    finally:
      if not peer_lost:
        checkpoints.close()
      for log in metrics_logs:
        log.close()


def _start(config, workdir: str, method, task_steps, mesh: jax.sharding.Mesh):
  """(the state, restored from the newest checkpoint or fresh and replicated over ``mesh``;
  the checkpoint manager; the metrics log; the first task still to train) once the workdir is
  locked."""
  replicated = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())
  seed_values = seeds_lib.seed_values(config)
  # Placed before the restore, which reads each array straight into the template's placement:
  # with several processes, into every process's devices (a restored array that one process
  # placed cannot be moved to another's).
  # Jitted: one program for every initialiser, not one dispatch per operation.
  init_state = jax.jit(method.init_state)
  template = jax.device_put(seeds_lib.stack([init_state(jax.random.key(seed))
                                             for seed in seed_values]), replicated)
  files.remove_stale_temporaries(workdir)
  checkpoints = checkpointing.make_manager(config, workdir, task_steps)
  state = checkpointing.restore_latest(checkpoints, template) or template
  config_validation.record_config(config, workdir)  # the run is known to start
  restored_step = durations.global_step(task_steps, seeds_lib.counter(state.task),
                                        seeds_lib.counter(state.task_step))
  for folder in {workdir, *seeds_lib.report_dirs(config, workdir)}:
    resume.settle_metrics(folder, restored_step)  # before anything logs this run's rows
  metrics_log = writers.MetricsLog(workdir, jax.process_index() == 0,
                                  config.log.wandb_project)
  metrics_log.write_hparams(hparams(config))
  # A checkpoint taken at a task boundary holds a finished task: carry on with the next one.
  task = seeds_lib.counter(state.task)
  first_task = task + (seeds_lib.counter(state.task_step) == task_steps[task])
  return state, checkpoints, metrics_log, first_task


def _end_of_task(out: SeedOutputs, state, tasks, task_steps, trained: TrainedTask):
  """Evaluates one seed's finished task on every task seen, draws its pictures, and writes its
  report, matrices and evaluation scalars into ``out.workdir``."""
  config, method, evaluator, workdir = out.config, out.method, out.evaluator, out.workdir
  task, boundary, prefix = trained.index, trained.boundary, trained.prefix + out.label
  results = evaluator.evaluate(state, task)
  for metric, row in results.items():
    logging.info('%s done: %s %s', prefix, metric,
                 ', '.join(f'{tasks[j].name}={v:.2f}' for j, v in enumerate(row)))
  pictures = report.write_pictures(config, method, state, evaluator.test_images, task, workdir,
                            out.metrics_log, boundary)
  out.records = out.records[:task] + [report.TaskRecord(
      tasks[task].name, task_steps[task], trained.seconds, trained.last_metrics, results,
      pictures, report.evaluation_setting(config, evaluator.protocol),
      timed_steps=trained.timed_steps)]
  records = out.records
  # The evaluation as scalars, and the forgetting heatmaps as images, for TensorBoard.
  out.metrics_log.write_scalars(boundary,
                                report.evaluation_scalars([t.name for t in tasks], results))
  if jax.process_index() == 0:
    matrices.write_matrices(os.path.join(workdir, 'eval'), [t.name for t in tasks],
                            [r.evaluation for r in records], config.eval.heatmaps)
    if config.eval.heatmaps:
      out.metrics_log.write_images(boundary, report.heatmaps(os.path.join(workdir, 'eval')))
  if task == len(tasks) - 1:  # Figs. 2-3: the Student's latent space after the last task.
    records[-1].pictures.update(figures.write_latent_figures(
        method.vae_view(state), [t.name for t in tasks], evaluator.test_images, workdir))
  report.write_report(config, workdir, tasks, records, fid_source=method.fid_source,
               task_steps=task_steps, protocol=evaluator.protocol,
               provenance=evaluator.provenance())
