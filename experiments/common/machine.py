"""What the runs ran on, for the README's Machine section: the CPU, ``jax.devices()`` (asked
in a subprocess), the devices each run's report.md names, and the commit of the code."""

from __future__ import annotations

import os
import platform
import re
import subprocess
import sys
from typing import Optional, Sequence

from .paths import REPO_ROOT, display_path
from .runner import RunResult


def devices_from_report(workdir: str) -> Optional[str]:
  """The 'devices: N x kind' that train.py writes into report.md."""
  path = os.path.join(workdir, 'report.md')
  if not os.path.exists(path):
    return None
  with open(path) as f:
    match = re.search(r'devices: ([^\n]*?)\.?$', f.read(), re.MULTILINE)
  return match.group(1) if match else None


def jax_devices() -> str:
  """``jax.devices()`` as a fresh interpreter sees it (asked in a subprocess so that this
  process never initialises, and holds, an accelerator)."""
  try:
    completed = subprocess.run(
        [sys.executable, '-c', 'import jax; print(jax.devices())'], cwd=REPO_ROOT,
        capture_output=True, text=True, timeout=300,
        env=dict(os.environ, XLA_PYTHON_CLIENT_PREALLOCATE='false'), check=False)
  except (OSError, subprocess.TimeoutExpired) as e:
    return f'unknown ({type(e).__name__})'
  lines = completed.stdout.strip().splitlines()
  return lines[-1] if completed.returncode == 0 and lines else 'unknown'


def cpu_name() -> str:
  try:
    with open('/proc/cpuinfo') as f:
      for line in f:
        if line.startswith('model name'):
          return line.split(':', 1)[1].strip()
  except OSError:
    pass
  return platform.processor() or platform.machine()


def machine_description(results: Sequence[RunResult]) -> str:
  reported = next((d for d in (devices_from_report(r.workdir) for r in results if r.ok) if d),
                  'unknown')
  return (f'`{platform.node()}`: {cpu_name()}, {os.cpu_count()} CPU cores visible; '
          f'`jax.devices()`: {jax_devices()}; the runs\' report.md: {reported}; Python '
          f'{platform.python_version()}, interpreter `{display_path(sys.executable)}`.')


def git_commit() -> str:
  """This checkout's short commit, with '+uncommitted changes' when tracked files differ."""
  try:
    head = subprocess.run(['git', 'rev-parse', '--short', 'HEAD'], cwd=REPO_ROOT,
                          capture_output=True, text=True, check=True).stdout.strip()
    dirty = subprocess.run(['git', 'status', '--porcelain', '--untracked-files=no'],
                           cwd=REPO_ROOT, capture_output=True, text=True).stdout.strip()
    return head + ('+uncommitted changes' if dirty else '')
  except (OSError, subprocess.CalledProcessError):
    return 'unknown'
