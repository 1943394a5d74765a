#!/usr/bin/env python
"""How fast a GAN learns MNIST on this CPU: FID and class coverage against training seconds.

What it measures. For each named setting of our WGAN-GP (``SETTINGS``) and for a textbook
reference, training on MNIST for a fixed wall-clock budget (``--budget_s``, default 600 s per
setting), evaluated every ``--eval_every_s`` seconds of training and at the end:

* the project's own FID (``feature_net.FID_NAME``: the Frechet distance on the penultimate
  layer of ``ltgans_jax/eval/feature_net.py``'s classifier, trained once on MNIST's training labels
  and cached as ``<out>/feature_net.msgpack``) of ``--eval_samples`` samples from a fixed batch
  of latents against a class-stratified subset of the test set of the same size
  (``eval_subset.stratified_indices``, seed 0);
* the replay audit's class coverage (``audit.replay_audit``: classes holding at least 2% of
  the samples, by the same classifier's argmax) and the largest class's share.

Why wall time: quality per CPU-second is what a user of this CPU waits for. A setting that does
fewer, more expensive updates (wider networks, more critic steps) or more, cheaper ones is
judged by the same clock. The clock counts training only: each JAX setting's update is
compiled ahead of time (reported as ``compile_seconds``) and run once on a copy of the state
(thrown away) before the clock starts; evaluation is outside it. The reference gets the same
treatment (a warm-up iteration off the clock, sampling off the clock).

Our GAN (every setting): WGAN-GP with lambda 10, z of 100 ~ N(0, I), batch 64, 28x28x1 images
in [-1, 1]; ``models.Generator`` / ``models.Critic`` (pixel-shuffle resampling, the CPU
convolution gradients of ``ltgans_jax/cpu/conv.py``, a critic without normalisation layers); the
losses of ``ltgans_jax/losses.py``; optimisers from ``network_state.gan_optimizer``. One jitted call
does a generator update's ``critic_steps`` critic updates and its generator update, unrolled in
Python (a convolution's weight gradient inside ``lax.scan`` / ``fori_loop`` runs many times
slower on XLA:CPU), on one stacked uint8 batch [critic_steps, 64, 28, 28, 1]; the state is
donated. The critic's loss is WGAN-GP written plainly, as ``ltgans_jax/methods/ltgans_steps.py``
writes it. Data order: a seeded permutation per epoch.

The settings (``SETTINGS``; add one there):

| name | widths G/D | optimiser | lr G / D | critic steps |
|---|---|---|---|---|
| today_small | 16 / 16 | Adam (0.5, 0.9) | 2e-4 / 2e-4 | 2 (the project's CPU setting) |
| authors_optim | 16 / 16 | RMSProp, TF1 defaults | 2e-4 / 2e-4 | 1 (the authors' code) |
| paper_scale | 64 / 64 | Adam (0.5, 0.9) | 1e-4 / 1e-4 | 5 (today's accelerator config) |
| w16_adam_c1 | 16 / 16 | Adam (0.5, 0.9) | 2e-4 / 2e-4 | 1 |
| w24_adam_c1 | 24 / 24 | Adam (0.5, 0.9) | 2e-4 / 2e-4 | 1 |
| w32_adam_c1 | 32 / 32 | Adam (0.5, 0.9) | 2e-4 / 2e-4 | 1 |
| w32_adam_c2 | 32 / 32 | Adam (0.5, 0.9) | 2e-4 / 2e-4 | 2 |
| w16_ttur | 16 / 16 | Adam (0.0, 0.9) | 1e-4 / 4e-4 | 1 |
| w32_ttur | 32 / 32 | Adam (0.0, 0.9) | 1e-4 / 4e-4 | 1 |
| w32_rmsprop | 32 / 32 | RMSProp, TF1 defaults | 2e-4 / 2e-4 | 1 |
| w24_rmsprop | 24 / 24 | RMSProp, TF1 defaults | 2e-4 / 2e-4 | 1 |

and ``torch_textbook``: Gulrajani et al. (2017)'s MNIST WGAN-GP in PyTorch (5x5 convolutions,
DIM 64, batch 50, 5 critic steps, Adam 1e-4 (0.5, 0.9), noise of 128), run by
``gan_speed_torch.py`` in a subprocess of its own (its docstring lists its few deviations from
the original); it writes samples at its evaluation points and this process measures them with
the same feature network.

Settings run one at a time, each from the same seed. After each, ``<out>/results.json`` (every
setting's curve and summary), ``<out>/table.md`` (also printed), ``<out>/fid_vs_time.png``
(FID, log scale, and coverage against training seconds; the reference dashed) and
``<out>/samples/<setting>.png`` are rewritten, so a crash loses only the setting in progress;
``--settings`` reruns a subset and merges it into an existing results.json. The target of the
issue: our best setting reaches the reference's final FID in at most half the reference's
training time, and covers 10/10 classes.

Run on a quiet machine (nothing else on the cores). At the defaults each setting takes its
budget plus about 1.5 min (compilation, 11 evaluations of 2000 samples); all ten settings about
2 hours, plus 5-10 min once for the feature network:

    python experiments/gan_speed.py --data_dir=/path/to/data            # all settings
    python experiments/gan_speed.py --data_dir=D --settings=torch_textbook,w32_adam_c1
    python experiments/gan_speed.py --quick                             # smoke test, bundled digits
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import gc
import hashlib
import importlib.metadata
import json
import logging
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from typing import Callable, Dict, Iterator, List, NamedTuple, Optional, Sequence

# The imports below follow the sys.path change (for ``common``) on purpose.
# pylint: disable=g-import-not-at-top,wrong-import-position
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common
common.setup()  # before jax: the repository root on sys.path, no memory preallocation

from ltgans_jax import config_base, losses, models, pixels, viz
from ltgans_jax.cpu import backend, xla_flags
from ltgans_jax.data import datasets, local, preprocess
from ltgans_jax.eval import audit, eval_subset, evaluation, feature_net
from ltgans_jax.methods import network_state
from ltgans_jax.methods.network_state import apply_gradients

import flax.serialization
import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
import optax
# pylint: enable=g-import-not-at-top,wrong-import-position

IMAGE_SIZE, CHANNELS, NUM_CLASSES = 28, 1, 10
BATCH_SIZE = 64
LATENT_DIM = 100
PENALTY_WEIGHT = 10.0
SAMPLE_CHUNK = 500
GRID_ROWS = 8
# The audit's (task, label) of every feature-net class: one task, the ten digits.
CLASS_PAIRS = [(0, c) for c in range(NUM_CLASSES)]
TORCH_SETTING = 'torch_textbook'
TORCH_DESCRIPTION = ('Gulrajani et al. 2017 MNIST WGAN-GP in PyTorch: 5x5 convs, DIM 64, '
                     'batch 50, 5 critic steps, Adam 1e-4 (0.5, 0.9)')
QUICK = {'budget_s': 10.0, 'eval_every_s': 5.0, 'eval_samples': 200, 'feature_net_steps': 100}
DEFAULTS = {'budget_s': 600.0, 'eval_every_s': 60.0, 'eval_samples': 2000,
            'feature_net_steps': 2000}


@dataclasses.dataclass(frozen=True)
class Setting:
  """One configuration of our GAN; everything else is fixed by the issue (see the docstring)."""
  description: str
  generator_width: int = 16
  critic_width: int = 16
  optimizer: str = 'adam'  # network_state.GAN_OPTIMIZERS: 'adam' or 'rmsprop' (TF1's defaults)
  generator_lr: float = 2e-4
  critic_lr: float = 2e-4
  b1: float = 0.5  # Adam only
  b2: float = 0.9
  critic_steps: int = 1


SETTINGS: Dict[str, Setting] = {
    'today_small': Setting("today's CPU setting: widths 16, Adam 2e-4 (0.5, 0.9), 2 critic "
                           'steps', critic_steps=2),
    'authors_optim': Setting("the authors' optimiser: RMSProp 2e-4 (TF1), 1 critic step, "
                             'widths 16', optimizer='rmsprop'),
    'paper_scale': Setting("today's accelerator config: widths 64, Adam 1e-4 (0.5, 0.9), 5 "
                           'critic steps', 64, 64, generator_lr=1e-4, critic_lr=1e-4,
                           critic_steps=5),
    'w16_adam_c1': Setting('widths 16, Adam 2e-4 (0.5, 0.9), 1 critic step'),
    'w24_adam_c1': Setting('widths 24, Adam 2e-4 (0.5, 0.9), 1 critic step', 24, 24),
    'w32_adam_c1': Setting('widths 32, Adam 2e-4 (0.5, 0.9), 1 critic step', 32, 32),
    'w32_adam_c2': Setting('widths 32, Adam 2e-4 (0.5, 0.9), 2 critic steps', 32, 32,
                           critic_steps=2),
    'w16_ttur': Setting('widths 16, TTUR: Adam (0.0, 0.9), G 1e-4 / D 4e-4, 1 critic step',
                        generator_lr=1e-4, critic_lr=4e-4, b1=0.0),
    'w32_ttur': Setting('widths 32, TTUR: Adam (0.0, 0.9), G 1e-4 / D 4e-4, 1 critic step',
                        32, 32, generator_lr=1e-4, critic_lr=4e-4, b1=0.0),
    'w32_rmsprop': Setting('widths 32, RMSProp 2e-4 (TF1), 1 critic step', 32, 32,
                           optimizer='rmsprop'),
    'w24_rmsprop': Setting('widths 24, RMSProp 2e-4 (TF1), 1 critic step', 24, 24,
                           optimizer='rmsprop'),
}
DEFAULT_SETTINGS = [TORCH_SETTING] + list(SETTINGS)


# ------------------------------------------------------------------------------------------
# Data.


class Data(NamedTuple):
  train_images: np.ndarray  # [N, 28, 28, 1] uint8
  train_labels: np.ndarray  # [N] int
  test_images: np.ndarray
  test_labels: np.ndarray
  description: str


def load_mnist(data_dir: str) -> Data:
  """MNIST's published IDX files under ``data_dir/mnist/``, through the project's loader."""
  config = config_base.get_config()
  config.data.data_dir = os.path.abspath(data_dir)
  config.data.image_size, config.data.channels = IMAGE_SIZE, CHANNELS
  splits = datasets.load('mnist', config)
  return Data(splits['train'].images, splits['train'].labels, splits['test'].images,
              splits['test'].labels, f'mnist ({config.data.data_dir})')


def load_bundled_digits() -> Data:
  """scikit-learn's bundled 8x8 digits resized to 28x28 (no download): for ``--quick``."""
  splits = local.load_sklearn_digits()
  resized = {name: preprocess.to_common_shape(s.images, IMAGE_SIZE, CHANNELS)
             for name, s in splits.items()}
  return Data(resized['train'], splits['train'].labels, resized['test'], splits['test'].labels,
              'scikit-learn digits resized to 28x28')


