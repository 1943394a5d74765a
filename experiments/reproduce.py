"""The paper reproduced: one driver that plans, runs, resumes and reports any set of the
paper's artefacts (``experiments/paper_specs.py``: Tables 1-3, Figs. 2-4).

Usage (from the repository root):

  python experiments/reproduce.py --data_dir=D [--artefacts=table3,fig4b] [--seeds=3]
      [--size=cpu|paper] [--batch_seeds] [--steps_per_task=N] [--quick]
      [--workdir_root=workdirs/paper] [--results=experiments/results/paper]
      [--plan_only] [--report_only] [--max_runs=N] [--jobs=N] [--seconds_per_step=X]
      [--set KEY=VALUE]

What it does, in order:

1. **Plans**: every run of the chosen artefacts (one ``python -m ltgans_jax.main`` per method
   and seed, or per method with ``--batch_seeds``: ``--config.train.num_seeds=S`` holds S seeds
   in one run, each seed's report in ``workdir/seed<s>/``, what a GPU wants), its steps, its
   estimated CPU time, and whether it is done: its workdir
   (``<workdir_root>/<size>/<artefact>/<run>``) holds a finished run (``report.json`` with a
   record for every task), or ``<results>`` already holds every seed's file of it at the same
   setting and overrides (a run finished on another machine, or whose workdir is gone, once
   its per-seed files are committed); either is reused. An artefact drawn from another's runs
   (``Artefact.drawn_from``: Figs. 2-3 at the cpu size, from Fig. 4b's LT-GANs runs) plans
   those runs, once, and gets its pictures when they are collected.
   The estimate is seconds per step x steps x seeds, the seconds per step measured: by the
   committed per-seed files of earlier runs of this driver (``<results>/*/*.json``, same config
   and method), else by the ``--size=cpu`` runs committed by the scripts it replaced
   (``paper_specs.EARLIER_CPU``), else ``--seconds_per_step``; the plan says which. Wall times
   include the evaluation after each task.
2. **Runs** what is not finished, in plan order; rerunning the command resumes an interrupted run
   from its checkpoints (Ctrl-C or SIGTERM stops the run after saving a checkpoint) and skips the
   finished ones. A workdir trained with other settings (steps, beta, ...) stops the driver.
   ``--jobs=N`` trains N runs at once, each pinned to its own 1/N of the CPUs. Every run reads
   and fills the FID feature-network cache ``<workdir_root>/feature_nets``
   (``eval.feature_net_cache``): the methods of one seed share one classifier, trained once.
3. **Copies** each finished seed's numbers into ``<results>/<artefact>/<run>_seed<s>.json`` (the
   per-task values after the last task, the matrices, wall time, command, commit) and its last
   sample grids into ``<results>/<artefact>/figures/``.
4. **Reports** ``<results>/README.md`` from those files alone: per artefact the paper's numbers,
   ours as mean ± 95% interval over seeds (Student's t), the orderings the paper claims and the
   measured ones, a verdict (reproduced / not reproduced / not runnable here / not yet run;
   marked provisional while a compared run has fewer per-seed files than the plan, and
   "undecided so far" then where no ordering is reversed with the intervals apart), and the
   grids. ``--report_only`` rewrites the README without planning or running anything.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import dataclasses
import datetime
import glob
import json
import logging
import math
import os
import queue
import re
import signal
import statistics
import sys
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

import common
import paper_specs

common.setup()  # before anything imports jax (see common.setup)

DEFAULT_RESULTS = os.path.join(common.REPO_ROOT, 'experiments', 'results', 'paper')
DEFAULT_WORKDIRS = os.path.join(common.REPO_ROOT, 'workdirs', 'paper')
SIZES = ('cpu', 'paper')
DRIVER_RECORD = 'reproduce_run.json'  # in a workdir: the commit and wall time that made it
VERDICTS = ('reproduced', 'not reproduced', 'undecided so far', 'not runnable here',
            'not yet run')
DONE = ('finished', 'recorded')  # statuses of a run that is not trained again
# Paths on this machine, not settings: neither compared with a workdir's values nor recorded.
# The feature-network cache: every method of one seed and config measures FID with the network
# the first of them trained (``eval.feature_net_cache``).
MACHINE_KEYS = ('data.data_dir', 'eval.feature_net_cache')
NOTES_FILE = 'NOTES.md'  # <results>/<artefact>/NOTES.md: written by hand, quoted by the report


# ----------------------------------------------------------------------------- planning


@dataclasses.dataclass
class PlannedRun:
  artefact: str
  spec: paper_specs.RunSpec
  name: str  # the workdir's name
  seeds: List[int]
  workdir: str
  config: str
  overrides: Dict[str, object]
  steps: int  # per seed, all tasks
  status: str = 'to run'  # 'finished' (reused), 'recorded' (its per-seed files reused),
  #                         'to resume', 'to run'
  estimate_s: Optional[float] = None

  @property
  def batched(self) -> bool:
    return len(self.seeds) > 1

  def seed_dirs(self) -> List[str]:
    """Where each seed's report.json is (``ltgans_jax.run.seeds.report_dirs``)."""
    if not self.batched:
      return [self.workdir]
    return [os.path.join(self.workdir, f'seed{i}') for i in range(len(self.seeds))]


