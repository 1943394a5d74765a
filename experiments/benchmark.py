#!/usr/bin/env python
"""Speed and memory of the LT-GANs steps: JAX against a PyTorch reference, on one machine.

Measured, for 32x32x3 (MNIST -> Fashion at the paper's sizes: z=100, batch 64, widths 64,
Student latent 64) and 64x64x3 (CelebA size, same widths):

* three steps: the LAKD critic + Assistant update (``make_component_steps(...)
  ['lakd_adversarial']``), the Student update (``['student']``) and the full LAKD step
  (``make_train_steps(...)['lakd']`` with ``update_generators=True``);
* for JAX in both resample modes at 32 px, and for PyTorch (``experiments/torch_reference.py``)
  eager in both modes, eager with channels_last and eager with one thread (32 px, CPU), and
  ``torch.compile`` (of the parts that compile);
* the first call (JAX: trace + compile + run; torch.compile: compile + run), steps/s as the
  median over timed windows after warm-up, taken in interleaved rounds (every implementation
  once per round, the order reversed every other round) so that JAX / PyTorch ratios are
  computed per round, in pairs, on a noisy machine, with the CPU time other processes took
  during each window (from /proc/stat); XLA's temp buffer size;
* peak memory of each implementation alone in a fresh subprocess (GPU: the allocators' peaks;
  CPU: the process RSS from /proc/self/status, VmHWM reset around each step; the main
  process also reports its `resource.getrusage` max RSS).

Also: JAX steps/s against the batch size, the lifelong state's bytes after 1, 5 and 10 tasks,
and on CPU the full step with the batch sharded over 1, 2 and 4 simulated devices, and the
three steps with XLA's own CPU defaults against this package's (``ltgans_jax/xla_cpu.py``:
YNNPACK fusions off), alternating, twice each (each in a subprocess, since XLA_FLAGS must be set
before JAX starts).

Writes ``results.md`` and ``results.json`` (and ``steps_per_sec.png`` when matplotlib is
installed) into ``--out`` (default ``experiments/results/benchmark/<platform>``).

  python experiments/benchmark.py            # the full run (tens of minutes on 2 CPU cores)
  python experiments/benchmark.py --quick    # a smoke run at tiny sizes
  python experiments/benchmark.py --skip_torch

Needs jax, flax, optax, chex and ml_collections; torch is optional (``--skip_torch`` or not
installed: JAX only). No TensorFlow.
"""

from __future__ import annotations

import argparse
import datetime
import gc
import json
import os
import platform
import resource
import shlex
import statistics
import subprocess
import sys
import time
import traceback
from typing import Any, Dict, List, Optional

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # pylint: disable=g-import-not-at-top,wrong-import-position  # experiments/common.py
# Before JAX starts: applies the package's XLA:CPU flags (ltgans_jax/xla_cpu.py) to this process
# and to the subprocesses it starts, as every ltgans_jax run gets them.
import ltgans_jax  # pylint: disable=g-import-not-at-top,wrong-import-position,unused-import

KINDS = ('adversarial', 'student', 'full')
KIND_NAMES = {'adversarial': 'LAKD critic+Assistant', 'student': 'Student',
              'full': 'full LAKD step'}
SHORT_MODE = {'pixel_shuffle': 'ps', 'strided': 'strided'}

FULL = dict(batch=64, latent=100, width=64, vae_latent=64, sizes=(32, 64),
            jax_modes_32=('pixel_shuffle', 'strided'), channels_last=True,
            batch_scaling=(32, 64, 128, 256), rounds=5, window_s=3.0, scaling_rounds=3,
            tasks=(1, 5, 10), device_counts=(1, 2, 4), worker_rounds=3, memory_sizes=(32, 64),
            flags_ab=True)
# The smoke run: every code path once (except torch.compile and the XLA flags A/B, which are
# slow to start), tiny networks, one image size.
QUICK = dict(batch=8, latent=16, width=8, vae_latent=8, sizes=(32,),
             jax_modes_32=('pixel_shuffle',), channels_last=False, batch_scaling=(8,),
             rounds=2, window_s=0.1, scaling_rounds=2, tasks=(1, 5, 10), device_counts=(2,),
             worker_rounds=2, memory_sizes=(32,), flags_ab=False)


def parse_args(argv=None):
  p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
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


# Machine and memory ---------------------------------------------------------------------------
def cpu_model() -> str:
  return common.cpu_name()


def _proc_status_kb(field: str) -> Optional[int]:
  try:
    with open('/proc/self/status') as f:
      for line in f:
        if line.startswith(field + ':'):
          return int(line.split()[1])
  except OSError:
    pass
  return None


def reset_peak_rss() -> bool:
  """Resets the kernel's peak-RSS mark (VmHWM) of this process; False where not possible."""
  try:
    with open('/proc/self/clear_refs', 'w') as f:
      f.write('5')
    return True
  except OSError:
    return False


def max_rss_bytes() -> int:
  """getrusage's max RSS of this process over its whole life (kB on Linux)."""
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def git_commit() -> str:
  try:
    rev = subprocess.run(['git', 'rev-parse', '--short', 'HEAD'], cwd=ROOT, capture_output=True,
                         text=True, timeout=10).stdout.strip()
    dirty = subprocess.run(['git', 'status', '--porcelain'], cwd=ROOT, capture_output=True,
                           text=True, timeout=10).stdout.strip()
    return rev + (' (uncommitted changes)' if dirty else '') if rev else 'unknown'
  except (OSError, subprocess.SubprocessError):
    return 'unknown'


def loadavg() -> Optional[List[float]]:
  try:
    return [round(x, 2) for x in os.getloadavg()]
  except OSError:
    return None


