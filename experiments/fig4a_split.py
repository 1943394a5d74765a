"""Fig. 4a of the paper: one dataset split into 10 class tasks (configs/split_mnist.py or
configs/split_fashion.py), a bar plot of the Student's NLL on every task after the last task,
one bar per method, plus each method's forgetting heatmap.

Usage (from the repository root):

  python experiments/fig4a_split.py --data_dir=DIR [--quick] [--size=small|paper]
      [--steps_per_task=N] [--methods=ltgans,curl,no_lakd,finetune,joint]
      [--dataset=mnist|fashion_mnist] [--num_tasks=10] [--set KEY=VALUE ...]
      [--out=experiments/results/fig4a_split_<dataset>] [--workdir_root=DIR]
"""

from __future__ import annotations

import argparse
import logging
import os

import common

common.setup()  # before anything imports jax (see common.setup)

METHODS = ('ltgans', 'curl') + common.BASELINE_METHODS
CONFIGS = {'mnist': 'split_mnist', 'fashion_mnist': 'split_fashion'}


def parse_args(argv=None) -> argparse.Namespace:
  parser = argparse.ArgumentParser(description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  common.add_common_flags(parser, METHODS)
  parser.add_argument('--dataset', choices=sorted(CONFIGS), default='mnist')
  parser.add_argument('--num_tasks', type=int, default=None,
                      help='Class tasks (default: the config\'s 10).')
  return parser.parse_args(argv)


def main(argv=None) -> None:
  common.setup_logging()
  args = parse_args(argv)
  out, root = common.resolve_folders(args, f'fig4a_split_{args.dataset}')
  methods, notes = common.split_methods(args.methods)
  for note in notes:
    logging.warning('%s', note)
  config = common.config_path(CONFIGS[args.dataset])
  overrides = common.size_overrides(args.size, args.quick, args.steps_per_task,
                                    common.parse_assignments(args.set))
  overrides = {'data.data_dir': os.path.abspath(args.data_dir), **overrides}
  if args.num_tasks is not None:
    overrides['data.num_tasks'] = args.num_tasks
  results = dict(zip(methods, common.run_all(common.method_runs(methods, config, root,
                                                                overrides))))
  common.reset_outputs(out)
  first = next(r for r in results.values() if r.ok)
  statement = [
      'The paper evaluates the NLOG on all test samples and compares with CURL. '
      'The CURL here is this project\'s version in the same framework (the Student\'s networks, '
      'the same data, steps and evaluation; `ltgans_jax/methods/curl.py` lists how it differs '
      'from the authors\' code). The tasks are the classes in label order.']
  sections = [('How this differs from the paper',
               common.setting_section(config, first.workdir, args.quick, statement + notes))]
  sections += common.nll_sections(results, out, f'{args.dataset} split')
  names = common.task_names(first.workdir)
  title = f'Fig. 4a: NLL on {args.dataset} split into {len(names)} class tasks'
  common.finish(out, title, sections, list(results.values()),
                {'dataset': args.dataset, 'skipped': notes})


if __name__ == '__main__':
  main()
