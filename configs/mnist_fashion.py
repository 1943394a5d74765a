"""MNIST -> Fashion-MNIST at 32x32x3 with the paper's sizes (z=100, batch 64), from the
published IDX files: ``--config.data.data_dir=FOLDER`` holding ``mnist/`` and
``fashion_mnist/``."""

from ltgans_jax import config_base


def get_config():
  config = config_base.get_config()
  config.data.sequence = 'mnist_fashion'
  config.data.channels = 3
  config.model.generator_width = 64
  config.model.critic_width = 64
  config.vae.width = 64
  config.vae.latent_dim = 64
  config.gan.critic_steps = 5
  config.optim.gan_learning_rate = 1e-4
  config.train.steps_per_task = 10000
  config.train.log_every = 200
  config.train.checkpoint_every = 2000
  config.eval.num_examples = 2000
  return config
