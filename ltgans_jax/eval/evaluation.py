"""Evaluation of the Student and the generators: likelihoods and FID.

* ``paper_nll``: per-image sum of squared errors over pixels in [0, 1] plus the KL term, with one
  posterior sample, as the authors' code computes the "NLOG" of Tables 1 and 3. It is not a
  likelihood bound in nats.
* ``iwae_nll``: the importance-weighted estimate of -log p(x) in nats (Burda et al., 2016) with
  k posterior samples, under the Student's own likelihood; also returns the negative ELBO
  estimated with the same samples.
* ``frechet_distance``, ``feature_statistics``, ``fid``: the Frechet distance between Gaussians
  fitted to features of two image sets, as pytorch-fid computes it. Which features (the FID
  Inception network of ``ltgans_jax.eval.inception`` or the project's own ``feature_net``) is the
  caller's choice; each extractor exports the name its FID must be reported under.

The forgetting matrices these fill, one row per task learnt: ``matrices``.
"""

from __future__ import annotations

import functools
import logging
import math
from typing import Callable, NamedTuple, Tuple

import jax
import jax.numpy as jnp
import numpy as np
import scipy.linalg

from ltgans_jax import losses, models, pixels

FeaturesFn = Callable[[np.ndarray], np.ndarray]  # uint8 [B, H, W, C] -> [B, D]


# ------------------------------------------------------------------------------------------
# The paper's NLOG.


@functools.partial(jax.jit, static_argnums=0)
def _paper_nll_batch(student, params, batch_uint8, key):
  """[B, H, W, C] uint8 -> [B] squared error (pixels in [0, 1]) + KL."""
  images = pixels.from_uint8(batch_uint8)
  mean, log_var = student.apply({'params': params}, images, method='encode')
  z = mean + jnp.exp(0.5 * log_var) * jax.random.normal(key, mean.shape)
  reconstruction = jax.nn.sigmoid(student.apply({'params': params}, z, method='decode'))
  squared_error = jnp.sum(jnp.square(reconstruction - pixels.to_unit_interval(images)),
                          axis=(1, 2, 3))
  return squared_error + losses.gaussian_kl(mean, log_var)


def paper_nll(student: models.StudentVAE, student_params, images: np.ndarray, key: jax.Array,
              batch_size: int = 250) -> float:
  """Mean paper-NLL over uint8 images [N, H, W, C] (all of them, in batches)."""
  total = 0.0
  for i, start in enumerate(range(0, len(images), batch_size)):
    batch = images[start:start + batch_size]
    total += float(jnp.sum(_paper_nll_batch(student, student_params, batch,
                                            jax.random.fold_in(key, i))))
  return total / len(images)


# ------------------------------------------------------------------------------------------
# Importance-weighted log-likelihood.


class IWAEResult(NamedTuple):
  """Output of ``iwae_nll``; all values in nats per image.

  nll: mean over images of -log p_k(x), the k-sample importance-weighted estimate.
  negative_elbo: mean over images and the same k samples of -log w; an unbiased estimate of
    -ELBO (the k=1 estimator averaged over k draws).
  per_image_nll, per_image_negative_elbo: [N] the per-image values behind the two means.
  """
  nll: float
  negative_elbo: float
  per_image_nll: np.ndarray
  per_image_negative_elbo: np.ndarray


def _standard_normal_log_density(x: jnp.ndarray) -> jnp.ndarray:
  """log N(x; 0, I) summed over the last axis: [..., L] -> [...]."""
  return -0.5 * jnp.sum(jnp.square(x) + math.log(2 * math.pi), axis=-1)


@functools.partial(jax.jit, static_argnames=('student', 'chunk_size', 'likelihood',
                                             'decoder_std'))
