"""Files written whole or not at all: ``write_atomically`` and the clean-up of the temporaries a
killed process leaves (``remove_stale_temporaries``).

With ``errors``, the package's floor: it imports nothing of the package, so that the evaluation,
the reports, the config checks and the run's writers all write their files through it without
importing one another.
"""

from __future__ import annotations

import logging
import os
import re
from typing import List, Union
import uuid


# Temporaries of ``write_atomically``: '.<name>.<pid>.<random>.tmp' beside the file they replace.
_TEMPORARY = re.compile(r'^\..+\.(\d+)\.[0-9a-f]{8}\.tmp$')


def write_atomically(path: str, content: Union[str, bytes]) -> None:
  """Writes ``content`` (text, or bytes such as an ``.npz``) to ``path`` through a temporary
  file in the same folder and a rename, so that a crash or a full disk leaves either the old
  file or the new one, never a part.

  The temporary is created with mode 0666 less the umask, as ``open`` would create ``path``
  (``tempfile.mkstemp`` makes 0600 files, which a colleague cannot read), and its name holds
  this process's id, so that ``remove_stale_temporaries`` can tell those a killed process left.
  """
  folder = os.path.dirname(path) or '.'
  os.makedirs(folder, exist_ok=True)
  temporary = os.path.join(
      folder, f'.{os.path.basename(path)}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp')
  handle = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
  try:
    with os.fdopen(handle, 'wb' if isinstance(content, bytes) else 'w') as f:
      f.write(content)
      f.flush()
      os.fsync(f.fileno())
    os.replace(temporary, path)
  except BaseException:
    os.unlink(temporary)
    raise


def _process_alive(pid: int) -> bool:
  try:
    os.kill(pid, 0)
  except ProcessLookupError:
    return False
  except PermissionError:  # another user's live process
    return True
  return True


def remove_stale_temporaries(workdir: str) -> List[str]:
  """Deletes the temporaries of ``write_atomically`` under ``workdir`` whose process is gone (a
  SIGKILL or power loss mid-write leaves one for good); those of a live process, such as an
  ``--mode=evaluate`` beside a training run, stay. Returns the paths removed.

  Checkpoints are orbax's and are left alone; only the main process calls this."""
  removed = []
  for folder, subfolders, files in os.walk(workdir):
    subfolders[:] = [d for d in subfolders if d not in ('checkpoints', 'wandb')]
    for name in files:
      match = _TEMPORARY.match(name)
      if match and not _process_alive(int(match.group(1))):
        path = os.path.join(folder, name)
        try:
          os.unlink(path)
        except FileNotFoundError:  # another process cleaned it first
          continue
        removed.append(path)
  if removed:
    logging.info('Removed %d temporary file(s) left by a killed run: %s', len(removed),
                 ', '.join(removed))
  return removed
