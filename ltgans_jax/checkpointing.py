"""Orbax checkpoints of the lifelong state: every ``train.checkpoint_every`` steps (the newest
``train.max_checkpoints`` kept) and at every task boundary (always kept).

Checkpoint numbers are global steps: ``task * steps_per_task + task_step``.
"""

from __future__ import annotations

import logging
import os
from typing import Optional

import ml_collections
import orbax.checkpoint as ocp
from orbax.checkpoint import checkpoint_managers

from ltgans_jax.state import LifelongState


def global_step(config: ml_collections.ConfigDict, task: int, task_step: int) -> int:
  return task * config.train.steps_per_task + task_step


def task_boundary_steps(config: ml_collections.ConfigDict, num_tasks: int):
  return [global_step(config, t, config.train.steps_per_task) for t in range(num_tasks)]


def make_manager(config: ml_collections.ConfigDict, workdir: str,
                 num_tasks: int) -> ocp.CheckpointManager:
  policy = checkpoint_managers.AnyPreservationPolicy([
      checkpoint_managers.LatestN(config.train.max_checkpoints),
      checkpoint_managers.CustomSteps(task_boundary_steps(config, num_tasks)),
  ])
  options = ocp.CheckpointManagerOptions(preservation_policy=policy, create=True)
  return ocp.CheckpointManager(os.path.join(os.path.abspath(workdir), 'checkpoints'),
                               options=options)


def save(manager: ocp.CheckpointManager, step: int, state: LifelongState) -> None:
  """Saves asynchronously; ``manager.wait_until_finished()`` before the process exits."""
  manager.save(step, args=ocp.args.StandardSave(state))


def restore_latest(manager: ocp.CheckpointManager,
                   template: LifelongState) -> Optional[LifelongState]:
  """The newest checkpoint restored into ``template``'s pytree types, or None if there is none."""
  step = manager.latest_step()
  if step is None:
    return None
  logging.info('Resuming from checkpoint %d in %s.', step, manager.directory)
  return manager.restore(step, args=ocp.args.StandardRestore(template))
