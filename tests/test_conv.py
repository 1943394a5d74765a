"""cpu.conv.Conv and cpu.conv.ConvTranspose: nn.Conv's and nn.ConvTranspose's parameters and
function (stride 1, and the 4x4 stride-2 layers as stride-1 convolutions), and exact gradients
of every order; and the layers ``cpu.backend`` hands the networks."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ltgans_jax import losses, models
from ltgans_jax.cpu import backend, conv


def _relative_error(a, b):
  return max(float(jnp.max(jnp.abs(x - y)) / (jnp.max(jnp.abs(y)) + 1e-30))
             for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


@pytest.mark.parametrize('kernel_size', [(2, 2), (3, 3)])
def test_conv_has_nn_conv_parameters_and_function(kernel_size):
  x = jax.random.normal(jax.random.key(0), (3, 8, 8, 5))
  ours = conv.Conv(7, kernel_size)
  flax_conv = nn.Conv(7, kernel_size, padding='SAME')
  params = ours.init(jax.random.key(1), x)
  flax_params = flax_conv.init(jax.random.key(1), x)
  assert jax.tree.map(jnp.shape, params) == jax.tree.map(jnp.shape, flax_params)
  np.testing.assert_array_equal(params['params']['kernel'], flax_params['params']['kernel'])
  params = jax.tree.map(lambda p: p + 0.1, params)  # a non-zero bias
  np.testing.assert_allclose(ours.apply(params, x), flax_conv.apply(params, x),
                             rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize('ours, flax_layer', [
    (conv.Conv(7, (4, 4), (2, 2)), nn.Conv(7, (4, 4), strides=(2, 2), padding='SAME')),
    (conv.ConvTranspose(7, (4, 4), (2, 2)),
     nn.ConvTranspose(7, (4, 4), strides=(2, 2), padding='SAME'))])
def test_strided_layers_have_flax_parameters_function_and_gradients(ours, flax_layer):
  """The 4x4 stride-2 layers written as stride-1 convolutions: flax's parameters (names,
  shapes, initial values), outputs and first-order gradients."""
  x = jax.random.normal(jax.random.key(0), (3, 6, 8, 5))
  params = ours.init(jax.random.key(1), x)
  flax_params = flax_layer.init(jax.random.key(1), x)
  assert jax.tree.map(jnp.shape, params) == jax.tree.map(jnp.shape, flax_params)
  np.testing.assert_array_equal(params['params']['kernel'], flax_params['params']['kernel'])
  params = jax.tree.map(lambda p: p + 0.1, params)  # a non-zero bias
  out, vjp = jax.vjp(ours.apply, params, x)
  flax_out, flax_vjp = jax.vjp(flax_layer.apply, params, x)
  assert out.shape == flax_out.shape
  np.testing.assert_allclose(out, flax_out, rtol=1e-6, atol=1e-6)
  output_grad = jax.random.normal(jax.random.key(2), out.shape)
  assert _relative_error(vjp(output_grad), flax_vjp(output_grad)) < 1e-5


class _TwoLayerCritic(nn.Module):
  """[B, 8, 8, 3] -> [B]: two convolutions (2x2, 3x3) and a sum, for gradient checks."""
  gradients: str

  @nn.compact
  def __call__(self, x):
    layer = backend.conv_layer(self.gradients)
    h = nn.leaky_relu(layer(6, (2, 2))(x), 0.2)
    h = layer(4, (3, 3))(h)
    return jnp.sum(jnp.tanh(h), axis=(1, 2, 3))


class _ThreeLayerCritic(nn.Module):
  """[B, 8, 8, 3] -> [B] through 3 -> 8 -> 12 -> 6 channels: every weight-gradient rule of
  ``barriered_conv`` (fewer, more and few output channels) at first and second order."""
  gradients: str

  @nn.compact
  def __call__(self, x):
    layer = backend.conv_layer(self.gradients)
    h = nn.leaky_relu(layer(8, (2, 2))(x), 0.2)
    h = nn.leaky_relu(layer(12, (3, 3))(h), 0.2)
    h = layer(6, (2, 2))(h)
    return jnp.sum(jnp.tanh(h), axis=(1, 2, 3))


class _StridedCritic(nn.Module):
  """[B, 8, 8, 3] -> [B] through the strided layers: a 4x4 stride-2 convolution, a transposed
  one back to 8x8 and another strided one (3 -> 8 -> 6 -> 12 channels)."""
  gradients: str

  @nn.compact
  def __call__(self, x):
    layer = backend.conv_layer(self.gradients)
    transposed = backend.conv_transpose_layer(self.gradients)
    h = nn.leaky_relu(layer(8, (4, 4), strides=(2, 2))(x), 0.2)
    h = nn.leaky_relu(transposed(6, (4, 4), strides=(2, 2))(h), 0.2)
    h = layer(12, (4, 4), strides=(2, 2))(h)
    return jnp.sum(jnp.tanh(h), axis=(1, 2, 3))


@pytest.mark.parametrize('critic_class', [_TwoLayerCritic, _ThreeLayerCritic, _StridedCritic])
def test_barriered_gradients_match_xla_to_all_orders(critic_class):
  """First-order and gradient-penalty (second-order) gradients equal XLA's own."""
  real = jax.random.normal(jax.random.key(0), (4, 8, 8, 3))
  fake = jax.random.normal(jax.random.key(1), (4, 8, 8, 3))
  params = critic_class('xla').init(jax.random.key(2), real)
  params = jax.tree.map(lambda p: p + 0.05, params)

  def critic_loss(params, gradients):
    critic = lambda x: critic_class(gradients).apply(params, x)
    points = losses.interpolate(real, fake, jax.random.key(3))
    penalty = losses.gradient_penalty(critic, points)
    return jnp.mean(critic(fake) - critic(real) + 10.0 * penalty)

  value, grads = jax.jit(jax.value_and_grad(critic_loss), static_argnums=1)(params, 'barriered')
  ref_value, ref_grads = jax.jit(jax.value_and_grad(critic_loss), static_argnums=1)(params, 'xla')
  np.testing.assert_allclose(value, ref_value, rtol=1e-5)
  assert _relative_error(grads, ref_grads) < 1e-5
  input_grad = jax.grad(lambda x: jnp.sum(critic_class('barriered').apply(params, x)))(real)
  ref_input_grad = jax.grad(lambda x: jnp.sum(critic_class('xla').apply(params, x)))(real)
  assert _relative_error(input_grad, ref_input_grad) < 1e-5


