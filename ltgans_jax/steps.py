"""The jit-compiled LT-GANs training steps, built from ``losses`` and bound to static parts.

Two phases (paper section 3):

* ``joint`` (task 1, eq. 2): the critic separates real data from the Teacher's samples and from
  the Assistant's samples, with one gradient penalty for each pair; both generators learn.
* ``lakd`` (task k >= 2, eq. 3): the Teacher is frozen; the critic's real side is a uniform mix
  of task-k data and Teacher samples; only the Assistant learns.

In both, the Student VAE takes one step on the task's data plus, from task 2 on, samples of the
Teacher, the more knowledgeable generator (eqs. 5-6). A step is one critic update and, when
``update_generators`` is set (every ``config.gan.critic_steps``-th step), one generator update;
the Student updates every step (``vae.update_schedule='every_step'``, ours) or with the
generators only ('with_generator', the authors' code). ``step(state, images_uint8, key) ->
(state, metrics)``.

The no-LAKD baseline of Fig. 4b (``joint`` with ``mix_teacher``, tasks k >= 2) is the joint
step of task 1 whose real side mixes task-k data with samples of the Teacher slot's generator,
which is never frozen and never swapped: both generators learn that mix, and the Student replays
those samples. This is what the authors' ``..._Without.py`` does.

The steps are plain ``jax.jit`` functions: given a batch sharded over a device mesh and a
replicated state, XLA partitions them data-parallel and averages the gradients itself.

Each loss is a sum of terms that are differentiated one by one and their gradients added (the
critic's scores of real and of fake images, then its gradient penalty; the Student's data
term, then its replay term), so that ``config.train.phase_order`` can run them one after the
other on the CPU (``schedule.after``). Likewise each generator update waits for the critic's,
and the Student's update for the adversarial ones.
"""

from __future__ import annotations

import functools
from typing import Callable, Dict, Tuple

import jax
import jax.numpy as jnp
import ml_collections
import optax

from ltgans_jax import losses, schedule
from ltgans_jax.state import LifelongState, Networks, NetworkState, Optimizers

Metrics = Dict[str, jnp.ndarray]
STUDENT_SCHEDULES = ('every_step', 'with_generator')  # config.vae.update_schedule
# In the 'sequenced' phase order, the Student's data and replay passes each run in this many
# pieces: in-process A/B at 32 px, the Student step ran 1.13x as fast with 2 pieces as with
# whole batches (1.17x with 4), the full LAKD step 1.05x (1.05x with 4).
STUDENT_PIECES = 2
StepFn = Callable[[LifelongState, jnp.ndarray, jax.Array], Tuple[LifelongState, Metrics]]
KEY_NAMES = ('critic_z_teacher', 'critic_z_assistant', 'penalty_teacher', 'penalty_assistant',
             'mix', 'generator_z_teacher', 'generator_z_assistant', 'student_noise',
             'student_replay_noise')


def images_from_uint8(batch: jnp.ndarray) -> jnp.ndarray:
  """[B, H, W, C] uint8 in [0, 255] -> float32 in [-1, 1]."""
  return batch.astype(jnp.float32) / 127.5 - 1.0


def named_keys(key: jax.Array) -> Dict[str, jax.Array]:
  return dict(zip(KEY_NAMES, jax.random.split(key, len(KEY_NAMES))))


def apply_gradients(network: NetworkState, grads, optimizer: optax.GradientTransformation
                    ) -> NetworkState:
  updates, opt_state = optimizer.update(grads, network.opt_state, network.params)
  return NetworkState(params=optax.apply_updates(network.params, updates), opt_state=opt_state)


