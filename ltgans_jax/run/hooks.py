"""What the training loop calls around its steps: the progress line, the stop signal and the
divergence check.

* ``ProgressLine``: 'task k/K | step s/S | steps/s | ETA | losses' every ``train.log_every``;
* ``StopSignal``: SIGTERM/SIGINT turned into a flag the loop reads after each call, so it saves
  a checkpoint and stops (``StopRequested``);
* ``check_finite``: a NaN or infinite loss stops the run before anything is saved
  (``DivergenceError``), so the newest checkpoint stays the last good state.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from typing import Dict


class DivergenceError(RuntimeError):
  """A loss became NaN or infinite; the newest checkpoint is the last good state."""


class StopRequested(Exception):
  """SIGTERM or SIGINT arrived; a checkpoint of the current step has been saved."""


def check_finite(nonfinite: Dict[str, bool], task_name: str, task_step: int,
                 checkpoints) -> None:
  """Raises DivergenceError naming the network, task and step of a non-finite loss."""
  bad = sorted(name for name, flag in nonfinite.items() if flag)
  if bad:
    networks = sorted({name.split('/')[0] for name in bad})
    raise DivergenceError(
        f'Non-finite {", ".join(bad)} ({" and ".join(networks)}) at task {task_name}, step '
        f'{task_step}; training stopped without saving, so the newest checkpoint '
        f'({checkpoints.latest_step()}) is the last good state: lower the learning rates or '
        'the gradient penalty weight and rerun.')


class ProgressLine:
  """Logs 'task k/K | step s/S | steps/s | ETA' every ``every`` steps."""

  def __init__(self, total_steps: int, every: int):
    self.total, self.every = total_steps, every
    self.last_time, self.last_step = None, None

  def __call__(self, global_step: int, prefix: str, metrics: Dict[str, float]):
    now = time.time()
    if self.last_time is None:
      self.last_time, self.last_step = now, global_step
      return None
    rate = (global_step - self.last_step) / max(now - self.last_time, 1e-9)
    eta = (self.total - global_step) / max(rate, 1e-9)
    self.last_time, self.last_step = now, global_step
    shown = ' '.join(f'{k.split("/")[-1]}={v:.3g}' for k, v in sorted(metrics.items())
                     if k.startswith(('critic/loss', 'generator/', 'student/loss')))
    logging.info('%s | %.2f steps/s | ETA %s | %s', prefix, rate, format_duration(eta), shown)
    return rate


def format_duration(seconds: float) -> str:
  minutes, secs = divmod(int(seconds), 60)
  hours, minutes = divmod(minutes, 60)
  return f'{hours}h{minutes:02d}m' if hours else f'{minutes}m{secs:02d}s'


class StopSignal:
  """Turns SIGTERM/SIGINT into a flag the loop checks after each step (main thread only)."""

  def __init__(self):
    self.received = None
    self._previous = {}

  def __enter__(self):
    if threading.current_thread() is threading.main_thread():
      for sig in (signal.SIGTERM, signal.SIGINT):
        self._previous[sig] = signal.signal(sig, self._handle)
    return self

  def _handle(self, signum, frame):
    del frame
    self.received = signal.Signals(signum).name

  def __exit__(self, *exc):
    for sig, handler in self._previous.items():
      signal.signal(sig, handler)
