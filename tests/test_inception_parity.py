"""The Flax FID InceptionV3 against pytorch-fid's, as whole networks (the ``torch`` extra).

One seeded synthetic state dict with the names and shapes of pytorch-fid's network is written
to a ``.pth`` file by ``torch_pickle``; pytorch-fid's ``InceptionV3`` (its ``fid_inception_v3``,
``FIDInceptionA/C/E`` blocks and strict ``load_state_dict``, with the download replaced by
``torch.load`` of that file) and ours (``inception.load_fid_inception_params`` of the same file)
then see the same uint8 images, each through its own preprocessing (pytorch-fid: [0, 1] images,
its resize to 299x299, 2x - 1; ours: [-1, 1] images, ``resize_bilinear``). Their pool-3
features must agree to float32 round-off, and so must the FIDs between two image sets, each
computed by its own library's Frechet distance.

Skipped, not failed, without torch or pytorch-fid. No weights are downloaded.
"""

import numpy as np
import pytest
import scipy.linalg

from ltgans_jax.eval import evaluation, inception, torch_pickle
from tests.helpers import import_torchvision

torch = pytest.importorskip('torch')

import_torchvision()
pytest.importorskip('pytorch_fid')
from pytorch_fid import fid_score as torch_fid_score  # pylint: disable=g-import-not-at-top
from pytorch_fid import inception as torch_fid_inception  # pylint: disable=g-import-not-at-top

IMAGE_SHAPE = (4, 32, 32, 3)  # per set; both networks resize to 299x299


def _synthetic_state_dict(seed: int = 0):
  """pytorch-fid's names and shapes (read off torchvision's Inception3 with 1008 classes and no
  auxiliary head, which ``fid_inception_v3`` patches), seeded values that keep activations
  O(1): He-scaled convolutions, batch norms near the identity."""
  skeleton = torch_fid_inception._inception_v3(  # pylint: disable=protected-access
      num_classes=1008, aux_logits=False, weights=None)
  rng = np.random.default_rng(seed)
  state_dict = {}
  for name, tensor in skeleton.state_dict().items():
    shape, leaf = tuple(tensor.shape), name.rsplit('.', 1)[-1]
    if leaf == 'num_batches_tracked':
      value = np.zeros(shape, np.int64)
    elif name == 'fc.weight':
      value = rng.normal(0, 0.02, shape)
    elif leaf == 'weight' and len(shape) == 4:
      value = rng.normal(0, np.sqrt(2 / np.prod(shape[1:])), shape)
    elif leaf in ('weight', 'running_var'):
      value = 1 + 0.1 * rng.uniform(-1, 1, shape)
    else:  # batch-norm bias and running_mean, fc.bias
      value = 0.1 * rng.uniform(-1, 1, shape)
    state_dict[name] = value.astype(tensor.numpy().dtype)
  return state_dict


@pytest.fixture(scope='module')
def weights_file(tmp_path_factory):
  path = str(tmp_path_factory.mktemp('weights') / inception.WEIGHTS_FILE)
  torch_pickle.save_torch_state_dict(path, _synthetic_state_dict())
  return path


def _pytorch_fid_network(path, monkeypatch):
  """pytorch-fid's own ``InceptionV3()`` (pool-3 block, resize and normalisation on), its
  weights ``torch.load``ed from ``path`` where it would download them."""
  def load_state_dict_from_url(url, progress=True):
    assert url == torch_fid_inception.FID_WEIGHTS_URL
    del progress
    return torch.load(path, weights_only=True)
  monkeypatch.setattr(torch_fid_inception, 'load_state_dict_from_url', load_state_dict_from_url)
  network = torch_fid_inception.InceptionV3([torch_fid_inception.InceptionV3.BLOCK_INDEX_BY_DIM[
      inception.FEATURE_DIM]])
  return network.eval()


