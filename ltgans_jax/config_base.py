"""The shared base configuration; every file in ``configs/`` is a small change to it.

Three sources, kept apart in every comment here: what the paper states (WGAN-GP with
lambda = 10, eqs. 2-6, batch 64, z ~ N(0, I) of 100 dimensions, 32x32 images for its
mixed-domain sequences, beta = 4 for Fig. 3), what the authors' public TF1 code does
(``authors_code_settings``: RMSProp 2e-4, one critic update per generator update, 20 epochs
per task, the Student by Adam(2e-4, beta1 0.5) with 100 latent dimensions), and what we chose
(everything else, e.g. Adam for the GANs, the widths, the pixel-shuffle networks).

``get_base_config()`` holds every field at our default; every config in ``configs/`` changes a
few of them. ``get_config()`` is the embedded demo that ``python -m ltgans_jax.main`` runs when no
``--config`` is given (``configs/demo.py``): scikit-learn's handwritten digits (shipped with the
package, no download) split into two tasks, at our CPU-scale setting with short tasks (its wall
time and sample grids: ``experiments/results/demo/``).
"""

from typing import Any, Dict, Mapping

import ml_collections


def flat_items(config: Any, prefix: str = '') -> Dict[str, Any]:
  """A config (a ConfigDict, or its JSON as nested dicts) as 'a.b' -> leaf value, in order.

  The one flattener: the config checks, TensorBoard's hparams and the experiments' config diffs
  all read a config through it."""
  flat = {}
  for key, value in config.items():
    if isinstance(value, (ml_collections.ConfigDict, Mapping)):
      flat.update(flat_items(value, f'{prefix}{key}.'))
    else:
      flat[f'{prefix}{key}'] = value
  return flat


