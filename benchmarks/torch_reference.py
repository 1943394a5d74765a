"""A PyTorch reference of the LT-GANs networks and of one LAKD step, for benchmarks.

It mirrors ``ltgans_jax/models.py`` layer for layer (same layers, same widths, same parameter
counts for every supported image size and both resample modes) and ``ltgans_jax/methods/ltgans_steps.py``'s
LAKD step (task k >= 2): the critic update on ``real_mix`` (the data with exactly half of the
examples replaced by frozen-Teacher samples) against Assistant samples, WGAN loss plus 10 x a
per-example gradient penalty taken with ``torch.autograd.grad(create_graph=True)``; one
Assistant update; and the Student VAE step on the data plus the Teacher samples.

Tensors are NCHW (PyTorch's natural layout); ``channels_last=True`` switches the convolutions'
memory format. ``load_flax_params`` copies a Flax parameter tree into these modules (the
channel orders of depth-to-space, space-to-depth and of flattening differ between the two
implementations and are permuted on load), so that the tests can check that both compute the
same function.

Nothing here is imported by ``ltgans_jax``; torch is an optional dependency
(``pip install torch==2.13.0``).
"""

from __future__ import annotations

import math
from typing import Dict, Optional

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

BASE_RESOLUTION = {28: 7, 32: 4, 64: 4}
RESAMPLE_MODES = ('pixel_shuffle', 'strided')