# Configs ---------------------------------------------------------------------------------------
def make_config(sizes: Dict, image_size: int, resample: str, batch: Optional[int] = None):
  from configs import mnist_fashion  # pylint: disable=g-import-not-at-top
  config = mnist_fashion.get_config()
  config.data.image_size = image_size
  config.data.channels = 3
  config.model.resample = resample
  config.model.latent_dim = sizes['latent']
  config.model.generator_width = sizes['width']
  config.model.critic_width = sizes['width']
  config.vae.width = sizes['width']
  config.vae.latent_dim = sizes['vae_latent']
  config.train.batch_size = batch or sizes['batch']
  return config


# Implementations -------------------------------------------------------------------------------
class JaxImpl:
  """The JAX steps on one state (each call donates it), on one device or over a mesh."""

  def __init__(self, config, mesh=None):
    import jax  # pylint: disable=g-import-not-at-top
    import numpy as np  # pylint: disable=g-import-not-at-top
    from ltgans_jax import state as state_lib, steps  # pylint: disable=g-import-not-at-top
    self.jax, self.config = jax, config
    self.framework = 'jax'
    networks = state_lib.build_networks(config)
    optimizers = state_lib.build_optimizers(config)
    self.components = steps.make_component_steps(config, networks, optimizers)
    self.train_steps = steps.make_train_steps(config, networks, optimizers)
    state = state_lib.init_state(config, networks, optimizers, jax.random.key(0))
    size, b = config.data.image_size, config.train.batch_size
    batch = np.random.default_rng(0).integers(0, 256, (b, size, size, 3), dtype=np.uint8)
    replay = networks.generator.apply(
        {'params': state.teacher.params},
        jax.random.normal(jax.random.key(1), (b, config.model.latent_dim)))
    if mesh is not None:
      P, NamedSharding = jax.sharding.PartitionSpec, jax.sharding.NamedSharding
      state = jax.device_put(state, NamedSharding(mesh, P()))
      batch = jax.device_put(batch, NamedSharding(mesh, P('data')))
      replay = jax.device_put(replay, NamedSharding(mesh, P('data')))
    else:
      batch = jax.device_put(batch)
    self.state, self.batch, self.replay = state, batch, replay
    self.data = jax.jit(steps.images_from_uint8)(batch)
    self.keys = list(jax.random.split(jax.random.key(2), 8))
    self.calls = 0
    self.param_counts = param_counts_of_state(state)

  def _key(self):
    self.calls += 1
    return self.keys[self.calls % len(self.keys)]

  def _args(self, kind):
    if kind == 'adversarial':
      return self.components['lakd_adversarial'], (self.state, self.batch, self._key()), {}
    if kind == 'student':
      return self.components['student'], (self.state.student, self.data, self.replay,
                                          self._key()), {}
    return self.train_steps['lakd'], (self.state, self.batch, self._key()), dict(
        update_generators=True)

  def step(self, kind):
    fn, args, kwargs = self._args(kind)
    out = fn(*args, **kwargs)
    if kind == 'adversarial':
      self.state = out
    elif kind == 'student':
      self.state = self.state.replace(student=out)
    else:
      self.state = out[0]

  def sync(self, kind):
    del kind
    self.jax.block_until_ready(self.state)

  def memory_analysis(self, kind) -> Dict[str, int]:
    """XLA's buffer assignment of the compiled step (a cache hit after the first call)."""
    fn, args, kwargs = self._args(kind)
    stats = fn.lower(*args, **kwargs).compile().memory_analysis()
    if stats is None:
      return {}
    return {k: int(getattr(stats, k)) for k in ('temp_size_in_bytes', 'argument_size_in_bytes',
                                                 'output_size_in_bytes', 'alias_size_in_bytes')
            if hasattr(stats, k)}


def param_counts_of_state(state) -> Dict[str, int]:
  import jax  # pylint: disable=g-import-not-at-top
  return {name: int(sum(x.size for x in jax.tree_util.tree_leaves(getattr(state, name).params)))
          for name in ('teacher', 'critic', 'student')}


def jax_param_counts(config) -> Dict[str, int]:
  """Parameter counts of the Flax networks for ``config``, without computing anything."""
  import jax  # pylint: disable=g-import-not-at-top
  from ltgans_jax import state as state_lib  # pylint: disable=g-import-not-at-top
  networks = state_lib.build_networks(config)
  optimizers = state_lib.build_optimizers(config)
  return param_counts_of_state(jax.eval_shape(
      lambda: state_lib.init_state(config, networks, optimizers, jax.random.key(0))))


