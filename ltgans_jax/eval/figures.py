"""The paper's latent-space pictures of the Student (Figs. 2-3): interpolations between two
encoded images, of the same task and of different tasks, and latent traversals (one latent
variable swept while the others stay fixed; meaningful for the beta-VAE Student, eq. 6)."""

from __future__ import annotations

import os
import re
from typing import Dict, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from ltgans_jax import pixels, viz


def _decode(vae, z):
  """[N, L] -> [N, H, W, C] in [-1, 1] (the decoder's mean image)."""
  return pixels.from_logits(vae.decode(z))


def _encode_mean(vae, images_uint8):
  """uint8 [N, H, W, C] -> the posterior means [N, L], on the host."""
  mean, _ = vae.encode(pixels.from_uint8(jnp.asarray(images_uint8)))
  return np.asarray(mean)


def interpolation_grid(vae, pairs, steps: int = 8) -> np.ndarray:
  """One row per (image_a, image_b) pair of uint8 [H, W, C] images: a, the decoded points
  of the straight line between their posterior means, b. -> uint8 grid."""
  rows = []
  # The latents are built on the host: a few small arrays, not a compiled program each.
  weights = np.linspace(0.0, 1.0, steps, dtype=np.float32)[:, None]
  for a, b in pairs:
    z = _encode_mean(vae, np.stack([a, b]))
    line = _decode(vae, (1 - weights) * z[0] + weights * z[1])
    rows.append(np.concatenate([pixels.from_uint8(a[None]), np.asarray(line),
                                pixels.from_uint8(b[None])]))
  return viz.image_grid(np.concatenate(rows), len(pairs))


def traversal_grid(vae, image_uint8, num_dims: int = 8, steps: int = 9,
                   span: float = 3.0) -> np.ndarray:
  """Rows: the ``num_dims`` latent variables with the smallest posterior variance for this image
  (the ones the encoder uses; unused ones stay at the prior's variance 1); columns: that
  variable swept over [-span, span], the others at the image's posterior mean. -> uint8 grid."""
  mean, log_var = vae.encode(pixels.from_uint8(jnp.asarray(image_uint8[None])))
  dims = np.argsort(np.asarray(log_var[0]))[:num_dims]
  values = np.linspace(-span, span, steps, dtype=np.float32)
  rows = []
  for d in dims:
    z = np.repeat(np.asarray(mean), steps, axis=0)
    z[:, d] = values
    rows.append(np.asarray(_decode(vae, z)))
  return viz.image_grid(np.concatenate(rows), len(dims))


def write_latent_figures(vae, names: Sequence[str], test_images: Sequence[np.ndarray],
                         workdir: str, prefix: str = 'final') -> Dict[str, str]:
  """Writes interpolation (same task, across tasks) and traversal grids; returns name -> path
  relative to the workdir.

  Args:
    vae: the method's ``base.VAEView``.
    names: the task names.
    test_images: per task, its evaluation subset (uint8 [n_t >= 2, H, W, C],
      ``eval_subset``): the pictures use its first images, which come from different classes.
  """
  files = {}
  firsts = list(test_images)
  # Two images per task suffice (the up-front check asks for two, the FID's need): a task
  # with four or more adds a second same-task pair.
  same = [(x[0], x[1]) for x in firsts] + [(x[2], x[3]) for x in firsts if len(x) >= 4]
  pictures = {'interpolation_same_task': interpolation_grid(vae, same)}
  if len(firsts) > 1:
    across = [(firsts[i][j], firsts[(i + 1) % len(firsts)][j])
              for i in range(len(firsts)) for j in range(2)]
    pictures['interpolation_across_tasks'] = interpolation_grid(vae, across)
  for i, name in enumerate(names):
    safe_name = re.sub(r'[^A-Za-z0-9_-]+', '_', name).strip('_')
    pictures[f'traversal_{safe_name}'] = traversal_grid(vae, firsts[i][0])
  for name, grid in pictures.items():
    files[name] = f'figures/{prefix}_{name}.png'
    if jax.process_index() == 0:
      viz.save_png(os.path.join(workdir, files[name]), grid,
                   scale=viz.display_scale(firsts[0].shape[1]))
  return files
