"""Pictures: image grids written as PNG files."""

from __future__ import annotations

import os

import numpy as np

from ltgans_jax import pixels as pixel_lib
from PIL import Image


def image_grid(images: np.ndarray, rows: int) -> np.ndarray:
  """[N, H, W, C] floats in [-1, 1] -> one uint8 image [rows*(H+1)+1, cols*(W+1)+1, C].

  Images are laid out row by row with a 1-pixel grey border; N must be a multiple of rows.
  """
  images = np.asarray(images, np.float32)
  n, h, w, c = images.shape
  cols = n // rows
  pixels = pixel_lib.to_uint8(images)
  grid = np.full((rows * (h + 1) + 1, cols * (w + 1) + 1, c), 128, np.uint8)
  for i in range(rows * cols):
    r, col = divmod(i, cols)
    grid[1 + r * (h + 1):(r + 1) * (h + 1), 1 + col * (w + 1):(col + 1) * (w + 1)] = pixels[i]
  return grid


def display_scale(image_size: int) -> int:
  """How much the written PNGs enlarge a grid of ``image_size``-pixel images: to at least 56
  pixels per image (2 for 28-64 px, 4 for 16 px), so that small images stay legible."""
  return max(2, -(-56 // image_size))


def save_png(path: str, grid: np.ndarray, scale: int = 1) -> None:
  """Writes a uint8 [H, W, C] image (C = 1 or 3), optionally enlarged by ``scale``."""
  os.makedirs(os.path.dirname(path) or '.', exist_ok=True)
  image = Image.fromarray(grid[..., 0] if grid.shape[-1] == 1 else grid)
  if scale > 1:
    image = image.resize((image.width * scale, image.height * scale), Image.NEAREST)
  image.save(path)