def setting_overrides(args) -> Dict[str, object]:
  """The overrides every run of this invocation shares: --quick, --steps_per_task, --set."""
  overrides: Dict[str, object] = {}
  if args.quick:
    overrides.update(common.QUICK_OVERRIDES)
  if args.steps_per_task is not None:
    overrides['train.steps_per_task'] = int(args.steps_per_task)
  overrides.update(common.parse_assignments(args.set))
  return overrides


def setting_label(args) -> str:
  """What the per-seed files record as their setting; the report compares like with like."""
  label = args.size + (' quick' if args.quick else '')
  if args.steps_per_task is not None:
    label += f', {args.steps_per_task} steps per task'
  extra = common.parse_assignments(args.set)
  if extra:
    label += ', ' + ', '.join(f'{k}={v}' for k, v in sorted(extra.items()))
  return label


def steps_per_task(config_file: str, overrides: Mapping[str, object]) -> int:
  if 'train.steps_per_task' in overrides:
    return int(overrides['train.steps_per_task'])
  config = common.load_config_file(config_file)
  if config.train.get('epochs_per_task', 0):
    raise ValueError(f'{config_file} counts epochs; give --steps_per_task for the plan.')
  return int(config.train.steps_per_task)


def _same(a, b) -> bool:
  try:
    return math.isclose(float(a), float(b))
  except (TypeError, ValueError):
    return str(a) == str(b) or (isinstance(b, list) and str(tuple(b)) == str(a))


def workdir_conflicts(workdir: str, overrides: Mapping[str, object]) -> List[str]:
  """'key: workdir value != planned value' for the planned overrides the workdir's config.json
  contradicts (``MACHINE_KEYS`` aside: the data and the cache may move)."""
  path = os.path.join(workdir, 'config.json')
  if not os.path.exists(path):
    return []
  values = common.run_config_values(workdir)
  return [f'{k}: {values.get(k)!r} != {v!r}' for k, v in overrides.items()
          if k not in MACHINE_KEYS and k in values and not _same(v, values[k])]


def run_status(run: PlannedRun) -> str:
  if all(common.is_complete(d) for d in run.seed_dirs()) and common.is_complete(run.workdir):
    return 'finished'
  if os.path.isdir(os.path.join(run.workdir, 'checkpoints')):
    return 'to resume'
  return 'to run'


def seed_file(results: str, run: PlannedRun, seed: int) -> str:
  return os.path.join(results, run.artefact, f'{run.spec.name}_seed{seed}.json')


# What says which seeds a run holds, not how they were trained (batched or one per run).
SEED_KEYS = (*MACHINE_KEYS, 'seed', 'train.num_seeds')


def _training_overrides(overrides: Mapping[str, object]) -> dict:
  return json.loads(json.dumps({k: v for k, v in overrides.items() if k not in SEED_KEYS},
                               sort_keys=True))


def is_recorded(run: PlannedRun, args) -> bool:
  """Whether ``args.results`` holds every seed's file of ``run`` made with this invocation's
  setting, config and overrides (seeds batched or not: their numbers are the same), so that
  the run needs neither training nor its workdir."""
  wanted = _training_overrides(run.overrides)
  for seed in run.seeds:
    path = seed_file(args.results, run, seed)
    if not os.path.exists(path):
      return False
    with open(path) as f:
      record = json.load(f)
    if (record.get('seed') != seed or record.get('setting') != setting_label(args)
        or record.get('config') != run.config
        or _training_overrides(record.get('overrides', {})) != wanted):
      return False
  return True


def source_of(artefact: paper_specs.Artefact, size: str,
              artefacts: Mapping[str, paper_specs.Artefact]) -> paper_specs.Artefact:
  """The artefact whose runs make ``artefact`` at ``size``: itself, or the one it is drawn
  from (``Artefact.drawn_from``)."""
  name = artefact.drawn_from.get(size)
  return artefacts[name] if name else artefact


