"""Helpers shared by the experiment scripts (one script per table or figure of the paper).

A script turns its flags into override sets, runs ``python -m ltgans_jax.main`` once per
(method, setting) as a subprocess (log streamed to ``<workdir>.log``, wall time measured;
rerunning resumes, a finished run is reused), reads back what the workdirs hold
(``report.json``, ``eval/*.json``), and writes ``<out>/README.md`` with markdown tables, the
exact commands, wall times, the machine and how the setting differs from the paper, plus plots
and copied figures.

Nothing here changes the library; the one computation done in-process is
``student_reconstruction_error`` (Fig. 4b's MSE), from a workdir's final checkpoint.
"""

from __future__ import annotations

import os
# The scripts may compute in-process (MSE) while training subprocesses share a GPU: never let
# this process grab most of the accelerator's memory. Must precede any jax import.
os.environ.setdefault('XLA_PYTHON_CLIENT_PREALLOCATE', 'false')

import argparse  # pylint: disable=g-import-not-at-top,wrong-import-position
import dataclasses
import datetime
import glob
import importlib.util
import json
import logging
import math
import platform
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from typing import Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO_ROOT not in sys.path:
  sys.path.insert(0, REPO_ROOT)

# The methods the paper compares (``lgm``, ``curl``: ltgans_jax/baselines/), and this project's
# own baselines. A name ltgans_jax.methods.METHODS lacks is skipped with a note.
PAPER_METHODS = ('ltgans', 'curl', 'lgm')
BASELINE_METHODS = ('no_lakd', 'finetune', 'joint')
METHOD_TITLES = {
    'ltgans': 'LT-GANs',
    'curl': 'CURL',
    'lgm': 'LGM',
    'no_lakd': 'no LAKD (twins joint)',
    'finetune': 'fine-tuning',
    'joint': 'joint (all data)',
}

# Tiny networks and a few steps: checks that a script runs end to end, in minutes on 2 CPU cores.
# The numbers it produces mean nothing.
QUICK_OVERRIDES: Dict[str, object] = {
    'train.steps_per_task': 4,
    'train.batch_size': 8,
    'train.log_every': 2,
    'train.checkpoint_every': 2,
    'model.generator_width': 4,
    'model.critic_width': 4,
    'model.latent_dim': 8,
    'vae.width': 4,
    'vae.latent_dim': 4,
    'gan.critic_steps': 1,
    'eval.num_examples': 16,
    'eval.iwae_samples': 2,
    'eval.feature_net_steps': 5,
    'eval.grid_rows': 4,
    'data.image_size': 28,
    'data.channels': 1,
}

SIZES = ('paper', 'cpu', 'small')


def small_overrides(image_size: int = 28, channels: int = 1) -> Dict[str, object]:
  """A CPU-feasible setting for real runs: widths 16, batch 64, 2 critic steps per generator
  step, the evaluation on 500 test images per task."""
  return {
      'data.image_size': image_size,
      'data.channels': channels,
      'model.generator_width': 16,
      'model.critic_width': 16,
      'vae.width': 16,
      'vae.latent_dim': 32,
      'gan.critic_steps': 2,
      'optim.gan_learning_rate': 2e-4,
      'train.batch_size': 64,
      'train.log_every': 100,
      'train.checkpoint_every': 500,
      'eval.num_examples': 500,
      'eval.iwae_samples': 50,
      'eval.feature_net_steps': 500,
  }


def parse_assignments(items: Iterable[str]) -> Dict[str, str]:
  """['a.b=1', ...] -> {'a.b': '1'}; raises ValueError on an item without '='."""
  result = {}
  for item in items:
    key, sep, value = item.partition('=')
    key = key.strip()
    if key.startswith('--config.'):
      key = key[len('--config.'):]
    if not sep or not key:
      raise ValueError(f'--set {item!r}: expected KEY=VALUE, e.g. eval.iwae_samples=5000.')
    result[key] = value
  return result


