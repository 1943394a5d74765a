"""``configs/mnist_fashion.py`` at our CPU scale (``config_base.get_cpu_scale_config``: 28x28x1, the GAN
setting chosen in ``experiments/results/gan_speed/``): what runs on a laptop; ``configs/mnist_fashion.py`` is
the accelerator-scale one."""

from ltgans_jax import config_base


def get_config():
  return config_base.get_cpu_scale_config('mnist_fashion')
