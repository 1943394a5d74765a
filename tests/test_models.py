"""Shapes and the resampling layers of the networks."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ltgans_jax import models


def test_space_to_depth_inverts_depth_to_space():
  x = jax.random.normal(jax.random.key(0), (2, 4, 6, 12))
  np.testing.assert_array_equal(models.space_to_depth(models.depth_to_space(x)), x)
  # Each 2x2 block of the image becomes one pixel's channels.
  image = jnp.arange(16.0).reshape(1, 4, 4, 1)
  np.testing.assert_array_equal(models.space_to_depth(image)[0, 0, 0], [0, 1, 4, 5])


@pytest.mark.parametrize('size, channels, resample', [
    (16, 1, 'pixel_shuffle'), (28, 1, 'pixel_shuffle'), (32, 3, 'pixel_shuffle'),
    (64, 3, 'pixel_shuffle'), (16, 3, 'strided'), (28, 3, 'strided'), (32, 1, 'strided'),
    (64, 1, 'strided')])
def test_network_shapes(size, channels, resample):
  key = jax.random.key(0)
  generator = models.Generator(size, channels, width=4, resample=resample)
  z = jnp.zeros((2, 10))
  images = generator.apply(generator.init(key, z), z)
  assert images.shape == (2, size, size, channels)
  assert float(jnp.max(jnp.abs(images))) <= 1.0
  critic = models.Critic(size, width=4, resample=resample)
  assert critic.apply(critic.init(key, images), images).shape == (2,)
  student = models.StudentVAE(size, channels, width=4, latent_dim=3, resample=resample)
  noise = jnp.zeros((2, 3))
  logits, mean, log_var = student.apply(student.init(key, images, noise), images, noise)
  assert logits.shape == images.shape and mean.shape == log_var.shape == (2, 3)


def test_pixel_shuffle_layers_have_the_parameter_count_of_4x4_stride_2_layers():
  x = jnp.zeros((1, 8, 8, 6))
  for layer in (models.Upsample, models.Downsample):
    counts = {}
    for mode in models.RESAMPLE_MODES:
      params = layer(5, mode).init(jax.random.key(0), x)
      counts[mode] = sum(p.size for p in jax.tree_util.tree_leaves(params))
    assert counts['pixel_shuffle'] == counts['strided'] + (3 * 5 if layer is models.Upsample
                                                           else 0)


def test_unsupported_image_size_is_a_clear_error():
  with pytest.raises(ValueError, match='image_size=48 is not supported'):
    models.num_resolution_steps(48)


def test_critic_scores_each_example_independently():
  critic = models.Critic(28, width=4)
  images = jax.random.normal(jax.random.key(1), (4, 28, 28, 1))
  params = critic.init(jax.random.key(0), images)
  together = critic.apply(params, images)
  one_by_one = jnp.concatenate([critic.apply(params, images[i:i + 1]) for i in range(4)])
  np.testing.assert_allclose(together, one_by_one, rtol=1e-5, atol=1e-6)