def _iwae_batch(student, params, batch_uint8, key, num_samples, *, chunk_size: int,
                likelihood: str, decoder_std: float) -> Tuple[jnp.ndarray, jnp.ndarray]:
  """[B, H, W, C] uint8 -> ([B] log p_k(x), [B] mean of the k log-weights).

  The k = ``num_samples`` samples (a traced scalar, so k does not recompile) are drawn
  ``chunk_size`` at a time in a loop, so at most chunk_size * B images are decoded at once; a
  running log-sum-exp and a running sum carry the two estimates across chunks. The last chunk's
  samples beyond k are masked out.
  """
  images = pixels.from_uint8(batch_uint8)
  targets01 = pixels.to_unit_interval(images)
  mean, log_var = student.apply({'params': params}, images, method='encode')
  std = jnp.exp(0.5 * log_var)
  # log q(z|x) is written with eps = (z - mean) / std, so no division by a tiny std.
  log_q_const = -0.5 * jnp.sum(log_var, axis=-1)  # [B]
  tiled_targets = jnp.broadcast_to(targets01, (chunk_size,) + targets01.shape).reshape(
      (-1,) + targets01.shape[1:])  # [chunk_size * B, H, W, C]

  def body(chunk, carry):
    running_max, running_sum_exp, running_sum = carry
    eps = jax.random.normal(jax.random.fold_in(key, chunk), (chunk_size,) + mean.shape)
    z = mean + std * eps  # [chunk_size, B, L]
    logits = student.apply({'params': params}, z.reshape((-1, z.shape[-1])), method='decode')
    log_likelihood = -losses.reconstruction_nll(logits, tiled_targets, likelihood, decoder_std)
    log_w = (log_likelihood.reshape(chunk_size, -1) + _standard_normal_log_density(z)
             - _standard_normal_log_density(eps) - log_q_const)  # [chunk_size, B]
    valid = (chunk * chunk_size + jnp.arange(chunk_size) < num_samples)[:, None]
    masked = jnp.where(valid, log_w, -jnp.inf)
    new_max = jnp.maximum(running_max, jnp.max(masked, axis=0))
    running_sum_exp = (running_sum_exp * jnp.exp(running_max - new_max)
                       + jnp.sum(jnp.exp(masked - new_max), axis=0))
    return new_max, running_sum_exp, running_sum + jnp.sum(jnp.where(valid, log_w, 0.0), axis=0)

  batch = mean.shape[0]
  init = (jnp.full((batch,), -jnp.inf), jnp.zeros((batch,)), jnp.zeros((batch,)))
  num_chunks = (num_samples + chunk_size - 1) // chunk_size
  running_max, running_sum_exp, running_sum = jax.lax.fori_loop(0, num_chunks, body, init)
  log_p = running_max + jnp.log(running_sum_exp) - jnp.log(num_samples.astype(jnp.float32))
  return log_p, running_sum / num_samples


def iwae_nll(student: models.StudentVAE, student_params, images_uint8: np.ndarray,
             key: jax.Array,
             num_samples: int, likelihood: str, decoder_std: float, batch_size: int = 250,
             chunk_size: int = 50) -> IWAEResult:
  """Importance-weighted estimate of -log p(x) in nats, averaged over uint8 images [N, H, W, C].

  For each image, -log (1/k sum_j w_j) with w_j = p(x|z_j) p(z_j) / q(z_j|x), z_j ~ q(z|x),
  j = 1..k (Burda et al., 2016). log p_k(x) is a stochastic lower bound of log p(x) whose
  expectation grows with k towards log p(x) and equals the ELBO at k = 1; so ``nll`` is, in
  expectation, an upper bound of the true NLL that tightens with k and is at most
  ``negative_elbo`` (for each image and the same samples, by Jensen's inequality).

  The likelihood is the Student's, on pixels x = uint8 / 255 in [0, 1]:

  * ``'gaussian'``: N(x; sigmoid(logits), decoder_std^2 I), a density on R^D, so the value is
    a differential (continuous) NLL. It can be negative and is not comparable with discrete
    NLLs in nats or bits/dim (that would need dequantisation and the log 256 per pixel term).
  * ``'bernoulli'``: sum x log p + (1 - x) log (1 - p) with p = sigmoid(logits). For binary
    images this is a probability mass, so the value is a true discrete NLL; for grey levels it
    is the customary cross-entropy, which is not normalised over [0, 1].

  Neither equals the paper's NLOG (``paper_nll``), which is a squared error plus KL.

  Args:
    student: the StudentVAE.
    student_params: its parameters.
    images_uint8: [N, H, W, C] uint8 images.
    key: PRNG key; each batch and chunk of samples gets its own fold of it.
    num_samples: k >= 1.
    likelihood: 'gaussian' or 'bernoulli' (``losses.LIKELIHOODS``).
    decoder_std: the Gaussian's standard deviation in [0, 1] pixel units (unused by
      'bernoulli').
    batch_size: images encoded at a time.
    chunk_size: posterior samples per image decoded at a time; memory is bounded by
      batch_size * min(chunk_size, k) decoded images, whatever k.
  Returns:
    ``IWAEResult`` with the mean NLL, the mean negative ELBO and the per-image [N] values.
  """
  if likelihood not in losses.LIKELIHOODS:
    raise ValueError(f'likelihood={likelihood!r}; use one of {losses.LIKELIHOODS}.')
  if num_samples < 1 or chunk_size < 1:
    raise ValueError(f'num_samples={num_samples} and chunk_size={chunk_size} must be >= 1.')
  images_uint8 = np.asarray(images_uint8)
  num_images = len(images_uint8)
  batch_size = min(batch_size, num_images)
  log_p, mean_log_w = [], []
  for i, start in enumerate(range(0, num_images, batch_size)):
    batch = images_uint8[start:start + batch_size]
    size = len(batch)
    if size < batch_size:  # pad the last batch so that every batch shares one compilation
      batch = np.concatenate([batch, np.zeros((batch_size - size,) + batch.shape[1:],
                                              batch.dtype)])
    batch_log_p, batch_mean_log_w = _iwae_batch(
        student, student_params, batch, jax.random.fold_in(key, i),
        jnp.asarray(num_samples, jnp.int32), chunk_size=min(chunk_size, num_samples),
        likelihood=likelihood, decoder_std=float(decoder_std))
    log_p.append(np.asarray(batch_log_p, np.float64)[:size])
    mean_log_w.append(np.asarray(batch_mean_log_w, np.float64)[:size])
  per_image_nll = -np.concatenate(log_p)
  per_image_negative_elbo = -np.concatenate(mean_log_w)
  return IWAEResult(nll=float(per_image_nll.mean()),
                    negative_elbo=float(per_image_negative_elbo.mean()),
                    per_image_nll=per_image_nll,
                    per_image_negative_elbo=per_image_negative_elbo)