def batch_stream(images: np.ndarray, critic_steps: int, seed: int) -> Iterator[np.ndarray]:
  """Stacked batches uint8 [critic_steps, 64, 28, 28, 1], one seeded permutation per epoch
  (an epoch's tail that does not fill a stack is dropped)."""
  rng = np.random.default_rng(seed)
  size = critic_steps * BATCH_SIZE
  while True:
    order = rng.permutation(len(images))
    for start in range(0, len(order) - size + 1, size):
      yield images[order[start:start + size]].reshape(critic_steps, BATCH_SIZE,
                                                      *images.shape[1:])


# ------------------------------------------------------------------------------------------
# The feature network and the evaluation.


class FeatureNetwork(NamedTuple):
  params: dict
  test_accuracy: float
  sha256: str
  steps: int
  cached: bool


def feature_network(out: str, data: Data, steps: int, seed: int) -> FeatureNetwork:
  """The project's feature classifier, trained once on the training labels and cached in
  ``out`` (reused while the data, the step count and the seed are the same)."""
  path, meta_path = os.path.join(out, 'feature_net.msgpack'), os.path.join(out, 'feature_net.json')
  meta = {'data': data.description, 'num_train': int(len(data.train_images)), 'steps': steps,
          'seed': seed}
  cached = os.path.exists(path) and os.path.exists(meta_path)
  if cached:
    with open(meta_path) as f:
      cached = {k: v for k, v in json.load(f).items() if k in meta} == meta
  if cached:
    with open(path, 'rb') as f:
      raw = f.read()
    params = flax.serialization.msgpack_restore(raw)
  else:
    logging.info('training the feature network: %d steps on %d images', steps,
                 len(data.train_images))
    params = feature_net.train_feature_net(data.train_images, data.train_labels, NUM_CLASSES,
                                           steps, jax.random.PRNGKey(seed))
    raw = flax.serialization.msgpack_serialize(jax.tree_util.tree_map(np.asarray, params))
    with open(path, 'wb') as f:
      f.write(raw)
  accuracy = feature_net.accuracy(params, data.test_images, data.test_labels)
  with open(meta_path, 'w') as f:
    json.dump({**meta, 'test_accuracy': accuracy}, f, indent=1)
  logging.info('feature network (%s): test accuracy %.4f', 'cached' if cached else 'trained',
               accuracy)
  return FeatureNetwork(params, accuracy, hashlib.sha256(raw).hexdigest()[:16], steps,
                        bool(cached))


