"""The real images' side of the FID, KID and PRDC, computed once per feature extractor and task.

Every evaluation compares the generator's samples with the features of each seen task's
evaluation subset (``eval_subset``) and of their union. Those images never change during a run,
and neither do the extractors (the project's ``feature_net``, once trained, and the FID
Inception), so their features are computed once per task and kept:

* in memory, for the rest of the process;
* on disk, one ``<extractor>_task<k>.npz`` per extractor and task (k from 1), so that a resumed
  run and ``--mode=evaluate`` read them back instead of computing them again.

A file holds ``mu`` [D] and ``sigma`` [D, D] (float64, covariance with N - 1) as pytorch-fid's
``np.savez(path, mu=mu, sigma=sigma)`` writes them, so ``python -m pytorch_fid file.npz
samples/`` reads it as it stands (with pytorch-fid's own Inception features only, of course:
an ``fid_own`` file holds this project's features); the features themselves ``features``
[N, D] (KID and PRDC need them, not only their moments), float32 when that is exact; and a
``fingerprint``: the sha256 of the format version, the extractor's name, its parameters and
the task's images. A file whose fingerprint differs (other parameters, other images, another
``eval.num_examples``) or that lacks one (pytorch-fid's own) is recomputed and replaced, never
used; a damaged one is recomputed with a warning, never ends the run.

The union of the tasks seen (the ``_all`` metrics) is the concatenation of the cached per-task
features: no pass of its own.

Files are written atomically (a temporary file and a rename), by the main process only
(``jax.process_index() == 0``); the others compute what they lack themselves.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
from typing import Dict, Mapping, NamedTuple, Optional, Sequence, Tuple

import jax
import numpy as np

from ltgans_jax import files
from ltgans_jax.eval import evaluation

# Part of every fingerprint: bump it when what a feature extractor computes changes without its
# parameters changing (a resize, a normalisation), so that every cached file is recomputed.
FORMAT_VERSION = 1


class ReferenceStats(NamedTuple):
  """One reference set's features and the Gaussian the FID fits to them.

  features: [N, D] float64; mu: [D] float64 mean; sigma: [D, D] float64 covariance (N - 1).
  """
  features: np.ndarray
  mu: np.ndarray
  sigma: np.ndarray


def statistics_of(features: np.ndarray) -> ReferenceStats:
  """[N >= 2, D] features -> ``ReferenceStats`` (``evaluation.feature_statistics``)."""
  features = np.asarray(features, np.float64)
  return ReferenceStats(features, *evaluation.feature_statistics(features))


class Extractor(NamedTuple):
  """A feature extractor and the digest of what determines its features (``tree_digest`` of
  its parameters)."""
  features_fn: evaluation.FeaturesFn  # uint8 [B, H, W, C] -> [B, D]
  digest: str


# ------------------------------------------------------------------------------------------
# Fingerprints.


def _update_with_array(hasher, array) -> None:
  array = np.asarray(array)
  hasher.update(f'{array.dtype.str}{array.shape}'.encode())
  hasher.update(np.ascontiguousarray(array).tobytes())


def tree_digest(tree) -> str:
  """sha256 (hex) of a parameter tree: every leaf's path, dtype, shape and bytes."""
  hasher = hashlib.sha256()
  for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
    hasher.update(jax.tree_util.keystr(path).encode())
    _update_with_array(hasher, leaf)
  return hasher.hexdigest()


def fingerprint(name: str, extractor_digest: str, images: np.ndarray) -> str:
  """sha256 (hex) naming one reference file's contents: the format version, the extractor
  ``name`` and ``extractor_digest``, and the images [N, H, W, C] (dtype, shape and bytes)."""
  hasher = hashlib.sha256(f'v{FORMAT_VERSION}|{name}|{extractor_digest}|'.encode())
  _update_with_array(hasher, images)
  return hasher.hexdigest()


# ------------------------------------------------------------------------------------------
# Files.


def reference_path(folder: str, name: str, task: int) -> str:
  """``folder/<name>_task<task + 1>.npz`` (tasks 0-based here, 1-based in the name as in the
  reports)."""
  return os.path.join(folder, f'{name}_task{task + 1}.npz')


def _compact(features: np.ndarray) -> np.ndarray:
  """float32 when that holds ``features`` exactly (the extractors compute in float32), so a
  file is half the size; the float64 values otherwise."""
  single = features.astype(np.float32)
  return single if np.array_equal(single, features) else features


def write_reference(path: str, stats: ReferenceStats, fingerprint_: str) -> None:
  """Writes ``stats`` (``mu``, ``sigma`` as pytorch-fid does, ``features``) and the fingerprint
  to ``path`` atomically: a crash leaves the old file or the new one, never a part of one."""
  buffer = io.BytesIO()
  np.savez(buffer, mu=stats.mu, sigma=stats.sigma, features=_compact(stats.features),
           fingerprint=np.array(fingerprint_))
  files.write_atomically(path, buffer.getvalue())


