"""What every lifelong method provides (``LifelongMethod``), and the Student-VAE evaluation the
methods with a ``StudentVAE`` share (``StudentEvaluation``).

The training loop (``run.loop``) reads a method's ``StepPlan``; the task boundaries, the
evaluator and the inspect modes talk to the ``LifelongMethod``. Each method owns its state (one
immutable pytree with ``task`` and ``task_step`` counters), its steps and what evaluation asks
of it. A method is built with its networks' convolution layers from outside (``models.Layers``:
flax's unless the caller hands in the backend's, ``cpu.backend.Backend.layers``). The methods
and their names are listed in ``registry``, the only module that names them all.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Callable, Dict, Hashable, NamedTuple, Optional, Tuple

import jax
import jax.numpy as jnp
import numpy as np

from ltgans_jax import pixels
from ltgans_jax.eval import evaluation

StepFn = Callable  # (state, batch uint8 [B, H, W, C], key) -> (state, metrics)


class VAEView(NamedTuple):
  """A method's encoder and decoder as plain functions, for reconstructions and Figs. 2-3.

  encode: images [N, H, W, C] in [-1, 1] -> (mean [N, L], log_var [N, L]);
  decode: latents [N, L] -> logits [N, H, W, C] (the mean image is their sigmoid).
  """
  encode: Callable
  decode: Callable


@dataclasses.dataclass(frozen=True)
class StepPlan:
  """How the training loop (``run.loop``) calls a method's steps: all the loop knows of it.

  A task's steps come in variants (a GAN step with or without a generator update; a CURL step
  for a number of active components): each is compiled on its own, and one fused call runs a
  sequence of them.

  step: ``(variant, static) -> step(state, batch uint8 [B, H, W, C], key) -> (state,
    metrics)``, plain (unjitted); ``static``: one seed's entry of ``static_args``.
  variant: ``(task, task_step) -> hashable``: which step runs as step ``task_step`` (0-based)
    of ``task``; the loop keys its compiled calls by it.
  steps_per_call: how many steps one fused call runs at most; calls end at its multiples (for
    the GANs the critic steps of one generator update; 1 for the VAEs).
  static_args: ``state -> tuple | None``: per seed, what the step's shapes depend on and the
    host must read from ``state`` before compiling it (one hashable per seed); None when
    nothing is.
  vmappable: the step can be ``jax.vmap``ped over a leading seed axis.
  donate_state: the fused call may donate the state it is given.
  """
  step: Callable[[Hashable, Any], StepFn]
  variant: Callable[[int, int], Hashable]
  steps_per_call: int = 1
  static_args: Callable[[Any], Optional[tuple]] = lambda state: None
  vmappable: bool = True
  donate_state: bool = True


class LifelongMethod:
  """What every method provides: its ``plan`` for the training loop (a ``StepPlan``), its life
  cycle over the tasks and what evaluation asks of it. States are pytrees with int32 ``task``
  and ``task_step``."""

  name: str
  plan: StepPlan
  cumulative_data: bool = False  # task k trains on the union of tasks 1..k
  sample_networks: Tuple[str, ...] = ('student',)  # choices of --mode=sample
  # The network whose samples the FID rows measure, and those samples in words (reports).
  fid_samples: Tuple[str, str] = ('student', 'the VAE decoder')

  def init_state(self, key: jax.Array):
    raise NotImplementedError

  def train_steps(self) -> Dict[str, Callable]:
    """Phase -> its step jitted alone (benchmarks and tests)."""
    raise NotImplementedError

  def phase(self, task: int) -> str:
    raise NotImplementedError

  def data_images_per_step(self, task: int, batch_size: int) -> int:
    """Task images one step of ``task`` consumes, for ``train.epochs_per_task``."""
    del task
    return batch_size

  def end_task(self, state, task: int):
    """The state after ``task``'s last step -> the finished state that is evaluated and saved
    at the task boundary (pure; the identity unless a method says otherwise)."""
    del task
    return state

  def begin_next_task(self, state):
    """The finished state of task k -> the start of task k + 1 (pure)."""
    raise NotImplementedError

  def sample(self, state, network: str, key: jax.Array, num: int) -> jnp.ndarray:
    """[num, H, W, C] images in [-1, 1] of one of ``sample_networks``."""
    raise NotImplementedError

  def fid_network(self) -> str:
    """The network whose samples the FID rows measure."""
    return self.fid_samples[0]

  @property
  def fid_source(self) -> str:
    """Whose samples the FID measures, in words, for reports."""
    return self.fid_samples[1]

  def vae_view(self, state) -> VAEView:
    raise NotImplementedError

  def nll_paper(self, state, images: np.ndarray, key: jax.Array) -> float:
    """Mean paper NLOG (squared error in [0, 1] + KL, one posterior sample) of uint8 images."""
    raise NotImplementedError

  def nll_iwae(self, state, images: np.ndarray, key: jax.Array, num_samples: int) -> float:
    """Mean importance-weighted bound on -log p(x) in nats of uint8 images [N, H, W, C]."""
    raise NotImplementedError

  def picture_grids(self, state, num: int) -> Dict[str, jnp.ndarray]:
    """Name -> [num, H, W, C] samples in [-1, 1] shown at every task boundary."""
    raise NotImplementedError


class StudentEvaluation:
  """NLL measures and Figs. 2-3 for methods whose model is a ``StudentVAE`` at ``state.student``.
  Needs ``self.config`` and ``self.student`` (the ``models.StudentVAE``).

  Every network pass here is jitted with the method static (one compiled program per pass and
  shape): run eagerly, flax's ``apply`` dispatches (and looks up a compiled program for) every
  operation on its own, hundreds per evaluation.
  """

  @functools.partial(jax.jit, static_argnums=0)
  def _encode(self, params, images):
    """images [N, H, W, C] in [-1, 1] -> (mean [N, L], log_var [N, L])."""
    return self.student.apply({'params': params}, images, method='encode')

  @functools.partial(jax.jit, static_argnums=0)
  def _decode(self, params, z):
    """latents [N, L] -> logits [N, H, W, C]."""
    return self.student.apply({'params': params}, z, method='decode')

  def vae_view(self, state) -> VAEView:
    params = state.student.params
    return VAEView(encode=functools.partial(self._encode, params),
                   decode=functools.partial(self._decode, params))

  def nll_paper(self, state, images, key):
    return evaluation.paper_nll(self.student, state.student.params, images, key)

  def nll_iwae(self, state, images, key, num_samples):
    vae = self.config.vae
    return evaluation.iwae_nll(self.student, state.student.params, images, key, num_samples,
                               vae.likelihood, vae.decoder_std).nll

  def student_samples(self, state, key, num):
    """[num, H, W, C] mean images in [-1, 1] of the Student's decoder, z ~ N(0, I)."""
    return self._student_samples(state.student.params, key, num)

  @functools.partial(jax.jit, static_argnums=(0, 3))
  def _student_samples(self, params, key, num):
    z = jax.random.normal(key, (num, self.config.vae.latent_dim))
    return pixels.from_logits(self.student.apply({'params': params}, z, method='decode'))
