"""The Student-study levers (``config.vae.replay_weight``, ``updates_per_step``,
``replay_from``; ours, off by default): each changes the Student's update as its docstring says,
and nothing else; at their defaults the step is eq. 5's.

Un-jitted calls of ``GanSteps`` (``ltgans_jax/methods/ltgans_steps.py``) on the test config."""

import re

import jax
import numpy as np
import pytest

from ltgans_jax import config_validation, pixels
from ltgans_jax.errors import ConfigError
from ltgans_jax.methods import ltgans_steps
from tests.helpers import second_task_start, tree_equal


def second_task(config, **vae):
  """(steps, a state at the start of task 2, a batch, a key) with ``config.vae`` changed."""
  for name, value in vae.items():
    config.vae[name] = value
  method, state, batch, key = second_task_start(config)
  return method.gan_steps, state, batch, key


def test_the_defaults_are_eq5():
  from ltgans_jax import config_base  # pylint: disable=g-import-not-at-top
  vae = config_base.get_base_config().vae
  assert (vae.replay_weight, vae.updates_per_step, vae.replay_from) == (1.0, 1, 'teacher')


def test_replay_weight_zero_is_the_student_without_its_replay_term(test_config):
  steps, state, batch, key = second_task(test_config, replay_weight=0.0)
  after, metrics = steps.lakd(state, batch, key, update_generators=True)
  keys = ltgans_steps.named_keys(key)
  alone, _ = steps.student_update(state.student, pixels.from_uint8(batch), None, keys)
  assert 'student/loss_replay' in metrics  # measured, not learnt from
  for a, b in zip(jax.tree_util.tree_leaves(after.student.params),
                  jax.tree_util.tree_leaves(alone.params)):
    np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
  default_steps, _, _, _ = second_task(test_config, replay_weight=1.0)
  with_replay, _ = default_steps.lakd(state, batch, key, update_generators=True)
  assert not tree_equal(with_replay.student.params, after.student.params)


def test_two_updates_per_step_are_two_student_updates_and_the_rest_unchanged(test_config):
  steps, state, batch, key = second_task(test_config, updates_per_step=2)
  after, _ = steps.lakd(state, batch, key, update_generators=True)
  one_steps, _, _, _ = second_task(test_config, updates_per_step=1)
  once, _ = one_steps.lakd(state, batch, key, update_generators=True)
  for name in ('teacher', 'assistant', 'critic'):
    assert tree_equal(getattr(after, name).params, getattr(once, name).params), name
  keys = ltgans_steps.named_keys(key)
  replay = steps.teacher_samples(state, keys, batch.shape[0])
  data = pixels.from_uint8(batch)
  fresh = {**keys, 'student_noise': jax.random.fold_in(keys['student_noise'], 1),
           'student_replay_noise': jax.random.fold_in(keys['student_replay_noise'], 1)}
  twice, _ = steps.student_update(once.student, data, replay, fresh)
  for a, b in zip(jax.tree_util.tree_leaves(after.student.params),
                  jax.tree_util.tree_leaves(twice.params)):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
  assert not tree_equal(after.student.params, once.student.params)


def test_replay_from_both_is_half_teacher_half_assistant(test_config):
  steps, state, batch, key = second_task(test_config, replay_from='both')
  keys = ltgans_steps.named_keys(key)
  teacher = steps.teacher_samples(state, keys, batch.shape[0])
  replay = np.asarray(steps.student_replay(state, teacher, keys))
  half = batch.shape[0] // 2
  assert replay.shape == teacher.shape
  np.testing.assert_array_equal(replay[:batch.shape[0] - half],
                                np.asarray(teacher)[:batch.shape[0] - half])
  assistant = steps.generate(state.assistant.params, jax.random.fold_in(keys['mix'], 2), half)
  np.testing.assert_array_equal(replay[batch.shape[0] - half:], np.asarray(assistant))
  teacher_only, _, _, _ = second_task(test_config, replay_from='teacher')
  assert teacher_only.student_replay(state, teacher, keys) is teacher


@pytest.mark.parametrize('name,value,words', [
    ('replay_weight', -1.0, 'it must be >= 0'),
    ('updates_per_step', 0, 'it must be >= 1'),
    ('replay_from', 'assistant', "use one of ('teacher', 'both')")])
def test_bad_lever_values_are_one_clear_sentence(test_config, name, value, words):
  test_config.vae[name] = value
  with pytest.raises(ConfigError, match=rf'vae\.{name}=.*{re.escape(words)}'):
    config_validation.validate(test_config)