class TorchImpl:
  """The PyTorch reference steps; ``variant`` is 'eager', 'eager_cl' (channels_last),
  'eager_1t' (eager with one thread: the cost of OpenMP barriers when another process holds a
  core) or 'compile' (torch.compile of what compiles; first tries the critic loss with its
  gradient penalty, which fails on the double backward)."""

  def __init__(self, config, variant: str, device: str, try_full_compile: bool):
    import torch  # pylint: disable=g-import-not-at-top
    from experiments import torch_reference  # pylint: disable=g-import-not-at-top
    self.torch, self.framework, self.variant = torch, 'torch', variant
    self.device = torch.device(device)
    compile_mode = None
    if variant == 'compile':
      torch._dynamo.reset()  # pylint: disable=protected-access
      compile_mode = 'full' if try_full_compile else 'partial'
    size, b = config.data.image_size, config.train.batch_size
    self.model = torch_reference.TorchLAKD(
        image_size=size, channels=3, latent_dim=config.model.latent_dim,
        generator_width=config.model.generator_width, critic_width=config.model.critic_width,
        vae_width=config.vae.width, vae_latent_dim=config.vae.latent_dim,
        resample=config.model.resample, penalty_weight=config.gan.gradient_penalty_weight,
        teacher_fraction=config.gan.teacher_fraction, beta=config.vae.beta,
        likelihood=config.vae.likelihood, decoder_std=config.vae.decoder_std,
        gan_learning_rate=config.optim.gan_learning_rate,
        gan_betas=(config.optim.gan_b1, config.optim.gan_b2),
        student_learning_rate=config.optim.student_learning_rate, device=device,
        channels_last=variant == 'eager_cl', compile=compile_mode)
    gen = torch.Generator().manual_seed(0)
    batch = torch.randint(0, 256, (b, 3, size, size), dtype=torch.uint8, generator=gen)
    self.batch = batch.to(self.device)
    if variant == 'eager_cl':
      self.batch = self.batch.contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
      self.data = self.model.images_from_uint8(self.batch)
      self.replay = self.model.teacher(torch.randn(b, config.model.latent_dim,
                                                   device=self.device)).contiguous(
                                                       memory_format=self.model.memory_format)
    self.failed_compile_s = None
    self.param_counts = {
        'teacher': torch_reference.num_params(self.model.teacher),
        'critic': torch_reference.num_params(self.model.critic),
        'student': torch_reference.num_params(self.model.student)}

  def step(self, kind):
    if self.variant == 'eager_1t':
      threads = self.torch.get_num_threads()
      self.torch.set_num_threads(1)
      try:
        return self._step(kind)
      finally:
        self.torch.set_num_threads(threads)
    return self._step(kind)

  def _step(self, kind):
    m = self.model
    if kind == 'adversarial':
      if self.variant == 'compile' and 'critic loss with gradient penalty' in m.compiled:
        start = time.perf_counter()
        try:
          m.adversarial_step(self.batch)
          return
        except Exception as e:  # pylint: disable=broad-except
          self.failed_compile_s = time.perf_counter() - start
          m.fallback_to_partial(e)
          print(f'    torch.compile of the critic loss with its gradient penalty failed after '
                f'{self.failed_compile_s:.1f}s: {m.compile_errors}; keeping it eager',
                flush=True)
      m.adversarial_step(self.batch)
    elif kind == 'student':
      m.student_step(self.data, self.replay)
    else:
      m.full_step(self.batch)

  def sync(self, kind):
    del kind
    if self.device.type == 'cuda':
      self.torch.cuda.synchronize()


# Measurement -----------------------------------------------------------------------------------
def cpu_snapshot():
  """(wall s, busy CPU seconds of the whole machine, CPU seconds of this process)."""
  try:
    with open('/proc/stat') as f:
      values = [int(v) for v in f.readline().split()[1:9]]
    busy = (sum(values) - values[3] - values[4]) / os.sysconf('SC_CLK_TCK')
  except (OSError, ValueError):
    busy = float('nan')
  t = os.times()
  return time.perf_counter(), busy, t.user + t.system


def other_cores(start, end) -> float:
  """Average number of cores busy with other processes between two ``cpu_snapshot``s."""
  wall = end[0] - start[0]
  return max(0.0, ((end[1] - start[1]) - (end[2] - start[2])) / wall) if wall > 0 else 0.0


def timed_window(impl, kind, n: int) -> float:
  start = time.perf_counter()
  for _ in range(n):
    impl.step(kind)
  impl.sync(kind)
  return n / (time.perf_counter() - start)


def measure_interleaved(impls: Dict[str, Any], kind: str, rounds: int,
                        window_s: float) -> Dict[str, Dict]:
  """First call, two warm-up steps, then ``rounds`` rounds of one timed window per
  implementation (the order reversed every other round). Returns per-implementation results;
  an implementation that raises is reported with its error and left out of later rounds."""
  results, live = {}, {}
  for name, impl in impls.items():
    res = results[name] = {'kind': kind}
    try:
      start = time.perf_counter()
      impl.step(kind)
      impl.sync(kind)
      res['first_call_s'] = time.perf_counter() - start
      if getattr(impl, 'failed_compile_s', None) is not None and kind == 'adversarial':
        res['failed_full_compile_s'] = impl.failed_compile_s
      warm = []
      for _ in range(2):
        start = time.perf_counter()
        impl.step(kind)
        impl.sync(kind)
        warm.append(time.perf_counter() - start)
      res['steps_per_window'] = max(1, int(round(window_s / max(min(warm), 1e-6))))
      if impl.framework == 'jax':
        try:
          res['xla_memory'] = impl.memory_analysis(kind)
        except Exception as e:  # pylint: disable=broad-except
          res['xla_memory_error'] = repr(e)[:300]
      res['rates'], res['other_cores'] = [], []
      live[name] = impl
    except Exception as e:  # pylint: disable=broad-except
      res['error'] = f'{type(e).__name__}: {str(e).strip()[:500]}'
      print(f'    {name} {kind}: FAILED {res["error"]}', flush=True)
      traceback.print_exc(limit=3)
  names = list(live)
  for r in range(rounds):
    for name in (names if r % 2 == 0 else names[::-1]):
      if 'error' in results[name]:
        continue
      try:
        before = cpu_snapshot()
        results[name]['rates'].append(timed_window(live[name], kind,
                                                   results[name]['steps_per_window']))
        results[name]['other_cores'].append(other_cores(before, cpu_snapshot()))
      except Exception as e:  # pylint: disable=broad-except
        results[name]['error'] = f'{type(e).__name__}: {str(e).strip()[:500]}'
        print(f'    {name} {kind}: FAILED in round {r}: {results[name]["error"]}', flush=True)
  for name, res in results.items():
    rates = res.get('rates')
    if rates:
      res.update(median=statistics.median(rates), min=min(rates), max=max(rates))
    if 'median' in res:
      print(f'    {kind:12s} {name:30s} first call {res["first_call_s"]:7.2f}s  '
            f'{res["median"]:8.3f} steps/s  [{res["min"]:.3f}, {res["max"]:.3f}]  '
            f'x{res["steps_per_window"]} steps/window  other load '
            f'{statistics.mean(res["other_cores"]):.2f} cores', flush=True)
  return results