class Evaluator:
  """uint8 samples [N, 28, 28, 1] -> FID (own features) against a fixed stratified test
  subset, classes covered and the largest class's share."""

  def __init__(self, params, test_images: np.ndarray, test_labels: np.ndarray, count: int):
    self.features = feature_net.features_fn(params)
    self.logits = feature_net.logits_fn(params)
    subset = eval_subset.stratified_indices(test_labels, count, seed=0, task=0)
    self.num_reference = len(subset)
    self.reference = self.statistics(test_images[subset])

  def statistics(self, images: np.ndarray):
    return evaluation.feature_statistics(evaluation.compute_features(self.features, images))

  def __call__(self, samples: np.ndarray) -> Dict[str, float]:
    fid = evaluation.frechet_distance(*self.statistics(samples), *self.reference)
    predicted = audit.classify_all(self.logits, samples)
    covered = audit.replay_audit(predicted, CLASS_PAIRS, num_seen=1)['covered'][0]
    counts = np.bincount(predicted, minlength=NUM_CLASSES)
    return {'fid_own': fid, 'classes_covered': int(covered),
            'max_class_share': float(counts.max() / len(predicted))}


# ------------------------------------------------------------------------------------------
# Our GAN.


class GanState(flax.struct.PyTreeNode):
  generator: network_state.NetworkState
  critic: network_state.NetworkState


class Gan(NamedTuple):
  generator: models.Generator
  critic: models.Critic
  generator_optimizer: optax.GradientTransformation
  critic_optimizer: optax.GradientTransformation


def optimizer(setting: Setting, learning_rate: float) -> optax.GradientTransformation:
  """``state.gan_optimizer`` of the base config with this setting's optimiser fields."""
  config = config_base.get_config()
  config.optim.gan_optimizer = setting.optimizer
  config.optim.gan_learning_rate = learning_rate
  config.optim.gan_b1, config.optim.gan_b2 = setting.b1, setting.b2
  return network_state.gan_optimizer(config)