def _checked(path: str, features, mu, sigma, num_images: int) -> Optional[ReferenceStats]:
  """The arrays as ``ReferenceStats`` if their shapes fit ``num_images`` images, else None
  with a warning."""
  features = np.asarray(features, np.float64)
  fits = (features.ndim == 2 and features.shape[0] == num_images
          and mu.shape == features.shape[1:] and sigma.shape == features.shape[1:] * 2)
  if not fits:
    logging.warning('%s holds arrays of the wrong shapes (features %s, mu %s, sigma %s for %d '
                    'images); recomputing it.', path, features.shape, mu.shape, sigma.shape,
                    num_images)
    return None
  return ReferenceStats(features, np.asarray(mu, np.float64), np.asarray(sigma, np.float64))


def read_reference(path: str, fingerprint_: str, num_images: int) -> Optional[ReferenceStats]:
  """The statistics in ``path`` if it exists, is whole and carries ``fingerprint_``; None
  otherwise (a stale or foreign file logged, a damaged one warned about)."""
  if not os.path.isfile(path):
    return None
  try:
    with np.load(path, allow_pickle=False) as f:
      stored = str(f['fingerprint']) if 'fingerprint' in f.files else None
      if stored != fingerprint_:
        logging.info('%s was computed from other images or another feature extractor '
                     '(fingerprint %s, expected %s); recomputing it.', path,
                     stored and stored[:12], fingerprint_[:12])
        return None
      arrays = f['features'], f['mu'], f['sigma']
  except Exception as e:  # pylint: disable=broad-except  # a cache never ends the run
    logging.warning('%s is damaged (%s: %s); recomputing it.', path, type(e).__name__,
                    str(e)[:100])
    return None
  return _checked(path, *arrays, num_images)


# ------------------------------------------------------------------------------------------
# The cache.


class ReferenceCache:
  """Each task's reference statistics per extractor, computed at most once per process.

  ``task(name, j)`` gives extractor ``name``'s statistics of task j's images, from memory, from
  the first of the folders that holds a file with the right fingerprint, or computed (then
  kept in memory and written to ``write_folder``). ``union(name, k)``: tasks 0..k-1 together,
  from the per-task features. With ``enabled=False`` nothing is kept: every call computes its
  features afresh, the union in a pass of its own (the behaviour before the cache).

  ``passes`` counts the reference image sets pushed through an extractor.
  """

  def __init__(self, extractors: Mapping[str, Extractor], task_images: Sequence[np.ndarray],
               write_folder: Optional[str] = None, read_folders: Sequence[str] = (),
               enabled: bool = True):
    """Args:
      extractors: name (e.g. 'fid_own') -> ``Extractor``.
      task_images: per task, the uint8 [N_t, H, W, C] images to compare with.
      write_folder: where computed statistics are written (None: memory only); read first.
      read_folders: further folders to read from, in order, never written to.
      enabled: False for no cache at all.
    """
    self.extractors, self.task_images = dict(extractors), list(task_images)
    self.write_folder, self.enabled = write_folder, enabled
    self.read_folders = ([write_folder] if write_folder else []) + list(read_folders)
    self.passes = 0
    self._memory: Dict[Tuple[str, int], ReferenceStats] = {}

  def _compute(self, name: str, images: np.ndarray) -> ReferenceStats:
    self.passes += 1
    return statistics_of(evaluation.compute_features(self.extractors[name].features_fn, images))

  def task(self, name: str, task: int) -> ReferenceStats:
    """Extractor ``name``'s statistics of task ``task``'s images (0-based)."""
    images = self.task_images[task]
    if not self.enabled:
      return self._compute(name, images)
    if (name, task) not in self._memory:
      self._memory[name, task] = self._load_or_compute(name, task, images)
    return self._memory[name, task]

  def union(self, name: str, num_tasks: int) -> ReferenceStats:
    """Extractor ``name``'s statistics of tasks 0..num_tasks-1's images together."""
    if not self.enabled:
      return self._compute(name, np.concatenate(self.task_images[:num_tasks]))
    return statistics_of(np.concatenate([self.task(name, j).features
                                         for j in range(num_tasks)]))

  def _load_or_compute(self, name: str, task: int, images: np.ndarray) -> ReferenceStats:
    expected = fingerprint(name, self.extractors[name].digest, images)
    for folder in self.read_folders:
      stats = read_reference(reference_path(folder, name, task), expected, len(images))
      if stats is not None:
        return stats
    stats = self._compute(name, images)
    if self.write_folder and jax.process_index() == 0:
      path = reference_path(self.write_folder, name, task)
      try:
        write_reference(path, stats, expected)
      except OSError as e:  # a full disk or a read-only workdir costs a recomputation only
        logging.warning('Cannot write %s (%s: %s); the statistics stay in memory only.', path,
                        type(e).__name__, e)
    return stats
