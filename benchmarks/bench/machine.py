"""What ran the benchmark: the CPU, memory, GPU and library versions, and the git commit of the
checkout, for the head of the report."""

from __future__ import annotations

import os
import platform
import subprocess
from typing import Dict, List

from experiments import common

ROOT = common.REPO_ROOT


def cpu_model() -> str:
  return common.cpu_name()


def git_commit() -> str:
  try:
    rev = subprocess.run(['git', 'rev-parse', '--short', 'HEAD'], cwd=ROOT, capture_output=True,
                         text=True, timeout=10).stdout.strip()
    dirty = subprocess.run(['git', 'status', '--porcelain'], cwd=ROOT, capture_output=True,
                           text=True, timeout=10).stdout.strip()
    return rev + (' (uncommitted changes)' if dirty else '') if rev else 'unknown'
  except (OSError, subprocess.SubprocessError):
    return 'unknown'


def describe(platform_name: str, torch, torch_notes: List[str]) -> Dict:
  """The report's ``machine``: CPU, memory, GPU, versions and XLA_FLAGS (``torch``: the
  module, or None when PyTorch is not timed)."""
  import jax  # pylint: disable=g-import-not-at-top
  import jaxlib  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  import flax  # pylint: disable=g-import-not-at-top
  import optax  # pylint: disable=g-import-not-at-top
  try:
    with open('/proc/meminfo') as f:
      mem_gib = round(int(f.readline().split()[1]) / 2**20, 1)
  except OSError:
    mem_gib = 'unknown'
  devices = jax.devices()
  gpu = f'{len(devices)} x {devices[0].device_kind}' if platform_name == 'gpu' else None
  if gpu and torch is not None and torch.cuda.is_available():
    gpu += f' (torch: {torch.cuda.get_device_name(0)})'
  return {
      'cpu_model': cpu_model(), 'cpu_count': os.cpu_count(),
      'cpu_affinity': (len(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity')
                       else os.cpu_count()),
      'memory_gib': mem_gib, 'gpu': gpu, 'python': platform.python_version(),
      'jax': jax.__version__, 'jaxlib': jaxlib.__version__, 'flax': flax.__version__,
      'optax': optax.__version__, 'numpy': np.__version__,
      'torch': torch.__version__ if torch is not None else 'not used',
      'torch_threads': torch.get_num_threads() if torch is not None else None,
      'torch_notes': ', '.join(torch_notes),
      'xla_flags': os.environ.get('XLA_FLAGS', '')}