def build_gan(setting: Setting) -> Gan:
  return Gan(
      generator=models.Generator(IMAGE_SIZE, CHANNELS, setting.generator_width,
                                 resample='pixel_shuffle', conv=backend.conv_layer()),
      critic=models.Critic(IMAGE_SIZE, setting.critic_width, 'pixel_shuffle',
                           conv=backend.conv_layer()),
      generator_optimizer=optimizer(setting, setting.generator_lr),
      critic_optimizer=optimizer(setting, setting.critic_lr))


def init_gan(gan: Gan, key: jax.Array) -> GanState:
  """Fresh parameters and optimiser states (jitted: one compilation instead of one per
  initialiser op)."""

  @jax.jit
  def init(key):
    key_g, key_d = jax.random.split(key)
    g_params = gan.generator.init(key_g, jnp.zeros((1, LATENT_DIM)))['params']
    d_params = gan.critic.init(key_d, jnp.zeros((1, IMAGE_SIZE, IMAGE_SIZE, CHANNELS)))['params']
    return GanState(
        generator=network_state.NetworkState(g_params, gan.generator_optimizer.init(g_params)),
        critic=network_state.NetworkState(d_params, gan.critic_optimizer.init(d_params)))

  return init(key)


def make_update(gan: Gan, critic_steps: int) -> Callable:
  """``update(state, batches uint8 [critic_steps, B, 28, 28, 1], key) -> (state, metrics)``:
  ``critic_steps`` critic updates, then one generator update, in one jitted call (unrolled in
  Python, not a loop: see the module docstring). The state is donated."""

  def critic_fn(params):
    return lambda images: gan.critic.apply({'params': params}, images)

  def generate(params, z):
    return gan.generator.apply({'params': params}, z)

  def critic_loss_fn(params, real, fake, key):
    # WGAN-GP: E D(fake) - E D(real) + lambda E penalty.
    critic = critic_fn(params)
    penalty = jnp.mean(losses.gradient_penalty(critic, losses.interpolate(real, fake, key)))
    return jnp.mean(critic(fake)) - jnp.mean(critic(real)) + PENALTY_WEIGHT * penalty

  def update(state: GanState, batches, key):
    keys = jax.random.split(key, 2 * critic_steps + 1)
    critic = state.critic
    for i in range(critic_steps):
      real = pixels.from_uint8(batches[i])
      fake = generate(state.generator.params,
                      jax.random.normal(keys[2 * i], (real.shape[0], LATENT_DIM)))
      critic_loss, grads = jax.value_and_grad(critic_loss_fn)(critic.params, real, fake,
                                                              keys[2 * i + 1])
      critic = apply_gradients(critic, grads, gan.critic_optimizer)
    z = jax.random.normal(keys[-1], (batches.shape[1], LATENT_DIM))

    def generator_loss(params):
      scores = critic_fn(critic.params)(generate(params, z))
      return jnp.mean(losses.generator_wasserstein_term(scores))

    g_loss, g_grads = jax.value_and_grad(generator_loss)(state.generator.params)
    generator = apply_gradients(state.generator, g_grads, gan.generator_optimizer)
    return (GanState(generator=generator, critic=critic),
            {'critic_loss': critic_loss, 'generator_loss': g_loss})

  return jax.jit(update, donate_argnums=0)


def make_sampler(generator: models.Generator) -> Callable[[dict, np.ndarray], np.ndarray]:
  """(params, z [N, 100]) -> uint8 samples [N, 28, 28, 1], in chunks of one compiled size."""

  @jax.jit
  def chunk(params, z):
    images = generator.apply({'params': params}, z)
    return jnp.clip(jnp.round((images + 1.0) * 127.5), 0, 255).astype(jnp.uint8)

  def sample(params, z):
    size = min(SAMPLE_CHUNK, len(z))
    out = []
    for start in range(0, len(z), size):
      piece = z[start:start + size]
      padded = np.concatenate([piece, np.zeros((size - len(piece), z.shape[1]), z.dtype)])
      out.append(np.asarray(chunk(params, padded))[:len(piece)])
    return np.concatenate(out)

  return sample


def parameter_count(tree) -> int:
  return int(sum(np.size(leaf) for leaf in jax.tree_util.tree_leaves(tree)))


# ------------------------------------------------------------------------------------------
# Training for a wall-clock budget.


class Clock:
  """When to evaluate: at 0, every ``every`` training seconds, and once the budget is spent."""

  def __init__(self, budget: float, every: float):
    self.budget, self.every, self.next_eval = budget, every, 0.0

  def should_evaluate(self, seconds: float) -> bool:
    return seconds >= self.next_eval or seconds >= self.budget

  def evaluated(self) -> None:
    self.next_eval += self.every

  def done(self, seconds: float) -> bool:
    return seconds >= self.budget


def progress_line(name: str, row: dict) -> str:
  seconds = row['train_seconds']
  rate = row['generator_updates'] / seconds if seconds > 0 else 0.0
  return (f'{name}: {seconds:7.1f} s, {row["generator_updates"]:6d} generator updates '
          f'({rate:6.2f}/s), {feature_net.FID_NAME} {row["fid_own"]:8.3f}, classes '
          f'{row["classes_covered"]}/{NUM_CLASSES}, max class share '
          f'{row["max_class_share"]:.3f}')