def size_overrides(size: str, quick: bool, steps_per_task: Optional[int] = None,
                   extra: Optional[Mapping[str, object]] = None, image_size: int = 28,
                   channels: int = 1) -> Dict[str, object]:
  """The overrides of one script invocation, later entries winning: the size preset
  (``paper`` keeps the config's values), ``--quick``, ``--steps_per_task``, ``--set``.
  ``image_size``/``channels``: the image shape of the ``small`` and ``--quick`` presets."""
  if size not in SIZES:
    raise ValueError(f'size={size!r}; use one of {SIZES}.')
  overrides: Dict[str, object] = {}
  if size == 'small':
    overrides.update(small_overrides(image_size, channels))
  elif size == 'cpu':
    from ltgans_jax import config_base  # pylint: disable=g-import-not-at-top
    overrides.update(config_base.cpu_scale_values(image_size, channels))
  if quick:
    overrides.update(QUICK_OVERRIDES)
    overrides.update({'data.image_size': image_size, 'data.channels': channels})
  if steps_per_task is not None:
    overrides['train.steps_per_task'] = int(steps_per_task)
  overrides.update(extra or {})
  return overrides


# ------------------------------------------------------------------------------------------
# Flags.


def add_common_flags(parser: argparse.ArgumentParser, default_methods: Sequence[str]) -> None:
  parser.add_argument('--data_dir', required=True,
                      help='Folder holding one sub-folder per dataset (mnist/, fashion_mnist/, '
                      '...) in its published format.')
  parser.add_argument('--quick', action='store_true',
                      help='Tiny networks, 4 steps per task: a smoke test of the script; the '
                      'numbers mean nothing. Results go to a temporary folder unless --out.')
  parser.add_argument('--size', choices=SIZES, default='paper',
                      help="'paper': the config's sizes; 'cpu': our CPU-scale setting "
                      "(ltgans_jax.config_base.cpu_scale_values, what runs on a laptop); "
                      "'small': the earlier CPU preset, widths 16, batch 64, 2 critic "
                      'steps, for CPU runs.')
  parser.add_argument('--steps_per_task', type=int, default=None,
                      help="Training steps per task (default: the config's).")
  parser.add_argument('--methods', default=','.join(default_methods),
                      help='Comma-separated config.method values; unavailable ones are skipped '
                      'with a note.')
  add_folder_flags(parser)


def add_folder_flags(parser: argparse.ArgumentParser) -> None:
  """--out, --workdir_root and --set: what every script taking ``resolve_folders`` and
  ``parse_assignments`` reads."""
  parser.add_argument('--out', default=None,
                      help='Results folder (default experiments/results/<script>, or a '
                      'temporary folder with --quick).')
  parser.add_argument('--workdir_root', default=None,
                      help='Where the runs\' workdirs go (default workdirs/experiments/<script>, '
                      'or <out>/workdirs with --quick).')
  parser.add_argument('--set', action='append', default=[], metavar='KEY=VALUE',
                      help='More config overrides, e.g. --set eval.iwae_samples=5000 '
                      '(repeatable).')


def resolve_folders(args: argparse.Namespace, name: str) -> Tuple[str, str]:
  """(out, workdir_root) as absolute paths; quick results never land in experiments/results."""
  out = args.out
  if out is None:
    out = (os.path.join(tempfile.gettempdir(), 'ltgans_quick', name) if args.quick
           else os.path.join(REPO_ROOT, 'experiments', 'results', name))
  out = os.path.abspath(out)
  root = args.workdir_root
  if root is None:
    root = (os.path.join(out, 'workdirs') if args.quick
            else os.path.join(REPO_ROOT, 'workdirs', 'experiments', name))
  return out, os.path.abspath(root)


def setup_logging() -> None:
  logging.basicConfig(level=logging.INFO, format='%(asctime)s %(levelname)s %(message)s',
                      datefmt='%H:%M:%S')
  # Libraries that log through absl (orbax, when Fig. 4b restores checkpoints): warnings only.
  logging.getLogger('absl').setLevel(logging.WARNING)