def plan(artefacts: Sequence[paper_specs.Artefact], args,
         rates: Mapping[Tuple[str, str], Tuple[float, str]],
         every: Optional[Mapping[str, paper_specs.Artefact]] = None
         ) -> Tuple[List[PlannedRun], List[str]]:
  """(the runs, in order, with status and estimate; lines on artefacts that cannot run).

  An artefact drawn from another at this size (``every`` holds that one; default: the paper's)
  plans that artefact's runs of its names, once, however many chosen artefacts need them: it is
  planned after the others, and a run whose seeds a planned run of the same name already holds
  (batched or not) is not planned again."""
  every = every or paper_specs.ARTEFACTS
  runs, skipped = [], []
  shared = setting_overrides(args)
  for artefact in sorted(artefacts, key=lambda a: args.size in a.drawn_from):
    source = source_of(artefact, args.size, every)
    setting = source.settings.get(args.size)
    if setting is None:
      skipped.append(f'{artefact.name}: no {args.size} setting; ' + (
          artefact.not_runnable or 'see experiments/paper_specs.py') + ' On such data run: '
          f'python experiments/reproduce.py --data_dir=D --artefacts={artefact.name} '
          '--size=paper --batch_seeds')
      continue
    missing = common.missing_folders(args.data_dir, setting.folders)
    if missing:
      skipped.append(f'{artefact.name}: {args.data_dir} has no '
                     f'{", ".join(m + "/" for m in missing)}; not runnable here.')
      continue
    steps = steps_per_task(setting.config, shared) * len(setting.tasks)
    for spec in artefact.runs_for(args.seeds):
      seeds = list(range(spec.seeds))
      groups = [seeds] if args.batch_seeds else [[s] for s in seeds]
      held = {s for r in runs if (r.artefact, r.spec.name) == (source.name, spec.name)
              for s in r.seeds}
      groups = [group for group in groups if not set(group) <= held]
      for group in groups:
        name = (f'{spec.name}_seed{group[0]}' if len(group) == 1
                else f'{spec.name}_seeds{group[0]}-{group[-1]}')
        overrides = {'data.data_dir': os.path.abspath(args.data_dir),
                     'eval.feature_net_cache': os.path.join(args.workdir_root, 'feature_nets'),
                     **shared,
                     'method': spec.method, **spec.overrides, 'seed': group[0]}
        if len(group) > 1:
          overrides['train.num_seeds'] = len(group)
        run = PlannedRun(source.name, spec, name, group,
                         os.path.join(args.workdir_root, args.size, source.name, name),
                         setting.config, overrides, steps)
        conflicts = workdir_conflicts(run.workdir, overrides)
        if conflicts:
          raise SystemExit(f'error: {run.workdir} was trained with other settings '
                           f'({"; ".join(conflicts)}); use another --workdir_root or remove it.')
        run.status = run_status(run)
        if run.status == 'to run' and is_recorded(run, args):
          run.status = 'recorded'
        rate = rates.get((setting.config, spec.method)) or rates.get(('*', spec.method))
        if run.status not in DONE and rate:
          run.estimate_s = rate[0] * steps * len(group)
        runs.append(run)
  return runs, skipped


# ------------------------------------------------------------------- measured rates


def _command_value(command: str, key: str) -> Optional[str]:
  match = re.search(rf'--config\.{re.escape(key)}=(\S+)', command)
  return match.group(1) if match else None


def measured_rates(results: str, legacy_dirs: Sequence[str] = ()
                   ) -> Dict[Tuple[str, str], Tuple[float, str]]:
  """(config, method) -> (seconds per step and seed, where it was measured); ('*', method) for
  the legacy results, whose configs were the scripts' own (the old ``--size=cpu`` runs)."""
  samples: Dict[Tuple[str, str], List[float]] = {}
  sources: Dict[Tuple[str, str], set] = {}
  for path in glob.glob(os.path.join(results, '*', '*.json')):
    with open(path) as f:
      record = json.load(f)
    if record.get('seconds_per_step') and not record.get('quick'):
      key = (record['config'], record['method'])
      samples.setdefault(key, []).append(record['seconds_per_step'])
      sources.setdefault(key, set()).add(common.display_path(os.path.dirname(path)))
  for folder in legacy_dirs:
    path = os.path.join(folder, 'results.json')
    if not os.path.exists(path):
      continue
    with open(path) as f:
      payload = json.load(f)
    for run in payload.get('runs', []):
      steps = _command_value(run['command'], 'train.steps_per_task')
      method = _command_value(run['command'], 'method')
      if not (run.get('ok') and steps and method and run.get('tasks')) or run.get('resumed'):
        continue
      seeds = int(_command_value(run['command'], 'train.num_seeds') or 1)
      key = ('*', method)
      samples.setdefault(key, []).append(
          run['seconds'] / (int(steps) * len(run['tasks']) * seeds))
      sources.setdefault(key, set()).add(common.display_path(folder))
  return {k: (statistics.median(v), f'median of {len(v)} run(s) in '
              + ', '.join(sorted(sources[k]))) for k, v in samples.items()}


def duration(seconds: Optional[float]) -> str:
  if seconds is None:
    return 'unknown'
  minutes = int(round(seconds / 60))
  return f'{minutes // 60}h{minutes % 60:02d}m' if minutes >= 60 else f'{max(minutes, 1)}m'


