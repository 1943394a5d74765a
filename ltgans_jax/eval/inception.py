"""The FID Inception network (pytorch-fid's InceptionV3) in Flax, and its weights' loader.

``InceptionV3`` is the network pytorch-fid uses for FID: torchvision's Inception v3 with the
TensorFlow FID graph's quirks (``FIDInceptionA/C/E_1``: average pools that ignore the zero
padding; ``FIDInceptionE_2``: a max pool in the pool branch), returning the 2048-d pool3
features. Inputs are NHWC images in [-1, 1] (the project's convention), resized bilinearly to
299x299 without antialiasing as ``F.interpolate(..., mode='bilinear', align_corners=False)``
does; resizing [-1, 1] images is the same as pytorch-fid's resize of [0, 1] images followed by
``2x - 1`` because bilinear weights sum to one. Grey images are repeated to 3 channels.

Module and parameter names follow the PyTorch state dict (``Mixed_5b.branch1x1.conv.weight``
is ``params['Mixed_5b']['branch1x1']['conv']['kernel']``), with batch norm kept as
``nn.BatchNorm`` in inference mode (eps = 0.001) so that every tensor of the file has one place.

``load_fid_inception_params(path)`` reads pytorch-fid's ``pt_inception-2015-12-05-6726825d.pth``
without torch (``torch_pickle.read_torch_state_dict``) and maps its names onto the Flax tree;
``fid_variables(path)`` reads them once per process, for the runs' evaluation.
``tests/test_inception_parity.py`` checks the whole network against pytorch-fid's own.

This project never downloads the weights: put the file somewhere and pass its path.
"""

from __future__ import annotations

import functools
import os
import pickle
from typing import Any, Callable, Dict, Mapping, Optional, Sequence, Tuple
import zipfile

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from ltgans_jax import pixels
from ltgans_jax.errors import ConfigError
from ltgans_jax.eval.torch_pickle import read_torch_state_dict, TorchFormatError

FID_NAME = 'FID'  # the name of an FID computed with these features (pytorch-fid's)
WEIGHTS_FILE = 'pt_inception-2015-12-05-6726825d.pth'
FEATURE_DIM = 2048
NUM_CLASSES = 1008  # the TF graph's classifier (1000 ImageNet classes + 8 unused)
INPUT_SIZE = 299
BN_EPSILON = 1e-3

# ------------------------------------------------------------------------------------------
# The network.

Padding = Tuple[int, int]


class BasicConv2d(nn.Module):
  """Convolution without bias, batch norm (running statistics), ReLU: [B, H, W, C] -> [B, H', W',
  features]. ``padding`` is (rows, columns) of zeros on each side, as PyTorch's."""
  features: int
  kernel_size: Tuple[int, int]
  strides: Tuple[int, int] = (1, 1)
  padding: Padding = (0, 0)

  @nn.compact
  def __call__(self, x):
    x = nn.Conv(self.features, self.kernel_size, self.strides,
                padding=[(self.padding[0],) * 2, (self.padding[1],) * 2], use_bias=False,
                name='conv')(x)
    x = nn.BatchNorm(use_running_average=True, epsilon=BN_EPSILON, name='bn')(x)
    return nn.relu(x)


def _avg_pool_3x3_same(x):
  """3x3 stride-1 average over the valid pixels only (TF's pool; count_include_pad=False)."""
  return nn.avg_pool(x, (3, 3), (1, 1), padding=((1, 1), (1, 1)), count_include_pad=False)


def _max_pool_3x3(x, strides=(2, 2), padding='VALID'):
  return nn.max_pool(x, (3, 3), strides, padding=padding)


class FIDInceptionA(nn.Module):
  """[B, H, W, C] -> [B, H, W, 224 + pool_features]."""
  pool_features: int

  @nn.compact
  def __call__(self, x):
    branch1x1 = BasicConv2d(64, (1, 1), name='branch1x1')(x)
    branch5x5 = BasicConv2d(48, (1, 1), name='branch5x5_1')(x)
    branch5x5 = BasicConv2d(64, (5, 5), padding=(2, 2), name='branch5x5_2')(branch5x5)
    branch3x3dbl = BasicConv2d(64, (1, 1), name='branch3x3dbl_1')(x)
    branch3x3dbl = BasicConv2d(96, (3, 3), padding=(1, 1), name='branch3x3dbl_2')(branch3x3dbl)
    branch3x3dbl = BasicConv2d(96, (3, 3), padding=(1, 1), name='branch3x3dbl_3')(branch3x3dbl)
    branch_pool = BasicConv2d(self.pool_features, (1, 1),
                              name='branch_pool')(_avg_pool_3x3_same(x))
    return jnp.concatenate([branch1x1, branch5x5, branch3x3dbl, branch_pool], axis=-1)