def num_resolution_steps(image_size: int) -> int:
  if image_size not in BASE_RESOLUTION:
    raise ValueError(f'image_size={image_size} is not supported; use one of '
                     f'{sorted(BASE_RESOLUTION)}.')
  return int(math.log2(image_size // BASE_RESOLUTION[image_size]))


def pixel_norm(x: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
  """Unit mean square over the channel axis (dim 1 in NCHW)."""
  return x * torch.rsqrt(torch.mean(torch.square(x), dim=1, keepdim=True) + eps)


def _lecun_normal_(weight: torch.Tensor, fan_in: int) -> None:
  """Flax's default kernel init: truncated normal (+-2 std) with variance 1 / fan_in."""
  std = math.sqrt(1.0 / fan_in) / 0.87962566103423978
  nn.init.trunc_normal_(weight, std=std, a=-2 * std, b=2 * std)


def _same_2x2(x: torch.Tensor) -> torch.Tensor:
  """Flax/XLA 'SAME' padding of a 2x2 stride-1 convolution: 0 before, 1 after."""
  return F.pad(x, (0, 1, 0, 1))


class Upsample(nn.Module):
  """[B, C_in, H, W] -> [B, features, 2H, 2W]."""

  def __init__(self, in_features: int, features: int, mode: str = 'pixel_shuffle'):
    super().__init__()
    self.mode = mode
    if mode == 'pixel_shuffle':
      self.conv = nn.Conv2d(in_features, 4 * features, 2)
    elif mode == 'strided':
      self.conv = nn.ConvTranspose2d(in_features, features, 4, stride=2, padding=1)
    else:
      raise ValueError(f'unknown resample mode {mode!r}')

  def forward(self, x):
    if self.mode == 'pixel_shuffle':
      return F.pixel_shuffle(self.conv(_same_2x2(x)), 2)
    return self.conv(x)


class Downsample(nn.Module):
  """[B, C_in, H, W] -> [B, features, H/2, W/2]."""

  def __init__(self, in_features: int, features: int, mode: str = 'pixel_shuffle'):
    super().__init__()
    self.mode = mode
    if mode == 'pixel_shuffle':
      self.conv = nn.Conv2d(4 * in_features, features, 2)
    elif mode == 'strided':
      self.conv = nn.Conv2d(in_features, features, 4, stride=2, padding=1)
    else:
      raise ValueError(f'unknown resample mode {mode!r}')

  def forward(self, x):
    if self.mode == 'pixel_shuffle':
      return self.conv(_same_2x2(F.pixel_unshuffle(x, 2)))
    return self.conv(x)


class Generator(nn.Module):
  """[B, latent_dim] -> [B, channels, S, S]; tanh images or logits (the Student's decoder)."""

  def __init__(self, image_size: int, channels: int, width: int, latent_dim: int,
               resample: str = 'pixel_shuffle', output: str = 'tanh'):
    super().__init__()
    steps = num_resolution_steps(image_size)
    self.base = BASE_RESOLUTION[image_size]
    self.features = width * 2 ** (steps - 1)
    self.output = output
    self.dense = nn.Linear(latent_dim, self.base * self.base * self.features)
    ups, features = [], self.features
    for i in range(steps):
      out = width * 2 ** max(steps - 2 - i, 0)
      ups.append(Upsample(features, out, resample))
      features = out
    self.ups = nn.ModuleList(ups)
    self.out = nn.Conv2d(features, channels, 3, padding=1)

  def forward(self, z):
    x = self.dense(z).view(z.shape[0], self.features, self.base, self.base)
    x = F.relu(pixel_norm(x))
    for up in self.ups:
      x = F.relu(pixel_norm(up(x)))
    x = self.out(x)
    return torch.tanh(x) if self.output == 'tanh' else x


class ConvTrunk(nn.Module):
  """[B, C, S, S] -> [B, features] (flattened)."""

  def __init__(self, image_size: int, channels: int, width: int, resample: str = 'pixel_shuffle'):
    super().__init__()
    steps = num_resolution_steps(image_size)
    self.first = nn.Conv2d(channels, width, 3, padding=1)
    downs, features = [], width
    for i in range(steps):
      downs.append(Downsample(features, width * 2**i, resample))
      features = width * 2**i
    self.downs = nn.ModuleList(downs)
    self.out_features = features * BASE_RESOLUTION[image_size] ** 2

  def forward(self, x):
    x = F.leaky_relu(self.first(x), 0.2)
    for down in self.downs:
      x = F.leaky_relu(down(x), 0.2)
    return x.flatten(1)


class Critic(nn.Module):
  """[B, C, S, S] -> [B] unbounded scores."""

  def __init__(self, image_size: int, channels: int, width: int,
               resample: str = 'pixel_shuffle'):
    super().__init__()
    self.trunk = ConvTrunk(image_size, channels, width, resample)
    self.dense = nn.Linear(self.trunk.out_features, 1)

  def forward(self, x):
    return self.dense(self.trunk(x))[:, 0]


class Encoder(nn.Module):
  """[B, C, S, S] -> (mean [B, L], log_var [B, L])."""

  def __init__(self, image_size: int, channels: int, width: int, latent_dim: int,
               resample: str = 'pixel_shuffle'):
    super().__init__()
    self.trunk = ConvTrunk(image_size, channels, width, resample)
    self.dense = nn.Linear(self.trunk.out_features, 2 * latent_dim)

  def forward(self, x):
    mean, log_var = torch.chunk(self.dense(self.trunk(x)), 2, dim=-1)
    return mean, log_var


class StudentVAE(nn.Module):
  """(images [B, C, S, S], noise [B, L]) -> (decoder logits, mean, log_var)."""

  def __init__(self, image_size: int, channels: int, width: int, latent_dim: int,
               resample: str = 'pixel_shuffle'):
    super().__init__()
    self.encoder = Encoder(image_size, channels, width, latent_dim, resample)
    self.decoder = Generator(image_size, channels, width, latent_dim, resample, output='logits')

  def forward(self, x, noise):
    mean, log_var = self.encoder(x)
    z = mean + torch.exp(0.5 * log_var) * noise
    return self.decoder(z), mean, log_var


def flax_like_init_(module: nn.Module) -> nn.Module:
  """Re-initialises like Flax's defaults: LeCun-normal kernels, zero biases."""
  for m in module.modules():
    if isinstance(m, nn.Linear):
      _lecun_normal_(m.weight, m.in_features)
    elif isinstance(m, nn.ConvTranspose2d):  # weight [in, out, kh, kw]; Flax: fan_in = kh*kw*in
      _lecun_normal_(m.weight, m.weight.shape[0] * m.weight.shape[2] * m.weight.shape[3])
    elif isinstance(m, nn.Conv2d):  # weight [out, in, kh, kw]
      _lecun_normal_(m.weight, m.weight[0].numel())
    else:
      continue
    nn.init.zeros_(m.bias)
  return module


def num_params(module: nn.Module) -> int:
  return sum(p.numel() for p in module.parameters())


# Losses (per example), mirroring ltgans_jax/losses.py -----------------------------------------
def gradient_penalty(critic: nn.Module, points: torch.Tensor) -> torch.Tensor:
  """(||grad_x D(x)||_2 - 1)^2 per example, the norm over all pixel axes; differentiable."""
  points = points.detach().requires_grad_(True)
  scores = critic(points)
  # The critic treats examples independently, so the gradient of the sum is per example.
  (grads,) = torch.autograd.grad(scores.sum(), points, create_graph=True)
  norms = torch.sqrt(torch.sum(torch.square(grads), dim=tuple(range(1, grads.ndim))) + 1e-12)
  return torch.square(norms - 1.0)


def gaussian_kl(mean, log_var):
  return 0.5 * torch.sum(torch.exp(log_var) + torch.square(mean) - 1.0 - log_var, dim=-1)


def reconstruction_nll(logits, targets01, likelihood: str, decoder_std: float):
  dims = tuple(range(1, logits.ndim))
  if likelihood == 'bernoulli':
    return torch.sum(F.softplus(logits) - targets01 * logits, dim=dims)
  squared_error = torch.sum(torch.square(torch.sigmoid(logits) - targets01), dim=dims)
  num_pixels = math.prod(logits.shape[1:])
  return (squared_error / (2 * decoder_std**2)
          + num_pixels * math.log(decoder_std * math.sqrt(2 * math.pi)))


# The LAKD step ------------------------------------------------------------------------------
class TorchLAKD:
  """Networks, optimisers and the three benchmarked steps of a LAKD (task k >= 2) update.

  * ``adversarial_step(batch_uint8)``: Teacher samples (frozen, no grad), the real side mix,
    one critic update with the gradient penalty, one Assistant update. Returns the Teacher
    samples (which the Student replays).
  * ``student_step(data, replay)``: one Student update on data and replay ([-1, 1] floats).
  * ``full_step(batch_uint8)``: both, as ``GanMethod.train_steps()['lakd']`` with
    ``update_generators=True``.

  ``compile``: None (eager) or 'partial' (torch.compile of the generators, of the critic's
  first-order uses and of the Student's loss; the gradient-penalty pass, which needs a double
  backward, stays eager) or 'full' (additionally tries to compile the whole critic loss with
  its gradient penalty; expected to fail on the double backward).
  """

  def __init__(self, *, image_size: int, channels: int, latent_dim: int = 100,
               generator_width: int = 64, critic_width: int = 64, vae_width: int = 64,
               vae_latent_dim: int = 64, resample: str = 'pixel_shuffle',
               penalty_weight: float = 10.0, teacher_fraction: float = 0.5,
               beta: float = 1.0, likelihood: str = 'gaussian',
               decoder_std: float = 1 / math.sqrt(2), gan_learning_rate: float = 1e-4,
               gan_betas=(0.5, 0.9), student_learning_rate: float = 1e-3,
               device: str = 'cpu', channels_last: bool = False,
               compile: Optional[str] = None, seed: int = 0):
    torch.manual_seed(seed)
    self.device = torch.device(device)
    self.latent_dim, self.vae_latent_dim = latent_dim, vae_latent_dim
    self.penalty_weight, self.teacher_fraction = penalty_weight, teacher_fraction
    self.beta, self.likelihood, self.decoder_std = beta, likelihood, decoder_std
    self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
    make_generator = lambda: Generator(image_size, channels, generator_width, latent_dim,
                                       resample)
    self.teacher = self._prepare(make_generator()).requires_grad_(False)
    self.assistant = self._prepare(make_generator())
    self.critic = self._prepare(Critic(image_size, channels, critic_width, resample))
    self.student = self._prepare(StudentVAE(image_size, channels, vae_width, vae_latent_dim,
                                            resample))
    adam = lambda params, lr, betas: _adam(params, lr, betas, self.device)
    self.opt_assistant = adam(self.assistant.parameters(), gan_learning_rate, gan_betas)
    self.opt_critic = adam(self.critic.parameters(), gan_learning_rate, gan_betas)
    self.opt_student = adam(self.student.parameters(), student_learning_rate, (0.9, 0.999))

    # Callables the steps use; torch.compile replaces some of them.
    self.teacher_fn, self.assistant_fn = self.teacher, self.assistant
    self.critic_fn, self.critic_gp_fn = self.critic, self.critic
    self.student_loss_fn = self._student_loss
    self.critic_loss_fn = self._critic_loss
    self.compiled = []
    self.compile_errors: Dict[str, str] = {}
    if compile:
      self._compile(compile)

  def _prepare(self, module: nn.Module) -> nn.Module:
    return flax_like_init_(module).to(self.device, memory_format=self.memory_format)

  def _compile(self, mode: str):
    self.teacher_fn = torch.compile(self.teacher)
    self.assistant_fn = torch.compile(self.assistant)
    self.critic_fn = torch.compile(self.critic)
    self.student_loss_fn = torch.compile(self._student_loss)
    self.compiled = ['teacher', 'assistant', 'critic (D(real), D(fake), generator loss)',
                     'student loss (forward + backward)']
    if mode == 'full':
      self.critic_loss_fn = torch.compile(self._critic_loss)
      self.compiled.append('critic loss with gradient penalty')

  def fallback_to_partial(self, error: BaseException):
    """After a failed 'full' compile: keep the gradient-penalty critic loss eager."""
    self.compile_errors['critic loss with gradient penalty'] = (
        f'{type(error).__name__}: {str(error).strip().splitlines()[0][:300]}')
    self.critic_loss_fn = self._critic_loss
    if self.compiled and self.compiled[-1] == 'critic loss with gradient penalty':
      self.compiled.pop()

  # Pieces ------------------------------------------------------------------------------------
  def images_from_uint8(self, batch: torch.Tensor) -> torch.Tensor:
    return (batch.float() / 127.5 - 1.0).contiguous(memory_format=self.memory_format)

  def _z(self, num: int) -> torch.Tensor:
    return torch.randn(num, self.latent_dim, device=self.device)

  def _critic_loss(self, real_mix, fake, alpha):
    points = alpha * real_mix + (1.0 - alpha) * fake
    penalty = gradient_penalty(self.critic_gp_fn, points)
    wasserstein = self.critic_fn(fake) - self.critic_fn(real_mix)
    return torch.mean(wasserstein + self.penalty_weight * penalty)

  def _student_loss(self, images, noise):
    logits, mean, log_var = self.student(images, noise)
    recon = reconstruction_nll(logits, (images + 1.0) * 0.5, self.likelihood, self.decoder_std)
    return torch.mean(recon + self.beta * gaussian_kl(mean, log_var))

  # Steps --------------------------------------------------------------------------------------
  def adversarial_step(self, batch_uint8: torch.Tensor) -> torch.Tensor:
    data = self.images_from_uint8(batch_uint8)
    num = data.shape[0]
    with torch.no_grad():
      teacher_samples = self.teacher_fn(self._z(num))
      num_teacher = round(self.teacher_fraction * num)
      is_data = (torch.arange(num, device=self.device) >= num_teacher)[
          torch.randperm(num, device=self.device)]
      real_mix = torch.where(is_data[:, None, None, None], data, teacher_samples)
      fake = self.assistant_fn(self._z(num))
    alpha = torch.rand(num, 1, 1, 1, device=self.device)

    # Critic update.
    self.opt_critic.zero_grad(set_to_none=True)
    self.critic_loss_fn(real_mix, fake, alpha).backward()
    self.opt_critic.step()

    # Assistant update against the updated critic (whose weights get no gradient).
    self.critic.requires_grad_(False)
    self.opt_assistant.zero_grad(set_to_none=True)
    loss = -torch.mean(self.critic_fn(self.assistant_fn(self._z(num))))
    loss.backward()
    self.opt_assistant.step()
    self.critic.requires_grad_(True)
    return teacher_samples

  def student_step(self, data: torch.Tensor, replay: Optional[torch.Tensor]) -> None:
    self.opt_student.zero_grad(set_to_none=True)
    noise = lambda: torch.randn(data.shape[0], self.vae_latent_dim, device=self.device)
    loss = self.student_loss_fn(data, noise())
    if replay is not None:
      loss = loss + self.student_loss_fn(replay, noise())
    loss.backward()
    self.opt_student.step()

  def full_step(self, batch_uint8: torch.Tensor) -> None:
    teacher_samples = self.adversarial_step(batch_uint8)
    self.student_step(self.images_from_uint8(batch_uint8), teacher_samples)


def _adam(params, lr, betas, device):
  """Adam, with the fused kernel where this torch build has one for the device."""
  params = list(params)
  try:
    return torch.optim.Adam(params, lr=lr, betas=betas, fused=True)
  except (RuntimeError, TypeError, ValueError):
    return torch.optim.Adam(params, lr=lr, betas=betas, foreach=device.type != 'cpu')


# Flax parameters -> these modules ------------------------------------------------------------
def _t(array) -> torch.Tensor:
  return torch.from_numpy(np.array(array, dtype=np.float32))


def _d2s_perm(features: int) -> np.ndarray:
  """Torch output channel k*4 + q (pixel_shuffle) <- Flax channel q*features + k."""
  return np.array([q * features + k for k in range(features) for q in range(4)])


def _s2d_perm(features: int) -> np.ndarray:
  """Torch input channel c*4 + q (pixel_unshuffle) <- Flax channel q*features + c."""
  return np.array([q * features + c for c in range(features) for q in range(4)])


def _load_conv(conv: nn.Conv2d, p, out_perm=None, in_perm=None):
  w = np.transpose(np.asarray(p['kernel']), (3, 2, 0, 1))  # HWIO -> OIHW
  b = np.asarray(p['bias'])
  if out_perm is not None:
    w, b = w[out_perm], b[out_perm]
  if in_perm is not None:
    w = w[:, in_perm]
  conv.weight.data.copy_(_t(w))
  conv.bias.data.copy_(_t(b))


def _load_conv_transpose(conv: nn.ConvTranspose2d, p):
  # Flax (transpose_kernel=False) applies the kernel as is to the dilated input; torch's
  # transposed convolution is the gradient of a convolution, i.e. the spatially flipped kernel.
  w = np.asarray(p['kernel'])[::-1, ::-1]  # [kh, kw, in, out]
  conv.weight.data.copy_(_t(np.transpose(w, (2, 3, 0, 1))))
  conv.bias.data.copy_(_t(p['bias']))


def _load_generator(gen: Generator, p):
  base, feats = gen.base, gen.features
  kernel = np.asarray(p['Dense_0']['kernel'])  # [latent, base*base*feats], (h, w, c) order
  kernel = kernel.reshape(-1, base, base, feats).transpose(0, 3, 1, 2).reshape(kernel.shape[0], -1)
  bias = np.asarray(p['Dense_0']['bias']).reshape(base, base, feats).transpose(2, 0, 1)
  gen.dense.weight.data.copy_(_t(kernel.T))
  gen.dense.bias.data.copy_(_t(bias.reshape(-1)))
  for i, up in enumerate(gen.ups):
    q = p[f'Upsample_{i}']
    if up.mode == 'pixel_shuffle':
      _load_conv(up.conv, q['Conv_0'], out_perm=_d2s_perm(up.conv.out_channels // 4))
    else:
      _load_conv_transpose(up.conv, q['ConvTranspose_0'])
  _load_conv(gen.out, p['Conv_0'])


def _load_trunk_and_dense(trunk: ConvTrunk, dense: nn.Linear, p_trunk, p_dense, base: int):
  _load_conv(trunk.first, p_trunk['Conv_0'])
  for i, down in enumerate(trunk.downs):
    q = p_trunk[f'Downsample_{i}']['Conv_0']
    if down.mode == 'pixel_shuffle':
      _load_conv(down.conv, q, in_perm=_s2d_perm(down.conv.in_channels // 4))
    else:
      _load_conv(down.conv, q)
  feats = trunk.downs[-1].conv.out_channels
  kernel = np.asarray(p_dense['kernel'])  # [(h, w, c) flattened, out]
  kernel = kernel.reshape(base, base, feats, -1).transpose(2, 0, 1, 3).reshape(-1, kernel.shape[-1])
  dense.weight.data.copy_(_t(kernel.T))
  dense.bias.data.copy_(_t(p_dense['bias']))


def load_flax_params(module: nn.Module, params, image_size: int) -> nn.Module:
  """Copies a Flax ``params`` tree of the matching ``ltgans_jax.models`` network into
  ``module`` (a Generator, Critic or StudentVAE built with the same sizes)."""
  base = BASE_RESOLUTION[image_size]
  with torch.no_grad():
    if isinstance(module, Generator):
      _load_generator(module, params)
    elif isinstance(module, Critic):
      _load_trunk_and_dense(module.trunk, module.dense, params['ConvTrunk_0'],
                            params['Dense_0'], base)
    elif isinstance(module, StudentVAE):
      enc = params['encoder']
      _load_trunk_and_dense(module.encoder.trunk, module.encoder.dense, enc['ConvTrunk_0'],
                            enc['Dense_0'], base)
      _load_generator(module.decoder, params['decoder'])
    else:
      raise TypeError(f'cannot load Flax parameters into {type(module).__name__}')
  return module
