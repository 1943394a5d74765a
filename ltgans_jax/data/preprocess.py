"""Brings images of any source to the common shape of a task sequence.

Grey images are copied to 3 channels (or colour ones averaged to 1) and resized with an
antialiased bilinear filter, so MNIST's 28x28x1 and SVHN's 32x32x3 meet at, say, 32x32x3,
as in the authors' code. Images stay uint8 in [0, 255]; the steps map them to [-1, 1].
"""

from __future__ import annotations

import jax
import numpy as np

_CHUNK = 4096  # images resized at a time, to bound memory on 60k-image datasets


def to_channels(images: np.ndarray, channels: int) -> np.ndarray:
  """[N, H, W, C] uint8 -> [N, H, W, channels] uint8."""
  if images.shape[-1] == channels:
    return images
  if channels == 3 and images.shape[-1] == 1:
    return np.repeat(images, 3, axis=-1)
  if channels == 1 and images.shape[-1] == 3:
    return np.round(images.mean(axis=-1, keepdims=True)).astype(np.uint8)
  raise ValueError(f'cannot convert {images.shape[-1]} channels to {channels}; use 1 or 3.')


def resize(images: np.ndarray, size: int) -> np.ndarray:
  """[N, H, W, C] uint8 -> [N, size, size, C] uint8 (antialiased bilinear)."""
  if images.shape[1:3] == (size, size):
    return images
  out = []
  for start in range(0, len(images), _CHUNK):
    chunk = images[start:start + _CHUNK].astype(np.float32)
    shape = (len(chunk), size, size, chunk.shape[-1])
    out.append(np.asarray(jax.image.resize(chunk, shape, 'bilinear', antialias=True)))
  return np.clip(np.round(np.concatenate(out)), 0, 255).astype(np.uint8)


def to_common_shape(images: np.ndarray, size: int, channels: int) -> np.ndarray:
  """[N, H, W, C] uint8 -> [N, size, size, channels] uint8."""
  return resize(to_channels(images, channels), size)


def invert(images: np.ndarray) -> np.ndarray:
  """Photographic negative of uint8 images (the authors' 'inverted' domains)."""
  return 255 - images