class InceptionB(nn.Module):
  """Grid reduction (Mixed_6a): [B, H, W, C] -> [B, (H-3)/2+1, (W-3)/2+1, 480 + C]."""

  @nn.compact
  def __call__(self, x):
    branch3x3 = BasicConv2d(384, (3, 3), strides=(2, 2), name='branch3x3')(x)
    branch3x3dbl = BasicConv2d(64, (1, 1), name='branch3x3dbl_1')(x)
    branch3x3dbl = BasicConv2d(96, (3, 3), padding=(1, 1), name='branch3x3dbl_2')(branch3x3dbl)
    branch3x3dbl = BasicConv2d(96, (3, 3), strides=(2, 2), name='branch3x3dbl_3')(branch3x3dbl)
    return jnp.concatenate([branch3x3, branch3x3dbl, _max_pool_3x3(x)], axis=-1)


class FIDInceptionC(nn.Module):
  """Factorised 7x7 block: [B, H, W, C] -> [B, H, W, 768]."""
  channels_7x7: int

  @nn.compact
  def __call__(self, x):
    c7 = self.channels_7x7
    branch1x1 = BasicConv2d(192, (1, 1), name='branch1x1')(x)
    branch7x7 = BasicConv2d(c7, (1, 1), name='branch7x7_1')(x)
    branch7x7 = BasicConv2d(c7, (1, 7), padding=(0, 3), name='branch7x7_2')(branch7x7)
    branch7x7 = BasicConv2d(192, (7, 1), padding=(3, 0), name='branch7x7_3')(branch7x7)
    dbl = BasicConv2d(c7, (1, 1), name='branch7x7dbl_1')(x)
    dbl = BasicConv2d(c7, (7, 1), padding=(3, 0), name='branch7x7dbl_2')(dbl)
    dbl = BasicConv2d(c7, (1, 7), padding=(0, 3), name='branch7x7dbl_3')(dbl)
    dbl = BasicConv2d(c7, (7, 1), padding=(3, 0), name='branch7x7dbl_4')(dbl)
    dbl = BasicConv2d(192, (1, 7), padding=(0, 3), name='branch7x7dbl_5')(dbl)
    branch_pool = BasicConv2d(192, (1, 1), name='branch_pool')(_avg_pool_3x3_same(x))
    return jnp.concatenate([branch1x1, branch7x7, dbl, branch_pool], axis=-1)


class InceptionD(nn.Module):
  """Grid reduction (Mixed_7a): [B, H, W, C] -> [B, (H-3)/2+1, (W-3)/2+1, 512 + C]."""

  @nn.compact
  def __call__(self, x):
    branch3x3 = BasicConv2d(192, (1, 1), name='branch3x3_1')(x)
    branch3x3 = BasicConv2d(320, (3, 3), strides=(2, 2), name='branch3x3_2')(branch3x3)
    branch7x7x3 = BasicConv2d(192, (1, 1), name='branch7x7x3_1')(x)
    branch7x7x3 = BasicConv2d(192, (1, 7), padding=(0, 3), name='branch7x7x3_2')(branch7x7x3)
    branch7x7x3 = BasicConv2d(192, (7, 1), padding=(3, 0), name='branch7x7x3_3')(branch7x7x3)
    branch7x7x3 = BasicConv2d(192, (3, 3), strides=(2, 2), name='branch7x7x3_4')(branch7x7x3)
    return jnp.concatenate([branch3x3, branch7x7x3, _max_pool_3x3(x)], axis=-1)


class FIDInceptionE(nn.Module):
  """Expanded-filter block: [B, H, W, C] -> [B, H, W, 2048].

  ``pool='avg'`` is FIDInceptionE_1 (Mixed_7b), ``pool='max'`` FIDInceptionE_2 (Mixed_7c),
  whose pool branch the TF FID graph computes with a 3x3 stride-1 max pool.
  """
  pool: str = 'avg'

  @nn.compact
  def __call__(self, x):
    branch1x1 = BasicConv2d(320, (1, 1), name='branch1x1')(x)
    branch3x3 = BasicConv2d(384, (1, 1), name='branch3x3_1')(x)
    branch3x3 = jnp.concatenate([
        BasicConv2d(384, (1, 3), padding=(0, 1), name='branch3x3_2a')(branch3x3),
        BasicConv2d(384, (3, 1), padding=(1, 0), name='branch3x3_2b')(branch3x3)], axis=-1)
    dbl = BasicConv2d(448, (1, 1), name='branch3x3dbl_1')(x)
    dbl = BasicConv2d(384, (3, 3), padding=(1, 1), name='branch3x3dbl_2')(dbl)
    dbl = jnp.concatenate([
        BasicConv2d(384, (1, 3), padding=(0, 1), name='branch3x3dbl_3a')(dbl),
        BasicConv2d(384, (3, 1), padding=(1, 0), name='branch3x3dbl_3b')(dbl)], axis=-1)
    if self.pool == 'avg':
      pooled = _avg_pool_3x3_same(x)
    else:  # -inf padding, as F.max_pool2d's
      pooled = _max_pool_3x3(x, (1, 1), ((1, 1), (1, 1)))
    branch_pool = BasicConv2d(192, (1, 1), name='branch_pool')(pooled)
    return jnp.concatenate([branch1x1, branch3x3, dbl, branch_pool], axis=-1)


