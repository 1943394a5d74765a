"""``configs/split_mnist.py`` (10 class tasks) at our CPU scale
(``config_base.get_class_split_config``)."""

from ltgans_jax import config_base


def get_config():
  return config_base.get_class_split_config('mnist', cpu_scale=True)
