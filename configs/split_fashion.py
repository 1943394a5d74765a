"""Fig. 4a: Fashion-MNIST split into 10 class tasks (``--config.data.dataset`` picks another
dataset, ``--config.data.num_tasks`` another split)."""

from ltgans_jax import config_base


def get_config():
  config = config_base.get_paper_scale_config('class_split')
  config.data.dataset = 'fashion_mnist'
  config.data.num_tasks = 10
  config.train.steps_per_task = 2000
  return config
