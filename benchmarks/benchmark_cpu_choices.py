#!/usr/bin/env python
"""The JAX steps with and without one of the package's CPU choices, in one process.

Both settings compute the same function with the same parameters; only the compiled program
differs:

* ``--setting conv_gradients`` (``config.model.conv_gradients``): 'xla' differentiates the
  stride-1 convolutions with XLA's own rules (``nn.Conv``), 'barriered' with
  ``ltgans_jax/cpu/conv.py``'s
  (weight-gradient operands behind a fusion barrier or, with more input than output channels,
  input-major weight gradients; bias gradients as matrix-vector products; RGB layers as matrix
  products), the default on the CPU.

(``--setting phase_order``, 'free' against 'sequenced' passes within a step, existed up to git
f13d791; the redesign of issue 16 dropped the setting: ``experiments/results/redesign_issue16/``.)

For each image size and step, the two settings are compiled side by side in this process and
timed in alternating windows (A B, B A, ...), so that a slow spell of the machine hits both;
the ratio is the median of the per-round ratios. At the paper's sizes (batch 64, z=100,
widths 64, 3 channels) or, with ``--scale cpu``, at our CPU scale (widths 16, 1 channel, the
Student's 32 latents; ``--sizes 28``), on the CPU backend.

    python benchmarks/benchmark_cpu_choices.py --setting conv_gradients [--scale paper|cpu]
        [--sizes 32,64] [--rounds 8] [--window_s 3]
        [--out experiments/results/benchmark/cpu_epyc/conv_gradients.md]
"""

from __future__ import annotations

import argparse
import datetime
import gc
import os
import sys
import time

os.environ.setdefault('JAX_PLATFORMS', 'cpu')
# The repository root, as benchmarks/benchmark.py puts it first.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# pylint: disable=g-import-not-at-top,wrong-import-position
from experiments import common

common.setup()  # as benchmarks/benchmark.py does, before jax
# The step benchmark's parts (benchmarks/bench/): its implementations, timing and sizes.
from benchmarks.bench import machine, measure, settings
from benchmarks.bench.impls import JaxImpl, make_config
# pylint: enable=g-import-not-at-top,wrong-import-position

# setting -> (config section, key, (baseline value, the package's CPU value))
SETTINGS = {'conv_gradients': ('model', 'conv_gradients', ('xla', 'barriered'))}


def main():
  parser = argparse.ArgumentParser(description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument('--setting', choices=sorted(SETTINGS), required=True)
  parser.add_argument('--scale', choices=('paper', 'cpu'), default='paper',
                      help="the networks' sizes: the paper's (widths 64) or our CPU scale's")
  parser.add_argument('--sizes', default=None,
                      help='image sizes, comma-separated (default: 32 at paper scale, 28 at cpu)')
  parser.add_argument('--rounds', type=int, default=8, help='timed windows per setting')
  parser.add_argument('--window_s', type=float, default=3.0, help='seconds per window')
  parser.add_argument('--out', default=None, help='also write the table to this Markdown file')
  parser.add_argument('--quick', action='store_true',
                      help='tiny networks, 2 rounds of 0.1 s: checks that the script runs')
  args = parser.parse_args()
  sizes = (settings.QUICK if args.quick else
           settings.CPU_SCALE if args.scale == 'cpu' else settings.FULL)
  if args.sizes is None:
    args.sizes = ','.join(str(s) for s in sizes['sizes'][:1])
  if args.quick:
    args.rounds, args.window_s = 2, 0.1
  section, key, values = SETTINGS[args.setting]
  baseline, chosen = values

  started = datetime.datetime.now().isoformat(timespec='seconds')
  start = time.time()
  rows = []
  for size in [int(s) for s in args.sizes.split(',')]:
    for kind in settings.KINDS:
      impls = {}
      for value in values:
        config = make_config(sizes, size, 'pixel_shuffle')
        setattr(getattr(config, section), key, value)
        impls[value] = JaxImpl(config)
      print(f'== {size} px, {settings.KIND_NAMES[kind]}', flush=True)
      results = measure.measure_interleaved(impls, kind, args.rounds, args.window_s)
      for value in values:
        if 'error' in results[value]:
          sys.exit(f'{args.setting}={value} failed at {size} px: {results[value]["error"]}')
      ratio = measure.paired_ratio(results, chosen, baseline)
      rows.append((size, kind, results[baseline], results[chosen], ratio))
      del impls
      gc.collect()

  lines = [
      f'# {section}.{key}: {chosen!r} (the CPU default) against {baseline!r}',
      '',
      f'- Machine: {machine.cpu_model()}, {os.cpu_count()} logical cores;'
      f' XLA_FLAGS: `{os.environ.get("XLA_FLAGS", "(unset)")}` (plus what `import ltgans_jax`'
      ' adds).',
      f'- Run: `python benchmarks/benchmark_cpu_choices.py --setting {args.setting} '
      f'--scale {args.scale} --sizes '
      f'{args.sizes} --rounds {args.rounds} --window_s {args.window_s:g}'
      f'{" --quick" if args.quick else ""}` started {started}, git {machine.git_commit()}, '
      f'{(time.time() - start) / 60:.1f} min; batch {sizes["batch"]}, z={sizes["latent"]}, '
      f'widths {sizes["width"]}, {sizes.get("channels", 3)} channel(s); both settings compiled '
      'in one process and timed in alternating windows.',
      '',
      f'| image | step | {baseline} steps/s: median [min, max] | {chosen} steps/s | '
      f'**{chosen} / {baseline}**: median of per-round ratios [min, max] |',
      '|---|---|---|---|---|']
  for size, kind, base, new, ratio in rows:
    lines.append(
        f'| {size}px | {settings.KIND_NAMES[kind]} | '
        f'{base["median"]:.3f} [{base["min"]:.3f}, {base["max"]:.3f}] | '
        f'{new["median"]:.3f} [{new["min"]:.3f}, {new["max"]:.3f}] | '
        f'**{ratio["median"]:.2f}x** [{ratio["min"]:.2f}, {ratio["max"]:.2f}] |')
  table = '\n'.join(lines) + '\n'
  print('\n' + table)
  if args.out:
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, 'w') as f:
      f.write(table)


if __name__ == '__main__':
  main()
