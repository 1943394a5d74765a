"""LGM: Lifelong Generative Modeling (Ramapuram, Gregorova and Kalousis, Neurocomputing 2020;
arXiv:1705.09847), the paper's baseline [23], as ``config.method='lgm'``.

A Student VAE learns every task; at each task boundary a frozen copy of it becomes the Teacher,
and the Student goes on from its own weights with a fresh optimiser (as the original's
``StudentTeacher.fork``, which copies the Teacher's weights into a new Student, and ``main.py``'s
``train_loop``, which then calls ``build_optimizer(model.student)``). On task t (0-based) each
batch of B images holds floor(B * t / (t + 1)) samples of the Teacher (the original's
``int(batch_size * ratio)``, ``ratio = t / (t + 1)``) at random positions and real images of
task t elsewhere, so every task seen is replayed in equal measure. A Teacher sample is its
decoder's mean image sigmoid(logits) for z ~ N(0, I), as the original's
``generate_synthetic_samples`` (``nll_activation`` of the decoded prior sample). The loss is
the (beta-)ELBO of the mixed batch plus a consistency term: ``lgm.consistency_weight`` (the
original's ``consistency_gamma``, default 1) times KL(q_student(z|x) || q_teacher(z|x)) on the
Teacher samples, averaged over the whole batch, which keeps the Student's posterior where the
Teacher put those images.

Where this differs from the authors' code (github.com/jramapuram/LifelongVAE_pytorch):
* Networks: exactly the LT-GANs Student's (``models.StudentVAE``, same width and latent size),
  so the comparison matches capacity; the original's are gated convolutional networks with ELU
  and GroupNorm (``filter_depth = 32``).
* The latent is Gaussian only. That is the original's default (``--reparam-type
  isotropic_gaussian``), but its 'mixture' setting (its ``run.sh``) adds a discrete
  Gumbel-softmax latent that grows by ``discrete_size`` at each fork (the layers whose size
  changes start afresh) and is then the only one the consistency KL regularises; its optional
  mutual-information terms (``discrete_mut_info`` / ``continuous_mut_info``, default 0), its
  likelihood regulariser (``likelihood_gamma``, default 0) and its EWC option are not
  implemented.
* The Gaussian KLs (the ELBO's and the consistency term) are the exact ones for the encoder's
  (mean, log-variance); the original's build ``torch.distributions.Normal(mu, logvar)``, i.e.
  take the log-variance output as a standard deviation, while it samples z with
  exp(logvar / 2).
* The optimiser: Adam (``optim.student_learning_rate``, 1e-3 as the original's); the original's
  default is ``AdamNormGrad`` (Adam on each tensor's L2-normalised gradient), its ``run.sh``
  uses Adam.
* Teacher samples sit at random positions; the original puts the real images first (the same
  thing here: no layer mixes the examples of a batch).
* The likelihood is ``vae.likelihood`` (the original's default ``nll_type`` is Bernoulli); the
  length of a task is ``train.steps_per_task`` steps (the original: ``epochs = 10`` epochs,
  optional early stopping).

State: ``LgmState`` (Student params + optimiser state, the Teacher's params, counters), the same
size for every task.
"""

from __future__ import annotations

import functools

import flax.struct
import jax
import jax.numpy as jnp
import ml_collections

from ltgans_jax import losses, models, pixels, rng
from ltgans_jax.methods import base
from ltgans_jax.methods.network_state import (NetworkState, apply_gradients, build_student,
                                              copy_tree, student_optimizer)


class LgmState(flax.struct.PyTreeNode):
  student: NetworkState
  teacher_params: object   # a frozen copy of the Student taken at the last task boundary
  task: jnp.ndarray        # int32 scalar, 0-based
  task_step: jnp.ndarray   # int32 scalar


def teacher_count(task, batch_size: int):
  """Teacher samples in a batch of task ``task`` (0-based): floor(B * t / (t + 1)), the
  original's ``int(batch_size * ratio)`` in exact integer arithmetic."""
  task = jnp.asarray(task, jnp.int32)
  return (batch_size * task) // (task + 1)


