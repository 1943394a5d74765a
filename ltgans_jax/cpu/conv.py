"""The convolution layers for the CPU: ``Conv`` (``nn.Conv``'s function and parameters, 'SAME',
stride 1 or 4x4 stride 2) and ``ConvTranspose`` (``nn.ConvTranspose``'s, 4x4 stride 2), with
gradients XLA:CPU runs well. ``cpu.backend.resolve`` hands them to the networks.

The strided layers are written as stride-1 convolutions: XLA:CPU computes the gradients of a
transposed (lhs-dilated) convolution, and the second-order ones of a strided convolution, far
more slowly than those of stride-1 ones, and these gradients sit in the generators' backward
pass and in the gradient penalty's double backward. A 4x4 stride-2 convolution is a 2x2 stride-1 one on the
space-to-depth image (``strided_conv``); a 4x4 stride-2 transposed convolution is a 2x2
stride-1 one to the 4 output phases, then depth-to-space (``transposed_conv``): no
multiplication by an inserted zero, and the same parameters (``space_to_depth_kernel`` and
``subpixel_kernel`` rearrange the 4x4 kernel inside the computation). Both go through the
stride-1 convolution below.

Why the stride-1 convolution is differentiated as it is: XLA:CPU computes a convolution's weight gradient as another convolution in which the
batch and channel axes swap roles, so it transposes both operands ([N, H, W, C] ->
[C, H, W, N]). It fuses those transposes into the element-wise work that produced the
operands (the leaky ReLU's backward, depth-to-space), and a fused transpose runs far below
memory speed; it also splits each bias gradient (a sum over batch and pixels) into a strided
reduce-window. XLA:CPU's convolutions with very few output channels are also slow. So:

* a weight gradient with no more input than output channels is XLA's own, but its two
  operands first pass through ``fusion_barrier``, a one-trip loop XLA cannot see through, so
  the transposes become standalone copies;
* the bias gradient is a matrix-vector product, ``ones[N*H*W] @ grad[N*H*W, C]``;
* a kernel with at most ``FEW_CHANNELS`` output channels and more inputs (the generators' last
  layer, 64 -> 3 channels, and the input gradient of the critic's and encoder's first layer)
  runs as one matrix product to every tap's output channels followed by a shifted sum, and its
  weight gradient as one matrix product with shifted copies of the (small) output gradient;
* a weight gradient with more input than output channels (the critic's and encoder's
  downsampling layers, the input gradients of the upsampling ones) is computed with C_in as the
  output features (``input_major_kernel_grad``): XLA's own form multiplies
  [kh*kw*C_in, K] @ [K, C_out] matrices, narrow when C_out is the smaller;
* the input gradient is again this convolution (flipped, in/out-swapped kernel), so these rules
  hold at every order of differentiation (the penalty differentiates through them twice).

On other backends (GPU, TPU) the networks get plain ``nn.Conv`` and ``nn.ConvTranspose``: there the transposes are not
the problem, and a loop whose trip count depends on data makes the host read its predicate
back (reasoned, not measured). ``Conv`` and ``ConvTranspose`` have flax's
parameters (names, shapes, initialisers) and compute the same functions, so checkpoints move
freely between backends. Measured: ``benchmarks/benchmark_cpu_choices.py --setting
conv_gradients``, results and the per-layer timings behind these rules in
``experiments/results/benchmark/cpu_epyc/``; the strided layers' forms in
``experiments/results/benchmark/strided_layers/``.
"""

from __future__ import annotations

import functools
from typing import Sequence, Tuple

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax

from ltgans_jax import models

Padding = Tuple[Tuple[int, int], Tuple[int, int]]
# At most this many output channels (and more inputs): the matrix-product path below.
FEW_CHANNELS = 4
_DIMENSION_NUMBERS = ('NHWC', 'HWIO', 'NHWC')


