"""LT-GANs (``ltgans``) and the baselines that share its state and steps (``GanMethod``).

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

The critic steps are this method's business: step s of a task updates the generators when
(s + 1) % ``gan.critic_steps`` == 0 (its ``StepPlan``'s variants), and one fused call of the
training loop runs the critic steps of one generator update (``steps_per_call``).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import ml_collections


from ltgans_jax import models, rng
from ltgans_jax.methods import base, ltgans_state as state_lib, ltgans_steps

PHASES = {  # name -> (phase of each task, roles swap, trains on the union of the tasks so far)
    'ltgans': (lambda task: 'joint' if task == 0 else 'lakd', True, False),
    'no_lakd': (lambda task: 'joint' if task == 0 else 'joint_mix', False, False),
    'finetune': (lambda task: 'plain', False, False),
    'joint': (lambda task: 'plain', False, True),
}


class GanMethod(base.StudentEvaluation, base.LifelongMethod):
  """LT-GANs and the baselines that share its state (``ltgans_state.LifelongState``) and steps."""

  sample_networks = ('teacher', 'assistant', 'student')
  fid_samples = ('assistant',
                 'the Assistant (the generator that has just learnt; after task 1 both have)')

  def __init__(self, config: ml_collections.ConfigDict, name: str,
               layers: models.Layers = models.Layers()):
    self.config, self.name = config, name
    self.phases, self.swap_roles, self.cumulative_data = PHASES[name]
    self.networks = state_lib.build_networks(config, layers)
    self.student = self.networks.student
    self.optimizers = state_lib.build_optimizers(config)
    self.gan_steps = ltgans_steps.GanSteps.from_config(config, self.networks, self.optimizers)

  @property
  def plan(self):
    return base.StepPlan(step=self.step_function, variant=self.step_variant,
                         steps_per_call=self.config.gan.critic_steps)

  def init_state(self, key):
    return state_lib.init_state(self.config, self.networks, self.optimizers, key)

  def step_variant(self, task, task_step):
    """(phase, whether this step ends with a generator update)."""
    return self.phase(task), (task_step + 1) % self.config.gan.critic_steps == 0

  def step_function(self, variant, static=None):
    del static
    phase, update_generators = variant
    return functools.partial(ltgans_steps.step_functions(self.gan_steps)[phase],
                             update_generators=update_generators)

  def train_steps(self):
    """Phase -> its step jitted alone, ``step(state, batch, key, update_generators)`` with
    ``update_generators`` static (two compiled variants per phase at most, compiled on first
    use). The input state is donated: do not reuse it."""
    jit = functools.partial(jax.jit, static_argnames='update_generators', donate_argnums=0)
    return {phase: jit(fn) for phase, fn in ltgans_steps.step_functions(self.gan_steps).items()}

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

  def data_images_per_step(self, task, batch_size):
    """The mixing phases put round(teacher_fraction * B) generated images on the critic's
    real side, so one epoch of task data takes 1 / (1 - fraction) times as many steps."""
    if self.phase(task) in ('lakd', 'joint_mix'):
      return max(1, batch_size - round(self.config.gan.teacher_fraction * batch_size))
    return batch_size

  def sample(self, state, network, key, num):
    if network == 'student':
      return self.student_samples(state, key, num)
    return self._generate(getattr(state, network).params, key, num)

  @functools.partial(jax.jit, static_argnums=(0, 3))
  def _generate(self, params, key, num):
    """[num, H, W, C] images in [-1, 1] of the generator with ``params``, z ~ N(0, I); jitted
    (see ``base.StudentEvaluation``)."""
    z = jax.random.normal(key, (num, self.config.model.latent_dim))
    return self.networks.generator.apply({'params': params}, z)

  def picture_grids(self, state, num):
    grids = {}
    for role in ('teacher', 'assistant'):
      generator_id = int(state.teacher_id) if role == 'teacher' else 1 - int(state.teacher_id)
      grids[f'{role}_G{generator_id}_samples'] = self.sample(
          state, role, rng.stream_key(self.config.seed, rng.GRID_LATENTS), num)
    grids['student_samples'] = self.student_samples(
        state, rng.stream_key(self.config.seed, rng.STUDENT_GRID_LATENTS), num)
    return grids


