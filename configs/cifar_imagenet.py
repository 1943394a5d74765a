"""Table 2: CIFAR10 -> CIFAR100 -> Sub1-ImageNet -> Sub2-ImageNet at 32x32x3. Local files:
cifar10/, cifar100/ (python pickles) and imagenet/<wnid>/ image folders under data_dir; the
subsets are ``config.data.imagenet_sub1`` / ``imagenet_sub2``."""

from ltgans_jax import config_base


def get_config():
  return config_base.get_paper_scale_config('cifar_imagenet')
