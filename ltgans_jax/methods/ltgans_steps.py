"""The LT-GANs training steps, written as the paper's equations: one function per phase,
``step(state, batch, key, update_generators) -> (state, metrics)``.

* ``joint`` (task 1, eq. 2): the critic separates real data from the Teacher's samples and from
  the Assistant's samples, with one gradient penalty for each pair; both generators learn.
* ``lakd`` (task k >= 2, eq. 3): the Teacher is frozen; the critic's real side is a uniform mix
  of task-k data and Teacher samples; only the Assistant learns.
* ``joint_mix`` (the no-LAKD baseline of Fig. 4b, tasks k >= 2): the joint step of task 1 whose
  real side mixes task-k data with samples of the Teacher slot's generator, which is never
  frozen and never swapped: both generators learn that mix, and the Student replays those
  samples. This is what the authors' ``..._Without.py`` does.
* ``plain`` (fine-tuning, joint training, task 1 under ``gan.first_task='copy'``): a WGAN-GP
  step of the Assistant on the data alone; the Teacher is not touched.

In each, the Student VAE takes one step on the task's data plus, where the phase replays, the
Teacher's samples (eqs. 5-6). A step is one critic update and, when ``update_generators`` is set
(every ``config.gan.critic_steps``-th step; ``GanMethod`` decides), one generator update; the
Student updates every step (``vae.update_schedule='every_step'``, ours) or with the generators
only ('with_generator', the authors' code). Three levers of the study of the Student's forgetting
(ours, off by default; ``config.vae``) change that update and nothing else: the replay term's
weight (``replay_weight``), more Student updates per step (``updates_per_step``), and half the
replay drawn from the Assistant (``replay_from='both'``).

Where the authors' code (GitHub dtuzi123/Lifelong-Dual-GAN,
``TwinGenerative_Upsupervised_ThreeData_Measument.py`` and its ``_Without.py``, read at commit
6b788cb) differs from these steps, beyond what README's "Three sources" table lists:

* Their task-1 critic has no gradient penalty. ``d_totalLoss = d_loss1 + d_loss2`` is built
  before the penalties are added to ``d_loss1`` and ``d_loss2``, and task 1 minimises
  ``d_totalLoss`` (``d_totalOptim``). Their tasks k >= 2 minimise ``d_loss1``/``d_loss2``,
  which do carry it. Ours: WGAN-GP on every task, as eqs. 2-3 state.
* They feed one ``batch_z`` to the Teacher that makes the replay (``GAN_gen1``/``GAN_gen2``
  run on ``self.z: batch_z``) and to the Assistant's fakes in the same step's critic and
  generator updates, so the Teacher's replay and the Assistant's fakes share their latents.
  Ours: independent latents (``critic_z_teacher``, ``critic_z_assistant``,
  ``generator_z_assistant``).
* They build a separate ``RMSPropOptimizer`` per loss (``d_optim1``, ``d_optim2``,
  ``d_totalOptim`` for the one critic; ``g_optim1``, ``g_optim2``, ``g_totalOptim1`` for the
  generators), so the critic's moments are not carried from task 1 into task 2, nor between the
  two roles. Ours: one optimiser state per network, carried across tasks (the Assistant's is
  reset at each role swap, ``ltgans_state.begin_next_task``).
* Their encoder's second head goes through ``tf.nn.softplus`` and is used as the posterior's
  standard deviation (``z_mean + sigma * eps``, KL with ``square(sigma)``), although it is named
  ``z_log_sigma_sq``. Ours: the encoder outputs a log-variance (``models``,
  ``losses.gaussian_kl``).
* Their no-LAKD (``_Without.py``) makes two critic updates per step, one per twin (``d_optim2``
  against ``G2`` then ``d_optim1`` against ``G1``, each followed by its generator's update).
  Ours (``joint_mix``): one critic update against both twins' fakes, with one penalty per pair,
  as on task 1.

The steps are plain functions: jitted with a batch sharded over a device mesh and a replicated
state, XLA partitions them data-parallel and averages the gradients itself. Nothing here knows
the backend: the CPU's choices are the convolution layers the networks were built with
(handed to ``build_networks`` by whoever builds the method: ``cpu.backend.Backend.layers``) and
the barrier the training loop puts between steps (``cpu.schedule``), both from outside.
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Dict, Tuple

import jax
import jax.numpy as jnp
import ml_collections

from ltgans_jax import losses, pixels
from ltgans_jax.methods.ltgans_state import LifelongState, Networks, Optimizers
from ltgans_jax.methods.network_state import apply_gradients, NetworkState

Metrics = Dict[str, jnp.ndarray]
STUDENT_SCHEDULES = ('every_step', 'with_generator')  # config.vae.update_schedule
REPLAY_SOURCES = ('teacher', 'both')  # config.vae.replay_from
StepFn = Callable[[LifelongState, jnp.ndarray, jax.Array], Tuple[LifelongState, Metrics]]
KEY_NAMES = ('critic_z_teacher', 'critic_z_assistant', 'penalty_teacher', 'penalty_assistant',
             'mix', 'generator_z_teacher', 'generator_z_assistant', 'student_noise',
             'student_replay_noise')


def named_keys(key: jax.Array) -> Dict[str, jax.Array]:
  """One step's key -> a key per use (``KEY_NAMES``)."""
  return dict(zip(KEY_NAMES, jax.random.split(key, len(KEY_NAMES))))


