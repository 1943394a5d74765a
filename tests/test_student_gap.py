"""experiments/student_gap.py: the plan (each branched lever after the paper-method run it
branches from, shared settings run for CURL and LGM too), a branch that resumes from the task-1
checkpoint and, with no lever changed, ends exactly as the run it was cut from, and the report's
rows from the result files."""

import json
import os
import sys

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, 'experiments'))

import student_gap  # pylint: disable=g-import-not-at-top,wrong-import-position


def test_plan_puts_each_base_before_its_branches_and_runs_shared_settings_for_every_method(
    tmp_path):
  args = student_gap.parse_args([f'--workdir_root={tmp_path}', '--seeds=0,1',
                                 '--levers=replay_weight_2,updates_2,steps_3000'])
  runs = student_gap.plan(args.levers, args.seeds, args)
  assert [r.name for r in runs] == [
      'paper_ltgans_seed0', 'replay_weight_2_ltgans_seed0', 'updates_2_ltgans_seed0',
      'steps_3000_ltgans_seed0', 'steps_3000_curl_seed0', 'steps_3000_lgm_seed0',
      'paper_ltgans_seed1', 'replay_weight_2_ltgans_seed1', 'updates_2_ltgans_seed1',
      'steps_3000_ltgans_seed1', 'steps_3000_curl_seed1', 'steps_3000_lgm_seed1']
  assert runs[1].branch_of == runs[0].workdir and runs[3].branch_of is None
  assert runs[1].overrides['vae.replay_weight'] == 2.0 and runs[1].overrides['seed'] == 0
  assert runs[4].overrides['train.steps_per_task'] == 3000
  assert runs[4].overrides['method'] == 'curl'


def test_a_branch_resumes_at_task_two_and_without_a_lever_ends_as_its_base(
    reference_run, tmp_path, test_config):
  from ltgans_jax import train  # pylint: disable=g-import-not-at-top
  base, _ = reference_run
  boundary = student_gap.first_task_boundary(base)
  branch = str(tmp_path / 'branch')
  student_gap.branch(base, branch)
  kept = sorted(int(n) for n in os.listdir(os.path.join(branch, 'checkpoints')) if n.isdigit())
  assert kept and max(kept) == boundary
  assert not os.path.exists(os.path.join(branch, 'lock.json'))
  test_config.eval.heatmaps = True
  train.train_and_evaluate(test_config, branch)
  with open(os.path.join(base, 'report.json')) as f:
    expected = json.load(f)['records']
  with open(os.path.join(branch, 'report.json')) as f:
    got = json.load(f)['records']
  assert [r['evaluation']['nll_paper'] for r in got] == [
      r['evaluation']['nll_paper'] for r in expected]

  lever = str(tmp_path / 'lever')
  student_gap.branch(base, lever)
  test_config.vae.replay_weight = 0.0
  train.train_and_evaluate(test_config, lever)
  with open(os.path.join(lever, 'report.json')) as f:
    changed = json.load(f)['records']
  assert changed[0]['evaluation'] == expected[0]['evaluation']  # task 1: the base's
  assert changed[1]['evaluation']['nll_paper'] != expected[1]['evaluation']['nll_paper']


def test_the_report_tabulates_each_lever_and_method_over_seeds(tmp_path):
  results = tmp_path / 'res'
  results.mkdir()
  values = {('replay_weight_2', 'ltgans', 0): (30.0, 29.0), ('replay_weight_2', 'ltgans', 1):
            (32.0, 29.0), ('steps_3000', 'curl', 0): (31.0, 26.0)}
  for (lever, method, seed), nll in values.items():
    (results / f'{lever}_{method}_seed{seed}.json').write_text(json.dumps({
        'lever': lever, 'method': method, 'seed': seed, 'nll_paper': list(nll),
        'matrix_nll_paper': [[nll[0] - 1.0 - seed], list(nll)], 'fid_own_all': 50.0 + seed, 'seconds': 600.0}))
  table3 = tmp_path / 'table3'
  table3.mkdir()
  (table3 / 'ltgans_seed0.json').write_text(json.dumps({
      'method': 'ltgans', 'seed': 0, 'setting': 'cpu', 'seconds': 1800.0,
      'final': {'nll_paper': [37.0, 28.0], 'fid_own_all': [41.0]},
      'matrix': {'nll_paper': [[31.5], [37.0, 28.0]]}}))
  args = student_gap.parse_args([f'--results={results}', f'--table3={table3}',
                                 '--report_only'])
  text = open(student_gap.write_report(args)).read()
  from scipy import stats  # pylint: disable=g-import-not-at-top
  half = stats.t.ppf(0.975, 1) * np.std([30.0, 32.0], ddof=1) / np.sqrt(2)
  # Seed 0 learnt task 1 to 29 and forgot 1 nat, seed 1 to 30 and forgot 2: after task 2 they
  # are 30 and 32, so the first two columns have the same interval, the third a zero-width one.
  assert (f"| share of replay in the Student's loss | replay term x2 | LT-GANs | 2 | "
          f'29.50 ± {half / 2:.2f} | 31.00 ± {half:.2f} | 1.50 ± {half / 2:.2f} | '
          f'30.00 ± {half / 2:.2f} |') in text
  assert ('| budget | 3000 steps per task | CURL | 1 | 30.00 | 31.00 | 1.00 | 28.50 | 50.00 | '
          '10 min |') in text
  assert ("| none (the paper's method) | eq. 5, 6000 steps per task | LT-GANs (Table 3 files) | "
          '1 | 31.50 | 37.00 | 5.50 | 32.50 | 41.00 | 30 min |') in text
