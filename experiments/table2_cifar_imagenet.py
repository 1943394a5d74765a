"""Table 2 of the paper: FID of the generator after lifelong learning of CIFAR10 -> CIFAR100 ->
Sub1-ImageNet -> Sub2-ImageNet (configs/cifar_imagenet.py), one column per method.

Usage (from the repository root):

  python experiments/table2_cifar_imagenet.py --data_dir=DIR [--quick] [--size=small|paper]
      [--steps_per_task=N] [--methods=ltgans,curl,no_lakd,finetune,joint]
      [--inception_weights=pt_inception-2015-12-05-6726825d.pth] [--set KEY=VALUE ...]
      [--out=experiments/results/table2_cifar_imagenet] [--workdir_root=DIR]

DIR holds cifar10/, cifar100/ (python pickles) and imagenet/<wnid>/ image folders; without
them the script stops with the library's message and writes no results. The FID is computed
with this project's own feature network (``fid_own``) unless ``--inception_weights`` names the
pytorch-fid InceptionV3 weights, in which case the standard Inception FID (``fid_inception``) is
reported as well and used for the main table.
"""

from __future__ import annotations

import argparse
import logging
import os

import common

common.setup()  # before anything imports jax (see common.setup)

NAME = 'table2_cifar_imagenet'
CONFIG = common.config_path('cifar_imagenet')
METHODS = ('ltgans', 'curl') + common.BASELINE_METHODS
# The paper's Table 2 (Inception FID, 'after the lifelong learning', three rows).
PAPER_TABLE = {'First task': (62.85, 155.59), 'Second task': (59.27, 166.47),
               'Third task': (60.35, 169.28)}


def parse_args(argv=None) -> argparse.Namespace:
  parser = argparse.ArgumentParser(description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  common.add_common_flags(parser, METHODS)
  parser.add_argument('--inception_weights', default='',
                      help='pytorch-fid weights file (pt_inception-*.pth) for Inception FID.')
  return parser.parse_args(argv)


def fid_sections(results, out: str, metric: str):
  """The FID of the last generator on each task, and on all seen tasks after each task."""
  finished = {m: r for m, r in results.items() if r.ok}
  names = next(common.task_names(r.workdir) for r in finished.values())
  columns = {m: (common.final_row(r.workdir, metric) if r.ok else None)
             for m, r in results.items()}
  plot = common.grouped_bars(os.path.join(out, 'plots', f'{metric}_final.png'), names, columns,
                             metric, f'{metric} after the last task, per task')
  after_each = {m: (common.per_task_after_each(r.workdir, f'{metric}_all') if r.ok else None)
                for m, r in results.items()}
  rows = [[f'after {name}'] + [(v[j] if v and j < len(v) else None) for v in after_each.values()]
          for j, name in enumerate(names)]
  header = ['after task'] + [common.METHOD_TITLES.get(m, m) for m in after_each]
  sections = [
      (f'{metric}: {common.metric_description(metric)}, per task after the last task',
       'FID between the Assistant\'s samples (the generator that has just learnt) and each '
       'task\'s test images. Lower is better.\n\n' + common.methods_by_task_table(names, columns)
       + f'\n\n![{metric}]({common.rel(plot, out)})'),
      (f'{metric} after each task switch, against all tasks seen so far',
       'The generator after learning task i against the union of the test sets of tasks '
       '1..i (the reading of the paper\'s rows used here).\n\n' +
       common.markdown_table(header, rows)),
      ('Forgetting (from each run\'s eval/*.json)', common.forgetting_table(finished, [metric])),
  ]
  figures = []
  for method, result in finished.items():
    for path in common.copy_pictures(result.workdir, [f'eval/{metric}.png'],
                                     os.path.join(out, 'figures'), f'{method}_'):
      figures.append(f'- {common.METHOD_TITLES.get(method, method)}: '
                     f'![{method}]({common.rel(path, out)})')
    for path in common.copy_pictures(result.workdir, ['samples/task*_assistant_*samples.png'],
                                     os.path.join(out, 'figures'), f'{method}_'):
      figures.append(f'- {common.METHOD_TITLES.get(method, method)} samples '
                     f'{os.path.basename(path)}: ![samples]({common.rel(path, out)})')
  sections.append(('Forgetting matrices and samples', '\n'.join(figures)))
  return sections


def main(argv=None) -> None:
  common.setup_logging()
  args = parse_args(argv)
  out, root = common.resolve_folders(args, NAME)
  methods, notes = common.split_methods(args.methods)
  for note in notes:
    logging.warning('%s', note)
  overrides = common.size_overrides(args.size, args.quick, args.steps_per_task,
                                    common.parse_assignments(args.set), 32, 3)
  overrides = {'data.data_dir': os.path.abspath(args.data_dir), **overrides}
  if args.inception_weights:
    overrides['eval.inception_weights'] = os.path.abspath(args.inception_weights)
  results = dict(zip(methods, common.run_all(common.method_runs(methods, CONFIG, root,
                                                                overrides))))
  common.reset_outputs(out)
  first = next(r for r in results.values() if r.ok)
  metric = 'fid_inception' if args.inception_weights else 'fid_own'
  statement = [
      'The paper reports the Inception FID; ' + (
          'this run does too (`fid_inception`).' if args.inception_weights else
          'without --inception_weights this run reports the FID with this project\'s own '
          'small feature classifier (`fid_own`), whose values are not on the Inception scale.'),
      'The paper does not list its ImageNet classes; Sub1/Sub2 are the config\'s '
      '(`data.imagenet_sub1`/`imagenet_sub2`, Imagenette and Imagewoof by default). The paper '
      'compares with CURL; the CURL here is this project\'s version in the same framework '
      '(`ltgans_jax/methods/curl.py`), and the other baselines are this project\'s.']
  sections = [('How this differs from the paper',
               common.setting_section(CONFIG, first.workdir, args.quick, statement + notes))]
  sections += fid_sections(results, out, metric)
  if metric != 'fid_own':
    sections += fid_sections(results, out, 'fid_own')
  sections.append(('The paper\'s Table 2 (for reference; Inception FID)', common.markdown_table(
      ['row', 'LT-GANs', 'CURL'], [[k, *v] for k, v in PAPER_TABLE.items()])))
  title = 'Table 2: FID after lifelong learning of ' + ' -> '.join(
      common.task_names(first.workdir))
  common.finish(out, title, sections, list(results.values()),
                {'metric': metric, 'skipped': notes})


if __name__ == '__main__':
  main()
