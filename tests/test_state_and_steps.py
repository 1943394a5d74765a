"""LAKD invariants: the frozen Teacher, the role swaps, the fixed-size state."""

import jax
import numpy as np

from ltgans_jax.methods import ltgans_state as state_lib, network_state
from tests.helpers import build, build_method, host_copy, random_batch, tree_equal


def _run_task(config, state, step_fns, optimizers, task, num_steps=2):
  if task > 0:
    state = state_lib.begin_next_task(state, optimizers.generator)
  phase = 'joint' if task == 0 else 'lakd'
  for i in range(num_steps):
    state, metrics = step_fns[phase](state, random_batch(config, 10 * task + i),
                                     jax.random.key(i), update_generators=True)
    for name, value in metrics.items():
      assert np.isfinite(value), f'{name} is not finite'
  return state


def test_first_task_trains_both_generators_critic_and_student(test_config):
  _, optimizers, state, step_fns = build(test_config)
  before = host_copy(state)
  after = _run_task(test_config, state, step_fns, optimizers, task=0)
  for part in ('teacher', 'assistant', 'critic', 'student'):
    assert not tree_equal(getattr(before, part).params, getattr(after, part).params), part
  assert int(after.task_step) == 2


def test_lakd_freezes_the_teacher_bit_for_bit_and_trains_the_assistant(test_config):
  _, optimizers, state, step_fns = build(test_config)
  state = _run_task(test_config, state, step_fns, optimizers, task=0)
  state = state_lib.begin_next_task(state, optimizers.generator)
  before = host_copy(state)
  for i in range(3):
    state, _ = step_fns['lakd'](state, random_batch(test_config, i), jax.random.key(i),
                                update_generators=True)
  assert tree_equal(before.teacher, state.teacher)  # params and optimiser state untouched
  assert not tree_equal(before.assistant.params, state.assistant.params)
  assert not tree_equal(before.critic.params, state.critic.params)
  assert not tree_equal(before.student.params, state.student.params)


def _one_step(config, step_fns, phase, state, seed, update_generators=True):
  """(host copy of the state before, state after, metrics) of one ``phase`` step."""
  before = host_copy(state)
  state, metrics = step_fns[phase](state, random_batch(config, seed), jax.random.key(seed),
                                   update_generators=update_generators)
  return before, state, metrics


def test_critic_only_steps_leave_generators_alone(test_config):
  _, _, state, step_fns = build(test_config)
  before, state, metrics = _one_step(test_config, step_fns, 'joint', state, 0,
                                     update_generators=False)
  assert tree_equal(before.teacher, state.teacher)
  assert tree_equal(before.assistant, state.assistant)
  assert not tree_equal(before.critic.params, state.critic.params)
  assert 'generator/loss_teacher' not in metrics


def test_roles_alternate_over_four_tasks(test_config):
  """The generator frozen in task k is the one that learnt in task k-1, and vice versa."""
  _, optimizers, state, step_fns = build(test_config)
  state = _run_task(test_config, state, step_fns, optimizers, task=0)
  trained_by_task = []
  for task in range(1, 4):
    teacher_id = int(state_lib.begin_next_task(state, optimizers.generator).teacher_id)
    snapshot = {int(state.teacher_id): host_copy(state.teacher.params),
                1 - int(state.teacher_id): host_copy(state.assistant.params)}
    state = _run_task(test_config, state, step_fns, optimizers, task)
    assert int(state.teacher_id) == teacher_id
    current = {int(state.teacher_id): state.teacher.params,
               1 - int(state.teacher_id): state.assistant.params}
    changed = [g for g in (0, 1) if not tree_equal(snapshot[g], current[g])]
    assert changed == [1 - teacher_id]
    trained_by_task.append(changed[0])
  # Tasks 2, 3, 4 train generators A, B, A (or B, A, B): strictly alternating.
  assert trained_by_task[0] != trained_by_task[1] and trained_by_task[0] == trained_by_task[2]


def test_begin_next_task_swaps_roles_and_resets_the_assistant_optimiser(test_config):
  _, optimizers, state, step_fns = build(test_config)
  state = _run_task(test_config, state, step_fns, optimizers, task=0)
  nxt = state_lib.begin_next_task(state, optimizers.generator)
  assert tree_equal(nxt.teacher, state.assistant)
  assert tree_equal(nxt.assistant.params, state.teacher.params)
  fresh = optimizers.generator.init(state.teacher.params)
  assert tree_equal(nxt.assistant.opt_state, fresh)
  assert int(nxt.task) == 1 and int(nxt.task_step) == 0 and int(nxt.teacher_id) == 1


def test_state_size_is_the_same_after_one_and_after_five_tasks(test_config):
  _, optimizers, state, step_fns = build(test_config)
  state = _run_task(test_config, state, step_fns, optimizers, task=0, num_steps=1)
  after_one = network_state.state_bytes(state)
  structure = jax.tree_util.tree_structure(state)
  for task in range(1, 5):
    state = _run_task(test_config, state, step_fns, optimizers, task, num_steps=1)
  assert network_state.state_bytes(state) == after_one
  assert jax.tree_util.tree_structure(state) == structure
  assert int(state.task) == 4


def test_baseline_phases_keep_their_invariants(test_config):
  """plain: only the Assistant learns, no replay; joint_mix: both learn, the Student replays."""
  _, optimizers, state, step_fns = build(test_config)
  before, state, metrics = _one_step(test_config, step_fns, 'plain', state, 0)
  assert tree_equal(before.teacher, state.teacher)
  assert not tree_equal(before.assistant.params, state.assistant.params)
  assert 'student/loss_replay' not in metrics
  before, state, metrics = _one_step(test_config, step_fns, 'joint_mix', state, 1)
  assert not tree_equal(before.teacher.params, state.teacher.params)
  assert not tree_equal(before.assistant.params, state.assistant.params)
  assert 'student/loss_replay' in metrics
  nxt = state_lib.begin_next_task(state, optimizers.generator, swap=False)
  assert tree_equal(nxt.teacher, state.teacher) and int(nxt.teacher_id) == 0
  assert int(nxt.task) == 1 and int(nxt.task_step) == 0


