"""Every markdown file a run writes, and what goes with it: ``report.md`` / ``report.json`` of
a run (one row per task: timing, losses, the matrices after each task), that of a multi-seed
run (``seeds_markdown``), ``--mode=evaluate``'s ``evaluation.md``; the prose they share on how
to read the matrices (``DIRECTIONS``, ``KID_NOTE``, ``forgetting_line``); and the sample grids
and reconstructions, the evaluation scalars and heatmaps for TensorBoard.
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Dict, List, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from ltgans_jax import durations, files, pixels, viz
from ltgans_jax.errors import ConfigError
from ltgans_jax.eval import audit, feature_net, matrices, metric_names
from ltgans_jax.run import hooks


# report.md's reading of the generative rows.
DIRECTIONS = ('Lower is better for the NLLs, the FIDs and the KIDs; higher for precision, recall '
              'and coverage (at most 1); density is about 1 for samples spread like the test '
              'images (above 1 where they crowd the dense regions).')
KID_NOTE = ('KID (the unbiased estimate of the squared MMD under the kernel (x.y/d + 1)^3, '
            'Binkowski et al. 2018) is unbiased at these sample sizes (a few hundred to a few '
            'thousand images per set); the FID is not: its plug-in estimate is biased upwards, '
            'the more so the fewer the images (below the feature dimension the covariance it '
            'fits is singular), so FIDs compare only at equal numbers of images. A KID near 0, '
            'or slightly below, means the two sets are indistinguishable by it.')


def forgetting_line(summary: Dict[str, object]) -> str:
  """One report sentence on a matrix's forgetting summaries (``matrices.forgetting_summary``),
  or '' after the first task."""
  if summary['mean_forgetting'] is None:
    return ''
  line = (f'Mean over the earlier tasks of final minus just learnt: '
          f'{summary["mean_forgetting"]:.4g}')
  if 'mean_max_forgetting' in summary:
    line += (f'; max-based forgetting (Chaudhry et al. 2018; > 0: forgotten): '
             f'{summary["mean_max_forgetting"]:.4g}; backward transfer (Lopez-Paz and Ranzato '
             f'2017; < 0: forgotten): {summary["backward_transfer"]:.4g}')
  return line + '.'


def _table(names: Sequence[str], row_labels: Sequence[str],
           cells: Sequence[Sequence[str]]) -> List[str]:
  """Markdown lines of a matrix of cells: row i (``row_labels[i]``) holds the tasks seen after
  learning task i, one column per task of ``names``, empty where not yet seen."""
  lines = ['| after \\ on | ' + ' | '.join(names) + ' |', '|---' * (len(names) + 1) + '|']
  for label, row in zip(row_labels, cells):
    lines.append(f'| {label} | ' + ' | '.join(list(row) + [''] * (len(names) - len(row)))
                 + ' |')
  return lines


def matrix_table(metric: str, names: Sequence[str], row_labels: Sequence[str],
                 rows: Sequence[Sequence[float]]) -> List[str]:
  """Markdown lines of one forgetting matrix: row i (``row_labels[i]``) holds ``metric`` on
  the tasks seen after learning task i, one column per task of ``names``."""
  return _table(names, row_labels,
                [[metric_names.format_value(metric, v) for v in row] for row in rows])


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
  # The steps ``seconds`` timed: the task's steps trained by the process that finished it (a
  # resumed task's earlier steps ran in another process); None in reports written before.
  timed_steps: Optional[int] = None


def evaluation_setting(config, protocol: str) -> str:
  """The test images and the IWAE settings behind a row of the matrices, as reports print it."""
  return (f'{protocol}; IWAE with {config.eval.iwae_samples} samples, {config.vae.likelihood} '
          'likelihood')


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
  images = pixels.from_uint8(jnp.asarray(originals))
  mean, _ = vae.encode(images)
  reconstructions = pixels.from_logits(vae.decode(mean))
  paired = np.stack([np.asarray(images).reshape(task + 1, per_task, *images.shape[1:]),
                     np.asarray(reconstructions).reshape(task + 1, per_task,
                                                         *images.shape[1:])], axis=1)
  pictures['student_reconstructions'] = viz.image_grid(
      paired.reshape(-1, *images.shape[1:]), 2 * (task + 1))
  files = {}
  for name, grid in pictures.items():
    files[name] = f'samples/task{task + 1}_{name}.png'
    if jax.process_index() == 0:
      viz.save_png(os.path.join(workdir, files[name]), grid,
                   scale=viz.display_scale(config.data.image_size))
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
    lines.append(f'| {r.name} | {r.steps} | {hooks.format_duration(r.seconds)} | '
                 f'{_timed_steps(r) / max(r.seconds, 1e-9):.2f} | '
                 f'{_metric_cell(r.last_metrics, "critic/loss", 3)} | '
                 f'{_metric_cell(r.last_metrics, "student/loss_data", 2)} |')
  setting = evaluation_setting(config, protocol)
  others = [r for r in records if r.evaluation_setting != setting]
  lines += ['', '## After each task, on every task seen so far', '',
            f'Row: after learning that task; column: test set of that task ({setting}). '
            f'{DIRECTIONS} Heatmaps and JSON in `eval/`.']
  if records and any(m.startswith('kid_') for m in records[-1].evaluation):
    lines += ['', KID_NOTE]
  if provenance:
    lines += ['', 'What each generative metric was measured on:', ''] + list(provenance)
  if others:
    lines += ['', 'Rows marked * were measured by an earlier run of this workdir with other '
              'evaluation settings (`--mode=evaluate` measures every row afresh): ' + '; '.join(
                  f'{r.name}: {r.evaluation_setting or "not recorded"}' for r in others) + '.']
  marked = {r.name: f'{r.name}*' if r in others else r.name for r in records}
  summaries = matrices.matrix_summaries(names, [r.evaluation for r in records]) if records else {}
  for metric, title in metric_names.METRIC_NAMES.items():
    if any(metric in r.evaluation for r in records):  # rows of an older run may lack it
      lines += ['', f'### {title}', '']
      lines += matrix_table(metric, names, [marked[r.name] for r in records],
                            [r.evaluation.get(metric, []) for r in records])
      if metric in summaries and forgetting_line(summaries[metric]):
        lines += ['', forgetting_line(summaries[metric])]
  lines += audit_markdown(names, [r.evaluation for r in records],
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
  files.write_atomically(os.path.join(workdir, 'report.md'), '\n'.join(lines))
  files.write_atomically(os.path.join(workdir, 'report.json'), json.dumps(
      {'tasks': names, 'records': [dataclasses.asdict(r) for r in records],
       'forgetting': summaries}, indent=1))


def _all_seen_table(names, records: List[TaskRecord]) -> List[str]:
  """report.md lines: the ``<metric>_all`` values (samples against all seen test sets
  together) of every generative metric but the own-features FID (printed above), one row per
  task learnt."""
  metrics = [m for m in metric_names.METRIC_NAMES
             if not m.startswith('nll_') and m != 'fid_own' and records
             and f'{m}_all' in records[-1].evaluation]
  if not metrics:
    return []
  lines = ['', 'The same samples against all seen test sets together:', '',
           '| after | ' + ' | '.join(metric_names.METRIC_NAMES[m] for m in metrics) + ' |',
           '|---' * (len(metrics) + 1) + '|']
  for name, r in zip(names, records):
    cells = [metric_names.format_value(m, r.evaluation[f'{m}_all'][0])
             if f'{m}_all' in r.evaluation else '' for m in metrics]
    lines.append(f'| {name} | ' + ' | '.join(cells) + ' |')
  return lines


def audit_markdown(task_names: Sequence[str], rows_per_task,
                   classes_per_task: Sequence[int]) -> List[str]:
  """report.md lines: per audited network, a table whose cell (after task i, on task j) is
  "share (covered/classes)", then the feature network's accuracy on each subset."""
  if not rows_per_task or metric_names.AUDIT_ACCURACY not in rows_per_task[0]:
    return []
  networks = [m[len('audit_share_'):] for m in rows_per_task[0] if m.startswith('audit_share_')]
  header = ['| after \\ on | ' + ' | '.join(task_names) + ' | unseen |',
            '|---' * (len(task_names) + 2) + '|']
  lines = ['', '### Replay audit', '',
           'Each cell: the share of the network\'s samples that the feature network assigns to '
           'that task, and (in brackets) how many of the task\'s classes hold at least '
           f'{audit.COVERAGE_THRESHOLD:.0%} of them. `unseen`: the share assigned to tasks not '
           'yet learnt. Ideal after k tasks: 1/k on each, every class covered.']
  for network in networks:
    lines += ['', f'{network}:', ''] + header
    for name, row in zip(task_names, rows_per_task):
      share, covered = row[f'audit_share_{network}'], row[f'audit_classes_{network}']
      cells = [f'{v:.2f} ({int(c)}/{k})' for v, c, k in zip(share, covered, classes_per_task)]
      cells += [''] * (len(task_names) - len(cells))
      lines.append(f'| {name} | ' + ' | '.join(cells) + f' | {max(0.0, 1 - sum(share)):.2f} |')
  last = rows_per_task[-1][metric_names.AUDIT_ACCURACY]
  lines += ['', 'Feature-network accuracy on the evaluation subsets (after the last task row): '
            + ', '.join(f'{n} {v:.3f}' for n, v in zip(task_names, last)) + '.']
  return lines


