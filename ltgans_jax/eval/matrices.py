"""Forgetting matrices: M[i][j] = a metric on task j after learning task i, one row per task
learnt (``task_eval.TaskEvaluator.evaluate`` gives the rows), their summaries
(``forgetting_summary``) and their files: per metric a JSON record and an annotated heatmap
(``write_matrices``, in a run's ``eval/``). How a report prints them: ``run.report``.
"""

from __future__ import annotations

import json
import os
from typing import Dict, Optional, Sequence

import numpy as np

from ltgans_jax import files
from ltgans_jax.eval import metric_names


def _as_matrix(matrix) -> np.ndarray:
  """Nested lists with None, or an array, -> float64 [R, T] with NaN for missing entries."""
  rows = [[np.nan if v is None else float(v) for v in row] for row in matrix]
  if not rows or any(len(row) != len(rows[0]) for row in rows):
    raise ValueError('the metric matrix must be a non-empty rectangle (pad with None/NaN).')
  array = np.array(rows, np.float64)
  if array.shape[0] > array.shape[1]:
    raise ValueError(f'matrix {array.shape}: more rows (tasks learnt) than columns (tasks).')
  return array


def forgetting_summary(matrix, lower_is_better: Optional[bool] = None) -> Dict[str, object]:
  """Summaries of M[i][j] = metric on task j after learning task i (0-based).

  ``matrix`` is [R, T] (R <= T tasks learnt so far), nested lists or an array, lower triangular:
  entries above the diagonal are ignored (None or NaN). The entries used must be finite: the
  diagonal and the final row up to the diagonal. ``lower_is_better``: the metric's direction
  (True for NLL, FID, KID; False for accuracies, shares, precision, recall, coverage; None for
  a metric without one, which gets no direction-dependent summaries).

  Returns a JSON-ready dict:
    final_average: mean of the final row over the R tasks seen.
    diagonal_average: mean of M[i][i], each task right after learning it.
    forgetting: [R] per task j, M[R-1][j] - M[j][j] (final minus right after learning). In the
      metric's units: for lower-is-better metrics (NLL, FID) positive means forgotten, for
      higher-is-better ones negative does. The last task's is 0 by definition.
    mean_forgetting: mean of ``forgetting`` over the first R-1 tasks (None when R = 1).
  With a direction, also the continual-learning libraries' measures (None when R = 1):
    max_forgetting: [R] per task j, the drop from its best value before the last row to the
      final one (Chaudhry et al. 2018, as Mammoth computes it): max_{l<R-1} M[l][j] - M[R-1][j]
      for higher-is-better metrics, M[R-1][j] - min_{l<R-1} M[l][j] for lower-is-better ones;
      positive means forgotten either way; the last task's is 0.
    mean_max_forgetting: its mean over the first R-1 tasks.
    backward_transfer: mean over the first R-1 tasks of M[R-1][j] - M[j][j] (Lopez-Paz and
      Ranzato 2017), negated for lower-is-better metrics, so that positive means the later
      tasks improved the earlier ones and negative means forgetting, for every metric.
  """
  m = _as_matrix(matrix)
  last = m.shape[0] - 1
  final, diagonal = m[last, :last + 1], np.diagonal(m)[:last + 1]
  for name, values in (('final row', final), ('diagonal', diagonal)):
    if not np.isfinite(values).all():
      raise ValueError(f'the {name} has missing entries: {values.tolist()}.')
  forgetting = final - diagonal
  summary = {
      'final_average': float(final.mean()),
      'diagonal_average': float(diagonal.mean()),
      'forgetting': [float(v) for v in forgetting],
      'mean_forgetting': float(forgetting[:last].mean()) if last else None,
  }
  if lower_is_better is None:
    return summary
  sign = -1.0 if lower_is_better else 1.0  # the metric in higher-is-better units
  max_forgetting = np.zeros(last + 1)
  for j in range(last):
    earlier = sign * m[j:last, j]  # the rows from learning task j up to the one before the last
    max_forgetting[j] = np.nanmax(earlier) - sign * final[j]
  summary.update(
      max_forgetting=[float(v) for v in max_forgetting],
      mean_max_forgetting=float(max_forgetting[:last].mean()) if last else None,
      backward_transfer=float(sign * forgetting[:last].mean()) if last else None)
  return summary


