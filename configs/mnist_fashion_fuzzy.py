"""Offline stand-in for Table 3: MNIST-c -> Fashion-c, class 8 exchanged between the two."""

from ltgans_jax import config_base


def get_config():
  return config_base.get_paper_scale_config('mnist_fashion_fuzzy')
