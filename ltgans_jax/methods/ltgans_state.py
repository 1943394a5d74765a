"""The lifelong state: one immutable pytree, and the pure functions that move it between tasks.

``LifelongState`` holds the Teacher, the Assistant, the critic and the Student (parameters and
optimiser states), the task index, the step within the task and which of the two physical
generators currently plays the Teacher. Its size never depends on the number of tasks: no data,
no per-task snapshots. ``begin_next_task`` swaps the twins' roles (the Assistant, which has just
learnt everything so far, becomes the frozen Teacher) and gives the new Assistant a fresh
optimiser state.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import flax.struct
import jax
import jax.numpy as jnp
import ml_collections
import optax

from ltgans_jax import models
from ltgans_jax.methods.network_state import (NetworkState, build_student, gan_optimizer,
                                              student_optimizer)


class Networks(NamedTuple):
  """The Flax modules; static, bound into the jitted steps."""
  generator: models.Generator
  critic: models.Critic
  student: models.StudentVAE


class Optimizers(NamedTuple):
  """The optax transformations; static, bound into the jitted steps."""
  generator: optax.GradientTransformation
  critic: optax.GradientTransformation
  student: optax.GradientTransformation


class LifelongState(flax.struct.PyTreeNode):
  """Everything a lifelong run needs to continue; what a checkpoint holds.

  ``teacher_id`` (0 or 1) names which of the two generators initialised at the start plays the
  Teacher now: it flips at every task boundary, so it records the role swaps.
  """
  teacher: NetworkState
  assistant: NetworkState
  critic: NetworkState
  student: NetworkState
  task: jnp.ndarray        # int32 scalar, 0-based index of the current task
  task_step: jnp.ndarray   # int32 scalar, steps done in the current task
  teacher_id: jnp.ndarray  # int32 scalar, 0 or 1


def build_networks(config: ml_collections.ConfigDict, layers: models.Layers) -> Networks:
  """The twins' generator, the critic and the Student, with ``layers`` as their convolution
  layers (the backend's: ``cpu.backend.Backend.layers``)."""
  data, model = config.data, config.model
  return Networks(
      generator=models.Generator(data.image_size, data.channels, model.generator_width,
                                 model.resample, conv=layers.conv,
                                 conv_transpose=layers.conv_transpose),
      critic=models.Critic(data.image_size, model.critic_width, model.resample,
                           conv=layers.conv),
      student=build_student(config, layers),
  )


class ParamsAverageState(NamedTuple):
  """The exponential moving average of a network's parameters (``average_params``)."""
  average: Any


def average_params(decay: float) -> optax.GradientTransformation:
  """An optax transformation that leaves the updates alone and keeps, in its state, the
  exponential moving average ``a <- decay a + (1 - decay) p`` of the parameters ``p`` after
  each update (``optax.incremental_update``). Chained last, after the optimiser."""

  def init(params):
    return ParamsAverageState(average=jax.tree_util.tree_map(jnp.array, params))  # own buffers

  def update(updates, avg_state, params):
    new_params = optax.apply_updates(params, updates)
    return updates, ParamsAverageState(
        average=optax.incremental_update(new_params, avg_state.average, 1.0 - decay))

  return optax.GradientTransformation(init, update)


def with_averaged_params(network: NetworkState) -> NetworkState:
  """``network`` with its parameters replaced by the moving average its optimiser keeps
  (``average_params``); unchanged when the optimiser keeps none."""
  averages = [s for s in jax.tree_util.tree_leaves(
      network.opt_state, is_leaf=lambda x: isinstance(x, ParamsAverageState))
              if isinstance(s, ParamsAverageState)]
  if not averages:
    return network
  return network.replace(params=jax.tree_util.tree_map(jnp.copy, averages[0].average))


def generator_optimizer(config: ml_collections.ConfigDict) -> optax.GradientTransformation:
  """The generators' optimiser: ``gan_optimizer``, followed by ``average_params`` when
  ``optim.generator_ema_decay`` > 0."""
  decay = config.optim.generator_ema_decay
  if not decay:
    return gan_optimizer(config)
  return optax.chain(gan_optimizer(config), average_params(decay))


def build_optimizers(config: ml_collections.ConfigDict) -> Optimizers:
  return Optimizers(generator=generator_optimizer(config), critic=gan_optimizer(config),
                    student=student_optimizer(config))


def init_state(config: ml_collections.ConfigDict, networks: Networks, optimizers: Optimizers,
               key: jax.Array) -> LifelongState:
  """Fresh state for task 0: two independently initialised generators, a critic, a Student."""
  size, channels = config.data.image_size, config.data.channels
  images = jnp.zeros((1, size, size, channels), jnp.float32)
  latents = jnp.zeros((1, config.model.latent_dim), jnp.float32)
  student_noise = jnp.zeros((1, config.vae.latent_dim), jnp.float32)
  key_teacher, key_assistant, key_critic, key_student = jax.random.split(key, 4)

  def network_state(params, optimizer):
    return NetworkState(params=params, opt_state=optimizer.init(params))

  generator_params = [networks.generator.init(k, latents)['params']
                      for k in (key_teacher, key_assistant)]
  return LifelongState(
      teacher=network_state(generator_params[0], optimizers.generator),
      assistant=network_state(generator_params[1], optimizers.generator),
      critic=network_state(networks.critic.init(key_critic, images)['params'],
                           optimizers.critic),
      student=network_state(
          networks.student.init(key_student, images, student_noise)['params'],
          optimizers.student),
      task=jnp.zeros((), jnp.int32),
      task_step=jnp.zeros((), jnp.int32),
      teacher_id=jnp.zeros((), jnp.int32),
  )


def swap_roles(state: LifelongState) -> LifelongState:
  """The Assistant becomes the Teacher and the Teacher the Assistant; nothing else changes."""
  return state.replace(teacher=state.assistant, assistant=state.teacher,
                       teacher_id=1 - state.teacher_id)


def begin_next_task(state: LifelongState, generator_optimizer: optax.GradientTransformation,
                    swap: bool = True) -> LifelongState:
  """Moves a finished task-k state to the start of task k+1 (pure).

  ``swap=False`` (the baselines) only advances the counters.

  The roles swap, so the generator that has just learnt tasks 1..k becomes the frozen Teacher;
  the new Assistant (which knows only tasks 1..k-1) starts a fresh optimiser state, since the
  moments of its last training are stale. The Teacher keeps its (now unused) optimiser state so
  that the pytree's structure, and therefore its size, stays the same for every task.
  """
  if not swap:
    return state.replace(task=state.task + 1, task_step=jnp.zeros_like(state.task_step))
  swapped = swap_roles(state)
  fresh_assistant = swapped.assistant.replace(
      opt_state=generator_optimizer.init(swapped.assistant.params))
  return swapped.replace(assistant=fresh_assistant, task=state.task + 1,
                         task_step=jnp.zeros_like(state.task_step))
