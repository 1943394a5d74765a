"""Lifelong methods behind one interface, chosen by ``config.method``.

The training loop, the evaluator and the inspect modes only talk to a ``LifelongMethod``; each
method owns its state (one immutable pytree with ``task`` and ``task_step`` counters), its
jitted steps and what evaluation asks of it.

Methods sharing the LT-GANs state and steps (``GanMethod``):

| method    | task 1  | task k >= 2    | roles swap | data of task k     | what it is                      |
|-----------|---------|----------------|------------|--------------------|---------------------------------|
| ltgans    | joint   | lakd           | yes        | task k             | the paper (LAKD, eqs. 2-3, 5-6) |
| no_lakd   | joint   | joint_mix      | no         | task k             | Fig. 4b baseline: the twins     |
|           |         |                |            |                    | trained jointly, replaying one  |
|           |         |                |            |                    | of themselves, no frozen Teacher|
| finetune  | plain   | plain          | no         | task k             | forgetting lower bound          |
| joint     | plain   | plain          | no         | tasks 1..k at once | upper bound                     |

(``plain``: the Assistant and the Student learn the data alone; the Teacher is unused.)
``no_lakd`` follows the authors' ``TwinGenerative_Unsupervised_ThreeData_Measument_Without.py``:
on tasks k >= 2 the critic's real side mixes task-k data with samples of the Teacher slot's
generator, which keeps learning (both generators learn that mix, nothing is frozen, the roles
never swap), and the Student replays those samples. So it has generative replay, as LT-GANs
does, but replays a generator that is itself being trained on the new task: the comparison
isolates the frozen Teacher and the role swap, i.e. LAKD.

VAE-only baselines, with the Student's networks (matched capacity): ``lgm``
(``baselines/lgm.py``, Ramapuram et al.) and ``curl`` (``baselines/curl.py``, Rao et al.).
"""

from __future__ import annotations

from typing import Callable, Dict, NamedTuple, Tuple

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from ltgans_jax import evaluation, rng, state as state_lib, steps
from ltgans_jax.errors import ConfigError

