"""Where the repository is, and paths shown relative to it in reports."""

from __future__ import annotations

import os
from typing import Optional

# experiments/common/paths.py -> the repository root.
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def display_path(path: str, start: Optional[str] = None) -> str:
  """``path`` relative to ``start`` (or the repository root) when inside it, else absolute."""
  path = os.path.abspath(path)
  for base in ([start] if start else []) + [REPO_ROOT]:
    base = os.path.abspath(base)
    if path == base or path.startswith(base + os.sep):
      return os.path.relpath(path, base)
  return path


def rel(path: str, start: str) -> str:
  return os.path.relpath(path, start)
