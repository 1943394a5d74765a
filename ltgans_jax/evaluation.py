"""Evaluation of the Student: the paper's NLL quantity per task test set.

``paper_nll``: per-image sum of squared errors over pixels in [0, 1] plus the KL term, with one
posterior sample, as the authors' code computes the "NLOG" of Tables 1 and 3. It is not a
likelihood bound in nats.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from ltgans_jax import losses
from ltgans_jax.state import Networks
from ltgans_jax.steps import images_from_uint8


@functools.partial(jax.jit, static_argnums=0)
def _paper_nll_batch(student, params, batch_uint8, key):
  """[B, H, W, C] uint8 -> [B] squared error (pixels in [0, 1]) + KL."""
  images = images_from_uint8(batch_uint8)
  mean, log_var = student.apply({'params': params}, images, method='encode')
  z = mean + jnp.exp(0.5 * log_var) * jax.random.normal(key, mean.shape)
  reconstruction = jax.nn.sigmoid(student.apply({'params': params}, z, method='decode'))
  squared_error = jnp.sum(jnp.square(reconstruction - losses.to_unit_interval(images)),
                          axis=(1, 2, 3))
  return squared_error + losses.gaussian_kl(mean, log_var)


def paper_nll(networks: Networks, student_params, images: np.ndarray, key: jax.Array,
              batch_size: int = 250) -> float:
  """Mean paper-NLL over uint8 images [N, H, W, C] (all of them, in batches)."""
  total = 0.0
  for i, start in enumerate(range(0, len(images), batch_size)):
    batch = images[start:start + batch_size]
    total += float(jnp.sum(_paper_nll_batch(networks.student, student_params, batch,
                                            jax.random.fold_in(key, i))))
  return total / len(images)
