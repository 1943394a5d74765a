"""The embedded default (``python -m ltgans_jax.main`` without ``--config``): scikit-learn's
digits, 0-4 then 5-9, in our CPU-scale setting (``config_base.cpu_scale_values``: the GAN of
``CPU_GAN_SETTING``, RMSProp with one critic step; task 1 learnt by one twin and copied) with
16x16x1 images and short tasks (``config_base.DEMO_VALUES``). No download; its wall time on a
2-core CPU and its sample grids: ``experiments/results/demo/``."""

from ltgans_jax import config_base


def get_config():
  return config_base.get_config()
