"""experiments/reproduce.py: the plan (runs, finished ones reused, the time estimate), a plan
interrupted after one run and rerun (the finished run reused, not retrained), and the report
made from the per-seed files that tiny real runs of configs/test.py leave."""

import json
import os
import sys

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, 'experiments'))

import common  # pylint: disable=g-import-not-at-top,wrong-import-position
import paper_specs  # pylint: disable=g-import-not-at-top,wrong-import-position
import reproduce  # pylint: disable=g-import-not-at-top,wrong-import-position

TASKS = ('digits 0-4', 'digits 5-9')
TINY = paper_specs.Artefact(
    name='tiny',
    title='Tiny: configs/test.py',
    settings={'cpu': paper_specs.Setting('configs/test.py', TASKS)},
    runs=(paper_specs.RunSpec('ltgans', 'ltgans', 2, {}, 'LT-GANs'),
          paper_specs.RunSpec('lgm', 'lgm', 1, {}, 'LGM')),
    paper_columns=('ltgans', 'lgm'),
    paper_rows={'digits 0-4': (1.5, 2.5), 'Average': (3.0, 4.0)},
    claims=(paper_specs.Claim('nll_paper', 'ltgans', 'lgm', 'average', '"a test claim"'),),
    extra_metrics=('mse',),
    paper_text='a test artefact')
PAPER_ONLY = paper_specs.Artefact(
    name='paper_only', title='Paper only: no cpu setting',
    settings={'paper': paper_specs.Setting('configs/test.py', TASKS)},
    runs=(paper_specs.RunSpec('ltgans', 'ltgans', 1),), not_runnable='needs data not here.')
UNRUN = paper_specs.Artefact(
    name='unrun', title='Unrun', settings={'cpu': paper_specs.Setting('configs/test.py', TASKS)},
    runs=(paper_specs.RunSpec('ltgans', 'ltgans', 1),),
    claims=(paper_specs.Claim('nll_paper', 'ltgans', 'ltgans'),))
DRAWN = paper_specs.Artefact(
    name='drawn', title='Drawn: pictures of tiny\'s LT-GANs',
    settings={'cpu': paper_specs.Setting('configs/test.py', TASKS)},
    runs=(paper_specs.RunSpec('ltgans', 'ltgans', 1, {}, 'the pictures'),),
    drawn_from={'cpu': 'tiny'}, pictures=('figures/final_interpolation_*.png',),
    not_runnable='pictures only.')
ARTEFACTS = {a.name: a for a in (TINY, PAPER_ONLY, UNRUN, DRAWN)}


def args_for(tmp_path, *extra):
  return reproduce.parse_args([f'--workdir_root={tmp_path}/work', f'--results={tmp_path}/res',
                               '--artefacts=tiny', *extra])


def write_finished_workdir(workdir, overrides):
  """What train.py leaves when every task is done, as far as the plan looks: report.json with
  a record per task, config.json with the run's values."""
  from configs import test as test_config  # pylint: disable=g-import-not-at-top
  from tests import helpers  # pylint: disable=g-import-not-at-top
  os.makedirs(workdir)
  with open(os.path.join(workdir, 'report.json'), 'w') as f:
    json.dump({'tasks': list(TASKS), 'records': [{'name': t} for t in TASKS]}, f)
  config = test_config.get_config()
  for key, value in overrides.items():
    helpers.set_config_value(config, key, value)
  with open(os.path.join(workdir, 'config.json'), 'w') as f:
    json.dump({'config': json.loads(config.to_json_best_effort())}, f)


