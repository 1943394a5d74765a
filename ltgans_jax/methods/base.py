"""What every lifelong method provides (``LifelongMethod``), and the Student-VAE evaluation the
methods with a ``StudentVAE`` share (``StudentEvaluation``).

The training loop (``run.loop``), the evaluator and the inspect modes only talk to a
``LifelongMethod``; each method owns its state (one immutable pytree with ``task`` and
``task_step`` counters), its steps and what evaluation asks of it. The methods and their names
are listed in ``registry``, the only module that names them all.
"""

from __future__ import annotations

from typing import Callable, Dict, Hashable, NamedTuple, Tuple

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


class LifelongMethod:
  """What every method provides. States are pytrees with int32 ``task`` and ``task_step``."""

  name: str
  cumulative_data: bool = False  # task k trains on the union of tasks 1..k
  sample_networks: Tuple[str, ...] = ('student',)  # choices of --mode=sample
  fid_source: str = 'the VAE decoder'  # whose samples the FID measures, for reports

  def init_state(self, key: jax.Array):
    raise NotImplementedError

  # How the training loop (``run.loop``) calls the steps. A task's steps come in variants
  # (a GAN step with or without a generator update; a CURL step for a number of active
  # components): each is compiled on its own, and a fused call runs a sequence of them.
  vmappable: bool = True  # the step can be ``jax.vmap``ped over a leading seed axis
  donate_state: bool = True  # the fused call may donate the state it is given

  def step_variant(self, task: int, task_step: int) -> Hashable:
    """Which step runs as step ``task_step`` (0-based) of ``task``: a hashable the loop keys
    its compiled calls by. Default: the task's phase."""
    del task_step
    return self.phase(task)

  def step_function(self, variant: Hashable, static=None) -> StepFn:
    """The plain (unjitted) step ``(state, batch uint8 [B, H, W, C], key) -> (state,
    metrics)`` of ``variant``; ``static``: one seed's entry of ``static_step_args``."""
    raise NotImplementedError

  def static_step_args(self, state):
    """Per seed, what the step's shapes depend on and the host must read from ``state``
    before compiling it (a tuple, one hashable per seed); None when nothing is."""
    del state
    return None

  def steps_per_call(self) -> int:
    """How many steps one fused call runs at most: calls end at multiples of it (for the GANs
    the critic steps of one generator update; 1 for the VAEs)."""
    return 1

  phases_used: Tuple[str, ...] = ()  # the phases the default ``train_steps`` compiles

  def train_steps(self) -> Dict[str, StepFn]:
    """Phase -> its step jitted alone (benchmarks and tests); the input state is donated when
    ``donate_state``."""
    return {phase: jax.jit(self.step_function(phase), donate_argnums=0 if self.donate_state
                           else ()) for phase in self.phases_used}

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
    return 'student'

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
  Needs ``self.config`` and ``self.student`` (the ``models.StudentVAE``)."""

  def vae_view(self, state) -> VAEView:
    student, params = self.student, state.student.params
    return VAEView(
        encode=lambda images: student.apply({'params': params}, images, method='encode'),
        decode=lambda z: student.apply({'params': params}, z, method='decode'))

  def nll_paper(self, state, images, key):
    return evaluation.paper_nll(self.student, state.student.params, images, key)

  def nll_iwae(self, state, images, key, num_samples):
    vae = self.config.vae
    return evaluation.iwae_nll(self.student, state.student.params, images, key, num_samples,
                               vae.likelihood, vae.decoder_std).nll

  def student_samples(self, state, key, num):
    z = jax.random.normal(key, (num, self.config.vae.latent_dim))
    logits = self.student.apply({'params': state.student.params}, z, method='decode')
    return pixels.from_logits(logits)
