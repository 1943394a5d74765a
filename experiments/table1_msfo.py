"""Table 1 of the paper: the Student's NLL on every task after lifelong learning of MNIST ->
SVHN -> Fashion -> Omniglot (MSFO), one column per method.

Usage (from the repository root):

  python experiments/table1_msfo.py --data_dir=DIR [--quick] [--size=small|paper]
      [--steps_per_task=N] [--methods=ltgans,curl,lgm,no_lakd,finetune,joint]
      [--sequence=msfo|msfo_offline|mnist_fashion] [--offline] [--set KEY=VALUE ...]
      [--out=experiments/results/table1_msfo] [--workdir_root=DIR]

``--offline`` (the default when DIR lacks svhn/ or omniglot/) runs configs/msfo_offline.py:
MNIST -> Fashion -> inverted MNIST -> inverted Fashion. ``--sequence=mnist_fashion`` runs
configs/mnist_fashion.py instead (results in experiments/results/table1_mnist_fashion).
Both measures are reported and named: the paper's NLOG (squared error + KL, one posterior
sample) and the importance-weighted NLL bound in nats.
"""

from __future__ import annotations

import argparse
import logging
import os

import common

common.setup()  # before anything imports jax (see common.setup)

NAME = 'table1_msfo'
METHODS = common.PAPER_METHODS + common.BASELINE_METHODS
SEQUENCES = ('msfo', 'msfo_offline', 'mnist_fashion')
ONLINE_FOLDERS = ('mnist', 'svhn', 'fashion_mnist', 'omniglot')
# The paper's Table 1 (NLOG; 32x32x3 MSFO).
PAPER_TABLE = {
    'MNIST': (878.92, 887.40, 900.18),
    'SVHN': (219.15, 261.08, 262.20),
    'Fashion': (365.62, 639.19, 642.20),
    'Omniglot': (514.87, 695.68, 700.84),
    'Average': (494.64, 620.83, 626.35),
}


def parse_args(argv=None) -> argparse.Namespace:
  parser = argparse.ArgumentParser(description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  common.add_common_flags(parser, METHODS)
  parser.add_argument('--sequence', choices=SEQUENCES, default=None,
                      help='Default: msfo, or msfo_offline when svhn/ or omniglot/ is missing.')
  parser.add_argument('--offline', action='store_true', help='Same as --sequence=msfo_offline.')
  return parser.parse_args(argv)


def choose_sequence(args) -> tuple:
  """(sequence, note explaining the choice)."""
  if args.offline:
    return 'msfo_offline', 'Offline stand-in requested (--offline).'
  if args.sequence == 'mnist_fashion':
    return 'mnist_fashion', ('MNIST -> Fashion (--sequence=mnist_fashion) is not one of the '
                             'paper\'s sequences: two of the MSFO databases, in MSFO\'s order.')
  if args.sequence:
    return args.sequence, ''
  missing = common.missing_folders(args.data_dir, ONLINE_FOLDERS)
  if missing:
    note = (f'{args.data_dir} has no {", ".join(f + "/" for f in missing)}: ran the offline '
            'stand-in configs/msfo_offline.py (MNIST -> Fashion -> inverted MNIST -> inverted '
            'Fashion) instead of MSFO.')
    logging.warning('%s', note)
    return 'msfo_offline', note
  return 'msfo', ''


def paper_section() -> str:
  rows = [[task] + list(values) for task, values in PAPER_TABLE.items()]
  return ('NLOG (squared error + KL) after learning MNIST -> SVHN -> Fashion -> Omniglot; '
          'compare with the `nll_paper` table only, and only in the same setting.\n\n' +
          common.markdown_table(['task', 'LT-GANs', 'CURL', 'LGM'], rows))


def main(argv=None) -> None:
  common.setup_logging()
  args = parse_args(argv)
  sequence, choice_note = choose_sequence(args)
  name = 'table1_mnist_fashion' if sequence == 'mnist_fashion' else NAME
  out, root = common.resolve_folders(args, name)
  methods, notes = common.split_methods(args.methods)
  for note in notes:
    logging.warning('%s', note)
  config = common.config_path(sequence)
  gray = sequence != 'msfo'
  overrides = common.size_overrides(args.size, args.quick, args.steps_per_task,
                                    common.parse_assignments(args.set),
                                    28 if gray else 32, 1 if gray else 3)
  overrides = {'data.data_dir': os.path.abspath(args.data_dir), **overrides}
  results = dict(zip(methods, common.run_all(common.method_runs(methods, config, root,
                                                                overrides))))
  common.reset_outputs(out)
  first = next(r for r in results.values() if r.ok)
  statement = [choice_note] if choice_note else []
  statement.append('The CURL and LGM here are this project\'s versions in the same framework '
                   '(the Student\'s networks, the same data, steps and evaluation; '
                   '`ltgans_jax/methods/` lists how they differ from the authors\' code); '
                   'no LAKD, fine-tuning and joint training are this project\'s own baselines.')
  sections = [('How this differs from the paper',
               common.setting_section(config, first.workdir, args.quick, statement + notes))]
  sections += common.nll_sections(results, out, f'{sequence}')
  sections.append(('The paper\'s Table 1 (for reference)', paper_section()))
  title = ('Table 1: NLL after lifelong learning of ' +
           ' -> '.join(common.task_names(first.workdir)))
  common.finish(out, title, sections, list(results.values()),
                {'sequence': sequence, 'skipped': notes})


if __name__ == '__main__':
  main()
