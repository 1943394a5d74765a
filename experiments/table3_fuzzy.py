"""Table 3 of the paper: the Student's NLL on every task after lifelong learning with fuzzy task
boundaries, MNIST-c -> SVHN-c -> Fashion-c (configs/msf_fuzzy.py; one class's images exchanged
between neighbouring databases), one column per method.

Usage (from the repository root):

  python experiments/table3_fuzzy.py --data_dir=DIR [--quick] [--size=small|paper]
      [--steps_per_task=N] [--methods=ltgans,curl,lgm,no_lakd,finetune,joint] [--offline]
      [--set KEY=VALUE ...] [--out=experiments/results/table3_fuzzy] [--workdir_root=DIR]

``--offline`` (the default when DIR lacks svhn/) runs configs/mnist_fashion_fuzzy.py:
MNIST-c -> Fashion-c. Both measures are reported and named: the paper's NLOG (squared error +
KL, one posterior sample) and the importance-weighted NLL bound in nats.
"""

from __future__ import annotations

import argparse
import logging
import os

import common

common.setup()  # before anything imports jax (see common.setup)

NAME = 'table3_fuzzy'
METHODS = common.PAPER_METHODS + common.BASELINE_METHODS
ONLINE_FOLDERS = ('mnist', 'svhn', 'fashion_mnist')
# The paper's Table 3 (NLOG).
PAPER_TABLE = {
    'MNIST-c': (139.98, 437.45, 1365.41),
    'SVHN-c': (141.57, 209.70, 206.44),
    'Fashion-c': (51.68, 54.72, 145.78),
    'Average': (111.08, 233.96, 556.13),
}


def parse_args(argv=None) -> argparse.Namespace:
  parser = argparse.ArgumentParser(description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  common.add_common_flags(parser, METHODS)
  parser.add_argument('--offline', action='store_true',
                      help='Run configs/mnist_fashion_fuzzy.py (needs only mnist/, '
                      'fashion_mnist/).')
  return parser.parse_args(argv)


def choose_config(args) -> tuple:
  """(config name, note explaining the choice)."""
  if args.offline:
    return 'mnist_fashion_fuzzy', 'Offline stand-in requested (--offline): MNIST-c -> Fashion-c.'
  missing = common.missing_folders(args.data_dir, ONLINE_FOLDERS)
  if missing:
    note = (f'{args.data_dir} has no {", ".join(f + "/" for f in missing)}: ran the offline '
            'stand-in configs/mnist_fashion_fuzzy.py (MNIST-c -> Fashion-c) '
            'instead of MNIST-c -> SVHN-c -> Fashion-c.')
    logging.warning('%s', note)
    return 'mnist_fashion_fuzzy', note
  return 'msf_fuzzy', ''


def main(argv=None) -> None:
  common.setup_logging()
  args = parse_args(argv)
  sequence, choice_note = choose_config(args)
  out, root = common.resolve_folders(args, NAME)
  methods, notes = common.split_methods(args.methods)
  for note in notes:
    logging.warning('%s', note)
  config = common.config_path(sequence)
  gray = sequence == 'mnist_fashion_fuzzy'
  overrides = common.size_overrides(args.size, args.quick, args.steps_per_task,
                                    common.parse_assignments(args.set),
                                    28 if gray else 32, 1 if gray else 3)
  overrides = {'data.data_dir': os.path.abspath(args.data_dir), **overrides}
  results = dict(zip(methods, common.run_all(common.method_runs(methods, config, root,
                                                                overrides))))
  common.reset_outputs(out)
  first = next(r for r in results.values() if r.ok)
  values = common.run_config_values(first.workdir)
  statement = [choice_note] if choice_note else []
  names = common.task_names(first.workdir)
  swapped = values['data.fuzzy_swap_classes'][:len(names) - 1]
  statement += [
      'Class exchanged between each pair of neighbouring databases: ' + ', '.join(
          f'{a} / {b}: {c}' for a, b, c in zip(names, names[1:], swapped)) +
      ' (the paper says "one of the classes"; the authors\' code swaps 8 and 9).',
      'The CURL and LGM here are this project\'s versions in the same framework (the '
      'Student\'s networks, the same data, steps and evaluation; `ltgans_jax/methods/` lists '
      'how they differ from the authors\' code); no LAKD, fine-tuning and joint training are '
      'this project\'s own baselines.']
  sections = [('How this differs from the paper',
               common.setting_section(config, first.workdir, args.quick, statement + notes))]
  sections += common.nll_sections(results, out, sequence)
  sections.append(('The paper\'s Table 3 (for reference)',
                   'NLOG after MNIST-c -> SVHN-c -> Fashion-c; compare with the `nll_paper` '
                   'table only, and only in the same setting.\n\n' + common.markdown_table(
                       ['task', 'LT-GANs', 'CURL', 'LGM'],
                       [[k, *v] for k, v in PAPER_TABLE.items()])))
  title = 'Table 3: NLL with fuzzy task boundaries, ' + ' -> '.join(names)
  common.finish(out, title, sections, list(results.values()),
                {'sequence': sequence, 'skipped': notes})


if __name__ == '__main__':
  main()
