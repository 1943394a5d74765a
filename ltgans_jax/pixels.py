"""The one pixel convention: how images move between storage, the networks and pictures.

* Stored and fed: uint8 in [0, 255], NHWC (datasets, batches, saved samples).
* Inside the networks: float32 in [-1, 1] (the generators' tanh range, the critic's input).
* The Student's decoder gives logits; its mean image is their sigmoid, in [0, 1], the range of
  its likelihood and of the paper's NLL; ``from_logits`` returns it in [-1, 1] like the rest.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np


def from_uint8(batch: jnp.ndarray) -> jnp.ndarray:
  """[..., H, W, C] uint8 in [0, 255] -> float32 in [-1, 1], same shape."""
  return batch.astype(jnp.float32) / 127.5 - 1.0


def to_uint8(images) -> np.ndarray:
  """[..., H, W, C] floats in [-1, 1] -> a host uint8 array in [0, 255] (rounded, clipped)."""
  return np.clip(np.round((np.asarray(images, np.float32) + 1.0) * 127.5), 0, 255
                 ).astype(np.uint8)


def to_unit_interval(images: jnp.ndarray) -> jnp.ndarray:
  """Images in [-1, 1] -> [0, 1]; same shape."""
  return (images + 1.0) * 0.5


def from_logits(logits: jnp.ndarray) -> jnp.ndarray:
  """A decoder's logits [..., H, W, C] -> its mean image in [-1, 1] (sigmoid, rescaled)."""
  return jax.nn.sigmoid(logits) * 2 - 1