def save_forgetting(path_json: str, path_png: Optional[str], matrix, task_names: Sequence[str],
                    metric_name: str, lower_is_better: Optional[bool] = None
                    ) -> Dict[str, object]:
  """Writes the matrix and its ``forgetting_summary`` as JSON and as an annotated heatmap.

  Args:
    path_json: output JSON (metric name, task names, the matrix with null for missing entries,
      the summary).
    path_png: output PNG: rows "after learning task i", columns "evaluated on task j"; None
      draws none.
    matrix: [R, T], as for ``forgetting_summary``.
    task_names: T names.
    metric_name: e.g. 'paper NLL' or 'FID (own features)'; titles the plot.
    lower_is_better: the metric's direction, for ``forgetting_summary``.
  Returns:
    The summary dict.
  """
  m = _as_matrix(matrix)
  if len(task_names) != m.shape[1]:
    raise ValueError(f'{len(task_names)} task names for a matrix with {m.shape[1]} columns.')
  summary = forgetting_summary(m, lower_is_better)
  record = {
      'metric': metric_name,
      'task_names': list(task_names),
      'matrix': [[float(v) if np.isfinite(v) else None for v in row] for row in m],
      'summary': summary,
  }
  for path in (path_json, path_png or path_json):
    os.makedirs(os.path.dirname(path) or '.', exist_ok=True)
  files.write_atomically(path_json, json.dumps(record, indent=2))
  if path_png:
    _heatmap(path_png, m, task_names, metric_name, summary)
  return summary


def _heatmap(path: str, m: np.ndarray, task_names: Sequence[str], metric_name: str,
             summary: Dict[str, object]) -> None:
  """PNG heatmap of [R, T] with each finite value written in its cell."""
  # The object-oriented Agg canvas, not pyplot: no global backend switch, no GUI, thread-safe
  # enough for a training loop that also logs.
  from matplotlib.backends.backend_agg import FigureCanvasAgg  # pylint: disable=g-import-not-at-top
  from matplotlib.figure import Figure  # pylint: disable=g-import-not-at-top
  rows, cols = m.shape
  figure = Figure(figsize=(1.2 * cols + 2.5, 0.9 * rows + 1.8), dpi=100)
  FigureCanvasAgg(figure)
  ax = figure.add_subplot()
  masked = np.ma.masked_invalid(m)
  image = ax.imshow(masked, cmap='viridis', aspect='auto')
  figure.colorbar(image, ax=ax, label=metric_name)
  finite = m[np.isfinite(m)]
  middle = (finite.min() + finite.max()) / 2 if finite.size else 0.0
  for i in range(rows):
    for j in range(cols):
      if np.isfinite(m[i, j]):
        # Dark text on the bright end of viridis, light text on the dark end.
        ax.text(j, i, f'{m[i, j]:.4g}', ha='center', va='center', fontsize=9,
                color='black' if m[i, j] > middle else 'white')
  ax.set_xticks(range(cols), labels=list(task_names), rotation=30, ha='right')
  ax.set_yticks(range(rows), labels=list(task_names[:rows]))
  ax.set_xlabel('evaluated on task')
  ax.set_ylabel('after learning task')
  mean_forgetting = summary['mean_forgetting']
  ax.set_title(f'{metric_name}: final avg {summary["final_average"]:.4g}, forgetting '
               + ('n/a' if mean_forgetting is None else f'{mean_forgetting:.4g}'), fontsize=10)
  figure.tight_layout()
  figure.savefig(path)


def _padded(task_names: Sequence[str], rows_per_task, metric: str):
  """``metric``'s [R, T] matrix of the rows, None above the diagonal."""
  return [row[metric] + [None] * (len(task_names) - len(row[metric])) for row in rows_per_task]


def matrix_summaries(task_names: Sequence[str], rows_per_task) -> Dict[str, dict]:
  """Metric -> ``forgetting_summary`` of its matrix, for every metric every row has (rows
  measured before a metric existed lack it)."""
  summaries = {}
  for metric in metric_names.matrix_titles(rows_per_task[-1]):
    if all(metric in row for row in rows_per_task):
      summaries[metric] = forgetting_summary(_padded(task_names, rows_per_task, metric),
                                             metric_names.lower_is_better(metric))
  return summaries


def write_matrices(folder: str, task_names: Sequence[str], rows_per_task,
                   heatmaps: bool = True) -> Dict[str, dict]:
  """Saves each metric's forgetting matrix (the audit's included) as JSON, and as a heatmap
  when ``heatmaps`` (``config.eval.heatmaps``), in ``folder`` (a training run's
  ``workdir/eval/``); returns {metric: summary}."""
  summaries = {}
  os.makedirs(folder, exist_ok=True)
  for metric, title in metric_names.matrix_titles(rows_per_task[-1]).items():
    if not all(metric in row for row in rows_per_task):
      continue  # a metric added since the earlier rows were measured (a resumed run)
    summaries[metric] = save_forgetting(
        os.path.join(folder, f'{metric}.json'),
        os.path.join(folder, f'{metric}.png') if heatmaps else None,
        _padded(task_names, rows_per_task, metric), task_names, title,
        metric_names.lower_is_better(metric))
  return summaries
