"""What the training loop measures after each task, on every task seen so far.

Rows of the forgetting matrices (metric of task j after learning task i):

* ``nll_paper``: the Student's squared error (pixels in [0, 1]) + KL, one posterior sample; the
  quantity of the paper's Tables 1 and 3 (not a likelihood bound).
* ``nll_iwae``: an importance-weighted bound on -log p(x) in nats with ``eval.iwae_samples``
  samples under the Student's likelihood (``vae.likelihood``; for 'gaussian' a density on
  [0, 1] pixels, which can be negative).
* ``fid_own``: FID between samples of the method's generator (``method.fid_network()``: for
  the GAN methods the Assistant, the generator that has just learnt, after task 1 both have; for
  the VAE baselines their decoder) and the task's test images, with features of a small classifier this project
  trains on the sequence's training images (``feature_net``). The generator models every task
  seen, so its samples are compared with each task's test set and with all of them together
  (``fid_own_all``).
* ``fid_inception``: the same with the standard FID InceptionV3 pool-3 features, when
  ``eval.inception_weights`` names the pytorch-fid weights file.
"""

from __future__ import annotations

import logging
import os
from typing import Dict, List, Sequence

import flax.serialization
import jax
import numpy as np

from ltgans_jax import evaluation, feature_net, inception, rng
from ltgans_jax.data.sequences import Task

METRIC_NAMES = {
    'nll_paper': 'NLL, paper quantity (squared error + KL)',
    'nll_iwae': 'NLL bound in nats (importance-weighted)',
    'fid_own': feature_net.FID_NAME,
    'fid_inception': inception.FID_NAME + ' (InceptionV3 pool-3)',
}


def _sequence_labels(tasks: Sequence[Task]):
  """(images, labels) of every task's training set, labels unique per (task, class)."""
  images, labels = [], []
  for t, task in enumerate(tasks):
    images.append(task.train.images)
    labels.append(t * 100_000 + task.train.labels)
  labels = np.unique(np.concatenate(labels), return_inverse=True)[1]
  return np.concatenate(images), labels


class TaskEvaluator:
  """Builds the feature extractors once per run; ``evaluate`` gives one matrix row each."""

  def __init__(self, config, method, tasks: Sequence[Task], workdir: str):
    """``method``: the run's ``methods.LifelongMethod``."""
    self.config, self.method, self.tasks = config, method, tasks
    self.features = {'fid_own': feature_net.features_fn(self._own_feature_params(workdir))}
    if config.eval.inception_weights:
      variables = inception.load_fid_inception_params(config.eval.inception_weights)
      self.features['fid_inception'] = inception.features_fn(variables)

  def _own_feature_params(self, workdir: str):
    """Trains the feature classifier on the sequence, or reads it back from the workdir."""
    path = os.path.join(workdir, 'feature_net.msgpack')
    images, labels = _sequence_labels(self.tasks)
    num_classes = int(labels.max()) + 1
    key = rng.stream_key(self.config.seed, rng.FEATURE_NET)
    if os.path.exists(path):
      template = jax.eval_shape(lambda: feature_net.train_feature_net(
          images[:2], labels[:2], num_classes, 0, key))
      with open(path, 'rb') as f:
        return flax.serialization.from_bytes(template, f.read())
    logging.info('Training the FID feature network on %d images of %d (task, class) pairs.',
                 len(images), num_classes)
    params = feature_net.train_feature_net(images, labels, num_classes,
                                           self.config.eval.feature_net_steps, key)
    logging.info('Feature network accuracy on the training images: %.3f',
                 feature_net.accuracy(params, images[:2000], labels[:2000]))
    if jax.process_index() == 0:
      with open(path, 'wb') as f:
        f.write(flax.serialization.to_bytes(params))
    return params

  def generator_samples(self, state, num: int) -> np.ndarray:
    """[num, H, W, C] uint8 samples of the method's FID network (fixed latents)."""
    key = rng.stream_key(self.config.seed, rng.FID_LATENTS)
    out = []
    for i, start in enumerate(range(0, num, 500)):
      images = self.method.sample(state, self.method.fid_network(), jax.random.fold_in(key, i),
                                  min(500, num - start))
      out.append(np.asarray(jax.numpy.round((images + 1) * 127.5)).clip(0, 255))
    return np.concatenate(out).astype(np.uint8)

  def evaluate(self, state, task: int) -> Dict[str, List[float]]:
    """One row per metric: the value on each task 0..task after learning ``task``."""
    config, seen, method = self.config, self.tasks[:task + 1], self.method
    count = config.eval.num_examples
    tests = [t.test.images[:count] for t in seen]
    rows = {
        'nll_paper': [method.nll_paper(state, x, rng.stream_key(config.seed, rng.PAPER_NLL))
                      for x in tests],
        'nll_iwae': [method.nll_iwae(state, x, rng.stream_key(config.seed, rng.IWAE),
                                     config.eval.iwae_samples) for x in tests],
    }
    samples = self.generator_samples(state, max(len(x) for x in tests))
    everything = np.concatenate(tests)
    for name, features_fn in self.features.items():
      sample_features = evaluation.compute_features(features_fn, samples)
      stats = evaluation.feature_statistics(sample_features)
      row = []
      for x in tests + [everything]:
        reference = evaluation.feature_statistics(evaluation.compute_features(features_fn, x))
        row.append(evaluation.frechet_distance(*stats, *reference))
      rows[name], rows[f'{name}_all'] = row[:-1], row[-1:]
    return rows


def write_matrices(workdir: str, task_names: Sequence[str], rows_per_task) -> Dict[str, dict]:
  """Saves each metric's forgetting matrix as JSON and a heatmap under workdir/eval/;
  returns {metric: summary}."""
  summaries = {}
  os.makedirs(os.path.join(workdir, 'eval'), exist_ok=True)
  for metric, title in METRIC_NAMES.items():
    if metric not in rows_per_task[0]:
      continue
    matrix = [row[metric] + [None] * (len(task_names) - len(row[metric]))
              for row in rows_per_task]
    summaries[metric] = evaluation.save_forgetting(
        os.path.join(workdir, 'eval', f'{metric}.json'),
        os.path.join(workdir, 'eval', f'{metric}.png'), matrix, task_names, title)
  return summaries
