"""Fig. 4b of the paper: the effect of LAKD as the Student's beta (eq. 6) varies. For each beta
(default 1, 2, 4, 8) one run with LAKD (method ltgans) and one without (method no_lakd: the
twins trained jointly on each task, the paper's baseline), on MNIST -> Fashion by default; a
plot of the NLL (paper quantity) and of the reconstruction error against beta, one line per
method.

Usage (from the repository root):

  python experiments/fig4b_ablation.py --data_dir=DIR [--quick] [--size=small|paper]
      [--steps_per_task=N] [--methods=ltgans,no_lakd] [--betas=1,2,4,8]
      [--sequence=mnist_fashion|msfo_offline] [--set KEY=VALUE ...]
      [--out=experiments/results/fig4b_ablation] [--workdir_root=DIR]

The reconstruction error is computed here, from each run's final checkpoint: the Student
encodes each task's first eval.num_examples test images, decodes the posterior mean, and the
squared error to the image (pixels in [0, 1]) is summed per image (SSE, the reconstruction part
of the paper's NLL) and averaged per pixel (MSE).
"""

from __future__ import annotations

import argparse
import logging
import os
from typing import Dict, List

import common

common.setup()  # before anything imports jax (see common.setup)

NAME = 'fig4b_ablation'
METHODS = ('ltgans', 'no_lakd')
SEQUENCES = ('mnist_fashion', 'msfo_offline')


