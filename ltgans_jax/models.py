"""Flax modules of LT-GANs: the generator (Teacher and Assistant), the WGAN critic, and the
Student VAE's encoder and decoder. Networks only; losses and steps live elsewhere.

All images are NHWC. Supported sizes are 16, 28, 32 and 64 pixels with 1 or 3 channels: the
generator starts from a 7x7 (28 px) or 4x4 (16, 32, 64 px) map and doubles the resolution 2, 3
or 4 times; the critic and the encoder mirror it.

Resolution changes are written in two interchangeable ways (``config.model.resample``):

* ``'pixel_shuffle'`` (default): upsampling is a stride-1 2x2 convolution to 4x the channels
  followed by depth-to-space (a sub-pixel convolution), downsampling is space-to-depth followed
  by a stride-1 2x2 convolution. These are the same function classes as a 4x4 stride-2
  transposed convolution and a 4x4 stride-2 convolution (same receptive field and parameter
  count; the only difference is a one-pixel alignment of the zero padding). Every gradient,
  including the critic's double backward through the gradient penalty, is then a stride-1
  convolution, which XLA:CPU runs many times faster than the weight gradient of an
  lhs-dilated (transposed) convolution (``experiments/results/benchmark/``, "Resample
  modes"); on the CPU the strided layers below are computed as stride-1 convolutions too,
  and run a little slower (``experiments/results/benchmark/strided_layers/``).
* ``'strided'``: a 4x4 stride-2 transposed convolution (flax's ``ConvTranspose``) / a 4x4
  stride-2 convolution, the textbook DCGAN layers of the authors' networks.

Every convolution is the module's ``conv`` field (called as ``nn.Conv``, strided or not) or,
for the transposed one, its ``conv_transpose`` field (called as ``nn.ConvTranspose``):
``nn.Conv`` and ``nn.ConvTranspose`` unless the builder injects others with the same
parameters and function (flax's ``examples/imagenet`` pattern). A run hands in its backend's
(``cpu.backend.resolve(config).layers``, through ``methods.registry.build``), on the CPU
``cpu.conv.Conv`` and ``cpu.conv.ConvTranspose``: there the strided layers too are computed
as stride-1 convolutions. The networks never ask which backend they run on.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp

ModuleDef = Any  # a Flax module class (or partial), called as nn.Conv / nn.ConvTranspose are


class Layers(NamedTuple):
  """The convolution layers a builder hands the networks (their ``conv`` and
  ``conv_transpose`` fields); a run's come from its backend (``cpu.backend.Backend.layers``)."""
  conv: ModuleDef = nn.Conv
  conv_transpose: ModuleDef = nn.ConvTranspose


# Spatial size of the first (generator) / last (critic) feature map for each image size. 16 is
# ours, for scikit-learn's 8x8 digits (the embedded demo): 28x28 adds pixels, not information,
# and costs three times the work per step.
BASE_RESOLUTION = {16: 4, 28: 7, 32: 4, 64: 4}
RESAMPLE_MODES = ('pixel_shuffle', 'strided')