def mix_with_teacher(data, teacher_samples, key, teacher_fraction: float):
  """The critic's real side on tasks k >= 2: ``data`` [B, H, W, C] with exactly
  round(fraction * B) examples replaced by ``teacher_samples`` [B, H, W, C] at random
  positions (a uniform mixture of the two sources with less variance than a per-example coin
  flip, and elementwise, so it shards over the batch axis like everything else)."""
  num = data.shape[0]
  num_teacher = round(teacher_fraction * num)
  is_data = jax.random.permutation(key, jnp.arange(num) >= num_teacher)
  return jnp.where(is_data[:, None, None, None], data, teacher_samples)


@dataclasses.dataclass(frozen=True)
class GanSteps:
  """The static parts (networks, optimisers, hyperparameters) the steps close over."""
  networks: Networks
  optimizers: Optimizers
  latent_dim: int
  student_latent_dim: int
  penalty_weight: float
  teacher_fraction: float
  student_every_step: bool
  student_loss_kwargs: Dict
  # The Student-study levers (``config.vae``; ours, off by default: eq. 5 as the paper writes it).
  replay_weight: float = 1.0
  student_updates: int = 1
  replay_from_both: bool = False

  @classmethod
  def from_config(cls, config: ml_collections.ConfigDict, networks: Networks,
                  optimizers: Optimizers) -> 'GanSteps':
    vae = config.vae
    return cls(networks, optimizers, config.model.latent_dim, vae.latent_dim,
               config.gan.gradient_penalty_weight, config.gan.teacher_fraction,
               vae.update_schedule == 'every_step',
               dict(beta=vae.beta, likelihood=vae.likelihood, decoder_std=vae.decoder_std),
               vae.replay_weight, vae.updates_per_step, vae.replay_from == 'both')

  # The networks as functions -----------------------------------------------------------------
  def generate(self, params, key, num):
    """[num, H, W, C] samples in [-1, 1] of the generator with ``params``."""
    z = jax.random.normal(key, (num, self.latent_dim))
    return self.networks.generator.apply({'params': params}, z)

  def critic_fn(self, params):
    return lambda images: self.networks.critic.apply({'params': params}, images)

  # The losses ---------------------------------------------------------------------------------
  def critic_loss(self, params, real, fakes) -> Tuple[jnp.ndarray, Metrics]:
    """WGAN-GP, summed over the real/fake pairings of eq. 2 (two) or eq. 3 (one).

    ``real``: [B, H, W, C]; ``fakes``: {name: (fake images [B, H, W, C], penalty key)}. For
    each pairing: E D(fake) - E D(real) + lambda * E (||grad D(x_hat)|| - 1)^2 at points x_hat
    interpolated between the real and the fake images.
    """
    critic = self.critic_fn(params)
    real_score = jnp.mean(critic(real))
    loss, metrics = 0.0, {}
    for name, (fake, key) in fakes.items():
      fake_score = jnp.mean(critic(fake))
      penalty = jnp.mean(losses.gradient_penalty(critic, losses.interpolate(real, fake, key)))
      loss = loss + fake_score - real_score + self.penalty_weight * penalty
      metrics[f'critic/wasserstein_{name}'] = real_score - fake_score
      metrics[f'critic/penalty_{name}'] = penalty
    return loss, metrics

  def student_elbo(self, params, images, key) -> Tuple[jnp.ndarray, Dict]:
    """Mean eq. 5/6 loss of images [B, H, W, C] in [-1, 1], and its mean parts."""
    noise = jax.random.normal(key, (images.shape[0], self.student_latent_dim))
    logits, mean, log_var = self.networks.student.apply({'params': params}, images, noise)
    loss, aux = losses.student_loss(logits, pixels.to_unit_interval(images), mean, log_var,
                                    **self.student_loss_kwargs)
    return jnp.mean(loss), {name: jnp.mean(value) for name, value in aux.items()}

  # The updates --------------------------------------------------------------------------------
  def critic_update(self, critic: NetworkState, real, fakes) -> Tuple[NetworkState, Metrics]:
    (loss, metrics), grads = jax.value_and_grad(self.critic_loss, has_aux=True)(
        critic.params, real, fakes)
    return apply_gradients(critic, grads, self.optimizers.critic), {**metrics,
                                                                     'critic/loss': loss}

  def generator_update(self, generator: NetworkState, critic_params, key, num
                       ) -> Tuple[NetworkState, jnp.ndarray]:
    """One generator step against the updated critic: minimise -E D(G(z))."""
    def loss_fn(params):
      fake = self.generate(params, key, num)
      return jnp.mean(losses.generator_wasserstein_term(self.critic_fn(critic_params)(fake)))
    loss, grads = jax.value_and_grad(loss_fn)(generator.params)
    return apply_gradients(generator, grads, self.optimizers.generator), loss

  def student_update(self, student: NetworkState, data, replay, keys
                     ) -> Tuple[NetworkState, Metrics]:
    """One step of eq. 5/6: the mean loss on ``data`` plus, when ``replay`` is given, the mean
    loss on the replayed samples (both [B, H, W, C] in [-1, 1]), weighted by
    ``vae.replay_weight`` (ours; 1 in eq. 5)."""
    def loss_fn(params):
      loss, parts = self.student_elbo(params, data, keys['student_noise'])
      metrics = {'student/loss_data': loss, 'student/recon_data': parts['recon'],
                 'student/kl_data': parts['kl']}
      if replay is not None:
        replay_loss, _ = self.student_elbo(params, replay, keys['student_replay_noise'])
        metrics['student/loss_replay'] = replay_loss
        # At weight 1 the sum is written as eq. 5 writes it: the paper's step stays the
        # program it was before the lever existed.
        loss = loss + (replay_loss if self.replay_weight == 1 else
                       self.replay_weight * replay_loss)
      return loss, metrics
    (_, metrics), grads = jax.value_and_grad(loss_fn, has_aux=True)(student.params)
    return apply_gradients(student, grads, self.optimizers.student), metrics

  # The parts the phases share ---------------------------------------------------------------
  def teacher_samples(self, state: LifelongState, keys, num) -> jnp.ndarray:
    """[num, H, W, C] samples of the frozen Teacher: data for the critic and the Student, so
    no gradient flows into the Teacher through them."""
    return jax.lax.stop_gradient(
        self.generate(state.teacher.params, keys['critic_z_teacher'], num))

  def twins_against_critic(self, state: LifelongState, real, keys, update_generators: bool
                           ) -> Tuple[LifelongState, Metrics]:
    """Eq. 2's adversarial part: one critic update on ``real`` [B, H, W, C] against the fakes
    of both twins (one penalty per pair), then both generators against the updated critic."""
    num = real.shape[0]
    fakes = {'teacher': (self.generate(state.teacher.params, keys['critic_z_teacher'], num),
                         keys['penalty_teacher']),
             'assistant': (self.generate(state.assistant.params, keys['critic_z_assistant'],
                                         num), keys['penalty_assistant'])}
    critic, metrics = self.critic_update(state.critic, real, fakes)
    teacher, assistant = state.teacher, state.assistant
    if update_generators:
      teacher, metrics['generator/loss_teacher'] = self.generator_update(
          teacher, critic.params, keys['generator_z_teacher'], num)
      assistant, metrics['generator/loss_assistant'] = self.generator_update(
          assistant, critic.params, keys['generator_z_assistant'], num)
    return state.replace(teacher=teacher, assistant=assistant, critic=critic), metrics

  def assistant_against_critic(self, state: LifelongState, real, keys,
                               update_generators: bool) -> Tuple[LifelongState, Metrics]:
    """Eq. 3's adversarial part: one critic update on ``real`` [B, H, W, C] against the
    Assistant's fakes, then the Assistant against the updated critic."""
    num = real.shape[0]
    fake = self.generate(state.assistant.params, keys['critic_z_assistant'], num)
    critic, metrics = self.critic_update(state.critic, real,
                                         {'assistant': (fake, keys['penalty_assistant'])})
    assistant = state.assistant
    if update_generators:
      assistant, metrics['generator/loss_assistant'] = self.generator_update(
          assistant, critic.params, keys['generator_z_assistant'], num)
    return state.replace(assistant=assistant, critic=critic), metrics

  def student_replay(self, state: LifelongState, samples, keys) -> jnp.ndarray:
    """What the Student replays: the Teacher's ``samples`` [B, H, W, C] (eqs. 5-6), or, with
    ``vae.replay_from='both'`` (ours), their first B - B // 2 beside B // 2 samples of the
    Assistant as it stands after this step's update."""
    if not self.replay_from_both:
      return samples
    num = samples.shape[0] // 2
    # Latents of their own (fold 1 of 'mix' is joint_mix's); data for the Student only.
    assistant = jax.lax.stop_gradient(self.generate(
        state.assistant.params, jax.random.fold_in(keys['mix'], 2), num))
    return jnp.concatenate([samples[:samples.shape[0] - num], assistant])

  def then_student(self, state: LifelongState, data, replay, keys, update_generators: bool,
                   metrics: Metrics) -> Tuple[LifelongState, Metrics]:
    """The step's end: the Student's update (eqs. 5-6; on a step without a generator update
    none when ``vae.update_schedule='with_generator'``), ``vae.updates_per_step`` times (ours;
    1 in the paper: each further one on the same images with fresh noise), and the step
    counted."""
    student, student_metrics = state.student, {}
    if self.student_every_step or update_generators:
      for update in range(self.student_updates):
        student, student_metrics = self.student_update(
            student, data, replay, keys if update == 0 else {
                **keys, **{name: jax.random.fold_in(keys[name], update)
                           for name in ('student_noise', 'student_replay_noise')}})
    return (state.replace(student=student, task_step=state.task_step + 1),
            {**metrics, **student_metrics})

  # The phases: ``step(state, batch uint8 [B, H, W, C], key, update_generators)`` ---------------
  def joint(self, state: LifelongState, batch, key, update_generators: bool):
    """Task 1 (eq. 2): Teacher and Assistant both learn the data against one critic; the
    Student learns the data."""
    keys, data = named_keys(key), pixels.from_uint8(batch)
    state, metrics = self.twins_against_critic(state, data, keys, update_generators)
    return self.then_student(state, data, None, keys, update_generators, metrics)

  def joint_mix(self, state: LifelongState, batch, key, update_generators: bool):
    """The no-LAKD baseline (Fig. 4b, tasks k >= 2): eq. 2 with the real side mixing the data
    and samples of the (not frozen) Teacher slot's generator, which the Student replays."""
    keys, data = named_keys(key), pixels.from_uint8(batch)
    # Latents of their own (not the critic's fakes'); the samples are data here, so no
    # gradient flows into the generator through them.
    mixed_in = jax.lax.stop_gradient(self.generate(
        state.teacher.params, jax.random.fold_in(keys['mix'], 1), data.shape[0]))
    real = mix_with_teacher(data, mixed_in, keys['mix'], self.teacher_fraction)
    state, metrics = self.twins_against_critic(state, real, keys, update_generators)
    return self.then_student(state, data, self.student_replay(state, mixed_in, keys), keys,
                             update_generators, metrics)

  def lakd(self, state: LifelongState, batch, key, update_generators: bool):
    """Task k >= 2 (eq. 3): the frozen Teacher's samples join the data on the critic's real
    side, and the Student replays them (eqs. 5-6)."""
    keys, data = named_keys(key), pixels.from_uint8(batch)
    replay = self.teacher_samples(state, keys, data.shape[0])
    real = mix_with_teacher(data, replay, keys['mix'], self.teacher_fraction)
    state, metrics = self.assistant_against_critic(state, real, keys, update_generators)
    return self.then_student(state, data, self.student_replay(state, replay, keys), keys,
                             update_generators, metrics)

  def plain(self, state: LifelongState, batch, key, update_generators: bool):
    """The Assistant and the Student on the data alone, a plain WGAN-GP step and VAE step (the
    fine-tuning and joint-training baselines; task 1 under ``gan.first_task='copy'``). The
    Teacher is not used."""
    keys, data = named_keys(key), pixels.from_uint8(batch)
    state, metrics = self.assistant_against_critic(state, data, keys, update_generators)
    return self.then_student(state, data, None, keys, update_generators, metrics)


def step_functions(steps: GanSteps) -> Dict[str, Callable]:
  """The phases as plain (unjitted) functions ``step(state, batch, key, update_generators)``:

  * ``joint``: eq. 2 (task 1 of LT-GANs); ``joint_mix``: the same with the real side mixing
    data and the Teacher slot's samples, which the Student replays (no-LAKD, tasks k >= 2);
  * ``lakd``: eq. 3 (tasks k >= 2 of LT-GANs);
  * ``plain``: the Assistant and the Student on the data alone (fine-tuning, joint training).

  ``batch`` is [B, H, W, C] uint8; ``update_generators`` a Python bool.
  """
  return {'joint': steps.joint, 'joint_mix': steps.joint_mix, 'lakd': steps.lakd,
          'plain': steps.plain}
