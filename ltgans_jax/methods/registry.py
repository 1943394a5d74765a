"""The methods by name: the one module that names every method ``config.method`` can take.

LT-GANs and the baselines sharing its state and steps live in ``ltgans``; the VAE-only
baselines of the paper, with the Student's networks (matched capacity), in ``lgm`` (Ramapuram
et al.) and ``curl`` (Rao et al.).
"""

from __future__ import annotations

from typing import Callable, Dict

import ml_collections

from ltgans_jax import models
from ltgans_jax.errors import ConfigError
from ltgans_jax.methods import base, curl, lgm, ltgans

# Name -> builder(config, name, layers) -> LifelongMethod.
METHODS: Dict[str, Callable[[ml_collections.ConfigDict, str], base.LifelongMethod]] = {
    'ltgans': ltgans.GanMethod,
    'no_lakd': ltgans.GanMethod,
    'finetune': ltgans.GanMethod,
    'joint': ltgans.GanMethod,
    'lgm': lgm.LgmMethod,
    'curl': curl.CurlMethod,
}

# The methods trained by the GAN steps (a generator update every gan.critic_steps steps).
GAN_METHODS = tuple(ltgans.PHASES)


def check_name(name: str) -> None:
  if name not in METHODS:
    raise ConfigError(f'method={name!r} is not available; use one of {sorted(METHODS)}.')


def build(config: ml_collections.ConfigDict, layers: models.Layers = models.Layers()
          ) -> base.LifelongMethod:
  """The method ``config.method`` names, with its networks and optimisers built from config
  and ``layers`` as the networks' convolution layers: a run hands in its backend's
  (``cpu.backend.resolve(config).layers``, the CPU's ``cpu.conv`` layers under 'auto'), as
  flax models take their ``conv`` from the trainer."""
  check_name(config.method)
  return METHODS[config.method](config, config.method, layers)