def test_every_paper_artefact_has_a_spec_and_the_paper_numbers():
  assert sorted(paper_specs.ARTEFACTS) == ['fig4a', 'fig4b', 'figs2_3', 'table1', 'table2',
                                           'table3']
  assert paper_specs.TABLE1.paper_rows['Average'] == (494.64, 620.83, 626.35)
  assert paper_specs.TABLE3.paper_rows['Average'] == (111.08, 233.96, 556.13)
  assert paper_specs.TABLE2.paper_rows['First task'] == (62.85, 155.59)
  seeds = {r.name: r.seeds for r in paper_specs.TABLE3.runs}
  assert seeds == {'ltgans': 3, 'curl': 3, 'lgm': 3, 'no_lakd': 1, 'finetune': 1, 'joint': 1}
  assert paper_specs.TABLE3.settings['cpu'].config == 'configs/mnist_fashion_fuzzy_cpu.py'
  assert paper_specs.TABLE1.settings['cpu'].config == 'configs/msfo_offline_cpu.py'
  assert 'cpu' not in paper_specs.TABLE2.settings
  assert {r.name for r in paper_specs.FIG4B.runs} == {
      'ltgans_beta1', 'no_lakd_beta1', 'ltgans_beta4', 'no_lakd_beta4'}
  assert {r.name: r.seeds for r in paper_specs.FIG4A.runs} == {
      'ltgans': 3, 'curl': 3, 'lgm': 3, 'finetune': 3}
  # Figs. 2-3 at the cpu size: seed 0 of Fig. 4b's LT-GANs runs, not runs of their own.
  assert paper_specs.FIGS2_3.drawn_from == {'cpu': 'fig4b'}
  fig4b = {r.name: r for r in paper_specs.FIG4B.runs}
  for run in paper_specs.FIGS2_3.runs:
    assert run.seeds == 1 and dict(run.overrides) == dict(fig4b[run.name].overrides)
  assert [r.name for r in paper_specs.FIGS2_3.runs] == ['ltgans_beta1', 'ltgans_beta4']
  for artefact in paper_specs.ARTEFACTS.values():
    for setting in artefact.settings.values():
      assert os.path.exists(os.path.join(ROOT, setting.config)), setting.config
    names = {r.name for r in artefact.runs}
    assert all(c.better in names and c.worse in names for c in artefact.claims)


def test_plan_lists_runs_reuses_finished_ones_and_estimates_from_a_rate(tmp_path):
  args = args_for(tmp_path, '--seconds_per_step=0.5')
  rates = {('*', 'ltgans'): (0.5, 'given'), ('*', 'lgm'): (0.25, 'given')}
  runs, skipped = reproduce.plan([TINY], args, rates)
  assert [r.name for r in runs] == ['ltgans_seed0', 'ltgans_seed1', 'lgm_seed0']
  assert not skipped and all(r.status == 'to run' for r in runs)
  assert runs[0].steps == 2 * 4  # two tasks of configs/test.py's 4 steps
  assert [r.estimate_s for r in runs] == [0.5 * 8, 0.5 * 8, 0.25 * 8]
  assert runs[1].overrides['seed'] == 1 and runs[1].overrides['method'] == 'ltgans'

  write_finished_workdir(runs[1].workdir, {'seed': 1, 'method': 'ltgans'})
  os.makedirs(os.path.join(runs[2].workdir, 'checkpoints'))  # stopped after a checkpoint
  runs, _ = reproduce.plan([TINY], args, rates)
  assert [r.status for r in runs] == ['to run', 'finished', 'to resume']
  assert runs[1].estimate_s is None
  text = reproduce.format_plan(runs, [], args, rates)
  assert 'finished: reused' in text
  assert '3 runs: 1 finished (reused), 2 to run or resume; estimated CPU time 1m' in text

  # A workdir trained with other settings is never reused silently.
  args = args_for(tmp_path, '--steps_per_task=9')
  with pytest.raises(SystemExit, match='other settings'):
    reproduce.plan([TINY], args, rates)

  batched, _ = reproduce.plan([TINY], args_for(tmp_path, '--batch_seeds'), rates)
  assert [r.name for r in batched] == ['ltgans_seeds0-1', 'lgm_seed0']
  assert batched[0].overrides['train.num_seeds'] == 2
  assert batched[0].seed_dirs() == [os.path.join(batched[0].workdir, f'seed{s}')
                                    for s in (0, 1)]
  assert batched[0].estimate_s == 0.5 * 8 * 2


