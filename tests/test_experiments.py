"""The experiments' helpers (experiments/common/, read by experiments/reproduce.py and the
benchmarks): command assembly, override sets, reading workdirs, markdown tables, and Fig. 4b's
reconstruction error. No training runs here except the shared reference run (conftest), reused
for the reconstruction error. The driver itself: tests/test_reproduce.py."""

import json
import os
import sys

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, 'experiments'))

import common  # pylint: disable=g-import-not-at-top,wrong-import-position

TASKS = ['mnist', 'fashion_mnist']


def write_fake_workdir(path, config_overrides=None, finished=2):
  """A workdir as train.py leaves it, with made-up numbers: report.json, eval/*.json and
  config.json (the test config plus ``config_overrides``)."""
  from configs import test as test_config  # pylint: disable=g-import-not-at-top
  os.makedirs(os.path.join(path, 'eval'), exist_ok=True)
  rows = [{'nll_paper': [100.0], 'nll_iwae': [500.0], 'fid_own': [3.0], 'fid_own_all': [3.0]},
          {'nll_paper': [110.0, 90.0], 'nll_iwae': [520.0, 480.0], 'fid_own': [4.0, 2.0],
           'fid_own_all': [3.5]}][:finished]
  records = [{'name': TASKS[i], 'steps': 4, 'seconds': 1.5, 'last_metrics': {},
              'evaluation': row, 'pictures': {}} for i, row in enumerate(rows)]
  with open(os.path.join(path, 'report.json'), 'w') as f:
    json.dump({'tasks': TASKS, 'records': records}, f)
  with open(os.path.join(path, 'report.md'), 'w') as f:
    f.write('Sequence ...; devices: 1 x cpu.\n')
  for metric in ('nll_paper', 'nll_iwae'):
    matrix = [row[metric] + [None] * (2 - len(row[metric])) for row in rows]
    with open(os.path.join(path, 'eval', f'{metric}.json'), 'w') as f:
      json.dump({'metric': metric, 'task_names': TASKS, 'matrix': matrix,
                 'summary': {'final_average': 100.0, 'diagonal_average': 95.0,
                             'forgetting': [10.0, 0.0], 'mean_forgetting': 10.0}}, f)
  config = test_config.get_config()
  for key, value in (config_overrides or {}).items():
    section, name = key.split('.')
    config[section][name] = value
  with open(os.path.join(path, 'config.json'), 'w') as f:
    json.dump({'resume_keys': {}, 'config': json.loads(config.to_json_best_effort())}, f)
  return str(path)


def test_build_command_puts_overrides_after_config_and_workdir():
  command = common.build_command('configs/msfo.py', '/w/run',
                                 {'train.steps_per_task': 4, 'vae.beta': 2.0, 'method': 'joint'})
  assert command[1:] == ['-m', 'ltgans_jax.main', '--config=configs/msfo.py',
                         '--workdir=/w/run', '--config.train.steps_per_task=4',
                         '--config.vae.beta=2.0', '--config.method=joint']
  assert '--mode=evaluate' in common.build_command('c.py', 'w', {}, mode='evaluate')
  assert common.shell_line(['a b', '--x=1']) == "'a b' --x=1"


def test_size_overrides_order_and_presets():
  assert common.size_overrides('paper', False) == {}
  small = common.size_overrides('small', False, image_size=32, channels=3)
  assert small['model.generator_width'] == 16 and small['data.channels'] == 3
  quick = common.size_overrides('small', True, steps_per_task=7,
                                extra={'eval.iwae_samples': '9'}, image_size=32, channels=3)
  assert quick['model.generator_width'] == 4  # --quick wins over the preset
  assert quick['train.steps_per_task'] == 7  # --steps_per_task over --quick
  assert quick['eval.iwae_samples'] == '9'  # --set last
  assert (quick['data.image_size'], quick['data.channels']) == (32, 3)
  with pytest.raises(ValueError):
    common.size_overrides('huge', False)


def test_parse_assignments():
  assert common.parse_assignments(['eval.iwae_samples=5000', '--config.vae.beta=4']) == {
      'eval.iwae_samples': '5000', 'vae.beta': '4'}
  with pytest.raises(ValueError, match='KEY=VALUE'):
    common.parse_assignments(['eval.iwae_samples'])


def test_split_methods_keeps_order_drops_duplicates_and_skips_unknown_with_a_note():
  available, notes = common.split_methods('ltgans,curl,no_lakd,vae_gan,lgm,ltgans')
  assert available == ['ltgans', 'curl', 'no_lakd', 'lgm']
  assert len(notes) == 1 and 'vae_gan' in notes[0] and 'not implemented' in notes[0]
  with pytest.raises(SystemExit, match='no implemented method'):
    common.split_methods('vae_gan,gan')