def format_plan(runs: Sequence[PlannedRun], skipped: Sequence[str], args,
                rates: Mapping[Tuple[str, str], Tuple[float, str]]) -> str:
  seeds = 'seeds batched per run (train.num_seeds)' if args.batch_seeds else 'one run per seed'
  lines = [f'Plan: size {args.size}{" (--quick)" if args.quick else ""}, {seeds}, '
           f'workdirs under {args.workdir_root}/{args.size}/',
           f'{"artefact":9} {"run":24} {"seeds":7} {"steps/seed":>10}  {"status":20} est. CPU']
  for r in runs:
    status = {'finished': 'finished: reused', 'recorded': 'recorded: reused'}.get(r.status,
                                                                                r.status)
    lines.append(f'{r.artefact:9} {r.name:24} {",".join(map(str, r.seeds)):7} {r.steps:>10}  '
                 f'{status:20} {"-" if r.status in DONE else duration(r.estimate_s)}')
  todo = [r for r in runs if r.status not in DONE]
  known = [r.estimate_s for r in todo if r.estimate_s is not None]
  lines.append(f'{len(runs)} runs: {len(runs) - len(todo)} finished (reused), {len(todo)} to '
               f'run or resume; estimated CPU time {duration(sum(known)) if known else "unknown"}'
               + (f' ({len(todo) - len(known)} run(s) without a measured rate)'
                  if len(known) < len(todo) else ''))
  if args.seconds_per_step is not None:
    lines.append(f'  rate: {args.seconds_per_step:g} s/step for every run (--seconds_per_step)')
  else:
    shown = {}
    for r in todo:
      rate = rates.get((r.config, r.spec.method))
      key = (r.spec.method, r.config if rate else '*')
      shown[key] = rate or rates.get(('*', r.spec.method))
    for (method, config), rate in sorted(shown.items()):
      where = f' ({config})' if config != '*' else ''
      lines.append(f'  rate {method}{where}: ' + (
          f'{rate[0]:.4f} s/step/seed, {rate[1]}' if rate else 'not measured yet'))
  if args.quick:
    lines.append('  (--quick: these rates are of full-size runs; a quick run\'s time is mostly '
                 'start-up, compilation and evaluation, which the estimate leaves out)')
  lines += [f'Not run: {s}' for s in skipped]
  return '\n'.join(lines)


# ------------------------------------------------------------------------ running


def read_driver_record(workdir: str) -> dict:
  """What this driver wrote when the run finished (commit, seconds); {} for a workdir another
  tool trained."""
  path = os.path.join(workdir, DRIVER_RECORD)
  if not os.path.exists(path):
    return {}
  with open(path) as f:
    return json.load(f)


def seed_record(run: PlannedRun, index: int, args,
                extra: Optional[Mapping[str, List[float]]] = None) -> dict:
  """One seed's small JSON: enough to re-derive every number of the report. ``seconds``: the
  run's wall time, over all its invocations when it was stopped and resumed; None where an
  invocation was not timed (killed outright)."""
  report = common.load_report(run.seed_dirs()[index])
  made = read_driver_record(run.workdir)
  seconds = made.get('seconds')
  last = report['records'][-1]
  matrix = {m: [r['evaluation'].get(m) for r in report['records']]
            for m in ('nll_paper', 'nll_iwae')}
  return {
      'artefact': run.artefact, 'run': run.spec.name, 'method': run.spec.method,
      'seed': run.seeds[index], 'setting': setting_label(args), 'size': args.size,
      'quick': bool(args.quick), 'config': run.config, 'tasks': report['tasks'],
      'final': {**last['evaluation'], **(extra or {})}, 'matrix': matrix,
      'steps': run.steps, 'seeds_in_run': len(run.seeds), 'seconds': seconds,
      # The CPUs the run had, and how many runs shared the machine's (--jobs); older files
      # lack them.
      'cpus': made.get('cpus'), 'jobs': made.get('jobs'),
      'seconds_per_step': seconds / (run.steps * len(run.seeds)) if seconds else None,
      'overrides': {k: v for k, v in run.overrides.items() if k not in MACHINE_KEYS},
      'command': common.shell_line(common.build_command(run.config, run.workdir,
                                                        run.overrides)),
      'commit': made.get('commit', 'unknown'),
      'written': datetime.datetime.now().isoformat(timespec='seconds'),
  }


def copy_grids(run: PlannedRun, artefact: paper_specs.Artefact, results: str) -> List[str]:
  """Copies ``artefact.pictures`` of the run's first seed into ``<results>/<artefact>/figures``,
  named after the run."""
  first = run.seed_dirs()[0]
  last = len(common.task_names(first))
  patterns = [p.format(last=last) for p in artefact.pictures]
  return common.copy_pictures(first, patterns, os.path.join(results, artefact.name, 'figures'),
                              f'{run.name}_')


def drawing_on(run: PlannedRun, size: str,
               artefacts: Mapping[str, paper_specs.Artefact]) -> List[paper_specs.Artefact]:
  """The artefacts drawn at ``size`` from ``run``'s artefact that take their pictures from
  this run (a run of theirs by name, with their seed 0)."""
  return [a for a in artefacts.values()
          if a.drawn_from.get(size) == run.artefact and run.seeds[0] == 0
          and any(spec.name == run.spec.name for spec in a.runs)]


