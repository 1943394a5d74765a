"""What the training loop measures after each task, on every task seen so far:
``TaskEvaluator.evaluate`` gives one row of every forgetting matrix (``matrices``); the rows'
names and titles are in ``metric_names``, and ``run.report`` prints them.

Rows of the forgetting matrices (metric of task j after learning task i):

* ``nll_paper``: the Student's squared error (pixels in [0, 1]) + KL, one posterior sample; the
  quantity of the paper's Tables 1 and 3 (not a likelihood bound).
* ``nll_iwae``: an importance-weighted bound on -log p(x) in nats with ``eval.iwae_samples``
  samples under the Student's likelihood (``vae.likelihood``; for 'gaussian' a density on
  [0, 1] pixels, which can be negative).
* ``fid_own``: FID between samples of the method's generator (``method.fid_network()``: for
  the GAN methods the Assistant, the generator that has just learnt, after task 1 both have; for
  the VAE baselines their decoder) and the task's test images, with features of a small
  classifier this project trains on the sequence's training images (``feature_net``). The
  generator models every task seen, so its samples are compared with each task's test set and
  with all of them together (``fid_own_all``).
* ``fid_inception``: the same with the standard FID InceptionV3 pool-3 features, when
  ``eval.inception_weights`` names the pytorch-fid weights file.
* ``kid_<features>``, ``precision_<features>``, ``recall_<features>``, ``density_<features>``,
  ``coverage_<features>`` (``<features>``: ``own``, and ``inception`` with the weights): the KID
  (unbiased MMD^2, cubic polynomial kernel) and the k-NN precision / recall / density /
  coverage (k = 5) of ``generative_metrics``, on the very features (same samples, same test
  images) that the FID of that row reads; and ``<metric>_all`` against all seen test sets
  together. Unlike the FID, the KID is unbiased at these sample sizes.
* ``<any of the above but the NLLs>_student``: in the GAN methods, the same rows for the
  Student decoder's prior samples (``STUDENT_ROWS``), the paper's second generative model.
* ``audit_share_<network>``, ``audit_classes_<network>``: the replay audit (``audit``) of
  each of the method's ``sample_networks``: the share of its samples the feature network
  assigns to each task seen, and how many of that task's classes they cover;
  ``audit_classifier_accuracy``: the feature network's accuracy on each task's evaluation
  subset, so that the audit's reliability is on record beside it.

Every metric reads the same images of each test set: one fixed, seeded, class-stratified subset
of ``eval.num_examples`` per task (``eval_subset``). Their features, and the mean and covariance
the FID fits to them, are computed once per extractor and task and cached in memory and in
``workdir/eval/reference/`` (``reference_stats``; ``eval.cache_reference_stats``).
"""

from __future__ import annotations

import functools
import os
from typing import Dict, List, Optional, Sequence

import jax
import numpy as np

from ltgans_jax import pixels, rng
from ltgans_jax.data.sequences import Task
from ltgans_jax.eval import audit, eval_subset, evaluation, feature_net, generative_metrics
from ltgans_jax.eval import inception, metric_names, reference_stats


@functools.lru_cache(maxsize=1)
def _inception_digest(path: str) -> str:
  """``reference_stats.tree_digest`` of the weights in ``path`` (large: hashed once)."""
  return reference_stats.tree_digest(inception.fid_variables(path))


# The training run's cached reference statistics (``reference_stats``), in the workdir.
REFERENCE_FOLDER = os.path.join('eval', 'reference')