def write_evaluation_md(config, out, tasks, rows, summaries, figure_files, protocol,
                        provenance=()):
  """``out/evaluation.md``: the matrices and figures of ``evaluate_workdir``; ``provenance``:
  one line per generative metric (``TaskEvaluator.provenance``)."""
  names = [t.name for t in tasks]
  lines = ['# Evaluation', '', f'{protocol}; IWAE with '
           f'{config.eval.iwae_samples} samples ({config.vae.likelihood} likelihood). '
           f'{DIRECTIONS}']
  if any(m.startswith('kid_') for m in rows[-1]):
    lines += ['', KID_NOTE]
  if provenance:
    lines += ['', 'What each generative metric was measured on:', ''] + list(provenance)
  for metric, title in metric_names.matrix_titles(rows[0]).items():
    lines += ['', f'## {title}', '']
    lines += matrix_table(metric, names, names[:len(rows)], [row[metric] for row in rows])
    s = summaries[metric]
    lines += ['', f'Final-row average {s["final_average"]:.4g}; diagonal average '
              f'{s["diagonal_average"]:.4g}. '
              + (forgetting_line(s) or 'No forgetting measures after one task.'),
              f'![{metric}]({metric}.png)']
  lines += ['', '## Student latent space (after the last finished task)', '']
  lines += [f'- {name}: ![{name}]({path})' for name, path in figure_files.items()]
  files.write_atomically(os.path.join(out, 'evaluation.md'), '\n'.join(lines) + '\n')


