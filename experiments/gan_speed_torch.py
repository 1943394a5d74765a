"""The textbook WGAN-GP for MNIST in PyTorch: the reference that ``gan_speed.py`` trains for the
same wall time on the same CPU, in a process of its own.

The model is Gulrajani et al. (2017)'s MNIST model (github.com/igul222/improved_wgan_training,
``gan_mnist.py`` with MODE='wgan-gp', its ``tflib`` layers), written in PyTorch:

* DIM = 64, BATCH_SIZE = 50, CRITIC_ITERS = 5, LAMBDA = 10, noise of 128 dimensions ~ N(0, I),
  Adam(1e-4, betas=(0.5, 0.9)) for both networks, data in [0, 1];
* generator: Linear(128, 4*4*4*DIM), ReLU, reshape to [4*DIM, 4, 4]; 5x5 stride-2 transposed
  convolutions 4*DIM -> 2*DIM (8x8), ReLU, crop to 7x7; 2*DIM -> DIM (14x14), ReLU;
  DIM -> 1 (28x28), sigmoid. No normalisation layers (MODE='wgan-gp' has none);
* critic: 5x5 stride-2 convolutions 1 -> DIM (14x14), 2*DIM (7x7), 4*DIM (4x4), each followed by
  LeakyReLU(0.2), then Linear(4*4*4*DIM, 1);
* the penalty per example, one interpolation coefficient per example, the norm over all pixels;
  the critic's real and fake scores in passes of their own;
* initialisation as ``tflib``: convolution kernels uniform with standard deviation
  sqrt(4 / (fan_in + fan_out)) ("he_init", fans counted with the stride as ``tflib`` does), the
  two linear layers Glorot-uniform (``initialization=None``), biases 0.

Deviations, all small and, where they matter at all, in the reference's favour for speed:

* padding: ``tflib`` uses TensorFlow's 'SAME' padding (one pixel before, two after at the
  stride-2 layers of even size); we use PyTorch's usual symmetric ``padding=2`` (and
  ``output_padding=1`` for the transposed convolutions), which gives the same output sizes and
  shifts the sampling grid by one pixel, without an extra padding copy;
* data: all 60,000 MNIST training images from the IDX files (``tflib.mnist`` uses the 50,000 of
  ``mnist.pkl.gz``), one seeded permutation per epoch;
* the order within an iteration: 5 critic updates then 1 generator update (the original's loop
  runs the generator update first from the second iteration on: the same sequence of updates
  but for the last one);
* no dev-set critic evaluation every 100 iterations (it is not training).

The training clock runs only around training iterations. One warm-up iteration on copies of
the networks and optimisers runs before the clock starts and is thrown away. At time 0, every
``--eval_every_s`` training seconds and at the end (``--budget_s``), ``--eval_samples``
samples from a fixed noise batch are written as uint8 [N, 28, 28, 1] to ``samples_XXX.npz``
(outside the clock), with a line in ``curve.jsonl``; the parent process computes their FID and
class coverage with the project's feature network.

Run by ``gan_speed.py``; by hand:
  python experiments/gan_speed_torch.py --train_images=IMAGES.npy --out=DIR --budget_s=600
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import os
import sys
import time
from typing import Dict, Iterator

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

DIM = 64
BATCH_SIZE = 50
CRITIC_ITERS = 5
LAMBDA = 10.0
NOISE_DIM = 128
LEARNING_RATE = 1e-4
BETAS = (0.5, 0.9)
SAMPLE_CHUNK = 500


def _uniform_(tensor: torch.Tensor, stdev: float) -> None:
  """``tflib``'s ``uniform(stdev, size)``: U(-stdev * sqrt(3), stdev * sqrt(3))."""
  with torch.no_grad():
    tensor.uniform_(-stdev * math.sqrt(3.0), stdev * math.sqrt(3.0))


def _tflib_conv_init(layer: nn.Module, stride: int = 2) -> None:
  """``tflib.ops.conv2d`` / ``deconv2d`` with he_init: std sqrt(4 / (fan_in + fan_out))."""
  k = layer.kernel_size[0]
  if isinstance(layer, nn.ConvTranspose2d):
    fan_in, fan_out = layer.in_channels * k * k / stride**2, layer.out_channels * k * k
  else:
    fan_in, fan_out = layer.in_channels * k * k, layer.out_channels * k * k / stride**2
  _uniform_(layer.weight, math.sqrt(4.0 / (fan_in + fan_out)))
  nn.init.zeros_(layer.bias)


def _tflib_linear_init(layer: nn.Linear) -> None:
  """``tflib.ops.linear`` with initialization=None: Glorot, std sqrt(2 / (in + out))."""
  _uniform_(layer.weight, math.sqrt(2.0 / (layer.in_features + layer.out_features)))
  nn.init.zeros_(layer.bias)