def same_padding(kernel_size: Sequence[int]) -> Padding:
  """XLA's 'SAME' padding of a stride-1 kernel: (k-1)//2 before, the rest after."""
  return tuple(((k - 1) // 2, k - 1 - (k - 1) // 2) for k in kernel_size)


@jax.custom_vjp
def fusion_barrier(x: jnp.ndarray, token: jnp.ndarray) -> jnp.ndarray:
  """Returns ``x`` (any shape) in a buffer of its own that XLA cannot fuse into its consumers.

  ``optimization_barrier`` does not do this on the CPU (XLA expands it before fusion); a
  while loop whose trip count XLA cannot know does. ``token`` is any float scalar that is not
  batched (a parameter element): the trip count is 1 unless it is NaN, and the loop is the
  identity either way.
  """
  token = lax.stop_gradient(token)
  first_trip = (token != token).astype(jnp.int32)

  def body(carry):
    trip, value = carry
    return trip + 1, jnp.where(trip > 1, -value, value)  # the identity, opaque to XLA

  return lax.while_loop(lambda carry: carry[0] < 1, body, (first_trip, x))[1]


def _fusion_barrier_fwd(x, token):
  return fusion_barrier(x, token), token


def _fusion_barrier_bwd(token, output_grad):
  return fusion_barrier(output_grad, token), jnp.zeros_like(token)


fusion_barrier.defvjp(_fusion_barrier_fwd, _fusion_barrier_bwd)


def _lax_conv(x, kernel, padding):
  return lax.conv_general_dilated(x, kernel, (1, 1), padding,
                                  dimension_numbers=_DIMENSION_NUMBERS)


def transposed_padding(kernel_shape, padding: Padding) -> Padding:
  """The padding that correlates an output-shaped array with a kh x kw kernel back onto the
  input's pixels: (kh - 1 - pad_top, kh - 1 - pad_bottom), likewise for the width."""
  kh, kw = kernel_shape[:2]
  return ((kh - 1 - padding[0][0], kh - 1 - padding[0][1]),
          (kw - 1 - padding[1][0], kw - 1 - padding[1][1]))


def has_few_outputs(kernel: jnp.ndarray) -> bool:
  """Whether a [kh, kw, C_in, C_out] kernel maps many channels to a few (an RGB layer)."""
  return kernel.shape[3] <= FEW_CHANNELS < kernel.shape[2]


def _pad_spatial(x: jnp.ndarray, padding: Padding) -> jnp.ndarray:
  """Pads (or, where negative, crops) axes 1 and 2 of [N, H, W, ...]."""
  config = [(0, 0, 0)] * x.ndim
  config[1], config[2] = (*padding[0], 0), (*padding[1], 0)
  return lax.pad(x, jnp.zeros((), x.dtype), config)


def few_outputs_conv(x: jnp.ndarray, kernel: jnp.ndarray, padding: Padding) -> jnp.ndarray:
  """``_lax_conv`` for a kernel with few output channels, as one matrix product and a sum.

  [N, H, W, C_in] @ [C_in, kh*kw*C_out] gives every tap's contribution at its source pixel,
  [N, H, W, kh, kw, C_out]; output pixel (i, j) adds tap (a, b)'s from source pixel
  (i + a - pad_top, j + b - pad_left). Returns [N, H', W', C_out].
  """
  kh, kw, c_in, c_out = kernel.shape
  n, h, w, _ = x.shape
  taps = (x.reshape(-1, c_in) @ kernel.transpose(2, 0, 1, 3).reshape(c_in, -1))
  taps = _pad_spatial(taps.reshape(n, h, w, kh, kw, c_out), padding)
  out_h, out_w = taps.shape[1] - kh + 1, taps.shape[2] - kw + 1
  return sum(taps[:, a:a + out_h, b:b + out_w, a, b, :] for a in range(kh) for b in range(kw))


def few_outputs_kernel_grad(x: jnp.ndarray, output_grad: jnp.ndarray, kernel_shape,
                            padding: Padding) -> jnp.ndarray:
  """The weight gradient of ``_lax_conv`` for few output channels, as one matrix product.

  Tap (a, b) pairs source pixel (h, w) with output pixel (h - a + pad_top, w - b + pad_left):
  shifted copies of the (small) output gradient, [N, H, W, kh, kw, C_out], contracted with x
  over batch and pixels. x: [N, H, W, C_in], output_grad: [N, H', W', C_out] ->
  [kh, kw, C_in, C_out].
  """
  kh, kw, c_in, c_out = kernel_shape
  n, h, w, _ = x.shape
  padded = _pad_spatial(output_grad, transposed_padding(kernel_shape, padding))
  shifted = jnp.stack([padded[:, kh - 1 - a:kh - 1 - a + h, kw - 1 - b:kw - 1 - b + w, :]
                       for a in range(kh) for b in range(kw)], axis=3)
  grad = x.reshape(-1, c_in).T @ shifted.reshape(n * h * w, kh * kw * c_out)
  return grad.reshape(c_in, kh, kw, c_out).transpose(1, 2, 0, 3)


def input_major_kernel_grad(x: jnp.ndarray, output_grad: jnp.ndarray, kernel_shape,
                            padding: Padding) -> jnp.ndarray:
  """The weight gradient of ``_lax_conv`` with C_in, not C_out, as the output features.

  XLA's weight gradient correlates x (batch axis <-> C_in) with the output gradient as the
  kernel, so its matrix products are [kh*kw*C_in, N*H'*W'] @ [N*H'*W', C_out]; with
  C_in > C_out that product is narrow, which XLA:CPU runs slowly. Here the (padded) output
  gradient, batch axis <-> C_out, is correlated with x as the kernel:
  [kh*kw*C_out, N*H*W] @ [N*H*W, C_in]; the taps come out reversed. No fusion barrier: XLA's
  own operand layouts ran faster here. x: [N, H, W, C_in], output_grad: [N, H', W', C_out] ->
  [kh, kw, C_in, C_out].
  """
  reversed_taps = lax.conv_general_dilated(  # [C_out, kh, kw, C_in], tap (kh-1-a, kw-1-b)
      output_grad, x, (1, 1), transposed_padding(kernel_shape, padding),
      dimension_numbers=('CHWN', 'IHWO', 'NHWC'))
  return jnp.flip(reversed_taps, (1, 2)).transpose(1, 2, 3, 0)


def padding_beyond_kernel(kernel_shape, padding: Padding) -> int:
  """How far a convolution's padding exceeds 'SAME''s (kernel size - 1 in all, per axis),
  summed over the axes: > 0 for the strided layers' 2x2 convolutions padded by one pixel on
  each side (``transposed_conv``), < 0 for their unpadded ones (``strided_conv``)."""
  return sum(lo + hi - (k - 1) for (lo, hi), k in zip(padding, kernel_shape[:2]))


def uses_input_major_kernel_grad(kernel_shape, padding: Padding) -> bool:
  """Whether the weight gradient is ``input_major_kernel_grad`` (or else XLA's own form).

  XLA:CPU runs a weight-gradient convolution padded beyond 'SAME' far more slowly than any
  other (``experiments/results/benchmark/strided_layers/``); XLA's own form pads as the
  forward convolution, the input-major one as its transpose (``transposed_padding``), so a
  convolution padded beyond 'SAME' takes the input-major form and one padded short of it
  XLA's. At 'SAME' padding, the input-major form when there are more input than output
  channels (see the module docstring).
  """
  beyond = padding_beyond_kernel(kernel_shape, padding)
  if beyond:
    return beyond > 0
  return kernel_shape[2] > kernel_shape[3]


def _cpu_conv(x, kernel, padding):
  return (few_outputs_conv if has_few_outputs(kernel) else _lax_conv)(x, kernel, padding)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def barriered_conv(x: jnp.ndarray, kernel: jnp.ndarray, padding: Padding) -> jnp.ndarray:
  """Stride-1 cross-correlation: [N, H, W, C_in], [kh, kw, C_in, C_out] -> [N, H', W', C_out],
  H' = H + pad_top + pad_bottom - kh + 1 (likewise W'); a kernel with few output channels
  runs as matrix products, and the weight gradient follows the rules in the module docstring."""
  return _cpu_conv(x, kernel, padding)


def _barriered_conv_fwd(x, kernel, padding):
  return _cpu_conv(x, kernel, padding), (x, kernel)


def _barriered_conv_bwd(padding, residuals, output_grad):
  x, kernel = residuals
  # The input gradient correlates with the flipped, in/out-swapped kernel.
  flipped = jnp.flip(kernel, (0, 1)).transpose(0, 1, 3, 2)
  input_grad = barriered_conv(output_grad, flipped, transposed_padding(kernel.shape, padding))
  if has_few_outputs(kernel):
    return input_grad, few_outputs_kernel_grad(x, output_grad, kernel.shape, padding)
  if uses_input_major_kernel_grad(kernel.shape, padding):
    return input_grad, input_major_kernel_grad(x, output_grad, kernel.shape, padding)
  token = kernel.reshape(-1)[0]
  _, weight_vjp = jax.vjp(lambda k: _lax_conv(fusion_barrier(x, token), k, padding), kernel)
  (kernel_grad,) = weight_vjp(fusion_barrier(output_grad, token))
  return input_grad, kernel_grad


barriered_conv.defvjp(_barriered_conv_fwd, _barriered_conv_bwd)


@jax.custom_vjp
def add_channel_bias(y: jnp.ndarray, bias: jnp.ndarray) -> jnp.ndarray:
  """[..., C] + [C] -> [..., C]; the bias gradient is a matrix-vector product."""
  return y + bias


def _add_channel_bias_fwd(y, bias):
  return y + bias, None


def _add_channel_bias_bwd(_, output_grad):
  flat = output_grad.reshape(-1, output_grad.shape[-1])
  return output_grad, jnp.ones((flat.shape[0],), flat.dtype) @ flat


add_channel_bias.defvjp(_add_channel_bias_fwd, _add_channel_bias_bwd)


def space_to_depth_kernel(kernel: jnp.ndarray) -> jnp.ndarray:
  """The 2x2 kernel on space-to-depth pixels that computes a 4x4 stride-2 correlation:
  [4, 4, C_in, C_out] -> [2, 2, 4*C_in, C_out].

  With the input padded by one pixel on each side, output pixel i reads padded pixels
  2i .. 2i+3, which are blocks i and i+1 of the space-to-depth image: tap (2b + r) of the
  4x4 kernel is tap b of the 2x2 one at in-block offset r (channel order of
  ``models.space_to_depth``: offset row, offset column, channel).
  """
  kh, kw, c_in, c_out = kernel.shape
  taps = kernel.reshape(kh // 2, 2, kw // 2, 2, c_in, c_out)  # (b_h, r_h, b_w, r_w, ...)
  return taps.transpose(0, 2, 1, 3, 4, 5).reshape(kh // 2, kw // 2, 4 * c_in, c_out)


def subpixel_kernel(kernel: jnp.ndarray) -> jnp.ndarray:
  """The 2x2 kernel whose 4 output phases, after depth-to-space, are a 4x4 stride-2
  transposed convolution with ``kernel`` (flax's convention, ``transpose_kernel=False``: the
  zero-upsampled input, padded by 2, correlated with the kernel as it is):
  [4, 4, C_in, C_out] -> [2, 2, C_in, 4*C_out].

  Output pixel 2i + p reads input pixels i - 1 + p and i + p with taps 1 - p and 3 - p; as a
  2x2 correlation of the input padded by one pixel, producing at block i + 1 the phase p
  (cropped by one pixel after depth-to-space), that is tap (2b + 1 - p) at tap b.
  """
  kh, kw, c_in, c_out = kernel.shape
  taps = kernel.reshape(kh // 2, 2, kw // 2, 2, c_in, c_out)  # (b_h, 1-p_h, b_w, 1-p_w, ...)
  phases = jnp.flip(taps, (1, 3))  # (b_h, p_h, b_w, p_w, ...)
  return phases.transpose(0, 2, 4, 1, 3, 5).reshape(kh // 2, kw // 2, c_in, 4 * c_out)


def _check_strided(kernel_size, strides) -> None:
  if tuple(strides) != (2, 2) or tuple(kernel_size) != (4, 4):
    raise ValueError(f'kernel_size={tuple(kernel_size)}, strides={tuple(strides)}: the CPU '
                     "layers' strided forms are 4x4 with stride 2 (the networks' own).")


def strided_conv(x: jnp.ndarray, kernel: jnp.ndarray) -> jnp.ndarray:
  """``nn.Conv(..., (4, 4), strides=(2, 2), padding='SAME')``'s correlation as a stride-1 one:
  pad by one pixel, space-to-depth, a 2x2 'VALID' convolution (``barriered_conv``).
  [N, H, W, C_in] (H, W even), [4, 4, C_in, C_out] -> [N, H/2, W/2, C_out]."""
  blocks = models.space_to_depth(_pad_spatial(x, ((1, 1), (1, 1))))
  return barriered_conv(blocks, space_to_depth_kernel(kernel), ((0, 0), (0, 0)))


def transposed_conv(x: jnp.ndarray, kernel: jnp.ndarray) -> jnp.ndarray:
  """``nn.ConvTranspose(..., (4, 4), strides=(2, 2), padding='SAME')``'s function as a
  stride-1 convolution: a 2x2 correlation of the input padded by one pixel
  (``barriered_conv``) to 4 phases, depth-to-space, one pixel cropped from each side.
  [N, H, W, C_in], [4, 4, C_in, C_out] -> [N, 2H, 2W, C_out]."""
  phases = barriered_conv(x, subpixel_kernel(kernel), ((1, 1), (1, 1)))  # [N, H+1, W+1, 4C]
  return models.depth_to_space(phases)[:, 1:-1, 1:-1]


class Conv(nn.Module):
  """``nn.Conv(features, kernel_size, strides, padding='SAME')`` with the CPU gradients above:
  [N, H, W, C_in] -> [N, H/s, W/s, features]. Stride 1 (any kernel) or 2 (a 4x4 kernel, even
  H and W: ``strided_conv``). (Named ``Conv`` so that its parameters are named as
  ``nn.Conv``'s: ``Conv_0``, ``Conv_1``, ...)"""
  features: int
  kernel_size: Tuple[int, int]
  strides: Tuple[int, int] = (1, 1)

  @nn.compact
  def __call__(self, x):
    kernel = self.param('kernel', nn.initializers.lecun_normal(),
                        tuple(self.kernel_size) + (x.shape[-1], self.features))
    bias = self.param('bias', nn.initializers.zeros_init(), (self.features,))
    if tuple(self.strides) == (1, 1):
      y = barriered_conv(x, kernel, same_padding(self.kernel_size))
    else:
      _check_strided(self.kernel_size, self.strides)
      y = strided_conv(x, kernel)
    return add_channel_bias(y, bias)


class ConvTranspose(nn.Module):
  """``nn.ConvTranspose(features, (4, 4), strides=(2, 2), padding='SAME')`` (flax's kernel
  convention) as ``transposed_conv``, with the CPU gradients above:
  [N, H, W, C_in] -> [N, 2H, 2W, features]. (Named as flax's, so are its parameters.)"""
  features: int
  kernel_size: Tuple[int, int]
  strides: Tuple[int, int]

  @nn.compact
  def __call__(self, x):
    _check_strided(self.kernel_size, self.strides)
    kernel = self.param('kernel', nn.initializers.lecun_normal(),
                        tuple(self.kernel_size) + (x.shape[-1], self.features))
    bias = self.param('bias', nn.initializers.zeros_init(), (self.features,))
    return add_channel_bias(transposed_conv(x, kernel), bias)
