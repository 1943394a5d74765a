"""The training loop against its bare step, and what extra seeds cost (issue 20); the accelerator
session (``experiments/gpu_session.sh``) runs it.

    python benchmarks/loop_overhead.py [--steps 300] [--rounds 3] [--out DIR]

Part 1, at the test config's tiny sizes (``configs/test.py``: 28 px, widths 4, batch 8), where
the host's per-step work shows: steps/s of

* ``bare``: the LAKD step jitted alone (``method.train_steps()``), called in a Python loop on
  one batch already on the device with one key; nothing read back;
* ``fused loop``: ``loop.run_task`` as training runs it (one call per generator update,
  batches stacked and placed once, metrics accumulated on the device and read every
  ``log_every``), with ``gan.critic_steps`` 1 (the CPU config's) and 5 (the paper's).

The two alternate within each round, in one process; the table gives the median over rounds
and the loop's ratio to the bare step. (Up to git 0f8a85e a third row timed the per-step loop
of 5611a4f, which the fused loop replaced; its figures, run at afa9ca0:
``experiments/results/loop_overhead/``.)

Part 2, at the demo's sizes (``configs/demo.py``): steps/s of ``loop.run_task`` with
``train.num_seeds`` 1, and 3 with ``train.seed_batching`` 'vmap' and 'loop' (alternating),
and the cost of 3 seeds relative to 1: what ``seed_batching='auto'`` chooses from
(``ltgans_jax/cpu/backend.py``).

Other configs (``experiments/gpu_session.sh`` on an accelerator): ``--part1=mnist_fashion,
mnist_fashion_cpu`` runs part 1 at each named config with its own critic steps, and
``--part2=mnist_fashion_cpu --seed_batching=vmap`` part 2 at that config.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# pylint: disable=g-import-not-at-top
from ltgans_jax import api, rng
from ltgans_jax.cpu import backend, xla_flags
from ltgans_jax.data import batching
from ltgans_jax.methods import registry
from ltgans_jax.run import loop as loop_lib, seeds


def _task2_state(method, config):
  """Fresh state(s) moved to task 2, the LAKD phase (with a seed axis when S > 1)."""
  return seeds.stack([method.begin_next_task(method.init_state(jax.random.key(s)))
                      for s in seeds.seed_values(config)])


def _images(config, num=2048):
  size, channels = config.data.image_size, config.data.channels
  return np.random.default_rng(0).integers(0, 256, (num, size, size, channels), np.uint8)


def _mesh_sharding():
  mesh = jax.make_mesh((jax.device_count(),), ('data',),
                       axis_types=(jax.sharding.AxisType.Auto,))
  return jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec('data'))


def _placed_state(method, config):
  """The task-2 state replicated over the mesh, as training places it, so that warm-up calls
  compile the variants the timed calls use (jit compiles again for other placements)."""
  return jax.device_put(_task2_state(method, config), jax.sharding.NamedSharding(
      _mesh_sharding().mesh, jax.sharding.PartitionSpec()))


def _warm_up(step, state, batch, key):
  """Both compiled variants of ``step`` (with and without a generator update)."""
  for update_generators in (True, False):
    state, _ = step(state, batch, key, update_generators=update_generators)
  return jax.block_until_ready(state)


def bare_step(config, num_steps: int) -> float:
  method = registry.build(config, backend.resolve(config).layers)
  step = method.train_steps()['lakd']
  batch = jax.device_put(_images(config)[:config.train.batch_size], _mesh_sharding())
  key = rng.step_key(config.seed, 1, 0)
  state = _warm_up(step, _placed_state(method, config), batch, key)
  started = time.perf_counter()
  for i in range(num_steps):
    state, _ = step(state, batch, key,
                    update_generators=(i + 1) % config.gan.critic_steps == 0)
  jax.block_until_ready(state)
  return num_steps / (time.perf_counter() - started)


def fused_loop(config, num_steps: int) -> float:
  """``loop.run_task`` on task 2 for ``num_steps`` steps, after one warm-up run."""
  method = registry.build(config, backend.resolve(config).layers)
  config.train.checkpoint_every = 10 ** 9
  loop = loop_lib.headless(config, method, (num_steps, num_steps), _mesh_sharding())
  images = _images(config)
  task_batches = [batching.TaskBatches(images, config.train.batch_size, seed, 1)
                  for seed in seeds.seed_values(config)]
  fresh = _placed_state(method, config)
  warm_loop = loop_lib.headless(config, method, (num_steps, config.train.log_every),
                                _mesh_sharding())
  state, _ = loop_lib.run_task(warm_loop, jax.tree_util.tree_map(jnp.copy, fresh), 1,
                               task_batches, 'warm-up', 'task 2')
  loop.fused = warm_loop.fused  # the compiled calls
  jax.block_until_ready(state)
  started = time.perf_counter()
  state, _ = loop_lib.run_task(loop, fresh, 1, task_batches, 'timed', 'task 2')
  jax.block_until_ready(state)
  return num_steps / (time.perf_counter() - started)


def _configure(name: str, **values):
  """The packaged config ``name`` (``api.load_config``) with ``section__key=value`` changes."""
  config = api.load_config(name)
  for dotted, value in values.items():
    section, key = dotted.split('__')
    config[section][key] = value
  return config


def part1(names, args):
  """Bare step against the loops at each config: (table lines, {(label, name): [rates]})."""
  loops = [('bare step', bare_step), ('fused loop', fused_loop)]
  settings = []  # (label, config name, overrides)
  for name in names:
    if name == 'test':  # the tiny config at the CPU's and the paper's critic steps
      settings += [(f'test, {c} critic step(s)', name, {'gan__critic_steps': int(c)})
                   for c in args.test_critic_steps.split(',')]
    else:
      settings.append((name, name, {}))
  rates = {}
  for round_ in range(args.rounds):
    for label, name, overrides in settings:
      for loop_name, fn in loops:
        config = _configure(name, train__log_every=100, **overrides)
        rate = fn(config, args.steps)
        rates.setdefault((label, loop_name), []).append(rate)
        print(f'{label} round {round_}: {loop_name}: {rate:.1f} steps/s', flush=True)
  names_ = [n for n, _ in loops]
  lines = ['## Part 1: bare step against the training loop, LAKD phase', '',
           '| config | ' + ' | '.join(names_) + ' | '
           + ' | '.join(f'{n} / bare' for n in names_[1:]) + ' |',
           '|---' * (2 * len(names_)) + '|']
  for label, _, _ in settings:
    medians = [statistics.median(rates[(label, n)]) for n in names_]
    lines.append(f'| {label} | ' + ' | '.join(f'{r:.1f}' for r in medians) + ' | '
                 + ' | '.join(f'{r / medians[0]:.2f}' for r in medians[1:]) + ' |')
  return lines


def part2(name, args):
  """Seeds' cost with the fused loop at config ``name``: table lines."""
  settings = [('1 seed', 1, 'loop')]
  for mode in args.seed_batching.split(','):
    settings.append((f'{args.seeds} seeds, {mode}', args.seeds, mode))
  seed_rates = {}
  for round_ in range(args.rounds):
    for label, num_seeds, batching_mode in settings:
      config = _configure(name, train__num_seeds=num_seeds, train__log_every=20,
                          train__seed_batching=batching_mode)
      rate = fused_loop(config, args.demo_steps)
      seed_rates.setdefault(label, []).append(rate)
      print(f'{name}, {label}, round {round_}: {rate:.2f} steps/s', flush=True)
  one = statistics.median(seed_rates['1 seed'])
  config = api.load_config(name)
  lines = ['', f'## Part 2: seeds at {name} ({config.data.image_size} px, generator width '
           f'{config.model.generator_width}, batch {config.train.batch_size}), LAKD phase', '',
           '| seeds (train.seed_batching) | steps/s (every seed takes a step) | seconds per '
           '1000 steps | cost relative to one seed |', '|---|---|---|---|']
  for label, _, _ in settings:
    rate = statistics.median(seed_rates[label])
    lines.append(f'| {label} | {rate:.2f} | {1000 / rate:.0f} | {one / rate:.2f} |')
  return lines


