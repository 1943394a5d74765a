"""Reads back what a workdir holds: ``report.json`` (one-seed and multi-seed rows, means with
their 95% intervals), ``eval/*.json`` (the forgetting matrices and summaries), ``config.json``,
and, the one computation done in-process, Fig. 4b's reconstruction error from a checkpoint.
"""

from __future__ import annotations

import glob
import json
import math
import os
from typing import Dict, List, Mapping, Optional, Sequence


def load_report(workdir: str) -> Optional[dict]:
  path = os.path.join(workdir, 'report.json')
  if not os.path.exists(path):
    return None
  with open(path) as f:
    return json.load(f)


def is_complete(workdir: str) -> bool:
  """Every task of the sequence has a record in report.json."""
  report = load_report(workdir)
  return bool(report) and len(report['records']) == len(report['tasks'])


def load_eval(workdir: str) -> Dict[str, dict]:
  """{metric: {'metric', 'task_names', 'matrix', 'summary'}} from workdir/eval/*.json."""
  records = {}
  for path in sorted(glob.glob(os.path.join(workdir, 'eval', '*.json'))):
    with open(path) as f:
      record = json.load(f)
    if isinstance(record, dict) and 'matrix' in record:
      records[os.path.splitext(os.path.basename(path))[0]] = record
  return records


def task_names(workdir: str) -> List[str]:
  report = load_report(workdir)
  return list(report['tasks']) if report else []


class Interval(float):
  """A mean over the seeds of a multi-seed run (``train.num_seeds`` > 1) that carries the
  half-width of its 95% interval (``ci95``, Student's t) and the number of seeds (``n``):
  ``fmt`` prints it as 'mean ± ci95'; arithmetic on it gives plain floats (plots, averages)."""
  __slots__ = ('ci95', 'n')

  def __new__(cls, mean: Optional[float], ci95: Optional[float], n: int) -> 'Interval':
    value = super().__new__(cls, math.nan if mean is None else mean)
    value.ci95 = math.nan if ci95 is None else float(ci95)
    value.n = int(n)
    return value


class SeedRow(list):
  """One metric on every task (``Interval`` each) of a multi-seed run, with each seed's own
  values (``per_seed``: one list per seed), so that ``mean_or_none`` averages per seed."""

  def __init__(self, values: Sequence[Interval], per_seed: Sequence[Optional[Sequence[float]]]):
    super().__init__(values)
    self.per_seed = list(per_seed)


def interval_over_seeds(values: Sequence[float]) -> Interval:
  """Mean ± 95% half-width of one number per seed (``ltgans_jax.run.seeds.interval95``)."""
  from ltgans_jax.run import seeds  # pylint: disable=g-import-not-at-top
  cell = seeds.interval95(values)
  return Interval(cell['mean'], cell['ci95'], cell['n'])


def record_row(record: Mapping, metric: str) -> Optional[List[float]]:
  """``metric`` on every task from one report.json record: the list as stored for a one-seed
  run, a ``SeedRow`` of means ± 95% half-widths for a multi-seed one; None if absent."""
  values = record['evaluation'].get(metric)
  if values is None or 'evaluation_per_seed' not in record:
    return values
  per_seed = [p.get(metric) for p in record['evaluation_per_seed']]
  ci95 = record.get('evaluation_ci95', {}).get(metric) or [math.nan] * len(values)
  return SeedRow([Interval(m, c, len(per_seed)) for m, c in zip(values, ci95)], per_seed)


def final_row(workdir: str, metric: str) -> Optional[List[float]]:
  """The metric on every task after the last finished task (None if absent); for a multi-seed
  run the means over seeds, each carrying its 95% interval (``record_row``)."""
  report = load_report(workdir)
  if not report or not report['records']:
    return None
  return record_row(report['records'][-1], metric)


def final_interval(workdir: str, metric: str) -> Optional[List[float]]:
  """The half-widths of the 95% intervals of ``final_row`` of a multi-seed run
  (``seeds_report.intervals``); None for a one-seed run or an absent metric."""
  from ltgans_jax.run import seeds_report  # pylint: disable=g-import-not-at-top
  report = load_report(workdir)
  return (seeds_report.intervals(report, metric) or None) if report else None


def per_task_after_each(workdir: str, metric: str) -> List[Optional[float]]:
  """The first value of ``metric`` after each finished task (for the *_all metrics)."""
  report = load_report(workdir) or {'records': []}
  return [(record_row(r, metric) or [None])[0] for r in report['records']]


def mean_or_none(values: Optional[Sequence[Optional[float]]]) -> Optional[float]:
  """The mean over tasks; of a ``SeedRow``, the mean over seeds of each seed's mean over tasks,
  with its 95% interval (an ``Interval``)."""
  if not values or any(v is None or not math.isfinite(v) for v in values):
    return None
  if isinstance(values, SeedRow):
    averages = [mean_or_none(row) for row in values.per_seed]
    return None if None in averages else interval_over_seeds(averages)
  return sum(values) / len(values)


