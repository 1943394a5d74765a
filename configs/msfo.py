"""Table 1: MNIST -> SVHN -> Fashion -> Omniglot at 32x32x3. Local published files under
``--config.data.data_dir`` (mnist/, svhn/, fashion_mnist/, omniglot/), or
``--config.data.source=tfds`` with prepared TFDS datasets there."""

from ltgans_jax import config_base


def get_config():
  return config_base.get_paper_scale_config('msfo')