def test_markdown_tables():
  assert common.fmt(None) == 'n/a' and common.fmt(float('nan')) == 'n/a'
  assert common.fmt(1.234) == '1.23' and common.fmt('x') == 'x'
  table = common.methods_by_task_table(TASKS, {'ltgans': [1.0, 3.0], 'curl': None})
  assert table.splitlines() == [
      '| task | LT-GANs | CURL |', '|---|---|---|', '| mnist | 1.00 | n/a |',
      '| fashion_mnist | 3.00 | n/a |', '| Average | 2.00 | n/a |']


def test_reading_a_workdir(tmp_path):
  workdir = write_fake_workdir(tmp_path / 'run')
  assert common.is_complete(workdir)
  assert common.task_names(workdir) == TASKS
  assert common.final_row(workdir, 'nll_paper') == [110.0, 90.0]
  assert common.final_row(workdir, 'missing') is None
  assert common.per_task_after_each(workdir, 'fid_own_all') == [3.0, 3.5]
  assert sorted(common.load_eval(workdir)) == ['nll_iwae', 'nll_paper']
  assert common.devices_from_report(workdir) == '1 x cpu'
  result = common.RunResult('ltgans', ['python'], workdir, workdir + '.log', 1.0, 0)
  table = common.forgetting_table({'ltgans': result}, ['nll_paper'])
  assert '| LT-GANs | nll_paper | 100.00 | 95.00 | 10.00 |' in table
  assert not common.is_complete(write_fake_workdir(tmp_path / 'half', finished=1))


def test_nll_sections_write_plots_and_copy_heatmaps(tmp_path):
  workdir = write_fake_workdir(tmp_path / 'run')
  with open(os.path.join(workdir, 'eval', 'nll_paper.png'), 'wb') as f:
    f.write(b'png')
  ok = common.RunResult('ltgans', ['python'], workdir, workdir + '.log', 1.0, 0)
  failed = common.RunResult('joint', ['python'], str(tmp_path / 'x'), 'x.log', 1.0, 1, 'boom')
  out = str(tmp_path / 'out')
  sections = dict(common.nll_sections({'ltgans': ok, 'joint': failed}, out, 'test'))
  text = '\n'.join(sections.values())
  assert '| mnist | 110.00 | n/a |' in text
  assert os.path.exists(os.path.join(out, 'plots', 'nll_paper_final.png'))
  assert os.path.exists(os.path.join(out, 'figures', 'ltgans_nll_paper.png'))


# Each seed's evaluation after each task (3 seeds, 2 tasks) of a multi-seed workdir.
SEED_ROWS = [
    [{'nll_paper': [100.0], 'nll_iwae': [500.0], 'fid_own': [3.0], 'fid_own_all': [3.0]},
     {'nll_paper': [104.0], 'nll_iwae': [510.0], 'fid_own': [3.3], 'fid_own_all': [3.3]},
     {'nll_paper': [98.0], 'nll_iwae': [490.0], 'fid_own': [2.7], 'fid_own_all': [2.9]}],
    [{'nll_paper': [110.0, 90.0], 'nll_iwae': [520.0, 480.0], 'fid_own': [4.0, 2.0],
      'fid_own_all': [3.5]},
     {'nll_paper': [115.0, 93.0], 'nll_iwae': [530.0, 470.0], 'fid_own': [4.4, 2.2],
      'fid_own_all': [3.8]},
     {'nll_paper': [108.0, 88.0], 'nll_iwae': [515.0, 487.0], 'fid_own': [3.9, 1.7],
      'fid_own_all': [3.4]}]]


def mean_and_ci(values):
  """Mean and half-width of the 95% interval of the mean (Student's t), computed here."""
  from scipy import stats  # pylint: disable=g-import-not-at-top
  values = np.asarray(values, np.float64)
  n = len(values)
  return float(values.mean()), float(stats.t.ppf(0.975, n - 1) * values.std(ddof=1)
                                     / np.sqrt(n))


def cell(values):
  mean, ci = mean_and_ci(values)
  return f'{mean:.2f} ± {ci:.2f}'


def write_multi_seed_workdir(path):
  """A workdir as a 3-seed run leaves it: write_fake_workdir's, with a report.json of means
  over SEED_ROWS, their 95% half-widths and the per-seed values (seeds_report's schema)."""
  workdir = write_fake_workdir(path)
  records = []
  for i, per_seed in enumerate(SEED_ROWS):
    evaluation, ci95, std = {}, {}, {}
    for metric in per_seed[0]:
      columns = list(zip(*(p[metric] for p in per_seed)))
      evaluation[metric] = [mean_and_ci(c)[0] for c in columns]
      ci95[metric] = [mean_and_ci(c)[1] for c in columns]
      std[metric] = [float(np.std(c, ddof=1)) for c in columns]
    records.append({'name': TASKS[i], 'steps': 4, 'seconds': 1.5, 'last_metrics': {},
                    'evaluation': evaluation, 'evaluation_std': std, 'evaluation_ci95': ci95,
                    'evaluation_per_seed': per_seed, 'pictures': {}})
  with open(os.path.join(workdir, 'report.json'), 'w') as f:
    json.dump({'tasks': TASKS, 'records': records, 'seeds': [0, 1, 2]}, f)
  return workdir