def paired_ratio(results: Dict[str, Dict], a: str, b: str,
                 max_other: Optional[float] = None) -> Optional[Dict[str, float]]:
  """Median (and range) over rounds of rate(a) / rate(b), rounds matched by index; with
  ``max_other``, only the rounds in which other processes kept at most that many cores busy
  during both windows."""
  ra, rb = results.get(a, {}).get('rates'), results.get(b, {}).get('rates')
  if not ra or not rb:
    return None
  oa = results[a].get('other_cores') or [0.0] * len(ra)
  ob = results[b].get('other_cores') or [0.0] * len(rb)
  ratios = [x / y for x, y, u, v in zip(ra, rb, oa, ob)
            if max_other is None or max(u, v) <= max_other]
  if not ratios:
    return {'n': 0}
  return {'median': statistics.median(ratios), 'min': min(ratios), 'max': max(ratios),
          'n': len(ratios)}


QUIET = 0.25  # cores busy with other processes, at most, for a round to count as quiet


# Sections ---------------------------------------------------------------------------------------
def torch_device(platform_name: str) -> str:
  return 'cuda' if platform_name == 'gpu' else 'cpu'


def impl_name(framework_variant: str, mode: str) -> str:
  return {'jax': 'jax', 'eager': 'torch eager', 'eager_cl': 'torch eager channels_last',
          'eager_1t': 'torch eager 1 thread', 'compile': 'torch.compile'}[framework_variant] + (
              f' {SHORT_MODE[mode]}')


def run_case(image_size, jax_modes, torch_variants, sizes, platform_name, report,
             try_full_compile):
  """One image size: every implementation, interleaved, for the three steps."""
  print(f'\n== {image_size}x{image_size}x3', flush=True)
  impls, params, errors = {}, {}, {}
  for mode in jax_modes:
    name = impl_name('jax', mode)
    impls[name] = JaxImpl(make_config(sizes, image_size, mode))
    params[name] = impls[name].param_counts
  for variant, mode in torch_variants:
    name = impl_name(variant, mode)
    config = make_config(sizes, image_size, mode)
    try:
      impls[name] = TorchImpl(config, variant, torch_device(platform_name), try_full_compile)
      params[name] = impls[name].param_counts
      if f'jax {SHORT_MODE[mode]}' not in params:
        params[f'jax {SHORT_MODE[mode]}'] = jax_param_counts(config)
    except Exception as e:  # pylint: disable=broad-except
      errors[name] = f'{type(e).__name__}: {str(e).strip()[:500]}'
      print(f'    {name}: could not be built: {errors[name]}', flush=True)
  case = {'image_size': image_size, 'param_counts': params, 'build_errors': errors,
          'kinds': {}, 'loadavg': {}}
  for kind in KINDS:
    case['loadavg'][kind] = {'before': loadavg()}
    case['kinds'][kind] = measure_interleaved(impls, kind, sizes['rounds'], sizes['window_s'])
    case['loadavg'][kind]['after'] = loadavg()
  for impl in impls.values():
    if getattr(impl, 'variant', None) == 'compile':
      case['torch_compile'] = {'compiled': list(impl.model.compiled),
                               'errors': dict(impl.model.compile_errors),
                               'failed_full_compile_s': impl.failed_compile_s}
  report['cases'].append(case)
  del impls
  gc.collect()
  return case


def state_sizes(sizes, report):
  import jax  # pylint: disable=g-import-not-at-top
  from ltgans_jax import state as state_lib  # pylint: disable=g-import-not-at-top
  rows = []
  for image_size in sizes['sizes']:
    config = make_config(sizes, image_size, 'pixel_shuffle')
    networks = state_lib.build_networks(config)
    optimizers = state_lib.build_optimizers(config)
    state = state_lib.init_state(config, networks, optimizers, jax.random.key(0))
    row = {'image_size': image_size, 'start': state_lib.state_bytes(state), 'after': {},
           'params': {n: sum(x.nbytes for x in jax.tree_util.tree_leaves(getattr(state, n).params))
                      for n in ('teacher', 'assistant', 'critic', 'student')}}
    done = 0
    for tasks in sizes['tasks']:
      while done < tasks:
        state = state_lib.begin_next_task(state, optimizers.generator)
        done += 1
      row['after'][tasks] = state_lib.state_bytes(state)
    rows.append(row)
    print(f'    state bytes {image_size}px: start {row["start"]}, after tasks '
          f'{row["after"]}', flush=True)
  report['state_bytes'] = rows


def batch_scaling(sizes, report):
  print('\n== JAX batch scaling (32px, pixel_shuffle, full LAKD step)', flush=True)
  rows = []
  for b in sizes['batch_scaling']:
    impl = JaxImpl(make_config(sizes, 32, 'pixel_shuffle', batch=b))
    name = f'jax ps batch {b}'
    res = measure_interleaved({name: impl}, 'full', sizes['scaling_rounds'],
                              sizes['window_s'])[name]
    res['batch'] = b
    rows.append(res)
    del impl
    gc.collect()
  report['batch_scaling'] = rows


def run_worker_subprocess(args, worker: str, extra_xla_flags: str = '', extra_args=(),
                          cpu_only: bool = True, timeout_s: int = 1800,
                          xla_defaults: bool = False) -> Dict:
  """Runs ``--_worker`` in a fresh process. ``xla_defaults``: with XLA's own YNNPACK defaults
  (no value of that flag in XLA_FLAGS, and ``import ltgans_jax`` adds none) before
  ``extra_xla_flags``."""
  from ltgans_jax import xla_cpu  # pylint: disable=g-import-not-at-top
  env = dict(os.environ)
  flags = env.get('XLA_FLAGS', '')
  if xla_defaults:
    env[xla_cpu.OPT_OUT_VARIABLE] = '0'
    flags = xla_cpu.without_ynn_flag(flags)
  env['XLA_FLAGS'] = (flags + ' ' + extra_xla_flags).strip()
  if cpu_only:
    env['JAX_PLATFORMS'] = 'cpu'
  cmd = [sys.executable, os.path.abspath(__file__), '--_worker', worker, *extra_args]
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
  from ltgans_jax import xla_cpu  # pylint: disable=g-import-not-at-top
  print("\n== XLA's CPU defaults against ltgans_jax's XLA:CPU flags (subprocesses)", flush=True)
  # Both start from XLA_FLAGS without any YNNPACK value (a user's own included), so each row
  # runs exactly what its name says.
  package_flags = ' '.join(xla_cpu.CPU_FLAGS)
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


