"""The evaluation subsets (one seeded, class-stratified subset per test set, shared by every
metric and picture) and the replay audit."""

import json
import os

import jax.numpy as jnp
import numpy as np

from ltgans_jax.data import sequences
from ltgans_jax.data.local import SplitArrays
from ltgans_jax.eval import audit, eval_subset, metric_names, task_eval
from ltgans_jax.methods import registry


def _sorted_task(name, classes, per_class, size=28, offset=0):
  """A task whose train and test sets are sorted by class, as many published sets are; each
  image is filled with one value so it can be told apart."""
  def split(n):
    labels = np.repeat(np.array(classes), n).astype(np.int64)
    values = (offset + 7 * labels + np.arange(len(labels)) % 5).astype(np.uint8)
    images = np.broadcast_to(values[:, None, None, None], (len(labels), size, size, 1)).copy()
    return SplitArrays(images, labels)
  return sequences.Task(name, split(per_class), split(per_class))


def _fuzzy_pair():
  """Two tasks with class 8 exchanged the way the fuzzy sequences do: appended at the end."""
  first = _sorted_task('a', range(10), 30)
  second = _sorted_task('b', range(10), 30, offset=100)
  return sequences.fuzzy_chain([first, second], (8,))


def test_class_quotas_are_proportional_and_add_up():
  labels = np.array([0] * 50 + [1] * 30 + [2] * 20)
  assert eval_subset.class_quotas(labels, 10) == {0: 5, 1: 3, 2: 2}
  quotas = eval_subset.class_quotas(labels, 7)
  assert sum(quotas.values()) == 7 and quotas[0] >= quotas[1] >= quotas[2]
  assert sum(eval_subset.class_quotas(labels, 1000).values()) == 100  # capped at N


def test_subset_of_a_fuzzy_task_holds_the_exchanged_class_in_its_share():
  tasks = _fuzzy_pair()
  # The exchanged class sits at the end of the test set: the head never reaches it.
  assert np.all(tasks[0].test.labels[-30:] == 8)
  assert 8 not in tasks[0].test.labels[:100]
  subsets = eval_subset.task_subsets([t.test.labels for t in tasks], 100, seed=0)
  for task, indices in zip(tasks, subsets):
    labels = task.test.labels[indices]
    assert len(indices) == 100 and len(np.unique(indices)) == 100
    assert np.all(np.bincount(labels, minlength=10) == 10)  # 8 included, in its 1/10 share
    # A prefix is near-stratified too: the first ten images are ten different classes.
    assert len(np.unique(labels[:10])) == 10


def test_subset_is_the_same_in_every_run_and_differs_with_its_seed():
  labels = _fuzzy_pair()[0].test.labels
  first = eval_subset.stratified_indices(labels, 64, seed=0, task=0)
  np.testing.assert_array_equal(first, eval_subset.stratified_indices(labels, 64, 0, 0))
  assert not np.array_equal(first, eval_subset.stratified_indices(labels, 64, 1, 0))
  assert not np.array_equal(first, eval_subset.stratified_indices(labels, 64, 0, 1))


def test_evaluator_reads_the_subset_and_rebuilds_it_identically_on_resume(test_config,
                                                                          tmp_path):
  """Every metric and picture reads ``TaskEvaluator.test_images``; a second evaluator (a
  resume, which reads the feature network back from the workdir) has the same images."""
  tasks = _fuzzy_pair()
  test_config.eval.num_examples = 40
  method = registry.build(test_config)
  evaluator = task_eval.TaskEvaluator(test_config, method, tasks, str(tmp_path))
  for task, images, labels in zip(tasks, evaluator.test_images, evaluator.test_labels):
    assert images.shape == (40, 28, 28, 1)
    assert np.sum(labels == 8) == 4
  again = task_eval.TaskEvaluator(test_config, method, tasks, str(tmp_path))
  for a, b in zip(evaluator.test_images, again.test_images):
    np.testing.assert_array_equal(a, b)
  assert 'class-stratified' in evaluator.protocol and 'subset_seed=0' in evaluator.protocol


def test_replay_audit_counts_shares_and_covered_classes():
  pairs = [(0, c) for c in range(10)] + [(1, c) for c in range(10)] + [(2, 0)]
  # 600 samples of task 0, 60 per class; 390 of task 1, all class 3 but 9 of class 4 (2.3%
  # of task 1's samples, covered) and 1 of class 5 (0.3%, not covered); 10 of unseen task 2.
  predicted = np.concatenate([np.repeat(np.arange(10), 60), np.full(380, 13), np.full(9, 14),
                              np.full(1, 15), np.full(10, 20)])
  result = audit.replay_audit(predicted, pairs, num_seen=2)
  np.testing.assert_allclose(result['share'], [0.6, 0.39])
  assert result['covered'] == [10, 2] and result['classes'] == [10, 10]
  np.testing.assert_allclose(result['unseen_share'], 0.01)
  assert audit.replay_audit(np.zeros(0, int), pairs, 1)['covered'] == [0]


class _TestImagesOfTaskOne:
  """A "generator" that returns task 1's test images; delegates the rest to a real method."""

  def __init__(self, method, images):
    self.method, self.images = method, images
    self.sample_networks = ('teacher',)

  def sample(self, state, network, key, num):
    del state, network, key
    return jnp.asarray(self.images[:num], jnp.float32) / 127.5 - 1.0

  def __getattr__(self, name):
    return getattr(self.method, name)


def test_audit_of_a_generator_of_task_one_test_images(test_config, tmp_path):
  """Share 1.0 on task 1 and every class covered. The classifier here is an oracle that looks
  the images up (the feature network of a 5-step test config is not accurate): this checks the
  audit's sampling, classification and counting, not the feature network."""
  tasks = _fuzzy_pair()
  test_config.eval.num_examples = 100
  method = registry.build(test_config)
  evaluator = task_eval.TaskEvaluator(test_config, method, tasks, str(tmp_path))
  lookup = {}
  for t, task in enumerate(tasks):
    for image, index in zip(task.test.images, audit.class_indices(t, task.test.labels,
                                                                   evaluator.class_pairs)):
      lookup[image.tobytes()] = index
  num_classes = len(evaluator.class_pairs)
  evaluator.classify = lambda batch: np.eye(num_classes)[[lookup[x.tobytes()] for x in batch]]
  evaluator.method = _TestImagesOfTaskOne(method, evaluator.test_images[0])
  rows = evaluator.audit(None, task=1)
  assert rows['audit_share_teacher'] == [1.0, 0.0]
  assert rows['audit_classes_teacher'] == [10.0, 0.0]
  assert rows[metric_names.AUDIT_ACCURACY] == [1.0, 1.0]


def test_run_reports_the_audit_and_the_protocol(reference_run):
  """The end-to-end run writes the audit matrices (JSON and heatmaps) and report tables."""
  workdir, _ = reference_run
  with open(os.path.join(workdir, 'report.json')) as f:
    records = json.load(f)['records']
  for network in ('teacher', 'assistant', 'student'):
    for kind in ('share', 'classes'):
      metric = f'audit_{kind}_{network}'
      assert [len(r['evaluation'][metric]) for r in records] == [1, 2]
      assert os.path.getsize(os.path.join(workdir, 'eval', f'{metric}.png')) > 0
    assert all(0 <= sum(r['evaluation'][f'audit_share_{network}']) <= 1 + 1e-9
               for r in records)
  with open(os.path.join(workdir, 'report.md')) as f:
    text = f.read()
  assert '### Replay audit' in text and 'class-stratified' in text
  assert 'Feature-network accuracy on the evaluation subsets' in text
