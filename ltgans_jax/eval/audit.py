"""The replay audit: which tasks and classes a generator still produces.

LT-GANs' claim is that the frozen Teacher keeps the earlier tasks alive, so that the Assistant,
matching a critic whose real side mixes task-k data with Teacher samples, ends up modelling every
task seen. The NLL and FID matrices measure this only indirectly. The audit measures it
directly: after each task, ``eval.num_examples`` samples of each network (Teacher, Assistant and
the Student's decoder for the GAN methods; the decoder for the VAE baselines) are classified by
the run's own feature network, which is trained on every task's training images with one label
per (task, class) pair. Per task seen so far the audit reports

* ``share``: the fraction of samples classified as one of that task's classes (the shares of
  the seen tasks and ``unseen_share``, samples classified into tasks not yet learnt, add to 1);
* ``covered``: how many of that task's classes hold at least ``threshold`` (2%) of the samples
  classified as that task: a generator producing one mode of a task covers one class.

For two tasks learnt equally well the ideal is share 0.5 each and every class covered. The
audit is as reliable as the classifier: the report gives its accuracy on the evaluation subsets
beside the audit. The audit, its threshold and its form are ours; the paper has no such measure.
"""

from __future__ import annotations

from typing import Callable, Dict, List, Sequence, Tuple

import numpy as np

COVERAGE_THRESHOLD = 0.02

ClassPairs = Sequence[Tuple[int, int]]  # feature-net class index -> (task, label)


def sequence_classes(train_labels: Sequence[np.ndarray]) -> Tuple[List[np.ndarray], ClassPairs]:
  """One class index per (task, label) pair of the sequence, in (task, label) order.

  Args:
    train_labels: per task, the training labels [N_t].
  Returns:
    (per task the class indices [N_t] of its labels, the (task, label) of every class index).
  """
  pairs = sorted({(t, int(label)) for t, labels in enumerate(train_labels)
                  for label in np.unique(labels)})
  index = {pair: i for i, pair in enumerate(pairs)}
  return ([np.array([index[(t, int(label))] for label in labels], np.int32)
           for t, labels in enumerate(train_labels)], pairs)


def class_indices(task: int, labels: np.ndarray, pairs: ClassPairs) -> np.ndarray:
  """The feature-net class indices [N] of task ``task``'s labels [N] (for accuracies)."""
  index = {pair: i for i, pair in enumerate(pairs)}
  return np.array([index.get((task, int(label)), -1) for label in labels], np.int64)


def replay_audit(predicted: np.ndarray, pairs: ClassPairs, num_seen: int,
                 threshold: float = COVERAGE_THRESHOLD) -> Dict[str, object]:
  """The audit of one network's samples.

  Args:
    predicted: [N] feature-net class indices of N samples.
    pairs: the (task, label) of every class index (``sequence_classes``).
    num_seen: tasks learnt so far; tasks >= num_seen count as unseen.
    threshold: a class is covered when it holds at least this fraction of the samples
      classified as its task.
  Returns:
    share [num_seen] floats, covered [num_seen] ints, classes [num_seen] ints (classes the task
    has), unseen_share (float).
  """
  predicted = np.asarray(predicted)
  task_of = np.array([t for t, _ in pairs])
  sample_tasks = task_of[predicted]
  share, covered, classes = [], [], []
  for task in range(num_seen):
    in_task = predicted[sample_tasks == task]
    task_classes = [i for i, (t, _) in enumerate(pairs) if t == task]
    counts = np.array([np.sum(in_task == i) for i in task_classes])
    share.append(float(len(in_task) / max(len(predicted), 1)))
    covered.append(int(np.sum(counts >= threshold * len(in_task))) if len(in_task) else 0)
    classes.append(len(task_classes))
  return {'share': share, 'covered': covered, 'classes': classes,
          'unseen_share': float(np.mean(sample_tasks >= num_seen)) if len(predicted) else 0.0}


def classify_all(classify: Callable[[np.ndarray], np.ndarray], images: np.ndarray,
                 batch_size: int = 500) -> np.ndarray:
  """``classify`` (uint8 [B, H, W, C] -> logits [B, K]) over [N, H, W, C] -> argmax [N]."""
  return np.concatenate([np.argmax(classify(images[i:i + batch_size]), axis=-1)
                         for i in range(0, len(images), batch_size)])
