"""The report of a multi-seed run (``train.num_seeds`` > 1): every seed's numbers summed up.

Each seed writes its own ``report.json`` into ``workdir/seed<s>/`` (``train``); after every task
this module reads them back and writes into the workdir itself:

* ``report.json``: the one-seed schema (``tasks``, ``records`` with ``evaluation`` = the mean
  over seeds, ``forgetting`` of the mean matrices), so readers of one-seed reports read means,
  plus, per record, ``evaluation_std``, ``evaluation_ci95`` (half-width of the 95% interval of
  the mean, Student's t) and ``evaluation_per_seed``, and the list of ``seeds``;
* ``eval/<metric>.json`` and heatmaps of the mean matrices (``matrices.write_matrices``);
* ``report.md``: each matrix as mean +- 95% interval, with the seeds' values below it
  (``report.seeds_markdown``).
"""

from __future__ import annotations

import json
import os
import shutil
from typing import Dict, List, Sequence

import numpy as np

from ltgans_jax import files
from ltgans_jax.eval import feature_net, matrices
from ltgans_jax.run import report as report_lib, seeds as seeds_lib


def share_feature_net(first_seed_dir: str, seed_dir: str) -> None:
  """Copies the FID feature network of the first seed into another seed's folder, unless it
  has one (``feature_net.FILE_NAME``)."""
  source = os.path.join(first_seed_dir, feature_net.FILE_NAME)
  target = os.path.join(seed_dir, feature_net.FILE_NAME)
  if os.path.exists(source) and not os.path.exists(target):
    shutil.copyfile(source, target + '.tmp')
    os.replace(target + '.tmp', target)


def _read(seed_dir: str) -> dict:
  with open(os.path.join(seed_dir, 'report.json')) as f:
    return json.load(f)


def summarise(reports: Sequence[dict]) -> dict:
  """The one-seed report schema over the tasks every seed has finished, with means,
  spreads and intervals over seeds (see the module docstring)."""
  tasks = reports[0]['tasks']
  finished = min(len(r['records']) for r in reports)
  records = []
  for t in range(finished):
    per_seed = [r['records'][t] for r in reports]
    metrics = [m for m in per_seed[0]['evaluation']
               if all(m in p['evaluation'] for p in per_seed)]
    mean, std, ci95 = {}, {}, {}
    for metric in metrics:
      cells = [seeds_lib.interval95([p['evaluation'][metric][j] for p in per_seed])
               for j in range(len(per_seed[0]['evaluation'][metric]))]
      mean[metric] = [c['mean'] for c in cells]
      std[metric] = [c['std'] for c in cells]
      ci95[metric] = [c['ci95'] for c in cells]
    last = {name: float(np.mean([p['last_metrics'][name] for p in per_seed]))
            for name in per_seed[0]['last_metrics']
            if all(name in p['last_metrics'] for p in per_seed)}
    records.append({
        'name': per_seed[0]['name'], 'steps': per_seed[0]['steps'],
        'seconds': per_seed[0]['seconds'], 'last_metrics': last, 'evaluation': mean,
        'evaluation_std': std, 'evaluation_ci95': ci95,
        'evaluation_per_seed': [p['evaluation'] for p in per_seed],
        'pictures': {name: f'seed0/{path}' for name, path in per_seed[0]['pictures'].items()},
        'evaluation_setting': per_seed[0].get('evaluation_setting', '')})
  return {'tasks': tasks, 'records': records}


def write(workdir: str, config, seed_dirs: Sequence[str]) -> Dict[str, List[float]]:
  """Writes the workdir's report.md, report.json and eval/ from the seeds' reports; returns
  the newest evaluation's means over seeds (metric -> values on the tasks seen)."""
  summary = summarise([_read(d) for d in seed_dirs])
  seed_values = seeds_lib.seed_values(config)
  rows = [r['evaluation'] for r in summary['records']]
  summary['forgetting'] = matrices.write_matrices(os.path.join(workdir, 'eval'),
                                                  summary['tasks'], rows,
                                                  config.eval.heatmaps)
  summary['seeds'] = seed_values
  files.write_atomically(os.path.join(workdir, 'report.json'), json.dumps(summary, indent=1))
  files.write_atomically(os.path.join(workdir, 'report.md'),
                         report_lib.seeds_markdown(config, summary, seed_values))
  return rows[-1] if rows else {}


def intervals(report: dict, metric: str) -> List[float]:
  """The 95% half-widths of ``metric`` after the last finished task of a multi-seed report;
  [] for a one-seed report."""
  if not report.get('records') or 'evaluation_ci95' not in report['records'][-1]:
    return []
  return list(report['records'][-1]['evaluation_ci95'].get(metric, []))
