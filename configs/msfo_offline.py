"""Offline stand-in for Table 1: MNIST -> Fashion -> inverted MNIST -> inverted Fashion
(the authors' code uses an inverted Fashion domain); needs only mnist/ and fashion_mnist/."""

from ltgans_jax import config_base


def get_config():
  return config_base.get_paper_scale_config('msfo_offline')
