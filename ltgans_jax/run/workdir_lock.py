"""One training run per workdir: the run holds an exclusive ``flock`` on ``workdir/lock.json``,
whose text names it (host, pid, start time). A second run refuses at once, naming the first. The
operating system drops the lock when its process ends however it ends (a kill, a crash), so a
lock file left behind is stale by construction and the next run simply takes it.

``--mode=evaluate`` and ``--mode=sample`` take no lock: they read the checkpoints and write only
files of their own, so they may run beside a training run.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import time

import jax

from ltgans_jax.errors import ConfigError

LOCK_FILE = 'lock.json'


class WorkdirBusyError(ConfigError):
  """Another live run holds the workdir; the message names it and what to do."""


def _describe_owner(handle) -> str:
  handle.seek(0)
  try:
    owner = json.loads(handle.read())
    return f'the run with pid {owner["pid"]} on host {owner["host"]} (since {owner["started"]})'
  except (ValueError, KeyError, TypeError):
    return 'another run'


def acquire(workdir: str):
  """Takes ``workdir``'s lock for this process (creating the workdir); returns the open lock
  file, to be passed to ``release``. Raises ``WorkdirBusyError`` if another run holds it."""
  path = os.path.join(workdir, LOCK_FILE)
  if os.path.exists(workdir) and not os.path.isdir(workdir):
    raise ConfigError(f'--workdir={workdir!r} is a file, not a folder; choose another --workdir.')
  if os.path.isdir(path):
    raise ConfigError(f'{path} is a folder, but a run keeps its lock in a file of that name; '
                      'move that folder away and rerun.')
  try:
    os.makedirs(workdir, exist_ok=True)
    handle = open(path, 'a+')  # pylint: disable=consider-using-with  # held for the whole run
  except OSError as e:  # a file in the way, no permission, a read-only or full disk
    raise ConfigError(f'Cannot write into --workdir={workdir!r} ({e.strerror or e}); choose a '
                      'writable folder.') from None
  try:
    fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
  except BlockingIOError:
    owner = _describe_owner(handle)
    handle.close()
    raise WorkdirBusyError(f'{workdir} is in use by {owner}; wait for it to end or use another '
                           '--workdir.') from None
  handle.seek(0)
  handle.truncate()
  handle.write(json.dumps({'host': socket.gethostname(), 'pid': os.getpid(),
                           'started': time.strftime('%Y-%m-%d %H:%M:%S')}))
  handle.flush()
  return handle


def release(handle) -> None:
  """Drops the lock (the file stays; its text names the last run that held it)."""
  fcntl.flock(handle, fcntl.LOCK_UN)
  handle.close()


@contextlib.contextmanager
def held(workdir: str):
  """``with held(workdir):`` the training run's lock, taken by the main process only (the
  other hosts of a multi-host run share its workdir)."""
  if jax.process_index() != 0:
    yield
    return
  handle = acquire(workdir)
  try:
    yield
  finally:
    release(handle)
