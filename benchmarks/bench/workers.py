"""The measurements that each need a fresh process (``--_worker``): peak memory of one
implementation alone, simulated CPU device counts, and XLA's CPU defaults against this
package's flags (XLA_FLAGS must be set before JAX starts). The parent's side starts a worker
and reads its last line, ``RESULT_JSON {...}``; the worker's side measures and prints it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from typing import Dict

from benchmarks.bench.impls import JaxImpl, TorchImpl, make_config, xla_flags
from benchmarks.bench.measure import measure_interleaved, proc_status_kb, reset_peak_rss, rss_bytes
from benchmarks.bench.report import fmt_bytes
from benchmarks.bench.settings import FULL, KINDS, QUICK, impl_name

# What a worker runs: the command line's entry point (``benchmarks/benchmark.py``).
LAUNCHER = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                        'benchmark.py')


def run_worker_subprocess(args, worker: str, extra_xla_flags: str = '', extra_args=(),
                          cpu_only: bool = True, timeout_s: int = 1800,
                          xla_defaults: bool = False) -> Dict:
  """Runs ``--_worker`` in a fresh process. ``xla_defaults``: with XLA's own YNNPACK defaults
  (no value of that flag in XLA_FLAGS, and ``import ltgans_jax`` adds none) before
  ``extra_xla_flags``."""
  env = dict(os.environ)
  flags = env.get('XLA_FLAGS', '')
  if xla_defaults:
    env[xla_flags.OPT_OUT_VARIABLE] = '0'
    flags = xla_flags.without_ynn_flag(flags)
  env['XLA_FLAGS'] = (flags + ' ' + extra_xla_flags).strip()
  if cpu_only:
    env['JAX_PLATFORMS'] = 'cpu'
  cmd = [sys.executable, LAUNCHER, '--_worker', worker, *extra_args]
  if args.quick:
    cmd.append('--quick')
  for flag in ('rounds', 'window_s'):
    if getattr(args, flag) is not None:
      cmd += [f'--{flag}', str(getattr(args, flag))]
  start = time.perf_counter()
  try:
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout_s)
  except subprocess.TimeoutExpired:
    return {'error': f'timed out after {timeout_s}s', 'xla_flags': env['XLA_FLAGS']}
  wall = time.perf_counter() - start
  for line in reversed(proc.stdout.splitlines()):
    if line.startswith('RESULT_JSON '):
      out = json.loads(line[len('RESULT_JSON '):])
      out.update(xla_flags=env['XLA_FLAGS'], wall_s=wall)
      return out
  return {'error': f'exit {proc.returncode}: ' + (proc.stderr or proc.stdout)[-800:],
          'xla_flags': env['XLA_FLAGS'], 'wall_s': wall}


def device_scaling(args, sizes, report):
  print('\n== simulated device count (subprocesses)', flush=True)
  rows = []
  for n in sizes['device_counts']:
    out = run_worker_subprocess(args, 'devices', f'--xla_force_host_platform_device_count={n}')
    out['requested_devices'] = n
    rows.append(out)
    full = out.get('results', {}).get('full', {})
    print(f'    {n} device(s): {full.get("median", out.get("error"))}', flush=True)
  report['device_scaling'] = rows


def xla_flags_ab(args, report):
  """The three JAX steps with XLA's CPU defaults and with this package's, alternating (A B A B)
  in fresh subprocesses, so that a slow spell of the machine hits both."""
  print("\n== XLA's CPU defaults against ltgans_jax's XLA:CPU flags (subprocesses)", flush=True)
  # Both start from XLA_FLAGS without any YNNPACK value (a user's own included), so each row
  # runs exactly what its name says.
  package_flags = ' '.join(xla_flags.CPU_FLAGS)
  variants = (("XLA's defaults", ''), (f'ltgans_jax: {package_flags}', package_flags))
  runs = []
  for repeat in range(2):
    for name, flags in variants:
      out = run_worker_subprocess(args, 'jax_steps', flags, xla_defaults=True)
      out.update(variant=name, repeat=repeat + 1)
      runs.append(out)
      print(f'    {name} (run {repeat + 1}): ' + ', '.join(
          f'{k} {v.get("median", float("nan")):.3f}' for k, v in out.get('results', {}).items())
            + (f' error {out["error"][:200]}' if 'error' in out else ''), flush=True)
  report['xla_flags_ab'] = runs


def memory_section(args, sizes, platform_name, torch_available, report):
  """Each implementation alone in a fresh subprocess: its peak memory per step."""
  print('\n== memory (one fresh subprocess per implementation)', flush=True)
  rows = []
  for image_size in sizes['memory_sizes']:
    modes = ['pixel_shuffle', 'strided'] if image_size == 32 and not args.quick else [
        'pixel_shuffle']
    impls = [('jax', m) for m in modes]
    if torch_available:
      impls += [('eager', m) for m in (['pixel_shuffle'] if args.quick else
                                        ['pixel_shuffle', 'strided'])]
    for framework, mode in impls:
      out = run_worker_subprocess(
          args, 'memory', extra_args=('--_impl', framework, '--_size', str(image_size),
                                      '--_mode', mode),
          cpu_only=platform_name == 'cpu')
      out.update(image_size=image_size, name=impl_name(framework, mode))
      rows.append(out)
      print(f'    {image_size}px {out["name"]}: ' + (
          out['error'][:300] if 'error' in out else
          ', '.join(f'{k} {fmt_bytes(v.get("peak_bytes"))}'
                    for k, v in out['kinds'].items())), flush=True)
  report['memory'] = rows


def worker_main(args):
  """Subprocess: measures one thing and prints ``RESULT_JSON {...}`` on its last line."""
  sizes = dict(QUICK if args.quick else FULL)
  sizes['rounds'] = args.rounds or sizes['worker_rounds']
  if args.window_s:
    sizes['window_s'] = args.window_s
  if args._worker == 'memory':  # pylint: disable=protected-access
    return memory_worker(args, sizes)
  import jax  # pylint: disable=g-import-not-at-top
  config = make_config(sizes, args._size, 'pixel_shuffle')  # pylint: disable=protected-access
  config.model.conv_gradients = args._conv_gradients  # pylint: disable=protected-access
  out = {'devices': jax.device_count(), 'device_kind': jax.devices()[0].device_kind}
  if args._worker == 'devices':  # pylint: disable=protected-access
    # As train.data_mesh / train_and_evaluate: a 1-D mesh over every device, the batch split
    # over it, the state replicated.
    mesh = jax.make_mesh((jax.device_count(),), ('data',),
                         axis_types=(jax.sharding.AxisType.Auto,))
    impl = JaxImpl(config, mesh=mesh)
    kinds = ('full',)
  else:
    impl = JaxImpl(config)
    kinds = KINDS
  out['results'] = {}
  for kind in kinds:
    out['results'][kind] = measure_interleaved({'jax': impl}, kind, sizes['rounds'],
                                               sizes['window_s'])['jax']
  print('RESULT_JSON ' + json.dumps(out), flush=True)


def memory_worker(args, sizes):
  """One implementation alone: RSS (CPU) or allocator peaks (GPU) around each step."""
  framework = args._impl  # pylint: disable=protected-access
  config = make_config(sizes, args._size, args._mode)  # pylint: disable=protected-access
  if framework == 'jax':
    import jax  # pylint: disable=g-import-not-at-top
    import flax  # pylint: disable=g-import-not-at-top,unused-import
    import optax  # pylint: disable=g-import-not-at-top,unused-import
    gpu = jax.default_backend() == 'gpu'
  else:
    import torch  # pylint: disable=g-import-not-at-top
    torch.set_num_threads(os.cpu_count())
    gpu = torch.cuda.is_available()
  hwm = lambda: (proc_status_kb('VmHWM') or 0) * 1024
  # The peak RSS since exec. Not resource.getrusage: in a forked child, ru_maxrss starts at the
  # parent's RSS at the time of the fork.
  peak = hwm()
  out = {'rss_after_import': rss_bytes(), 'kinds': {}}
  if framework == 'jax':
    impl = JaxImpl(config)
  else:
    impl = TorchImpl(config, 'eager', 'cuda' if gpu else 'cpu', False)
  out['rss_after_build'] = rss_bytes()
  for kind in KINDS:
    impl.step(kind)
    impl.sync(kind)
    row = {}
    if gpu and framework == 'jax':
      impl.step(kind)
      impl.sync(kind)
      row['peak_bytes'] = impl.jax.devices()[0].memory_stats().get('peak_bytes_in_use')
      row['how'] = ("jax memory_stats()['peak_bytes_in_use'] in a fresh process (cumulative "
                    "over this and the earlier steps)")
    elif gpu:
      impl.torch.cuda.reset_peak_memory_stats()
      impl.step(kind)
      impl.sync(kind)
      row['peak_bytes'] = int(impl.torch.cuda.max_memory_allocated())
      row['how'] = 'torch.cuda.max_memory_allocated over one step (reset before)'
    else:
      peak = max(peak, hwm())  # includes this step's first call (for JAX: its compilation)
      if reset_peak_rss():
        impl.step(kind)
        impl.sync(kind)
        row['peak_bytes'] = hwm()
        row['how'] = 'process VmHWM over one step after warm-up (reset via clear_refs)'
      else:
        row['peak_bytes'] = peak
        row['how'] = 'process VmHWM since start (could not be reset)'
      peak = max(peak, row['peak_bytes'])
    out['kinds'][kind] = row
  out['max_rss_bytes'] = max(peak, hwm())
  print('RESULT_JSON ' + json.dumps(out), flush=True)