class CurveWriter:
  """Appends evaluation rows to ``<out>/curves/<name>.jsonl`` as they come and logs them."""

  def __init__(self, out: str, name: str):
    os.makedirs(os.path.join(out, 'curves'), exist_ok=True)
    self.name, self.rows = name, []
    self.path = os.path.join(out, 'curves', f'{name}.jsonl')
    open(self.path, 'w').close()

  def add(self, row: dict) -> None:
    self.rows.append(row)
    with open(self.path, 'a') as f:
      f.write(json.dumps(row) + '\n')
    logging.info('%s', progress_line(self.name, row))


def train_jax_setting(name: str, setting: Setting, data: Data, evaluator: Evaluator,
                      args: argparse.Namespace) -> dict:
  """Trains one setting for ``args.budget_s`` training seconds; returns its result record."""
  start = time.perf_counter()
  gan = build_gan(setting)
  init_key, train_key = jax.random.split(jax.random.PRNGKey(args.seed))
  state = init_gan(gan, init_key)
  logging.info('%s: initialised in %.1f s', name, time.perf_counter() - start)
  update = make_update(gan, setting.critic_steps)
  batches = batch_stream(data.train_images, setting.critic_steps, args.seed)

  start = time.perf_counter()
  compiled = update.lower(state, next(batch_stream(data.train_images, setting.critic_steps,
                                                   args.seed)), train_key).compile()
  compile_seconds = time.perf_counter() - start
  # One call on a copy (thrown away), so that first-run costs stay off the clock.
  start = time.perf_counter()
  warm_batches = batch_stream(data.train_images, setting.critic_steps, args.seed + 2)
  jax.block_until_ready(compiled(network_state.copy_tree(state), next(warm_batches), train_key))
  warmup_seconds = time.perf_counter() - start
  logging.info('%s: compiled in %.1f s, warm-up call %.2f s', name, compile_seconds,
               warmup_seconds)

  sample = make_sampler(gan.generator)
  eval_z = np.asarray(jax.random.normal(jax.random.PRNGKey(args.seed + 1),
                                        (args.eval_samples, LATENT_DIM)))
  curve, clock = CurveWriter(args.out, name), Clock(args.budget_s, args.eval_every_s)
  train_seconds, updates, metrics = 0.0, 0, {}
  while True:
    if clock.should_evaluate(train_seconds):
      samples = sample(state.generator.params, eval_z)
      curve.add(evaluation_row(evaluator, samples, train_seconds, updates,
                               setting.critic_steps, metrics))
      clock.evaluated()
      if clock.done(train_seconds) or not np.isfinite(metrics.get('critic_loss', 0.0)):
        break
    start = time.perf_counter()  # the batch's gathering counts, as in the reference
    state, step_metrics = compiled(state, next(batches), jax.random.fold_in(train_key, updates))
    jax.block_until_ready(state)
    train_seconds += time.perf_counter() - start
    updates += 1
    metrics = {k: float(v) for k, v in step_metrics.items()}
  save_grid(args.out, name, samples)
  return {
      'kind': 'jax', 'description': setting.description, 'setting': dataclasses.asdict(setting),
      'curve': curve.rows, 'compile_seconds': compile_seconds, 'warmup_seconds': warmup_seconds,
      'parameters': {'generator': parameter_count(state.generator.params),
                     'critic': parameter_count(state.critic.params)},
      'batch_size': BATCH_SIZE, 'latent_dim': LATENT_DIM}


def evaluation_row(evaluator: Evaluator, samples: np.ndarray, train_seconds: float,
                   updates: int, critic_steps: int, metrics: dict) -> dict:
  start = time.perf_counter()
  row = {'train_seconds': train_seconds, 'generator_updates': updates,
         'critic_updates': critic_steps * updates, **evaluator(samples)}
  row.update({k: v for k, v in metrics.items() if k in ('critic_loss', 'generator_loss')})
  row['eval_seconds'] = time.perf_counter() - start
  return row


def train_torch_reference(data: Data, evaluator: Evaluator, args: argparse.Namespace) -> dict:
  """Runs ``gan_speed_torch.py`` in a subprocess for the same budget, then measures the
  samples it wrote with this process's feature network."""
  work = tempfile.mkdtemp(prefix='gan_speed_torch_')
  try:
    images_path = os.path.join(work, 'train_images.npy')
    np.save(images_path, data.train_images)
    command = [sys.executable, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                            'gan_speed_torch.py'),
               f'--train_images={images_path}', f'--out={work}', f'--budget_s={args.budget_s}',
               f'--eval_every_s={args.eval_every_s}', f'--eval_samples={args.eval_samples}',
               f'--seed={args.seed}', f'--threads={args.torch_threads}']
    logging.info('%s: running %s', TORCH_SETTING, ' '.join(command))
    subprocess.run(command, check=True)
    with open(os.path.join(work, 'info.json')) as f:
      info = json.load(f)
    curve = CurveWriter(args.out, TORCH_SETTING)
    with open(os.path.join(work, 'curve.jsonl')) as f:
      dumps = [json.loads(line) for line in f if line.strip()]
    for dump in dumps:
      samples = np.load(os.path.join(work, dump.pop('samples')))['images']
      start = time.perf_counter()
      row = {**{k: dump[k] for k in ('train_seconds', 'generator_updates', 'critic_updates')},
             **evaluator(samples)}
      row.update({k: dump[k] for k in ('critic_loss', 'generator_loss') if k in dump})
      row['eval_seconds'] = time.perf_counter() - start
      curve.add(row)
    save_grid(args.out, TORCH_SETTING, samples)
  finally:
    shutil.rmtree(work, ignore_errors=True)
  return {'kind': 'torch', 'description': TORCH_DESCRIPTION, 'curve': curve.rows,
          'compile_seconds': 0.0, 'warmup_seconds': info['warmup_seconds'],
          'parameters': {'generator': info['generator_parameters'],
                         'critic': info['critic_parameters']},
          'batch_size': info['batch_size'], 'latent_dim': 128, 'torch_threads': info['threads'],
          'torch_version': info['torch_version']}