def _seeds_cell(metric: str, mean: float, ci95: float) -> str:
  """A multi-seed report cell: the mean over seeds ± the 95% half-width, where there is one."""
  cell = metric_names.format_value(metric, mean)
  return f'{cell} ± {metric_names.format_value(metric, ci95)}' if np.isfinite(ci95) else cell


def seeds_markdown(config, summary: dict, seed_values: Sequence[int]) -> str:
  """The ``report.md`` of a multi-seed run, from ``seeds_report.summarise``'s ``summary``:
  each matrix as mean ± 95% interval over seeds, with the seeds' values after the last task."""
  names, records = summary['tasks'], summary['records']
  lines = [f'# Run report: method `{config.method}`, {len(seed_values)} seeds', '',
           f'Sequence `{config.data.sequence}`: {" -> ".join(names)}; seeds '
           f'{", ".join(str(s) for s in seed_values)} trained together in one process '
           '(`train.num_seeds`). Each seed\'s own report, pictures and matrices: '
           + ', '.join(f'[`seed{s}/`](seed{s}/report.md)' for s in range(len(seed_values)))
           + '.', '',
           f'Trained on devices: {jax.device_count()} x {jax.devices()[0].device_kind}.', '',
           'Cells: mean over seeds ± half-width of the 95% interval of the mean (Student\'s t, '
           f'n - 1 = {len(seed_values) - 1} degrees of freedom). Row: after learning that task; '
           f'column: test set of that task. {DIRECTIONS}']
  for metric, title in metric_names.METRIC_NAMES.items():
    if not records or metric not in records[-1]['evaluation']:
      continue
    lines += ['', f'### {title}', '']
    lines += _table(names, [r['name'] for r in records], [
        [_seeds_cell(metric, m, c) for m, c in zip(r['evaluation'][metric],
                                                   r['evaluation_ci95'][metric])]
        for r in records])
    last = records[-1]
    lines += ['', f'After {last["name"]}, per seed: ' + '; '.join(
        f'seed {seed}: ' + ', '.join(metric_names.format_value(metric, v) for v in row[metric])
        for seed, row in zip(seed_values, last['evaluation_per_seed']))]
  return '\n'.join(lines) + '\n'


def _timed_steps(record: TaskRecord) -> int:
  return record.steps if record.timed_steps is None else record.timed_steps


def _metric_cell(metrics: Dict[str, float], name: str, digits: int) -> str:
  """A report cell: the value, or 'n/a' for a method without that network (no critic)."""
  return f'{metrics[name]:.{digits}f}' if name in metrics else 'n/a'


def load_records(workdir) -> List[TaskRecord]:
  """The rows of the finished tasks from ``workdir/report.json``; a damaged file is a
  ConfigError (raised before the run writes anything)."""
  path = os.path.join(workdir, 'report.json')
  if not os.path.exists(path):
    return []
  try:
    with open(path) as f:
      return [TaskRecord(**r) for r in json.load(f)['records']]
  except (OSError, ValueError, KeyError, TypeError) as e:
    raise ConfigError(
        f'{path} cannot be read ({type(e).__name__}: {str(e)[:80]}); it holds the report rows '
        'of the finished tasks: restore it, or delete it (report.md then lists the tasks '
        'trained from now on; --mode=evaluate recomputes every row).') from None


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


def heatmaps(folder: str) -> Dict[str, np.ndarray]:
  """The forgetting heatmaps of ``folder`` (``matrices.write_matrices``) as uint8 [H, W, 3]."""
  from PIL import Image  # pylint: disable=g-import-not-at-top
  images = {}
  for name in sorted(os.listdir(folder)):
    if name.endswith('.png'):
      with Image.open(os.path.join(folder, name)) as image:
        images[f'eval/{name[:-4]}'] = np.asarray(image.convert('RGB'))
  return images