def test_fusion_barrier_is_the_identity_with_identity_gradient():
  x = jax.random.normal(jax.random.key(0), (2, 3, 4))
  for token in (jnp.float32(0.3), jnp.float32(jnp.nan)):
    y, vjp = jax.vjp(lambda v: conv.fusion_barrier(v, token), x)
    np.testing.assert_array_equal(y, x)
    np.testing.assert_array_equal(vjp(2.0 * x)[0], 2.0 * x)
  jitted = jax.jit(conv.fusion_barrier)
  np.testing.assert_array_equal(jitted(x, jnp.float32(1.0)), x)
  assert 'while' in jitted.lower(x, jnp.float32(1.0)).compile().as_text()


def test_gradient_modes():
  assert backend.conv_layer('auto') is (conv.Conv if jax.default_backend() == 'cpu'
                                        else nn.Conv)
  assert backend.conv_layer('xla') is nn.Conv
  assert backend.conv_layer('barriered') is conv.Conv
  assert backend.conv_transpose_layer('xla') is nn.ConvTranspose
  assert backend.conv_transpose_layer('barriered') is conv.ConvTranspose
  with pytest.raises(ValueError, match='use one of'):
    backend.conv_layer('fast')


@pytest.mark.parametrize('size', [16, 28, 32])
def test_strided_networks_have_the_same_parameters_and_function_with_the_cpu_layers(size):
  """With ``resample='strided'``, the CPU's layers give the networks flax's parameter trees
  (the same initial values: checkpoints move between backends) and outputs."""
  images = jax.random.normal(jax.random.key(0), (2, size, size, 3))
  z = jax.random.normal(jax.random.key(1), (2, 5))
  cpu_layers = models.Layers(conv.Conv, conv.ConvTranspose)
  for network, inputs in ((lambda l: models.Generator(size, 3, 4, 'strided', conv=l.conv,
                                                        conv_transpose=l.conv_transpose), z),
                          (lambda l: models.Critic(size, 4, 'strided', conv=l.conv), images)):
    ours, flax_network = network(cpu_layers), network(models.Layers())
    params = ours.init(jax.random.key(2), inputs)
    flax_params = flax_network.init(jax.random.key(2), inputs)
    assert jax.tree.map(jnp.shape, params) == jax.tree.map(jnp.shape, flax_params)
    for leaf, flax_leaf in zip(jax.tree.leaves(params), jax.tree.leaves(flax_params)):
      np.testing.assert_array_equal(leaf, flax_leaf)
    np.testing.assert_allclose(ours.apply(params, inputs), flax_network.apply(params, inputs),
                               rtol=1e-5, atol=1e-5)


