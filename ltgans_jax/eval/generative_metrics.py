"""Sample-quality metrics on features, next to the Frechet distance: KID and PRDC.

Both read the same [N, D] feature arrays the FID reads (``evaluation.compute_features``), so
they cost a few matrix products on features already computed.

* ``kid``: the kernel inception distance (Binkowski et al., 2018, "Demystifying MMD GANs"): the
  unbiased estimate of the squared maximum mean discrepancy MMD^2 between the two feature
  distributions under the cubic polynomial kernel k(x, y) = (x . y / D + 1)^3, the kernel of
  the paper, torch-fidelity and clean-fid. The estimator is unbiased at every sample size, while
  the FID's plug-in estimate is biased upwards by an amount that depends on the number of
  images and grows as it falls (with fewer images than feature dimensions its covariance is
  singular); a KID can be slightly negative when the two sets come from one distribution.
  ``kid_subsets`` averages it over random equal-size subsets, as torch-fidelity
  (``kid_subsets``, ``kid_subset_size``) and clean-fid do, and also returns the spread.
* ``prdc``: precision, recall, density and coverage (Naeem et al., 2020, "Reliable Fidelity and
  Diversity Metrics for Generative Models") from k-nearest-neighbour balls in feature space,
  computed as the authors' ``prdc`` package (``compute_prdc``) computes them: Euclidean
  distances, a point's radius is the distance to its k-th nearest neighbour other than itself,
  and "inside a ball" is a strict ``<``.
* ``sample_metrics``: both, as every evaluation row beside an FID reads them.

Everything is numpy, in float64.
"""

from __future__ import annotations

from typing import Dict, NamedTuple, Optional

import numpy as np

NEAREST_K = 5  # the k of Naeem et al. and of prdc's examples


def _as_features(features, name: str) -> np.ndarray:
  features = np.asarray(features, np.float64)
  if features.ndim != 2:
    raise ValueError(f'{name} must be [N, D]; got shape {features.shape}.')
  return features


def polynomial_kernel(a: np.ndarray, b: np.ndarray) -> np.ndarray:
  """k(x, y) = (x . y / D + 1)^3 between rows: a [N, D], b [M, D] -> [N, M]."""
  return (a @ b.T / a.shape[1] + 1.0) ** 3


def mmd2_unbiased(k_aa: np.ndarray, k_bb: np.ndarray, k_ab: np.ndarray) -> float:
  """The unbiased MMD^2 estimate from kernel matrices [N, N], [M, M], [N, M] (N, M >= 2).

  sum_{i != j} k(a_i, a_j) / (N (N - 1)) + sum_{i != j} k(b_i, b_j) / (M (M - 1))
  - 2 sum_{i, j} k(a_i, b_j) / (N M): the diagonals (a point with itself) are left out.
  """
  n, m = k_ab.shape
  if n < 2 or m < 2:
    raise ValueError(f'the unbiased MMD needs at least 2 points on each side; got {n}, {m}.')
  within_a = (k_aa.sum() - np.trace(k_aa)) / (n * (n - 1))
  within_b = (k_bb.sum() - np.trace(k_bb)) / (m * (m - 1))
  return float(within_a + within_b - 2.0 * k_ab.mean())


def kid(features_a, features_b) -> float:
  """The kernel inception distance between two feature sets, all points at once.

  Args:
    features_a: [N, D] features (e.g. of the real images), N >= 2.
    features_b: [M, D] features (e.g. of the samples), M >= 2; M need not equal N.
  Returns:
    The unbiased MMD^2 under k(x, y) = (x . y / D + 1)^3 (not scaled by 1000, unlike some
    papers' tables); its expectation is 0 when both sets come from one distribution.
  """
  a, b = _as_features(features_a, 'features_a'), _as_features(features_b, 'features_b')
  if a.shape[1] != b.shape[1]:
    raise ValueError(f'feature dimensions differ: {a.shape} and {b.shape}.')
  return mmd2_unbiased(polynomial_kernel(a, a), polynomial_kernel(b, b), polynomial_kernel(a, b))


class KIDEstimate(NamedTuple):
  """``kid_subsets``' result: the mean and the standard deviation over the subsets."""
  mean: float
  std: float