def collect(run: PlannedRun, artefacts: Mapping[str, paper_specs.Artefact], args) -> List[str]:
  """Writes the run's per-seed files and copies its grids (and the pictures of the artefacts
  drawn from it); returns the per-seed files' paths."""
  artefact = artefacts[run.artefact]
  paths = []
  for i, seed in enumerate(run.seeds):
    extra = None
    if 'mse' in artefact.extra_metrics:
      error = common.student_reconstruction_error(run.workdir,
                                                  seed_index=i if run.batched else None)
      extra = {'mse': error['mse'], 'sse': error['sse']}
    path = seed_file(args.results, run, seed)
    common.write_json(path, seed_record(run, i, args, extra))
    paths.append(path)
  copy_grids(run, artefact, args.results)
  for drawn in drawing_on(run, args.size, artefacts):
    copy_grids(run, drawn, args.results)
  return paths


def _train(run: PlannedRun, cpus: Optional[Sequence[int]] = None, jobs: int = 1) -> bool:
  """Trains (or resumes) one run; records its commit and wall time in its workdir; whether it
  finished."""
  logging.info('%s/%s: %s%s', run.artefact, run.name, run.status,
               f' on CPUs {",".join(map(str, cpus))}' if cpus else '')
  result = common.run_config(f'{run.artefact}/{run.name}', run.config, run.workdir,
                             run.overrides, cpus=cpus)
  if not result.ok:
    logging.error('%s/%s failed: %s (log %s)', run.artefact, run.name, result.error,
                  result.log)
    return False
  run.status = 'finished'
  common.write_json(os.path.join(run.workdir, DRIVER_RECORD), {
      'commit': common.git_commit(), 'seconds': result.total_seconds,
      'cpus': len(cpus) if cpus else len(os.sched_getaffinity(0)), 'jobs': jobs})
  return True


def execute(runs: Sequence[PlannedRun], artefacts: Mapping[str, paper_specs.Artefact],
            args) -> int:
  """Runs what is not finished (at most ``--max_runs``; ``--jobs`` at once, each on its own
  CPUs) and collects every finished run; returns how many runs were trained.

  With ``--jobs=N`` the CPUs are split into N disjoint sets (``common.cpu_sets``) and each run
  starts on whichever set is free; a run's per-seed files are written as soon as it ends."""
  to_train = [r for r in runs if r.status not in DONE]
  if args.max_runs is not None and len(to_train) > args.max_runs:
    to_train = to_train[:args.max_runs]
    logging.info('--max_runs=%d: %s this time; rerun the command to go on.', args.max_runs,
                 ', '.join(f'{r.artefact}/{r.name}' for r in to_train))
  for run in runs:  # finished earlier, maybe not yet collected
    if run.status == 'finished':
      collect(run, artefacts, args)
  if args.jobs == 1:
    for run in to_train:
      if _train(run):
        collect(run, artefacts, args)
    return len(to_train)
  free = queue.Queue()
  for cpus in common.cpu_sets(args.jobs):
    free.put(cpus)

  def train_on_free_cpus(run):
    cpus = free.get()
    try:
      return _train(run, cpus, args.jobs)
    finally:
      free.put(cpus)

  with concurrent.futures.ThreadPoolExecutor(args.jobs) as pool:
    futures = {pool.submit(train_on_free_cpus, run): run for run in to_train}
    try:
      for future in concurrent.futures.as_completed(futures):
        run = futures[future]
        if future.result():
          collect(run, artefacts, args)
    except KeyboardInterrupt:
      for future in futures:
        future.cancel()  # the runs not started yet
      common.stop_all()  # the ones in progress checkpoint and stop
      raise
  return len(to_train)


# ------------------------------------------------------------------------ report


def load_seed_files(results: str, artefact: str) -> List[dict]:
  records = []
  for path in sorted(glob.glob(os.path.join(results, artefact, '*_seed*.json'))):
    with open(path) as f:
      record = json.load(f)
    record['_file'] = os.path.relpath(path, results)
    records.append(record)
  return records


def row_value(record: dict, metric: str, row) -> Optional[float]:
  values = record['final'].get(metric)
  if not values or any(v is None for v in values):
    return None
  return sum(values) / len(values) if row == 'average' else values[row]


def interval(values: Sequence[float]) -> Optional[common.Interval]:
  values = [v for v in values if v is not None and math.isfinite(v)]
  return common.interval_over_seeds(values) if values else None


def judge(claim: paper_specs.Claim, by_run: Mapping[str, List[dict]]) -> Tuple[str, str, bool]:
  """(measured ordering in words, status: 'holds' / 'reversed' (+ ', intervals overlap'),
  resolved in the claimed direction)."""
  better = interval([row_value(r, claim.metric, claim.row) for r in by_run.get(claim.better,
                                                                                 [])])
  worse = interval([row_value(r, claim.metric, claim.row) for r in by_run.get(claim.worse, [])])
  if better is None or worse is None:
    return 'n/a', 'not yet run', False
  holds = float(better) < float(worse)
  low, high = (better, worse) if holds else (worse, better)
  apart = (low.n > 1 and high.n > 1 and math.isfinite(low.ci95) and math.isfinite(high.ci95)
           and float(low) + low.ci95 < float(high) - high.ci95)
  first, second = (claim.better, claim.worse) if holds else (claim.worse, claim.better)
  words = f'{first} ({common.fmt(low)}) < {second} ({common.fmt(high)})'
  status = ('holds' if holds else 'reversed') + ('' if apart else
                                                  ', intervals overlap or one seed')
  return words, status, holds and apart