def test_training_steps_agree_under_both_gradient_rules(test_config):
  """Two joint steps and two LAKD steps of the test config: the same losses either way."""
  from ltgans_jax.methods import ltgans_state as state_lib  # pylint: disable=g-import-not-at-top
  from tests.helpers import build, random_batch  # pylint: disable=g-import-not-at-top
  metrics = {}
  for mode in ('xla', 'barriered'):
    config = test_config.copy_and_resolve_references()
    config.model.conv_gradients = mode
    _, optimizers, state, step_fns = build(config)
    history = []
    for i, phase in enumerate(('joint', 'joint', 'lakd', 'lakd')):
      if i == 2:
        state = state_lib.begin_next_task(state, optimizers.generator)
      state, step_metrics = step_fns[phase](state, random_batch(config, i), jax.random.key(i),
                                            update_generators=True)
      history.append({k: float(v) for k, v in step_metrics.items()})
    metrics[mode] = history
  for xla_step, barriered_step in zip(metrics['xla'], metrics['barriered']):
    assert xla_step.keys() == barriered_step.keys()
    for name in xla_step:
      np.testing.assert_allclose(barriered_step[name], xla_step[name], rtol=1e-4, atol=1e-5,
                                 err_msg=name)


@pytest.mark.parametrize('kernel_size,padding', [
    ((3, 3), ((1, 1), (1, 1))), ((2, 2), ((0, 1), (0, 1))), ((2, 2), ((1, 0), (1, 0))),
    ((3, 3), ((2, 0), (0, 2)))])
def test_few_output_channels_run_as_matrix_products_with_xla_values(kernel_size, padding):
  """An RGB output layer (64 -> 3 channels) takes the matrix-product path, whose value, input
  gradient and weight gradient equal XLA's convolution's."""
  x = jax.random.normal(jax.random.key(0), (2, 6, 7, 64))
  kernel = 0.1 * jax.random.normal(jax.random.key(1), kernel_size + (64, 3))
  assert conv.has_few_outputs(kernel) and not conv.has_few_outputs(kernel.swapaxes(2, 3))
  out, vjp = jax.vjp(lambda x, k: conv.barriered_conv(x, k, padding), x, kernel)
  reference = conv._lax_conv  # pylint: disable=protected-access
  ref_out, ref_vjp = jax.vjp(lambda x, k: reference(x, k, padding), x, kernel)
  assert out.shape == ref_out.shape
  assert _relative_error(out, ref_out) < 1e-5
  output_grad = jax.random.normal(jax.random.key(2), out.shape)
  assert _relative_error(vjp(output_grad), ref_vjp(output_grad)) < 1e-5
  jitted = jax.jit(lambda x, k: conv.barriered_conv(x, k, padding))
  assert 'convolution' not in jitted.lower(x, kernel).compile().as_text()


@pytest.mark.parametrize('kernel_size,padding', [
    ((2, 2), ((0, 1), (0, 1))), ((2, 2), ((1, 0), (1, 0))), ((3, 3), ((1, 1), (1, 1))),
    ((3, 3), ((2, 0), (0, 2)))])
def test_input_major_kernel_grad_equals_xla(kernel_size, padding):
  x = jax.random.normal(jax.random.key(0), (3, 6, 7, 16))
  kernel = 0.1 * jax.random.normal(jax.random.key(1), kernel_size + (16, 8))
  reference = conv._lax_conv  # pylint: disable=protected-access
  out, vjp = jax.vjp(lambda k: reference(x, k, padding), kernel)
  output_grad = jax.random.normal(jax.random.key(2), out.shape)
  ours = conv.input_major_kernel_grad(x, output_grad, kernel.shape, padding)
  assert ours.shape == kernel.shape
  assert _relative_error(ours, vjp(output_grad)[0]) < 1e-5


def test_weight_gradients_padded_beyond_same_are_input_major():
  """The strided layers' 2x2 convolutions: padded beyond 'SAME' (the transposed layer's) the
  input-major weight gradient, short of it (the strided layer's) XLA's, at 'SAME' the rule of
  channel counts."""
  assert conv.uses_input_major_kernel_grad((2, 2, 8, 32), ((1, 1), (1, 1)))
  assert not conv.uses_input_major_kernel_grad((2, 2, 32, 8), ((0, 0), (0, 0)))
  assert conv.uses_input_major_kernel_grad((2, 2, 32, 8), ((0, 1), (0, 1)))
  assert not conv.uses_input_major_kernel_grad((3, 3, 8, 32), ((1, 1), (1, 1)))