def resize_bilinear(images: jnp.ndarray, size: int) -> jnp.ndarray:
  """[B, H, W, C] -> [B, size, size, C], bilinear with half-pixel centres and no antialiasing.

  The same as PyTorch's ``F.interpolate(mode='bilinear', align_corners=False)`` (edge pixels
  replicate outward), which pytorch-fid uses; ``jax.image.resize`` would antialias when
  shrinking.
  """
  if images.shape[1:3] == (size, size):
    return images
  return jax.image.resize(images, (images.shape[0], size, size, images.shape[3]), 'bilinear',
                          antialias=False)


class InceptionV3(nn.Module):
  """pytorch-fid's FID InceptionV3: images [B, H, W, C] in [-1, 1], C in {1, 3} -> pool3
  features [B, 2048] (and, with ``with_logits``, the 1008 classifier logits as well).

  ``resize_input=False`` skips the 299x299 resize; the network then needs H, W >= 75 (the
  smallest size every valid convolution and pool accepts), which keeps tests small.
  """
  resize_input: bool = True
  with_logits: bool = False

  @nn.compact
  def __call__(self, images):
    x = images.astype(jnp.float32)
    if x.shape[-1] == 1:
      x = jnp.repeat(x, 3, axis=-1)
    if self.resize_input:
      x = resize_bilinear(x, INPUT_SIZE)
    x = BasicConv2d(32, (3, 3), strides=(2, 2), name='Conv2d_1a_3x3')(x)
    x = BasicConv2d(32, (3, 3), name='Conv2d_2a_3x3')(x)
    x = BasicConv2d(64, (3, 3), padding=(1, 1), name='Conv2d_2b_3x3')(x)
    x = _max_pool_3x3(x)
    x = BasicConv2d(80, (1, 1), name='Conv2d_3b_1x1')(x)
    x = BasicConv2d(192, (3, 3), name='Conv2d_4a_3x3')(x)
    x = _max_pool_3x3(x)
    x = FIDInceptionA(32, name='Mixed_5b')(x)
    x = FIDInceptionA(64, name='Mixed_5c')(x)
    x = FIDInceptionA(64, name='Mixed_5d')(x)
    x = InceptionB(name='Mixed_6a')(x)
    x = FIDInceptionC(128, name='Mixed_6b')(x)
    x = FIDInceptionC(160, name='Mixed_6c')(x)
    x = FIDInceptionC(160, name='Mixed_6d')(x)
    x = FIDInceptionC(192, name='Mixed_6e')(x)
    x = InceptionD(name='Mixed_7a')(x)
    x = FIDInceptionE('avg', name='Mixed_7b')(x)
    x = FIDInceptionE('max', name='Mixed_7c')(x)
    features = jnp.mean(x, axis=(1, 2))  # AdaptiveAvgPool2d((1, 1)): pool3, [B, 2048]
    if self.with_logits:
      return features, nn.Dense(NUM_CLASSES, name='fc')(features)
    return features


def variable_shapes(with_logits: bool = False) -> Dict[str, Any]:
  """The variables' tree ({'params': ..., 'batch_stats': ...}) of ``jax.ShapeDtypeStruct``
  leaves, traced, not computed."""
  model = InceptionV3(resize_input=False, with_logits=with_logits)
  return jax.eval_shape(model.init, jax.random.key(0),
                        jax.ShapeDtypeStruct((1, 75, 75, 3), jnp.float32))


def features_fn(variables, resize_input: bool = True) -> Callable[[np.ndarray], np.ndarray]:
  """uint8 images [B, H, W, C] -> numpy pool3 features [B, 2048], jitted, for ``evaluation.fid``.

  Report the FID it gives as ``FID_NAME``.
  """
  model = InceptionV3(resize_input=resize_input)
  # On the device once, and passed as an argument: closed-over arrays would be baked into the
  # compiled program as ~90 MB of constants.
  variables = jax.device_put(variables)

  @jax.jit
  def apply(variables, batch_uint8):
    images = pixels.from_uint8(batch_uint8)
    return model.apply(variables, images)

  return lambda batch_uint8: np.asarray(apply(variables, jnp.asarray(batch_uint8)))


# ------------------------------------------------------------------------------------------
# pytorch-fid names -> the Flax tree.