def _rss() -> int:
  return (_proc_status_kb('VmRSS') or 0) * 1024


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
  hwm = lambda: (_proc_status_kb('VmHWM') or 0) * 1024
  # The peak RSS since exec. Not resource.getrusage: in a forked child, ru_maxrss starts at the
  # parent's RSS at the time of the fork.
  peak = hwm()
  out = {'rss_after_import': _rss(), 'kinds': {}}
  if framework == 'jax':
    impl = JaxImpl(config)
  else:
    impl = TorchImpl(config, 'eager', 'cuda' if gpu else 'cpu', False)
  out['rss_after_build'] = _rss()
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


# Report ----------------------------------------------------------------------------------------
def fmt_bytes(n) -> str:
  if n is None:
    return 'n/a'
  return f'{n / 2**20:.0f} MiB' if n >= 2**20 else f'{n / 1024:.1f} KiB'


def fmt_rate(res) -> str:
  if not res or 'median' not in res:
    return 'failed' if res and 'error' in res else 'n/a'
  return f'{res["median"]:.3f}'


def fmt_ratio(r, bold=True) -> str:
  if not r or 'median' not in r:
    return 'n/a'
  b = '**' if bold else ''
  return f'{b}{r["median"]:.2f}x{b} [{r["min"]:.2f}, {r["max"]:.2f}]'


def fmt_quiet(res, a, b) -> str:
  r = paired_ratio(res, a, b, QUIET)
  if not r:
    return 'n/a'
  return f'{r["median"]:.2f}x ({r["n"]})' if r.get('n') else '(0)'


def _mean_other(r) -> str:
  cores = r.get('other_cores')
  return f'{statistics.mean(cores):.2f}' if cores else ''


