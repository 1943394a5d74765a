"""Metric and image logging: always a ``metrics.jsonl`` in the workdir (one JSON object per
logged step, what reports and experiment scripts read back), TensorBoard events (tensorboardX,
no TensorFlow needed) and, where ``config.log.wandb_project`` is set, Weights & Biases.

Only the main process (``jax.process_index() == 0``) writes.
"""

from __future__ import annotations

import json
import logging
import os
import re
import socket
import time
import uuid
from typing import Mapping

import numpy as np

from ltgans_jax import files


def tensorboard_tag(name: str) -> str:
  """``name`` with the characters TensorBoard tags may not hold (those outside letters, digits
  and ``_ . / -``; e.g. the brackets of 'eval/nll_paper/digits[0-4]') as ``_``, as
  tensorboardX would do with a warning per tag; ``metrics.jsonl`` keeps the names as they are."""
  return re.sub(r'[^A-Za-z0-9_./-]', '_', name)


class TensorboardWriter:
  """TensorBoard event files in ``logdir`` through tensorboardX (a dependency of the package:
  no TensorFlow). The methods are those of clu's ``metric_writers.MetricWriter`` that the runs
  use, with its shapes; clu's own writers cannot serve here, because importing
  ``clu.metric_writers`` imports TensorFlow (over 1 GB) even for its interface.

  The events are written and flushed in the calling thread, at every call, through
  tensorboardX's ``RecordWriter``, not its ``SummaryWriter``: that one writes in a thread that
  dies on a full disk, after which the caller blocks for ever on its queue (and at exit, in its
  atexit hook), deaf to SIGTERM and SIGINT. Here a failed write raises its ``OSError`` in the
  run itself; the runs write a few events per logged step, so the flush costs nothing that
  matters.
  """

  def __init__(self, logdir: str):
    from tensorboardX import record_writer  # pylint: disable=g-import-not-at-top
    os.makedirs(logdir, exist_ok=True)
    # The file name and first event of TensorBoard's own writers.
    name = f'events.out.tfevents.{int(time.time())}.{socket.gethostname()}'
    self._file = record_writer.RecordWriter(os.path.join(logdir, name))
    self._closed = False
    try:
      self._write_event(file_version='brain.Event:2')
      self.flush()  # a full disk shows here, not at the first scalar
    except BaseException:
      self._close_quietly()
      raise

  def _close_quietly(self) -> None:
    """Closes the file, ignoring the error of its last flush (the caller has one already)."""
    try:
      self.close()
    except OSError:
      pass

  def _write_event(self, **fields) -> None:
    from tensorboardX.proto import event_pb2  # pylint: disable=g-import-not-at-top
    event = event_pb2.Event(wall_time=time.time(), **fields).SerializeToString()
    try:
      self._file.write(event)
    except OSError as e:  # an event larger than the file's buffer is written at once: name it
      raise OSError(e.errno, e.strerror, self._file.path) from None

  def _write(self, step: int, summary) -> None:
    self._write_event(summary=summary, step=int(step))

  def write_scalars(self, step: int, scalars: Mapping[str, float]) -> None:
    from tensorboardX import summary  # pylint: disable=g-import-not-at-top
    for name, value in scalars.items():
      self._write(step, summary.scalar(tensorboard_tag(name), float(value)))
    self.flush()

  def write_images(self, step: int, images: Mapping[str, np.ndarray]) -> None:
    """images: name -> uint8 [N, H, W, C], as clu's writers take them; one image per name is
    written (the first), as clu's TensorFlow writer shows by default."""
    from tensorboardX import summary  # pylint: disable=g-import-not-at-top
    for name, batch in images.items():
      self._write(step, summary.image(tensorboard_tag(name), np.asarray(batch)[0],
                                      dataformats='HWC'))
    self.flush()

  def write_hparams(self, hparams: Mapping[str, object]) -> None:
    """Into the run's own event file (tensorboardX's ``add_hparams`` would open a sub-run)."""
    from tensorboardX import summary  # pylint: disable=g-import-not-at-top
    for event in summary.hparams(dict(hparams), {}):
      self._write(0, event)
    self.flush()

  def flush(self) -> None:
    if not self._closed:
      try:
        self._file.flush()
      except OSError as e:  # name the file, as a failed open would
        raise OSError(e.errno, e.strerror, self._file.path) from None

  def close(self) -> None:
    """Flushes and closes the file; the file is closed even when the flush fails (its error
    is raised), so nothing tries to write it again at exit."""
    if not self._closed:
      self._closed = True
      self._file.close()  # Python's file: closed even when its last flush fails


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
      files.write_atomically(id_path, run_id + '\n')
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
    try:
      with open(self.jsonl_path, 'a') as f:
        f.write(json.dumps({'step': step, **scalars}) + '\n')
    except OSError as e:  # a full disk fails the write or the close: name the file
      raise OSError(e.errno, e.strerror, self.jsonl_path) from None
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
    """Flushes and closes every writer, all of them even if one fails (a full disk); the first
    error is raised afterwards."""
    errors = []
    for writer in self.writers:
      try:
        writer.flush()
      except Exception as e:  # pylint: disable=broad-except  # closed below all the same
        errors.append(e)
      try:
        writer.close()
      except Exception as e:  # pylint: disable=broad-except
        errors.append(e)
    self.writers = []
    if errors:
      raise errors[0]


def read_metrics(workdir: str):
  """All rows of a run's metrics.jsonl, as a list of dicts (empty if none were written)."""
  path = os.path.join(workdir, 'metrics.jsonl')
  if not os.path.exists(path):
    return []
  with open(path) as f:
    return [json.loads(line) for line in f if line.strip()]
