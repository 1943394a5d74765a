"""Closed-form checks of the losses."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ltgans_jax import losses


def _points(batch=5, shape=(4, 4, 3), seed=0):
  return jax.random.normal(jax.random.key(seed), (batch,) + shape)


def test_gradient_penalty_of_unit_norm_linear_critic_is_zero():
  w = jax.random.normal(jax.random.key(1), (4, 4, 3))
  w = w / jnp.linalg.norm(w)
  critic = lambda x: jnp.sum(x * w, axis=(1, 2, 3)) + 3.0
  penalty = losses.gradient_penalty(critic, _points())
  assert penalty.shape == (5,)
  np.testing.assert_allclose(penalty, 0.0, atol=1e-10)


def test_gradient_penalty_of_scaled_linear_critic():
  w = jax.random.normal(jax.random.key(1), (4, 4, 3))
  w = 3.0 * w / jnp.linalg.norm(w)  # gradient norm 3 everywhere: penalty (3-1)^2 = 4
  critic = lambda x: jnp.sum(x * w, axis=(1, 2, 3))
  np.testing.assert_allclose(losses.gradient_penalty(critic, _points()), 4.0, rtol=1e-5)


def test_gradient_penalty_of_quadratic_matches_closed_form():
  # D(x) = a/2 ||x||^2 has gradient a*x, so the penalty is (a*||x|| - 1)^2 per example, with
  # the norm over all pixel axes (not over rows or channels only).
  a = 0.7
  critic = lambda x: 0.5 * a * jnp.sum(jnp.square(x), axis=(1, 2, 3))
  points = _points()
  expected = (a * jnp.sqrt(jnp.sum(points**2, axis=(1, 2, 3))) - 1.0) ** 2
  np.testing.assert_allclose(losses.gradient_penalty(critic, points), expected, rtol=1e-5)


def test_interpolate_draws_one_coefficient_per_example():
  real = jnp.ones((64, 2, 2, 1))
  fake = jnp.zeros((64, 2, 2, 1))
  mixed = losses.interpolate(real, fake, jax.random.key(0))
  # Within an example every pixel shares one coefficient; across examples they differ.
  np.testing.assert_allclose(mixed, jnp.broadcast_to(mixed[:, :1, :1, :], mixed.shape))
  assert len(np.unique(np.asarray(mixed[:, 0, 0, 0]))) == 64
  assert float(mixed.min()) >= 0.0 and float(mixed.max()) <= 1.0


def test_kl_is_zero_at_the_prior_and_positive_elsewhere():
  zeros = jnp.zeros((3, 7))
  np.testing.assert_allclose(losses.gaussian_kl(zeros, zeros), 0.0, atol=1e-7)
  # KL(N(m, s^2) || N(0, 1)) = 0.5 (s^2 + m^2 - 1 - log s^2), summed over dimensions.
  mean, log_var = jnp.full((1, 2), 0.5), jnp.full((1, 2), math.log(2.0))
  expected = 2 * 0.5 * (2.0 + 0.25 - 1.0 - math.log(2.0))
  np.testing.assert_allclose(losses.gaussian_kl(mean, log_var), [expected], rtol=1e-6)


def test_gaussian_reconstruction_with_default_std_is_sum_of_squares_plus_constant():
  logits = jax.random.normal(jax.random.key(0), (2, 3, 3, 1))
  targets = jax.random.uniform(jax.random.key(1), (2, 3, 3, 1))
  std = 1 / math.sqrt(2)
  nll = losses.reconstruction_nll(logits, targets, 'gaussian', std)
  squared = jnp.sum((jax.nn.sigmoid(logits) - targets) ** 2, axis=(1, 2, 3))
  constant = 9 * math.log(std * math.sqrt(2 * math.pi))
  np.testing.assert_allclose(nll, squared + constant, rtol=1e-6)


def test_bernoulli_reconstruction_matches_cross_entropy():
  logits = jnp.array([[[[0.3]], [[-1.2]]]])  # [1, 2, 1, 1]
  targets = jnp.array([[[[1.0]], [[0.25]]]])
  p = jax.nn.sigmoid(logits)
  expected = -jnp.sum(targets * jnp.log(p) + (1 - targets) * jnp.log(1 - p))
  np.testing.assert_allclose(losses.reconstruction_nll(logits, targets, 'bernoulli', 1.0),
                             [expected], rtol=1e-6)


@pytest.mark.parametrize('beta', [1.0, 4.0])
def test_student_loss_weights_kl_by_beta(beta):
  logits = jnp.zeros((2, 2, 2, 1))
  targets = jnp.full((2, 2, 2, 1), 0.5)
  mean, log_var = jnp.ones((2, 3)), jnp.zeros((2, 3))
  loss, aux = losses.student_loss(logits, targets, mean, log_var, beta=beta,
                                  likelihood='gaussian', decoder_std=1.0)
  np.testing.assert_allclose(loss, aux['recon'] + beta * aux['kl'], rtol=1e-6)
  np.testing.assert_allclose(aux['kl'], 1.5, rtol=1e-6)
