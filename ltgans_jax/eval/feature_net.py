"""A small feature network the project trains itself, for FIDs where the Inception weights are
not available.

A convolutional classifier is trained on the task datasets' labels; its penultimate layer (128-d
by default, after a ReLU like Inception's pool3) gives the features. The Frechet distance on
these features is a different number from the FID of the literature (other features, other
scale), so it must be reported as ``FID_NAME``, never as "FID".

``train_feature_net(images, labels, num_classes, steps, key) -> params`` and
``features_fn(params)`` (uint8 [B, H, W, C] -> [B, D], for ``evaluation.fid``). The network's
sizes are read back from ``params``, so the parameters are all that needs keeping: one run
trains it once and keeps it in ``workdir/FILE_NAME`` (``trained_params``).
"""

from __future__ import annotations

import hashlib
import logging
import os
from typing import Any, Callable, Tuple

import flax.linen as nn
import flax.serialization
import jax
import jax.numpy as jnp
import numpy as np
import optax

from ltgans_jax import files, pixels
from ltgans_jax.errors import CheckpointError

FID_NAME = 'FID (own features)'
FEATURE_DIM = 128


class FeatureNet(nn.Module):
  """uint8-derived images [B, H, W, C] in [-1, 1] -> (features [B, feature_dim], logits [B,
  num_classes]).

  Two stages of two 3x3 convolutions and a 2x2 max pool, one more convolution, a global mean,
  then the feature layer and the classifier. H and W must be at least 4. No normalisation
  layers, so features are a pure function of (params, image).
  """
  num_classes: int
  width: int = 32
  feature_dim: int = FEATURE_DIM

  @nn.compact
  def __call__(self, x):
    for stage, features in enumerate((self.width, 2 * self.width)):
      x = nn.relu(nn.Conv(features, (3, 3), name=f'conv{stage}a')(x))
      x = nn.relu(nn.Conv(features, (3, 3), name=f'conv{stage}b')(x))
      x = nn.max_pool(x, (2, 2), (2, 2))
    x = nn.relu(nn.Conv(4 * self.width, (3, 3), name='conv2')(x))
    features = nn.relu(nn.Dense(self.feature_dim, name='features')(jnp.mean(x, axis=(1, 2))))
    return features, nn.Dense(self.num_classes, name='classifier')(features)


def _images(batch_uint8: jnp.ndarray) -> jnp.ndarray:
  return pixels.from_uint8(batch_uint8)


def module_from_params(params) -> FeatureNet:
  """The ``FeatureNet`` whose parameters ``params`` are (sizes read from the kernels)."""
  return FeatureNet(num_classes=params['classifier']['kernel'].shape[1],
                    width=params['conv0a']['kernel'].shape[-1],
                    feature_dim=params['features']['kernel'].shape[1])


