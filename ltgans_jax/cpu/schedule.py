"""A barrier between computations: ``after(tree, dependency)``.

The training loop fuses several steps into one jitted call (``run.fused``). Left alone, XLA
fuses work across the steps, and the values drift from those of the same steps jitted one by
one (float rounding). ``after`` makes ``tree``'s consumers wait until every leaf of
``dependency`` is computed, so each step is compiled as it is alone: the same values, bit for
bit. The values are unchanged (an identity); the fused calls apply it where the backend says
(``Backend.sequence_steps``: the CPU).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from ltgans_jax.cpu import conv


def after(tree: Any, dependency: Any) -> Any:
  """``tree`` (a pytree of arrays) unchanged, its consumers waiting until every leaf of
  ``dependency`` (a pytree of arrays) is computed."""
  # One scalar that depends on every leaf: the first element of each, summed.
  token = sum(jnp.ravel(leaf)[0].astype(jnp.float32)
              for leaf in jax.tree_util.tree_leaves(dependency))
  return jax.tree_util.tree_map(lambda x: conv.fusion_barrier(x, token), tree)