def split_methods(requested: str) -> Tuple[List[str], List[str]]:
  """'ltgans,curl' -> (available, notes on the skipped ones); exits when none is available."""
  from ltgans_jax import methods as methods_lib  # pylint: disable=g-import-not-at-top
  available, notes = [], []
  for name in [m.strip() for m in requested.split(',') if m.strip()]:
    if name in methods_lib.METHODS:
      if name not in available:
        available.append(name)
    else:
      notes.append(f'method `{name}` ({METHOD_TITLES.get(name, name)}) is not implemented in '
                   f'ltgans_jax (available: {", ".join(sorted(methods_lib.METHODS))}); skipped.')
  if not available:
    sys.exit(f'error: --methods={requested!r} names no implemented method. ' + ' '.join(notes))
  return available, notes


def missing_folders(data_dir: str, folders: Sequence[str]) -> List[str]:
  return [f for f in folders if not os.path.isdir(os.path.join(data_dir, f))]


# ------------------------------------------------------------------------------------------
# Running the main command.


def config_path(name: str) -> str:
  """'msfo' -> 'configs/msfo.py' (relative to the repository root, where commands run)."""
  return f'configs/{name}.py'


def format_value(value) -> str:
  if isinstance(value, float):
    return repr(value)
  return str(value)


def build_command(config: str, workdir: str, overrides: Mapping[str, object],
                  mode: str = 'train', python: Optional[str] = None) -> List[str]:
  """The argv of ``python -m ltgans_jax.main`` for one run."""
  command = [python or sys.executable, '-m', 'ltgans_jax.main', f'--config={config}',
             f'--workdir={workdir}']
  if mode != 'train':
    command.append(f'--mode={mode}')
  command += [f'--config.{key}={format_value(value)}' for key, value in overrides.items()]
  return command


def shell_line(command: Sequence[str]) -> str:
  """The argv as one copy-pasteable shell line (run from the repository root)."""
  shown = list(command)
  if shown:
    shown[0] = display_path(shown[0])
  return shlex.join(shown)


@dataclasses.dataclass
class RunResult:
  name: str
  command: List[str]
  workdir: str
  log: str
  seconds: float
  returncode: int
  error: str = ''
  reused: bool = False   # finished earlier with the same command; not run again
  resumed: bool = False  # the workdir held checkpoints when this invocation started

  @property
  def ok(self) -> bool:
    return self.returncode == 0


RUN_RECORD = 'experiment_run.json'  # written into a workdir after a successful run


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


def _reusable(command: List[str], workdir: str) -> Optional[dict]:
  path = os.path.join(workdir, RUN_RECORD)
  if not (os.path.exists(path) and is_complete(workdir)):
    return None
  with open(path) as f:
    record = json.load(f)
  return record if record.get('command') == command[1:] else None


def _error_line(lines: Sequence[str]) -> str:
  """The library's one-sentence error ('error: ...' from main), else the last line."""
  for line in reversed(lines):
    if line.startswith('error: '):
      return line[len('error: '):].strip()
  for line in reversed(lines):
    if line.strip():
      return line.strip()
  return 'no output'


def run_config(name: str, config: str, workdir: str, overrides: Mapping[str, object],
               mode: str = 'train') -> RunResult:
  """Runs (or resumes) one config into ``workdir``; the log goes to ``<workdir>.log``.

  A workdir that a run with the identical command finished before is reused as it is.
  """
  command = build_command(config, workdir, overrides, mode)
  log_path = workdir.rstrip('/') + '.log'
  if mode == 'train':
    previous = _reusable(command, workdir)
    if previous is not None:
      logging.info('%s: finished earlier with the same command (%.0f s); reusing %s', name,
                   previous['seconds'], workdir)
      return RunResult(name, command, workdir, log_path, previous['seconds'], 0, reused=True)
  resumed = os.path.isdir(os.path.join(workdir, 'checkpoints'))
  os.makedirs(os.path.dirname(workdir) or '.', exist_ok=True)
  logging.info('%s: %s%s', name, shell_line(command), ' (resuming)' if resumed else '')
  env = dict(os.environ, PYTHONUNBUFFERED='1')
  tail: List[str] = []
  started = time.time()
  with open(log_path, 'a') as log:
    log.write(f'# {datetime.datetime.now().isoformat(timespec="seconds")} '
              f'{shell_line(command)}\n')
    process = subprocess.Popen(command, cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True, bufsize=1)
    try:
      for line in process.stdout:
        log.write(line)
        tail = (tail + [line.rstrip('\n')])[-40:]
        if ' done: ' in line or ('steps/s' in line and '| step ' in line):
          logging.info('%s: %s', name, line.rstrip('\n').split('] ', 1)[-1])
      returncode = process.wait()
    except BaseException:
      # Interrupted: SIGTERM makes the run save a checkpoint of its current step and stop, so
      # rerunning the script resumes it.
      process.terminate()
      process.wait()
      raise
  seconds = time.time() - started
  result = RunResult(name, command, workdir, log_path, seconds, returncode, resumed=resumed)
  if returncode != 0:
    result.error = _error_line(tail)
    logging.error('%s failed (exit %d) after %.0f s: %s (log: %s)', name, returncode, seconds,
                  result.error, log_path)
  elif mode == 'train':
    with open(os.path.join(workdir, RUN_RECORD), 'w') as f:
      json.dump({'command': command[1:], 'seconds': seconds}, f, indent=1)
    logging.info('%s finished in %.0f s', name, seconds)
  return result