def train_feature_net(images: np.ndarray, labels: np.ndarray, num_classes: int, steps: int,
                      key: jax.Array, batch_size: int = 64, learning_rate: float = 1e-3,
                      width: int = 32, feature_dim: int = FEATURE_DIM) -> Any:
  """Trains ``FeatureNet`` by softmax cross-entropy with Adam; returns its params.

  Args:
    images: [N, H, W, C] uint8 (all tasks' training images, at the sequence's common shape).
    labels: [N] integer class labels in [0, num_classes).
    num_classes: number of classes (e.g. the union of the tasks' classes).
    steps: optimiser steps, each on ``batch_size`` images drawn uniformly with replacement.
    key: PRNG key for the initialisation and the batches.
  Returns:
    The parameters; ``features_fn(params)`` gives the feature extractor.
  """
  labels = np.asarray(labels, np.int32)
  if len(images) != len(labels) or images.ndim != 4:
    raise ValueError(f'images {images.shape} and labels {labels.shape} do not match.')
  if labels.min() < 0 or labels.max() >= num_classes:
    raise ValueError(f'labels span [{labels.min()}, {labels.max()}], outside '
                     f'[0, {num_classes}).')
  model = FeatureNet(num_classes, width, feature_dim)
  init_key, data_key = jax.random.split(key)
  # Jitted: one compilation for all initialisers instead of one per parameter shape.
  params = jax.jit(model.init)(init_key, jnp.zeros((1,) + images.shape[1:], jnp.float32))['params']
  optimizer = optax.adam(learning_rate)
  # The dataset stays on the device, an argument of the step (a closed-over array would be
  # compiled into the program as a constant); each step gathers its batch there.
  images_device, labels_device = jnp.asarray(images), jnp.asarray(labels)

  @jax.jit
  def step(params, opt_state, step_key, images_device, labels_device):
    index = jax.random.randint(step_key, (batch_size,), 0, images_device.shape[0])

    def loss_fn(params):
      _, logits = model.apply({'params': params}, _images(images_device[index]))
      return optax.softmax_cross_entropy_with_integer_labels(logits, labels_device[index]).mean()

    loss, grads = jax.value_and_grad(loss_fn)(params)
    updates, opt_state = optimizer.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, loss

  opt_state = jax.jit(optimizer.init)(params)
  for i in range(steps):
    params, opt_state, loss = step(params, opt_state, jax.random.fold_in(data_key, i),
                                   images_device, labels_device)
    if (i + 1) % max(steps // 10, 1) == 0 or i + 1 == steps:
      logging.info('feature net step %d/%d: cross-entropy %.4f', i + 1, steps, float(loss))
  return params


def _apply_fn(params) -> Callable[[np.ndarray], Tuple[np.ndarray, np.ndarray]]:
  model = module_from_params(params)
  apply = jax.jit(lambda params, batch: model.apply({'params': params}, _images(batch)))
  return lambda batch_uint8: tuple(np.asarray(a) for a in apply(params, jnp.asarray(batch_uint8)))


def features_fn(params) -> Callable[[np.ndarray], np.ndarray]:
  """uint8 images [B, H, W, C] -> numpy features [B, feature_dim], for ``evaluation.fid``.

  Report the Frechet distance on them as ``FID_NAME``.
  """
  apply = _apply_fn(params)
  return lambda batch_uint8: apply(batch_uint8)[0]


def logits_fn(params) -> Callable[[np.ndarray], np.ndarray]:
  """uint8 images [B, H, W, C] -> numpy class logits [B, num_classes] (the replay audit)."""
  apply = _apply_fn(params)
  return lambda batch_uint8: apply(batch_uint8)[1]


def accuracy(params, images: np.ndarray, labels: np.ndarray, batch_size: int = 500) -> float:
  """Classification accuracy on uint8 images [N, H, W, C] with labels [N] (a sanity check that
  the features carry class information)."""
  apply = _apply_fn(params)
  correct = 0
  for start in range(0, len(images), batch_size):
    _, logits = apply(images[start:start + batch_size])
    correct += int(np.sum(np.argmax(logits, axis=-1) == labels[start:start + batch_size]))
  return correct / len(images)


# ------------------------------------------------------------------------------------------
# The trained network, kept in the workdir: trained once per run, read back on resume and by
# ``--mode=evaluate``.

FILE_NAME = 'feature_net.msgpack'


def _read_state_dict(path: str):
  """The state dict in ``path``; CheckpointError if the file is damaged."""
  try:
    with open(path, 'rb') as f:
      return flax.serialization.msgpack_restore(f.read())
  except Exception as e:  # pylint: disable=broad-except  # msgpack raises many kinds
    raise CheckpointError(f'{path} is damaged ({type(e).__name__}: {str(e)[:80]}); delete it '
                          'and the run trains the FID feature network afresh (same seed, same '
                          'images).') from None


def check_file(workdir: str) -> None:
  """Raises CheckpointError if the workdir's feature network file exists but is damaged."""
  path = os.path.join(workdir, FILE_NAME)
  if os.path.isfile(path):
    _read_state_dict(path)


def _read_params(path: str, template):
  """The parameters in ``path`` in the structure and shapes of ``template``; CheckpointError
  if the file is damaged or holds a network of other sizes."""
  stored = _read_state_dict(path)
  try:
    params = flax.serialization.from_state_dict(template, stored)
    fits = (jax.tree_util.tree_structure(params) == jax.tree_util.tree_structure(template)
            and all(np.shape(a) == b.shape for a, b in zip(
                jax.tree_util.tree_leaves(params), jax.tree_util.tree_leaves(template))))
  except (ValueError, KeyError, TypeError):
    fits = False
  if not fits:
    raise CheckpointError(f'{path} holds a feature network of other sizes than this '
                          'sequence needs; delete it and the run trains it afresh.')
  return params


def _shapes(images: np.ndarray, labels: np.ndarray, num_classes: int, key: jax.Array):
  """The classifier's parameter shapes and dtypes (no training)."""
  return jax.eval_shape(lambda: train_feature_net(images[:2], labels[:2], num_classes, 0, key))


def cache_file(folder: str, images: np.ndarray, labels: np.ndarray, num_classes: int,
               steps: int, key: jax.Array, shapes=None) -> str:
  """Where ``folder`` keeps the classifier of ``train_feature_net(images, labels, num_classes,
  steps, key)``: a file named by a digest of everything that decides it (the images and labels
  themselves, the classes, steps, key and the network's ``shapes``)."""
  shapes = shapes or _shapes(images, labels, num_classes, key)
  digest = hashlib.sha256()
  for part in (np.ascontiguousarray(images), np.ascontiguousarray(labels).astype(np.int64),
               np.asarray(jax.random.key_data(key))):
    digest.update(str((part.shape, part.dtype)).encode())
    digest.update(part.tobytes())
  digest.update(repr((num_classes, steps, jax.tree_util.tree_map(
      lambda leaf: leaf.shape, shapes))).encode())
  return os.path.join(folder, f'feature_net_{digest.hexdigest()[:24]}.msgpack')


def trained_params(workdir: str, images: np.ndarray, labels: np.ndarray, num_classes: int,
                   steps: int, key: jax.Array, cache_folder: str = '') -> Any:
  """The classifier of ``train_feature_net(images, labels, num_classes, steps, key)``, read
  back from ``workdir`` where an earlier process trained it, else from ``cache_folder`` where
  another run trained it on the same images with the same key (``eval.feature_net_cache``:
  the runs of one seed and sequence then share one instrument, and all but the first skip its
  training), else trained; written to ``workdir`` (and the cache) by process 0, whole or not at
  all: a full disk leaves no damaged file.

  Args:
    images: [N, H, W, C] uint8, every task's training images.
    labels: [N] class labels in [0, num_classes), unique per (task, class).
    cache_folder: '' for no cache.
  """
  path = os.path.join(workdir, FILE_NAME)
  template = _shapes(images, labels, num_classes, key)
  if os.path.exists(path):
    return _read_params(path, template)
  cached = (cache_file(cache_folder, images, labels, num_classes, steps, key, template)
            if cache_folder else '')
  params = None
  if cached and os.path.exists(cached):
    try:
      params = _read_params(cached, template)
      logging.info('The FID feature network from the cache %s (an earlier run trained it on '
                   'the same images with the same key and steps).', cached)
    except CheckpointError as e:  # a damaged cache file costs a retraining, never the run
      logging.warning('%s; training the feature network afresh and replacing it.', e)
  if params is None:
    logging.info('Training the FID feature network on %d images of %d (task, class) pairs.',
                 len(images), num_classes)
    params = train_feature_net(images, labels, num_classes, steps, key)
    logging.info('Feature network accuracy on the training images: %.3f',
                 accuracy(params, images[:2000], labels[:2000]))
    if cached and jax.process_index() == 0:
      try:
        os.makedirs(cache_folder, exist_ok=True)
        files.write_atomically(cached, flax.serialization.to_bytes(params))
      except OSError as e:  # the cache is a saving, never a reason to stop the run
        logging.warning('Cannot keep the feature network in eval.feature_net_cache=%s (%s); '
                        'the run goes on without it.', cache_folder, e)
  if jax.process_index() == 0:
    files.write_atomically(path, flax.serialization.to_bytes(params))
  return params
