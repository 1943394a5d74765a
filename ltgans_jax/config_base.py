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
  config.data.source = 'local'  # 'local' (published files under data_dir) or 'tfds'
  config.data.data_dir = ''
  config.data.image_size = 32
  config.data.channels = 1
  # class_split / digits_split: which dataset, and how many tasks its classes form.
  config.data.dataset = 'mnist'
  config.data.num_tasks = 2
  # Fuzzy sequences: class exchanged between the i-th pair of neighbouring databases.
  config.data.fuzzy_swap_classes = (8, 9)
  # cifar_imagenet: the ImageNet subsets as class-folder names (WordNet ids) under
  # data_dir/imagenet/. The paper does not list its classes; these defaults are the public
  # Imagenette (Sub1) and Imagewoof (Sub2) class lists.
  config.data.imagenet_sub1 = ('n01440764', 'n02102040', 'n02979186', 'n03000684',
                               'n03028079', 'n03394916', 'n03417042', 'n03425413',
                               'n03445777', 'n03888257')
  config.data.imagenet_sub2 = ('n02086240', 'n02087394', 'n02088364', 'n02089973',
                               'n02093754', 'n02096294', 'n02099601', 'n02105641',
                               'n02111889', 'n02115641')

  config.model = ml_collections.ConfigDict()
  config.model.latent_dim = 100
  config.model.generator_width = 16
  config.model.critic_width = 16
  config.model.resample = 'pixel_shuffle'
  # How the stride-1 convolutions are differentiated (same function and parameters either way):
  # 'auto' = 'barriered' on the CPU backend (gradients XLA:CPU runs well, ltgans_jax/conv.py),
  # 'xla' (XLA's own) elsewhere.
  config.model.conv_gradients = 'auto'

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

  # Baselines (config.method='lgm' / 'curl'); their VAEs use the Student's sizes above.
  config.lgm = ml_collections.ConfigDict()
  config.lgm.consistency_weight = 1.0  # weight of KL(q_student || q_teacher) on Teacher samples
  config.curl = ml_collections.ConfigDict()
  config.curl.max_components = 12  # mixture components the fixed-size state can hold
  config.curl.buffer_size = 64  # poorly explained images that trigger a new component
  config.curl.expansion_threshold = 80.0  # squared error + KL per image above which it is poor
  config.curl.expansion_steps = 20  # steps training a new component on the buffer
  config.curl.min_steps_between_expansions = 200  # also: no expansion before this many steps

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
  # Whether a step's independent passes run one at a time (same values either way): 'auto' =
  # 'sequenced' on the CPU backend (ltgans_jax/schedule.py), 'free' (XLA's order) elsewhere.
  config.train.phase_order = 'auto'

  config.eval = ml_collections.ConfigDict()
  config.eval.num_examples = 500  # test images (and generated samples) per task for metrics
  config.eval.iwae_samples = 50  # k of the importance-weighted NLL bound (5000 is customary)
  config.eval.feature_net_steps = 300  # training steps of the FID feature classifier
  config.eval.inception_weights = ''  # pytorch-fid's pt_inception-*.pth, for Inception FID
  config.eval.grid_rows = 8

  # --mode=sample: which network, how many images, which latents.
  config.sample = ml_collections.ConfigDict()
  config.sample.network = ''  # '' = the network the FID measures (the Assistant; a VAE's decoder)
  config.sample.num = 64
  config.sample.seed = 0
  return config


def get_paper_config(sequence: str) -> ml_collections.ConfigDict:
  """The paper's setting for mixed-domain sequences: 32x32x3 images, z=100, batch 64, widths
  64, WGAN-GP with 5 critic updates per generator update and lambda=10."""
  config = get_config()
  config.data.sequence = sequence
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
  config.eval.iwae_samples = 100
  config.eval.feature_net_steps = 2000
  return config
