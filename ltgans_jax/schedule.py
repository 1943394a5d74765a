"""The order in which a training step's passes run: one at a time on the CPU.

Why: a LAKD step holds passes that do not depend on one another: the critic's passes over
real images, over fake ones and for its gradient penalty, the Assistant's pass for its own
update (its latents are ready from the start), the Student's pass over the data and its pass
over the Teacher's replayed samples, and the Student's update beside the adversarial ones.
XLA's scheduler is free to interleave them, and on the CPU it does, so their activations
(16.8 MB for one [64, 32, 32, 64] float32 map at the paper's sizes) are live at the same time
and fall out of the cache. On the 2-core EPYC of ``experiments/results/benchmark/cpu_epyc/``
(32 MiB of L3), an element-wise pass over 16 MB arrays ran at 39 GB/s while they fitted in
the cache and 8 GB/s once they did not. ``after(tree, dependency)`` makes ``tree``'s
consumers wait until every leaf of ``dependency`` is computed, so the passes run one after the
other, each on a working set that fits. The values are unchanged (an identity).

``config.train.phase_order``: 'auto' ('sequenced' on the CPU backend, 'free' elsewhere),
'sequenced' or 'free' (XLA's own order). On GPUs and TPUs the passes are large enough to
fill the device, and the barrier is a loop whose trip count the host would read back
(reasoned, not measured), so 'auto' leaves XLA's order there.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from ltgans_jax import conv

PHASE_ORDERS = ('auto', 'sequenced', 'free')


def resolve_phase_order(mode: str) -> str:
  """'auto' -> 'sequenced' on the CPU backend, 'free' elsewhere; other modes unchanged."""
  if mode not in PHASE_ORDERS:
    raise ValueError(f'train.phase_order={mode!r}; use one of {PHASE_ORDERS}.')
  if mode == 'auto':
    return 'sequenced' if jax.default_backend() == 'cpu' else 'free'
  return mode


def after(tree: Any, dependency: Any, phase_order: str) -> Any:
  """``tree`` (a pytree of float arrays) unchanged; with ``phase_order='sequenced'`` its
  consumers wait until every leaf of ``dependency`` (a pytree of arrays) is computed."""
  if resolve_phase_order(phase_order) == 'free':
    return tree
  # One scalar that depends on every leaf: the first element of each, summed.
  token = sum(jnp.ravel(leaf)[0].astype(jnp.float32)
              for leaf in jax.tree_util.tree_leaves(dependency))
  return jax.tree_util.tree_map(lambda x: conv.fusion_barrier(x, token), tree)
