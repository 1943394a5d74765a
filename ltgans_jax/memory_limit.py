"""How much memory a run may use: the device's, or on the CPU backend the host's RAM or the
memory limit of the process's cgroup where lower (containers and CI runners set one, and the
kernel kills a process past it without a word).

Pure readers of ``/proc/self/cgroup`` and the cgroup files; ``config_validation.check_memory``
compares what training holds against ``memory()``.
"""

from __future__ import annotations

import os
from typing import List, Optional, Tuple

import jax

CGROUP_MOUNT = '/sys/fs/cgroup'
# cgroup v1 writes "no limit" as the largest page-aligned 63-bit number; anything this large is
# no limit in practice.
_NO_LIMIT = 1 << 60


def _read_limit(path: str) -> Optional[int]:
  """The byte count in a cgroup limit file; None where the file is absent, unreadable or says
  'max' (v2's 'no limit')."""
  try:
    with open(path) as f:
      text = f.read().strip()
  except OSError:
    return None
  if not text.isdigit() or int(text) >= _NO_LIMIT:
    return None
  return int(text)


def _limits_up_from(root: str, path: str, name: str) -> List[int]:
  """The limits in file ``name`` of the cgroup folder ``root/path`` and of every folder above it
  up to ``root``: a cgroup may use no more than its ancestors allow, and inside a container
  (its own cgroup namespace) the container's cgroup is ``root`` itself."""
  limits, folder = [], path.strip('/')
  while True:
    limit = _read_limit(os.path.join(root, folder, name))
    if limit is not None:
      limits.append(limit)
    if not folder:
      return limits
    folder = os.path.dirname(folder)


def cgroup_memory_limit(proc_cgroup: str = '/proc/self/cgroup',
                        mount: str = CGROUP_MOUNT) -> Optional[int]:
  """The tightest memory limit, in bytes, on the process whose cgroup membership
  ``proc_cgroup`` lists: cgroup v2's ``memory.max`` (the '0::PATH' line) or v1's
  ``memory.limit_in_bytes`` (the 'N:...memory...:PATH' line), of its cgroup and every ancestor;
  None where none is set or nothing can be read (not Linux)."""
  try:
    with open(proc_cgroup) as f:
      lines = f.read().splitlines()
  except OSError:
    return None
  limits = []
  for line in lines:
    parts = line.split(':', 2)
    if len(parts) != 3:
      continue
    hierarchy, controllers, path = parts
    if hierarchy == '0' and not controllers:
      limits += _limits_up_from(mount, path, 'memory.max')
    elif 'memory' in controllers.split(','):
      limits += _limits_up_from(os.path.join(mount, 'memory'), path, 'memory.limit_in_bytes')
  return min(limits, default=None)


def host_memory() -> Tuple[int, str]:
  """(bytes, what they are): the host's RAM, or this process's cgroup memory limit where that
  is lower."""
  ram = os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES')
  limit = cgroup_memory_limit()
  if limit is not None and limit < ram:
    return limit, "this process's cgroup memory limit"
  return ram, "the host's RAM"


def memory() -> Tuple[int, str]:
  """(bytes, what they are) of the memory one device offers: its allocator's limit on an
  accelerator, the host's (``host_memory``) on the CPU backend."""
  device = jax.local_devices()[0]
  try:
    stats = device.memory_stats() or {}
  except Exception:  # pylint: disable=broad-except  # backends without memory statistics
    stats = {}
  if stats.get('bytes_limit'):
    return int(stats['bytes_limit']), f"the {device.platform.upper()}'s memory"
  return host_memory()