def get_base_config() -> ml_collections.ConfigDict:
  """Every field of a config, at our defaults (the GAN: Adam, 2 critic steps, twins on task 1)."""
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
  # Fuzzy sequences (ltgans_jax/data/sequences.py). 'ours': class fuzzy_swap_classes[i] is
  # exchanged between the i-th pair of neighbouring databases, train and test (our reading of
  # the paper's "one of the classes"). 'authors_code': as the authors' public code does, classes
  # 8 and 9 (SVHN: digits 9 and 0) exchanged between tasks 1<->2, 3<->4, ..., training sets
  # only, test sets untouched; fuzzy_swap_classes is not read.
  config.data.fuzzy_variant = 'ours'
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
  # How the convolutions are computed and differentiated (same function and parameters either
  # way): 'auto' = 'barriered' on the CPU backend (gradients XLA:CPU runs well, and the strided
  # layers of resample='strided' as stride-1 convolutions: ltgans_jax/cpu/conv.py), 'xla'
  # (flax's nn.Conv, nn.ConvTranspose) elsewhere; resolved when a method is built
  # (ltgans_jax/cpu/backend.py).
  config.model.conv_gradients = 'auto'

  # WGAN-GP and LAKD (eqs. 2-3).
  config.gan = ml_collections.ConfigDict()
  config.gan.gradient_penalty_weight = 10.0
  config.gan.critic_steps = 2  # critic updates per generator update (ours; the authors': 1)
  config.gan.teacher_fraction = 0.5  # share of Teacher samples on the critic's real side
  # Task 1 (eq. 1). 'twins': both generators, initialised apart, learn the data against the
  # one critic, as the paper's eq. 1 and the authors' code do; the critic then matches only
  # their mixture to the data, and each twin may learn a part of it (at our CPU scale the two
  # split the digits between them). 'copy' (ours): one generator learns the data with the plain
  # WGAN-GP step and the other becomes its copy at the end of the task: eq. 1 at its symmetric
  # solution G_T = G_A, each twin holding all of task 1, for half the task's generator work.
  config.gan.first_task = 'twins'

  # The Student (eqs. 5-6). 'gaussian' with decoder_std = 1/sqrt(2) makes the reconstruction
  # term the per-image sum of squared errors in [0, 1] plus a constant, as in the paper.
  config.vae = ml_collections.ConfigDict()
  config.vae.latent_dim = 32
  config.vae.width = 16
  config.vae.beta = 1.0
  config.vae.likelihood = 'gaussian'
  config.vae.decoder_std = 0.7071067811865476
  # When the Student updates: 'every_step' (ours: with every critic update) or
  # 'with_generator' (once per generator update, as the authors' code does; the same thing
  # when gan.critic_steps = 1). The VAE baselines update every step either way.
  config.vae.update_schedule = 'every_step'
  # Levers of the study of the Student's forgetting (experiments/student_gap.py; ours, read by
  # the GAN methods only; the defaults are eq. 5 as the paper writes it): the weight of the
  # replay term in the Student's loss (eq. 5 adds the data and replay terms: 1); Student updates
  # per training step (each after the first on the same data and replay with fresh noise); and
  # whose samples the Student replays: 'teacher' (the paper) or 'both' (half the replay batch
  # from the Teacher, half from the Assistant as it learns the current task).
  config.vae.replay_weight = 1.0
  config.vae.updates_per_step = 1
  config.vae.replay_from = 'teacher'

  # Baselines (config.method='lgm' / 'curl'); their VAEs use the Student's sizes above.
  config.lgm = ml_collections.ConfigDict()
  config.lgm.consistency_weight = 1.0  # weight of KL(q_student || q_teacher) on Teacher samples
  config.curl = ml_collections.ConfigDict()
  config.curl.max_components = 12  # components the fixed-size state holds (ours; CURL's code: 30)
  config.curl.buffer_size = 100  # poor images that trigger a new component (as CURL's code)
  config.curl.expansion_threshold = 80.0  # squared error + KL above which an image is poor (ours)
  config.curl.expansion_steps = 10  # steps (passes over the buffer) training a new component
  # alone (CURL's code: num_buffer_train_steps = 10)
  config.curl.min_steps_between_expansions = 100  # also the burn-in at the start (CURL's
  # code: exp_wait_steps = exp_burn_in = 100)

  config.optim = ml_collections.ConfigDict()
  # Generators' and critic's optimiser: 'adam' (ours, with gan_b1/gan_b2) or 'rmsprop' (the
  # authors' code: TF1's RMSPropOptimizer, i.e. decay 0.9, no momentum, epsilon 1e-10 inside
  # the square root, mean squares starting at 1).
  config.optim.gan_optimizer = 'adam'
  config.optim.gan_learning_rate = 2e-4
  config.optim.gan_b1 = 0.5
  config.optim.gan_b2 = 0.9
  config.optim.rmsprop_decay = 0.9
  config.optim.rmsprop_eps = 1e-10
  config.optim.rmsprop_initial_scale = 1.0
  # Decay of an exponential moving average of each trained generator's weights (0: none, the
  # paper's and the authors' code's training). With d > 0 every task ends with its trained
  # generators' weights replaced by their average (``methods.ltgans.GanMethod.end_task``), so
  # the frozen Teacher of the next task replays the averaged generator (ours: weight averaging
  # improves GAN samples, Yazici et al. 2019, "The unusual effectiveness of averaging in GAN
  # training").
  config.optim.generator_ema_decay = 0.0
  config.optim.student_learning_rate = 1e-3
  config.optim.student_b1 = 0.9  # Adam's beta1 for the Student (the authors' code: 0.5)

  config.train = ml_collections.ConfigDict()
  config.train.batch_size = 64
  config.train.steps_per_task = 1500
  # > 0: each task runs this many epochs instead (ltgans_jax/durations.py: an epoch is one
  # pass of the task's data through the critic's real side; the authors' code runs 20).
  config.train.epochs_per_task = 0.0
  config.train.log_every = 100
  config.train.checkpoint_every = 500
  config.train.max_checkpoints = 2  # rolling ones; task-boundary checkpoints are always kept
  # Seeds trained together (ours): S > 1 trains seeds seed, seed + 1, ..., seed + S - 1 as one
  # state with a leading seed axis and one vmapped step, each seed as its one-seed run would
  # (ltgans_jax/run/seeds.py); report.md then gives mean +- 95% interval over seeds.
  config.train.num_seeds = 1
  # How one call steps S > 1 seeds: 'auto' ('loop', one seed after the other, on the CPU
  # backend; 'vmap' elsewhere), 'vmap' or 'loop' (ltgans_jax/run/loop.py).
  config.train.seed_batching = 'auto'

  config.eval = ml_collections.ConfigDict()
  config.eval.num_examples = 500  # test images (and generated samples) per task for metrics
  # The test images every metric and picture reads: one class-stratified subset per task,
  # drawn with this seed (independent of ``seed``, so that every run sees the same images).
  config.eval.subset_seed = 0
  config.eval.iwae_samples = 50  # k of the importance-weighted NLL bound (5000 is customary)
  config.eval.feature_net_steps = 300  # training steps of the FID feature classifier
  # A folder where the feature classifier is kept for other runs on the same images with the
  # same seed and steps (every method of one seed of a table): they read it instead of
  # training it again. '' (default): each run trains its own (ours; feature_net.py).
  config.eval.feature_net_cache = ''
  config.eval.inception_weights = ''  # pytorch-fid's pt_inception-*.pth, for Inception FID
  # Each task's reference features and FID statistics computed once per run and kept in
  # workdir/eval/reference/ (ltgans_jax/eval/reference_stats.py); False recomputes them at every
  # evaluation (the same values, more time: experiments/results/eval_cache_timing/).
  config.eval.cache_reference_stats = True
  config.eval.grid_rows = 8
  # Each forgetting matrix also drawn as a heatmap (workdir/eval/<metric>.png and TensorBoard)
  # at every task boundary (matplotlib, one figure per metric: the evaluation's slowest part in
  # a tiny run); the JSON matrices are written either way.
  config.eval.heatmaps = True

  # Where metrics go besides <workdir>/metrics.jsonl and TensorBoard (<workdir>/tensorboard).
  config.log = ml_collections.ConfigDict()
  config.log.wandb_project = ''  # a W&B project name: also log there (pip install '.[wandb]')

  # --mode=sample: which network, how many images, which latents.
  config.sample = ml_collections.ConfigDict()
  config.sample.network = ''  # '' = the network the FID measures (the Assistant; a VAE's decoder)
  config.sample.num = 64
  config.sample.seed = 0
  return config