def verdict(artefact: paper_specs.Artefact, size: str, by_run: Mapping[str, List[dict]],
            judged: Sequence[Tuple[str, str, bool]], seeds_to_come: bool = False) -> str:
  """The artefact's verdict from its judged orderings. ``seeds_to_come``: a compared run has
  fewer per-seed files than the plan; orderings that are only unresolved are then 'undecided so
  far' (the missing seeds may resolve them), while a reversal with the intervals apart already
  counts against."""
  if size not in artefact.settings:
    return 'not runnable here'
  if not by_run:
    return 'not yet run'
  if not artefact.claims:
    # Pictures only: the paper's setting is not on this machine (Figs. 2-3) or judged by eye.
    return 'not runnable here' if artefact.not_runnable else 'not yet run'
  if any(status == 'not yet run' for _, status, _ in judged):
    return 'not yet run'
  if all(ok for _, _, ok in judged):
    return 'reproduced'
  reversed_apart = sum(status == 'reversed' for _, status, _ in judged)
  unresolved = sum(not ok and status != 'reversed' for _, status, ok in judged)
  reasons = ([f'{reversed_apart} reversed with the intervals apart'] if reversed_apart else []) + (
      [f'{unresolved} unresolved (one seed or overlapping intervals)'] if unresolved else [])
  decided = 'undecided so far' if seeds_to_come and not reversed_apart else 'not reproduced'
  return f'{decided} ({len(judged)} claimed orderings: {"; ".join(reasons)})'


def our_table(artefact: paper_specs.Artefact, by_run: Mapping[str, List[dict]],
              metric: str, together: bool = False) -> str:
  """Tasks x runs of ``metric`` after the last task, mean ± 95% interval over seeds, and the
  average over tasks; ``together``: also ``<metric>_all`` (every task's test images at once)."""
  names = next(iter(by_run.values()))[0]['tasks']
  header = ['task'] + [f'{r.title or r.name} (n={len(by_run.get(r.name, []))})'
                       for r in artefact.runs if r.name in by_run]
  lines = [(task, metric, j) for j, task in enumerate(names)]
  lines.append(('**Average**', metric, 'average'))
  if together:
    lines.append(('**All tasks together**', f'{metric}_all', 0))
  rows = []
  for title, name, index in lines:
    row = [title]
    for spec in artefact.runs:
      if spec.name in by_run:
        cell = interval([row_value(r, name, index) for r in by_run[spec.name]])
        row.append(cell if cell is None or cell.n > 1 else float(cell))  # one seed: no interval
    rows.append(row)
  return common.markdown_table(header, rows)


def seeds_still_missing(artefact: paper_specs.Artefact, by_run: Mapping[str, List[dict]],
                        seeds: Optional[int]) -> List[str]:
  """'curl: 2 of 3 seeds' for each run a claim compares that has fewer per-seed files than
  the plan gives it (``seeds`` caps the spec's, as ``--seeds`` does)."""
  claimed = {name for c in artefact.claims for name in (c.better, c.worse)}
  return [f'{spec.name}: {len(by_run.get(spec.name, []))} of {spec.seeds} seeds'
          for spec in artefact.runs_for(seeds)
          if spec.name in claimed and len(by_run.get(spec.name, [])) < spec.seeds]


