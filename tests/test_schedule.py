"""The phase order: ``schedule.after`` is the identity, and a 'sequenced' step computes what
a 'free' one does, from the critic's loss split into terms to the whole LAKD step."""

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ltgans_jax import losses, schedule, state as state_lib, steps
from tests.helpers import build, copy_tree, random_batch


def test_after_is_the_identity_with_identity_gradient():
  x = jnp.arange(6.0).reshape(2, 3)
  dependency = {'a': jnp.ones((4,)), 'b': jnp.full((2, 2), 3.0)}
  np.testing.assert_array_equal(schedule.after(x, dependency, 'sequenced'), x)
  grad = jax.grad(lambda x: jnp.sum(schedule.after(x, dependency, 'sequenced') ** 2))(x)
  np.testing.assert_array_equal(grad, 2 * x)
  assert schedule.after(x, dependency, 'free') is x


def test_sequenced_step_has_the_barriers_and_auto_picks_it_on_the_cpu(test_config):
  assert schedule.resolve_phase_order('auto') == (
      'sequenced' if jax.default_backend() == 'cpu' else 'free')
  with pytest.raises(ValueError, match="phase_order='x'; use one of"):
    schedule.resolve_phase_order('x')
  loops = {}
  for order in ('sequenced', 'free'):
    test_config.train.phase_order = order
    _, _, state, step_fns = build(test_config)
    hlo = step_fns['lakd'].lower(state, random_batch(test_config), jax.random.key(0),
                                 update_generators=True).as_text()
    loops[order] = len(re.findall(r'stablehlo.while', hlo))
  # A barrier loop for each array that waits: the critic's fake and penalty passes, the
  # Assistant's latents, the Student's data and replay, and its replay term's input again.
  assert loops['sequenced'] >= loops['free'] + 6, loops


def test_critic_terms_sum_to_the_wgan_gp_loss_and_its_gradient(test_config):
  """Eq. 2's critic loss with two fakes against one real batch, and eq. 3's with one."""
  networks, optimizers, state, _ = build(test_config)
  step = steps._Step(test_config, networks, optimizers)  # pylint: disable=protected-access
  real = steps.images_from_uint8(random_batch(test_config, 1))
  fakes = {'teacher': (steps.images_from_uint8(random_batch(test_config, 2)), jax.random.key(3)),
           'assistant': (steps.images_from_uint8(random_batch(test_config, 4)),
                         jax.random.key(5))}

  def pair_loss(params, fake, key):
    critic = step.critic_fn(params)
    penalty = losses.gradient_penalty(critic, losses.interpolate(real, fake, key))
    return jnp.mean(critic(fake) - critic(real)), jnp.mean(penalty)

  for names in (['teacher', 'assistant'], ['assistant']):
    loss, metrics, grads = step.summed_value_and_grad(
        step.critic_terms(real, {name: fakes[name] for name in names}), state.critic.params)

    def direct_loss(params):
      return sum(w + 10.0 * p for w, p in (pair_loss(params, *fakes[n]) for n in names))

    want_loss, want_grads = jax.value_and_grad(direct_loss)(state.critic.params)
    np.testing.assert_allclose(loss, want_loss, rtol=1e-5)
    for name in names:
      want_w, want_p = pair_loss(state.critic.params, *fakes[name])
      np.testing.assert_allclose(metrics[f'critic/wasserstein_{name}'], -want_w, rtol=1e-5,
                                 atol=1e-6)
      np.testing.assert_allclose(metrics[f'critic/penalty_{name}'], want_p, rtol=1e-5)
    for got, want in zip(jax.tree_util.tree_leaves(grads),
                         jax.tree_util.tree_leaves(want_grads)):
      np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize('phase', ['joint', 'lakd'])
def test_sequenced_and_free_steps_compute_the_same_state(test_config, phase):
  results = {}
  for order in ('sequenced', 'free'):
    test_config.train.phase_order = order
    _, optimizers, state, step_fns = build(test_config)
    if phase == 'lakd':
      state = state_lib.begin_next_task(state, optimizers.generator)
    for i in range(2):
      state, metrics = step_fns[phase](state, random_batch(test_config, i), jax.random.key(i),
                                       update_generators=True)
    results[order] = copy_tree((state, metrics))
  sequenced, free = results['sequenced'], results['free']
  assert jax.tree_util.tree_structure(sequenced) == jax.tree_util.tree_structure(free)
  for got, want in zip(jax.tree_util.tree_leaves(sequenced), jax.tree_util.tree_leaves(free)):
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
