"""Configs by name: ``--config=msfo`` and ``api.load_config('msfo')`` from any directory.

The config files live in the repository's ``configs/`` folder, where the README, CI and the
experiment scripts name them by path (``--config=configs/msfo.py``). ``setup.cfg`` installs that
same folder as the package ``ltgans_jax.configs`` (a ``package_dir`` mapping, no copies), so
a ``pip install`` (editable or not) can find them by name. A source tree used without an install
(``PYTHONPATH=.``) falls back to the ``configs/`` folder beside the package.

A ``--config`` value is a path when it names an existing file, or contains a path separator or a
``.py`` suffix, and a config name when it is a bare identifier such as ``mnist_fashion_cpu``.
"""

from __future__ import annotations

import importlib.util
import os
import re
from typing import List

from ltgans_jax.errors import ConfigError

PACKAGE = 'ltgans_jax.configs'
_NAME = re.compile(r'[A-Za-z_][A-Za-z0-9_]*')


def folder() -> str:
  """The folder holding the packaged config files (``ltgans_jax/configs`` once installed)."""
  try:
    spec = importlib.util.find_spec(PACKAGE)
  except ImportError:  # pragma: no cover  # a broken install: fall back to the source tree
    spec = None
  if spec is not None and spec.submodule_search_locations:
    return list(spec.submodule_search_locations)[0]
  # A source tree on sys.path without an install: the repository's configs/ folder.
  return os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'configs')


def names() -> List[str]:
  """The packaged configs' names (file names without ``.py``), sorted."""
  location = folder()
  if not os.path.isdir(location):
    return []
  return sorted(name[:-3] for name in os.listdir(location)
                if name.endswith('.py') and _NAME.fullmatch(name[:-3])
                and not name.startswith('_'))


def is_name(value: str) -> bool:
  """Whether ``value`` is read as a config name (a bare identifier, not an existing file)."""
  return bool(_NAME.fullmatch(value)) and not os.path.isfile(value)


def resolve(name_or_path: str) -> str:
  """The config file ``name_or_path`` stands for.

  Args:
    name_or_path: a path (kept as given, even if it does not exist: the loader then says
      so) or the name of a packaged config (``msfo``, ``test``).
  Returns:
    A path of a ``.py`` file.
  Raises:
    ConfigError: a bare name that no packaged config has.
  """
  if not is_name(name_or_path):
    return name_or_path
  path = os.path.join(folder(), f'{name_or_path}.py')
  if os.path.isfile(path):
    return path
  raise ConfigError(f'config {name_or_path!r} is neither a file nor a packaged config; pass a '
                    f'config file\'s path or one of these names: {", ".join(names())}.')
