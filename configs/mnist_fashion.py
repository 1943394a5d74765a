"""MNIST -> Fashion-MNIST at the paper's sizes, from the published IDX files:
``--config.data.data_dir=DIR`` holding ``mnist/`` and ``fashion_mnist/``."""

from ltgans_jax import config_base


def get_config():
  return config_base.get_paper_scale_config('mnist_fashion')
