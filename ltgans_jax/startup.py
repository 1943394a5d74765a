"""What a run settles before JAX starts its backends, in this order: the user's ``XLA_FLAGS``
checked (``cpu.xla_flags.check_flags``), the package's XLA:CPU flags added
(``cpu.xla_flags.apply_defaults``), and JAX's 64-bit mode turned off.

The networks, train steps and checkpoints are float32 by design. With ``JAX_ENABLE_X64=1`` JAX
makes new arrays (latents, noise, interpolation coefficients) float64 while the parameters stay
float32, and the first convolution fails with a dtype ``TypeError``. The command line therefore
runs in float32 regardless, with a warning; the Python API, which shares JAX's settings with the
caller's own code, refuses instead (``require_float32``) rather than change them behind the
caller's back.
"""

from __future__ import annotations

import logging
import os
from typing import MutableMapping

import jax

from ltgans_jax.cpu import xla_flags
from ltgans_jax.errors import ConfigError

log = logging.getLogger(__name__)


def prepare(environ: MutableMapping[str, str] = os.environ) -> None:
  """Everything the command line does before JAX starts (module docstring).

  Raises:
    ConfigError: XLA refuses a flag of XLA_FLAGS (the message names it and whose it is).
  """
  xla_flags.check_flags(environ)
  xla_flags.apply_defaults(environ)
  if jax.config.jax_enable_x64:
    log.warning('JAX_ENABLE_X64 is set, but ltgans_jax computes and checkpoints in float32, so '
                'this run turns JAX\'s 64-bit mode off and runs in float32.')
    jax.config.update('jax_enable_x64', False)


def require_float32() -> None:
  """Raises ConfigError when JAX's 64-bit mode is on (see the module docstring)."""
  if jax.config.jax_enable_x64:
    raise ConfigError('JAX\'s 64-bit mode is on (JAX_ENABLE_X64 or jax_enable_x64), but '
                      'ltgans_jax computes in float32; call jax.config.update(\'jax_enable_x64\', '
                      'False) before using ltgans_jax.api, or unset JAX_ENABLE_X64.')