def _seed_matrix(report: Mapping, seed: int, metric: str) -> List[List[Optional[float]]]:
  """One seed's matrix of ``metric`` (row: after task i), padded with None to the tasks."""
  rows = [r['evaluation_per_seed'][seed][metric] for r in report['records']]
  return [row + [None] * (len(report['tasks']) - len(row)) for row in rows]


def seed_summaries(workdir: str, metric: str) -> Optional[List[dict]]:
  """Each seed's forgetting summary of ``metric`` (``matrices.forgetting_summary`` of the
  seed's own matrix, from report.json's ``evaluation_per_seed``); None for a one-seed run or
  when a seed's matrix lacks entries."""
  report = load_report(workdir) or {'records': []}
  records = report['records']
  if not records or 'evaluation_per_seed' not in records[-1]:
    return None
  from ltgans_jax.eval import matrices  # pylint: disable=g-import-not-at-top
  try:
    return [matrices.forgetting_summary(_seed_matrix(report, s, metric))
            for s in range(len(records[-1]['evaluation_per_seed']))]
  except (KeyError, IndexError, ValueError):
    return None


def _tuples(value):
  """JSON lists back to tuples (config fields that are tuples, and must hash)."""
  if isinstance(value, dict):
    return {k: _tuples(v) for k, v in value.items()}
  if isinstance(value, list):
    return tuple(_tuples(v) for v in value)
  return value


def config_from_workdir(workdir: str):
  """The full config a workdir was trained with (its config.json) as a ConfigDict."""
  import ml_collections  # pylint: disable=g-import-not-at-top
  with open(os.path.join(workdir, 'config.json')) as f:
    return ml_collections.ConfigDict(_tuples(json.load(f)['config']))


def student_reconstruction_error(workdir: str, num_examples: Optional[int] = None,
                                 batch_size: int = 250,
                                 seed_index: Optional[int] = None) -> Dict[str, object]:
  """Squared error of the Student's mean reconstruction after the last finished task.

  Restores the last task-boundary checkpoint, encodes each task's evaluation subset of
  ``num_examples`` test images (default ``eval.num_examples``; ``ltgans_jax.eval.eval_subset``),
  decodes the posterior mean, and compares sigmoid(decoder logits) with the image, pixels in
  [0, 1]. ``seed_index``: which seed of a workdir that trained several (``train.num_seeds``);
  None for a one-seed workdir.

  Returns {'tasks': [...], 'sse': [...] per-image sum over pixels (the reconstruction
  part of the paper's NLL, deterministic), 'mse': [...] per-pixel mean, 'num_examples': n}.
  """
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  from ltgans_jax import api, pixels  # pylint: disable=g-import-not-at-top
  from ltgans_jax.eval import eval_subset  # pylint: disable=g-import-not-at-top
  from ltgans_jax.run import seeds  # pylint: disable=g-import-not-at-top

  report_dir = workdir if seed_index is None else seeds.seed_workdir(workdir, seed_index)
  report = load_report(report_dir)
  if not report or not report['records']:
    raise ValueError(f'{report_dir} has no finished task (no report.json records).')
  finished = len(report['records'])
  # The library's own opening of a workdir (its config.json, task sequence, method, and the
  # checkpoint at the end of the last finished task), as ``--mode=evaluate`` restores it.
  run = api.Run.open(workdir, after_task=finished - 1, seed_index=seed_index)
  config, tasks = run.config, run.tasks
  vae = run.method.vae_view(run.state)  # the Student; for CURL its most likely component

  @jax.jit
  def batch_sse(batch_uint8):
    images = pixels.from_uint8(batch_uint8)
    mean, _ = vae.encode(images)
    recon = jax.nn.sigmoid(vae.decode(mean))
    return jnp.sum(jnp.square(recon - pixels.to_unit_interval(images)), axis=(1, 2, 3))

  count = num_examples or config.eval.num_examples
  sse, mse = [], []
  subsets = eval_subset.task_subsets([t.test.labels for t in tasks], count,
                                     config.eval.get('subset_seed', 0))
  for task, subset in zip(tasks[:finished], subsets):
    images = task.test.images[subset]
    total = sum(float(jnp.sum(batch_sse(images[i:i + batch_size])))
                for i in range(0, len(images), batch_size))
    sse.append(total / len(images))
    mse.append(sse[-1] / float(np.prod(images.shape[1:])))
  return {'tasks': [t.name for t in tasks[:finished]], 'sse': sse, 'mse': mse,
          'num_examples': count}