def get_paper_scale_config(sequence: str) -> ml_collections.ConfigDict:
  """Our accelerator-scale setting for ``sequence``.

  From the paper: 32x32 images (3 channels for its mixed-domain sequences, grey sets copied to
  three), z of 100, batch 64, WGAN-GP with lambda = 10. Ours (the paper does not state them):
  widths 64, Adam 1e-4 (0.5, 0.9) for the GANs, 5 critic updates per generator update (the
  WGAN-GP paper's choice), 10k steps (2k generator updates) per task, a Student with 64 latent
  dimensions. ``authors_code_settings`` turns it into the authors' code's optimisers and
  schedule.
  """
  config = get_base_config()
  config.data.sequence = sequence
  config.update_from_flattened_dict({
      'data.channels': 3, 'model.generator_width': 64, 'model.critic_width': 64,
      'vae.width': 64, 'vae.latent_dim': 64, 'gan.critic_steps': 5,
      'optim.gan_learning_rate': 1e-4, 'train.steps_per_task': 10000, 'train.log_every': 200,
      'train.checkpoint_every': 2000, 'eval.num_examples': 2000, 'eval.iwae_samples': 100,
      'eval.feature_net_steps': 2000})
  return config


# Our CPU-scale GAN setting (laptops, 2-core machines): the setting that learnt MNIST fastest
# per CPU-second among the WGAN-GP settings trained for one wall-clock budget each on a 2-core
# CPU (the study, its numbers and the commit to rerun it: experiments/results/gan_speed/):
# widths 16 with the authors' optimiser and schedule (RMSProp 2e-4, one critic update per
# generator update); RMSProp's TF1 constants are the base config's.
CPU_GAN_SETTING = {
    'model.generator_width': 16,
    'model.critic_width': 16,
    'optim.gan_optimizer': 'rmsprop',
    'optim.gan_learning_rate': 2e-4,
    'gan.critic_steps': 1,
}


def cpu_scale_values(image_size: int = 28, channels: int = 1) -> dict:
  """Dotted config key -> value of our CPU-scale setting (``get_cpu_scale_config``; the
  experiment scripts' ``--size=cpu``). The GAN from ``CPU_GAN_SETTING``; images 28x28x1 for the
  grey offline sequences (ours; the paper's mixed-domain sequences are 32x32x3); the Student at
  widths 16 with 32 latents; task 1 learnt by one twin and copied (``gan.first_task``); 6000
  steps per task; evaluation on 1000 test images per task."""
  return {
      'data.image_size': image_size,
      'data.channels': channels,
      **CPU_GAN_SETTING,
      # Twins trained apart on task 1 split MNIST's digits between them at this scale
      # (experiments/results/evidence_mnist_fashion/): one learns, one copies.
      'gan.first_task': 'copy',
      'vae.width': 16,
      'vae.latent_dim': 32,
      'train.batch_size': 64,
      'train.steps_per_task': 6000,
      'train.log_every': 200,
      'train.checkpoint_every': 1000,
      'eval.num_examples': 1000,
      'eval.iwae_samples': 50,
      'eval.feature_net_steps': 1500,
  }