def write_report(report: Dict, out_dir: str) -> None:
  os.makedirs(out_dir, exist_ok=True)
  with open(os.path.join(out_dir, 'results.json'), 'w') as f:
    json.dump(report, f, indent=1, default=str)
  m, sz = report['machine'], report['sizes']
  gpu_run = report['platform'] == 'gpu'
  lines = [f'# LT-GANs step benchmark: JAX vs PyTorch ({report["platform"]})', '',
           f'- Machine: {m["cpu_model"]}, {m["cpu_count"]} logical cores '
           f'({m["cpu_affinity"]} usable by this process), {m["memory_gib"]} GiB RAM; GPU: '
           f'{m["gpu"] or "none"}.',
           f'- Software: Python {m["python"]}; jax {m["jax"]}, jaxlib {m["jaxlib"]}, flax '
           f'{m["flax"]}, optax {m["optax"]}; torch {m["torch"]} ({m["torch_threads"]} threads'
           f'{", " + m["torch_notes"] if m.get("torch_notes") else ""}); numpy {m["numpy"]}.',
           f'- XLA_FLAGS: `{m["xla_flags"] or "(unset)"}`; JAX backend: {report["platform"]}.',
           f'- Run: `{report["command"]}` started {report["date"]}, git {report["git"]}; wall '
           f'time {report.get("wall_s", float("nan")) / 60:.1f} min; load average (1/5/15 min) at '
           f'start {report["loadavg_start"]}, at end {report.get("loadavg_end", "(running)")}.',
           f'- Sizes: batch {sz["batch"]}, z={sz["latent"]}, widths {sz["width"]} (generators, '
           f'critic, Student), Student latent {sz["vae_latent"]}, 3 channels; '
           f'{sz["rounds"]} timed windows of about {sz["window_s"]} s (at least one step) per '
           'implementation and step.'
           + (' **Quick smoke run: tiny sizes, not a measurement.**' if report['quick'] else ''),
           '',
           'Method: all implementations of one image size live in this one process. For each '
           'step every implementation is called once (the *first call*: JAX traces and '
           'compiles, torch.compile compiles, eager PyTorch creates its kernels), twice more to '
           'warm up, and then timed in rounds of one window each, the order reversed every '
           'other round. steps/s is the median over windows [min, max]; a ratio A / B is the '
           'median over rounds of A\'s rate over B\'s rate in the same round [min, max]. '
           '*Other load* is how many cores other processes kept busy during the timed windows '
           '(from /proc/stat): this machine is shared, and PyTorch\'s OpenMP threads suffer more '
           'from a busy core than XLA\'s thread pool does.', '']

  lines += ['## JAX vs PyTorch', '',
            '| image | step | JAX ps steps/s | torch eager ps | **JAX ps / eager ps** | '
            'torch eager strided | **JAX ps / eager strided** | torch.compile ps | '
            '**JAX ps / compile ps** | quiet rounds only: JAX ps / eager ps, / eager strided, '
            '/ compile ps (rounds) | other load (cores) |',
            '|---|---|---|---|---|---|---|---|---|---|---|']
  for case in report['cases']:
    for kind, res in case['kinds'].items():
      others = [c for r in res.values() for c in r.get('other_cores', [])]
      lines.append('| ' + ' | '.join([
          f'{case["image_size"]}px', KIND_NAMES[kind], fmt_rate(res.get('jax ps')),
          fmt_rate(res.get('torch eager ps')),
          fmt_ratio(paired_ratio(res, 'jax ps', 'torch eager ps')),
          fmt_rate(res.get('torch eager strided')),
          fmt_ratio(paired_ratio(res, 'jax ps', 'torch eager strided')),
          fmt_rate(res.get('torch.compile ps')),
          fmt_ratio(paired_ratio(res, 'jax ps', 'torch.compile ps')),
          ', '.join(fmt_quiet(res, 'jax ps', n) for n in (
              'torch eager ps', 'torch eager strided', 'torch.compile ps')),
          f'{statistics.mean(others):.2f}' if others else '']) + ' |')
  lines += ['', '"ps": `model.resample=\'pixel_shuffle\'` (the default); "strided": 4x4 '
            'stride-2 (transposed) convolutions, the textbook DCGAN layers and PyTorch\'s '
            'natural form. Ratios > 1: JAX is faster. *Quiet rounds*: only the rounds in which '
            f'other processes kept at most {QUIET} cores busy during both windows.', '']

  if any('jax strided' in c['kinds'].get('full', {}) for c in report['cases']):
    lines += ['## Resample modes (32px)', '',
              '| step | JAX ps | JAX strided | **JAX ps / JAX strided** | torch eager ps | '
              'torch eager strided | JAX strided / eager strided |',
              '|---|---|---|---|---|---|---|']
    for case in report['cases']:
      if 'jax strided' not in case['kinds'].get('full', {}):
        continue
      for kind, res in case['kinds'].items():
        lines.append('| ' + ' | '.join([
            KIND_NAMES[kind], fmt_rate(res.get('jax ps')), fmt_rate(res.get('jax strided')),
            fmt_ratio(paired_ratio(res, 'jax ps', 'jax strided')),
            fmt_rate(res.get('torch eager ps')), fmt_rate(res.get('torch eager strided')),
            fmt_ratio(paired_ratio(res, 'jax strided', 'torch eager strided'))]) + ' |')
    lines.append('')

  lines += ['## All measurements', '',
            '| image | step | implementation | first call (s) | steps/s median [min, max] | '
            'steps/window | XLA temp buffers | JAX ps / this | other load (cores) |',
            '|---|---|---|---|---|---|---|---|---|']
  for case in report['cases']:
    for kind, res in case['kinds'].items():
      for name, r in res.items():
        if 'median' not in r:
          lines.append(f'| {case["image_size"]}px | {KIND_NAMES[kind]} | {name} | '
                       f'{r.get("first_call_s", float("nan")):.2f} | failed: '
                       f'{r.get("error", "")[:200]} | | | | |')
          continue
        first = f'{r["first_call_s"]:.2f}'
        if r.get('failed_full_compile_s') is not None:
          first += f' (incl. {r["failed_full_compile_s"]:.1f} failed full compile)'
        temp = r.get('xla_memory', {}).get('temp_size_in_bytes')
        ratio = '' if name == 'jax ps' else (fmt_ratio(paired_ratio(res, 'jax ps', name))
                                              + f'; quiet {fmt_quiet(res, "jax ps", name)}')
        lines.append(f'| {case["image_size"]}px | {KIND_NAMES[kind]} | {name} | {first} | '
                     f'{r["median"]:.3f} [{r["min"]:.3f}, {r["max"]:.3f}] | '
                     f'{r["steps_per_window"]} | '
                     f'{fmt_bytes(temp) if temp is not None else ""} | {ratio} | '
                     f'{_mean_other(r)} |')
  lines.append('')

  lines += ['## Parameter counts', '',
            '| image | implementation | generator | critic | Student | same as JAX |',
            '|---|---|---|---|---|---|']
  for case in report['cases']:
    counts = case['param_counts']
    for name, c in counts.items():
      ref = counts.get(f'jax {name.split()[-1]}')
      same = '' if name.startswith('jax') else ('yes' if c == ref else f'**NO** (JAX {ref})')
      lines.append(f'| {case["image_size"]}px | {name} | {c["teacher"]:,} | {c["critic"]:,} | '
                   f'{c["student"]:,} | {same} |')
  lines.append('')

  if report.get('memory'):
    how = {v.get('how') for r in report['memory'] for v in r.get('kinds', {}).values()}
    lines += ['## Peak memory (each implementation alone in a fresh process)', '',
              'Per step: ' + '; '.join(sorted(h for h in how if h)) + '. '
              + ('' if gpu_run else
                 '"above import" subtracts the RSS right after importing the framework; '
                 '"peak RSS of the subprocess" is its VmHWM since it started (which for JAX '
                 'includes the compiler\'s peak; `resource.getrusage` would not do in a child '
                 'process, where ru_maxrss starts at the parent\'s RSS at the fork).'), '',
              '| image | implementation | ' + ' | '.join(KIND_NAMES[k] for k in KINDS)
              + ('' if gpu_run else ' | RSS after import | peak RSS of the subprocess |'),
              '|---|---|' + '---|' * len(KINDS) + ('' if gpu_run else '---|---|')]
    for r in report['memory']:
      if 'error' in r:
        lines.append(f'| {r["image_size"]}px | {r["name"]} | failed: {r["error"][:200]} |'
                     + ' |' * (len(KINDS) - 1 + (0 if gpu_run else 2)))
        continue
      cells = []
      for k in KINDS:
        v = r['kinds'].get(k, {})
        cell = fmt_bytes(v.get('peak_bytes'))
        if not gpu_run and v.get('peak_bytes'):
          cell += f' ({fmt_bytes(v["peak_bytes"] - r["rss_after_import"])} above import)'
        cells.append(cell)
      if not gpu_run:
        cells += [fmt_bytes(r.get('rss_after_import')), fmt_bytes(r.get('max_rss_bytes'))]
      lines.append(f'| {r["image_size"]}px | {r["name"]} | ' + ' | '.join(cells) + ' |')
    lines.append('')

  compiled = [(c['image_size'], c['torch_compile']) for c in report['cases']
              if 'torch_compile' in c]
  if compiled:
    lines += ['## torch.compile', '']
    for size, tc in compiled:
      lines.append(f'- {size}px: compiled (inductor): {"; ".join(tc["compiled"])}. Eager: the '
                   'critic pass of the gradient penalty (`autograd.grad(create_graph=True)` and '
                   'the double backward through it) and the optimiser steps (fused Adam).')
      for what, err in tc['errors'].items():
        lines.append(f'  - {what}: failed, `{err}`'
                     + (f', after {tc["failed_full_compile_s"]:.1f} s'
                        if tc.get('failed_full_compile_s') else ''))
    lines.append('')
  elif report.get('torch_compile_note'):
    lines += ['## torch.compile', '', report['torch_compile_note'], '']

  if report.get('batch_scaling'):
    lines += ['## JAX batch scaling (32px, ps, full LAKD step)', '',
              '| batch | first call (s) | steps/s median [min, max] | examples/s | '
              'XLA temp buffers | other load (cores) |', '|---|---|---|---|---|---|']
    for r in report['batch_scaling']:
      if 'median' not in r:
        lines.append(f'| {r["batch"]} | failed: {r.get("error", "")[:150]} | | | | |')
        continue
      lines.append(f'| {r["batch"]} | {r["first_call_s"]:.2f} | {r["median"]:.3f} '
                   f'[{r["min"]:.3f}, {r["max"]:.3f}] | {r["median"] * r["batch"]:.1f} | '
                   f'{fmt_bytes(r.get("xla_memory", {}).get("temp_size_in_bytes"))} | '
                   f'{_mean_other(r)} |')
    lines.append('')

  if report.get('state_bytes'):
    tasks = sz['tasks']
    lines += ['## Lifelong state size (`state.state_bytes`)', '',
              '| image | at the start | ' + ' | '.join(f'after {t} tasks' for t in tasks)
              + ' | parameters: Teacher / Assistant / critic / Student |',
              '|---' * (len(tasks) + 3) + '|']
    for r in report['state_bytes']:
      after = [r['after'].get(t, r['after'].get(str(t))) for t in tasks]
      p = r['params']
      lines.append(f'| {r["image_size"]}px | {r["start"]:,} B | '
                   + ' | '.join(f'{a:,} B' for a in after)
                   + f' | {fmt_bytes(p["teacher"])} / {fmt_bytes(p["assistant"])} / '
                     f'{fmt_bytes(p["critic"])} / {fmt_bytes(p["student"])} |')
    lines += ['', '"After k tasks": `begin_next_task` applied k times (role swap, fresh '
              'Assistant optimiser state). The state holds no data and no per-task copies.', '']

  if report.get('device_scaling'):
    lines += ['## Simulated devices (CPU, `--xla_force_host_platform_device_count=N`, 32px ps, '
              'full LAKD step)', '',
              'One subprocess per N. The batch is sharded over a 1-D `data` mesh and the state '
              'replicated, as in `train.train_and_evaluate`. The simulated devices share the '
              'same cores, so this shows what partitioning costs, not a speed-up.', '',
              '| devices | first call (s) | steps/s median [min, max] | other load (cores) |',
              '|---|---|---|---|']
    for r in report['device_scaling']:
      full = r.get('results', {}).get('full', {})
      if 'median' in full:
        lines.append(f'| {r.get("devices", r["requested_devices"])} | '
                     f'{full["first_call_s"]:.2f} | {full["median"]:.3f} '
                     f'[{full["min"]:.3f}, {full["max"]:.3f}] | {_mean_other(full)} |')
      else:
        lines.append(f'| {r["requested_devices"]} | failed: '
                     f'{(r.get("error") or full.get("error", ""))[:200]} | | |')
    lines.append('')

  if report.get('xla_flags_ab'):
    lines += ["## XLA:CPU flags: XLA's defaults against ltgans_jax's (32px ps; fresh "
              'subprocesses, alternating A B A B)', '',
              '`import ltgans_jax` turns off the YNNPACK library fusions of XLA:CPU '
              '(`ltgans_jax/xla_cpu.py`; `LTGANS_XLA_CPU_DEFAULTS=0` keeps XLA\'s defaults). '
              'Every other JAX figure on this page is with that setting.', '',
              '| variant | run | XLA_FLAGS | ' + ' | '.join(
                  KIND_NAMES[k] + ' steps/s' for k in KINDS) + ' |',
              '|---|---|---|---|---|---|']
    for r in report['xla_flags_ab']:
      res = r.get('results', {})
      head = f'| {r["variant"]} | {r["repeat"]} | `{r.get("xla_flags") or "(unset)"}` | '
      if 'error' in r:
        lines.append(head + f'failed: {r["error"][:200]} | | |')
      else:
        lines.append(head + ' | '.join(
            f'{res[k]["median"]:.3f} [{res[k]["min"]:.3f}, {res[k]["max"]:.3f}]'
            if 'median' in res.get(k, {}) else 'failed' for k in KINDS) + ' |')
    lines.append('')

  if report.get('notes'):
    lines += ['## Notes', ''] + [f'- {n}' for n in report['notes']] + ['']
  with open(os.path.join(out_dir, 'results.md'), 'w') as f:
    f.write('\n'.join(lines))