def test_tables_of_a_multi_seed_run_give_mean_and_95_interval(tmp_path):
  workdir = write_multi_seed_workdir(tmp_path / 'seeds')
  final = [p['nll_paper'] for p in SEED_ROWS[1]]  # [seed][task] after the last task
  np.testing.assert_allclose(common.final_row(workdir, 'nll_paper'),
                             np.mean(final, axis=0))
  np.testing.assert_allclose(common.final_interval(workdir, 'nll_paper'),
                             [mean_and_ci(c)[1] for c in zip(*final)])
  ok = common.RunResult('ltgans', ['python'], workdir, workdir + '.log', 1.0, 0)
  text = '\n'.join(dict(common.nll_sections({'ltgans': ok}, str(tmp_path / 'out'),
                                             'test')).values())
  for metric in ('nll_paper', 'nll_iwae'):
    rows = [p[metric] for p in SEED_ROWS[1]]
    assert f'| mnist | {cell([r[0] for r in rows])} |' in text
    assert f'| fashion_mnist | {cell([r[1] for r in rows])} |' in text
    # The average over tasks is taken per seed, then its interval over seeds.
    assert f'| Average | {cell([np.mean(r) for r in rows])} |' in text
    first = [p[metric][0] for p in SEED_ROWS[0]]
    forgetting = [cell([np.mean(r) for r in rows]),  # final-row average
                  cell([(f + r[1]) / 2 for f, r in zip(first, rows)]),  # diagonal average
                  cell([r[0] - f for f, r in zip(first, rows)])]  # mean forgetting
    assert f'| LT-GANs | {metric} | ' + ' | '.join(forgetting) + ' |' in text
  assert "mean ± half-width of the 95% interval over 3 seeds (Student's t)" in text
  after_each = [cell([p['fid_own_all'][0] for p in rows]) for rows in SEED_ROWS]
  assert [common.fmt(v) for v in common.per_task_after_each(workdir, 'fid_own_all')] == (
      after_each)


def test_tables_of_a_one_seed_run_have_no_interval(tmp_path):
  workdir = write_fake_workdir(tmp_path / 'run')
  assert common.final_interval(workdir, 'nll_paper') is None
  ok = common.RunResult('ltgans', ['python'], workdir, workdir + '.log', 1.0, 0)
  text = '\n'.join(dict(common.nll_sections({'ltgans': ok}, str(tmp_path / 'out'),
                                             'test')).values())
  assert '| Average | 100.00 |' in text
  assert '±' not in text and '95% interval' not in text


def test_setting_section_names_what_changed(tmp_path):
  workdir = write_fake_workdir(tmp_path / 'run', {'train.steps_per_task': 9, 'vae.beta': 4.0})
  text = common.setting_section('configs/test.py', workdir, quick=True, notes=['a note'],
                                ignore=('vae.beta',))
  assert '`train.steps_per_task`: 4 -> 9' in text
  assert 'vae.beta' not in text.split('Changed from')[1]
  assert 'smoke run' in text and 'a note' in text


def test_resolve_folders_keeps_quick_results_out_of_the_repository():
  import argparse  # pylint: disable=g-import-not-at-top
  parser = argparse.ArgumentParser()
  parser.add_argument('--quick', action='store_true')
  common.add_folder_flags(parser)
  out, root = common.resolve_folders(parser.parse_args(['--quick']), 'table1_msfo')
  assert not out.startswith(os.path.join(ROOT, 'experiments'))
  assert root == os.path.join(out, 'workdirs')
  out, root = common.resolve_folders(parser.parse_args([]), 'table1_msfo')
  assert out == os.path.join(ROOT, 'experiments', 'results', 'table1_msfo')
  assert root == os.path.join(ROOT, 'workdirs', 'experiments', 'table1_msfo')


def test_run_config_reuses_a_finished_workdir(tmp_path):
  workdir = write_fake_workdir(tmp_path / 'run')
  overrides = {'train.steps_per_task': 4}
  command = common.build_command('configs/test.py', workdir, overrides)
  with open(os.path.join(workdir, common.RUN_RECORD), 'w') as f:
    json.dump({'command': command[1:], 'seconds': 12.5}, f)
  result = common.run_config('test', 'configs/test.py', workdir, overrides)
  assert result.ok and result.reused and result.seconds == 12.5


