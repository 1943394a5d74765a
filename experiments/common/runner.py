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

  @property
  def ok(self) -> bool:
    return self.returncode == 0


RUN_RECORD = 'experiment_run.json'  # written into a workdir after a successful run


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


def run_config(name: str, config: str, workdir: str, overrides: Mapping[str, object],
               mode: str = 'train') -> RunResult:
  """Runs (or resumes) one config into ``workdir``; the log goes to ``<workdir>.log``.

  A workdir that a run with the identical command finished before is reused as it is.
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
  os.makedirs(os.path.dirname(workdir) or '.', exist_ok=True)
  logging.info('%s: %s%s', name, shell_line(command), ' (resuming)' if resumed else '')
  env = dict(os.environ, PYTHONUNBUFFERED='1')
  tail: List[str] = []
  started = time.time()
  with open(log_path, 'a') as log:
    log.write(f'# {datetime.datetime.now().isoformat(timespec="seconds")} '
              f'{shell_line(command)}\n')
    process = subprocess.Popen(command, cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True, bufsize=1)
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
      raise
  seconds = time.time() - started
  result = RunResult(name, command, workdir, log_path, seconds, returncode, resumed=resumed)
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