def run_all(specs: Sequence[Tuple[str, str, str, Mapping[str, object]]],
            hint: str = '') -> List[RunResult]:
  """Runs (name, config, workdir, overrides) in order. If the first run fails (missing data, a
  bad override), nothing can be compared: exits with the library's message (and ``hint``) and
  writes no results. A later failure is recorded and the others still run."""
  results = []
  for i, (name, config, workdir, overrides) in enumerate(specs):
    result = run_config(name, config, workdir, overrides)
    if i == 0 and not result.ok:
      sys.exit(f'error: {result.error}\n{hint + chr(10) if hint else ""}'
               f'(full log: {result.log}; no results written)')
    results.append(result)
  return results


# ------------------------------------------------------------------------------------------
# Reading workdirs.


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
  """Mean ± 95% half-width of one number per seed (``ltgans_jax.seeds.interval95``)."""
  from ltgans_jax import seeds  # pylint: disable=g-import-not-at-top
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
  from ltgans_jax import seeds_report  # pylint: disable=g-import-not-at-top
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
  """Each seed's forgetting summary of ``metric`` (``evaluation.forgetting_summary`` of the
  seed's own matrix, from report.json's ``evaluation_per_seed``); None for a one-seed run or
  when a seed's matrix lacks entries."""
  report = load_report(workdir) or {'records': []}
  records = report['records']
  if not records or 'evaluation_per_seed' not in records[-1]:
    return None
  from ltgans_jax import evaluation  # pylint: disable=g-import-not-at-top
  try:
    return [evaluation.forgetting_summary(_seed_matrix(report, s, metric))
            for s in range(len(records[-1]['evaluation_per_seed']))]
  except (KeyError, IndexError, ValueError):
    return None


def devices_from_report(workdir: str) -> Optional[str]:
  """The 'devices: N x kind' that train.py writes into report.md."""
  path = os.path.join(workdir, 'report.md')
  if not os.path.exists(path):
    return None
  with open(path) as f:
    match = re.search(r'devices: ([^\n]*?)\.?$', f.read(), re.MULTILINE)
  return match.group(1) if match else None


def jax_devices() -> str:
  """``jax.devices()`` as a fresh interpreter sees it (asked in a subprocess so that this
  process never initialises, and holds, an accelerator)."""
  try:
    completed = subprocess.run(
        [sys.executable, '-c', 'import jax; print(jax.devices())'], cwd=REPO_ROOT,
        capture_output=True, text=True, timeout=300,
        env=dict(os.environ, XLA_PYTHON_CLIENT_PREALLOCATE='false'), check=False)
  except (OSError, subprocess.TimeoutExpired) as e:
    return f'unknown ({type(e).__name__})'
  lines = completed.stdout.strip().splitlines()
  return lines[-1] if completed.returncode == 0 and lines else 'unknown'


