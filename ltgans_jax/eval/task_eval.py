"""What the training loop measures after each task, on every task seen so far.

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
import logging
import os
import pickle
from typing import Dict, List, Optional, Sequence
import zipfile

import flax.serialization
import jax
import numpy as np

from ltgans_jax import pixels, rng
from ltgans_jax.data.sequences import Task
from ltgans_jax.errors import ConfigError
from ltgans_jax.eval import audit, eval_subset, evaluation
from ltgans_jax.eval import feature_net, generative_metrics, inception, reference_stats
from ltgans_jax.run import writers
from ltgans_jax.run.checkpointing import CheckpointError

# Per feature extractor: the FID row's key, the suffix of its KID and PRDC rows, the name a
# report gives the features.
FEATURE_SETS = {'fid_own': ('own', 'own features'),
                'fid_inception': ('inception', 'InceptionV3 pool-3')}
SAMPLE_METRICS = ('kid', 'precision', 'recall', 'density', 'coverage')  # beside each FID


def _sample_metric_names() -> Dict[str, str]:
  names = {}
  for suffix, features in FEATURE_SETS.values():
    names[f'kid_{suffix}'] = f'KID ({features})'
    for metric in SAMPLE_METRICS[1:]:
      names[f'{metric}_{suffix}'] = (f'{metric} ({features}, '
                                     f'k={generative_metrics.NEAREST_K})')
  return names


METRIC_NAMES = {
    'nll_paper': 'NLL, paper quantity (squared error + KL)',
    'nll_iwae': 'NLL bound in nats (importance-weighted)',
    'fid_own': feature_net.FID_NAME,
    'fid_inception': inception.FID_NAME + ' (InceptionV3 pool-3)',
    **_sample_metric_names(),
}
# The GAN methods' generative rows are measured twice: on the generator's samples (the names
# above) and on the Student decoder's prior samples (the same names with this suffix).
STUDENT_ROWS = '_student'
METRIC_NAMES.update({
    f'{metric}{STUDENT_ROWS}': f'{title}, Student samples' for metric, title in
    list(METRIC_NAMES.items()) if not metric.startswith('nll_')})
# report.md's reading of the generative rows.
DIRECTIONS = ('Lower is better for the NLLs, the FIDs and the KIDs; higher for precision, recall '
              'and coverage (at most 1); density is about 1 for samples spread like the test '
              'images (above 1 where they crowd the dense regions).')
KID_NOTE = ('KID (the unbiased estimate of the squared MMD under the kernel (x.y/d + 1)^3, '
            'Binkowski et al. 2018) is unbiased at these sample sizes (a few hundred to a few '
            'thousand images per set); the FID is not: its plug-in estimate is biased upwards, '
            'the more so the fewer the images (below the feature dimension the covariance it '
            'fits is singular), so FIDs compare only at equal numbers of images. A KID near 0, '
            'or slightly below, means the two sets are indistinguishable by it.')


def format_value(metric: str, value: float) -> str:
  """A report cell: KIDs (small, and signed) to 4 significant digits, the rest to 2 decimals."""
  return f'{value:.4g}' if metric.startswith('kid_') else f'{value:.2f}'


# Heatmap titles (short: they share the line with the summary); report.md explains them.
AUDIT_NAMES = {
    'share': 'audit: share of samples',
    'classes': 'audit: classes covered',
}
AUDIT_ACCURACY = 'audit_classifier_accuracy'


def lower_is_better(metric: str):
  """A matrix's direction: True for the NLLs, FIDs and KIDs, False for the audit's shares,
  classes and accuracy and for precision, recall and coverage, None for density (about 1 is
  best)."""
  if metric.startswith(('nll_', 'fid_', 'kid_')):
    return True
  if metric.startswith(('audit_', 'precision_', 'recall_', 'coverage_')):
    return False
  return None


def forgetting_line(summary: Dict[str, object]) -> str:
  """One report sentence on a matrix's forgetting summaries (``evaluation.forgetting_summary``),
  or '' after the first task."""
  if summary['mean_forgetting'] is None:
    return ''
  line = (f'Mean over the earlier tasks of final minus just learnt: '
          f'{summary["mean_forgetting"]:.4g}')
  if 'mean_max_forgetting' in summary:
    line += (f'; max-based forgetting (Chaudhry et al. 2018; > 0: forgotten): '
             f'{summary["mean_max_forgetting"]:.4g}; backward transfer (Lopez-Paz and Ranzato '
             f'2017; < 0: forgotten): {summary["backward_transfer"]:.4g}')
  return line + '.'


def matrix_summaries(task_names: Sequence[str], rows_per_task) -> Dict[str, dict]:
  """Metric -> ``evaluation.forgetting_summary`` of its matrix, for every metric every row has
  (rows measured before a metric existed lack it)."""
  summaries = {}
  for metric in matrix_titles(rows_per_task[-1]):
    if all(metric in row for row in rows_per_task):
      summaries[metric] = evaluation.forgetting_summary(
          [row[metric] + [None] * (len(task_names) - len(row[metric])) for row in rows_per_task],
          lower_is_better(metric))
  return summaries


def matrix_titles(rows: Dict[str, List[float]]) -> Dict[str, str]:
  """Metric name -> title for every forgetting matrix in an evaluation row."""
  titles = {m: t for m, t in METRIC_NAMES.items() if m in rows}
  for metric in rows:
    if metric.startswith('audit_') and metric != AUDIT_ACCURACY:
      kind, network = metric[len('audit_'):].split('_', 1)
      titles[metric] = f'{network} {AUDIT_NAMES[kind]}'
  if AUDIT_ACCURACY in rows:
    titles[AUDIT_ACCURACY] = 'audit: classifier accuracy'
  return titles


def _sequence_labels(tasks: Sequence[Task]):
  """(images, labels, pairs) of every task's training set: labels unique per (task, class),
  ``pairs[label]`` its (task, class)."""
  labels, pairs = audit.sequence_classes([task.train.labels for task in tasks])
  return np.concatenate([task.train.images for task in tasks]), np.concatenate(labels), pairs


FEATURE_NET_FILE = 'feature_net.msgpack'  # the FID feature network, in the workdir


def _read_feature_net(path: str):
  """The state dict in ``path``; CheckpointError if the file is damaged."""
  try:
    with open(path, 'rb') as f:
      return flax.serialization.msgpack_restore(f.read())
  except Exception as e:  # pylint: disable=broad-except  # msgpack raises many kinds
    raise CheckpointError(f'{path} is damaged ({type(e).__name__}: {str(e)[:80]}); delete it '
                          'and the run trains the FID feature network afresh (same seed, same '
                          'images).') from None


def check_feature_net_file(workdir: str) -> None:
  """Raises CheckpointError if the workdir's feature network file exists but is damaged."""
  path = os.path.join(workdir, FEATURE_NET_FILE)
  if os.path.isfile(path):
    _read_feature_net(path)