class Generator(nn.Module):
  """noise [B, 128] -> images [B, 1, 28, 28] in [0, 1]."""

  def __init__(self, dim: int = DIM):
    super().__init__()
    self.dim = dim
    self.fc = nn.Linear(NOISE_DIM, 4 * 4 * 4 * dim)
    self.deconv1 = nn.ConvTranspose2d(4 * dim, 2 * dim, 5, stride=2, padding=2, output_padding=1)
    self.deconv2 = nn.ConvTranspose2d(2 * dim, dim, 5, stride=2, padding=2, output_padding=1)
    self.deconv3 = nn.ConvTranspose2d(dim, 1, 5, stride=2, padding=2, output_padding=1)
    _tflib_linear_init(self.fc)
    for layer in (self.deconv1, self.deconv2, self.deconv3):
      _tflib_conv_init(layer)

  def forward(self, noise: torch.Tensor) -> torch.Tensor:
    x = F.relu(self.fc(noise)).view(-1, 4 * self.dim, 4, 4)
    x = F.relu(self.deconv1(x))[:, :, :7, :7]  # 8x8 -> 7x7, as the original
    x = F.relu(self.deconv2(x))
    return torch.sigmoid(self.deconv3(x))


class Critic(nn.Module):
  """images [B, 1, 28, 28] -> scores [B]; no normalisation layers."""

  def __init__(self, dim: int = DIM):
    super().__init__()
    self.conv1 = nn.Conv2d(1, dim, 5, stride=2, padding=2)
    self.conv2 = nn.Conv2d(dim, 2 * dim, 5, stride=2, padding=2)
    self.conv3 = nn.Conv2d(2 * dim, 4 * dim, 5, stride=2, padding=2)
    self.fc = nn.Linear(4 * 4 * 4 * dim, 1)
    for layer in (self.conv1, self.conv2, self.conv3):
      _tflib_conv_init(layer)
    _tflib_linear_init(self.fc)

  def forward(self, images: torch.Tensor) -> torch.Tensor:
    x = F.leaky_relu(self.conv1(images), 0.2)
    x = F.leaky_relu(self.conv2(x), 0.2)
    x = F.leaky_relu(self.conv3(x), 0.2)
    return self.fc(x.flatten(1)).view(-1)


