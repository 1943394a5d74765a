"""Builders shared by the tests."""

import jax
import numpy as np

from ltgans_jax import state as state_lib, steps


def build(config):
  networks = state_lib.build_networks(config)
  optimizers = state_lib.build_optimizers(config)
  state = state_lib.init_state(config, networks, optimizers, jax.random.key(config.seed))
  return networks, optimizers, state, steps.make_train_steps(config, networks, optimizers)


def random_batch(config, seed=0):
  shape = (config.train.batch_size, config.data.image_size, config.data.image_size,
           config.data.channels)
  return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


def tree_equal(a, b):
  return all(np.array_equal(x, y) for x, y in
             zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)))


def copy_tree(tree):
  """A host copy (the steps donate their input state)."""
  return jax.tree_util.tree_map(np.array, tree)
