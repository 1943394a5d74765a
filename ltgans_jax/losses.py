"""Per-example losses of LT-GANs: the WGAN generator term, the gradient penalty, and the
Student's (beta-)ELBO terms. Each returns one value per example; callers average. (The
critic's Wasserstein term, E D(fake) - E D(real), is written in
``methods.ltgans_steps.GanSteps.critic_loss`` as two means, one pass of the critic each.)

Pixel conventions: GAN images live in [-1, 1]; the Student's likelihood is written on the same
images mapped to [0, 1] (``pixels.to_unit_interval``), which is also the range of the paper's NLL.
"""

from __future__ import annotations

import math
from typing import Callable

import chex
import jax
import jax.numpy as jnp

LIKELIHOODS = ('gaussian', 'bernoulli')


def interpolate(real: jnp.ndarray, fake: jnp.ndarray, key: jax.Array) -> jnp.ndarray:
  """Points on straight lines between real and fake examples, one coefficient per example.

  Args:
    real, fake: [B, H, W, C].
    key: PRNG key for the B coefficients, uniform in [0, 1].
  Returns:
    [B, H, W, C].
  """
  chex.assert_equal_shape([real, fake])
  alpha = jax.random.uniform(key, (real.shape[0],) + (1,) * (real.ndim - 1), real.dtype)
  return alpha * real + (1.0 - alpha) * fake


def gradient_penalty(critic_fn: Callable[[jnp.ndarray], jnp.ndarray],
                     points: jnp.ndarray) -> jnp.ndarray:
  """WGAN-GP penalty (||grad_x D(x)||_2 - 1)^2, per example, norm over all pixel axes.

  Args:
    critic_fn: maps a batch [N, H, W, C] to scores [N]; must treat examples independently.
    points: [B, H, W, C] points at which to evaluate the penalty.
  Returns:
    [B] penalties (without the lambda factor).
  """
  # Examples are independent, so the gradient of the summed scores is every example's own
  # gradient; one batched pass instead of a vmap over single examples, under which the
  # double backward would form per-example weight gradients and then sum them.
  grads = jax.grad(lambda x: jnp.sum(critic_fn(x)))(points)
  chex.assert_equal_shape([grads, points])
  # The tiny constant keeps the gradient of the norm finite where grad D is exactly 0.
  norms = jnp.sqrt(jnp.sum(jnp.square(grads), axis=tuple(range(1, grads.ndim))) + 1e-12)
  return jnp.square(norms - 1.0)


def generator_wasserstein_term(fake_scores: jnp.ndarray) -> jnp.ndarray:
  """The generator minimises -D(G(z)) per example: [B] -> [B]."""
  return -fake_scores


def gaussian_kl(mean: jnp.ndarray, log_var: jnp.ndarray) -> jnp.ndarray:
  """KL(N(mean, exp(log_var)) || N(0, I)) per example in nats: [B, L], [B, L] -> [B]."""
  chex.assert_equal_shape([mean, log_var])
  return 0.5 * jnp.sum(jnp.exp(log_var) + jnp.square(mean) - 1.0 - log_var, axis=-1)


def gaussian_kl_between(mean_p: jnp.ndarray, log_var_p: jnp.ndarray, mean_q: jnp.ndarray,
                        log_var_q: jnp.ndarray) -> jnp.ndarray:
  """KL(N(mean_p, exp(log_var_p)) || N(mean_q, exp(log_var_q))) in nats, summed over the last
  axis: [..., L] (broadcasting) -> [...]."""
  return 0.5 * jnp.sum(log_var_q - log_var_p
                       + (jnp.exp(log_var_p) + jnp.square(mean_p - mean_q)) / jnp.exp(log_var_q)
                       - 1.0, axis=-1)


def reconstruction_nll(logits: jnp.ndarray, targets01: jnp.ndarray, likelihood: str,
                       decoder_std: float) -> jnp.ndarray:
  """-log p(x|z) per example in nats, summed over pixels.

  Args:
    logits: [B, H, W, C] decoder outputs; the mean image is ``sigmoid(logits)``.
    targets01: [B, H, W, C] images in [0, 1].
    likelihood: 'gaussian' (fixed standard deviation ``decoder_std``) or 'bernoulli'
      (continuous targets, the usual cross-entropy form).
    decoder_std: the Gaussian's standard deviation in [0, 1] pixel units.
  Returns:
    [B].
  """
  chex.assert_equal_shape([logits, targets01])
  axes = tuple(range(1, logits.ndim))
  if likelihood == 'bernoulli':
    per_pixel = jnp.logaddexp(0.0, logits) - targets01 * logits
    return jnp.sum(per_pixel, axis=axes)
  squared_error = jnp.sum(jnp.square(jax.nn.sigmoid(logits) - targets01), axis=axes)
  num_pixels = math.prod(logits.shape[1:])
  return (squared_error / (2 * decoder_std**2)
          + num_pixels * math.log(decoder_std * math.sqrt(2 * math.pi)))


def student_loss(logits, targets01, mean, log_var, *, beta: float, likelihood: str,
                 decoder_std: float):
  """Negative (beta-)ELBO per example, eqs. 5-6: recon + beta * KL.

  Shapes: logits, targets01 [B, H, W, C]; mean, log_var [B, L]. Returns ([B], aux dict of [B]).
  """
  recon = reconstruction_nll(logits, targets01, likelihood, decoder_std)
  kl = gaussian_kl(mean, log_var)
  return recon + beta * kl, {'recon': recon, 'kl': kl}