def num_resolution_steps(image_size: int) -> int:
  """Number of 2x resolution changes between the base map and an ``image_size`` image."""
  if image_size not in BASE_RESOLUTION:
    raise ValueError(
        f'image_size={image_size} is not supported; use one of {sorted(BASE_RESOLUTION)}.')
  return int(math.log2(image_size // BASE_RESOLUTION[image_size]))


def depth_to_space(x: jnp.ndarray, block: int = 2) -> jnp.ndarray:
  """[B, H, W, C*block**2] -> [B, H*block, W*block, C]."""
  b, h, w, c = x.shape
  x = x.reshape(b, h, w, block, block, c // block**2)
  x = x.transpose(0, 1, 3, 2, 4, 5)
  return x.reshape(b, h * block, w * block, c // block**2)


def space_to_depth(x: jnp.ndarray, block: int = 2) -> jnp.ndarray:
  """[B, H, W, C] -> [B, H/block, W/block, C*block**2]; the inverse of ``depth_to_space``."""
  b, h, w, c = x.shape
  x = x.reshape(b, h // block, block, w // block, block, c)
  x = x.transpose(0, 1, 3, 2, 4, 5)
  return x.reshape(b, h // block, w // block, block * block * c)


def pixel_norm(x: jnp.ndarray, eps: float = 1e-8) -> jnp.ndarray:
  """Normalises each pixel's feature vector to unit mean square (ProGAN's generator norm).

  Used instead of batch norm so the generator is a pure function of (params, z) with no
  batch statistics to carry in the state.
  """
  return x * jax.lax.rsqrt(jnp.mean(jnp.square(x), axis=-1, keepdims=True) + eps)


class Upsample(nn.Module):
  """Doubles height and width: [B, H, W, C_in] -> [B, 2H, 2W, features]."""
  features: int
  mode: str = 'pixel_shuffle'
  conv: ModuleDef = nn.Conv
  conv_transpose: ModuleDef = nn.ConvTranspose

  @nn.compact
  def __call__(self, x):
    if self.mode == 'pixel_shuffle':
      return depth_to_space(self.conv(4 * self.features, (2, 2))(x))
    return self.conv_transpose(self.features, (4, 4), strides=(2, 2))(x)


class Downsample(nn.Module):
  """Halves height and width: [B, H, W, C_in] -> [B, H/2, W/2, features]."""
  features: int
  mode: str = 'pixel_shuffle'
  conv: ModuleDef = nn.Conv

  @nn.compact
  def __call__(self, x):
    if self.mode == 'pixel_shuffle':
      return self.conv(self.features, (2, 2))(space_to_depth(x))
    return self.conv(self.features, (4, 4), strides=(2, 2))(x)


class Generator(nn.Module):
  """Maps latent codes to images: [B, latent_dim] -> [B, S, S, channels].

  ``output='tanh'`` gives images in [-1, 1] (the GAN generators); ``output='logits'`` gives
  unbounded values (the Student's decoder, which applies its likelihood on top).
  """
  image_size: int
  channels: int
  width: int
  resample: str = 'pixel_shuffle'
  output: str = 'tanh'
  conv: ModuleDef = nn.Conv
  conv_transpose: ModuleDef = nn.ConvTranspose

  @nn.compact
  def __call__(self, z):
    steps = num_resolution_steps(self.image_size)
    base = BASE_RESOLUTION[self.image_size]
    features = self.width * 2 ** (steps - 1)
    x = nn.Dense(base * base * features)(z).reshape(z.shape[0], base, base, features)
    x = nn.relu(pixel_norm(x))
    for i in range(steps):
      x = Upsample(self.width * 2 ** max(steps - 2 - i, 0), self.resample, self.conv,
                   self.conv_transpose)(x)
      x = nn.relu(pixel_norm(x))
    x = self.conv(self.channels, (3, 3))(x)
    return jnp.tanh(x) if self.output == 'tanh' else x


class ConvTrunk(nn.Module):
  """The critic's and encoder's shared shape: [B, S, S, C] -> [B, features] (flattened)."""
  image_size: int
  width: int
  resample: str = 'pixel_shuffle'
  conv: ModuleDef = nn.Conv

  @nn.compact
  def __call__(self, x):
    steps = num_resolution_steps(self.image_size)
    x = nn.leaky_relu(self.conv(self.width, (3, 3))(x), 0.2)
    for i in range(steps):
      x = nn.leaky_relu(
          Downsample(self.width * 2**i, self.resample, self.conv)(x), 0.2)
    return x.reshape(x.shape[0], -1)


class Critic(nn.Module):
  """WGAN critic: [B, S, S, C] -> [B] unbounded scores (no sigmoid).

  No normalisation layer, so each example's score depends on that example alone, which the
  per-example gradient penalty requires.
  """
  image_size: int
  width: int
  resample: str = 'pixel_shuffle'
  conv: ModuleDef = nn.Conv

  @nn.compact
  def __call__(self, x):
    h = ConvTrunk(self.image_size, self.width, self.resample, self.conv)(x)
    return nn.Dense(1)(h)[:, 0]


class Encoder(nn.Module):
  """Student inference network q(z|x): [B, S, S, C] -> (mean [B, L], log_variance [B, L])."""
  image_size: int
  width: int
  latent_dim: int
  resample: str = 'pixel_shuffle'
  conv: ModuleDef = nn.Conv

  @nn.compact
  def __call__(self, x):
    h = ConvTrunk(self.image_size, self.width, self.resample, self.conv)(x)
    mean_and_log_var = nn.Dense(2 * self.latent_dim)(h)
    mean, log_var = jnp.split(mean_and_log_var, 2, axis=-1)
    return mean, log_var


class StudentVAE(nn.Module):
  """The Student: encoder and decoder under one parameter tree.

  ``__call__`` maps images and reparameterisation noise to (decoder logits, mean, log_var):
  [B, S, S, C], [B, L] -> ([B, S, S, C], [B, L], [B, L]). ``decode`` and ``encode`` expose the
  halves for sampling, interpolation and evaluation.
  """
  image_size: int
  channels: int
  width: int
  latent_dim: int
  resample: str = 'pixel_shuffle'
  conv: ModuleDef = nn.Conv
  conv_transpose: ModuleDef = nn.ConvTranspose

  def setup(self):
    self.encoder = Encoder(self.image_size, self.width, self.latent_dim, self.resample,
                           self.conv)
    self.decoder = Generator(self.image_size, self.channels, self.width, self.resample,
                             output='logits', conv=self.conv,
                             conv_transpose=self.conv_transpose)

  def __call__(self, x, noise):
    mean, log_var = self.encoder(x)
    z = mean + jnp.exp(0.5 * log_var) * noise
    return self.decoder(z), mean, log_var

  def encode(self, x):
    return self.encoder(x)

  def decode(self, z):
    return self.decoder(z)
