"""The LAKD step (eq. 3) really uses the frozen Teacher: its samples are the critic's real side
and the Student's replay. A step that silently dropped the Teacher (a real side of data alone,
no replay term) passes every invariant of test_state_and_steps.py; it fails these.

Un-jitted calls of ``GanSteps`` (``ltgans_jax/methods/ltgans_steps.py``) on the test config."""

import dataclasses

import jax
import numpy as np
import pytest

from ltgans_jax import pixels
from ltgans_jax.methods import ltgans_steps
from tests.helpers import second_task_start, tree_equal


class RecordingSteps(ltgans_steps.GanSteps):
  """GanSteps that keep every ``real`` input the critic's loss receives."""

  def critic_loss(self, params, real, fakes):
    self.seen.append(np.asarray(real))
    return super().critic_loss(params, real, fakes)


def second_task(config, teacher_fraction):
  """(recording steps, a state at the start of task 2, a batch, a key)."""
  config.gan.teacher_fraction = teacher_fraction
  method, state, batch, key = second_task_start(config)
  fields = {f.name: getattr(method.gan_steps, f.name)
            for f in dataclasses.fields(ltgans_steps.GanSteps)}
  steps = RecordingSteps(**fields)
  object.__setattr__(steps, 'seen', [])
  return steps, state, batch, key


def perturbed_teacher(state, scale=0.5, seed=7):
  """The state with the Teacher's params moved (nothing else changed)."""
  leaves, tree = jax.tree_util.tree_flatten(state.teacher.params)
  keys = jax.random.split(jax.random.key(seed), len(leaves))
  moved = [leaf + scale * jax.random.normal(k, leaf.shape, leaf.dtype)
           for leaf, k in zip(leaves, keys)]
  teacher = state.teacher.replace(params=jax.tree_util.tree_unflatten(tree, moved))
  return state.replace(teacher=teacher)


def test_with_teacher_fraction_one_the_critic_real_side_is_the_teacher_samples(test_config):
  steps, state, batch, key = second_task(test_config, 1.0)
  steps.lakd(state, batch, key, update_generators=False)
  keys = ltgans_steps.named_keys(key)
  teacher_samples = steps.generate(state.teacher.params, keys['critic_z_teacher'],
                                   batch.shape[0])
  assert len(steps.seen) == 1
  np.testing.assert_array_equal(steps.seen[0], np.asarray(teacher_samples))
  assert not np.allclose(steps.seen[0], np.asarray(pixels.from_uint8(batch)))


def test_with_teacher_fraction_half_the_real_side_mixes_data_and_teacher(test_config):
  steps, state, batch, key = second_task(test_config, 0.5)
  steps.lakd(state, batch, key, update_generators=False)
  keys = ltgans_steps.named_keys(key)
  teacher_samples = np.asarray(steps.generate(state.teacher.params, keys['critic_z_teacher'],
                                              batch.shape[0]))
  data = np.asarray(pixels.from_uint8(batch))
  real = steps.seen[0]
  from_teacher = [np.array_equal(r, t) for r, t in zip(real, teacher_samples)]
  from_data = [np.array_equal(r, d) for r, d in zip(real, data)]
  assert all(t != d for t, d in zip(from_teacher, from_data))  # each is one or the other
  assert sum(from_teacher) == round(0.5 * batch.shape[0])


@pytest.mark.parametrize('phase', ['lakd', 'plain'])
def test_the_teacher_params_reach_the_critic_and_the_student_under_lakd_only(test_config,
                                                                            phase):
  """Moving the frozen Teacher's params changes the critic's loss, the critic's and the
  Student's updates under ``lakd``; under ``plain`` (no Teacher: fine-tuning, joint training)
  it changes nothing."""
  steps, state, batch, key = second_task(test_config, 0.5)
  step = ltgans_steps.step_functions(steps)[phase]
  after, metrics = step(state, batch, key, update_generators=True)
  moved_after, moved_metrics = step(perturbed_teacher(state), batch, key,
                                    update_generators=True)
  depends = phase == 'lakd'
  assert (not np.isclose(metrics['critic/loss'], moved_metrics['critic/loss'])) == depends
  assert (not tree_equal(after.critic.params, moved_after.critic.params)) == depends
  assert (not tree_equal(after.student.params, moved_after.student.params)) == depends
  assert ('student/loss_replay' in metrics) == depends
  if depends:
    assert not np.isclose(metrics['student/loss_replay'], moved_metrics['student/loss_replay'])


def test_the_student_replay_term_is_the_teacher_samples_elbo(test_config):
  """The Student's LAKD loss is its loss on the data plus its loss on exactly the Teacher
  samples the critic saw (eqs. 5-6 with the Teacher's replay)."""
  steps, state, batch, key = second_task(test_config, 1.0)
  _, metrics = steps.lakd(state, batch, key, update_generators=True)
  keys = ltgans_steps.named_keys(key)
  replay, _ = steps.student_elbo(state.student.params, steps.seen[0],
                                 keys['student_replay_noise'])
  data, _ = steps.student_elbo(state.student.params, pixels.from_uint8(batch),
                               keys['student_noise'])
  np.testing.assert_allclose(metrics['student/loss_replay'], replay, rtol=1e-5)
  np.testing.assert_allclose(metrics['student/loss_data'], data, rtol=1e-5)
