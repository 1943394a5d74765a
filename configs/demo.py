"""The embedded default: scikit-learn's digits (0-4 then 5-9), 32x32x1, small networks.
No download; a few minutes on 2 CPU cores."""

from ltgans_jax import config_base


def get_config():
  return config_base.get_config()