# ------------------------------------------------------------------------------------------
# Frechet distance and FID.


def feature_statistics(features: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
  """[N, D] features -> (mean [D], covariance [D, D]), float64, covariance with N - 1.

  The unbiased covariance is what pytorch-fid uses (``np.cov(rowvar=False)``).
  """
  features = np.asarray(features, np.float64)
  if features.ndim != 2 or len(features) < 2:
    raise ValueError(f'features must be [N >= 2, D]; got shape {features.shape}.')
  return features.mean(axis=0), np.cov(features, rowvar=False)


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray,
                     eps: float = 1e-6) -> float:
  """Frechet (2-Wasserstein squared) distance between N(mu1, sigma1) and N(mu2, sigma2).

  d^2 = ||mu1 - mu2||^2 + Tr(sigma1 + sigma2 - 2 (sigma1 sigma2)^(1/2)), computed as pytorch-fid
  does: when the matrix square root of the product is not finite (singular covariances, as
  with fewer samples than feature dimensions) it is taken again with ``eps`` added to both
  diagonals; a complex result from round-off is accepted if its diagonal's imaginary part is
  below 1e-3 and the real part is used.

  Args:
    mu1, mu2: [D] means.
    sigma1, sigma2: [D, D] covariances.
  Returns:
    The squared distance (a float, >= 0 up to round-off).
  """
  mu1, mu2 = np.atleast_1d(np.asarray(mu1, np.float64)), np.atleast_1d(np.asarray(mu2,
                                                                                  np.float64))
  sigma1 = np.atleast_2d(np.asarray(sigma1, np.float64))
  sigma2 = np.atleast_2d(np.asarray(sigma2, np.float64))
  if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape or sigma1.shape != mu1.shape * 2:
    raise ValueError(f'shape mismatch: mu {mu1.shape} / {mu2.shape}, '
                     f'sigma {sigma1.shape} / {sigma2.shape}.')
  diff = mu1 - mu2
  covmean = scipy.linalg.sqrtm(sigma1 @ sigma2)
  if not np.isfinite(covmean).all():
    logging.warning('Frechet distance: singular covariance product; adding %g to the '
                    'diagonals of both covariances.', eps)
    offset = np.eye(sigma1.shape[0]) * eps
    covmean = scipy.linalg.sqrtm((sigma1 + offset) @ (sigma2 + offset))
  if np.iscomplexobj(covmean):
    if not np.allclose(np.diagonal(covmean).imag, 0, atol=1e-3):
      raise ValueError('Frechet distance: the square root of the covariance product has an '
                       f'imaginary component of {np.max(np.abs(covmean.imag)):.3g}.')
    covmean = covmean.real
  return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2 * np.trace(covmean))


def compute_features(features_fn: FeaturesFn, images: np.ndarray,
                     batch_size: int = 250) -> np.ndarray:
  """Applies ``features_fn`` (uint8 [B, H, W, C] -> [B, D]) in batches: [N, ...] -> [N, D]."""
  return np.concatenate([np.asarray(features_fn(images[start:start + batch_size]), np.float64)
                         for start in range(0, len(images), batch_size)])


def fid(features_fn: FeaturesFn, images_a: np.ndarray, images_b: np.ndarray,
        batch_size: int = 250) -> float:
  """Frechet distance between the features of two uint8 image sets [N_a, ...], [N_b, ...].

  ``features_fn`` maps uint8 [B, H, W, C] to [B, D]; with ``inception.features_fn`` the value is
  the FID of pytorch-fid (given its weights), with ``feature_net.features_fn`` it must be
  reported under ``feature_net.FID_NAME``, not as FID. Generated images should be quantised to
  uint8 first, as pytorch-fid's image files are.
  """
  stats_a = feature_statistics(compute_features(features_fn, images_a, batch_size))
  stats_b = feature_statistics(compute_features(features_fn, images_b, batch_size))
  return frechet_distance(*stats_a, *stats_b)
