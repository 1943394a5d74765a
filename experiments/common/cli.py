"""What the experiment scripts' command lines share: the flags, the override sets of the
size presets (``--size``, ``--quick``, ``--set``), the methods and the folders a script writes to.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
from typing import Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

from .paths import REPO_ROOT

# The methods the paper compares (``lgm``, ``curl``: ltgans_jax/methods/), and this project's
# own baselines. A name ltgans_jax.methods.registry.METHODS lacks is skipped with a note.
PAPER_METHODS = ('ltgans', 'curl', 'lgm')
BASELINE_METHODS = ('no_lakd', 'finetune', 'joint')
METHOD_TITLES = {
    'ltgans': 'LT-GANs',
    'curl': 'CURL',
    'lgm': 'LGM',
    'no_lakd': 'no LAKD (twins joint)',
    'finetune': 'fine-tuning',
    'joint': 'joint (all data)',
}


# Tiny networks and a few steps: checks that a script runs end to end, in minutes on 2 CPU cores.
# The numbers it produces mean nothing.
QUICK_OVERRIDES: Dict[str, object] = {
    'train.steps_per_task': 4,
    'train.batch_size': 8,
    'train.log_every': 2,
    'train.checkpoint_every': 2,
    'model.generator_width': 4,
    'model.critic_width': 4,
    'model.latent_dim': 8,
    'vae.width': 4,
    'vae.latent_dim': 4,
    'gan.critic_steps': 1,
    'eval.num_examples': 16,
    'eval.iwae_samples': 2,
    'eval.feature_net_steps': 5,
    'eval.grid_rows': 4,
    'data.image_size': 28,
    'data.channels': 1,
}

SIZES = ('paper', 'cpu', 'small')


def small_overrides(image_size: int = 28, channels: int = 1) -> Dict[str, object]:
  """A CPU-feasible setting for real runs: widths 16, batch 64, 2 critic steps per generator
  step, the evaluation on 500 test images per task."""
  return {
      'data.image_size': image_size,
      'data.channels': channels,
      'model.generator_width': 16,
      'model.critic_width': 16,
      'vae.width': 16,
      'vae.latent_dim': 32,
      'gan.critic_steps': 2,
      'optim.gan_learning_rate': 2e-4,
      'train.batch_size': 64,
      'train.log_every': 100,
      'train.checkpoint_every': 500,
      'eval.num_examples': 500,
      'eval.iwae_samples': 50,
      'eval.feature_net_steps': 500,
  }


def parse_assignments(items: Iterable[str]) -> Dict[str, str]:
  """['a.b=1', ...] -> {'a.b': '1'}; raises ValueError on an item without '='."""
  result = {}
  for item in items:
    key, sep, value = item.partition('=')
    key = key.strip()
    if key.startswith('--config.'):
      key = key[len('--config.'):]
    if not sep or not key:
      raise ValueError(f'--set {item!r}: expected KEY=VALUE, e.g. eval.iwae_samples=5000.')
    result[key] = value
  return result


def size_overrides(size: str, quick: bool, steps_per_task: Optional[int] = None,
                   extra: Optional[Mapping[str, object]] = None, image_size: int = 28,
                   channels: int = 1) -> Dict[str, object]:
  """The overrides of one script invocation, later entries winning: the size preset
  (``paper`` keeps the config's values), ``--quick``, ``--steps_per_task``, ``--set``.
  ``image_size``/``channels``: the image shape of the ``small`` and ``--quick`` presets."""
  if size not in SIZES:
    raise ValueError(f'size={size!r}; use one of {SIZES}.')
  overrides: Dict[str, object] = {}
  if size == 'small':
    overrides.update(small_overrides(image_size, channels))
  elif size == 'cpu':
    from ltgans_jax import config_base  # pylint: disable=g-import-not-at-top
    overrides.update(config_base.cpu_scale_values(image_size, channels))
  if quick:
    overrides.update(QUICK_OVERRIDES)
    overrides.update({'data.image_size': image_size, 'data.channels': channels})
  if steps_per_task is not None:
    overrides['train.steps_per_task'] = int(steps_per_task)
  overrides.update(extra or {})
  return overrides


def add_common_flags(parser: argparse.ArgumentParser, default_methods: Sequence[str]) -> None:
  parser.add_argument('--data_dir', required=True,
                      help='Folder holding one sub-folder per dataset (mnist/, fashion_mnist/, '
                      '...) in its published format.')
  parser.add_argument('--quick', action='store_true',
                      help='Tiny networks, 4 steps per task: a smoke test of the script; the '
                      'numbers mean nothing. Results go to a temporary folder unless --out.')
  parser.add_argument('--size', choices=SIZES, default='paper',
                      help="'paper': the config's sizes; 'cpu': our CPU-scale setting "
                      "(ltgans_jax.config_base.cpu_scale_values, what runs on a laptop); "
                      "'small': the earlier CPU preset, widths 16, batch 64, 2 critic "
                      'steps, for CPU runs.')
  parser.add_argument('--steps_per_task', type=int, default=None,
                      help="Training steps per task (default: the config's).")
  parser.add_argument('--methods', default=','.join(default_methods),
                      help='Comma-separated config.method values; unavailable ones are skipped '
                      'with a note.')
  add_folder_flags(parser)


def add_folder_flags(parser: argparse.ArgumentParser) -> None:
  """--out, --workdir_root and --set: what every script taking ``resolve_folders`` and
  ``parse_assignments`` reads."""
  parser.add_argument('--out', default=None,
                      help='Results folder (default experiments/results/<script>, or a '
                      'temporary folder with --quick).')
  parser.add_argument('--workdir_root', default=None,
                      help='Where the runs\' workdirs go (default workdirs/experiments/<script>, '
                      'or <out>/workdirs with --quick).')
  parser.add_argument('--set', action='append', default=[], metavar='KEY=VALUE',
                      help='More config overrides, e.g. --set eval.iwae_samples=5000 '
                      '(repeatable).')


def resolve_folders(args: argparse.Namespace, name: str) -> Tuple[str, str]:
  """(out, workdir_root) as absolute paths; quick results never land in experiments/results."""
  out = args.out
  if out is None:
    out = (os.path.join(tempfile.gettempdir(), 'ltgans_quick', name) if args.quick
           else os.path.join(REPO_ROOT, 'experiments', 'results', name))
  out = os.path.abspath(out)
  root = args.workdir_root
  if root is None:
    root = (os.path.join(out, 'workdirs') if args.quick
            else os.path.join(REPO_ROOT, 'workdirs', 'experiments', name))
  return out, os.path.abspath(root)


def setup_logging() -> None:
  logging.basicConfig(level=logging.INFO, format='%(asctime)s %(levelname)s %(message)s',
                      datefmt='%H:%M:%S')
  # Libraries that log through absl (orbax, when Fig. 4b restores checkpoints): warnings only.
  logging.getLogger('absl').setLevel(logging.WARNING)


def split_methods(requested: str) -> Tuple[List[str], List[str]]:
  """'ltgans,curl' -> (available, notes on the skipped ones); exits when none is available."""
  from ltgans_jax.methods import registry  # pylint: disable=g-import-not-at-top
  available, notes = [], []
  for name in [m.strip() for m in requested.split(',') if m.strip()]:
    if name in registry.METHODS:
      if name not in available:
        available.append(name)
    else:
      notes.append(f'method `{name}` ({METHOD_TITLES.get(name, name)}) is not implemented in '
                   f'ltgans_jax (available: {", ".join(sorted(registry.METHODS))}); skipped.')
  if not available:
    sys.exit(f'error: --methods={requested!r} names no implemented method. ' + ' '.join(notes))
  return available, notes


def missing_folders(data_dir: str, folders: Sequence[str]) -> List[str]:
  return [f for f in folders if not os.path.isdir(os.path.join(data_dir, f))]


def config_path(name: str) -> str:
  """'msfo' -> 'configs/msfo.py' (relative to the repository root, where commands run)."""
  return f'configs/{name}.py'

