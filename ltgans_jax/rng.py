"""Random keys derived, never carried: a resumed run draws exactly the keys an uninterrupted
one would, and training, evaluation and pictures never share a stream."""

import jax

# Streams outside training (``stream_key``), one number each.
(GRID_LATENTS, STUDENT_GRID_LATENTS, PAPER_NLL, FEATURE_NET, FID_LATENTS, IWAE,
 AUDIT_LATENTS) = range(7)


def step_key(seed: int, task: int, step: int) -> jax.Array:
  """The key of training step ``step`` of task ``task``."""
  return jax.random.fold_in(jax.random.fold_in(jax.random.key(seed), task), step)


def stream_key(seed: int, stream: int) -> jax.Array:
  """A key for one of the non-training streams above."""
  return jax.random.fold_in(jax.random.key(seed + 1), stream)