def test_a_failing_first_run_exits_with_the_library_message(tmp_path):
  specs = [('bad', 'configs/test.py', str(tmp_path / 'bad'), {'data.image_size': 30})]
  with pytest.raises(SystemExit) as exit_info:
    common.run_all(specs)
  assert 'data.image_size=30 is not supported' in str(exit_info.value)
  assert 'no results written' in str(exit_info.value)
  assert os.path.exists(str(tmp_path / 'bad') + '.log')


def test_student_reconstruction_error_of_the_reference_run(reference_run):
  workdir, _ = reference_run
  error = common.student_reconstruction_error(workdir, num_examples=8)
  assert error['tasks'] == common.task_names(workdir)
  assert len(error['sse']) == len(error['mse']) == 2
  assert np.all(np.isfinite(error['sse'])) and min(error['sse']) > 0
  np.testing.assert_allclose(np.array(error['mse']) * 28 * 28, error['sse'], rtol=1e-6)
  # Deterministic: the posterior mean, not a sample.
  assert common.student_reconstruction_error(workdir, num_examples=8)['sse'] == error['sse']


def test_cpu_size_is_the_cpu_scale_config():
  """--size=cpu and configs/*_cpu.py are one setting (config_base.cpu_scale_values)."""
  from ltgans_jax import config_base  # pylint: disable=g-import-not-at-top
  assert common.size_overrides('cpu', False) == config_base.cpu_scale_values(28, 1)
  config = config_base.get_cpu_scale_config('mnist_fashion')
  for dotted, value in config_base.cpu_scale_values().items():
    section, leaf = dotted.split('.')
    assert config[section][leaf] == value, dotted


def test_the_cpu_choices_benchmark_times_the_cpu_scale_networks():
  """``benchmark_cpu_choices.py --scale cpu`` sizes its networks as our CPU scale does."""
  from benchmarks.bench import settings  # pylint: disable=g-import-not-at-top
  from ltgans_jax import config_base  # pylint: disable=g-import-not-at-top
  cpu = config_base.cpu_scale_values()
  sizes = settings.CPU_SCALE
  assert (sizes['sizes'][0], sizes['channels'], sizes['batch']) == (
      cpu['data.image_size'], cpu['data.channels'], cpu['train.batch_size'])
  assert sizes['width'] == cpu['model.generator_width'] == cpu['model.critic_width'] == cpu[
      'vae.width']
  assert sizes['vae_latent'] == cpu['vae.latent_dim']


def test_every_config_file_loads_and_validates():
  """Each configs/*.py builds a config that passes validation (no data needed for that)."""
  import glob  # pylint: disable=g-import-not-at-top
  import importlib.util  # pylint: disable=g-import-not-at-top
  from ltgans_jax import config_validation  # pylint: disable=g-import-not-at-top
  paths = sorted(glob.glob(os.path.join(common.REPO_ROOT, 'configs', '*.py')))
  names = [os.path.basename(p) for p in paths]
  assert 'mnist_fashion_cpu.py' in names and 'authors_mnist_fashion.py' in names
  for path in paths:
    if path.endswith('__init__.py'):
      continue
    spec = importlib.util.spec_from_file_location('config_under_test', path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    config_validation.validate(module.get_config())


def test_a_resumed_run_s_wall_time_adds_its_timed_invocations(tmp_path, monkeypatch):
  """run_config keeps every invocation's seconds beside the workdir: a run stopped (SIGTERM,
  Ctrl-C) and resumed has a known wall time, one whose earlier part went untimed has none."""
  workdir = str(tmp_path / 'run')
  os.makedirs(os.path.join(workdir, 'checkpoints'))  # as a stopped run leaves it
  monkeypatch.setattr(common.runner, 'build_command',
                      lambda *a, **k: [sys.executable, '-c', 'pass'])
  records = workdir + common.runner.INVOCATIONS_SUFFIX
  with open(records, 'w') as f:
    json.dump([40.0, 2.0], f)  # two earlier invocations, each stopped through run_config
  result = common.run_config('test', 'configs/test.py', workdir, {})
  assert result.ok and result.resumed and result.earlier_seconds == 42.0
  assert result.total_seconds == pytest.approx(42.0 + result.seconds)
  with open(records) as f:
    assert json.load(f) == [40.0, 2.0, result.seconds]
  with open(records, 'w') as f:
    json.dump([40.0, None], f)  # the second one was killed outright
  assert common.run_config('test', 'configs/test.py', workdir, {}).total_seconds is None
  fresh = str(tmp_path / 'fresh')
  os.makedirs(fresh)  # what the real command would make
  result = common.run_config('test', 'configs/test.py', fresh, {})
  assert not result.resumed and result.total_seconds == result.seconds
