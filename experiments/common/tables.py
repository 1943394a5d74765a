"""Markdown: table cells (missing values, mean ± 95% interval), the methods-by-task tables of
the paper, the forgetting table and the runs table with the exact commands."""

from __future__ import annotations

import math
import os
import sys
from typing import List, Mapping, Optional, Sequence

from .cli import METHOD_TITLES
from .paths import REPO_ROOT, display_path
from .readback import Interval, interval_over_seeds, load_eval, mean_or_none, seed_summaries
from .runner import RunResult, shell_line


def fmt(value, digits: int = 2) -> str:
  """A table cell: 'n/a' for a missing value, 'mean ± ci95' for an ``Interval``."""
  if value is None or (isinstance(value, float) and not math.isfinite(value)):
    return 'n/a'
  if isinstance(value, Interval) and math.isfinite(value.ci95):
    return f'{value:.{digits}f} ± {value.ci95:.{digits}f}'
  if isinstance(value, (int, float)):
    return f'{value:.{digits}f}'
  return str(value)


def seeds_note(rows: Sequence[Sequence[object]]) -> str:
  """The line under a table with cells of multi-seed runs ('' when it has none)."""
  counts = sorted({c.n for row in rows for c in row if isinstance(c, Interval)})
  if not counts:
    return ''
  return (f'mean ± half-width of the 95% interval over {" or ".join(map(str, counts))} seeds '
          "(Student's t)")


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
  """A markdown table of ``fmt`` cells, with ``seeds_note`` under it for multi-seed cells."""
  cells = [[str(c) for c in header]] + [[fmt(c) for c in row] for row in rows]
  lines = ['| ' + ' | '.join(cells[0]) + ' |', '|' + '---|' * len(header)]
  lines += ['| ' + ' | '.join(row) + ' |' for row in cells[1:]]
  note = seeds_note(rows)
  return '\n'.join(lines) + (f'\n\n{note}' if note else '')


def methods_by_task_table(names: Sequence[str], columns: Mapping[str, Optional[Sequence[float]]],
                          average: bool = True) -> str:
  """Rows: tasks (+ 'Average'); columns: one per method, as the paper's tables."""
  header = ['task'] + [METHOD_TITLES.get(m, m) for m in columns]
  rows = []
  for j, name in enumerate(names):
    rows.append([name] + [(values[j] if values and j < len(values) else None)
                          for values in columns.values()])
  if average:
    rows.append(['Average'] + [mean_or_none(v) for v in columns.values()])
  return markdown_table(header, rows)


FORGETTING_KEYS = ('final_average', 'diagonal_average', 'mean_forgetting')


def forgetting_cells(summary: Mapping, per_seed: Optional[Sequence[Mapping]]) -> List[object]:
  """The ``FORGETTING_KEYS`` of a run's summary (eval/<metric>.json); of a multi-seed run, each
  as mean ± 95% interval over the seeds' own summaries (``seed_summaries``)."""
  if not per_seed:
    return [summary[key] for key in FORGETTING_KEYS]
  return [None if any(s[key] is None for s in per_seed)
          else interval_over_seeds([s[key] for s in per_seed]) for key in FORGETTING_KEYS]


def forgetting_table(results: Mapping[str, RunResult], metrics: Sequence[str]) -> str:
  """Per method and metric: final-row average, diagonal average, mean forgetting."""
  rows = []
  for method, result in results.items():
    records = load_eval(result.workdir)
    for metric in metrics:
      summary = records.get(metric, {}).get('summary')
      if summary:
        rows.append([METHOD_TITLES.get(method, method), metric,
                     *forgetting_cells(summary, seed_summaries(result.workdir, metric))])
  return markdown_table(['method', 'metric', 'final-row average', 'diagonal average',
                         'mean forgetting (final - just learnt)'], rows)


def runs_section(results: Sequence[RunResult], out: Optional[str] = None) -> str:
  """Wall times and the exact commands (run from the repository root)."""
  rows = []
  for r in results:
    status = 'ok' if r.ok else f'failed: {r.error}'
    if r.reused:
      status += ' (reused a finished workdir)'
    elif r.resumed:
      status += ' (resumed; wall time of this invocation only)'
    rows.append([r.name, f'{r.seconds:.0f} s', status, f'`{display_path(r.log, out)}`'])
  commands = '\n'.join(shell_line(r.command) for r in results)
  script = shell_line(['python', os.path.relpath(os.path.abspath(sys.argv[0]), REPO_ROOT)]
                      + sys.argv[1:])
  return (f'Made by `{script}`.\n\n' +
          markdown_table(['run', 'wall time', 'status', 'log'], rows) +
          '\n\nCommands, run from the repository root:\n\n```bash\n' + commands + '\n```')


def metric_description(metric: str) -> str:
  from ltgans_jax.eval import metric_names  # pylint: disable=g-import-not-at-top
  return metric_names.METRIC_NAMES.get(metric, metric)