class _Step:
  """Holds the static parts (networks, optimisers, hyperparameters) shared by both phases."""

  def __init__(self, config: ml_collections.ConfigDict, networks: Networks,
               optimizers: Optimizers):
    self.networks = networks
    self.optimizers = optimizers
    self.latent_dim = config.model.latent_dim
    self.student_latent_dim = config.vae.latent_dim
    self.penalty_weight = config.gan.gradient_penalty_weight
    self.teacher_fraction = config.gan.teacher_fraction
    self.phase_order = config.train.phase_order
    self.student_every_step = config.vae.update_schedule == 'every_step'
    self.student_kwargs = dict(beta=config.vae.beta, likelihood=config.vae.likelihood,
                               decoder_std=config.vae.decoder_std)

  # Small pure pieces ------------------------------------------------------------------------
  def generate(self, params, key, num, wait_for=None):
    """[num] samples in [-1, 1] of the generator with ``params``, computed after
    ``wait_for`` (a pytree; see ``after``) if given."""
    z = jax.random.normal(key, (num, self.latent_dim))
    if wait_for is not None:
      z = self.after(z, wait_for)
    return self.networks.generator.apply({'params': params}, z)

  def critic_fn(self, params):
    return lambda images: self.networks.critic.apply({'params': params}, images)

  def after(self, tree, dependency):
    """``tree``, computed after ``dependency`` in the 'sequenced' phase order."""
    return schedule.after(tree, dependency, self.phase_order)

  def summed_value_and_grad(self, terms, params):
    """Value and gradient of a sum of loss terms, taken term by term.

    ``terms``: a list of (loss_fn, inputs), ``loss_fn(params, *inputs) -> (scalar, metrics)``.
    Each term's inputs wait for the gradients of the terms before it (``after``). Returns
    (summed loss, metrics, summed gradients); metrics of the same name are added.
    """
    total, metrics, grads = 0.0, {}, None
    for loss_fn, inputs in terms:
      if grads is not None:
        inputs = self.after(inputs, grads)
      (loss, term_metrics), term_grads = jax.value_and_grad(loss_fn, has_aux=True)(
          params, *inputs)
      total = total + loss
      for name, value in term_metrics.items():
        metrics[name] = metrics[name] + value if name in metrics else value
      grads = term_grads if grads is None else jax.tree_util.tree_map(jnp.add, grads,
                                                                       term_grads)
    return total, metrics, grads

  def critic_terms(self, real, fakes):
    """The WGAN-GP critic loss as terms for ``summed_value_and_grad``, each one pass of the
    critic (real and fake images in passes of their own ran 1.02x as fast as in one, at 32 px).

    ``real``: [B, H, W, C]; ``fakes``: {name: (fake images [B, H, W, C], penalty key)}, one
    entry per real/fake pairing. Terms: -mean D(real) once per pairing, mean D(fake) for each
    fake (these sum to the Wasserstein terms), and each pairing's weighted mean penalty at
    points interpolated with its key.
    """
    wasserstein = {name: f'critic/wasserstein_{name}' for name in fakes}  # E D(real) - E D(fake)

    def real_term(params, real):
      mean_score = jnp.mean(self.critic_fn(params)(real))
      return -len(fakes) * mean_score, {metric: mean_score for metric in wasserstein.values()}

    def fake_term(name):
      def loss_fn(params, fake):
        mean_score = jnp.mean(self.critic_fn(params)(fake))
        return mean_score, {wasserstein[name]: -mean_score}
      return loss_fn

    def penalty_term(name):
      def loss_fn(params, points):
        penalty = jnp.mean(losses.gradient_penalty(self.critic_fn(params), points))
        return self.penalty_weight * penalty, {f'critic/penalty_{name}': penalty}
      return loss_fn

    terms = [(real_term, (real,))]
    terms += [(fake_term(name), (fake,)) for name, (fake, _) in fakes.items()]
    terms += [(penalty_term(name), (losses.interpolate(real, fake, key),))
              for name, (fake, key) in fakes.items()]
    return terms

  def generator_update(self, network: NetworkState, critic_params, key, num, wait_for=()):
    """One generator step against the updated critic; its pass runs after the critic's
    update and ``wait_for`` (see ``after``)."""
    def loss_fn(params):
      fake = self.generate(params, key, num, wait_for=(critic_params, wait_for))
      return jnp.mean(losses.generator_wasserstein_term(self.critic_fn(critic_params)(fake)))
    loss, grads = jax.value_and_grad(loss_fn)(network.params)
    return apply_gradients(network, grads, self.optimizers.generator), loss

  def student_update(self, student: NetworkState, data, replay, keys):
    """One step of eq. 5/6: mean loss on the data plus mean loss on replayed samples.

    In the 'sequenced' phase order each of the two passes runs as ``STUDENT_PIECES`` passes
    over every ``STUDENT_PIECES``-th example (pieces stay spread over a sharded batch), each on
    a working set that fits the cache; same values, as each piece's mean is weighted by its
    share of the batch.
    """
    def elbo_term(prefix, weight):
      def loss_fn(params, images, noise):
        logits, mean, log_var = self.networks.student.apply({'params': params}, images, noise)
        loss, aux = losses.student_loss(logits, losses.to_unit_interval(images), mean,
                                        log_var, **self.student_kwargs)
        loss = weight * jnp.mean(loss)
        if prefix == 'replay':
          return loss, {'student/loss_replay': loss}
        return loss, {'student/loss_data': loss,
                      'student/recon_data': weight * jnp.mean(aux['recon']),
                      'student/kl_data': weight * jnp.mean(aux['kl'])}
      return loss_fn

    sources = [('data', data, keys['student_noise'])]
    if replay is not None:
      sources.append(('replay', replay, keys['student_replay_noise']))
    terms = []
    for prefix, images, key in sources:
      num = images.shape[0]
      noise = jax.random.normal(key, (num, self.student_latent_dim))
      pieces = self.student_pieces(num)
      for i in range(pieces):
        piece = [a.reshape(num // pieces, pieces, *a.shape[1:])[:, i] for a in (images, noise)]
        terms.append((elbo_term(prefix, 1.0 / pieces), piece))
    _, metrics, grads = self.summed_value_and_grad(terms, student.params)
    return apply_gradients(student, grads, self.optimizers.student), metrics

  def student_pieces(self, num: int) -> int:
    """How many passes each of the Student's batches of ``num`` examples runs as."""
    if schedule.resolve_phase_order(self.phase_order) == 'free' or num % STUDENT_PIECES:
      return 1
    return STUDENT_PIECES

  # The two phases --------------------------------------------------------------------------
  def mix_with_teacher(self, data, teacher_samples, key, teacher_fraction: float):
    """The critic's real side on tasks k >= 2: ``data`` [B, H, W, C] with exactly
    round(fraction * B) examples replaced by ``teacher_samples`` [B, H, W, C] at random
    positions (a uniform mixture of the two sources with less variance than a per-example coin
    flip, and elementwise, so it shards over the batch axis like everything else)."""
    num = data.shape[0]
    num_teacher = round(teacher_fraction * num)
    is_data = jax.random.permutation(key, jnp.arange(num) >= num_teacher)
    return jnp.where(is_data[:, None, None, None], data, teacher_samples)

  def maybe_student_update(self, student: NetworkState, data, replay, keys,
                           update_generators: bool):
    """``student_update``, or the Student unchanged (and no metrics) on a step without a
    generator update when ``vae.update_schedule='with_generator'``."""
    if self.student_every_step or update_generators:
      return self.student_update(student, data, replay, keys)
    return student, {}

  def joint(self, state: LifelongState, batch, key, update_generators: bool,
            mix_teacher: bool = False):
    """Task 1 (eq. 2): Teacher and Assistant both learn the data against one critic.

    With ``mix_teacher`` (the no-LAKD baseline of Fig. 4b on tasks k >= 2) the real side is
    the data mixed with samples of the (not frozen) Teacher slot's generator
    (``mix_with_teacher``), both generators learn it, and the Student replays those samples.
    """
    keys, real = named_keys(key), images_from_uint8(batch)
    num = real.shape[0]
    mixed_in = None
    if mix_teacher:
      # Latents of their own (not the critic's fakes'); the samples are data here, so no
      # gradient flows into the generator through them.
      mixed_in = jax.lax.stop_gradient(self.generate(
          state.teacher.params, jax.random.fold_in(keys['mix'], 1), num))
      real = self.mix_with_teacher(real, mixed_in, keys['mix'], self.teacher_fraction)
    fake_teacher = self.generate(state.teacher.params, keys['critic_z_teacher'], num)
    fake_assistant = self.generate(state.assistant.params, keys['critic_z_assistant'], num)

    loss, metrics, grads = self.summed_value_and_grad(
        self.critic_terms(real, {'teacher': (fake_teacher, keys['penalty_teacher']),
                                 'assistant': (fake_assistant, keys['penalty_assistant'])}),
        state.critic.params)
    critic = apply_gradients(state.critic, grads, self.optimizers.critic)
    metrics['critic/loss'] = loss
    teacher, assistant = state.teacher, state.assistant
    if update_generators:
      teacher, metrics['generator/loss_teacher'] = self.generator_update(
          teacher, critic.params, keys['generator_z_teacher'], num)
      assistant, metrics['generator/loss_assistant'] = self.generator_update(
          assistant, critic.params, keys['generator_z_assistant'], num,
          wait_for=teacher.params)
    # The Student's update runs after the adversarial ones (see ``schedule``); it learns the
    # task's data (not the mix) and, with ``mix_teacher``, replays the mixed-in samples.
    data, replayed = self.after((images_from_uint8(batch), mixed_in),
                                (critic.params, teacher.params, assistant.params))
    student, student_metrics = self.maybe_student_update(state.student, data, replayed, keys,
                                                         update_generators)
    new_state = state.replace(teacher=teacher, assistant=assistant, critic=critic,
                              student=student, task_step=state.task_step + 1)
    return new_state, {**metrics, **student_metrics}

  def lakd(self, state: LifelongState, batch, key, update_generators: bool,
           teacher_fraction: float = None, replay: bool = True):
    """Task k >= 2 (eq. 3): the frozen Teacher's samples join the data on the real side.

    ``teacher_fraction=0, replay=False`` is plain training of the Assistant and the Student on
    the data alone (the fine-tuning and joint-training baselines).
    """
    keys, data = named_keys(key), images_from_uint8(batch)
    state, metrics, teacher_samples = self.lakd_adversarial(
        state, data, keys, update_generators,
        self.teacher_fraction if teacher_fraction is None else teacher_fraction)
    # The Student's update runs after the adversarial ones (see ``schedule``).
    data, replayed = self.after((data, teacher_samples if replay else None),
                                (state.critic.params, state.assistant.params))
    student, student_metrics = self.maybe_student_update(state.student, data, replayed, keys,
                                                         update_generators)
    return state.replace(student=student), {**metrics, **student_metrics}

  def lakd_adversarial(self, state: LifelongState, data, keys, update_generators: bool,
                       teacher_fraction: float):
    """The critic and Assistant updates of a LAKD step; returns (state, metrics, the Teacher
    samples [B, H, W, C] that the Student replays)."""
    num = data.shape[0]
    teacher_samples = jax.lax.stop_gradient(
        self.generate(state.teacher.params, keys['critic_z_teacher'], num))
    real_mix = self.mix_with_teacher(data, teacher_samples, keys['mix'], teacher_fraction)
    fake = self.generate(state.assistant.params, keys['critic_z_assistant'], num)

    loss, metrics, grads = self.summed_value_and_grad(
        self.critic_terms(real_mix, {'assistant': (fake, keys['penalty_assistant'])}),
        state.critic.params)
    critic = apply_gradients(state.critic, grads, self.optimizers.critic)
    metrics['critic/loss'] = loss
    assistant = state.assistant
    if update_generators:
      assistant, metrics['generator/loss_assistant'] = self.generator_update(
          assistant, critic.params, keys['generator_z_assistant'], num)
    new_state = state.replace(assistant=assistant, critic=critic, task_step=state.task_step + 1)
    return new_state, metrics, teacher_samples


def train_step_functions(config: ml_collections.ConfigDict, networks: Networks,
                         optimizers: Optimizers) -> Dict[str, Callable]:
  """The phases as plain (unjitted) functions ``step(state, batch, key, update_generators)``:

  * ``joint``: eq. 2 (task 1 of LT-GANs); ``joint_mix``: the same with the real side mixing
    data and the Teacher slot's samples, which the Student replays (no-LAKD, tasks k >= 2);
  * ``lakd``: eq. 3 (tasks k >= 2 of LT-GANs);
  * ``plain``: the Assistant and the Student on the data alone (fine-tuning, joint training).

  ``batch`` is [B, H, W, C] uint8; ``update_generators`` a Python bool. The training loop
  (``loop``) jits several of them into one call; ``make_train_steps`` jits each alone.
  """
  step = _Step(config, networks, optimizers)
  return {'joint': step.joint,
          'joint_mix': functools.partial(step.joint, mix_teacher=True),
          'lakd': step.lakd,
          'plain': functools.partial(step.lakd, teacher_fraction=0.0, replay=False)}


def make_train_steps(config: ml_collections.ConfigDict, networks: Networks,
                     optimizers: Optimizers) -> Dict[str, Callable]:
  """``train_step_functions``, each jitted alone: ``step(state, batch, key,
  update_generators)`` with ``update_generators`` static (two compiled variants per phase at
  most, compiled on first use). The input state is donated: do not reuse it.
  """
  return jit_each(train_step_functions(config, networks, optimizers))


def jit_each(step_functions: Dict[str, Callable], donate_state: bool = True
             ) -> Dict[str, Callable]:
  """Each plain step ``(state, batch, key, update_generators)`` jitted alone, with
  ``update_generators`` static and the state donated when ``donate_state``."""
  jit = functools.partial(jax.jit, static_argnames='update_generators',
                          donate_argnums=0 if donate_state else ())
  return {phase: jit(fn) for phase, fn in step_functions.items()}


def make_component_steps(config: ml_collections.ConfigDict, networks: Networks,
                         optimizers: Optimizers) -> Dict[str, Callable]:
  """The two halves of a LAKD step, jitted apart, for benchmarks.

  ``lakd_adversarial(state, batch_uint8, key) -> state`` (critic and Assistant updates) and
  ``student(student_state, data, replay, key) -> student_state`` (data and replay [B, H, W, C]
  floats in [-1, 1]).
  """
  step = _Step(config, networks, optimizers)

  def adversarial(state, batch, key):
    keys = named_keys(key)
    return step.lakd_adversarial(state, images_from_uint8(batch), keys, True,
                                 step.teacher_fraction)[0]

  def student(student_state, data, replay, key):
    return step.student_update(student_state, data, replay, named_keys(key))[0]

  return {'lakd_adversarial': jax.jit(adversarial, donate_argnums=0),
          'student': jax.jit(student, donate_argnums=0)}