def test_no_lakd_critic_real_side_is_the_teacher_slot_mix(test_config):
  """no_lakd on task k >= 2 (the authors' _Without.py): the critic's real side mixes data with
  the Teacher slot's own samples. With teacher_fraction = 1 it holds no data at all, so the
  critic's update cannot depend on the batch (it did when the phase replayed nothing)."""
  from ltgans_jax.methods import registry  # pylint: disable=g-import-not-at-top
  test_config.method = 'no_lakd'
  assert registry.build(test_config).phase(1) == 'joint_mix'
  test_config.gan.teacher_fraction = 1.0
  critics = []
  for batch_seed in (1, 2):
    _, _, state, step_fns = build(test_config)
    state, _ = step_fns['joint_mix'](state, random_batch(test_config, batch_seed),
                                     jax.random.key(3), update_generators=True)
    critics.append(host_copy(state.critic.params))
  assert tree_equal(critics[0], critics[1])
  test_config.gan.teacher_fraction = 0.5
  _, _, state, step_fns = build(test_config)
  state, _ = step_fns['joint_mix'](state, random_batch(test_config, 2), jax.random.key(3),
                                   update_generators=True)
  assert not tree_equal(critics[1], state.critic.params)


def test_student_update_schedule(test_config):
  """'with_generator' (the authors' code): no Student update on a critic-only step;
  'every_step' (ours): one on every step."""
  test_config.gan.critic_steps = 2
  for schedule, changes in (('every_step', True), ('with_generator', False)):
    test_config.vae.update_schedule = schedule
    _, _, state, step_fns = build(test_config)
    before = host_copy(state.student)
    state, metrics = step_fns['joint'](state, random_batch(test_config), jax.random.key(0),
                                       update_generators=False)
    assert tree_equal(before, state.student) != changes, schedule
    assert ('student/loss_data' in metrics) == changes
    before = host_copy(state.student)
    state, _ = step_fns['lakd'](state, random_batch(test_config), jax.random.key(1),
                                update_generators=True)
    assert not tree_equal(before.params, state.student.params), schedule


def test_average_params_keeps_the_moving_average_of_the_updated_params():
  """``average_params`` passes the updates through and keeps a <- d a + (1 - d) p_new."""
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  import optax  # pylint: disable=g-import-not-at-top
  decay = 0.9
  optimizer = optax.chain(optax.sgd(0.5), state_lib.average_params(decay))
  params = {'w': jnp.array([1.0, -2.0])}
  opt_state = optimizer.init(params)
  expected = np.array([1.0, -2.0])
  for grad in ([1.0, 0.0], [0.0, 4.0], [2.0, 2.0]):
    updates, opt_state = optimizer.update({'w': jnp.array(grad)}, opt_state, params)
    np.testing.assert_array_equal(updates['w'], -0.5 * np.array(grad))
    params = optax.apply_updates(params, updates)
    expected = decay * expected + (1 - decay) * np.asarray(params['w'])
  network = network_state.NetworkState(params=params, opt_state=opt_state)
  np.testing.assert_allclose(state_lib.with_averaged_params(network).params['w'], expected,
                             rtol=1e-6)
  plain = network_state.NetworkState(params=params, opt_state=optax.sgd(0.5).init(params))
  assert state_lib.with_averaged_params(plain) is plain


def test_generator_averaging_at_the_end_of_a_task(test_config):
  """optim.generator_ema_decay > 0: the generators trained in the task (both twins on task 1,
  the Assistant on a LAKD task) end it with their averaged weights, and the next task's frozen
  Teacher is that average; with 0 ``end_task`` changes nothing."""
  method = build_method(test_config)
  state = method.init_state(jax.random.key(0))
  steps_ = method.train_steps()
  state, _ = steps_['joint'](state, random_batch(test_config), jax.random.key(1),
                             update_generators=True)
  assert method.end_task(state, 0) is state or tree_equal(method.end_task(state, 0), state)

  test_config.optim.generator_ema_decay = 0.5
  method = build_method(test_config)
  state = method.init_state(jax.random.key(0))
  initial = host_copy(state)
  steps_ = method.train_steps()
  state, _ = steps_['joint'](state, random_batch(test_config), jax.random.key(1),
                             update_generators=True)
  trained = host_copy(state)
  ended = method.end_task(state, 0)
  for role in ('teacher', 'assistant'):
    # One update from the initial weights: the average is halfway between them.
    expected = jax.tree_util.tree_map(lambda a, b: 0.5 * a + 0.5 * b,
                                      getattr(initial, role).params, getattr(trained, role).params)
    for got, want in zip(jax.tree_util.tree_leaves(getattr(ended, role).params),
                         jax.tree_util.tree_leaves(expected)):
      np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-7)
  assert tree_equal(ended.critic, trained.critic) and tree_equal(ended.student, trained.student)
  teacher_next = host_copy(ended.assistant.params)
  state = method.begin_next_task(ended)
  assert tree_equal(state.teacher.params, teacher_next)  # the averaged Assistant is frozen
  before = host_copy(state)
  state, _ = steps_['lakd'](state, random_batch(test_config, 1), jax.random.key(2),
                            update_generators=True)
  ended = method.end_task(state, 1)
  assert tree_equal(ended.teacher, before.teacher)  # the frozen Teacher is not averaged
  assert not tree_equal(ended.assistant.params, state.assistant.params)