def artefact_section(artefact: paper_specs.Artefact, args,
                     every: Optional[Mapping[str, paper_specs.Artefact]] = None
                     ) -> Tuple[str, str, str]:
  """(verdict, markdown body, one-line summary). An artefact drawn from another reads that
  one's per-seed files of its runs (``every`` holds it; default: the paper's artefacts)."""
  label = setting_label(args)
  source = source_of(artefact, args.size, every or paper_specs.ARTEFACTS)
  records = load_seed_files(args.results, source.name)
  if source is not artefact:
    wanted = {spec.name: spec.seeds for spec in artefact.runs}
    records = [r for r in records if r['seed'] < wanted.get(r['run'], 0)]
  mine = [r for r in records if r.get('setting') == label]
  others = sorted({r.get('setting') for r in records} - {label})
  by_run: Dict[str, List[dict]] = {}
  for record in mine:
    by_run.setdefault(record['run'], []).append(record)
  judged = [judge(c, by_run) for c in artefact.claims]
  missing = seeds_still_missing(artefact, by_run, args.seeds)
  result = verdict(artefact, args.size, by_run, judged, seeds_to_come=bool(missing))
  if missing and result.startswith(('reproduced', 'not reproduced', 'undecided so far')):
    result += f'; provisional, per-seed files so far: {", ".join(missing)}'
  setting = artefact.settings.get(args.size)
  parts = [f'**Verdict: {result}.**', '', f'What the paper shows: {artefact.paper_text}']
  if setting:
    parts += ['', f'Our setting ({label}): `{setting.config}`, tasks '
              f'{" -> ".join(setting.tasks)}. {setting.note}'.rstrip()]
  if source is not artefact:
    parts += ['', f'Drawn from `{source.name}`\'s runs ' + ', '.join(
        f'`{spec.name}` (seed{"s" if spec.seeds > 1 else ""} '
        f'{", ".join(map(str, range(spec.seeds)))}: {spec.title})' for spec in artefact.runs)
              + '; nothing trained for it alone.']
  if artefact.not_runnable:
    parts += ['', f'Not runnable here as in the paper: {artefact.not_runnable} On data that has '
              'it (a GPU): `python experiments/reproduce.py --data_dir=D '
              f'--artefacts={artefact.name} --size=paper --batch_seeds`.']
  if artefact.paper_rows:
    titles = [paper_specs.METHOD_TITLES.get(c, c) for c in artefact.paper_columns]
    parts += ['', 'The paper\'s numbers (as printed; its setting, not ours):', '',
              common.markdown_table(['row'] + titles,
                                    [[k, *v] for k, v in artefact.paper_rows.items()])]
  if by_run:
    for metric in (artefact.metric,) + artefact.extra_metrics:
      parts += ['', f'Ours, `{metric}` after the last task (lower is better):', '',
                our_table(artefact, by_run, metric)]
  else:
    parts += ['', f'Ours: no per-seed files for this setting in `{artefact.name}/` yet.']
  if by_run and artefact.metric != 'fid_own':
    parts += ['', 'Have the generators learnt? `fid_own` after the last task: the FID, in the '
              'features of the project\'s classifier of the sequence, of the network each '
              'method samples from (the Assistant for the GAN methods, the VAE for LGM and '
              'CURL; lower is better), per task and against every task\'s test images at once '
              '(a generator that holds every task); the grids below show the same networks:',
              '', our_table(artefact, by_run, 'fid_own', together=True)]
  if artefact.claims:
    rows = [[paper_specs.METHOD_TITLES.get(c.better, c.better) + ' < ' +
             paper_specs.METHOD_TITLES.get(c.worse, c.worse),
             f'`{c.metric}`, {"average over tasks" if c.row == "average" else f"task {c.row + 1}"}',
             words, status] for c, (words, status, _) in zip(artefact.claims, judged)]
    quotes = sorted({c.quote for c in artefact.claims})
    parts += ['', 'The orderings the paper claims (' + '; '.join(quotes) + ') and ours '
              '("holds" only where the 95% intervals are apart counts for the verdict):', '',
              common.markdown_table(['claimed', 'measure', 'measured', 'status'], rows)]
  grids = sorted(glob.glob(os.path.join(args.results, artefact.name, 'figures', '*.png')))
  if grids:
    parts += ['', 'Pictures after the last task, one set per run (a batched run\'s first '
              'seed):', '']
    parts += [f'- `{os.path.basename(g)}`: ![{os.path.basename(g)}]'
              f'({os.path.relpath(g, args.results)})' for g in grids]
  if mine:
    rows = [[f'`{r["_file"]}`', duration(r.get('seconds')),
             r.get('cpus') or 'not recorded', r.get('jobs') or 'not recorded', r.get('commit')]
            for r in mine]
    parts += ['', 'The per-seed files, and how each run was made (wall time of training and '
              'every evaluation, of all its seeds when batched, summed over its invocations when '
              'it was stopped and resumed; "unknown" where one went untimed, e.g. killed '
              'outright; the CPUs it had and how many runs shared the machine, `--jobs`):',
              '',
              common.markdown_table(['file', 'wall time', 'CPUs', 'runs at once', 'commit'],
                                    rows)]
  notes = os.path.join(args.results, artefact.name, NOTES_FILE)
  if os.path.exists(notes):
    with open(notes) as f:
      parts += ['', f'Notes on these runs (by hand, `{artefact.name}/{NOTES_FILE}`):', '',
                f.read().strip()]
  if others:
    parts += ['', 'Files of other settings here, not used above: ' + '; '.join(others) + '.']
  seeds = sum(len(v) for v in by_run.values())
  return result, '\n'.join(parts), f'{seeds} seed file{"" if seeds == 1 else "s"}'


def write_report(artefacts: Sequence[paper_specs.Artefact], args,
                 every: Optional[Mapping[str, paper_specs.Artefact]] = None) -> str:
  sections, summary = [], []
  for artefact in artefacts:
    result, body, counts = artefact_section(artefact, args, every)
    sections.append((artefact.title, body))
    summary.append([artefact.name, artefact.title.split(':')[0], result, counts])
  lines = [
      '# The paper reproduced',
      '',
      f'Written by `python experiments/reproduce.py --report_only --size={args.size}` from the '
      'per-seed files in this folder (each holds the command that made it). Setting: '
      f'{setting_label(args)}. Cells: mean ± half-width of the 95% interval over seeds '
      '(Student\'s t); one seed gives no interval. Verdicts compare the orderings the paper '
      'claims, not its numbers: ours are on the stand-in settings named per artefact.',
      '', common.markdown_table(['artefact', 'paper', 'verdict', 'ours'], summary), '',
      'Superseded (made by the scripts this driver replaced, `--size=small`; kept, not read '
      'here): ' + ', '.join(f'`experiments/results/{d}/`' for d in paper_specs.SUPERSEDED) +
      '. Earlier `--size=cpu` runs of those scripts, not read here either: ' +
      ', '.join(f'`experiments/results/{d}/`' for d in paper_specs.EARLIER_CPU) + '.']
  for title, body in sections:
    lines += ['', f'## {title}', '', body]
  return common.write_markdown(args.results, lines)