class TaskEvaluator:
  """Builds the feature extractors once per run, and ``references``, the test sets' reference
  statistics (``reference_stats.ReferenceCache``); ``evaluate`` gives one matrix row each."""

  def __init__(self, config, method, tasks: Sequence[Task], workdir: str,
               reference_folder: Optional[str] = None):
    """``method``: the run's ``base.LifelongMethod``. ``reference_folder``: where computed
    reference statistics are written (default: the training run's ``workdir/eval/reference``,
    which is read in any case; ``--mode=evaluate`` names its own, so that it reuses the
    training run's files without ever writing into them)."""
    self.config, self.method, self.tasks = config, method, tasks
    count, seed = config.eval.num_examples, config.eval.subset_seed
    self.subset_indices = eval_subset.task_subsets([t.test.labels for t in tasks], count, seed)
    # The images every metric and picture reads: [n_t, H, W, C] uint8 per task, and labels.
    self.test_images = [t.test.images[i] for t, i in zip(tasks, self.subset_indices)]
    self.test_labels = [t.test.labels[i] for t, i in zip(tasks, self.subset_indices)]
    self.protocol = eval_subset.describe(count, seed)
    # The feature classifier: one class per (task, label) of the sequence's training images.
    labels, self.class_pairs = audit.sequence_classes([t.train.labels for t in tasks])
    own_params = feature_net.trained_params(
        workdir, np.concatenate([t.train.images for t in tasks]), np.concatenate(labels),
        len(self.class_pairs), config.eval.feature_net_steps,
        rng.stream_key(config.seed, rng.FEATURE_NET), config.eval.feature_net_cache)
    self.features = {'fid_own': feature_net.features_fn(own_params)}
    height, width, channels = self.test_images[0].shape[1:]
    size = f'{height}x{width}x{channels}'
    # What each extractor is and the image size it is fed, as the reports print it.
    self.feature_descriptions = {'fid_own': (
        f'the project\'s feature classifier (`feature_net`, '
        f'{own_params["features"]["kernel"].shape[1]}-d penultimate ReLU layer, trained on the '
        f'sequence\'s training images), fed the images at {size} as stored (no resize)')}
    self.classify = feature_net.logits_fn(own_params)
    if config.eval.inception_weights:
      self.features['fid_inception'] = inception.features_fn(
          inception.fid_variables(config.eval.inception_weights))
      self.feature_descriptions['fid_inception'] = (
          f'pytorch-fid\'s FID InceptionV3 pool-3 ({inception.FEATURE_DIM}-d, weights '
          f'`{os.path.basename(config.eval.inception_weights)}`), fed the {size} images '
          f'resized bilinearly to {inception.INPUT_SIZE}x{inception.INPUT_SIZE}'
          + (' with the grey channel repeated to 3' if channels == 1 else ''))
    # The k-NN metrics need more than k points in every set (test subsets and samples alike).
    self.with_prdc = min(len(x) for x in self.test_images) > generative_metrics.NEAREST_K
    digests = {'fid_own': reference_stats.tree_digest(own_params)}
    if 'fid_inception' in self.features:
      digests['fid_inception'] = _inception_digest(config.eval.inception_weights)
    run_folder = os.path.join(workdir, REFERENCE_FOLDER)
    write_folder = reference_folder or run_folder
    self.references = reference_stats.ReferenceCache(
        {name: reference_stats.Extractor(fn, digests[name]) for name, fn in self.features.items()},
        self.test_images, write_folder,
        read_folders=[run_folder] if write_folder != run_folder else [],
        enabled=config.eval.cache_reference_stats)

  def samples(self, state, network: str, num: int, key: jax.Array) -> np.ndarray:
    """[num, H, W, C] uint8 samples of ``network`` from the fixed latents of ``key``."""
    out = []
    for i, start in enumerate(range(0, num, 500)):
      images = self.method.sample(state, network, jax.random.fold_in(key, i),
                                  min(500, num - start))
      out.append(pixels.to_uint8(images))
    return np.concatenate(out)

  def audit(self, state, task: int) -> Dict[str, List[float]]:
    """The replay-audit rows after ``task`` for each of the method's sample networks, and
    the classifier's accuracy on the evaluation subsets of the tasks seen."""
    rows, key = {}, rng.stream_key(self.config.seed, rng.AUDIT_LATENTS)
    for i, network in enumerate(self.method.sample_networks):
      samples = self.samples(state, network, self.config.eval.num_examples,
                             jax.random.fold_in(key, i))
      result = audit.replay_audit(audit.classify_all(self.classify, samples),
                                  self.class_pairs, task + 1)
      rows[f'audit_share_{network}'] = result['share']
      rows[f'audit_classes_{network}'] = [float(c) for c in result['covered']]
    rows[metric_names.AUDIT_ACCURACY] = [
        float(np.mean(audit.classify_all(self.classify, x)
                      == audit.class_indices(j, y, self.class_pairs)))
        for j, (x, y) in enumerate(zip(self.test_images[:task + 1],
                                       self.test_labels[:task + 1]))]
    return rows

  def evaluate(self, state, task: int) -> Dict[str, List[float]]:
    """One row per metric: the value on each task 0..task after learning ``task``."""
    config, method = self.config, self.method
    tests = self.test_images[:task + 1]
    rows = {
        'nll_paper': [method.nll_paper(state, x, rng.stream_key(config.seed, rng.PAPER_NLL))
                      for x in tests],
        'nll_iwae': [method.nll_iwae(state, x, rng.stream_key(config.seed, rng.IWAE),
                                     config.eval.iwae_samples) for x in tests],
    }
    for source, network in self.generative_networks().items():
      samples = self.samples(state, network, max(len(x) for x in tests),
                             rng.stream_key(config.seed, rng.FID_LATENTS))
      rows.update(self._sample_rows(samples, task, source))
    rows.update(self.audit(state, task))
    return rows

  def generative_networks(self) -> Dict[str, str]:
    """Row-name suffix -> the network whose samples the FID, KID and PRDC rows measure: ''
    for the method's generator (``method.fid_network()``) and, where that is not the Student
    (the GAN methods), ``metric_names.STUDENT_ROWS`` for the Student's decoder, the paper's
    other generative model."""
    networks = {'': self.method.fid_network()}
    if 'student' in self.method.sample_networks and networks[''] != 'student':
      networks[metric_names.STUDENT_ROWS] = 'student'
    return networks

  def _sample_rows(self, samples: np.ndarray, task: int, source: str) -> Dict[str, List[float]]:
    """The FID, KID and PRDC rows of ``samples`` [M, H, W, C] uint8 against each seen task's
    test images and all of them together, row names ending in ``source``."""
    rows = {}
    for name, features_fn in self.features.items():
      sample_features = evaluation.compute_features(features_fn, samples)
      stats = evaluation.feature_statistics(sample_features)
      suffix = metric_names.FEATURE_SETS[name][0]
      row, others = [], {}
      # Each seen task's test images, then all of them together: features and moments read by
      # every metric, computed once per run (``reference_stats``; without
      # ``eval.cache_reference_stats``, at every evaluation).
      references = [self.references.task(name, j) for j in range(task + 1)]
      for reference in references + [self.references.union(name, task + 1)]:
        row.append(evaluation.frechet_distance(*stats, reference.mu, reference.sigma))
        for metric, value in generative_metrics.sample_metrics(
            reference.features, sample_features, self.with_prdc).items():
          others.setdefault(f'{metric}_{suffix}{source}', []).append(value)
      rows[f'{name}{source}'], rows[f'{name}{source}_all'] = row[:-1], row[-1:]
      for metric, values in others.items():
        rows[metric], rows[f'{metric}_all'] = values[:-1], values[-1:]
    return rows

  def provenance(self) -> List[str]:
    """report.md lines, one per generative metric: the features (extractor and the image size
    it is fed), the numbers of real and generated images, and the test split."""
    sizes = [len(x) for x in self.test_images]
    real = (f'{sizes[0]} real test images per task' if len(set(sizes)) == 1 else
            'real test images per task: ' + ', '.join(
                f'{t.name} {n}' for t, n in zip(self.tasks, sizes)))
    generated = (f'{max(sizes)} generated images once every task is seen (as many as the '
                 f'largest test subset seen), samples of {self.method.fid_source} from fixed '
                 'latents shared by every column and metric')
    reference = ('reference: the test split, the evaluation subsets above; `_all`: the seen '
                 'tasks\' subsets together')
    lines = []
    for name, description in self.feature_descriptions.items():
      suffix, features = metric_names.FEATURE_SETS[name]
      titles = [metric_names.METRIC_NAMES[name], metric_names.METRIC_NAMES[f'kid_{suffix}']]
      if self.with_prdc:
        titles.append(f'precision / recall / density / coverage ({features}, '
                      f'k={generative_metrics.NEAREST_K})')
      lines += [f'- {title}: features of {description}; {real}; {generated}; {reference}.'
                for title in titles]
    if metric_names.STUDENT_ROWS in self.generative_networks():
      lines.append(f'- The rows ending in `{metric_names.STUDENT_ROWS}` ("Student samples"): '
                   'the same metrics, features and test images, on as many prior samples of '
                   "the Student's decoder.")
    return lines
