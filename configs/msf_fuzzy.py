"""Table 3: fuzzy task boundaries, MNIST-c -> SVHN-c -> Fashion-c (class 8 exchanged between
MNIST and SVHN, class 9 between SVHN and Fashion; ``--config.data.fuzzy_swap_classes``)."""

from ltgans_jax import config_base


def get_config():
  return config_base.get_paper_scale_config('msf_fuzzy')