def main():
  xla_flags.apply_defaults()  # as ``python -m ltgans_jax.main`` runs
  parser = argparse.ArgumentParser(description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument('--steps', type=int, default=300, help='steps per measurement (part 1)')
  parser.add_argument('--demo_steps', type=int, default=40, help='steps per measurement (2)')
  parser.add_argument('--rounds', type=int, default=3)
  parser.add_argument('--part1', default='test', help='configs of part 1, comma-separated')
  parser.add_argument('--part2', default='demo', help='the config of part 2')
  parser.add_argument('--seeds', type=int, default=3, help='seeds against one (part 2)')
  parser.add_argument('--seed_batching', default='vmap,loop', help='modes of part 2')
  parser.add_argument('--test_critic_steps', default='1,5',
                      help='critic steps per generator update of the test config (part 1)')
  parser.add_argument('--out', default=None, help='folder for README.md (else stdout only)')
  args = parser.parse_args()
  lines = ['# Loop against bare step, and seeds\' cost', '',
           f'Device: {jax.device_count()} x {jax.devices()[0].device_kind}; jax '
           f'{jax.__version__}; {args.rounds} rounds, alternating; medians.', '']
  lines += part1(args.part1.split(','), args)
  lines += part2(args.part2, args)
  text = '\n'.join(lines) + '\n'
  print(text)
  if args.out:
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, 'README.md'), 'w') as f:
      f.write(text)


if __name__ == '__main__':
  main()
