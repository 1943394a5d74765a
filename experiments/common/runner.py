"""Runs ``python -m ltgans_jax.main`` once per (method, setting) as a subprocess.

The log is streamed to ``<workdir>.log`` and the wall time measured; rerunning resumes, and a
workdir a run with the identical command finished before is reused as it is.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import logging
import os
import shlex
import subprocess
import sys
import threading
import time
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

from .paths import REPO_ROOT, display_path
from .readback import is_complete


def format_value(value) -> str:
  if isinstance(value, float):
    return repr(value)
  return str(value)


def build_command(config: str, workdir: str, overrides: Mapping[str, object],
                  mode: str = 'train', python: Optional[str] = None) -> List[str]:
  """The argv of ``python -m ltgans_jax.main`` for one run."""
  command = [python or sys.executable, '-m', 'ltgans_jax.main', f'--config={config}',
             f'--workdir={workdir}']
  if mode != 'train':
    command.append(f'--mode={mode}')
  command += [f'--config.{key}={format_value(value)}' for key, value in overrides.items()]
  return command


def shell_line(command: Sequence[str]) -> str:
  """The argv as one copy-pasteable shell line (run from the repository root)."""
  shown = list(command)
  if shown:
    shown[0] = display_path(shown[0])
  return shlex.join(shown)


@dataclasses.dataclass
class RunResult:
  name: str
  command: List[str]
  workdir: str
  log: str
  seconds: float
  returncode: int
  error: str = ''
  reused: bool = False   # finished earlier with the same command; not run again
  resumed: bool = False  # the workdir held checkpoints when this invocation started
  # Wall seconds of the earlier invocations of a resumed run (stopped by Ctrl-C or SIGTERM
  # through this module); None where one of them is not known (killed outright, or run by
  # something else).
  earlier_seconds: Optional[float] = None

  @property
  def ok(self) -> bool:
    return self.returncode == 0

  @property
  def total_seconds(self) -> Optional[float]:
    """The run's wall time over all its invocations, None where a part is not known."""
    if not self.resumed:
      return self.seconds
    return None if self.earlier_seconds is None else self.earlier_seconds + self.seconds


RUN_RECORD = 'experiment_run.json'  # written into a workdir after a successful run
# Beside a workdir (``<workdir>.invocations.json``, like its log): the wall seconds of every
# invocation of the run, null for one that ended without saying (killed outright, or still
# going), so that a resumed run's wall time is still known.
INVOCATIONS_SUFFIX = '.invocations.json'


def invocations(workdir: str) -> List[Optional[float]]:
  """The wall seconds of each invocation of the run in ``workdir`` (``INVOCATIONS_SUFFIX``)."""
  path = workdir.rstrip('/') + INVOCATIONS_SUFFIX
  if not os.path.exists(path):
    return []
  with open(path) as f:
    return list(json.load(f))


def _record_invocation(workdir: str, seconds: Optional[float], new: bool) -> List[Optional[float]]:
  """Appends (``new``) or sets the last invocation's seconds; returns the list."""
  values = invocations(workdir)
  values = values + [seconds] if new or not values else values[:-1] + [seconds]
  with open(workdir.rstrip('/') + INVOCATIONS_SUFFIX, 'w') as f:
    json.dump(values, f)
  return values


def _reusable(command: List[str], workdir: str) -> Optional[dict]:
  path = os.path.join(workdir, RUN_RECORD)
  if not (os.path.exists(path) and is_complete(workdir)):
    return None
  with open(path) as f:
    record = json.load(f)
  return record if record.get('command') == command[1:] else None


def _error_line(lines: Sequence[str]) -> str:
  """The library's one-sentence error ('error: ...' from main), else the last line."""
  for line in reversed(lines):
    if line.startswith('error: '):
      return line[len('error: '):].strip()
  for line in reversed(lines):
    if line.strip():
      return line.strip()
  return 'no output'


_RUNNING: set = set()  # the live children of run_config, for stop_all
_RUNNING_LOCK = threading.Lock()


def stop_all() -> None:
  """Asks every run in progress (in any thread) to checkpoint and stop (SIGTERM)."""
  with _RUNNING_LOCK:
    for process in list(_RUNNING):
      process.terminate()


def cpu_sets(jobs: int) -> List[Tuple[int, ...]]:
  """This process's CPUs split into ``jobs`` disjoint sets of (nearly) equal size, in order.

  ValueError if there are fewer CPUs than jobs."""
  cpus = sorted(os.sched_getaffinity(0))
  if jobs < 1 or jobs > len(cpus):
    raise ValueError(f'--jobs={jobs}; this process may use {len(cpus)} CPU(s): pass 1 to '
                     f'{len(cpus)}.')
  size, extra = divmod(len(cpus), jobs)
  sets, start = [], 0
  for job in range(jobs):
    end = start + size + (1 if job < extra else 0)
    sets.append(tuple(cpus[start:end]))
    start = end
  return sets


