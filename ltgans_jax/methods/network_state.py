"""What every method's state is made of: a network's parameters with its optimiser state.

Shared by all methods (``ltgans_state``, ``lgm``, ``curl``): ``NetworkState``,
``apply_gradients``, the Student VAE every method uses (matched capacity), its optimiser and
the GANs' optimiser.
"""

from __future__ import annotations

from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
import ml_collections
import optax

from ltgans_jax import models


class NetworkState(flax.struct.PyTreeNode):
  params: Any
  opt_state: Any


def apply_gradients(network: NetworkState, grads, optimizer: optax.GradientTransformation
                    ) -> NetworkState:
  """One optimiser update of ``network`` with ``grads`` (a pytree like its params)."""
  updates, opt_state = optimizer.update(grads, network.opt_state, network.params)
  return NetworkState(params=optax.apply_updates(network.params, updates), opt_state=opt_state)


def copy_tree(tree):
  """A copy with its own buffers: the steps donate the state, and one buffer may not be donated
  twice."""
  return jax.tree_util.tree_map(jnp.copy, tree)


def state_bytes(state) -> int:
  """Total bytes of every array in a state."""
  return sum(leaf.nbytes for leaf in jax.tree_util.tree_leaves(state))


def build_student(config: ml_collections.ConfigDict, layers: models.Layers
                  ) -> models.StudentVAE:
  """The Student VAE; the VAE-only baselines use it too (matched capacity). ``layers``: the
  convolution layers (the backend's: ``cpu.backend.Backend.layers``)."""
  data, vae = config.data, config.vae
  return models.StudentVAE(data.image_size, data.channels, vae.width, vae.latent_dim,
                           config.model.resample, conv=layers.conv,
                           conv_transpose=layers.conv_transpose)


GAN_OPTIMIZERS = ('adam', 'rmsprop')


def gan_optimizer(config: ml_collections.ConfigDict) -> optax.GradientTransformation:
  """The generators' and the critic's optimiser (``optim.gan_optimizer``).

  'adam': ours. 'rmsprop': the authors' code's ``tf.train.RMSPropOptimizer(2e-4)``, whose
  defaults are decay 0.9, no momentum and epsilon 1e-10 inside the square root, and whose mean
  squares start at 1 (optax's ``initial_scale``).
  """
  opt = config.optim
  if opt.gan_optimizer == 'rmsprop':
    return optax.rmsprop(opt.gan_learning_rate, decay=opt.rmsprop_decay, eps=opt.rmsprop_eps,
                         initial_scale=opt.rmsprop_initial_scale, eps_in_sqrt=True)
  return optax.adam(opt.gan_learning_rate, b1=opt.gan_b1, b2=opt.gan_b2)


def student_optimizer(config: ml_collections.ConfigDict) -> optax.GradientTransformation:
  """Adam for the Student (and the VAE baselines' VAEs)."""
  return optax.adam(config.optim.student_learning_rate, b1=config.optim.student_b1)
