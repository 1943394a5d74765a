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

``check_flags`` runs first: when the user set ``XLA_FLAGS``, a short subprocess starts JAX's CPU
backend with the flags the run would get (the user's and ours). XLA parses ``XLA_FLAGS`` once
and, on a bad flag, aborts the process with a check failure and a usage dump of every flag it
knows, naming the whole value as if the user had typed our flag too; the probe turns that into
one sentence naming the bad flag and whose it is. Without ``XLA_FLAGS`` nothing is probed (ours
alone are tested with the installed jaxlib by the test suite).
"""

from __future__ import annotations

import importlib.metadata
import logging
import os
import re
import subprocess
import sys
from typing import Callable, MutableMapping, Optional, Sequence, Tuple

from ltgans_jax.errors import ConfigError

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
  if YNN_FLAG in flags or is_flags_file(flags):
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


def is_flags_file(flags: str) -> bool:
  """Whether XLA reads ``flags`` (an XLA_FLAGS value) as the name of a file of flags: it does
  when the value does not start with ``--``, so nothing may be appended to it."""
  return bool(flags.strip()) and not flags.strip().startswith('--')


# XLA's own words when it refuses XLA_FLAGS (xla/parse_flags_from_env.cc, tsl command_line_flags,
# xla/debug_options_flags.cc), after its log prefix ("F1207 01:25:22.69 4085 file.cc:234] ").
_COMPLAINTS = ('Unknown flag', 'Illegal value for', "Couldn't interpret value",
               'Could not open file')
_LOG_PREFIX = re.compile(r'^[EFWI]\d{4} [\d:.]+\s+\d+ \S+\] ')
_PROBE = 'import jax; jax.devices("cpu")'
_PROBE_TIMEOUT_S = 120


def xla_complaint(stderr: str) -> Optional[str]:
  """The line in which XLA refuses an XLA_FLAGS value, without its log prefix, from the
  ``stderr`` of a process that aborted; None when no such line is there."""
  for line in stderr.splitlines():
    text = _LOG_PREFIX.sub('', line.strip())
    if text.startswith(_COMPLAINTS):
      return text.rstrip('.')
  return None


def culprit(complaint: str, tokens: Sequence[str]) -> Optional[str]:
  """The flag of ``tokens`` (an XLA_FLAGS value split on white space) that XLA's
  ``complaint`` names; None when it names none of them."""
  unknown = re.match(r'Unknown flags? in XLA_FLAGS: (.*)', complaint)
  if unknown:
    named = unknown.group(1).split()
    return next((t for t in tokens if t in named), None)
  name = (re.match(r'Illegal value for --(\S+)', complaint)
          or re.match(r"Couldn't interpret value .* for flag (\S+)", complaint))
  if not name:
    return None
  flag = '--' + name.group(1)
  matching = [t for t in tokens if t == flag or t.startswith(flag + '=')]
  return matching[-1] if matching else None


def _probe(environ: MutableMapping[str, str], flags: str) -> subprocess.CompletedProcess:
  """Starts JAX's CPU backend in a subprocess with XLA_FLAGS=``flags``."""
  env = {**environ, 'XLA_FLAGS': flags, 'JAX_PLATFORMS': 'cpu'}
  return subprocess.run([sys.executable, '-c', _PROBE], env=env, capture_output=True,
                        text=True, timeout=_PROBE_TIMEOUT_S, check=False)


def check_flags(environ: MutableMapping[str, str] = os.environ,
                probe: Callable[..., subprocess.CompletedProcess] = _probe) -> None:
  """Raises ConfigError naming the flag XLA refuses in the XLA_FLAGS a run would start with
  (the user's, with ``CPU_FLAGS`` where ``apply_defaults`` adds them), and whether it is the
  user's or ours. Does nothing when the user set no XLA_FLAGS (or only ours, inherited from a
  process that ran ``apply_defaults``), or when the probe fails for a reason other than the
  flags (the run then shows that failure itself)."""
  user = environ.get('XLA_FLAGS', '').strip()
  if not user or set(user.split()) <= set(CPU_FLAGS):  # none, or ours inherited from a parent
    return
  trial = dict(environ)
  apply_defaults(trial, backends_started=False)
  flags = trial['XLA_FLAGS']
  try:
    result = probe(environ, flags)
  except (OSError, subprocess.SubprocessError):
    return
  complaint = xla_complaint(result.stderr) if result.returncode else None
  if complaint is None:
    return
  if complaint.startswith('Could not open file'):
    raise ConfigError(f'XLA_FLAGS={user!r} does not start with --, so XLA reads it as the name '
                      'of a file of flags and cannot open that file; write the flags as '
                      '--name=value, or name a readable file.')
  token = culprit(complaint, flags.split())
  ours = [f for f in CPU_FLAGS if f in flags.split() and f not in user.split()]
  if token is not None and token in ours:
    raise ConfigError(f'XLA refuses the flag ltgans_jax adds to XLA_FLAGS, {token} '
                      f'({complaint}), not yours ({user!r}); set {OPT_OUT_VARIABLE}=0 to run '
                      'without it.')
  which = f'your flag {token} in XLA_FLAGS' if token else f'your XLA_FLAGS={user!r}'
  fix = ('write it as --name=value (no space) or remove it' if token and '=' not in token
         else 'fix or remove it')
  added = f' (the flag ltgans_jax adds, {" ".join(ours)}, is not the problem)' if ours else ''
  raise ConfigError(f'XLA refuses {which} ({complaint}); {fix} and rerun{added}.')