@functools.lru_cache(maxsize=1)
def _inception_variables(path: str):
  try:
    return inception.load_fid_inception_params(path)
  except (OSError, ValueError, KeyError, EOFError, pickle.UnpicklingError,
          zipfile.BadZipFile) as e:  # the torch reader's own errors are ValueErrors
    raise ConfigError(f'eval.inception_weights={path!r} cannot be read ({type(e).__name__}: '
                      f'{str(e)[:100]}); use pytorch-fid\'s {inception.WEIGHTS_FILE}, or leave '
                      'eval.inception_weights empty.') from None


def inception_variables(config):
  """The InceptionV3 variables of ``eval.inception_weights`` (None when it is empty), read
  once per process; ConfigError if the file is not the FID Inception weights."""
  path = config.eval.inception_weights
  return _inception_variables(path) if path else None


@functools.lru_cache(maxsize=1)
def _inception_digest(path: str) -> str:
  """``reference_stats.tree_digest`` of the weights in ``path`` (~90 MB: hashed once)."""
  return reference_stats.tree_digest(_inception_variables(path))


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
    own_params = self._own_feature_params(workdir)
    self.features = {'fid_own': feature_net.features_fn(own_params)}
    height, width, channels = self.test_images[0].shape[1:]
    size = f'{height}x{width}x{channels}'
    # What each extractor is and the image size it is fed, as the reports print it.
    self.feature_descriptions = {'fid_own': (
        f'the project\'s feature classifier (`feature_net`, '
        f'{own_params["features"]["kernel"].shape[1]}-d penultimate ReLU layer, trained on the '
        f'sequence\'s training images), fed the images at {size} as stored (no resize)')}
    self.classify = feature_net.logits_fn(own_params)
    self.class_pairs = audit.sequence_classes([t.train.labels for t in tasks])[1]
    if config.eval.inception_weights:
      self.features['fid_inception'] = inception.features_fn(inception_variables(config))
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

  def _own_feature_params(self, workdir: str):
    """Trains the feature classifier on the sequence, or reads it back from the workdir."""
    path = os.path.join(workdir, FEATURE_NET_FILE)
    images, labels, _ = _sequence_labels(self.tasks)
    num_classes = int(labels.max()) + 1
    key = rng.stream_key(self.config.seed, rng.FEATURE_NET)
    if os.path.exists(path):
      template = jax.eval_shape(lambda: feature_net.train_feature_net(
          images[:2], labels[:2], num_classes, 0, key))
      stored = _read_feature_net(path)
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
    logging.info('Training the FID feature network on %d images of %d (task, class) pairs.',
                 len(images), num_classes)
    params = feature_net.train_feature_net(images, labels, num_classes,
                                           self.config.eval.feature_net_steps, key)
    logging.info('Feature network accuracy on the training images: %.3f',
                 feature_net.accuracy(params, images[:2000], labels[:2000]))
    if jax.process_index() == 0:  # whole or not at all: a full disk leaves no damaged file
      writers.write_atomically(path, flax.serialization.to_bytes(params))
    return params

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
    rows[AUDIT_ACCURACY] = [
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
    (the GAN methods), ``STUDENT_ROWS`` for the Student's decoder, the paper's other
    generative model."""
    networks = {'': self.method.fid_network()}
    if 'student' in self.method.sample_networks and networks[''] != 'student':
      networks[STUDENT_ROWS] = 'student'
    return networks

  def _sample_rows(self, samples: np.ndarray, task: int, source: str) -> Dict[str, List[float]]:
    """The FID, KID and PRDC rows of ``samples`` [M, H, W, C] uint8 against each seen task's
    test images and all of them together, row names ending in ``source``."""
    rows = {}
    for name, features_fn in self.features.items():
      sample_features = evaluation.compute_features(features_fn, samples)
      stats = evaluation.feature_statistics(sample_features)
      suffix = FEATURE_SETS[name][0]
      row, others = [], {}
      # Each seen task's test images, then all of them together: features and moments read by
      # every metric, computed once per run (``reference_stats``; without
      # ``eval.cache_reference_stats``, at every evaluation).
      references = [self.references.task(name, j) for j in range(task + 1)]
      for reference in references + [self.references.union(name, task + 1)]:
        row.append(evaluation.frechet_distance(*stats, reference.mu, reference.sigma))
        for metric, value in sample_metrics(reference.features, sample_features,
                                            self.with_prdc).items():
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
      suffix = FEATURE_SETS[name][0]
      titles = [METRIC_NAMES[name], METRIC_NAMES[f'kid_{suffix}']]
      if self.with_prdc:
        titles.append(f'precision / recall / density / coverage ({FEATURE_SETS[name][1]}, '
                      f'k={generative_metrics.NEAREST_K})')
      lines += [f'- {title}: features of {description}; {real}; {generated}; {reference}.'
                for title in titles]
    if STUDENT_ROWS in self.generative_networks():
      lines.append(f'- The rows ending in `{STUDENT_ROWS}` ("Student samples"): the same '
                   'metrics, features and test images, on as many prior samples of the '
                   "Student's decoder.")
    return lines


def sample_metrics(real_features: np.ndarray, sample_features: np.ndarray,
                   with_prdc: bool = True) -> Dict[str, float]:
  """KID, and precision / recall / density / coverage (``with_prdc``), of samples [M, D]
  against real images' features [N, D]: {'kid', 'precision', 'recall', 'density', 'coverage'}.
  """
  values = {'kid': generative_metrics.kid(real_features, sample_features)}
  if with_prdc:
    values.update(generative_metrics.prdc(real_features, sample_features))
  return values


def write_matrices(folder: str, task_names: Sequence[str], rows_per_task) -> Dict[str, dict]:
  """Saves each metric's forgetting matrix (the audit's included) as JSON and a heatmap in
  ``folder`` (a training run's ``workdir/eval/``); returns {metric: summary}."""
  summaries = {}
  os.makedirs(folder, exist_ok=True)
  for metric, title in matrix_titles(rows_per_task[-1]).items():
    if not all(metric in row for row in rows_per_task):
      continue  # a metric added since the earlier rows were measured (a resumed run)
    matrix = [row[metric] + [None] * (len(task_names) - len(row[metric]))
              for row in rows_per_task]
    summaries[metric] = evaluation.save_forgetting(
        os.path.join(folder, f'{metric}.json'), os.path.join(folder, f'{metric}.png'), matrix,
        task_names, title, lower_is_better(metric))
  return summaries


def audit_markdown(task_names: Sequence[str], rows_per_task,
                   classes_per_task: Sequence[int]) -> List[str]:
  """report.md lines: per audited network, a table whose cell (after task i, on task j) is
  "share (covered/classes)", then the feature network's accuracy on each subset."""
  if not rows_per_task or AUDIT_ACCURACY not in rows_per_task[0]:
    return []
  networks = [m[len('audit_share_'):] for m in rows_per_task[0] if m.startswith('audit_share_')]
  header = ['| after \\ on | ' + ' | '.join(task_names) + ' | unseen |',
            '|---' * (len(task_names) + 2) + '|']
  lines = ['', '### Replay audit', '',
           'Each cell: the share of the network\'s samples that the feature network assigns to '
           'that task, and (in brackets) how many of the task\'s classes hold at least '
           f'{audit.COVERAGE_THRESHOLD:.0%} of them. `unseen`: the share assigned to tasks not '
           'yet learnt. Ideal after k tasks: 1/k on each, every class covered.']
  for network in networks:
    lines += ['', f'{network}:', ''] + header
    for name, row in zip(task_names, rows_per_task):
      share, covered = row[f'audit_share_{network}'], row[f'audit_classes_{network}']
      cells = [f'{v:.2f} ({int(c)}/{k})' for v, c, k in zip(share, covered, classes_per_task)]
      cells += [''] * (len(task_names) - len(cells))
      lines.append(f'| {name} | ' + ' | '.join(cells) + f' | {max(0.0, 1 - sum(share)):.2f} |')
  last = rows_per_task[-1][AUDIT_ACCURACY]
  lines += ['', 'Feature-network accuracy on the evaluation subsets (after the last task row): '
            + ', '.join(f'{n} {v:.3f}' for n, v in zip(task_names, last)) + '.']
  return lines