def run_config(name: str, config: str, workdir: str, overrides: Mapping[str, object],
               mode: str = 'train', cpus: Optional[Sequence[int]] = None) -> RunResult:
  """Runs (or resumes) one config into ``workdir``; the log goes to ``<workdir>.log``.

  A workdir that a run with the identical command finished before is reused as it is.
  ``cpus``: pin the run to these CPUs (``os.sched_setaffinity``; XLA then sizes its thread pool
  to them); None: the CPUs this process has.
  """
  command = build_command(config, workdir, overrides, mode)
  log_path = workdir.rstrip('/') + '.log'
  if mode == 'train':
    previous = _reusable(command, workdir)
    if previous is not None:
      logging.info('%s: finished earlier with the same command (%.0f s); reusing %s', name,
                   previous['seconds'], workdir)
      return RunResult(name, command, workdir, log_path, previous['seconds'], 0, reused=True)
  resumed = os.path.isdir(os.path.join(workdir, 'checkpoints'))
  os.makedirs(os.path.dirname(workdir.rstrip('/')) or '.', exist_ok=True)
  logging.info('%s: %s%s', name, shell_line(command), ' (resuming)' if resumed else '')
  env = dict(os.environ, PYTHONUNBUFFERED='1')
  tail: List[str] = []
  timed = mode == 'train'
  if timed:
    _record_invocation(workdir, None, new=True)  # null until it ends
  started = time.time()
  with open(log_path, 'a', buffering=1) as log:  # line-buffered: the log shows progress live
    log.write(f'# {datetime.datetime.now().isoformat(timespec="seconds")} '
              f'{shell_line(command)}\n')
    process = subprocess.Popen(command, cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True, bufsize=1)
    if cpus:
      # From the parent, not a preexec_fn (unsafe with threads): the child is still starting
      # Python, long before jax counts the CPUs it may use.
      os.sched_setaffinity(process.pid, cpus)
    with _RUNNING_LOCK:
      _RUNNING.add(process)
    try:
      for line in process.stdout:
        log.write(line)
        tail = (tail + [line.rstrip('\n')])[-40:]
        if ' done: ' in line or ('steps/s' in line and '| step ' in line):
          logging.info('%s: %s', name, line.rstrip('\n').split('] ', 1)[-1])
      returncode = process.wait()
    except BaseException:
      # Interrupted: SIGTERM makes the run save a checkpoint of its current step and stop, so
      # rerunning the script resumes it.
      process.terminate()
      process.wait()
      if timed:
        _record_invocation(workdir, time.time() - started, new=False)
      raise
    finally:
      with _RUNNING_LOCK:
        _RUNNING.discard(process)
  seconds = time.time() - started
  earlier = _record_invocation(workdir, seconds, new=False)[:-1] if timed else []
  known = resumed and earlier and all(v is not None for v in earlier)
  result = RunResult(name, command, workdir, log_path, seconds, returncode, resumed=resumed,
                     earlier_seconds=sum(earlier) if known else None)
  if returncode != 0:
    result.error = _error_line(tail)
    logging.error('%s failed (exit %d) after %.0f s: %s (log: %s)', name, returncode, seconds,
                  result.error, log_path)
  elif mode == 'train':
    with open(os.path.join(workdir, RUN_RECORD), 'w') as f:
      json.dump({'command': command[1:], 'seconds': seconds}, f, indent=1)
    logging.info('%s finished in %.0f s', name, seconds)
  return result


def method_runs(methods: Sequence[str], config: str, root: str, overrides: Mapping[str, object],
                prefix: str = '') -> List[Tuple[str, str, str, Dict[str, object]]]:
  """(name, config, workdir, overrides) of one run per method."""
  return [(f'{prefix}{m}', config, os.path.join(root, f'{prefix}{m}'),
           {**overrides, 'method': m}) for m in methods]


def run_all(specs: Sequence[Tuple[str, str, str, Mapping[str, object]]],
            hint: str = '') -> List[RunResult]:
  """Runs (name, config, workdir, overrides) in order. If the first run fails (missing data, a
  bad override), nothing can be compared: exits with the library's message (and ``hint``) and
  writes no results. A later failure is recorded and the others still run."""
  results = []
  for i, (name, config, workdir, overrides) in enumerate(specs):
    result = run_config(name, config, workdir, overrides)
    if i == 0 and not result.ok:
      sys.exit(f'error: {result.error}\n{hint + chr(10) if hint else ""}'
               f'(full log: {result.log}; no results written)')
    results.append(result)
  return results