def gradient_penalty(critic: Critic, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
  """Mean over the batch of (||grad_x D(x)||_2 - 1)^2, the norm over all pixels of each
  example, at points between real and fake with one coefficient per example."""
  alpha = torch.rand(real.shape[0], 1, 1, 1)
  points = (alpha * real + (1.0 - alpha) * fake).requires_grad_(True)
  grads, = torch.autograd.grad(critic(points).sum(), points, create_graph=True)
  return torch.square(grads.flatten(1).norm(dim=1) - 1.0).mean()


class Trainer:
  """The two networks, their optimisers and one training iteration (5 critic updates, then
  one generator update)."""

  def __init__(self, dim: int = DIM):
    self.generator, self.critic = Generator(dim), Critic(dim)
    self.opt_g = torch.optim.Adam(self.generator.parameters(), lr=LEARNING_RATE, betas=BETAS)
    self.opt_d = torch.optim.Adam(self.critic.parameters(), lr=LEARNING_RATE, betas=BETAS)

  def critic_update(self, real: torch.Tensor) -> float:
    with torch.no_grad():
      fake = self.generator(torch.randn(real.shape[0], NOISE_DIM))
    loss = (self.critic(fake).mean() - self.critic(real).mean()
            + LAMBDA * gradient_penalty(self.critic, real, fake))
    self.opt_d.zero_grad(set_to_none=True)
    loss.backward()
    self.opt_d.step()
    return float(loss.detach())

  def generator_update(self) -> float:
    # The critic's parameters need no gradient here (the PyTorch port does the same).
    for p in self.critic.parameters():
      p.requires_grad_(False)
    loss = -self.critic(self.generator(torch.randn(BATCH_SIZE, NOISE_DIM))).mean()
    self.opt_g.zero_grad(set_to_none=True)
    loss.backward()
    self.opt_g.step()
    for p in self.critic.parameters():
      p.requires_grad_(True)
    return float(loss.detach())

  def iteration(self, batches: Iterator[torch.Tensor]) -> Dict[str, float]:
    critic_loss = 0.0
    for _ in range(CRITIC_ITERS):
      critic_loss = self.critic_update(next(batches))
    return {'critic_loss': critic_loss, 'generator_loss': self.generator_update()}


def batch_stream(images_uint8: np.ndarray, seed: int) -> Iterator[torch.Tensor]:
  """Batches [50, 1, 28, 28] in [0, 1]; a seeded permutation per epoch, the tail dropped."""
  rng = np.random.default_rng(seed)
  images = torch.from_numpy(images_uint8.reshape(-1, 1, 28, 28).astype(np.float32) / 255.0)
  while True:
    order = torch.from_numpy(rng.permutation(len(images)))
    for start in range(0, len(order) - BATCH_SIZE + 1, BATCH_SIZE):
      yield images[order[start:start + BATCH_SIZE]]


@torch.no_grad()
def samples_uint8(generator: Generator, noise: torch.Tensor) -> np.ndarray:
  """[N, 128] noise -> uint8 [N, 28, 28, 1] (pixel = round(255 x))."""
  out = [generator(noise[i:i + SAMPLE_CHUNK]) for i in range(0, len(noise), SAMPLE_CHUNK)]
  pixels = torch.round(torch.cat(out) * 255.0).clamp(0, 255).to(torch.uint8)
  return pixels.permute(0, 2, 3, 1).numpy()


def parameter_count(module: nn.Module) -> int:
  return sum(p.numel() for p in module.parameters())


def warm_up(trainer: Trainer, batches: Iterator[torch.Tensor]) -> float:
  """One iteration on copies (thrown away): first-call allocations stay off the clock."""
  start = time.perf_counter()
  copy.deepcopy(trainer).iteration(batches)
  return time.perf_counter() - start


def train(args: argparse.Namespace) -> None:
  torch.set_num_threads(args.threads)
  torch.manual_seed(args.seed)
  os.makedirs(args.out, exist_ok=True)
  images = np.load(args.train_images)
  trainer = Trainer(args.dim)
  batches = batch_stream(images, args.seed)
  eval_noise = torch.randn(args.eval_samples, NOISE_DIM,
                           generator=torch.Generator().manual_seed(args.seed + 1))
  warmup_seconds = warm_up(trainer, batch_stream(images[:BATCH_SIZE * CRITIC_ITERS],
                                                 args.seed + 2))
  curve_path = os.path.join(args.out, 'curve.jsonl')
  train_seconds, updates, next_eval, index = 0.0, 0, 0.0, 0
  losses = {}
  with open(curve_path, 'w') as curve:
    while True:
      if train_seconds >= next_eval or train_seconds >= args.budget_s:
        path = os.path.join(args.out, f'samples_{index:03d}.npz')
        np.savez(path, images=samples_uint8(trainer.generator, eval_noise))
        row = {'train_seconds': train_seconds, 'generator_updates': updates,
               'critic_updates': CRITIC_ITERS * updates, 'samples': os.path.basename(path),
               **losses}
        curve.write(json.dumps(row) + '\n')
        curve.flush()
        print(f'torch_textbook: {train_seconds:7.1f} s, {updates} generator updates',
              flush=True)
        index += 1
        next_eval += args.eval_every_s
        if train_seconds >= args.budget_s:
          break
      start = time.perf_counter()
      losses = trainer.iteration(batches)
      train_seconds += time.perf_counter() - start
      updates += 1
  info = {'threads': torch.get_num_threads(), 'torch_version': torch.__version__,
          'warmup_seconds': warmup_seconds, 'train_seconds': train_seconds,
          'generator_updates': updates, 'batch_size': BATCH_SIZE, 'critic_steps': CRITIC_ITERS,
          'dim': args.dim,
          'generator_parameters': parameter_count(trainer.generator),
          'critic_parameters': parameter_count(trainer.critic)}
  with open(os.path.join(args.out, 'info.json'), 'w') as f:
    json.dump(info, f, indent=1)


def parse_args(argv=None) -> argparse.Namespace:
  parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  parser.add_argument('--train_images', required=True,
                      help='.npy of uint8 training images [N, 28, 28, 1] (or [N, 28, 28]).')
  parser.add_argument('--out', required=True, help='Folder for curve.jsonl, samples, info.json.')
  parser.add_argument('--budget_s', type=float, default=600.0, help='Training wall seconds.')
  parser.add_argument('--eval_every_s', type=float, default=60.0,
                      help='Training seconds between sample dumps.')
  parser.add_argument('--eval_samples', type=int, default=2000)
  parser.add_argument('--seed', type=int, default=0)
  parser.add_argument('--dim', type=int, default=DIM,
                      help='DIM of both networks; anything but 64 is not the textbook model '
                      '(for the smoke test only).')
  parser.add_argument('--threads', type=int, default=len(os.sched_getaffinity(0)),
                      help='torch.set_num_threads (default: the CPU cores this process may use).')
  return parser.parse_args(argv)


if __name__ == '__main__':
  train(parse_args(sys.argv[1:]))
