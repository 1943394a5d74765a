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

When one process of a multi-process run ends (an error, a kill), the others must end too, at
once and saying why, instead of waiting in a collective or in JAX's exit-time shutdown barrier
for a process that will never come (``lost_peer``, ``end_process``). A stop signal is honoured
only when every process has seen it (``any_process``), so that all of them save the same
checkpoint together.
"""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import sys
from typing import Mapping, NoReturn, Optional

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


def running() -> bool:
  """Whether this process is one of several (``jax.distributed`` is up with more than one)."""
  return jax.distributed.is_initialized() and jax.process_count() > 1


# What the errors of a lost peer say: gloo's TCP pairs see the peer's socket close at once
# ('Connection reset by peer', 'Connection closed by peer'); the coordination service reports
# a missed heartbeat or a failed barrier.
_LOST_PEER_MARKERS = ('Gloo', 'Connection reset', 'Connection closed', 'heartbeat',
                      'coordination service', 'Barrier failed', 'barrier has failed')


def lost_peer(error: BaseException) -> bool:
  """Whether ``error`` is a collective or coordination failure of a multi-process run: another
  process has ended."""
  return running() and isinstance(error, (RuntimeError, ValueError)) and any(
      marker in str(error) for marker in _LOST_PEER_MARKERS)


def lost_peer_message(error: BaseException) -> str:
  detail = next((line.strip() for line in str(error).splitlines() if line.strip()), '')
  return (f'process {jax.process_index()} of {jax.process_count()} stops because another '
          f'process of this run ended ({detail[:160]}); see that process\'s output for why, '
          'then rerun every process\'s command to resume from the newest checkpoint.')


def end_process(code: int, message: Optional[str]) -> NoReturn:
  """Ends this process of a multi-process run now: ``message`` (one sentence) on stderr, the
  logs flushed, then ``os._exit``. A normal exit would run JAX's exit-time shutdown, a barrier
  that waits (up to minutes) for every process, which a dead or stuck peer never reaches;
  ``os._exit`` also closes this process's sockets, so the peers' next collective fails at once
  and they end in turn. Checkpoint saves have been finished (or abandoned, leaving the newest
  committed checkpoint whole) by the ``finally`` blocks that ran before."""
  if message:
    logging.error('%s', message)
  logging.shutdown()
  if message:
    sys.stderr.write(f'error: {message}\n')
  sys.stderr.flush()
  sys.stdout.flush()
  os._exit(code)  # pylint: disable=protected-access


# Kept alive for the whole process: the C handler below calls into it.
_ABORT_HANDLER = []


def end_with_a_sentence_on_abort() -> None:
  """Makes an abort of this process (SIGABRT) end it with one sentence and exit status 1.

  When the coordinator (process 0) dies, JAX's coordination client in every other process sees
  its socket close and ends the process itself, from a thread of its own, with a fatal log line
  and ``abort()``, before Python can catch anything. A handler installed through the C library
  (a Python ``signal`` handler would only run after ``abort`` has killed the process) writes
  the sentence after JAX's lines and exits. Installed in multi-process runs only; it replaces
  Python's ``faulthandler`` dump for SIGABRT there."""
  message = (f'error: process {jax.process_index()} of {jax.process_count()} was ended by JAX\'s '
             'runtime (see its fatal line above: usually another process of this run ended); '
             'see that process\'s output for why, then rerun every process\'s command to resume '
             'from the newest checkpoint.\n').encode()

  def on_abort(signum):
    del signum
    os.write(2, message)
    os._exit(1)  # pylint: disable=protected-access

  handler = ctypes.CFUNCTYPE(None, ctypes.c_int)(on_abort)
  _ABORT_HANDLER.append(handler)
  ctypes.CDLL(None).signal(signal.SIGABRT, handler)


def any_process(flag: bool) -> bool:
  """Whether ``flag`` holds on any process (a collective: every process must call it at the same
  point); ``flag`` itself in a one-process run."""
  if not running():
    return flag
  from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  return bool(np.any(multihost_utils.process_allgather(np.asarray(flag))))