def apply_values(config: ml_collections.ConfigDict, values: dict) -> ml_collections.ConfigDict:
  """Sets every dotted key of ``values`` in ``config`` (which must have it); returns config."""
  for dotted, value in values.items():
    *parents, leaf = dotted.split('.')
    node = config
    for part in parents:
      node = node[part]
    if leaf not in node:
      raise KeyError(f'config has no field {dotted!r}')
    node[leaf] = value
  return config


def get_cpu_scale_config(sequence: str, image_size: int = 28,
                         channels: int = 1) -> ml_collections.ConfigDict:
  """Our CPU-scale setting for ``sequence`` (``cpu_scale_values``): what runs on a laptop.
  ``get_paper_scale_config`` is the accelerator-scale one."""
  config = get_base_config()
  config.data.sequence = sequence
  return apply_values(config, cpu_scale_values(image_size, channels))


# What the embedded demo changes in our CPU-scale setting (ours): 16x16 images, because
# scikit-learn's digits are 8x8 and 28x28 adds pixels, not information, at three times the work
# per step; tasks short enough for a laptop's few minutes; evaluation sized to the digits' small
# test sets.
DEMO_VALUES = {
    'data.image_size': 16,
    'train.steps_per_task': 1200,
    'train.log_every': 200,
    'train.checkpoint_every': 600,
    'eval.num_examples': 500,
    'eval.feature_net_steps': 300,
}


def get_config() -> ml_collections.ConfigDict:
  """The embedded demo (``python -m ltgans_jax.main`` without ``--config``; ``configs/demo.py``):
  scikit-learn's digits, 0-4 then 5-9, in our CPU-scale setting (``cpu_scale_values``: the GAN
  of ``CPU_GAN_SETTING``, task 1 learnt by one twin and copied) with ``DEMO_VALUES``' 16x16
  images and shorter tasks."""
  config = get_cpu_scale_config('digits_split')
  return apply_values(config, DEMO_VALUES)


def get_class_split_config(dataset: str, cpu_scale: bool = False) -> ml_collections.ConfigDict:
  """Fig. 4a: ``dataset`` split into 10 class tasks (``configs/split_*.py``), at the paper scale
  (2000 steps per task, ours) or at our CPU scale (1000: each task holds a tenth of the data)."""
  if cpu_scale:
    config = get_cpu_scale_config('class_split')
    config.train.steps_per_task = 1000
  else:
    config = get_paper_scale_config('class_split')
    config.train.steps_per_task = 2000
  config.data.dataset = dataset
  config.data.num_tasks = 10
  return config


def authors_code_settings(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """``config`` with the optimisers and schedule of the authors' public TF1 code (GitHub
  dtuzi123/Lifelong-Dual-GAN, ``TwinGenerative_Upsupervised_ThreeData_Measument.py``):

  * RMSProp with learning rate 2e-4 for both generators and the critic;
  * one critic update per generator update;
  * 20 epochs per task (``durations``: about 18.7k generator updates on a 60k-image first
    task, twice as many on later tasks, whose batches hold 32 real and 32 Teacher images);
  * the Student updated once per generator update, by Adam(2e-4, beta1 0.5), with 100 latent
    dimensions.

  Kept from ``config`` (where the authors' code differs; see the README): the networks (theirs:
  a generator FC -> 8x8x256 then 3x3 transposed convolutions of 256 channels with batch norm,
  a critic with batch norm, which a per-example gradient penalty rules out), z ~ N(0, I) (theirs:
  uniform in [-1, 1]), images in [-1, 1] (theirs: [0, 1] under a tanh generator), the
  per-example gradient penalty (theirs: one coefficient per batch, norm over rows only), and the
  Student's replay batch (ours: B data images plus B Teacher samples; theirs: one batch of the
  critic's mix, 32 real + 32 Teacher images).
  """
  config.optim.gan_optimizer = 'rmsprop'
  config.optim.gan_learning_rate = 2e-4
  config.gan.critic_steps = 1
  config.train.epochs_per_task = 20.0
  config.vae.update_schedule = 'with_generator'
  config.optim.student_learning_rate = 2e-4
  config.optim.student_b1 = 0.5
  config.vae.latent_dim = 100
  return config
