"""The package's backend-dependent ('auto') choices, resolved once: ``resolve(config)``.

A run resolves its ``Backend`` once, at start-up (``train.train_and_evaluate``, the inspect
modes), and hands it down: ``conv`` to the method that builds the networks
(``registry.build``), ``sequence_steps`` and ``seed_batching`` to the training loop's fused
calls (``run.fused``). Nothing in the maths asks which backend it runs on.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Optional, Sequence

import flax.linen as nn
import jax
import ml_collections

from ltgans_jax.cpu import conv as cpu_conv

CONV_GRADIENTS = ('auto', 'barriered', 'xla')  # config.model.conv_gradients
SEED_BATCHING = ('auto', 'vmap', 'loop')  # config.train.seed_batching


@dataclasses.dataclass(frozen=True)
class Backend:
  """The choices a run makes for the backend it runs on.

  conv: the networks' stride-1 'SAME' convolution layer (``config.model.conv_gradients``):
    ``cpu.conv.Conv`` ('barriered', the CPU's 'auto') or ``flax.linen.Conv`` ('xla',
    elsewhere). Both have the same parameters and compute the same function.
  sequence_steps: whether the steps of one fused call run one after the other behind
    ``schedule.after`` (on the CPU, so that a fused call computes the values of steps jitted
    alone, bit for bit; elsewhere XLA's own order).
  seed_batching: how a fused call steps S > 1 seeds (``config.train.seed_batching``): 'vmap'
    (one batched computation) or 'loop' (one seed after the other in the same call); 'auto' is
    'loop' on the CPU, where XLA runs the batched convolutions that vmap makes of the networks
    far slower than S plain ones (``experiments/results/loop_overhead/``), 'vmap' elsewhere.
  """
  conv: Any
  sequence_steps: bool
  seed_batching: str


def resolve_auto(name: str, mode: str, modes: Sequence[str], on_cpu: bool, on_cpu_value: str,
                 elsewhere: str) -> str:
  """A CPU-or-not setting ``name``: 'auto' -> ``on_cpu_value`` on the CPU backend,
  ``elsewhere`` on others; the other ``modes`` unchanged; anything else a ValueError naming
  ``name``."""
  if mode not in modes:
    raise ValueError(f'{name}={mode!r}; use one of {tuple(modes)}.')
  if mode == 'auto':
    return on_cpu_value if on_cpu else elsewhere
  return mode


def conv_layer(conv_gradients: str = 'auto', platform: Optional[str] = None):
  """The networks' stride-1 'SAME' convolution for ``config.model.conv_gradients`` on
  ``platform`` (default: the backend JAX runs on); see ``Backend.conv``."""
  on_cpu = (platform or jax.default_backend()) == 'cpu'
  mode = resolve_auto('model.conv_gradients', conv_gradients, CONV_GRADIENTS, on_cpu,
                      'barriered', 'xla')
  return cpu_conv.Conv if mode == 'barriered' else nn.Conv


def resolve(config: ml_collections.ConfigDict, platform: Optional[str] = None) -> Backend:
  """``config``'s choices on ``platform`` (default: the backend JAX runs on, asked once)."""
  platform = platform or jax.default_backend()
  on_cpu = platform == 'cpu'
  return Backend(
      conv=conv_layer(config.model.conv_gradients, platform),
      sequence_steps=on_cpu,
      seed_batching=resolve_auto('train.seed_batching', config.train.seed_batching,
                                 SEED_BATCHING, on_cpu, 'loop', 'vmap'))