def test_plan_skips_what_cannot_run_and_rates_come_from_earlier_results(tmp_path):
  args = reproduce.parse_args([f'--results={tmp_path}/res', '--data_dir=/nonexistent'])
  runs, skipped = reproduce.plan([paper_specs.TABLE2, paper_specs.TABLE3], args, {})
  assert not runs
  assert 'table2: no cpu setting' in skipped[0] and '--size=paper' in skipped[0]
  assert 'has no mnist/, fashion_mnist/' in skipped[1]
  folder = tmp_path / 'earlier'
  folder.mkdir()
  command = ('python -m ltgans_jax.main --config=c.py --config.method=lgm '
             '--config.train.steps_per_task=100 --config.train.num_seeds=2')
  (folder / 'results.json').write_text(json.dumps({'runs': [
      {'command': command, 'ok': True, 'resumed': False, 'seconds': 80.0,
       'tasks': ['a', 'b']},
      {'command': command, 'ok': True, 'resumed': True, 'seconds': 1.0, 'tasks': ['a', 'b']}]}))
  rate, source = reproduce.measured_rates(str(tmp_path / 'res'), [str(folder)])[('*', 'lgm')]
  assert rate == pytest.approx(80.0 / (100 * 2 * 2)) and '1 run(s)' in source


@pytest.fixture(scope='module')
def interrupted_then_resumed(tmp_path_factory):
  """The tiny plan with batched seeds: stopped after one run (--max_runs=1), then rerun."""
  tmp = tmp_path_factory.mktemp('reproduce')
  argv = [f'--workdir_root={tmp}/work', f'--results={tmp}/res', '--artefacts=tiny',
          '--batch_seeds']
  assert reproduce.main(argv + ['--max_runs=1'], ARTEFACTS) == 0
  first = reproduce.plan([TINY], reproduce.parse_args(argv), {})[0]
  with open(first[0].workdir + '.log') as f:
    log_after_first = f.read()
  files_after_first = sorted(os.listdir(tmp / 'res' / 'tiny'))
  assert reproduce.main(argv, ARTEFACTS) == 0
  return tmp, argv, first, log_after_first, files_after_first


def test_an_interrupted_plan_resumes_and_reuses_the_finished_run(interrupted_then_resumed,
                                                                  capsys):
  tmp, argv, first, log_after_first, files_after_first = interrupted_then_resumed
  assert [r.status for r in first] == ['finished', 'to run']
  assert [f for f in files_after_first if f.endswith('.json')] == [
      'ltgans_seed0.json', 'ltgans_seed1.json']
  with open(first[0].workdir + '.log') as f:
    assert f.read() == log_after_first  # not retrained: nothing appended to its log
  runs, _ = reproduce.plan([TINY], reproduce.parse_args(argv), {})
  assert [r.status for r in runs] == ['finished', 'finished']
  # One FID feature network for seed 0 of the config: trained by the first run, read by lgm's.
  assert len(os.listdir(tmp / 'work' / 'feature_nets')) == 1
  with open(runs[1].workdir + '.log') as f:
    assert 'The FID feature network from the cache' in f.read()
  reproduce.main(argv + ['--plan_only'], ARTEFACTS)
  assert '2 runs: 2 finished (reused), 0 to run or resume' in capsys.readouterr().out


def test_committed_per_seed_files_stand_for_runs_whose_workdirs_are_gone(
    interrupted_then_resumed, capsys):
  """A fresh machine has the committed per-seed files and no workdirs: nothing is retrained,
  batched or not; other settings are."""
  tmp, argv, _, _, _ = interrupted_then_resumed
  elsewhere = [f'--workdir_root={tmp}/gone', f'--results={tmp}/res', '--artefacts=tiny']
  for extra in (['--batch_seeds'], []):
    runs, _ = reproduce.plan([TINY], reproduce.parse_args(elsewhere + extra), {})
    assert {r.status for r in runs} == {'recorded'}, [(r.name, r.status) for r in runs]
  assert reproduce.main(elsewhere, ARTEFACTS) == 0
  assert '3 runs: 3 finished (reused), 0 to run or resume' in capsys.readouterr().out
  assert not os.path.exists(tmp / 'gone')
  runs, _ = reproduce.plan([TINY], reproduce.parse_args(elsewhere + ['--steps_per_task=3']), {})
  assert {r.status for r in runs} == {'to run'}


