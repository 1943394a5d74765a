"""The benchmark's command line and its order of work: flags, the sizes of this run, the report's
head (machine, software, command), then each section in turn, writing the report after each so
that an interrupted run leaves what it measured. ``--_worker`` hands over to ``workers``."""

from __future__ import annotations

import argparse
import datetime
import os
import shlex
import sys
import time
from typing import Dict, List, Optional

from benchmarks import bench
from experiments import common
from benchmarks.bench import machine, sections, workers
from benchmarks.bench.measure import loadavg, max_rss_bytes
from benchmarks.bench.report import fmt_bytes, save_figure, write_report
from benchmarks.bench.settings import FULL, QUICK

ROOT = common.REPO_ROOT


def parse_args(argv=None):
  p = argparse.ArgumentParser(description=bench.__doc__.split('\n')[0])
  p.add_argument('--quick', action='store_true', help='tiny sizes, few steps: a smoke run')
  p.add_argument('--out', default=None,
                 help='output folder (default experiments/results/benchmark/<platform>)')
  p.add_argument('--skip_torch', action='store_true', help='JAX only')
  p.add_argument('--torch_compile', choices=('auto', 'on', 'off'), default='auto',
                 help="torch.compile variants: 'auto' = on, except with --quick")
  p.add_argument('--flags_ab', choices=('auto', 'on', 'off'), default='auto',
                 help="the A/B on CPU of XLA's defaults against ltgans_jax's XLA:CPU flags: "
                      "'auto' = on, except with --quick")
  p.add_argument('--sizes', default=None,
                 help='comma-separated image sizes of the main comparison (default 32,64)')
  p.add_argument('--rounds', type=int, default=None, help='timed windows per implementation')
  p.add_argument('--window_s', type=float, default=None, help='target seconds per window')
  p.add_argument('--skip_subprocesses', action='store_true',
                 help='no memory, device-count or XLA-flags subprocess runs')
  # Internal: the subprocesses (one measurement each, one JSON line out).
  p.add_argument('--_worker', choices=('devices', 'jax_steps', 'memory'), default=None,
                 help=argparse.SUPPRESS)
  p.add_argument('--_impl', choices=('jax', 'eager'), default='jax', help=argparse.SUPPRESS)
  p.add_argument('--_size', type=int, default=32, help=argparse.SUPPRESS)
  p.add_argument('--_mode', default='pixel_shuffle', help=argparse.SUPPRESS)
  p.add_argument('--_conv_gradients', default='auto', help=argparse.SUPPRESS)
  return p.parse_args(argv)


def run_sizes(args) -> Dict:
  """The full or quick sizes, with --rounds, --window_s and --sizes applied."""
  sizes = dict(QUICK if args.quick else FULL)
  if args.rounds:
    sizes['rounds'] = args.rounds
  if args.window_s:
    sizes['window_s'] = args.window_s
  if args.sizes:
    sizes['sizes'] = tuple(int(s) for s in args.sizes.split(','))
  return sizes


def import_torch(args, notes: List[str]):
  """torch, or None with --skip_torch or when it is not installed (then a note says so)."""
  if args.skip_torch:
    return None
  try:
    import torch  # pylint: disable=g-import-not-at-top
  except ImportError as e:
    notes.append(f'torch is not importable ({e}): JAX only.')
    return None
  return torch


def configure_torch(torch, platform_name: str, use_compile: bool) -> List[str]:
  """Threads, cuDNN and TF32 as XLA has them, the dynamo cache; returns what was set."""
  torch_notes = []
  torch.set_num_threads(os.cpu_count())
  if platform_name == 'gpu':
    torch.backends.cudnn.benchmark = True
    # XLA's default precision on NVIDIA GPUs runs float32 matmuls and convolutions in
    # TF32; let torch do the same.
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    torch_notes.append('cudnn.benchmark, TF32 allowed')
  if use_compile:
    try:  # room for the Teacher, Assistant, critic and Student graphs of both image sizes
      torch._dynamo.config.cache_size_limit = 64  # pylint: disable=protected-access
    except AttributeError:
      pass
  return torch_notes


def new_report(args, platform_name: str, sizes: Dict, notes: List[str], torch,
               use_compile: bool, torch_notes: List[str]) -> Dict:
  """The report before any measurement: the run's command, date, commit, load and machine."""
  executable = sys.executable
  if executable.startswith(ROOT + os.sep):
    executable = os.path.relpath(executable, ROOT)
  report = {
      'platform': platform_name, 'quick': args.quick,
      'command': ' '.join(shlex.quote(a) for a in [executable] + sys.argv),
      'date': datetime.datetime.now().isoformat(timespec='seconds'),
      'git': machine.git_commit(), 'loadavg_start': loadavg(), 'sizes': sizes, 'cases': [],
      'notes': notes, 'machine': machine.describe(platform_name, torch, torch_notes)}
  if torch is not None and not use_compile:
    report['torch_compile_note'] = 'torch.compile not run (' + (
        '--quick' if args.quick and args.torch_compile == 'auto' else '--torch_compile=off') + ').'
  return report


