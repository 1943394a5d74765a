"""Tiny config for the tests: 28x28x1 digits, two tasks of a few steps, tiny networks."""

from ltgans_jax import config_base

# What differs from ``config_base.get_base_config()``.
OVERRIDES = {
    'data.image_size': 28, 'data.num_tasks': 2,
    'model.latent_dim': 8, 'model.generator_width': 4, 'model.critic_width': 4,
    'vae.latent_dim': 4, 'vae.width': 4,
    'gan.critic_steps': 1,
    'train.batch_size': 8, 'train.steps_per_task': 4, 'train.log_every': 2,
    'train.checkpoint_every': 2,
    'eval.num_examples': 16, 'eval.grid_rows': 2, 'eval.iwae_samples': 3,
    'eval.feature_net_steps': 5,
    # The heatmaps are matplotlib time in every run; the reference run (tests/conftest.py)
    # draws them for the tests that read them.
    'eval.heatmaps': False,
}


def get_config():
  config = config_base.get_base_config()
  config.update_from_flattened_dict(OVERRIDES)
  return config