def test_the_report_comes_from_the_per_seed_files(interrupted_then_resumed):
  from scipy import stats  # pylint: disable=g-import-not-at-top
  tmp, argv, runs, _, _ = interrupted_then_resumed
  results = tmp / 'res'
  records = {}
  for name in ('ltgans_seed0', 'ltgans_seed1', 'lgm_seed0'):
    with open(results / 'tiny' / f'{name}.json') as f:
      records[name] = json.load(f)
  # Each file holds its seed's own numbers, as that seed's report.json has them.
  for s in (0, 1):
    with open(os.path.join(runs[0].workdir, f'seed{s}', 'report.json')) as f:
      report = json.load(f)
    assert records[f'ltgans_seed{s}']['final']['nll_paper'] == (
        report['records'][-1]['evaluation']['nll_paper'])
    assert records[f'ltgans_seed{s}']['seed'] == s
    # Fig. 4b's MSE, per seed of the batched run: that seed's Student, not seed 0's.
    error = common.student_reconstruction_error(runs[0].workdir, seed_index=s)
    assert records[f'ltgans_seed{s}']['final']['mse'] == error['mse']
    assert len(error['mse']) == len(TASKS)
  assert records['ltgans_seed0']['final']['mse'] != records['ltgans_seed1']['final']['mse']
  assert records['lgm_seed0']['seconds_per_step'] > 0
  (results / 'tiny' / reproduce.NOTES_FILE).write_text('A note by hand.\n')
  assert reproduce.main(argv + ['--report_only', '--artefacts=tiny,paper_only,unrun'],
                        ARTEFACTS) == 0
  text = (results / 'README.md').read_text()
  fid_all = records['lgm_seed0']['final']['fid_own_all'][0]
  assert 'Have the generators learnt?' in text and '| **All tasks together** |' in text
  assert f'{fid_all:.2f} |' in text  # lgm's one seed, against every task's images at once
  assert '| file | wall time | CPUs | runs at once | commit |' in text
  assert '| `tiny/lgm_seed0.json` |' in text
  assert 'Notes on these runs (by hand, `tiny/NOTES.md`):\n\nA note by hand.' in text
  averages = [np.mean(records[f'ltgans_seed{s}']['final']['nll_paper']) for s in (0, 1)]
  half = stats.t.ppf(0.975, 1) * np.std(averages, ddof=1) / np.sqrt(2)
  assert f'{np.mean(averages):.2f} ± {half:.2f}' in text
  lgm = np.mean(records['lgm_seed0']['final']['nll_paper'])
  assert f'{lgm:.2f}' in text
  assert '| Average | 3.00 | 4.00 |' in text  # the paper's numbers
  assert '"a test claim"' in text and 'intervals overlap or one seed' in text
  # One LGM seed cannot resolve the claim: not reproduced, whichever way the means fall.
  assert ('| tiny | Tiny | not reproduced (1 claimed orderings: 1 unresolved (one seed or '
          'overlapping intervals)) |') in text
  assert '| paper_only | Paper only | not runnable here |' in text
  assert '| unrun | Unrun | not yet run |' in text
  assert 'experiments/results/table3_fuzzy_offline/' in text  # superseded, named
  assert any(f.endswith('.png') for f in os.listdir(results / 'tiny' / 'figures'))


def test_a_verdict_from_fewer_seeds_than_planned_says_it_is_provisional(
    interrupted_then_resumed, tmp_path):
  """With one of LT-GANs' two seed files gone, the verdict names what is missing, and its one
  ordering, unresolved on one seed, is undecided rather than not reproduced."""
  import shutil  # pylint: disable=g-import-not-at-top
  tmp, argv, _, _, _ = interrupted_then_resumed
  results = tmp_path / 'res'
  shutil.copytree(tmp / 'res', results)
  os.remove(results / 'tiny' / 'ltgans_seed1.json')
  assert reproduce.main([f'--results={results}', '--artefacts=tiny', '--report_only'],
                        ARTEFACTS) == 0
  assert ('| tiny | Tiny | undecided so far (1 claimed orderings: 1 unresolved (one seed or '
          'overlapping intervals)); provisional, per-seed files so far: ltgans: 1 of 2 seeds |'
          ) in (results / 'README.md').read_text()


