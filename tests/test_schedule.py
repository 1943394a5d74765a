"""``cpu.schedule.after`` is the identity, the loop puts it between the steps of a fused call
on the CPU, and the LT-GANs critic loss is eq. 2's / eq. 3's WGAN-GP sum."""

import re

import jax
import jax.numpy as jnp
import numpy as np

from ltgans_jax import losses, pixels
from ltgans_jax.cpu import backend, schedule
from ltgans_jax.run import fused
from tests.helpers import build_method, random_batch


def test_after_is_the_identity_with_identity_gradient():
  x = jnp.arange(6.0).reshape(2, 3)
  dependency = {'a': jnp.ones((4,)), 'b': jnp.full((2, 2), 3.0)}
  np.testing.assert_array_equal(schedule.after(x, dependency), x)
  grad = jax.grad(lambda x: jnp.sum(schedule.after(x, dependency) ** 2))(x)
  np.testing.assert_array_equal(grad, 2 * x)


def test_the_loop_orders_a_calls_steps_on_the_cpu_only(test_config):
  x = jnp.arange(6.0)
  sequence = backend.resolve(test_config).sequence_steps
  assert sequence == (jax.default_backend() == 'cpu')
  in_order = fused._in_order  # pylint: disable=protected-access
  hlo = jax.jit(lambda x: in_order(x, x, sequence) * 2).lower(x).as_text()
  assert bool(re.findall(r'stablehlo.while', hlo)) == sequence


def test_critic_loss_is_the_wgan_gp_sum_and_its_gradient(test_config):
  """Eq. 2's critic loss with two fakes against one real batch, and eq. 3's with one."""
  method = build_method(test_config)
  steps, state = method.gan_steps, method.init_state(jax.random.key(0))
  real = pixels.from_uint8(random_batch(test_config, 1))
  fakes = {'teacher': (pixels.from_uint8(random_batch(test_config, 2)), jax.random.key(3)),
           'assistant': (pixels.from_uint8(random_batch(test_config, 4)), jax.random.key(5))}

  def pair_loss(params, fake, key):
    critic = steps.critic_fn(params)
    penalty = losses.gradient_penalty(critic, losses.interpolate(real, fake, key))
    return jnp.mean(critic(fake) - critic(real)), jnp.mean(penalty)

  for names in (['teacher', 'assistant'], ['assistant']):
    (loss, metrics), grads = jax.value_and_grad(steps.critic_loss, has_aux=True)(
        state.critic.params, real, {name: fakes[name] for name in names})

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
