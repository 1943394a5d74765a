"""Tiny config for the tests: 28x28x1 digits, two tasks of a few steps, tiny networks."""

from ltgans_jax import config_base


def get_config():
  config = config_base.get_config()
  config.data.image_size = 28
  config.data.num_tasks = 2
  config.model.latent_dim = 8
  config.model.generator_width = 4
  config.model.critic_width = 4
  config.vae.latent_dim = 4
  config.vae.width = 4
  config.gan.critic_steps = 1
  config.train.batch_size = 8
  config.train.steps_per_task = 4
  config.train.log_every = 2
  config.train.checkpoint_every = 2
  config.eval.num_examples = 16
  config.eval.grid_rows = 2
  config.eval.iwae_samples = 3
  config.eval.feature_net_steps = 5
  return config
