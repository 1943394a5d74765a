"""The package's backend-dependent ('auto') choices, resolved once: ``resolve(config)``.

A run resolves its ``Backend`` once, at start-up (``train.train_and_evaluate``, the inspect
modes), and hands it down: ``layers`` to the method that builds the networks
(``registry.build``), ``sequence_steps`` and ``seed_batching`` to the training loop's fused
calls (``run.fused``). Nothing in the maths asks which backend it runs on.
"""

from __future__ import annotations

import dataclasses
from typing import Optional, Sequence

import flax.linen as nn
import jax
import ml_collections

from ltgans_jax import models
from ltgans_jax.cpu import conv as cpu_conv

CONV_GRADIENTS = ('auto', 'barriered', 'xla')  # config.model.conv_gradients
SEED_BATCHING = ('auto', 'vmap', 'loop')  # config.train.seed_batching


@dataclasses.dataclass(frozen=True)
class Backend:
  """The choices a run makes for the backend it runs on.

  layers: the networks' convolution layers (``config.model.conv_gradients``):
    ``layers.conv``, 'SAME', stride 1 or (``model.resample='strided'``) 4x4 stride 2, is
    ``cpu.conv.Conv`` ('barriered', the CPU's 'auto') or ``flax.linen.Conv`` ('xla',
    elsewhere); ``layers.conv_transpose``, the 4x4 stride-2 transposed convolution of
    ``resample='strided'``, is ``cpu.conv.ConvTranspose`` (computed as a stride-1
    convolution) or ``flax.linen.ConvTranspose`` with it. Each pair has the same parameters
    and computes the same function.
  sequence_steps: whether the steps of one fused call run one after the other behind
    ``schedule.after`` (on the CPU, so that a fused call computes the values of steps jitted
    alone, bit for bit; elsewhere XLA's own order).
  seed_batching: how a fused call steps S > 1 seeds (``config.train.seed_batching``): 'vmap'
    (one batched computation) or 'loop' (one seed after the other in the same call); 'auto' is
    'loop' on the CPU, where XLA runs the batched convolutions that vmap makes of the networks
    far slower than S plain ones (``experiments/results/loop_overhead/``), 'vmap' elsewhere.
  """
  layers: models.Layers
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


def _uses_cpu_layers(conv_gradients: str, platform: Optional[str]) -> bool:
  on_cpu = (platform or jax.default_backend()) == 'cpu'
  return resolve_auto('model.conv_gradients', conv_gradients, CONV_GRADIENTS, on_cpu,
                      'barriered', 'xla') == 'barriered'


def conv_layer(conv_gradients: str = 'auto', platform: Optional[str] = None):
  """The networks' 'SAME' convolution for ``config.model.conv_gradients`` on ``platform``
  (default: the backend JAX runs on); see ``Backend.layers``."""
  return cpu_conv.Conv if _uses_cpu_layers(conv_gradients, platform) else nn.Conv


def conv_transpose_layer(conv_gradients: str = 'auto', platform: Optional[str] = None):
  """The networks' transposed convolution, chosen as ``conv_layer``; see
  ``Backend.layers``."""
  return (cpu_conv.ConvTranspose if _uses_cpu_layers(conv_gradients, platform)
          else nn.ConvTranspose)


def resolve(config: ml_collections.ConfigDict, platform: Optional[str] = None) -> Backend:
  """``config``'s choices on ``platform`` (default: the backend JAX runs on, asked once)."""
  platform = platform or jax.default_backend()
  on_cpu = platform == 'cpu'
  return Backend(
      layers=models.Layers(conv_layer(config.model.conv_gradients, platform),
                           conv_transpose_layer(config.model.conv_gradients, platform)),
      sequence_steps=on_cpu,
      seed_batching=resolve_auto('train.seed_batching', config.train.seed_batching,
                                 SEED_BATCHING, on_cpu, 'loop', 'vmap'))
