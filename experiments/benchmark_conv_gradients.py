#!/usr/bin/env python
"""The JAX steps with XLA's own convolution gradients against ``conv.Conv``'s CPU rules.

``config.model.conv_gradients``: 'xla' differentiates the stride-1 convolutions with XLA's
own rules; 'barriered' with ``ltgans_jax/conv.py``'s (weight-gradient operands behind a
fusion barrier, bias gradients as matrix-vector products), the default on the CPU. Both compute
the same function with the same parameters. Each mode runs in fresh subprocesses, alternating
(A B B A ...), at the benchmark's paper sizes (batch 64, z=100, widths 64); steps/s is the
median of timed windows after warm-up.

    python experiments/benchmark_conv_gradients.py [--sizes 32,64] [--alternations 2]
        [--out experiments/results/benchmark/cpu/conv_gradients.md]
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

MODES = ('xla', 'barriered')
KINDS = ('adversarial', 'student', 'full')


def worker(mode: str, size: int, windows: int, window_s: float) -> dict:
  """Steps/s of the three JAX steps with ``conv_gradients=mode``, in this process."""
  import benchmark  # pylint: disable=g-import-not-at-top
  config = benchmark.make_config(benchmark.FULL, size, 'pixel_shuffle')
  config.model.conv_gradients = mode
  impl = benchmark.JaxImpl(config)
  result = {}
  for kind in KINDS:
    start = time.perf_counter()
    impl.step(kind)
    impl.sync(kind)
    first_call_s = time.perf_counter() - start
    warm_rate = benchmark.timed_window(impl, kind, 2)
    steps = max(1, round(window_s * warm_rate))
    rates = [benchmark.timed_window(impl, kind, steps) for _ in range(windows)]
    result[kind] = {'first_call_s': first_call_s, 'steps_per_s': statistics.median(rates),
                    'min': min(rates), 'max': max(rates), 'steps_per_window': steps}
  return result


def main():
  parser = argparse.ArgumentParser(description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument('--sizes', default='32', help='image sizes, comma-separated (32, 64)')
  parser.add_argument('--alternations', type=int, default=2,
                      help='runs per mode, alternating between the modes')
  parser.add_argument('--windows', type=int, default=5, help='timed windows per step')
  parser.add_argument('--window_s', type=float, default=3.0, help='seconds per window')
  parser.add_argument('--out', default=None, help='also write the table to this Markdown file')
  parser.add_argument('--_worker', choices=MODES, default=None, help=argparse.SUPPRESS)
  parser.add_argument('--_size', type=int, default=32, help=argparse.SUPPRESS)
  args = parser.parse_args()
  if args._worker:  # pylint: disable=protected-access
    print('RESULT ' + json.dumps(worker(args._worker, args._size, args.windows,  # pylint: disable=protected-access
                                        args.window_s)))
    return

  started = datetime.datetime.now().isoformat(timespec='seconds')
  start = time.time()
  runs = []  # (size, alternation, mode, result)
  for size in [int(s) for s in args.sizes.split(',')]:
    for alternation in range(args.alternations):
      order = MODES if alternation % 2 == 0 else MODES[::-1]
      for mode in order:
        command = [sys.executable, os.path.abspath(__file__), '--_worker', mode, '--_size',
                   str(size), '--windows', str(args.windows), '--window_s', str(args.window_s)]
        out = subprocess.run(command, capture_output=True, text=True, check=False)
        lines = [l for l in out.stdout.splitlines() if l.startswith('RESULT ')]
        if out.returncode != 0 or not lines:
          sys.exit(f'The {mode} run at {size} px failed:\n{out.stderr[-3000:]}')
        result = json.loads(lines[-1][len('RESULT '):])
        runs.append((size, alternation, mode, result))
        print(f'{size}px run {alternation + 1} {mode:9s} ' + '  '.join(
            f"{kind} {result[kind]['steps_per_s']:.3f} steps/s" for kind in KINDS), flush=True)

  git = subprocess.run(['git', 'rev-parse', '--short', 'HEAD'], cwd=ROOT, capture_output=True,
                       text=True, check=False).stdout.strip() or 'unknown'
  lines = [
      '# Convolution gradients: XLA\'s own against conv.Conv\'s CPU rules',
      '',
      f'- Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} logical cores;'
      f' XLA_FLAGS: `{os.environ.get("XLA_FLAGS", "(unset)")}` (plus what `import ltgans_jax`'
      ' adds).',
      f'- Run: `python experiments/benchmark_conv_gradients.py --sizes {args.sizes} '
      f'--alternations {args.alternations}` started {started}, git {git}, '
      f'{(time.time() - start) / 60:.1f} min; batch 64, z=100, widths 64; each run a fresh '
      f'process, {args.windows} windows of about {args.window_s:.0f} s per step.',
      '',
      '| image | step | xla steps/s (per run) | barriered steps/s (per run) | '
      '**barriered / xla** (median of runs) |',
      '|---|---|---|---|---|']
  for size in sorted({r[0] for r in runs}):
    for kind in KINDS:
      rates = {mode: [r[3][kind]['steps_per_s'] for r in runs if r[0] == size and r[2] == mode]
               for mode in MODES}
      ratios = [b / a for a, b in zip(rates['xla'], rates['barriered'])]
      lines.append(f'| {size}px | {kind} | ' + ' | '.join(
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
