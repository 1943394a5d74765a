"""Shared by the NLL tables (Tables 1 and 3, Fig. 4a): the per-task NLL and FID after the last
task, methods side by side, the forgetting summaries, a bar plot and the forgetting heatmaps."""

from __future__ import annotations

import os
from typing import List, Mapping, Tuple

from .cli import METHOD_TITLES
from .output import copy_pictures
from .paths import rel
from .plots import grouped_bars
from .readback import final_row, task_names
from .runner import RunResult
from .tables import forgetting_table, methods_by_task_table, metric_description

NLL_METRICS = ('nll_paper', 'nll_iwae')
FID_METRICS = ('fid_own', 'fid_inception')


def nll_sections(results: Mapping[str, RunResult], out: str,
                 plot_title: str) -> List[Tuple[str, str]]:
  """Per-task NLL after the last task, methods side by side (both measures, each named), the
  same for the FID of each method's samples, the forgetting summaries, a bar plot and each
  method's forgetting heatmaps."""
  finished = {m: r for m, r in results.items() if r.ok}
  names = next((task_names(r.workdir) for r in finished.values()), [])
  sections = []
  for metric in NLL_METRICS:
    columns = {m: (final_row(r.workdir, metric) if r.ok else None) for m, r in results.items()}
    plot = grouped_bars(os.path.join(out, 'plots', f'{metric}_final.png'), names, columns,
                        metric_description(metric), f'{plot_title}: {metric} after the last task')
    sections.append((
        f'{metric}: {metric_description(metric)}, after learning the whole sequence',
        'Lower is better. Rows: test set of each task; columns: methods.\n\n' +
        methods_by_task_table(names, columns) + f'\n\n![{metric}]({rel(plot, out)})'))
  for metric in FID_METRICS:
    columns = {m: (final_row(r.workdir, metric) if r.ok else None) for m, r in results.items()}
    if not any(columns.values()):
      continue
    sections.append((
        f'{metric}: {metric_description(metric)} of each method\'s samples, after learning the '
        'whole sequence',
        'Lower is better. Rows: test set of each task; columns: methods. The samples are the '
        'Assistant\'s for the LT-GANs family (LT-GANs, no LAKD, fine-tuning, joint) and the '
        'VAE\'s (prior samples decoded) for CURL and LGM; the feature network of `fid_own` is '
        'trained per run on the same images with the same seed, so its values compare across '
        'methods of one table but are not on the Inception scale.\n\n' +
        methods_by_task_table(names, columns)))
  sections.append(('Forgetting (from each run\'s eval/*.json)',
                   forgetting_table(finished, NLL_METRICS) + '\n\nMean forgetting: mean over '
                   'the earlier tasks of (value after the last task - value right after learning '
                   'that task); positive means forgotten.'))
  heatmaps = []
  for method, result in finished.items():
    for path in copy_pictures(result.workdir, ['eval/nll_paper.png', 'eval/nll_iwae.png'],
                              os.path.join(out, 'figures'), f'{method}_'):
      heatmaps.append(f'- {METHOD_TITLES.get(method, method)}, '
                      f'{os.path.basename(path)[len(method) + 1:-4]}: '
                      f'![{method}]({rel(path, out)})')
  sections.append(('Forgetting matrices (row: after learning task i; column: task j)',
                   '\n'.join(heatmaps) or 'none'))
  return sections
