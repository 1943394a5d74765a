"""What a rerun over an existing workdir checks and repairs before it trains on.

* ``check_checkpoint_shapes``: the newest checkpoint's array shapes (read from orbax's metadata,
  nothing restored) against this config's; a difference is named as the setting that makes it
  (``data.image_size=28``, ``train.num_seeds=2``), even with ``config.json`` gone, so the user
  passes that value instead of moving healthy checkpoints away.
* ``settle_metrics``: ``metrics.jsonl`` as the resumed run continues it: a last row cut short
  by a kill is dropped, and so is every row logged after the restored checkpoint (the resumed
  run logs those steps again), so the file ends as the uninterrupted run's would.
* ``check_writable``: the read-only modes (``inspect``) find out that they cannot write their
  results before they compute them.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from typing import Dict, Iterable, Optional, Tuple

import jax
import ml_collections

from ltgans_jax import files, models
from ltgans_jax.errors import ConfigError
from ltgans_jax.methods import registry
from ltgans_jax.run import checkpointing

Shapes = Dict[str, Tuple[int, ...]]  # leaf name ('student.params.Dense_0.kernel') -> shape

# Settings tried, one at a time, for a value that makes this config's shapes those stored:
# each with the values it can take (None: the sizes seen in the stored shapes).
SHAPE_SETTINGS = (('data.image_size', tuple(sorted(models.BASE_RESOLUTION))),
                  ('data.channels', (1, 3)), ('method', tuple(registry.METHODS)),
                  ('model.latent_dim', None), ('model.generator_width', None),
                  ('model.critic_width', None), ('vae.latent_dim', None), ('vae.width', None),
                  ('curl.max_components', None))


def state_shapes(config: ml_collections.ConfigDict, num_seeds: Optional[int] = None) -> Shapes:
  """The shapes of the state ``config`` trains (with its seed axis when ``num_seeds`` > 1;
  default ``train.num_seeds``), by ``jax.eval_shape``: nothing is allocated."""
  num_seeds = config.train.num_seeds if num_seeds is None else num_seeds
  shapes = jax.eval_shape(registry.build(config).init_state, jax.random.key(config.seed))
  lead = (num_seeds,) if num_seeds > 1 else ()
  return {name: lead + shape for name, shape in checkpointing.leaf_shapes(shapes).items()}


def _with(config, key: str, value) -> ml_collections.ConfigDict:
  changed = ml_collections.ConfigDict(config.to_dict())
  changed.update_from_flattened_dict({key: value})
  return changed


def _sizes(stored: Shapes, current: Shapes) -> Iterable[int]:
  """The sizes in the stored shapes of the leaves that differ: the candidate widths."""
  differing = [s for n, s in stored.items() if current.get(n) != s]
  return sorted({d for shape in differing for d in shape})[:16]


def written_with(config: ml_collections.ConfigDict, stored: Shapes) -> Optional[Tuple[str, object]]:
  """(setting, value) such that ``config`` with that one value changed has the ``stored``
  shapes; None if no single setting explains them."""
  one_seed = state_shapes(config, num_seeds=1)
  for seeds in sorted({1} | {s[0] for s in stored.values() if s}):
    if {n: ((seeds,) + s if seeds > 1 else s) for n, s in one_seed.items()} == stored:
      if seeds != config.train.num_seeds:
        return 'train.num_seeds', seeds
  current = state_shapes(config)
  for key, values in SHAPE_SETTINGS:
    now = config_value(config, key)
    for value in values or _sizes(stored, current):
      if value == now:
        continue
      try:
        if state_shapes(_with(config, key, value)) == stored:
          return key, value
      except Exception:  # pylint: disable=broad-except  # a value the networks cannot take
        continue
  return None


def config_value(config, dotted: str):
  value = config
  for part in dotted.split('.'):
    value = value[part]
  return value


def check_checkpoint_shapes(config: ml_collections.ConfigDict, workdir: str) -> None:
  """Refuses, before anything is written, a config whose state does not fit the newest
  checkpoint of ``workdir`` whose metadata can be read (a damaged one is left to
  ``checkpointing.restore_latest``), naming the setting and the value it was written with."""
  folder = os.path.join(workdir, 'checkpoints')
  if not os.path.isdir(folder):
    return
  for step in sorted((int(n) for n in os.listdir(folder) if n.isdigit()), reverse=True):
    stored = checkpointing.stored_shapes(os.path.join(folder, str(step), 'default'))
    if stored is None:
      continue
    if stored == state_shapes(config):
      return
    found = written_with(config, stored)
    if found:
      key, value = found
      raise checkpointing.CheckpointError(
          f'The checkpoints in {folder} hold networks of other sizes than this config because '
          f'they were written with {key}={value!r} (this config: '
          f'{config_value(config, key)!r}); '
          f'pass the config that wrote them (--config.{key}={value}), or use another '
          '--workdir.')
    raise checkpointing.CheckpointError(
        f'The checkpoints in {folder} hold networks of other sizes than this config '
        f'({_first_difference(stored, state_shapes(config))}); pass the config that wrote them '
        '(its values are in config.json beside them, if it is there: data.image_size, '
        'data.channels, the model, vae and curl sizes and train.num_seeds decide the shapes), '
        'or use another --workdir.')


def _first_difference(stored: Shapes, current: Shapes) -> str:
  for name in sorted(set(stored) | set(current)):
    if stored.get(name) != current.get(name):
      return (f'{name} is {stored.get(name, "absent")} there, '
              f'{current.get(name, "absent")} here')
  return 'no difference'


def settle_metrics(workdir: str, restored_step: int) -> None:
  """Rewrites ``workdir/metrics.jsonl`` without rows it cannot hold on resume: a row that is
  not whole JSON (a kill mid-write cuts the last one short, and the next row would be glued to
  it) and every row of a step after ``restored_step`` (0 for a fresh start), which the resumed
  run logs again. Leaves a file that needs neither untouched."""
  path = os.path.join(workdir, 'metrics.jsonl')
  if jax.process_index() != 0 or not os.path.exists(path):
    return
  with open(path) as f:
    lines = f.read().splitlines()
  kept, dropped = [], 0
  for line in lines:
    try:
      row = json.loads(line)
      keep = row['step'] <= restored_step
    except (ValueError, KeyError, TypeError):
      keep = False if line.strip() else None
    if keep:
      kept.append(line)
    elif keep is False:
      dropped += 1
  if dropped or not (lines == kept and _ends_in_newline(path)):
    logging.info('metrics.jsonl: dropped %d rows after step %d or cut short; the resumed run '
                 'logs those steps again.', dropped, restored_step)
    files.write_atomically(path, ''.join(line + '\n' for line in kept))


def _ends_in_newline(path: str) -> bool:
  with open(path, 'rb') as f:
    f.seek(0, os.SEEK_END)
    if f.tell() == 0:
      return True
    f.seek(-1, os.SEEK_END)
    return f.read(1) == b'\n'


def check_writable(folder: str, mode: str, what: str) -> None:
  """Refuses --mode=``mode`` (which writes ``what`` into ``folder``) before it computes
  anything when ``folder`` (or the workdir that will hold it) takes no new file."""
  target = folder if os.path.isdir(folder) else os.path.dirname(os.path.abspath(folder))
  try:
    handle, probe = tempfile.mkstemp(dir=target, prefix='.writable.')
    os.close(handle)
    os.unlink(probe)
  except OSError as e:
    raise ConfigError(f'--mode={mode} writes {what} into {folder}, which is not writable '
                      f'({e.strerror or e}); make it writable, or copy the workdir to a '
                      'writable place and pass the copy as --workdir.') from None