def save_grid(out: str, name: str, samples: np.ndarray) -> None:
  count = min(len(samples), GRID_ROWS * GRID_ROWS) // GRID_ROWS * GRID_ROWS
  if count == 0:
    return
  grid = viz.image_grid(samples[:count].astype(np.float32) / 127.5 - 1.0, GRID_ROWS)
  viz.save_png(os.path.join(out, 'samples', f'{name}.png'), grid, scale=3)


# ------------------------------------------------------------------------------------------
# Summaries, table, plot.


def first_time_at_or_below(curve: Sequence[dict], target: Optional[float]) -> Optional[float]:
  """The first evaluated training second with FID <= ``target`` (None if never)."""
  if target is None:
    return None
  return next((row['train_seconds'] for row in curve if row['fid_own'] <= target), None)


def summarize(results: Dict[str, dict]) -> Dict[str, dict]:
  """Per setting: final and best FID, coverage, update rate, and the time to reach the
  reference's final FID (needs the reference's result)."""
  reference = results.get(TORCH_SETTING)
  target = reference['curve'][-1]['fid_own'] if reference else None
  reference_seconds = reference['curve'][-1]['train_seconds'] if reference else None
  summaries = {}
  for name, result in results.items():
    final = result['curve'][-1]
    reach = first_time_at_or_below(result['curve'], target)
    summaries[name] = {
        'final_fid': final['fid_own'], 'best_fid': min(r['fid_own'] for r in result['curve']),
        'train_seconds': final['train_seconds'],
        'classes_covered': final['classes_covered'], 'max_class_share': final['max_class_share'],
        'generator_updates': final['generator_updates'],
        'generator_updates_per_s': (final['generator_updates'] / final['train_seconds']
                                    if final['train_seconds'] > 0 else None),
        'seconds_to_reference_final_fid': reach,
        'meets_target': (None if target is None or name == TORCH_SETTING else bool(
            reach is not None and reach <= reference_seconds / 2
            and final['classes_covered'] == NUM_CLASSES)),
    }
  return summaries


def _seconds(value: Optional[float]) -> str:
  return 'n/a' if value is None else f'{value:.0f}'


def table_markdown(results: Dict[str, dict], summaries: Dict[str, dict], meta: dict) -> str:
  header = ['setting', 'what it is', 'gen updates/s', f'final {feature_net.FID_NAME}',
            f'best {feature_net.FID_NAME}', "time to reach torch's final FID (s)",
            'classes covered', 'compile (s, off the clock)']
  rows = []
  for name, result in results.items():
    s = summaries[name]
    reach = s['seconds_to_reference_final_fid']
    rows.append([f'`{name}`', result['description'], f'{s["generator_updates_per_s"] or 0:.2f}',
                 f'{s["final_fid"]:.2f}', f'{s["best_fid"]:.2f}',
                 'never' if reach is None and TORCH_SETTING in results else _seconds(reach),
                 f'{s["classes_covered"]}/{NUM_CLASSES}',
                 f'{result.get("compile_seconds", 0.0):.0f}'])
  lines = [f'Training budget {meta["budget_s"]:g} s per setting on {meta["machine"]["cpu"]} '
           f'({meta["machine"]["usable_cores"]} usable cores); {feature_net.FID_NAME} of '
           f'{meta["eval_samples"]} samples against {meta["eval_samples"]} stratified test '
           f'images (real training images score {meta["fid_train_vs_test"]:.2f}); evaluations '
           f'every {meta["eval_every_s"]:g} s of training, so a time to reach a FID is rounded '
           'up to that grid.', '', common.markdown_table(header, rows), '',
           verdict(summaries, results)]
  return '\n'.join(lines) + '\n'


