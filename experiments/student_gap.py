"""Why LT-GANs' Student forgets more than CURL's and LGM's at our CPU scale: the levers study.

At the CPU scale of Table 3 (``configs/mnist_fashion_fuzzy_cpu.py``: MNIST-c -> Fashion-c) the
Student of LT-GANs ends further from the first task than CURL's and LGM's, while its generator is
far ahead (``experiments/results/paper/README.md``). The paper claims the opposite ranking. This
script measures which setting decides it: each lever (``LEVERS``) is LT-GANs with one setting
changed, run per seed and compared with the paper's method and with CURL and LGM.

Usage (from the repository root):

  python experiments/student_gap.py --data_dir=D [--levers=replay_weight_2,updates_2]
      [--seeds=0,1,2] [--workdir_root=workdirs/student_gap]
      [--results=experiments/results/student_gap] [--plan_only] [--report_only]
      [--max_runs=N] [--quick]

How a lever is run:

* **Branched** (a lever that changes only what the Student does from task 2 on: its replay's
  weight, its updates per step, whose samples it replays). On task 2 the Teacher is frozen and
  the Student's update reads nothing the Assistant's training changes (except under
  ``vae.replay_from='both'``, which the branch trains as it does every run), so task 1 is the
  paper method's own. The branch is a copy of the paper-method run's workdir cut back to its
  task-1 boundary checkpoint; rerunning it with the lever's settings trains task 2 only (the
  library's resume from a boundary checkpoint, which is exact: ``tests/test_sigkill.py``).
  ``vae.updates_per_step`` therefore acts on task 2 only.
* **From scratch** (a lever that changes task 1 too: the budget, the Teacher's weight
  averaging, the Student's size). A lever that changes what every method shares (the budget,
  the Student's size) also runs CURL and LGM with it, so that the ranking is compared at equal
  settings.

Per run and seed one JSON file goes to ``<results>/<lever>_<method>_seed<s>.json``;
``<results>/README.md`` is written from those files and from the Table 3 per-seed files
(``experiments/results/paper/table3``: the paper's method, CURL and LGM at the default
setting). Every lever is ours and off by default in the library; none of them is folded into
"LT-GANs".
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import glob
import json
import logging
import os
import shutil
import signal
import sys
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

import common

common.setup()  # before anything imports jax (see common.setup)

CONFIG = 'configs/mnist_fashion_fuzzy_cpu.py'
DEFAULT_RESULTS = os.path.join(common.REPO_ROOT, 'experiments', 'results', 'student_gap')
DEFAULT_WORKDIRS = os.path.join(common.REPO_ROOT, 'workdirs', 'student_gap')
TABLE3_RESULTS = os.path.join(common.REPO_ROOT, 'experiments', 'results', 'paper', 'table3')
COMPARED = ('curl', 'lgm')  # the paper's other two methods
# Not copied into a branch: the finished run's record (the branch is a new run), the lock of a
# run that may be alive, and TensorBoard's events of the base run's task 2.
NOT_BRANCHED = (common.RUN_RECORD, 'lock.json', 'tensorboard')


@dataclasses.dataclass(frozen=True)
class Lever:
  """One setting of the study: config overrides, and how they are run."""
  title: str  # the lever, as the report's table names it
  setting: str  # its value, in words
  overrides: Mapping[str, object] = dataclasses.field(default_factory=dict)
  branched: bool = False  # from the paper-method run's task-1 checkpoint (see the docstring)
  methods: Tuple[str, ...] = ('ltgans',)  # COMPARED too where every method shares the setting


LEVERS: Dict[str, Lever] = {
    'paper': Lever('none (the paper\'s method)', 'eq. 5, 6000 steps per task'),
    'replay_weight_2': Lever('share of replay in the Student\'s loss', 'replay term x2',
                             {'vae.replay_weight': 2.0}, branched=True),
    'replay_weight_0.5': Lever('share of replay in the Student\'s loss', 'replay term x0.5',
                               {'vae.replay_weight': 0.5}, branched=True),
    'updates_2': Lever('Student updates per generator update', '2 (task 2)',
                       {'vae.updates_per_step': 2}, branched=True),
    'replay_both': Lever('replay from both twins', 'half Teacher, half Assistant',
                         {'vae.replay_from': 'both'}, branched=True),
    'ema': Lever('Teacher\'s sample quality', 'weight averaging, decay 0.999',
                 {'optim.generator_ema_decay': 0.999}),
    'steps_3000': Lever('budget', '3000 steps per task', {'train.steps_per_task': 3000},
                        methods=('ltgans',) + COMPARED),
    'steps_12000': Lever('budget', '12000 steps per task', {'train.steps_per_task': 12000},
                         methods=('ltgans',) + COMPARED),
    'student_width_32': Lever('the Student\'s capacity', 'widths 32 (every method)',
                              {'vae.width': 32}, methods=('ltgans',) + COMPARED),
}


@dataclasses.dataclass
class StudyRun:
  lever: str
  method: str
  seed: int
  workdir: str
  overrides: Dict[str, object]
  branch_of: Optional[str] = None  # the paper-method workdir a branched run starts from

  @property
  def name(self) -> str:
    return f'{self.lever}_{self.method}_seed{self.seed}'


def plan(levers: Sequence[str], seeds: Sequence[int], args) -> List[StudyRun]:
  """Every run the levers need, each base before its branches."""
  shared = {'data.data_dir': os.path.abspath(args.data_dir) if args.data_dir else '',
            **(common.QUICK_OVERRIDES if args.quick else {})}
  runs: List[StudyRun] = []

  def add(lever: str, method: str, seed: int, branch_of: Optional[str] = None) -> StudyRun:
    overrides = {**shared, 'method': method, **LEVERS[lever].overrides, 'seed': seed}
    run = StudyRun(lever, method, seed, '', overrides, branch_of)
    run.workdir = os.path.join(args.workdir_root, run.name)
    if all(r.workdir != run.workdir for r in runs):
      runs.append(run)
    return run

  for seed in seeds:
    for lever in levers:
      spec = LEVERS[lever]
      if spec.branched:
        base = add('paper', 'ltgans', seed)
        add(lever, 'ltgans', seed, branch_of=base.workdir)
      else:
        for method in spec.methods:
          add(lever, method, seed)
  return runs


def first_task_boundary(workdir: str) -> int:
  """The global step of the checkpoint that ends task 1 (report.json's first record)."""
  report = common.load_report(workdir)
  if not report or not report.get('records'):
    raise SystemExit(f'error: {workdir} holds no finished first task to branch from; rerun '
                     'the command to train it first.')
  return int(report['records'][0]['steps'])


def branch(base: str, dest: str) -> None:
  """Copies ``base`` into ``dest`` without its checkpoints after task 1 (nor ``NOT_BRANCHED``):
  a rerun there resumes from the task-1 boundary and trains task 2 with its own settings. A
  ``dest`` that holds checkpoints already (a branch in progress) is left as it is."""
  if os.path.isdir(os.path.join(dest, 'checkpoints')):
    return
  boundary = first_task_boundary(base)

  def ignore(folder, names):
    skipped = [n for n in names if n in NOT_BRANCHED and folder == base]
    if os.path.basename(folder) == 'checkpoints' and os.path.dirname(folder) == base:
      skipped += [n for n in names if not (n.isdigit() and int(n) <= boundary)]
    return skipped

  staging = dest.rstrip('/') + '.partial'
  shutil.rmtree(staging, ignore_errors=True)
  shutil.copytree(base, staging, ignore=ignore)
  os.replace(staging, dest)  # whole or absent: never a branch without its checkpoint


def _train(run: StudyRun) -> common.RunResult:
  if run.branch_of:
    branch(run.branch_of, run.workdir)
  return common.run_config(run.name, CONFIG, run.workdir, run.overrides)


def seconds_of(workdir: str) -> Optional[float]:
  """The run's wall time over its invocations (a branch's: task 2's); None where one of them
  went untimed (killed outright)."""
  values = common.runner.invocations(workdir)
  return None if not values or any(v is None for v in values) else sum(values)


def seed_record(run: StudyRun, quick: bool) -> dict:
  """What the report reads of one finished run (and enough to re-derive it)."""
  report = common.load_report(run.workdir)
  last = report['records'][-1]['evaluation']
  return {
      'lever': run.lever, 'method': run.method, 'seed': run.seed,
      'overrides': {k: v for k, v in run.overrides.items() if k != 'data.data_dir'},
      'branched_from': os.path.basename(run.branch_of) if run.branch_of else None,
      'quick': quick,
      'tasks': report['tasks'],
      'nll_paper': last['nll_paper'], 'fid_own': last.get('fid_own'),
      'fid_own_all': (last.get('fid_own_all') or [None])[0],
      'matrix_nll_paper': [r['evaluation']['nll_paper'] for r in report['records']],
      # Wall time of this run's invocation(s); a branch's covers task 2 only.
      'seconds': seconds_of(run.workdir),
      'command': common.shell_line(common.build_command(CONFIG, run.workdir, run.overrides)),
      'commit': common.git_commit(),
      'written': datetime.datetime.now().isoformat(timespec='seconds'),
  }


def result_file(results: str, run: StudyRun) -> str:
  return os.path.join(results, f'{run.name}.json')


def execute(runs: Sequence[StudyRun], args) -> int:
  """Trains what has no result file yet (at most ``--max_runs``), writing each file as soon as
  its run ends; returns how many runs were trained."""
  todo = [r for r in runs if not os.path.exists(result_file(args.results, r))]
  if args.max_runs is not None:
    todo = todo[:args.max_runs]
  for run in todo:
    result = _train(run)
    if not result.ok:
      raise SystemExit(f'error: {run.name} failed: {result.error} (log {result.log}); fix it '
                       'and rerun the same command to go on.')
    common.write_json(result_file(args.results, run), seed_record(run, args.quick))
    logging.info('%s: %s', run.name, result_file(args.results, run))
  return len(todo)


# ------------------------------------------------------------------------ report


def load_results(results: str) -> List[dict]:
  records = []
  for path in sorted(glob.glob(os.path.join(results, '*_seed*.json'))):
    with open(path) as f:
      records.append(json.load(f))
  return records


def table3_records(folder: str) -> List[dict]:
  """The Table 3 per-seed files of the paper's three methods at the default setting, in this
  study's record form (lever 'paper')."""
  records = []
  for path in sorted(glob.glob(os.path.join(folder, '*_seed*.json')) if folder else []):
    with open(path) as f:
      record = json.load(f)
    if record.get('method') in ('ltgans',) + COMPARED and record.get('setting') == 'cpu':
      records.append({'lever': 'paper', 'method': record['method'], 'seed': record['seed'],
                      'nll_paper': record['final']['nll_paper'],
                      'matrix_nll_paper': record.get('matrix', {}).get('nll_paper'),
                      'fid_own_all': record['final'].get('fid_own_all', [None])[0],
                      'seconds': record.get('seconds'), 'table3': True})
  return records


def _cell(values: Sequence[Optional[float]]) -> object:
  values = [v for v in values if v is not None]
  if not values:
    return 'n/a'
  return common.interval_over_seeds(values) if len(values) > 1 else values[0]


def _first_task_after_first_task(record: dict) -> Optional[float]:
  """The Student's NLL on task 1 when task 1 ends (the forgetting matrix's first cell)."""
  matrix = record.get('matrix_nll_paper')
  return matrix[0][0] if matrix else None


def report_rows(records: Sequence[dict]) -> List[List[object]]:
  """One row per (lever, method): the Student's NLL on task 1 when task 1 ends and after task 2,
  the difference (what task 2 made it forget; the first splits a gap between methods into what
  was never learnt and what was forgotten), the average over the two tasks after task 2, the
  sampled network's FID against both tasks' images, wall time, seeds."""
  groups: Dict[Tuple[str, str], List[dict]] = {}
  for record in records:
    method = record['method'] + (' (Table 3 files)' if record.get('table3') else '')
    groups.setdefault((record['lever'], method), []).append(record)
  rows = []
  order = list(LEVERS)
  for (lever, method), group in sorted(groups.items(), key=lambda kv: (
      order.index(kv[0][0]) if kv[0][0] in order else len(order),
      not kv[0][1].startswith('ltgans'),
      kv[0][1])):  # levers in LEVERS' order, LT-GANs first
    spec = LEVERS.get(lever)
    seconds = [r['seconds'] for r in group if r.get('seconds')]
    name, _, source = method.partition(' ')
    learnt = [_first_task_after_first_task(r) for r in group]
    kept = [r['nll_paper'][0] for r in group]
    rows.append([spec.title if spec else lever, spec.setting if spec else '',
                 f'{common.METHOD_TITLES.get(name, name)} {source}'.strip(), str(len(group)),
                 _cell(learnt), _cell(kept),
                 _cell([k - l for k, l in zip(kept, learnt) if l is not None]),
                 _cell([sum(r['nll_paper']) / len(r['nll_paper']) for r in group]),
                 _cell([r.get('fid_own_all') for r in group]),
                 f'{sum(seconds) / len(seconds) / 60:.0f} min' if seconds else 'n/a'])
  return rows


def write_report(args) -> str:
  # The study's own paper-method runs (the bases of its branches, on the machine the branches
  # ran on) and Table 3's files of the same setting, each in a row of its own.
  records = table3_records(args.table3) + load_results(args.results)
  header = ['lever', 'setting', 'method', 'seeds', 'Student NLL, task 1 after task 1',
            'Student NLL, task 1 after task 2', 'forgotten (nats)', 'Student NLL, average',
            'FID (sampled network, both tasks)', 'wall time per run']
  lines = ['# Why LT-GANs\' Student trails CURL at our CPU scale: the levers', '',
           f'Written by `python experiments/student_gap.py --report_only` from the JSON files '
           'in this folder and the Table 3 per-seed files of `experiments/results/paper/table3/` '
           f'(the default setting: `{CONFIG}`). Cells: mean ± half-width of the 95% interval '
           'over seeds; one seed gives no interval. Lower is better in every column. A '
           'branched lever trains task 2 only, from the paper-method run\'s task-1 checkpoint; '
           'its wall time is task 2\'s.', '',
           common.markdown_table(header, report_rows(records))]
  notes = os.path.join(args.results, 'NOTES.md')
  if os.path.exists(notes):
    with open(notes) as f:
      lines += ['', f.read().strip()]
  return common.write_markdown(args.results, lines)


# ------------------------------------------------------------------------ main


def parse_args(argv=None) -> argparse.Namespace:
  parser = argparse.ArgumentParser(description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument('--data_dir', default='')
  parser.add_argument('--levers', default=','.join(LEVERS),
                      help=f'Comma-separated, of {", ".join(LEVERS)}.')
  parser.add_argument('--seeds', default='0', help='Comma-separated seeds, e.g. 0,1,2.')
  parser.add_argument('--workdir_root', default=DEFAULT_WORKDIRS)
  parser.add_argument('--results', default=DEFAULT_RESULTS)
  parser.add_argument('--table3', default=TABLE3_RESULTS,
                      help='The Table 3 per-seed files the report compares with (\'\': none).')
  parser.add_argument('--quick', action='store_true',
                      help='Tiny networks, 4 steps per task: a smoke test; numbers mean nothing.')
  parser.add_argument('--plan_only', action='store_true')
  parser.add_argument('--report_only', action='store_true')
  parser.add_argument('--max_runs', type=int, default=None)
  args = parser.parse_args(argv)
  args.levers = [n.strip() for n in args.levers.split(',') if n.strip()]
  unknown = [n for n in args.levers if n not in LEVERS]
  if unknown or not args.levers:
    parser.error(f'--levers: unknown {unknown}; use {", ".join(LEVERS)}.')
  try:
    args.seeds = [int(s) for s in args.seeds.split(',') if s.strip()]
  except ValueError:
    parser.error(f'--seeds={args.seeds!r}; give comma-separated integers, e.g. 0,1,2.')
  args.workdir_root = os.path.abspath(args.workdir_root)
  args.results = os.path.abspath(args.results)
  return args


def _stop_on_sigterm(signum, frame):  # pylint: disable=unused-argument
  raise KeyboardInterrupt  # run_config stops its child, which checkpoints first


def main(argv=None) -> int:
  common.setup_logging()
  args = parse_args(argv)
  if args.report_only:
    print(f'README: {write_report(args)}')
    return 0
  runs = plan(args.levers, args.seeds, args)
  for run in runs:
    done = os.path.exists(result_file(args.results, run))
    print(f'{run.name:36} {"done: reused" if done else "to run":14} '
          f'{"branch of " + os.path.basename(run.branch_of) if run.branch_of else "from scratch"}')
  if args.plan_only:
    return 0
  signal.signal(signal.SIGTERM, _stop_on_sigterm)
  try:
    execute(runs, args)
  except KeyboardInterrupt:
    print('Interrupted: rerun the same command to go on.', flush=True)
    return 130
  print(f'README: {write_report(args)}')
  return 0


if __name__ == '__main__':
  sys.exit(main())
