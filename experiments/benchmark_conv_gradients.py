#!/usr/bin/env python
"""The JAX steps with XLA's own convolution gradients against ``conv.Conv``'s CPU rules.

``config.model.conv_gradients``: 'xla' differentiates the stride-1 convolutions with XLA's
own rules; 'barriered' with ``ltgans_jax/conv.py``'s (weight-gradient operands behind a
fusion barrier or, with more input than output channels, input-major weight gradients; bias
gradients as matrix-vector products; RGB layers as matrix products), the default on the CPU.
Both compute the same function with the same parameters. Each mode runs in fresh subprocesses (the
``jax_steps`` worker of ``benchmark.py``, on the CPU), alternating (A B B A ...), at the paper
sizes (batch 64, z=100, widths 64); steps/s is the median of timed windows after warm-up.

    python experiments/benchmark_conv_gradients.py [--sizes 32,64] [--alternations 2]
        [--out experiments/results/benchmark/cpu_epyc/conv_gradients.md]
"""

from __future__ import annotations

import argparse
import datetime
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchmark  # pylint: disable=g-import-not-at-top

MODES = ('xla', 'barriered')
KINDS = benchmark.KINDS


def main():
  parser = argparse.ArgumentParser(description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument('--sizes', default='32', help='image sizes, comma-separated (32, 64)')
  parser.add_argument('--alternations', type=int, default=2,
                      help='runs per mode, alternating between the modes')
  parser.add_argument('--windows', type=int, default=5, help='timed windows per step')
  parser.add_argument('--window_s', type=float, default=3.0, help='seconds per window')
  parser.add_argument('--out', default=None, help='also write the table to this Markdown file')
  args = parser.parse_args()
  worker_args = argparse.Namespace(quick=False, rounds=args.windows, window_s=args.window_s)

  started = datetime.datetime.now().isoformat(timespec='seconds')
  start = time.time()
  runs = []  # (size, mode, {kind: result})
  for size in [int(s) for s in args.sizes.split(',')]:
    for alternation in range(args.alternations):
      for mode in (MODES if alternation % 2 == 0 else MODES[::-1]):
        out = benchmark.run_worker_subprocess(
            worker_args, 'jax_steps',
            extra_args=('--_size', str(size), '--_conv_gradients', mode), cpu_only=True)
        if 'error' in out:
          sys.exit(f'The {mode} run at {size} px failed: {out["error"]}')
        runs.append((size, mode, out['results']))
        print(f'{size}px run {alternation + 1} {mode:9s} ' + '  '.join(
            f"{kind} {out['results'][kind]['median']:.3f} steps/s" for kind in KINDS),
              flush=True)

  lines = [
      '# Convolution gradients: XLA\'s own against conv.Conv\'s CPU rules',
      '',
      f'- Machine: {benchmark.cpu_model()}, {os.cpu_count()} logical cores;'
      f' XLA_FLAGS: `{os.environ.get("XLA_FLAGS", "(unset)")}` (plus what `import ltgans_jax`'
      ' adds).',
      f'- Run: `python experiments/benchmark_conv_gradients.py --sizes {args.sizes} '
      f'--alternations {args.alternations}` started {started}, git {benchmark.git_commit()}, '
      f'{(time.time() - start) / 60:.1f} min; batch 64, z=100, widths 64; each run a fresh '
      f'process, {args.windows} windows of about {args.window_s:.0f} s per step.',
      '',
      '| image | step | xla steps/s (per run) | barriered steps/s (per run) | '
      '**barriered / xla** (median of runs) |',
      '|---|---|---|---|---|']
  for size in sorted({size for size, _, _ in runs}):
    for kind in KINDS:
      rates = {mode: [results[kind]['median'] for s, m, results in runs
                      if s == size and m == mode] for mode in MODES}
      ratios = [b / a for a, b in zip(rates['xla'], rates['barriered'])]
      lines.append(f'| {size}px | {benchmark.KIND_NAMES[kind]} | ' + ' | '.join(
          ', '.join(f'{v:.3f}' for v in rates[mode]) for mode in MODES)
                   + f' | **{statistics.median(ratios):.2f}x** |')
  table = '\n'.join(lines) + '\n'
  print('\n' + table)
  if args.out:
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, 'w') as f:
      f.write(table)


if __name__ == '__main__':
  main()
