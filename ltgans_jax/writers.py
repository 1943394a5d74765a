"""Metric and image logging: always a ``metrics.jsonl`` in the workdir (one JSON object per
logged step, what reports and experiment scripts read back) and, where TensorFlow is installed,
TensorBoard events through clu's ``metric_writers``.

Only the main process (``jax.process_index() == 0``) writes.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from typing import Mapping

import numpy as np


def write_atomically(path: str, text: str) -> None:
  """Writes ``text`` to ``path`` through a temporary file in the same folder and a rename, so
  that a crash or a full disk leaves either the old file or the new one, never a part."""
  folder = os.path.dirname(path) or '.'
  os.makedirs(folder, exist_ok=True)
  handle, temporary = tempfile.mkstemp(dir=folder, prefix=f'.{os.path.basename(path)}.')
  try:
    with os.fdopen(handle, 'w') as f:
      f.write(text)
      f.flush()
      os.fsync(f.fileno())
    os.replace(temporary, path)
  except BaseException:
    os.unlink(temporary)
    raise


class MetricsLog:
  """Writes scalars and images of one run; ``close()`` flushes everything."""

  def __init__(self, workdir: str, is_main_process: bool = True):
    self.enabled = is_main_process
    self.jsonl_path = os.path.join(workdir, 'metrics.jsonl')
    self.tensorboard = None
    if not self.enabled:
      return
    try:
      from clu import metric_writers  # pylint: disable=g-import-not-at-top
      self.tensorboard = metric_writers.create_default_writer(
          os.path.join(workdir, 'tensorboard'), asynchronous=False)
    except ImportError as e:  # clu's writers import TensorFlow.
      logging.warning('No TensorBoard events (%s); metrics go to %s and the log only. '
                      'Install tensorflow-cpu to get them.', e, self.jsonl_path)

  def write_scalars(self, step: int, scalars: Mapping[str, float]) -> None:
    if not self.enabled:
      return
    scalars = {k: float(v) for k, v in scalars.items()}
    with open(self.jsonl_path, 'a') as f:
      f.write(json.dumps({'step': step, **scalars}) + '\n')
    if self.tensorboard is not None:
      self.tensorboard.write_scalars(step, scalars)

  def write_images(self, step: int, images: Mapping[str, np.ndarray]) -> None:
    """images: name -> uint8 [H, W, C]."""
    if self.enabled and self.tensorboard is not None:
      self.tensorboard.write_images(step, {k: v[None] for k, v in images.items()})

  def write_hparams(self, hparams: Mapping[str, object]) -> None:
    """The run's config as TensorBoard hparams (``config.json`` holds it in the workdir)."""
    if self.enabled and self.tensorboard is not None:
      self.tensorboard.write_hparams(dict(hparams))

  def close(self) -> None:
    if self.tensorboard is not None:
      self.tensorboard.flush()
      self.tensorboard.close()


def read_metrics(workdir: str):
  """All rows of a run's metrics.jsonl, as a list of dicts (empty if none were written)."""
  path = os.path.join(workdir, 'metrics.jsonl')
  if not os.path.exists(path):
    return []
  with open(path) as f:
    return [json.loads(line) for line in f if line.strip()]