def _span_coordinates(features_a, features_b):
  """Both sets' [N, D] features as coordinates [N, r] in an orthonormal basis of the affine
  span of all of them (r <= N_a + N_b - 1).

  The Frechet distance is invariant under a common translation and rotation of the two sets,
  and in a basis whose first r vectors span the centred features the covariances are zero
  outside their leading r x r blocks; so the FID of the coordinates is the D-dimensional FID
  exactly, at the cost of an r x r matrix square root instead of a 2048 x 2048 one (which
  alone takes tens of seconds on two cores).
  """
  both = np.concatenate([features_a, features_b]).astype(np.float64)
  centred = both - both.mean(axis=0)
  basis = scipy.linalg.orth(centred.T)  # [D, r]
  coordinates = centred @ basis
  return coordinates[:len(features_a)], coordinates[len(features_a):]


def test_span_coordinates_keep_the_frechet_distance():
  rng = np.random.default_rng(0)
  a, b = rng.normal(size=(4, 40)), rng.normal(0.5, 2.0, size=(5, 40))
  ca, cb = _span_coordinates(a, b)
  assert ca.shape[1] == 8
  full = evaluation.frechet_distance(*evaluation.feature_statistics(a),
                                     *evaluation.feature_statistics(b))
  reduced = evaluation.frechet_distance(*evaluation.feature_statistics(ca),
                                        *evaluation.feature_statistics(cb))
  # (The 40-d covariances of 4 and 5 points are singular: the full distance takes pytorch-fid's
  # eps-regularised branch, hence not 1e-12.)
  np.testing.assert_allclose(reduced, full, rtol=1e-6)


@pytest.mark.filterwarnings('ignore::DeprecationWarning')  # pytorch-fid's sqrtm(disp=False)
@pytest.mark.filterwarnings('ignore:Matrix is singular')
def test_pool3_features_and_fid_equal_pytorch_fid(weights_file, monkeypatch, capsys):
  rng = np.random.default_rng(1)
  images = [rng.integers(0, 256, IMAGE_SHAPE, dtype=np.uint8),
            # a smoother set, so the two differ in distribution and not only in draw
            np.clip(rng.normal(128, 30, (4, 8, 8, 3)).repeat(4, 1).repeat(4, 2), 0,
                    255).astype(np.uint8)]
  network = _pytorch_fid_network(weights_file, monkeypatch)
  with torch.no_grad():  # pytorch-fid's input: [B, 3, H, W] in [0, 1], as its ToTensor gives
    theirs = [network(torch.from_numpy(x).permute(0, 3, 1, 2).float() / 255)[0]
              .squeeze(3).squeeze(2).numpy().astype(np.float64) for x in images]
  ours_fn = inception.features_fn(inception.load_fid_inception_params(weights_file))
  ours = [evaluation.compute_features(ours_fn, x) for x in images]

  scale = max(np.abs(f).max() for f in theirs)
  difference = max(np.abs(o - t).max() for o, t in zip(ours, theirs))
  assert all(o.shape == (4, inception.FEATURE_DIM) for o in ours)
  assert scale > 0.1 and np.concatenate(theirs).std(axis=0).max() > 0  # not a dead network
  np.testing.assert_allclose(np.concatenate(ours), np.concatenate(theirs), rtol=1e-4,
                             atol=1e-4 * scale)

  ours_a, ours_b = _span_coordinates(*ours)
  ours_fid = evaluation.frechet_distance(*evaluation.feature_statistics(ours_a),
                                         *evaluation.feature_statistics(ours_b))
  # pytorch-fid's statistics (as its calculate_activation_statistics) and Frechet distance.
  theirs_a, theirs_b = _span_coordinates(*theirs)
  theirs_fid = torch_fid_score.calculate_frechet_distance(
      np.mean(theirs_a, axis=0), np.cov(theirs_a, rowvar=False),
      np.mean(theirs_b, axis=0), np.cov(theirs_b, rowvar=False))
  assert ours_fid > 0.01 * scale**2  # the two sets differ
  np.testing.assert_allclose(ours_fid, theirs_fid, rtol=1e-4)
  with capsys.disabled():
    print(f'\nInception parity: max |pool-3 difference| {difference:.3g} (largest feature '
          f'{scale:.3g}); FID ours {ours_fid:.6f}, pytorch-fid {theirs_fid:.6f}')
