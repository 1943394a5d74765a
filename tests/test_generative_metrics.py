"""KID and precision / recall / density / coverage (``generative_metrics``): closed forms, a
direct loop, the unbiasedness that sets KID apart from FID, and the ``prdc`` package itself."""

import itertools

import numpy as np
import pytest

from ltgans_jax.eval import evaluation, generative_metrics as gm

# ------------------------------------------------------------------------------------------
# KID.


def test_kid_closed_form_on_hand_made_features():
  # D = 1, k(x, y) = (x y + 1)^3. Within a = {0, 1}: k(0, 1) = 1; within b = {0, 2}: k(0, 2) = 1;
  # across: k(0, 0) = k(0, 2) = k(1, 0) = 1, k(1, 2) = 27, mean 30 / 4.
  a, b = np.array([[0.0], [1.0]]), np.array([[0.0], [2.0]])
  assert gm.kid(a, b) == pytest.approx(1 + 1 - 2 * 30 / 4)
  # D = 2, orthonormal points: k = (1/2 + 1)^3 with itself (never used), 1 between orthogonal
  # ones. a = {e1, e2}, b = {e1, -e1}: within a 1, within b (-1/2 + 1)^3 = 1/8, across
  # (27/8 + 1/8 + 1 + 1) / 4 = 11/8.
  a, b = np.eye(2), np.array([[1.0, 0.0], [-1.0, 0.0]])
  assert gm.kid(a, b) == pytest.approx(1 + 1 / 8 - 2 * 11 / 8)
  assert gm.kid(a, b) == pytest.approx(gm.kid(b, a))  # symmetric


def _kid_by_loops(x, y):
  """The unbiased MMD^2 of Binkowski et al. (eq. 3 with the cubic kernel), one pair at a time."""
  d = x.shape[1]
  k = lambda u, v: (float(np.dot(u, v)) / d + 1) ** 3
  n, m = len(x), len(y)
  xx = sum(k(x[i], x[j]) for i, j in itertools.permutations(range(n), 2)) / (n * (n - 1))
  yy = sum(k(y[i], y[j]) for i, j in itertools.permutations(range(m), 2)) / (m * (m - 1))
  xy = sum(k(x[i], y[j]) for i in range(n) for j in range(m)) / (n * m)
  return xx + yy - 2 * xy


def test_kid_equals_the_direct_loop_for_unequal_sizes():
  rng = np.random.default_rng(0)
  x, y = rng.normal(size=(13, 7)), rng.normal(0.3, 1.2, size=(9, 7))
  assert gm.kid(x, y) == pytest.approx(_kid_by_loops(x, y), rel=1e-12)
  # One subset that holds every row is the full estimate (it is invariant under permutation).
  result = gm.kid_subsets(x[:9], y, num_subsets=1, subset_size=100, rng=rng)
  assert result.mean == pytest.approx(_kid_by_loops(x[:9], y), rel=1e-12)
  assert result.std == 0
  # Several subsets: the mean and spread of the per-subset values, each a loop on its rows.
  draws = np.random.default_rng(3)
  result = gm.kid_subsets(x, y, num_subsets=4, subset_size=5, rng=np.random.default_rng(3))
  values = [_kid_by_loops(x[draws.choice(13, 5, replace=False)],
                          y[draws.choice(9, 5, replace=False)]) for _ in range(4)]
  assert result.mean == pytest.approx(np.mean(values), rel=1e-10)
  assert result.std == pytest.approx(np.std(values), rel=1e-10)


def test_kid_is_unbiased_where_fid_is_not():
  """Two samples of one distribution, with fewer points than twice the dimension: KID averages
  to 0 within its standard error, the FID of the same features stays well above 0."""
  rng = np.random.default_rng(1)
  dim, size, repeats = 16, 20, 300
  kids, fids = [], []
  for _ in range(repeats):
    a, b = rng.normal(size=(size, dim)), rng.normal(size=(size, dim))
    kids.append(gm.kid(a, b))
    fids.append(evaluation.frechet_distance(*evaluation.feature_statistics(a),
                                            *evaluation.feature_statistics(b)))
  standard_error = np.std(kids) / np.sqrt(repeats)
  assert abs(np.mean(kids)) < 3 * standard_error
  assert np.mean(fids) > 20 * np.std(fids) / np.sqrt(repeats)  # biased, by a wide margin


def test_kid_rejects_bad_shapes():
  with pytest.raises(ValueError, match='feature dimensions differ'):
    gm.kid(np.zeros((3, 2)), np.zeros((3, 4)))
  with pytest.raises(ValueError, match='at least 2 points'):
    gm.kid(np.zeros((1, 2)), np.zeros((3, 2)))


# ------------------------------------------------------------------------------------------
# Precision, recall, density, coverage.


def test_prdc_hand_computed_case():
  # k = 1. Real {0, 1, 3}: radii 1, 1, 2. Fake {0.5, 10}: radii 9.5, 9.5.
  # Distances real x fake: [[0.5, 10], [0.5, 9], [2.5, 7]].
  # precision: 0.5 lies in the balls of 0 and 1, 10 in none -> 1/2. recall: every real point
  # lies in a fake ball of radius 9.5 -> 1. density: (2 + 0) / 2 / k = 1. coverage: the nearest
  # fake to 0 and to 1 lies in their balls (0.5 < 1), to 3 not (2.5 > 2) -> 2/3.
  real, fake = np.array([[0.0], [1.0], [3.0]]), np.array([[0.5], [10.0]])
  got = gm.prdc(real, fake, nearest_k=1)
  assert got == pytest.approx({'precision': 0.5, 'recall': 1.0, 'density': 1.0,
                               'coverage': 2 / 3})


def test_prdc_equals_the_prdc_package():
  prdc = pytest.importorskip('prdc')
  rng = np.random.default_rng(2)
  cases = [(rng.normal(size=(200, 16)), rng.normal(0.2, 1.1, size=(150, 16)), 5),
           (rng.normal(size=(120, 64)), rng.normal(size=(180, 64)) * 0.7, 3),
           (np.maximum(rng.normal(size=(100, 8)), 0), np.maximum(rng.normal(size=(90, 8)), 0), 5)]
  for real, fake, k in cases:
    want = prdc.compute_prdc(real_features=real, fake_features=fake, nearest_k=k)
    got = gm.prdc(real, fake, nearest_k=k)
    assert set(got) == set(want)
    for name, value in want.items():
      assert got[name] == pytest.approx(float(value), abs=1e-12), (name, k)
  # The radii alone, against the package's k-NN helper.
  real = cases[0][0]
  np.testing.assert_allclose(gm.nearest_neighbour_radii(real, 5),
                             prdc.prdc.compute_nearest_neighbour_distances(real, 5), rtol=1e-12)


def test_prdc_of_a_set_with_itself_and_with_a_distant_set():
  rng = np.random.default_rng(4)
  real = rng.normal(size=(50, 4))
  same = gm.prdc(real, real, nearest_k=5)
  # Each ball holds its centre (distance 0 < radius) and the centre's 4 nearest neighbours,
  # not the 5th, which lies on the sphere (strict <): 5 fakes per ball, density 5 n / n / 5.
  assert same == pytest.approx({'precision': 1.0, 'recall': 1.0, 'density': 1.0,
                                'coverage': 1.0})
  far = gm.prdc(real, real + 100.0, nearest_k=5)
  assert far == {'precision': 0.0, 'recall': 0.0, 'density': 0.0, 'coverage': 0.0}
  with pytest.raises(ValueError, match='need more than k=5'):
    gm.prdc(real[:5], real, nearest_k=5)
