"""Builders shared by the tests."""

import gzip
import struct

import jax
import numpy as np

from ltgans_jax.cpu import backend
from ltgans_jax.data import local
from ltgans_jax.methods import registry


def build_method(config):
  """``config``'s method with the backend's convolution layers, as a run builds it."""
  return registry.build(config, backend.resolve(config).layers)


def build(config):
  """(networks, optimizers, fresh state, phase -> jitted step) of ``config``'s GAN method, as
  a run builds it."""
  method = build_method(config)
  state = method.init_state(jax.random.key(config.seed))
  return method.networks, method.optimizers, state, method.train_steps()


def second_task_start(config):
  """(``config``'s method, a fresh state moved on to the start of task 2, a batch, a key):
  where the LAKD step and the Student's replay first run."""
  from ltgans_jax.methods import ltgans_state  # pylint: disable=g-import-not-at-top
  method = build_method(config)
  state = method.init_state(jax.random.key(0))
  state = ltgans_state.begin_next_task(state, method.optimizers.generator)
  return method, state, random_batch(config, 1), jax.random.key(5)


def random_batch(config, seed=0):
  shape = (config.train.batch_size, config.data.image_size, config.data.image_size,
           config.data.channels)
  return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


def tree_equal(a, b):
  return all(np.array_equal(x, y) for x, y in
             zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)))


def host_copy(tree):
  """A host copy (the steps donate their input state)."""
  return jax.tree_util.tree_map(np.array, tree)


def write_idx(path, array):
  header = struct.pack('>BBBB', 0, 0, 0x08, array.ndim) + b''.join(
      struct.pack('>I', d) for d in array.shape)
  with gzip.open(path, 'wb') as f:
    f.write(header + array.astype(np.uint8).tobytes())


def write_mnist_folder(folder, n_train=12, n_test=5, num_classes=10, seed=0):
  """Writes the four MNIST IDX .gz files of random images into ``folder``."""
  folder.mkdir(parents=True, exist_ok=True)
  rng = np.random.default_rng(seed)
  arrays = {}
  for split, (images_file, labels_file), n in zip(
      ('train', 'test'), local.IDX_FILES.values(), (n_train, n_test)):
    images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
    labels = rng.permutation(np.arange(n) % num_classes).astype(np.uint8)
    write_idx(folder / images_file, images)
    write_idx(folder / labels_file, labels)
    arrays[split] = (images, labels)
  return arrays


def set_config_value(config, dotted, value):
  """Sets ``config``'s dotted key to ``value`` of any type (bad values included)."""
  *parents, leaf = dotted.split('.')
  node = config
  for part in parents:
    node = node[part]
  with node.ignore_type():
    node[leaf] = value


_TORCHVISION_OPS = []  # keeps the operator schemas of import_torchvision registered


def import_torchvision():
  """Imports torchvision, which pytorch-fid's blocks subclass; returns nothing and leaves the
  skip to the caller's ``pytest.importorskip`` when torch or torchvision is missing.

  torchvision's PyPI wheel for Linux is built against CUDA torch; beside a CPU-only torch its
  C++ ops cannot load, and torchvision 0.28 then fails at import when it registers fake
  kernels for two of them (nms, qnms). Declaring those two schemas lets its pure-Python models
  import; pytorch-fid uses nothing else of torchvision, and no op is ever called.
  """
  try:
    import torch  # pylint: disable=g-import-not-at-top
    import torchvision  # pylint: disable=g-import-not-at-top,unused-import
  except ImportError:
    return
  except RuntimeError as error:
    if 'torchvision::' not in str(error):
      raise
    library = torch.library.Library('torchvision', 'DEF')  # pylint: disable=no-member
    for op in ('nms', 'qnms'):
      library.define(f'{op}(Tensor dets, Tensor scores, float iou_threshold) -> Tensor')
    _TORCHVISION_OPS.append(library)
    import torchvision  # pylint: disable=g-import-not-at-top,unused-import,redefined-outer-name
