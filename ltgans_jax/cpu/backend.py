"""Each of the package's backend-dependent ('auto') settings, resolved once.

``conv_layer`` chooses the networks' stride-1 convolution when a method is built;
``seed_batching`` and ``sequence_steps`` are read by the training loop when it compiles a call.
Nothing in the maths asks which backend it runs on.
"""

from __future__ import annotations

from typing import Sequence

import flax.linen as nn
import jax

from ltgans_jax.cpu import conv as cpu_conv

CONV_GRADIENTS = ('auto', 'barriered', 'xla')  # config.model.conv_gradients
SEED_BATCHING = ('auto', 'vmap', 'loop')  # config.train.seed_batching


def on_cpu() -> bool:
  return jax.default_backend() == 'cpu'


def resolve_auto(name: str, mode: str, modes: Sequence[str], on_cpu_value: str,
                 elsewhere: str) -> str:
  """A CPU-or-not setting ``name``: 'auto' -> ``on_cpu_value`` on the CPU backend,
  ``elsewhere`` on others; the other ``modes`` unchanged; anything else a ValueError naming
  ``name``."""
  if mode not in modes:
    raise ValueError(f'{name}={mode!r}; use one of {tuple(modes)}.')
  if mode == 'auto':
    return on_cpu_value if on_cpu() else elsewhere
  return mode


def conv_layer(conv_gradients: str = 'auto'):
  """The networks' stride-1 'SAME' convolution (``config.model.conv_gradients``): 'barriered'
  (``cpu.conv.Conv``, the CPU's 'auto') or 'xla' (``flax.linen.Conv``, elsewhere). Both have
  the same parameters and compute the same function."""
  mode = resolve_auto('model.conv_gradients', conv_gradients, CONV_GRADIENTS, 'barriered',
                      'xla')
  return cpu_conv.Conv if mode == 'barriered' else nn.Conv


def seed_batching(mode: str) -> str:
  """How a fused call steps S > 1 seeds (``config.train.seed_batching``): 'vmap' (one batched
  computation) or 'loop' (one seed after the other in the same call); 'auto' = 'loop' on the
  CPU backend, where XLA runs the batched convolutions that vmap makes of the networks far
  slower than S plain ones (``experiments/results/loop_overhead/``), 'vmap' elsewhere."""
  return resolve_auto('train.seed_batching', mode, SEED_BATCHING, 'loop', 'vmap')


def sequence_steps() -> bool:
  """Whether the steps of one fused call run one after the other behind ``schedule.after``
  (on the CPU, so that a fused call computes the values of steps jitted alone, bit for bit;
  elsewhere XLA's own order)."""
  return on_cpu()