class LgmMethod(base.StudentEvaluation, base.LifelongMethod):
  """See the module docstring."""

  def __init__(self, config: ml_collections.ConfigDict, name: str = 'lgm',
               layers: models.Layers = models.Layers()):
    self.config, self.name = config, name
    vae = config.vae
    self.student = build_student(config, layers)
    self.optimizer = student_optimizer(config)
    self.student_kwargs = dict(beta=vae.beta, likelihood=vae.likelihood,
                               decoder_std=vae.decoder_std)

  def init_state(self, key):
    size, channels = self.config.data.image_size, self.config.data.channels
    params = self.student.init(
        key, jnp.zeros((1, size, size, channels)),
        jnp.zeros((1, self.config.vae.latent_dim)))['params']
    return LgmState(student=NetworkState(params, self.optimizer.init(params)),
                    teacher_params=copy_tree(params), task=jnp.zeros((), jnp.int32),
                    task_step=jnp.zeros((), jnp.int32))

  @property
  def plan(self):
    return base.StepPlan(step=self.step_function, variant=lambda task, _: self.phase(task))

  def phase(self, task):
    return 'first' if task == 0 else 'distill'

  def data_images_per_step(self, task, batch_size):
    """Task t's batches hold B - (B t) // (t + 1) real images (the rest Teacher samples)."""
    return max(1, batch_size - int(teacher_count(task, batch_size)))

  def begin_next_task(self, state):
    """The Teacher becomes a frozen copy of the Student; the Student keeps its weights and gets
    a fresh optimiser state (the original builds a new optimiser at each fork)."""
    params = state.student.params
    return state.replace(student=NetworkState(params, self.optimizer.init(params)),
                         teacher_params=copy_tree(params), task=state.task + 1,
                         task_step=jnp.zeros_like(state.task_step))

  def sample(self, state, network, key, num):
    return self.student_samples(state, key, num)

  def picture_grids(self, state, num):
    return {'student_samples': self.student_samples(
        state, rng.stream_key(self.config.seed, rng.STUDENT_GRID_LATENTS), num)}

  def train_steps(self):
    """Phase -> its step jitted alone; the input state is donated."""
    return {phase: jax.jit(self.step_function(phase), donate_argnums=0)
            for phase in ('first', 'distill')}

  def step_function(self, variant, static=None):
    del static
    return functools.partial(self._step, distill=variant == 'distill')

  def _step(self, state: LgmState, batch, key, *, distill: bool):
    """One Student update on a batch [B, H, W, C] uint8 (mixed with Teacher samples when
    ``distill``)."""
    student = self.student
    key_mix, key_z, key_noise = jax.random.split(key, 3)
    data = pixels.from_uint8(batch)
    num = data.shape[0]
    if distill:
      z = jax.random.normal(key_z, (num, self.config.vae.latent_dim))
      replay = pixels.from_logits(student.apply({'params': state.teacher_params}, z,
                                            method='decode'))
      is_teacher = jax.random.permutation(key_mix, jnp.arange(num) < teacher_count(
          state.task, num))
      images = jnp.where(is_teacher[:, None, None, None], replay, data)
      teacher_mean, teacher_log_var = student.apply({'params': state.teacher_params}, images,
                                                    method='encode')
    else:
      is_teacher, images = jnp.zeros((num,), bool), data
    noise = jax.random.normal(key_noise, (num, self.config.vae.latent_dim))

    def loss_fn(params):
      logits, mean, log_var = student.apply({'params': params}, images, noise)
      elbo_loss, aux = losses.student_loss(logits, pixels.to_unit_interval(images), mean,
                                           log_var, **self.student_kwargs)
      is_data = ~is_teacher
      num_data = jnp.maximum(jnp.sum(is_data), 1)
      metrics = {f'student/{name}_data': jnp.sum(jnp.where(is_data, value, 0.0)) / num_data
                 for name, value in (('loss', elbo_loss), ('recon', aux['recon']),
                                     ('kl', aux['kl']))}
      loss = jnp.mean(elbo_loss)
      if distill:
        consistency = losses.gaussian_kl_between(mean, log_var, jax.lax.stop_gradient(teacher_mean),
                                          jax.lax.stop_gradient(teacher_log_var))
        consistency = jnp.sum(jnp.where(is_teacher, consistency, 0.0)) / num
        metrics['student/consistency_kl'] = consistency
        metrics['student/teacher_fraction'] = jnp.mean(is_teacher.astype(jnp.float32))
        loss = loss + self.config.lgm.consistency_weight * consistency
      metrics['student/loss'] = loss
      return loss, metrics

    (_, metrics), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.student.params)
    new_student = apply_gradients(state.student, grads, self.optimizer)
    return state.replace(student=new_student, task_step=state.task_step + 1), metrics