def kid_subsets(features_a, features_b, num_subsets: int, subset_size: int,
                rng: np.random.Generator) -> KIDEstimate:
  """KID averaged over ``num_subsets`` pairs of random subsets, as torch-fidelity computes it.

  Each subset pair draws ``min(subset_size, N, M)`` rows of each set without replacement (with
  ``rng``) and takes ``kid`` of the pair; the mean is still unbiased, and the memory is bounded
  by the subset size.

  Args:
    features_a: [N, D]; features_b: [M, D].
    num_subsets: >= 1.
    subset_size: rows per subset (>= 2).
    rng: the numpy Generator that draws the subsets (never the global one).
  Returns:
    ``KIDEstimate(mean, std)`` over the subsets (std with ddof 0, as torch-fidelity's).
  """
  a, b = _as_features(features_a, 'features_a'), _as_features(features_b, 'features_b')
  if num_subsets < 1:
    raise ValueError(f'num_subsets={num_subsets} must be >= 1.')
  size = min(subset_size, len(a), len(b))
  values = [kid(a[rng.choice(len(a), size, replace=False)],
                b[rng.choice(len(b), size, replace=False)]) for _ in range(num_subsets)]
  return KIDEstimate(float(np.mean(values)), float(np.std(values)))


def pairwise_distances(a: np.ndarray, b: Optional[np.ndarray] = None) -> np.ndarray:
  """Euclidean distances between rows: a [N, D], b [M, D] (default a) -> [N, M] float64.

  Written as sklearn's ``euclidean_distances`` (which prdc calls): sqrt(|a|^2 - 2 a.b + |b|^2)
  clipped at 0, with an exact zero diagonal when b is a.
  """
  same = b is None
  b = a if same else b
  squared = (np.einsum('nd,nd->n', a, a)[:, None] - 2.0 * (a @ b.T)
             + np.einsum('md,md->m', b, b)[None, :])
  np.maximum(squared, 0.0, out=squared)
  if same:
    np.fill_diagonal(squared, 0.0)
  return np.sqrt(squared)


def nearest_neighbour_radii(features: np.ndarray, nearest_k: int) -> np.ndarray:
  """[N, D] -> [N]: each point's distance to its ``nearest_k``-th nearest other point."""
  if len(features) <= nearest_k:
    raise ValueError(f'{len(features)} points: k-nearest-neighbour radii need more than '
                     f'k={nearest_k}.')
  # Position nearest_k of each sorted row: position 0 is the point itself (distance 0).
  return np.partition(pairwise_distances(features), nearest_k, axis=1)[:, nearest_k]


def prdc(real_features, fake_features, nearest_k: int = NEAREST_K) -> Dict[str, float]:
  """Precision, recall, density and coverage of fake against real features (Naeem et al.).

  With B(x, r) the open ball around x of radius r, r_i the k-NN radius of real point i among
  the real points and s_j that of fake point j among the fake points:

  * precision = mean over fakes j of [fake j lies in some real ball B(real_i, r_i)]
  * recall = mean over reals i of [real i lies in some fake ball B(fake_j, s_j)]
  * density = mean over fakes j of (number of real balls holding fake j) / k; 1 on average
    for a fake set distributed like the real one, and not capped at 1
  * coverage = mean over reals i of [the nearest fake to real i lies in B(real_i, r_i)]

  Args:
    real_features: [N, D], N > k.
    fake_features: [M, D], M > k.
    nearest_k: k.
  Returns:
    {'precision', 'recall', 'density', 'coverage'} as floats.
  """
  real = _as_features(real_features, 'real_features')
  fake = _as_features(fake_features, 'fake_features')
  if real.shape[1] != fake.shape[1]:
    raise ValueError(f'feature dimensions differ: {real.shape} and {fake.shape}.')
  real_radii = nearest_neighbour_radii(real, nearest_k)  # [N]
  fake_radii = nearest_neighbour_radii(fake, nearest_k)  # [M]
  distances = pairwise_distances(real, fake)  # [N, M]
  in_real_balls = distances < real_radii[:, None]  # [N, M]: fake j inside real i's ball
  return {
      'precision': float(in_real_balls.any(axis=0).mean()),
      'recall': float((distances < fake_radii[None, :]).any(axis=1).mean()),
      'density': float(in_real_balls.sum(axis=0).mean() / nearest_k),
      'coverage': float((distances.min(axis=1) < real_radii).mean()),
  }


def sample_metrics(real_features: np.ndarray, sample_features: np.ndarray,
                   with_prdc: bool = True) -> Dict[str, float]:
  """KID, and precision / recall / density / coverage (``with_prdc``), of samples [M, D]
  against real images' features [N, D]: {'kid', 'precision', 'recall', 'density', 'coverage'}.
  """
  values = {'kid': kid(real_features, sample_features)}
  if with_prdc:
    values.update(prdc(real_features, sample_features))
  return values