def verdict(summaries: Dict[str, dict], results: Dict[str, dict]) -> str:
  if TORCH_SETTING not in results:
    return 'No torch_textbook result yet: the target (half its time to its final FID) is open.'
  ours = {n: s for n, s in summaries.items() if n != TORCH_SETTING}
  if not ours:
    return 'Only the reference has run.'
  reached = {n: s for n, s in ours.items() if s['seconds_to_reference_final_fid'] is not None}
  if not reached:
    best = min(ours, key=lambda n: ours[n]['final_fid'])
    return (f'No setting of ours reached the reference\'s final FID '
            f'({summaries[TORCH_SETTING]["final_fid"]:.3f}); best final: `{best}` '
            f'({ours[best]["final_fid"]:.3f}). Target not met.')
  best = min(reached, key=lambda n: reached[n]['seconds_to_reference_final_fid'])
  s, half = reached[best], summaries[TORCH_SETTING]['train_seconds'] / 2
  met = s['meets_target']
  return (f'Fastest to the reference\'s final FID ({summaries[TORCH_SETTING]["final_fid"]:.3f}): '
          f'`{best}` at {s["seconds_to_reference_final_fid"]:.0f} s (half the reference\'s time: '
          f'{half:.0f} s), {s["classes_covered"]}/{NUM_CLASSES} classes at the end. Target '
          f'{"met" if met else "not met"}.')


def plot_curves(path: str, results: Dict[str, dict], summaries: Dict[str, dict]) -> None:
  """FID (log scale) and classes covered against training seconds; the reference dashed."""
  figure, (ax_fid, ax_cov) = common.new_figure(12.0, 4.5, ncols=2)
  for name, result in results.items():
    seconds = [r['train_seconds'] for r in result['curve']]
    style = dict(linestyle='--', color='black', linewidth=2) if name == TORCH_SETTING else {}
    ax_fid.plot(seconds, [max(r['fid_own'], 1e-6) for r in result['curve']], marker='.',
                label=name, **style)
    ax_cov.plot(seconds, [r['classes_covered'] for r in result['curve']], marker='.',
                label=name, **style)
  if TORCH_SETTING in summaries:
    reference = summaries[TORCH_SETTING]
    ax_fid.axhline(reference['final_fid'], color='grey', linestyle=':', linewidth=1)
    ax_fid.axvline(reference['train_seconds'] / 2, color='grey', linestyle=':', linewidth=1)
  ax_fid.set_yscale('log')
  ax_fid.set_xlabel('training seconds')
  ax_fid.set_ylabel(feature_net.FID_NAME)
  ax_fid.set_title('FID against training time (dotted: torch final FID, half its time)',
                   fontsize=9)
  ax_cov.set_xlabel('training seconds')
  ax_cov.set_ylabel(f'classes covered (of {NUM_CLASSES}, >= 2% each)')
  ax_cov.set_ylim(0, NUM_CLASSES + 0.5)
  ax_fid.legend(fontsize=7, loc='upper right')
  figure.tight_layout()
  figure.savefig(path)


def write_outputs(out: str, results: Dict[str, dict], meta: dict) -> str:
  """results.json, table.md and fid_vs_time.png from every setting run so far."""
  summaries = summarize(results)
  for name, result in results.items():
    result['summary'] = summaries[name]
  common.write_json(os.path.join(out, 'results.json'), {**meta, 'settings': results})
  table = table_markdown(results, summaries, meta)
  with open(os.path.join(out, 'table.md'), 'w') as f:
    f.write(table)
  plot_curves(os.path.join(out, 'fid_vs_time.png'), results, summaries)
  return table


# ------------------------------------------------------------------------------------------
# The machine and the run.


def _command_output(command: List[str]) -> str:
  try:
    return subprocess.run(command, capture_output=True, text=True, check=False,
                          cwd=common.REPO_ROOT, timeout=60).stdout.strip()
  except (OSError, subprocess.TimeoutExpired):
    return ''


def machine_info() -> dict:
  lscpu = dict(line.split(':', 1) for line in _command_output(['lscpu']).splitlines()
               if ':' in line)
  versions = {}
  for package in ('jax', 'jaxlib', 'flax', 'optax', 'numpy', 'torch'):
    try:
      versions[package] = importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
      versions[package] = None
  return {
      'cpu': lscpu.get('Model name', common.cpu_name()).strip(),
      'cpus': lscpu.get('CPU(s)', str(os.cpu_count())).strip(),
      'threads_per_core': lscpu.get('Thread(s) per core', '?').strip(),
      'usable_cores': len(os.sched_getaffinity(0)),
      'host': platform.node(), 'python': platform.python_version(), 'versions': versions,
      'jax_devices': str(jax.devices()), 'xla_flags': os.environ.get('XLA_FLAGS', ''),
  }


def git_commit() -> str:
  commit = _command_output(['git', 'rev-parse', 'HEAD']) or 'unknown'
  dirty = _command_output(['git', 'status', '--porcelain', '--untracked-files=no'])
  return commit + (' (with uncommitted changes)' if dirty else '')


def load_results(out: str) -> Dict[str, dict]:
  path = os.path.join(out, 'results.json')
  if not os.path.exists(path):
    return {}
  with open(path) as f:
    return json.load(f).get('settings', {})


