"""Turns on ``jax.distributed`` from the environment a multi-host launcher sets, or explains in
one sentence which variable is missing.

* ``JAX_COORDINATOR_ADDRESS=host:port`` with ``JAX_NUM_PROCESSES`` and ``JAX_PROCESS_ID`` (JAX
  itself reads only the address; the two counts are read here);
* a SLURM step started by ``srun`` with more than one task (``SLURM_JOB_ID``,
  ``SLURM_STEP_NODELIST``, ``SLURM_NTASKS``, ``SLURM_PROCID``, ``SLURM_LOCALID``): JAX finds the
  rest. A shell inside ``salloc`` or ``sbatch`` (``SLURM_JOB_ID`` without a step) and a one-task
  step run as one process;
* ``JAX_COORDINATOR_ADDRESS`` alone: JAX detects the rest (a TPU VM pod, a SLURM step) or the
  run stops with one sentence saying what to set.
"""

from __future__ import annotations

import logging
from typing import Mapping, Optional

import jax

from ltgans_jax.errors import ConfigError

SLURM_STEP_VARIABLES = ('SLURM_STEP_NODELIST', 'SLURM_NTASKS', 'SLURM_PROCID', 'SLURM_LOCALID')


def _count(environ: Mapping[str, str], name: str) -> Optional[int]:
  value = environ.get(name, '').strip()
  if not value:
    return None
  try:
    return int(value)
  except ValueError:
    raise ConfigError(f'{name}={value!r} is not a whole number; set it to one (or unset it).'
                      ) from None


def distributed_arguments(environ: Mapping[str, str]) -> Optional[dict]:
  """The keyword arguments for ``jax.distributed.initialize``, or None for a single-process run;
  raises ``ConfigError`` naming the variable that is missing or wrong."""
  address = environ.get('JAX_COORDINATOR_ADDRESS', '').strip()
  if address:
    count, index = (_count(environ, 'JAX_NUM_PROCESSES'), _count(environ, 'JAX_PROCESS_ID'))
    if count is None and index is None:
      return {}  # a SLURM step or a TPU pod: JAX reads the counts from the cluster
    if count is None or index is None:
      raise ConfigError(f'JAX_COORDINATOR_ADDRESS={address} with only one of JAX_NUM_PROCESSES '
                        'and JAX_PROCESS_ID set; set both on every host (e.g. 2, and 0 or 1), '
                        'or unset JAX_COORDINATOR_ADDRESS to run on this host alone.')
    if not 0 <= index < count:
      raise ConfigError(f'JAX_PROCESS_ID={index} with JAX_NUM_PROCESSES={count}; the id must '
                        f'lie in 0..{count - 1}, one per host.')
    return {'num_processes': count, 'process_id': index}
  slurm_step = all(environ.get(v) for v in SLURM_STEP_VARIABLES)
  if environ.get('SLURM_JOB_ID') and slurm_step and (_count(environ, 'SLURM_NTASKS') or 1) > 1:
    return {}
  return None


def initialize_from_environment(environ: Mapping[str, str]) -> bool:
  """Calls ``jax.distributed.initialize`` when ``environ`` describes a multi-host run (module
  docstring); returns whether it did. A failure is a ``ConfigError`` of one sentence."""
  arguments = distributed_arguments(environ)
  if arguments is None:
    if environ.get('SLURM_JOB_ID'):
      logging.info('SLURM job %s without a multi-task srun step: running as one process.',
                   environ['SLURM_JOB_ID'])
    return False
  try:
    jax.distributed.initialize(**arguments)
  except (ValueError, TypeError, RuntimeError) as e:
    detail = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    raise ConfigError(f'jax.distributed.initialize failed ({detail[:200]}); set '
                      'JAX_COORDINATOR_ADDRESS, JAX_NUM_PROCESSES and JAX_PROCESS_ID on every '
                      'host (or start the hosts with srun), or unset JAX_COORDINATOR_ADDRESS to '
                      'run on this host alone.') from None
  return True
