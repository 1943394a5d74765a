"""Figs. 2-3 of the paper: what the Student's latent space holds after lifelong learning.

* Fig. 2 (ELBO Student, beta=1): A/B samples after CelebA -> CACD and CelebA -> 3D Chairs;
  C/D interpolations between two encoded images of the same database and of different ones.
* Fig. 3 (beta-VAE Student, beta=4): traversals, one latent variable swept while the others
  stay fixed, after CelebA -> 3D Chairs.

Runs configs/celeba_cacd.py (beta 1), configs/celeba_chairs.py (beta 1 and --fig3_beta) and
collects the pictures the library writes after the last task (figures/final_*.png,
samples/task*_*.png) into the results folder, with captions. ``--offline`` runs MNIST ->
Fashion (configs/mnist_fashion.py) with beta 1 and --fig3_beta instead.

Usage (from the repository root):

  python experiments/figs2_3_latent.py --data_dir=DIR [--quick] [--size=small|paper]
      [--steps_per_task=N] [--methods=ltgans] [--offline] [--fig3_beta=4]
      [--set KEY=VALUE ...] [--out=experiments/results/figs2_3_latent] [--workdir_root=DIR]

DIR holds celeba/, cacd/ and chairs/ image folders (or CelebA from TFDS with
--set data.source=tfds); without them the script stops with the library's message.
"""

from __future__ import annotations

import argparse
import logging
import os
from typing import List, Tuple

import common

common.setup()  # before anything imports jax (see common.setup)

NAME = 'figs2_3_latent'
METHODS = ('ltgans',)
# (run suffix, config, beta: None for 1 or 'fig3' for --fig3_beta, the panels it gives)
ONLINE_RUNS = (
    ('celeba_cacd_beta1', 'celeba_cacd', None, 'Fig. 2A/2C (CelebA -> CACD)'),
    ('celeba_chairs_beta1', 'celeba_chairs', None, 'Fig. 2B/2D (CelebA -> 3D Chairs)'),
    ('celeba_chairs_fig3', 'celeba_chairs', 'fig3', 'Fig. 3 (CelebA -> 3D Chairs)'),
)
OFFLINE_RUNS = (
    ('mnist_fashion_beta1', 'mnist_fashion', None, 'Fig. 2 stand-in (MNIST -> Fashion)'),
    ('mnist_fashion_fig3', 'mnist_fashion', 'fig3', 'Fig. 3 stand-in (MNIST -> Fashion)'),
)
CAPTIONS = {
    'interpolation_same_task': 'Interpolations between the posterior means of two test images '
                               'of the same task (one row per pair: image, 8 decoded points, '
                               'image); Fig. 2C/2D, same database.',
    'interpolation_across_tasks': 'Interpolations between test images of neighbouring tasks; '
                                  'Fig. 2C/2D, different databases.',
    'traversal': 'Latent traversal of the first test image of that task: each row sweeps one '
                 'latent variable over [-3, 3] (the 8 with the smallest posterior variance for '
                 'this image), the others at the image\'s posterior mean; Fig. 3.',
    'assistant': 'Samples of the Assistant (the generator that has just learnt) after the last '
                 'task; Fig. 2A/2B.',
    'student_samples': 'Student samples (prior latents decoded) after the last task.',
    'student_reconstructions': 'Student reconstructions after the last task: per task, a row of '
                               'test images above their reconstructions.',
}


