"""The shared base configuration; every file in ``configs/`` is a small change to it.

``get_config()`` is also the embedded default that ``python -m ltgans_jax.main`` runs when no
``--config`` is given: scikit-learn's handwritten digits (shipped with the package, no download)
split into two tasks, small networks, a few minutes on 2 CPU cores.
"""

import ml_collections


def get_config() -> ml_collections.ConfigDict:
  config = ml_collections.ConfigDict()
  config.seed = 0
  config.method = 'ltgans'

  # Data: a named task sequence (see ltgans_jax/data/sequences.py), brought to one common
  # image shape. ``data_dir`` holds one folder per dataset in its published file format.
  config.data = ml_collections.ConfigDict()
  config.data.sequence = 'digits_split'
  config.data.data_dir = ''
  config.data.image_size = 32
  config.data.channels = 1
  config.data.num_tasks = 2  # for class-split sequences: how many tasks the classes form

  config.model = ml_collections.ConfigDict()
  config.model.latent_dim = 100
  config.model.generator_width = 16
  config.model.critic_width = 16
  config.model.resample = 'pixel_shuffle'

  # WGAN-GP and LAKD (eqs. 2-3).
  config.gan = ml_collections.ConfigDict()
  config.gan.gradient_penalty_weight = 10.0
  config.gan.critic_steps = 2  # critic updates per generator update
  config.gan.teacher_fraction = 0.5  # share of Teacher samples on the critic's real side

  # The Student (eqs. 5-6). 'gaussian' with decoder_std = 1/sqrt(2) makes the reconstruction
  # term the per-image sum of squared errors in [0, 1] plus a constant, as in the paper.
  config.vae = ml_collections.ConfigDict()
  config.vae.latent_dim = 32
  config.vae.width = 16
  config.vae.beta = 1.0
  config.vae.likelihood = 'gaussian'
  config.vae.decoder_std = 0.7071067811865476

  config.optim = ml_collections.ConfigDict()
  config.optim.gan_learning_rate = 2e-4
  config.optim.gan_b1 = 0.5
  config.optim.gan_b2 = 0.9
  config.optim.student_learning_rate = 1e-3

  config.train = ml_collections.ConfigDict()
  config.train.batch_size = 64
  config.train.steps_per_task = 1500
  config.train.log_every = 100
  config.train.checkpoint_every = 500
  config.train.max_checkpoints = 2  # rolling ones; task-boundary checkpoints are always kept

  config.eval = ml_collections.ConfigDict()
  config.eval.num_examples = 500  # test images per task for the end-of-task NLL
  config.eval.grid_rows = 8
  return config
