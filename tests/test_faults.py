"""Interruptions and divergence lose nothing: SIGTERM saves and resumes exactly; a NaN stops
the run before its next save, naming the network, task and step."""

import os
import signal

import jax.numpy as jnp
import pytest

from ltgans_jax import train
from ltgans_jax.methods import ltgans
from ltgans_jax.run import hooks, loop
from tests.helpers import tree_equal


def _poison_steps(monkeypatch, phase_to_poison, task_step_to_poison):
  """The GAN steps, with 'critic/loss' NaN at ``task_step_to_poison`` (0-based) of
  ``phase_to_poison``: a traced condition, as the steps run inside the fused jitted calls."""
  real = ltgans.GanMethod.step_function

  def step_function(self, variant, static=None):
    fn, (phase, _) = real(self, variant, static), variant

    def step(state, batch, key):
      poisoned = (phase == phase_to_poison) & (state.task_step == task_step_to_poison)
      new_state, metrics = fn(state, batch, key)
      return new_state, {**metrics, 'critic/loss': jnp.where(poisoned, jnp.nan,
                                                             metrics['critic/loss'])}
    return step
  monkeypatch.setattr(ltgans.GanMethod, 'step_function', step_function)


def _latest(workdir):
  return max(int(d) for d in os.listdir(os.path.join(workdir, 'checkpoints')) if d.isdigit())


def test_sigterm_saves_then_the_rerun_ends_bit_identical(test_config, tmp_path, monkeypatch,
                                                          reference_run):
  _, reference = reference_run
  workdir = str(tmp_path / 'interrupted')

  real_place = loop.place_batches

  def place_and_interrupt(loop_, task_batches, first_step, num_steps):
    if task_batches[0].task == 1 and first_step == 0:  # inside task 2, before its first step
      signal.raise_signal(signal.SIGTERM)
    return real_place(loop_, task_batches, first_step, num_steps)
  monkeypatch.setattr(loop, 'place_batches', place_and_interrupt)
  with pytest.raises(hooks.StopRequested, match='SIGTERM received: saved checkpoint 5'):
    train.train_and_evaluate(test_config, workdir)
  assert _latest(workdir) == 5
  monkeypatch.undo()
  resumed = train.train_and_evaluate(test_config, workdir)
  assert tree_equal(resumed, reference)


def test_nan_stops_before_any_save_and_keeps_the_last_good_checkpoint(test_config, tmp_path,
                                                                    monkeypatch):
  _poison_steps(monkeypatch, 'lakd', 2)
  workdir = str(tmp_path / 'run')
  with pytest.raises(hooks.DivergenceError,
                     match=r'Non-finite critic/loss \(critic\) at task digits\[5-9\], step 3'):
    train.train_and_evaluate(test_config, workdir)
  assert _latest(workdir) == 6  # the rolling checkpoint after task 2's second step