def save_figure(report: Dict, out_dir: str) -> Optional[str]:
  """A bar chart of steps/s per implementation (only when matplotlib is installed)."""
  try:
    import matplotlib  # pylint: disable=g-import-not-at-top
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  except ImportError:
    return None
  cases = report['cases']
  if not cases:
    return None
  fig, axes = plt.subplots(1, len(cases), figsize=(6 * len(cases), 4), squeeze=False)
  for ax, case in zip(axes[0], cases):
    names = list(dict.fromkeys(n for res in case['kinds'].values() for n in res))
    width = 0.8 / max(len(names), 1)
    for i, name in enumerate(names):
      vals = [case['kinds'][k].get(name, {}).get('median', 0.0) for k in KINDS]
      ax.bar([k + i * width for k in range(len(KINDS))], vals, width, label=name)
    ax.set_xticks([k + 0.4 - width / 2 for k in range(len(KINDS))])
    ax.set_xticklabels([KIND_NAMES[k] for k in KINDS])
    ax.set_ylabel('steps/s (median)')
    ax.set_title(f'{case["image_size"]}px, {report["platform"]}')
    ax.legend(fontsize=7)
  fig.tight_layout()
  path = os.path.join(out_dir, 'steps_per_sec.png')
  fig.savefig(path, dpi=100)
  plt.close(fig)
  return path