def parse_args(argv: Optional[Sequence[str]]) -> argparse.Namespace:
  parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0],
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument('--data_dir', default=None,
                      help='Folder holding mnist/ with the IDX .gz files (optional with --quick, '
                      "which then uses scikit-learn's bundled digits).")
  parser.add_argument('--budget_s', type=float, default=None,
                      help=f'Training seconds per setting (default {DEFAULTS["budget_s"]:g}, '
                      f'{QUICK["budget_s"]:g} with --quick).')
  for name, kind, what in (('eval_every_s', float, 'Training seconds between evaluations'),
                           ('eval_samples', int, 'Samples (and test images) per FID'),
                           ('feature_net_steps', int, 'Training steps of the feature network')):
    parser.add_argument(f'--{name}', type=kind, default=None,
                        help=f'{what} (default {DEFAULTS[name]:g}).')
  parser.add_argument('--settings', default=','.join(DEFAULT_SETTINGS),
                      help=f'Comma-separated names, run in this order: {TORCH_SETTING}, '
                      f'{", ".join(SETTINGS)}.')
  parser.add_argument('--torch', action='store_true',
                      help=f'Also run {TORCH_SETTING} (first) when --settings does not name it.')
  parser.add_argument('--torch_threads', type=int, default=len(os.sched_getaffinity(0)),
                      help='torch.set_num_threads of the reference (default: the usable cores).')
  parser.add_argument('--seed', type=int, default=0)
  parser.add_argument('--out', default=None,
                      help='Results folder (default experiments/results/gan_speed; a temporary '
                      'folder with --quick).')
  parser.add_argument('--quick', action='store_true',
                      help='Smoke test: 10 s per setting, 200 samples, a 100-step feature net; '
                      'the numbers mean nothing.')
  args = parser.parse_args(argv)
  for key, value in (QUICK if args.quick else DEFAULTS).items():
    if getattr(args, key) is None:
      setattr(args, key, value)
  names = [n.strip() for n in args.settings.split(',') if n.strip()]
  if args.torch and TORCH_SETTING not in names:
    names.insert(0, TORCH_SETTING)
  unknown = [n for n in names if n != TORCH_SETTING and n not in SETTINGS]
  if unknown:
    parser.error(f'unknown settings {unknown}; use {TORCH_SETTING} or one of {list(SETTINGS)}.')
  args.settings = list(dict.fromkeys(names))
  if args.data_dir is None and not args.quick:
    parser.error('--data_dir is required (the folder that holds mnist/), except with --quick.')
  if args.out is None:
    args.out = (os.path.join(tempfile.gettempdir(), 'ltgans_quick', 'gan_speed') if args.quick
                else os.path.join(common.REPO_ROOT, 'experiments', 'results', 'gan_speed'))
  args.out = os.path.abspath(args.out)
  return args


def main(argv: Optional[Sequence[str]] = None) -> Dict[str, dict]:
  """Runs the requested settings one after another; returns every setting's result record."""
  xla_flags.apply_defaults()  # as ``python -m ltgans_jax.main`` runs
  argv = sys.argv[1:] if argv is None else list(argv)
  args = parse_args(argv)
  common.setup_logging()
  os.makedirs(args.out, exist_ok=True)
  data = load_bundled_digits() if args.data_dir is None else load_mnist(args.data_dir)
  logging.info('data: %s, %d train / %d test images', data.description, len(data.train_images),
               len(data.test_images))
  features = feature_network(args.out, data, args.feature_net_steps, args.seed)
  evaluator = Evaluator(features.params, data.test_images, data.test_labels, args.eval_samples)
  args.eval_samples = evaluator.num_reference  # as many samples as test images (a small set)
  train_subset = np.random.default_rng(args.seed).choice(len(data.train_images),
                                                         evaluator.num_reference, replace=False)
  fid_floor = evaluator(data.train_images[train_subset])['fid_own']
  logging.info('%s of real training images against the test subset: %.3f',
               feature_net.FID_NAME, fid_floor)
  meta = {'budget_s': args.budget_s, 'eval_every_s': args.eval_every_s,
          'eval_samples': args.eval_samples, 'data': data.description,
          'feature_net': {'steps': features.steps, 'test_accuracy': features.test_accuracy,
                          'sha256_16': features.sha256, 'reused_from_cache': features.cached},
          'fid_name': feature_net.FID_NAME, 'fid_train_vs_test': fid_floor,
          'machine': machine_info(), 'git_commit': git_commit(),
          'command': ' '.join(['python', 'experiments/gan_speed.py'] + argv),
          'written': datetime.datetime.now().isoformat(timespec='seconds')}
  results = load_results(args.out)
  stale = [n for n, r in results.items() if r.get('feature_net_sha256_16') != features.sha256]
  if stale:
    logging.warning('results of %s were measured with another feature network; rerun them '
                    'for comparable numbers.', stale)
  for name in args.settings:
    logging.info('=== %s ===', name)
    try:
      if name == TORCH_SETTING:
        result = train_torch_reference(data, evaluator, args)
      else:
        result = train_jax_setting(name, SETTINGS[name], data, evaluator, args)
    except (subprocess.CalledProcessError, OSError) as e:
      logging.error('%s failed (%s); continuing with the others.', name, e)
      continue
    result.update({'budget_s': args.budget_s, 'eval_every_s': args.eval_every_s,
                   'feature_net_sha256_16': features.sha256, 'command': meta['command'],
                   'git_commit': meta['git_commit'],
                   'finished': datetime.datetime.now().isoformat(timespec='seconds')})
    results[name] = result
    write_outputs(args.out, results, meta)
    gc.collect()
  print(write_outputs(args.out, results, meta) if results else 'no results.')
  logging.info('results in %s', args.out)
  return results


if __name__ == '__main__':
  main()