def cpu_name() -> str:
  try:
    with open('/proc/cpuinfo') as f:
      for line in f:
        if line.startswith('model name'):
          return line.split(':', 1)[1].strip()
  except OSError:
    pass
  return platform.processor() or platform.machine()


def machine_description(results: Sequence[RunResult]) -> str:
  reported = next((d for d in (devices_from_report(r.workdir) for r in results if r.ok) if d),
                  'unknown')
  return (f'`{platform.node()}`: {cpu_name()}, {os.cpu_count()} CPU cores visible; '
          f'`jax.devices()`: {jax_devices()}; the runs\' report.md: {reported}; Python '
          f'{platform.python_version()}, interpreter `{display_path(sys.executable)}`.')


def display_path(path: str, start: Optional[str] = None) -> str:
  """``path`` relative to ``start`` (or the repository root) when inside it, else absolute."""
  path = os.path.abspath(path)
  for base in ([start] if start else []) + [REPO_ROOT]:
    base = os.path.abspath(base)
    if path == base or path.startswith(base + os.sep):
      return os.path.relpath(path, base)
  return path


# ------------------------------------------------------------------------------------------
# Markdown.


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


# ------------------------------------------------------------------------------------------
# Configs: how a run differs from its config file (the paper's sizes).


def load_config_file(config: str):
  """get_config() of a config file (path relative to the repository root)."""
  path = os.path.join(REPO_ROOT, config)
  spec = importlib.util.spec_from_file_location(
      'experiment_config_' + re.sub(r'\W', '_', config), path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config()


def flatten(tree: Mapping, prefix: str = '') -> Dict[str, object]:
  flat = {}
  for key, value in tree.items():
    if isinstance(value, Mapping):
      flat.update(flatten(value, f'{prefix}{key}.'))
    else:
      flat[f'{prefix}{key}'] = list(value) if isinstance(value, tuple) else value
  return flat


def run_config_values(workdir: str) -> Dict[str, object]:
  with open(os.path.join(workdir, 'config.json')) as f:
    return flatten(json.load(f)['config'])


IGNORED_DIFFERENCES = ('data.data_dir', 'method')  # method: one run per method


def config_differences(config: str, workdir: str, ignore: Sequence[str] = ()) -> List[str]:
  """'key: file value -> run value' for every field the run changed from the config file."""
  reference = flatten(json.loads(load_config_file(config).to_json_best_effort()))
  actual = run_config_values(workdir)
  lines = []
  for key in sorted(actual):
    if key in IGNORED_DIFFERENCES or key in ignore:
      continue
    if reference.get(key) != actual[key]:
      lines.append(f'`{key}`: {reference.get(key)!r} -> {actual[key]!r}')
  return lines


def setting_section(config: str, workdir: str, quick: bool, notes: Sequence[str],
                    ignore: Sequence[str] = ()) -> str:
  """A plain statement of how these runs differ from the paper."""
  values = run_config_values(workdir)
  lines = []
  if quick:
    lines.append('**This is a `--quick` smoke run: tiny networks and a few steps per task; '
                 'its numbers say nothing about the method.**')
  lines.append(
      f'Images {values["data.image_size"]}x{values["data.image_size"]}x'
      f'{values["data.channels"]}; generator/critic widths {values["model.generator_width"]}/'
      f'{values["model.critic_width"]}, generator latent {values["model.latent_dim"]}; Student '
      f'width {values["vae.width"]}, latent {values["vae.latent_dim"]}, '
      + ('beta as given per run' if 'vae.beta' in ignore else f'beta {values["vae.beta"]}') +
      f'; batch {values["train.batch_size"]}; critic steps per generator step: '
      f'{values["gan.critic_steps"]}; '
      f'{values["train.steps_per_task"]} steps per task (the paper does not state its number '
      'of iterations); metrics on a class-stratified subset of '
      f'{values["eval.num_examples"]} test images of each task (eval.subset_seed='
      f'{values.get("eval.subset_seed", 0)}), IWAE with {values["eval.iwae_samples"]} samples.')
  differences = config_differences(config, workdir, ignore)
  if differences:
    lines.append(f'Changed from `{config}` (the paper\'s sizes where the paper gives them): '
                 + '; '.join(differences) + '.')
  else:
    lines.append(f'All values as in `{config}` (the paper\'s sizes where the paper gives them).')
  lines += list(notes)
  return '\n\n'.join(lines)


def metric_description(metric: str) -> str:
  from ltgans_jax import task_eval  # pylint: disable=g-import-not-at-top
  return task_eval.METRIC_NAMES.get(metric, metric)


# ------------------------------------------------------------------------------------------
# Files.


def copy_pictures(workdir: str, patterns: Sequence[str], dest_dir: str,
                  prefix: str = '') -> List[str]:
  """Copies workdir files matching the glob patterns into dest_dir (as prefix + basename);
  returns the copies' paths."""
  os.makedirs(dest_dir, exist_ok=True)
  copied = []
  for pattern in patterns:
    for path in sorted(glob.glob(os.path.join(workdir, pattern))):
      target = os.path.join(dest_dir, prefix + os.path.basename(path))
      shutil.copyfile(path, target)
      copied.append(target)
  return copied


def reset_outputs(out: str) -> None:
  """Removes what an earlier invocation wrote into ``out`` (README, results.json, plots,
  figures) so that no stale picture survives; workdirs and logs are left alone."""
  for name in ('figures', 'plots'):
    shutil.rmtree(os.path.join(out, name), ignore_errors=True)
  for name in ('README.md', 'results.json'):
    if os.path.exists(os.path.join(out, name)):
      os.remove(os.path.join(out, name))


def new_figure(width: float = 7.0, height: float = 4.0, ncols: int = 1):
  """A matplotlib Agg figure and its axes (no pyplot state, no GUI)."""
  from matplotlib.backends.backend_agg import FigureCanvasAgg  # pylint: disable=g-import-not-at-top
  from matplotlib.figure import Figure  # pylint: disable=g-import-not-at-top
  figure = Figure(figsize=(width, height), dpi=100)
  FigureCanvasAgg(figure)
  axes = figure.subplots(1, ncols, squeeze=False)[0]
  return figure, list(axes)


def write_readme(out: str, title: str, sections: Sequence[Tuple[str, str]]) -> str:
  """<out>/README.md: a title, then (heading, markdown) sections."""
  os.makedirs(out, exist_ok=True)
  lines = [f'# {title}', '',
           f'Written by the experiment script on '
           f'{datetime.datetime.now().isoformat(timespec="seconds")}.']
  for heading, body in sections:
    lines += ['', f'## {heading}', '', body.rstrip()]
  path = os.path.join(out, 'README.md')
  with open(path, 'w') as f:
    f.write('\n'.join(lines) + '\n')
  return path


def write_json(path: str, payload) -> None:
  os.makedirs(os.path.dirname(path) or '.', exist_ok=True)
  with open(path, 'w') as f:
    json.dump(payload, f, indent=1, default=str)


def results_payload(results: Sequence[RunResult], extra: Optional[Mapping] = None) -> dict:
  """What <out>/results.json holds: every run with its command, time and final rows."""
  runs = []
  for r in results:
    report = load_report(r.workdir) if r.ok else None
    runs.append({
        'name': r.name, 'command': shell_line(r.command), 'seconds': r.seconds,
        'ok': r.ok, 'error': r.error, 'reused': r.reused, 'resumed': r.resumed,
        'tasks': report['tasks'] if report else None,
        'final': (report['records'][-1]['evaluation'] if report and report['records']
                  else None),
    })
  return {'runs': runs, **(extra or {})}


def rel(path: str, start: str) -> str:
  return os.path.relpath(path, start)


# ------------------------------------------------------------------------------------------
# Fig. 4b: the Student's reconstruction error, computed from a workdir's final checkpoint.


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
                                 batch_size: int = 250) -> Dict[str, object]:
  """Squared error of the Student's mean reconstruction after the last finished task.

  Restores the last task-boundary checkpoint, encodes each task's evaluation subset of
  ``num_examples`` test images (default ``eval.num_examples``; ``ltgans_jax.eval_subset``), decodes the posterior mean, and compares
  sigmoid(decoder logits) with the image, pixels in [0, 1]. Returns
  {'tasks': [...], 'sse': [...] per-image sum over pixels (the reconstruction part of the
  paper's NLL, deterministic), 'mse': [...] per-pixel mean, 'num_examples': n}.
  """
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  from ltgans_jax import checkpointing, durations, eval_subset, methods  # pylint: disable=g-import-not-at-top
  from ltgans_jax.data import sequences  # pylint: disable=g-import-not-at-top
  from ltgans_jax.steps import images_from_uint8  # pylint: disable=g-import-not-at-top

  config = config_from_workdir(workdir)
  report = load_report(workdir)
  if not report or not report['records']:
    raise ValueError(f'{workdir} has no finished task (no report.json records).')
  finished = len(report['records'])
  tasks = sequences.build_sequence(config)
  method = methods.build(config)
  template = method.init_state(jax.random.key(config.seed))
  task_steps = durations.task_steps(config, method, [len(t.train.images) for t in tasks])
  manager = checkpointing.make_manager(config, workdir, task_steps)
  try:
    step = durations.global_step(task_steps, finished - 1, task_steps[finished - 1])
    state = checkpointing.restore_step(manager, step, template)
  finally:
    manager.close()
  vae = method.vae_view(state)  # the Student; for CURL its most likely component

  @jax.jit
  def batch_sse(batch_uint8):
    images = images_from_uint8(batch_uint8)
    mean, _ = vae.encode(images)
    recon = jax.nn.sigmoid(vae.decode(mean))
    return jnp.sum(jnp.square(recon - (images + 1) / 2), axis=(1, 2, 3))

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


