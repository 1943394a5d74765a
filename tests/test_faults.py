"""Interruptions and divergence lose nothing: SIGTERM saves and resumes exactly; a NaN stops
the run at once, naming the network, task and step, and saves nothing after it."""

import os
import signal

import jax.numpy as jnp
import pytest

from ltgans_jax import steps, train
from tests.helpers import tree_equal


def _patch_steps(monkeypatch, on_step):
  """Wraps the jitted steps so ``on_step(phase, task_step, metrics)`` runs after each one."""
  real_make = steps.make_train_steps

  def make(*args):
    fns = real_make(*args)

    def wrap(phase):
      def step(state, batch, key, update_generators):
        task_step = int(state.task_step)
        new_state, metrics = fns[phase](state, batch, key, update_generators=update_generators)
        return new_state, on_step(phase, task_step, metrics)
      return step
    return {phase: wrap(phase) for phase in fns}
  monkeypatch.setattr(train.steps, 'make_train_steps', make)


def _latest(workdir):
  return max(int(d) for d in os.listdir(os.path.join(workdir, 'checkpoints')) if d.isdigit())


def test_sigterm_saves_then_the_rerun_ends_bit_identical(test_config, tmp_path, monkeypatch,
                                                          reference_run):
  _, reference = reference_run
  workdir = str(tmp_path / 'interrupted')

  def interrupt(phase, task_step, metrics):
    if phase == 'lakd' and task_step == 0:  # inside task 2, after its first step
      signal.raise_signal(signal.SIGTERM)
    return metrics
  _patch_steps(monkeypatch, interrupt)
  with pytest.raises(train.StopRequested, match='SIGTERM received: saved checkpoint 5'):
    train.train_and_evaluate(test_config, workdir)
  assert _latest(workdir) == 5
  monkeypatch.undo()
  resumed = train.train_and_evaluate(test_config, workdir)
  assert tree_equal(resumed, reference)


def test_nan_stops_within_a_step_and_keeps_the_last_good_checkpoint(test_config, tmp_path,
                                                                    monkeypatch):
  def poison(phase, task_step, metrics):
    if phase == 'lakd' and task_step == 2:
      metrics = {**metrics, 'critic/loss': jnp.nan}
    return metrics
  _patch_steps(monkeypatch, poison)
  workdir = str(tmp_path / 'run')
  with pytest.raises(train.DivergenceError,
                     match=r'Non-finite critic/loss \(critic\) at task digits\[5-9\], step 3'):
    train.train_and_evaluate(test_config, workdir)
  assert _latest(workdir) == 6  # the rolling checkpoint after task 2's second step


def test_stop_before_the_last_figures_redoes_them_on_resume(test_config, tmp_path, monkeypatch,
                                                           reference_run):
  """Everything a task owes is written before its boundary checkpoint: a run killed while
  drawing the last task's latent figures resumes, redraws them and ends identical."""
  _, reference = reference_run
  workdir = str(tmp_path / 'run')

  def killed(*args, **kwargs):
    raise KeyboardInterrupt('killed while drawing the latent figures')
  monkeypatch.setattr(train.figures, 'write_latent_figures', killed)
  with pytest.raises(KeyboardInterrupt):
    train.train_and_evaluate(test_config, workdir)
  assert _latest(workdir) < 8  # the final checkpoint is not written
  monkeypatch.undo()
  resumed = train.train_and_evaluate(test_config, workdir)
  assert tree_equal(resumed, reference)
  assert _latest(workdir) == 8
  for name in ('interpolation_same_task', 'interpolation_across_tasks'):
    assert os.path.getsize(os.path.join(workdir, 'figures', f'final_{name}.png')) > 0
  with open(os.path.join(workdir, 'report.md')) as f:
    assert 'figures/final_interpolation_same_task.png' in f.read()
