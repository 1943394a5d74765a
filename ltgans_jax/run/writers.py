"""Metric and image logging: always a ``metrics.jsonl`` in the workdir (one JSON object per
logged step, what reports and experiment scripts read back), TensorBoard events (tensorboardX,
no TensorFlow needed) and, where ``config.log.wandb_project`` is set, Weights & Biases.

Only the main process (``jax.process_index() == 0``) writes.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import re
import tempfile
import uuid
from typing import Mapping, Optional, Union

import numpy as np


def write_atomically(path: str, content: Union[str, bytes]) -> None:
  """Writes ``content`` (text, or bytes such as an ``.npz``) to ``path`` through a temporary
  file in the same folder and a rename, so that a crash or a full disk leaves either the old
  file or the new one, never a part."""
  folder = os.path.dirname(path) or '.'
  os.makedirs(folder, exist_ok=True)
  handle, temporary = tempfile.mkstemp(dir=folder, prefix=f'.{os.path.basename(path)}.')
  try:
    with os.fdopen(handle, 'wb' if isinstance(content, bytes) else 'w') as f:
      f.write(content)
      f.flush()
      os.fsync(f.fileno())
    os.replace(temporary, path)
  except BaseException:
    os.unlink(temporary)
    raise


def tensorboard_tag(name: str) -> str:
  """``name`` with the characters TensorBoard tags may not hold (those outside letters, digits
  and ``_ . / -``; e.g. the brackets of 'eval/nll_paper/digits[0-4]') as ``_``, as
  tensorboardX would do with a warning per tag; ``metrics.jsonl`` keeps the names as they are."""
  return re.sub(r'[^A-Za-z0-9_./-]', '_', name)


class TensorboardWriter:
  """TensorBoard event files in ``logdir`` through tensorboardX (a dependency of the package:
  no TensorFlow). The methods are those of clu's ``metric_writers.MetricWriter`` that the runs
  use, with its shapes; clu's own writers cannot serve here, because importing
  ``clu.metric_writers`` imports TensorFlow (over 1 GB) even for its interface."""

  def __init__(self, logdir: str):
    from tensorboardX import SummaryWriter  # pylint: disable=g-import-not-at-top
    self._writer = SummaryWriter(logdir=logdir, flush_secs=30)

  def write_scalars(self, step: int, scalars: Mapping[str, float]) -> None:
    for name, value in scalars.items():
      self._writer.add_scalar(tensorboard_tag(name), value, global_step=step)

  def write_images(self, step: int, images: Mapping[str, np.ndarray]) -> None:
    """images: name -> uint8 [N, H, W, C], as clu's writers take them; one image per name is
    written (the first), as clu's TensorFlow writer shows by default."""
    for name, batch in images.items():
      self._writer.add_image(tensorboard_tag(name), np.asarray(batch)[0], global_step=step,
                             dataformats='HWC')

  def write_hparams(self, hparams: Mapping[str, object]) -> None:
    """Into the run's own event file (tensorboardX's ``add_hparams`` would open a sub-run)."""
    from tensorboardX import summary  # pylint: disable=g-import-not-at-top
    for event in summary.hparams(dict(hparams), {}):
      self._writer.file_writer.add_summary(event)

  def flush(self) -> None:
    self._writer.flush()

  def close(self) -> None:
    self._writer.close()


class WandbWriter:
  """Weights & Biases, with the same methods as ``TensorboardWriter``. One W&B run per
  workdir: its id is kept in ``<workdir>/wandb_run_id.txt``, so a resumed training continues the
  same W&B run. ``WANDB_MODE=offline`` keeps everything in ``<workdir>/wandb/`` for a later
  ``wandb sync``."""

  def __init__(self, workdir: str, project: str):
    import wandb  # pylint: disable=g-import-not-at-top
    self._wandb = wandb
    id_path = os.path.join(workdir, WANDB_ID_FILE)
    if os.path.exists(id_path):
      with open(id_path) as f:
        run_id = f.read().strip()
    else:
      run_id = uuid.uuid4().hex[:12]  # W&B run ids: letters and digits
      write_atomically(id_path, run_id + '\n')
    self._run = wandb.init(project=project, dir=workdir, id=run_id, resume='allow',
                           name=os.path.basename(os.path.abspath(workdir)))

  def write_scalars(self, step: int, scalars: Mapping[str, float]) -> None:
    self._run.log(dict(scalars), step=step)

  def write_images(self, step: int, images: Mapping[str, np.ndarray]) -> None:
    """images: name -> uint8 [N, H, W, C]; the first of each is logged."""
    self._run.log({k: self._wandb.Image(np.asarray(v)[0]) for k, v in images.items()},
                  step=step)

  def write_hparams(self, hparams: Mapping[str, object]) -> None:
    self._run.config.update(dict(hparams), allow_val_change=True)

  def flush(self) -> None:
    pass  # wandb writes in its own process

  def close(self) -> None:
    self._run.finish()


WANDB_ID_FILE = 'wandb_run_id.txt'


def wandb_missing(project: str) -> Optional[str]:
  """The error sentence for ``log.wandb_project`` set without wandb installed, else None."""
  if project and importlib.util.find_spec('wandb') is None:
    return (f"log.wandb_project={project!r} needs wandb, which is not installed; pip install "
            "'ltgans-jax[wandb]', or set --config.log.wandb_project=''.")
  return None


class MetricsLog:
  """Writes scalars and images of one run to ``metrics.jsonl``, TensorBoard (``<workdir>/
  tensorboard``) and, with ``wandb_project``, W&B; ``close()`` flushes everything."""

  def __init__(self, workdir: str, is_main_process: bool = True, wandb_project: str = ''):
    self.enabled = is_main_process
    self.jsonl_path = os.path.join(workdir, 'metrics.jsonl')
    self.writers = []
    if not self.enabled:
      return
    try:
      self.writers.append(TensorboardWriter(os.path.join(workdir, 'tensorboard')))
    except ImportError as e:  # a package installed without its dependencies
      logging.warning('No TensorBoard events (%s); metrics go to %s and the log only. '
                      'pip install tensorboardX to get them.', e, self.jsonl_path)
    if wandb_project:
      self.writers.append(WandbWriter(workdir, wandb_project))

  def write_scalars(self, step: int, scalars: Mapping[str, float]) -> None:
    if not self.enabled:
      return
    scalars = {k: float(v) for k, v in scalars.items()}
    with open(self.jsonl_path, 'a') as f:
      f.write(json.dumps({'step': step, **scalars}) + '\n')
    for writer in self.writers:
      writer.write_scalars(step, scalars)

  def write_images(self, step: int, images: Mapping[str, np.ndarray]) -> None:
    """images: name -> uint8 [H, W, C]."""
    for writer in self.writers:
      writer.write_images(step, {k: v[None] for k, v in images.items()})

  def write_hparams(self, hparams: Mapping[str, object]) -> None:
    """The run's config as hparams (``config.json`` holds it in the workdir)."""
    for writer in self.writers:
      writer.write_hparams(hparams)

  def close(self) -> None:
    for writer in self.writers:
      writer.flush()
      writer.close()


def read_metrics(workdir: str):
  """All rows of a run's metrics.jsonl, as a list of dicts (empty if none were written)."""
  path = os.path.join(workdir, 'metrics.jsonl')
  if not os.path.exists(path):
    return []
  with open(path) as f:
    return [json.loads(line) for line in f if line.strip()]