# ------------------------------------------------------------------------------------------
# Shared by the NLL tables (Tables 1 and 3, Fig. 4a).

NLL_METRICS = ('nll_paper', 'nll_iwae')
FID_METRICS = ('fid_own', 'fid_inception')


def grouped_bars(path: str, names: Sequence[str],
                 columns: Mapping[str, Optional[Sequence[float]]], ylabel: str,
                 title: str) -> str:
  """Bar plot: one group per task, one bar per method (missing values left out)."""
  import numpy as np  # pylint: disable=g-import-not-at-top
  figure, (ax,) = new_figure(max(6.0, 0.9 * len(names) * max(1, len(columns)) / 2 + 3), 4.2)
  width = 0.8 / max(1, len(columns))
  x = np.arange(len(names))
  for i, (method, values) in enumerate(columns.items()):
    if not values:
      continue
    heights = [v if v is not None else np.nan for v in values[:len(names)]]
    ax.bar(x[:len(heights)] + (i - (len(columns) - 1) / 2) * width, heights, width,
           label=METHOD_TITLES.get(method, method))
  ax.set_xticks(x, labels=list(names), rotation=30, ha='right')
  ax.set_ylabel(ylabel)
  ax.set_title(title, fontsize=10)
  ax.margins(y=0.25)  # Room above the bars for the legend.
  ax.legend(fontsize=8, loc='upper center', ncol=min(4, max(1, len(columns))))
  figure.tight_layout()
  os.makedirs(os.path.dirname(path), exist_ok=True)
  figure.savefig(path)
  return path


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


def method_runs(methods: Sequence[str], config: str, root: str, overrides: Mapping[str, object],
                prefix: str = '') -> List[Tuple[str, str, str, Dict[str, object]]]:
  """(name, config, workdir, overrides) of one run per method."""
  return [(f'{prefix}{m}', config, os.path.join(root, f'{prefix}{m}'),
           {**overrides, 'method': m}) for m in methods]


def finish(out: str, title: str, sections: List[Tuple[str, str]], results: Sequence[RunResult],
           extra: Optional[Mapping] = None) -> str:
  """Appends the runs and the machine to ``sections``, writes <out>/README.md and
  <out>/results.json, prints a two-line summary; returns the README's path."""
  sections = list(sections) + [('Runs', runs_section(results, out)),
                               ('Machine', machine_description(results))]
  readme = write_readme(out, title, sections)
  write_json(os.path.join(out, 'results.json'), results_payload(results, extra))
  print(f'{title}\nREADME: {readme}')
  return readme