def _set(tree: Dict[str, Any], path: Sequence[str], leaf: str, value: np.ndarray) -> None:
  for part in path:
    tree = tree.setdefault(part, {})
  if leaf in tree:
    raise TorchFormatError(f'{".".join(path)}.{leaf} is set twice.')
  tree[leaf] = value


def flax_variables_from_state_dict(state_dict: Mapping[str, np.ndarray],
                                   include_fc: bool = False) -> Dict[str, Any]:
  """pytorch-fid's state dict -> {'params': ..., 'batch_stats': ...} of ``InceptionV3``.

  Convolution weights OIHW -> HWIO; batch-norm weight/bias -> scale/bias in ``params``,
  running_mean/var -> mean/var in ``batch_stats``; ``fc`` (kept only with ``include_fc``, for
  ``InceptionV3(with_logits=True)``) [out, in] -> kernel [in, out]. Every leaf is checked
  against the network's own shapes; ``num_batches_tracked`` counters are dropped.
  """
  params: Dict[str, Any] = {}
  batch_stats: Dict[str, Any] = {}
  for name, value in state_dict.items():
    value = np.asarray(value)
    *path, layer, leaf = name.split('.')
    if leaf == 'num_batches_tracked':
      continue
    if layer == 'fc' and not path:
      if include_fc:
        _set(params, ['fc'], {'weight': 'kernel', 'bias': 'bias'}[leaf],
             value.T if leaf == 'weight' else value)
      continue
    if layer == 'conv' and leaf == 'weight' and value.ndim == 4:
      _set(params, path + ['conv'], 'kernel', value.transpose(2, 3, 1, 0).astype(np.float32))
    elif layer == 'bn' and leaf in ('weight', 'bias'):
      _set(params, path + ['bn'], {'weight': 'scale', 'bias': 'bias'}[leaf],
           value.astype(np.float32))
    elif layer == 'bn' and leaf in ('running_mean', 'running_var'):
      _set(batch_stats, path + ['bn'], {'running_mean': 'mean', 'running_var': 'var'}[leaf],
           value.astype(np.float32))
    else:
      raise TorchFormatError(f'unexpected tensor {name} {value.shape}; is this the FID '
                             f'Inception file ({WEIGHTS_FILE})?')
  variables = {'params': params, 'batch_stats': batch_stats}
  _check_shapes(variables, variable_shapes(with_logits=include_fc))
  return variables


def _check_shapes(variables, expected) -> None:
  got = {jax.tree_util.keystr(p): tuple(np.shape(v))
         for p, v in jax.tree_util.tree_leaves_with_path(variables)}
  want = {jax.tree_util.keystr(p): tuple(v.shape)
          for p, v in jax.tree_util.tree_leaves_with_path(expected)}
  missing, extra = sorted(set(want) - set(got)), sorted(set(got) - set(want))
  wrong = [f'{k}: {got[k]} (want {want[k]})' for k in sorted(set(got) & set(want))
           if got[k] != want[k]]
  if missing or extra or wrong:
    raise TorchFormatError(f'not the FID Inception weights: missing {missing[:5]}, unexpected '
                           f'{extra[:5]}, wrong shapes {wrong[:5]} '
                           f'({len(missing)}, {len(extra)}, {len(wrong)} in all).')


def load_fid_inception_params(path: str, include_fc: bool = False) -> Dict[str, Any]:
  """Reads pytorch-fid's ``pt_inception-2015-12-05-6726825d.pth`` (no torch needed).

  Returns the ``InceptionV3`` variables {'params', 'batch_stats'} as float32 numpy arrays.
  """
  if not os.path.isfile(path):
    raise FileNotFoundError(f'{path}: no such file; the FID Inception weights are pytorch-fid\'s '
                            f'{WEIGHTS_FILE} (this project does not download them).')
  return flax_variables_from_state_dict(read_torch_state_dict(path), include_fc)


@functools.lru_cache(maxsize=1)
def _read_fid_variables(path: str) -> Dict[str, Any]:
  try:
    return load_fid_inception_params(path)
  except (OSError, ValueError, KeyError, EOFError, pickle.UnpicklingError,
          zipfile.BadZipFile) as e:  # the torch reader's own errors are ValueErrors
    raise ConfigError(f'eval.inception_weights={path!r} cannot be read ({type(e).__name__}: '
                      f'{str(e)[:100]}); use pytorch-fid\'s {WEIGHTS_FILE}, or leave '
                      'eval.inception_weights empty.') from None


def fid_variables(path: str) -> Optional[Dict[str, Any]]:
  """The variables of ``eval.inception_weights`` = ``path`` (None when it is empty), read once
  per process; ConfigError if the file is not the FID Inception weights."""
  return _read_fid_variables(path) if path else None
