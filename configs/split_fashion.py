"""Fig. 4a: Fashion-MNIST split into 10 class tasks (``--config.data.dataset`` picks another
dataset, ``--config.data.num_tasks`` another split)."""

from ltgans_jax import config_base


def get_config():
  return config_base.get_class_split_config('fashion_mnist')
