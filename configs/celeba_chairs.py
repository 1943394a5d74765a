"""Figs. 2-3: CelebA -> 3D Chairs at 64x64x3 (image folders celeba/ and chairs/ under data_dir, or
CelebA from TFDS with --config.data.source=tfds). The Student is a beta-VAE (beta=4, Fig. 3)
with ``--config.vae.beta=4``."""

from ltgans_jax import config_base


def get_config():
  config = config_base.get_paper_scale_config('celeba_chairs')
  config.data.image_size = 64
  return config