def torch_variants(torch, size: int, sizes: Dict, platform_name: str,
                   use_compile: bool) -> List:
  """(variant, resample mode) of the PyTorch implementations timed at ``size``."""
  if torch is None:
    return []
  variants = [('eager', 'pixel_shuffle'), ('eager', 'strided')]
  if size == 32 and sizes['channels_last']:
    variants.append(('eager_cl', 'pixel_shuffle'))
    if platform_name == 'cpu' and os.cpu_count() > 1:
      variants.append(('eager_1t', 'pixel_shuffle'))
  if use_compile:
    variants.append(('compile', 'pixel_shuffle'))
  return variants


def measure_all(args, sizes: Dict, platform_name: str, torch, use_compile: bool, report: Dict,
                out_dir: str) -> None:
  """Every section in turn; the report is rewritten after each."""
  tried_full_compile = False
  for size in sizes['sizes']:
    modes = list(sizes['jax_modes_32']) if size == 32 else ['pixel_shuffle']
    sections.run_case(size, modes, torch_variants(torch, size, sizes, platform_name, use_compile),
                      sizes, platform_name, report, try_full_compile=not tried_full_compile)
    tried_full_compile = tried_full_compile or use_compile
    write_report(report, out_dir)
  print('\n== lifelong state size', flush=True)
  sections.state_sizes(sizes, report)
  sections.batch_scaling(sizes, report)
  write_report(report, out_dir)
  if not args.skip_subprocesses:
    workers.memory_section(args, sizes, platform_name, torch is not None, report)
    write_report(report, out_dir)
    if platform_name == 'cpu':
      workers.device_scaling(args, sizes, report)
      write_report(report, out_dir)
      if args.flags_ab == 'on' or (args.flags_ab == 'auto' and sizes['flags_ab']):
        workers.xla_flags_ab(args, report)
        write_report(report, out_dir)
    else:
      report['notes'].append(
          'Simulated device counts and the XLA:CPU flags A/B are CPU-only: not run.')


def final_notes(report: Dict, torch) -> None:
  """The closing notes: what the PyTorch side is, and this process's peak RSS."""
  notes = report['notes']
  if torch is not None:
    notes.append(
        'The PyTorch side is benchmarks/torch_reference.py: the same layers and parameter '
        'counts (table above; tests/test_torch_reference.py also checks that with the same '
        'weights both compute the same function), NCHW, fused Adam, '
        f'torch.set_num_threads({os.cpu_count()}), no_grad for the frozen Teacher and the '
        'critic\'s fakes, zero_grad(set_to_none=True), the critic\'s weights frozen during the '
        'Assistant update. As in ltgans_steps.py, D(real), D(fake) and the penalty pass are three '
        'separate critic calls.')
  notes.append(f'`resource.getrusage` max RSS of this (main) process over the run: '
               f'{fmt_bytes(report["max_rss_bytes"])}.')


def main(argv: Optional[List[str]] = None):
  args = parse_args(argv)
  if args._worker:  # pylint: disable=protected-access
    return workers.worker_main(args)
  started = time.perf_counter()
  # All of JAX's side before torch, in this order, as the benchmark always has.
  # pylint: disable=g-import-not-at-top,unused-import
  import jax
  import jaxlib
  import numpy as np
  import flax
  import optax
  # pylint: enable=g-import-not-at-top,unused-import

  platform_name = jax.default_backend()
  sizes = run_sizes(args)
  out_dir = args.out or os.path.join(ROOT, 'experiments', 'results', 'benchmark', platform_name)
  notes = []
  torch = import_torch(args, notes)
  use_compile = torch is not None and (args.torch_compile == 'on' or
                                       (args.torch_compile == 'auto' and not args.quick))
  torch_notes = configure_torch(torch, platform_name, use_compile) if torch is not None else []
  report = new_report(args, platform_name, sizes, notes, torch, use_compile, torch_notes)
  print(f'platform {platform_name}; {report["machine"]["cpu_model"]}, {os.cpu_count()} cores; '
        f'GPU {report["machine"]["gpu"]}; writing to {out_dir}', flush=True)

  measure_all(args, sizes, platform_name, torch, use_compile, report, out_dir)
  report['max_rss_bytes'] = max_rss_bytes()
  report['loadavg_end'] = loadavg()
  report['wall_s'] = time.perf_counter() - started
  final_notes(report, torch)
  write_report(report, out_dir)
  fig = save_figure(report, out_dir)
  print(f'\nwrote {out_dir}/results.md, results.json'
        + (f', {os.path.basename(fig)}' if fig else '')
        + f'; wall time {report["wall_s"]:.0f}s\n', flush=True)
  with open(os.path.join(out_dir, 'results.md')) as f:
    print(f.read())