def test_an_artefact_drawn_from_another_trains_nothing_of_its_own_and_gets_its_pictures(
    interrupted_then_resumed, tmp_path):
  """Figs. 2-3 at the cpu size are pictures of Fig. 4b's LT-GANs runs: the same workdirs and
  per-seed files, planned once, with the pictures copied when the run is collected."""
  import shutil  # pylint: disable=g-import-not-at-top
  tmp, argv, _, _, _ = interrupted_then_resumed
  # Chosen first, planned last: seed 0 of tiny's batched LT-GANs run is the one it needs.
  both, _ = reproduce.plan([DRAWN, TINY], reproduce.parse_args(
      argv[:2] + ['--artefacts=tiny,drawn', '--batch_seeds']), {}, ARTEFACTS)
  assert [(r.artefact, r.name, r.status) for r in both] == [
      ('tiny', 'ltgans_seeds0-1', 'finished'), ('tiny', 'lgm_seed0', 'finished')]
  alone, _ = reproduce.plan([DRAWN], reproduce.parse_args(
      [f'--workdir_root={tmp_path}/gone', argv[1], '--artefacts=drawn']), {}, ARTEFACTS)
  assert [(r.artefact, r.name, r.seeds, r.status) for r in alone] == [
      ('tiny', 'ltgans_seed0', [0], 'recorded')]
  assert alone[0].workdir == os.path.join(tmp_path, 'gone', 'cpu', 'tiny', 'ltgans_seed0')
  # Collected with the tiny runs: the drawn artefact's pictures of seed 0, under its name.
  pictures = sorted(os.listdir(tmp / 'res' / 'drawn' / 'figures'))
  assert pictures and all(p.startswith('ltgans_seeds0-1_final_interpolation_')
                          for p in pictures), pictures
  results = tmp_path / 'res'
  shutil.copytree(tmp / 'res', results)
  assert reproduce.main([f'--results={results}', '--artefacts=drawn', '--report_only'],
                        ARTEFACTS) == 0
  text = (results / 'README.md').read_text()
  assert '| drawn | Drawn | not runnable here | 1 seed file |' in text
  assert "Drawn from `tiny`'s runs `ltgans` (seed 0: the pictures)" in text
  assert '`tiny/ltgans_seed0.json`' in text and 'tiny/ltgans_seed1.json' not in text
  assert f'](drawn/figures/{pictures[0]})' in text


def test_jobs_train_runs_side_by_side_each_on_its_own_cpus(tmp_path, monkeypatch):
  """--jobs=2 on 4 CPUs: two runs in flight at once, on disjoint halves of the CPUs, every run
  trained once and collected as soon as it ends (the training itself stubbed)."""
  import threading  # pylint: disable=g-import-not-at-top
  import time  # pylint: disable=g-import-not-at-top
  monkeypatch.setattr(os, 'sched_getaffinity', lambda pid: {0, 1, 2, 3})
  assert common.cpu_sets(2) == [(0, 1), (2, 3)]
  assert common.cpu_sets(3) == [(0, 1), (2,), (3,)]
  with pytest.raises(ValueError, match=r'--jobs=5; this process may use 4 CPU\(s\): pass 1 to 4.'):
    common.cpu_sets(5)
  lock, in_flight, seen, collected = threading.Lock(), [], [], []

  def fake_run(name, config, workdir, overrides, mode='train', cpus=None):
    with lock:
      in_flight.append(name)
      seen.append((name, tuple(cpus), len(in_flight)))
    time.sleep(0.3)
    with lock:
      in_flight.remove(name)
    os.makedirs(workdir, exist_ok=True)
    return common.RunResult(name, [], workdir, workdir + '.log', 0.3, 0)

  monkeypatch.setattr(common, 'run_config', fake_run)
  monkeypatch.setattr(reproduce, 'collect',
                      lambda run, artefact, args: collected.append(run.name))
  args = args_for(tmp_path, '--jobs=2')
  runs, _ = reproduce.plan([TINY], args, {})
  assert reproduce.execute(runs, ARTEFACTS, args) == 3
  assert sorted(name for name, _, _ in seen) == ['tiny/lgm_seed0', 'tiny/ltgans_seed0',
                                                  'tiny/ltgans_seed1']
  assert max(n for _, _, n in seen) == 2  # two at once, never three
  first_two = {cpus for _, cpus, _ in seen[:2]}
  assert first_two == {(0, 1), (2, 3)}  # side by side on disjoint CPUs
  assert sorted(collected) == ['lgm_seed0', 'ltgans_seed0', 'ltgans_seed1']
  with open(os.path.join(runs[0].workdir, reproduce.DRIVER_RECORD)) as f:
    record = json.load(f)
  assert (record['cpus'], record['jobs']) == (2, 2)
  with pytest.raises(SystemExit):
    reproduce.parse_args(['--jobs=5'])
