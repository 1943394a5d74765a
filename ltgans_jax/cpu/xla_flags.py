"""The XLA:CPU flags a run sets before JAX starts its CPU backend (``apply_defaults``).

``main`` calls ``apply_defaults`` first thing; so do the benchmarks and the test suite's
``conftest.py``. Importing ``ltgans_jax`` changes nothing: a library user who wants the flags
calls ``ltgans_jax.cpu.xla_flags.apply_defaults()`` before the first JAX computation.

From jaxlib 0.10 XLA:CPU hands convolutions and matrix products to YNNPACK library fusions.
For this project's networks (small 2x2 and 3x3 convolutions, the critic's double backward
through the gradient penalty) that is slower than XLA's own Eigen kernels (measured in
``experiments/results/benchmark/cpu_xeon/`` and ``cpu_epyc/``, section "XLA:CPU flags"), so
the YNNPACK fusions are turned off, unless:

* ``XLA_FLAGS`` already names ``--xla_cpu_experimental_ynn_fusion_type`` (the user's value wins);
* ``LTGANS_XLA_CPU_DEFAULTS=0`` is set (keep XLA's defaults);
* the installed jaxlib is older than 0.10 (the flag may not exist there, and XLA aborts on an
  unknown flag);
* JAX's backends are already running (XLA reads ``XLA_FLAGS`` once, when it starts; a warning
  says so).

The flag only concerns the CPU backend: GPU and TPU runs are unaffected.
"""

from __future__ import annotations

import importlib.metadata
import logging
import os
import sys
from typing import MutableMapping, Optional, Tuple

YNN_FLAG = 'xla_cpu_experimental_ynn_fusion_type'
# An empty list of fusion types: no YNNPACK fusions, XLA's own kernels.
CPU_FLAGS = (f'--{YNN_FLAG}=',)
OPT_OUT_VARIABLE = 'LTGANS_XLA_CPU_DEFAULTS'
MIN_JAXLIB = (0, 10)


def _version_tuple(version: str) -> Tuple[int, ...]:
  parts = []
  for piece in version.split('.')[:2]:
    digits = ''.join(ch for ch in piece if ch.isdigit())
    parts.append(int(digits) if digits else 0)
  return tuple(parts)


def installed_jaxlib_version() -> Optional[str]:
  try:
    return importlib.metadata.version('jaxlib')
  except importlib.metadata.PackageNotFoundError:
    return None


def _backends_started() -> bool:
  if 'jax' not in sys.modules:
    return False
  try:
    from jax._src import xla_bridge  # pylint: disable=g-import-not-at-top
    return bool(xla_bridge.backends_are_initialized())
  except (ImportError, AttributeError):
    return False


def without_ynn_flag(flags: str) -> str:
  """``flags`` (an XLA_FLAGS value) with every ``--xla_cpu_experimental_ynn_fusion_type=...``
  removed, whoever set it: what runs with XLA's own defaults for YNNPACK."""
  return ' '.join(f for f in flags.split() if not f.startswith(f'--{YNN_FLAG}='))


def apply_defaults(environ: MutableMapping[str, str] = os.environ,
                   jaxlib_version: Optional[str] = None,
                   backends_started: Optional[bool] = None) -> bool:
  """Appends ``CPU_FLAGS`` to ``environ['XLA_FLAGS']`` where that is safe and wanted (see the
  module docstring). Returns whether it did."""
  if environ.get(OPT_OUT_VARIABLE, '1').strip() == '0':
    return False
  flags = environ.get('XLA_FLAGS', '')
  if YNN_FLAG in flags:
    return False
  version = jaxlib_version if jaxlib_version is not None else installed_jaxlib_version()
  if version is None or _version_tuple(version) < MIN_JAXLIB:
    return False
  started = _backends_started() if backends_started is None else backends_started
  if started:
    logging.warning(
        'JAX started its backends before ltgans_jax could set XLA_FLAGS, so its XLA:CPU '
        'setting %s is not in effect (the CPU steps run slower without it); call '
        'ltgans_jax.cpu.xla_flags.apply_defaults() before the first JAX computation, or set '
        'XLA_FLAGS yourself.',
        ' '.join(CPU_FLAGS))
    return False
  environ['XLA_FLAGS'] = ' '.join(filter(None, [flags.strip(), *CPU_FLAGS]))
  return True