StepFn = Callable  # (state, batch uint8 [B, H, W, C], key, *, update_generators) -> (state, metrics)


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

  # How the training loop (``loop``) calls the steps.
  vmappable: bool = True  # the step can be ``jax.vmap``ped over a leading seed axis
  donate_state: bool = True  # the fused call may donate the state it is given

  def step_functions(self, static=None) -> Dict[str, StepFn]:
    """Phase name -> the plain (unjitted) step ``(state, batch uint8 [B, H, W, C], key,
    update_generators) -> (state, metrics)``; ``static``: one seed's entry of
    ``static_step_args`` (None for most methods)."""
    raise NotImplementedError

  def static_step_args(self, state):
    """Per seed, what the step's shapes depend on and the host must read from ``state``
    before compiling it (a tuple, one hashable per seed); None when nothing is."""
    del state
    return None

  def steps_per_call(self) -> int:
    """Steps one fused call runs: the critic steps of one generator update for the GANs
    (step s updates the generators when (s + 1) % steps_per_call == 0), 1 for the VAEs."""
    return 1

  def train_steps(self) -> Dict[str, StepFn]:
    """Phase name -> ``step_functions``' step jitted alone (benchmarks and tests); the input
    state is donated when ``donate_state``."""
    return steps.jit_each(self.step_functions(), self.donate_state)

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
  Needs ``self.config`` and ``self.networks`` (with ``.student``)."""

  def vae_view(self, state) -> VAEView:
    student, params = self.networks.student, state.student.params
    return VAEView(
        encode=lambda images: student.apply({'params': params}, images, method='encode'),
        decode=lambda z: student.apply({'params': params}, z, method='decode'))

  def nll_paper(self, state, images, key):
    return evaluation.paper_nll(self.networks, state.student.params, images, key)

  def nll_iwae(self, state, images, key, num_samples):
    vae = self.config.vae
    return evaluation.iwae_nll(self.networks, state.student.params, images, key, num_samples,
                               vae.likelihood, vae.decoder_std).nll

  def student_samples(self, state, key, num):
    z = jax.random.normal(key, (num, self.config.vae.latent_dim))
    logits = self.networks.student.apply({'params': state.student.params}, z, method='decode')
    return jax.nn.sigmoid(logits) * 2 - 1


class GanMethod(StudentEvaluation, LifelongMethod):
  """LT-GANs and the baselines that share its state (``state.LifelongState``) and steps."""

  sample_networks = ('teacher', 'assistant', 'student')
  fid_source = 'the Assistant (the generator that has just learnt; after task 1 both have)'

  def __init__(self, config: ml_collections.ConfigDict, name: str, phases: Callable[[int], str],
               swap_roles: bool, cumulative_data: bool):
    self.config, self.name = config, name
    self.phases = phases
    self.swap_roles, self.cumulative_data = swap_roles, cumulative_data
    self.networks = state_lib.build_networks(config)
    self.optimizers = state_lib.build_optimizers(config)

  def init_state(self, key):
    return state_lib.init_state(self.config, self.networks, self.optimizers, key)

  def step_functions(self, static=None):
    del static
    return steps.train_step_functions(self.config, self.networks, self.optimizers)

  def steps_per_call(self):
    return self.config.gan.critic_steps

  def copies_first_task(self, task: int) -> bool:
    """``gan.first_task='copy'``: task 1 trains one generator, which the other twin copies."""
    return task == 0 and self.phases(0) == 'joint' and self.config.gan.first_task == 'copy'

  def phase(self, task: int) -> str:
    # 'plain' trains the Assistant (and the Student) on the data alone: a plain WGAN-GP step.
    return 'plain' if self.copies_first_task(task) else self.phases(task)

  def end_task(self, state, task):
    """The generators trained in ``task`` take their averaged weights when
    ``optim.generator_ema_decay`` > 0 (``state.with_averaged_params``; otherwise unchanged).
    With ``gan.first_task='copy'`` the Teacher then becomes a copy of the Assistant at the end
    of task 1, so that both twins have learnt its data (eq. 1 at G_T = G_A)."""
    trained = (('teacher', 'assistant') if self.phase(task) in ('joint', 'joint_mix')
               else ('assistant',))
    state = state.replace(**{role: state_lib.with_averaged_params(getattr(state, role))
                             for role in trained})
    if self.copies_first_task(task):
      return state.replace(teacher=jax.tree_util.tree_map(jnp.copy, state.assistant))
    return state

  def begin_next_task(self, state):
    return state_lib.begin_next_task(state, self.optimizers.generator, self.swap_roles)

  def fid_network(self):
    return 'assistant'

  def data_images_per_step(self, task, batch_size):
    """The mixing phases put round(teacher_fraction * B) generated images on the critic's
    real side, so one epoch of task data takes 1 / (1 - fraction) times as many steps."""
    if self.phase(task) in ('lakd', 'joint_mix'):
      return max(1, batch_size - round(self.config.gan.teacher_fraction * batch_size))
    return batch_size

  def sample(self, state, network, key, num):
    if network == 'student':
      return self.student_samples(state, key, num)
    z = jax.random.normal(key, (num, self.config.model.latent_dim))
    return self.networks.generator.apply({'params': getattr(state, network).params}, z)

  def picture_grids(self, state, num):
    grids = {}
    for role in ('teacher', 'assistant'):
      generator_id = int(state.teacher_id) if role == 'teacher' else 1 - int(state.teacher_id)
      grids[f'{role}_G{generator_id}_samples'] = self.sample(
          state, role, rng.stream_key(self.config.seed, rng.GRID_LATENTS), num)
    grids['student_samples'] = self.student_samples(
        state, rng.stream_key(self.config.seed, rng.STUDENT_GRID_LATENTS), num)
    return grids


def _gan(phases, swap_roles, cumulative_data):
  return lambda config, name: GanMethod(config, name, phases, swap_roles, cumulative_data)


def _lgm(config, name):
  from ltgans_jax.baselines import lgm  # pylint: disable=g-import-not-at-top
  return lgm.LgmMethod(config, name)


def _curl(config, name):
  from ltgans_jax.baselines import curl  # pylint: disable=g-import-not-at-top
  return curl.CurlMethod(config, name)


# Name -> builder(config, name) -> LifelongMethod.
METHODS: Dict[str, Callable[[ml_collections.ConfigDict, str], LifelongMethod]] = {
    'ltgans': _gan(lambda task: 'joint' if task == 0 else 'lakd', True, False),
    'no_lakd': _gan(lambda task: 'joint' if task == 0 else 'joint_mix', False, False),
    'finetune': _gan(lambda task: 'plain', False, False),
    'joint': _gan(lambda task: 'plain', False, True),
    'lgm': _lgm,
    'curl': _curl,
}

# The methods trained by the GAN steps (a generator update every gan.critic_steps steps).
GAN_METHODS = ('ltgans', 'no_lakd', 'finetune', 'joint')


def check_name(name: str) -> None:
  if name not in METHODS:
    raise ConfigError(f'method={name!r} is not available; use one of {sorted(METHODS)}.')


def build(config: ml_collections.ConfigDict) -> LifelongMethod:
  """The method ``config.method`` names, with its networks and optimisers built from config."""
  check_name(config.method)
  return METHODS[config.method](config, config.method)
