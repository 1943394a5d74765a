"""The order in which a training step's passes run: one at a time on the CPU.

Why: a LAKD step holds passes that do not depend on one another: the critic's passes over
real images, over fake ones and for its gradient penalty, the Assistant's pass for its own
update (its latents are ready from the start), the Student's pass over the data and its pass
over the Teacher's replayed samples, and the Student's update beside the adversarial ones.
XLA's scheduler is free to interleave them, which keeps their activations (16.8 MB for one
[64, 32, 32, 64] float32 map at the paper's sizes) live at the same time. On the 2-core EPYC
of ``experiments/results/benchmark/cpu_epyc/`` (32 MiB of L3) an element-wise pass over a
16 MB array ran at 39 GB/s, over a 64 MB one at 8 GB/s; our reading (not a measurement of
cache misses) is that interleaved passes work out of memory rather than the cache.
``after(tree, dependency)`` makes ``tree``'s consumers wait until every leaf of ``dependency``
is computed, so the passes run one after the other. The values are unchanged (an identity).
In one process, alternating (``experiments/benchmark_cpu_choices.py --setting phase_order``,
the paper's sizes), 'sequenced' ran the full LAKD step 1.11x (32 px) and 1.09x (64 px) as
fast as 'free', the Student step 1.25x / 1.17x (with its passes in two pieces, ``steps``).

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
  return conv.resolve_auto('train.phase_order', mode, PHASE_ORDERS, 'sequenced', 'free')


def after(tree: Any, dependency: Any, phase_order: str) -> Any:
  """``tree`` (a pytree of float arrays) unchanged; with ``phase_order='sequenced'`` its
  consumers wait until every leaf of ``dependency`` (a pytree of arrays) is computed."""
  if resolve_phase_order(phase_order) == 'free':
    return tree
  # One scalar that depends on every leaf: the first element of each, summed.
  token = sum(jnp.ravel(leaf)[0].astype(jnp.float32)
              for leaf in jax.tree_util.tree_leaves(dependency))
  return jax.tree_util.tree_map(lambda x: conv.fusion_barrier(x, token), tree)