# Main ------------------------------------------------------------------------------------------
def main(argv=None):
  args = parse_args(argv)
  if args._worker:  # pylint: disable=protected-access
    return worker_main(args)
  started = time.perf_counter()
  import jax  # pylint: disable=g-import-not-at-top
  import jaxlib  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  import flax  # pylint: disable=g-import-not-at-top
  import optax  # pylint: disable=g-import-not-at-top

  platform_name = jax.default_backend()
  sizes = dict(QUICK if args.quick else FULL)
  if args.rounds:
    sizes['rounds'] = args.rounds
  if args.window_s:
    sizes['window_s'] = args.window_s
  if args.sizes:
    sizes['sizes'] = tuple(int(s) for s in args.sizes.split(','))
  out_dir = args.out or os.path.join(ROOT, 'experiments', 'results', 'benchmark', platform_name)
  torch, notes = None, []
  if not args.skip_torch:
    try:
      import torch  # pylint: disable=g-import-not-at-top
    except ImportError as e:
      notes.append(f'torch is not importable ({e}): JAX only.')
  use_compile = torch is not None and (args.torch_compile == 'on' or
                                       (args.torch_compile == 'auto' and not args.quick))
  torch_notes = []
  if torch is not None:
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
  try:
    with open('/proc/meminfo') as f:
      mem_gib = round(int(f.readline().split()[1]) / 2**20, 1)
  except OSError:
    mem_gib = 'unknown'
  devices = jax.devices()
  gpu = f'{len(devices)} x {devices[0].device_kind}' if platform_name == 'gpu' else None
  if gpu and torch is not None and torch.cuda.is_available():
    gpu += f' (torch: {torch.cuda.get_device_name(0)})'
  executable = sys.executable
  if executable.startswith(ROOT + os.sep):
    executable = os.path.relpath(executable, ROOT)
  report = {
      'platform': platform_name, 'quick': args.quick,
      'command': ' '.join(shlex.quote(a) for a in [executable] + sys.argv),
      'date': datetime.datetime.now().isoformat(timespec='seconds'), 'git': git_commit(),
      'loadavg_start': loadavg(), 'sizes': sizes, 'cases': [], 'notes': notes,
      'machine': {
          'cpu_model': cpu_model(), 'cpu_count': os.cpu_count(),
          'cpu_affinity': (len(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity')
                           else os.cpu_count()),
          'memory_gib': mem_gib, 'gpu': gpu, 'python': platform.python_version(),
          'jax': jax.__version__, 'jaxlib': jaxlib.__version__, 'flax': flax.__version__,
          'optax': optax.__version__, 'numpy': np.__version__,
          'torch': torch.__version__ if torch is not None else 'not used',
          'torch_threads': torch.get_num_threads() if torch is not None else None,
          'torch_notes': ', '.join(torch_notes),
          'xla_flags': os.environ.get('XLA_FLAGS', '')}}
  if torch is not None and not use_compile:
    report['torch_compile_note'] = 'torch.compile not run (' + (
        '--quick' if args.quick and args.torch_compile == 'auto' else '--torch_compile=off') + ').'
  print(f'platform {platform_name}; {report["machine"]["cpu_model"]}, {os.cpu_count()} cores; '
        f'GPU {gpu}; writing to {out_dir}', flush=True)

  def torch_variants(size):
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

  tried_full_compile = False
  for size in sizes['sizes']:
    modes = list(sizes['jax_modes_32']) if size == 32 else ['pixel_shuffle']
    run_case(size, modes, torch_variants(size), sizes, platform_name, report,
             try_full_compile=not tried_full_compile)
    tried_full_compile = tried_full_compile or use_compile
    write_report(report, out_dir)
  print('\n== lifelong state size', flush=True)
  state_sizes(sizes, report)
  batch_scaling(sizes, report)
  write_report(report, out_dir)
  if not args.skip_subprocesses:
    memory_section(args, sizes, platform_name, torch is not None, report)
    write_report(report, out_dir)
    if platform_name == 'cpu':
      device_scaling(args, sizes, report)
      write_report(report, out_dir)
      if args.flags_ab == 'on' or (args.flags_ab == 'auto' and sizes['flags_ab']):
        xla_flags_ab(args, report)
        write_report(report, out_dir)
    else:
      notes.append('Simulated device counts and the XLA:CPU flags A/B are CPU-only: not run.')
  report['max_rss_bytes'] = max_rss_bytes()
  report['loadavg_end'] = loadavg()
  report['wall_s'] = time.perf_counter() - started
  if torch is not None:
    notes.append(
        'The PyTorch side is experiments/torch_reference.py: the same layers and parameter '
        'counts (table above; tests/test_torch_reference.py also checks that with the same '
        'weights both compute the same function), NCHW, fused Adam, '
        f'torch.set_num_threads({os.cpu_count()}), no_grad for the frozen Teacher and the '
        'critic\'s fakes, zero_grad(set_to_none=True), the critic\'s weights frozen during the '
        'Assistant update. As in steps.py, D(real), D(fake) and the penalty pass are three '
        'separate critic calls.')
  notes.append(f'`resource.getrusage` max RSS of this (main) process over the run: '
               f'{fmt_bytes(report["max_rss_bytes"])}.')
  write_report(report, out_dir)
  fig = save_figure(report, out_dir)
  print(f'\nwrote {out_dir}/results.md, results.json'
        + (f', {os.path.basename(fig)}' if fig else '')
        + f'; wall time {report["wall_s"]:.0f}s\n', flush=True)
  with open(os.path.join(out_dir, 'results.md')) as f:
    print(f.read())


if __name__ == '__main__':
  main()