def parse_args(argv=None) -> argparse.Namespace:
  parser = argparse.ArgumentParser(description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  common.add_common_flags(parser, METHODS)
  parser.add_argument('--betas', default='1,2,4,8', help='Comma-separated vae.beta values.')
  parser.add_argument('--sequence', choices=SEQUENCES, default='mnist_fashion')
  return parser.parse_args(argv)


def parse_betas(text: str) -> List[float]:
  betas = [float(b) for b in text.split(',') if b.strip()]
  if not betas or any(b <= 0 for b in betas):
    raise ValueError(f'--betas={text!r}: give positive numbers, e.g. 1,2,4,8.')
  return betas


def run_name(method: str, beta: float) -> str:
  return f'{method}_beta{beta:g}'


def collect(results: Dict[str, common.RunResult], methods, betas) -> Dict[str, Dict[float, dict]]:
  """method -> beta -> {'nll_paper', 'nll_iwae', 'sse', 'mse': [per task], 'tasks'}."""
  table = {m: {} for m in methods}
  for method in methods:
    for beta in betas:
      result = results[run_name(method, beta)]
      if not result.ok:
        continue
      error = common.student_reconstruction_error(result.workdir)
      table[method][beta] = {
          'tasks': error['tasks'], 'sse': error['sse'], 'mse': error['mse'],
          'nll_paper': common.final_row(result.workdir, 'nll_paper'),
          'nll_iwae': common.final_row(result.workdir, 'nll_iwae'),
      }
      logging.info('%s: SSE per task %s', result.name, error['sse'])
  return table


def plot(table, betas, path: str) -> str:
  """Left: NLL (paper quantity) vs beta; right: SSE vs beta. Solid: average over tasks;
  dashed: the first task (MNIST)."""
  figure, axes = common.new_figure(11, 4.2, ncols=2)
  for ax, key, label in zip(axes, ('nll_paper', 'sse'),
                            ('NLL, paper quantity (squared error + KL)',
                             'reconstruction error (SSE per image)')):
    for method, by_beta in table.items():
      xs = [b for b in betas if b in by_beta]
      if not xs:
        continue
      title = common.METHOD_TITLES.get(method, method)
      line = ax.plot(xs, [common.mean_or_none(by_beta[b][key]) for b in xs], 'o-',
                     label=f'{title}, average over tasks')[0]
      ax.plot(xs, [by_beta[b][key][0] for b in xs], 's--', color=line.get_color(),
              label=f'{title}, {by_beta[xs[0]]["tasks"][0]}')
    ax.set_xscale('log', base=2)
    ax.set_xticks(betas, labels=[f'{b:g}' for b in betas])
    ax.set_xlabel('beta (eq. 6)')
    ax.set_ylabel(label)
    ax.legend(fontsize=8)
  figure.suptitle('After the last task: with LAKD (LT-GANs) and without', fontsize=10)
  figure.tight_layout()
  os.makedirs(os.path.dirname(path), exist_ok=True)
  figure.savefig(path)
  return path


def tables_markdown(table, betas) -> str:
  header = ['method', 'beta', 'task', 'NLL (paper quantity)', 'NLL bound (IWAE, nats)',
            'SSE per image', 'MSE per pixel']
  rows = []
  for method, by_beta in table.items():
    for beta in betas:
      if beta not in by_beta:
        rows.append([common.METHOD_TITLES.get(method, method), f'{beta:g}', 'failed',
                     None, None, None, None])
        continue
      v = by_beta[beta]
      for j, task in enumerate(v['tasks']):
        rows.append([common.METHOD_TITLES.get(method, method), f'{beta:g}', task,
                     v['nll_paper'][j], v['nll_iwae'][j], v['sse'][j], v['mse'][j]])
      rows.append([common.METHOD_TITLES.get(method, method), f'{beta:g}', '**average**',
                   *(common.mean_or_none(v[k]) for k in ('nll_paper', 'nll_iwae', 'sse',
                                                          'mse'))])
  return common.markdown_table(header, rows)


def main(argv=None) -> None:
  common.setup_logging()
  args = parse_args(argv)
  betas = parse_betas(args.betas)
  out, root = common.resolve_folders(args, NAME)
  methods, notes = common.split_methods(args.methods)
  for note in notes:
    logging.warning('%s', note)
  config = common.config_path(args.sequence)
  overrides = common.size_overrides(args.size, args.quick, args.steps_per_task,
                                    common.parse_assignments(args.set))
  overrides = {'data.data_dir': os.path.abspath(args.data_dir), **overrides}
  specs = []
  for beta in betas:
    for method in methods:
      name = run_name(method, beta)
      specs.append((name, config, os.path.join(root, name),
                    {**overrides, 'method': method, 'vae.beta': beta}))
  results = {r.name: r for r in common.run_all(specs)}
  common.reset_outputs(out)
  table = collect(results, methods, betas)
  figure = plot(table, betas, os.path.join(out, 'plots', 'nll_mse_vs_beta.png'))
  first = next(r for r in results.values() if r.ok)
  statement = [
      f'Sequence `{args.sequence}`; the paper\'s Fig. 4b is "NLOG and MSE on MNIST" without '
      'naming the sequence. The baseline is the paper\'s: Teacher and Assistant trained '
      'jointly on each task (method `no_lakd`).',
      'MSE: the paper does not define it; here SSE is the per-image sum of squared errors of '
      'the mean reconstruction (pixels in [0, 1], the reconstruction part of the paper\'s NLL) '
      'and MSE the same per pixel, computed by this script from the final checkpoint.']
  sections = [
      ('How this differs from the paper',
       common.setting_section(config, first.workdir, args.quick, statement + notes,
                              ignore=('vae.beta',))),
      ('NLL and reconstruction error against beta, after the last task',
       f'Lower is better. First {common.run_config_values(first.workdir)["eval.num_examples"]}'
       ' test images per task.\n\n' + tables_markdown(table, betas) +
       f'\n\n![NLL and MSE vs beta]({common.rel(figure, out)})'),
  ]
  title = 'Fig. 4b: LAKD ablation over beta, ' + ' -> '.join(common.task_names(first.workdir))
  common.finish(out, title, sections, list(results.values()), {
      'betas': betas, 'skipped': notes,
      'table': {m: {f'{b:g}': v for b, v in t.items()} for m, t in table.items()}})


if __name__ == '__main__':
  main()