# ------------------------------------------------------------------------ main


def parse_args(argv=None) -> argparse.Namespace:
  parser = argparse.ArgumentParser(description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument('--data_dir', default='',
                      help='Folder with one sub-folder per dataset (mnist/, fashion_mnist/, ...).')
  parser.add_argument('--artefacts', default=','.join(paper_specs.ARTEFACTS),
                      help=f'Comma-separated, of {", ".join(paper_specs.ARTEFACTS)}.')
  parser.add_argument('--size', choices=SIZES, default='cpu',
                      help="'cpu': the CPU-scale stand-ins (configs/*_cpu.py); 'paper': the "
                      "paper's sequences at our accelerator scale.")
  parser.add_argument('--seeds', type=int, default=None,
                      help='Cap on the seeds of every run (default: the spec\'s, 3 or 1).')
  parser.add_argument('--batch_seeds', action='store_true',
                      help='One run per method holding all its seeds (train.num_seeds): for GPUs.')
  parser.add_argument('--steps_per_task', type=int, default=None)
  parser.add_argument('--quick', action='store_true',
                      help='Tiny networks, 4 steps per task (common.QUICK_OVERRIDES): a smoke '
                      'test; its numbers mean nothing.')
  parser.add_argument('--set', action='append', default=[], metavar='KEY=VALUE',
                      help='More config overrides for every run (repeatable).')
  parser.add_argument('--workdir_root', default=DEFAULT_WORKDIRS)
  parser.add_argument('--results', default=DEFAULT_RESULTS)
  parser.add_argument('--plan_only', action='store_true', help='Print the plan and stop.')
  parser.add_argument('--report_only', action='store_true',
                      help='Rewrite <results>/README.md from the per-seed files; run nothing.')
  parser.add_argument('--max_runs', type=int, default=None,
                      help='Train at most N runs in this invocation (rerun to go on).')
  parser.add_argument('--jobs', type=int, default=1,
                      help='Train N runs at once, each on its own 1/N of the CPUs: for '
                      'machines with more cores than one run uses. On 2 CPUs two runs side by '
                      'side gained 5%% over one at a time '
                      '(experiments/results/benchmark/jobs_side_by_side/).')
  parser.add_argument('--seconds_per_step', type=float, default=None,
                      help='Use this rate for the estimate instead of the measured ones.')
  args = parser.parse_args(argv)
  try:
    common.cpu_sets(args.jobs)
  except ValueError as e:
    parser.error(str(e))
  args.workdir_root = os.path.abspath(args.workdir_root)
  args.results = os.path.abspath(args.results)
  return args


def choose(names: str, artefacts: Mapping[str, paper_specs.Artefact]):
  chosen = [n.strip() for n in names.split(',') if n.strip()]
  unknown = [n for n in chosen if n not in artefacts]
  if unknown or not chosen:
    raise SystemExit(f'error: --artefacts={names!r}: unknown {unknown}; use '
                     f'{", ".join(artefacts)}.')
  return [artefacts[n] for n in chosen]


def _stop_on_sigterm(signum, frame):  # pylint: disable=unused-argument
  raise KeyboardInterrupt  # run_config stops its child, which checkpoints first


def main(argv=None, artefacts: Optional[Mapping[str, paper_specs.Artefact]] = None) -> int:
  common.setup_logging()
  args = parse_args(argv)
  artefacts = dict(artefacts or paper_specs.ARTEFACTS)
  chosen = choose(args.artefacts, artefacts)
  if args.report_only:
    print(f'README: {write_report(chosen, args, artefacts)}')
    return 0
  legacy = [os.path.join(common.REPO_ROOT, 'experiments', 'results', d)
            for d in paper_specs.EARLIER_CPU] if args.size == 'cpu' else []
  rates = measured_rates(args.results, legacy)
  if args.seconds_per_step is not None:
    rates = {('*', spec.method): (args.seconds_per_step, '--seconds_per_step')
             for a in chosen for spec in a.runs}
  runs, skipped = plan(chosen, args, rates, artefacts)
  print(format_plan(runs, skipped, args, rates), flush=True)
  if args.plan_only:
    return 0
  signal.signal(signal.SIGTERM, _stop_on_sigterm)
  try:
    execute(runs, artefacts, args)
  except KeyboardInterrupt:
    print('Interrupted: rerun the same command to go on (the run in progress was asked to '
          'checkpoint and stop; one stopped before its first checkpoint starts over).',
          flush=True)
    return 130
  print(f'README: {write_report(chosen, args, artefacts)}')
  return 0


if __name__ == '__main__':
  sys.exit(main())