def parse_args(argv=None) -> argparse.Namespace:
  parser = argparse.ArgumentParser(description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  common.add_common_flags(parser, METHODS)
  parser.add_argument('--offline', action='store_true',
                      help='MNIST -> Fashion instead of the CelebA sequences.')
  parser.add_argument('--fig3_beta', type=float, default=4.0,
                      help='The beta-VAE Student\'s beta for Fig. 3 (the paper: 4).')
  return parser.parse_args(argv)


def caption(name: str) -> str:
  for key, text in CAPTIONS.items():
    if key in name:
      return text
  return name


def picture_patterns(fig3: bool, last_task: int) -> List[str]:
  """Fig. 2 runs: samples, reconstructions, interpolations; Fig. 3 runs: traversals, with the
  interpolations for comparison."""
  if fig3:
    return ['figures/final_traversal_*.png', 'figures/final_interpolation_*.png']
  return [f'samples/task{last_task}_assistant_*.png', f'samples/task{last_task}_student_*.png',
          'figures/final_interpolation_*.png']


def collect_pictures(result: common.RunResult, out: str, prefix: str, fig3: bool) -> List[str]:
  """Copies the last task's pictures; returns markdown lines with captions."""
  report = common.load_report(result.workdir)
  patterns = picture_patterns(fig3, len(report['tasks']))
  lines = []
  for path in common.copy_pictures(result.workdir, patterns, os.path.join(out, 'figures'),
                                   prefix):
    name = os.path.basename(path)[len(prefix):-4]
    lines.append(f'- **{name}**: {caption(name)}\n\n  ![{name}]({common.rel(path, out)})')
  return lines


def plan(args) -> List[Tuple[str, str, float, str, str, bool]]:
  """(run name, config, beta, panels, method, is the Fig. 3 run) for every run."""
  runs = OFFLINE_RUNS if args.offline else ONLINE_RUNS
  methods, _ = common.split_methods(args.methods)
  planned = []
  for method in methods:
    for suffix, config, beta, panels in runs:
      beta_value = args.fig3_beta if beta == 'fig3' else 1.0
      name = f'{method}_{suffix}'.replace('fig3', f'beta{beta_value:g}')
      planned.append((name, config, beta_value, f'{common.METHOD_TITLES.get(method, method)}: '
                      f'{panels}, beta {beta_value:g}', method, beta == 'fig3'))
  return planned


def main(argv=None) -> None:
  common.setup_logging()
  args = parse_args(argv)
  out, root = common.resolve_folders(args, NAME + ('_offline' if args.offline else ''))
  _, notes = common.split_methods(args.methods)
  for note in notes:
    logging.warning('%s', note)
  gray = args.offline
  overrides = common.size_overrides(args.size, args.quick, args.steps_per_task,
                                    common.parse_assignments(args.set),
                                    28 if gray else 32, 1 if gray else 3)
  overrides = {'data.data_dir': os.path.abspath(args.data_dir), **overrides}
  planned = plan(args)
  specs = [(name, common.config_path(config), os.path.join(root, name),
            {**overrides, 'method': method, 'vae.beta': beta})
           for name, config, beta, _, method, _ in planned]
  hint = ('' if args.offline else
          'Without the CelebA/CACD/3D Chairs folders, --offline runs MNIST -> Fashion instead.')
  results = common.run_all(specs, hint)
  common.reset_outputs(out)
  sections = [('How this differs from the paper', common.setting_section(
      specs[0][1], results[0].workdir, args.quick,
      (['Offline stand-in (--offline): MNIST -> Fashion instead of CelebA -> CACD / 3D '
        'Chairs.'] if args.offline else []) +
      ['The pictures come from the Student after the last task; the paper does not say which '
       'images it interpolates or which latent variables it sweeps: here the first test images '
       'of each task, and the 8 latent variables with the smallest posterior variance.'] + notes,
      ignore=('vae.beta',)))]
  for (name, _, _, panels, _, fig3), result in zip(planned, results):
    if not result.ok:
      sections.append((panels, f'Run `{name}` failed: {result.error}'))
      continue
    tasks = ' -> '.join(common.task_names(result.workdir))
    sections.append((panels, f'Sequence {tasks}.\n\n' +
                     '\n'.join(collect_pictures(result, out, f'{name}_', fig3))))
  title = 'Figs. 2-3: the Student\'s latent space after lifelong learning' + (
      ' (offline stand-in)' if args.offline else '')
  common.finish(out, title, sections, results, {'fig3_beta': args.fig3_beta, 'skipped': notes})


if __name__ == '__main__':
  main()
