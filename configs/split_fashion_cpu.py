"""``configs/split_fashion.py`` (10 class tasks) at our CPU scale (``config_base.get_cpu_scale_config``),
with shorter tasks: each holds a tenth of the data."""

from ltgans_jax import config_base


def get_config():
  config = config_base.get_cpu_scale_config('class_split')
  config.data.dataset = 'fashion_mnist'
  config.data.num_tasks = 10
  config.train.steps_per_task = 1000
  return config
