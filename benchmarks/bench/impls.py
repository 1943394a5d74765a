"""The implementations the benchmark times: the JAX steps of ``ltgans_jax`` and the PyTorch
reference (``benchmarks/torch_reference.py``), each holding one state, one batch and one replay
batch, with ``step(kind)`` and ``sync(kind)`` for ``measure``.

Every use of ``ltgans_jax``'s internals by the benchmark is in this file (the LT-GANs method
of ``ltgans_jax.methods.registry``, its networks, optimisers and state, and its step object
``ltgans_jax.methods.ltgans_steps.GanSteps``), so that a change of the library's internal API
is met here, in one place. The library's XLA:CPU flags module ``xla_flags`` is imported here
too; ``workers`` takes it from here.
"""

from __future__ import annotations

import time
from typing import Dict, Optional

# Before JAX starts: applies the package's XLA:CPU flags (ltgans_jax/cpu/xla_flags.py) to this
# process and to the subprocesses it starts, as every ``python -m ltgans_jax.main`` run gets them.
# Neither imports jax.
from ltgans_jax.cpu import xla_flags  # for workers too

xla_flags.apply_defaults()


def make_config(sizes: Dict, image_size: int, resample: str, batch: Optional[int] = None):
  """configs/mnist_fashion.py at the benchmark's ``sizes`` (3 channels unless ``sizes`` says),
  ``image_size`` px."""
  from configs import mnist_fashion  # pylint: disable=g-import-not-at-top
  config = mnist_fashion.get_config()
  config.data.image_size = image_size
  config.data.channels = sizes.get('channels', 3)
  config.model.resample = resample
  config.model.latent_dim = sizes['latent']
  config.model.generator_width = sizes['width']
  config.model.critic_width = sizes['width']
  config.vae.width = sizes['width']
  config.vae.latent_dim = sizes['vae_latent']
  config.train.batch_size = batch or sizes['batch']
  return config


def lt_gans(config):
  """The LT-GANs method of ``config`` (its networks, optimisers, steps), built as a run builds
  it: with the backend's convolution layers."""
  from ltgans_jax.cpu import backend  # pylint: disable=g-import-not-at-top
  from ltgans_jax.methods import registry  # pylint: disable=g-import-not-at-top
  return registry.build(config, backend.resolve(config).layers)


def component_steps(method) -> Dict:
  """The two parts of a LAKD step, jitted apart: ``adversarial(state, batch_uint8, key) ->
  state`` (the real side of eq. 3, data mixed with Teacher samples, then the critic and
  Assistant updates: ``GanSteps.assistant_against_critic``) and ``student(student_state, data,
  replay, key) -> student_state`` (``GanSteps.student_update``; data and replay [B, H, W, C]
  floats in [-1, 1]).

  Built from the library's pieces in the order ``GanSteps.lakd`` calls them; only the
  benchmark times the parts apart.
  """
  import jax  # pylint: disable=g-import-not-at-top
  from ltgans_jax import pixels  # pylint: disable=g-import-not-at-top
  from ltgans_jax.methods import ltgans_steps  # pylint: disable=g-import-not-at-top
  steps = method.gan_steps

  def adversarial(state, batch, key):
    keys, data = ltgans_steps.named_keys(key), pixels.from_uint8(batch)
    replay = steps.teacher_samples(state, keys, data.shape[0])
    real = ltgans_steps.mix_with_teacher(data, replay, keys['mix'], steps.teacher_fraction)
    return steps.assistant_against_critic(state, real, keys, True)[0]

  def student(student_state, data, replay, key):
    return steps.student_update(student_state, data, replay, ltgans_steps.named_keys(key))[0]

  return {'adversarial': jax.jit(adversarial, donate_argnums=0),
          'student': jax.jit(student, donate_argnums=0)}


class JaxImpl:
  """The JAX steps on one state (each call donates it), on one device or over a mesh."""

  def __init__(self, config, mesh=None):
    import jax  # pylint: disable=g-import-not-at-top
    import numpy as np  # pylint: disable=g-import-not-at-top
    from ltgans_jax import pixels  # pylint: disable=g-import-not-at-top
    self.jax, self.config = jax, config
    self.framework = 'jax'
    method = lt_gans(config)
    networks = method.networks
    self.components = component_steps(method)
    self.train_steps = method.train_steps()
    state = method.init_state(jax.random.key(0))
    size, b = config.data.image_size, config.train.batch_size
    batch = np.random.default_rng(0).integers(0, 256, (b, size, size, config.data.channels),
                                              dtype=np.uint8)
    replay = networks.generator.apply(
        {'params': state.teacher.params},
        jax.random.normal(jax.random.key(1), (b, config.model.latent_dim)))
    if mesh is not None:
      P, NamedSharding = jax.sharding.PartitionSpec, jax.sharding.NamedSharding
      state = jax.device_put(state, NamedSharding(mesh, P()))
      batch = jax.device_put(batch, NamedSharding(mesh, P('data')))
      replay = jax.device_put(replay, NamedSharding(mesh, P('data')))
    else:
      batch = jax.device_put(batch)
    self.state, self.batch, self.replay = state, batch, replay
    self.data = jax.jit(pixels.from_uint8)(batch)
    self.keys = list(jax.random.split(jax.random.key(2), 8))
    self.calls = 0
    self.param_counts = param_counts_of_state(state)

  def _key(self):
    self.calls += 1
    return self.keys[self.calls % len(self.keys)]

  def _args(self, kind):
    if kind == 'adversarial':
      return self.components['adversarial'], (self.state, self.batch, self._key()), {}
    if kind == 'student':
      return self.components['student'], (self.state.student, self.data, self.replay,
                                          self._key()), {}
    return self.train_steps['lakd'], (self.state, self.batch, self._key()), dict(
        update_generators=True)

  def step(self, kind):
    fn, args, kwargs = self._args(kind)
    out = fn(*args, **kwargs)
    if kind == 'adversarial':
      self.state = out
    elif kind == 'student':
      self.state = self.state.replace(student=out)
    else:
      self.state = out[0]

  def sync(self, kind):
    del kind
    self.jax.block_until_ready(self.state)

  def memory_analysis(self, kind) -> Dict[str, int]:
    """XLA's buffer assignment of the compiled step (a cache hit after the first call)."""
    fn, args, kwargs = self._args(kind)
    stats = fn.lower(*args, **kwargs).compile().memory_analysis()
    if stats is None:
      return {}
    return {k: int(getattr(stats, k)) for k in ('temp_size_in_bytes', 'argument_size_in_bytes',
                                                 'output_size_in_bytes', 'alias_size_in_bytes')
            if hasattr(stats, k)}


def param_counts_of_state(state) -> Dict[str, int]:
  import jax  # pylint: disable=g-import-not-at-top
  return {name: int(sum(x.size for x in jax.tree_util.tree_leaves(getattr(state, name).params)))
          for name in ('teacher', 'critic', 'student')}


def jax_param_counts(config) -> Dict[str, int]:
  """Parameter counts of the Flax networks for ``config``, without computing anything."""
  import jax  # pylint: disable=g-import-not-at-top
  method = lt_gans(config)
  return param_counts_of_state(jax.eval_shape(lambda: method.init_state(jax.random.key(0))))


def lifelong_state_sizes(config, tasks) -> Dict:
  """``network_state.state_bytes`` of ``config``'s lifelong state at the start and after each number of
  tasks in ``tasks`` (``begin_next_task`` applied that often), and each network's parameter
  bytes."""
  import jax  # pylint: disable=g-import-not-at-top
  from ltgans_jax.methods import network_state  # pylint: disable=g-import-not-at-top
  method = lt_gans(config)
  state = method.init_state(jax.random.key(0))
  row = {'image_size': config.data.image_size, 'start': network_state.state_bytes(state),
         'after': {},
         'params': {n: sum(x.nbytes for x in jax.tree_util.tree_leaves(getattr(state, n).params))
                    for n in ('teacher', 'assistant', 'critic', 'student')}}
  done = 0
  for count in tasks:
    while done < count:
      state = method.begin_next_task(state)
      done += 1
    row['after'][count] = network_state.state_bytes(state)
  return row


class TorchImpl:
  """The PyTorch reference steps; ``variant`` is 'eager', 'eager_cl' (channels_last),
  'eager_1t' (eager with one thread: the cost of OpenMP barriers when another process holds a
  core) or 'compile' (torch.compile of what compiles; first tries the critic loss with its
  gradient penalty, which fails on the double backward)."""

  def __init__(self, config, variant: str, device: str, try_full_compile: bool):
    import torch  # pylint: disable=g-import-not-at-top
    from benchmarks import torch_reference  # pylint: disable=g-import-not-at-top
    self.torch, self.framework, self.variant = torch, 'torch', variant
    self.device = torch.device(device)
    compile_mode = None
    if variant == 'compile':
      torch._dynamo.reset()  # pylint: disable=protected-access
      compile_mode = 'full' if try_full_compile else 'partial'
    size, b = config.data.image_size, config.train.batch_size
    self.model = torch_reference.TorchLAKD(
        image_size=size, channels=3, latent_dim=config.model.latent_dim,
        generator_width=config.model.generator_width, critic_width=config.model.critic_width,
        vae_width=config.vae.width, vae_latent_dim=config.vae.latent_dim,
        resample=config.model.resample, penalty_weight=config.gan.gradient_penalty_weight,
        teacher_fraction=config.gan.teacher_fraction, beta=config.vae.beta,
        likelihood=config.vae.likelihood, decoder_std=config.vae.decoder_std,
        gan_learning_rate=config.optim.gan_learning_rate,
        gan_betas=(config.optim.gan_b1, config.optim.gan_b2),
        student_learning_rate=config.optim.student_learning_rate, device=device,
        channels_last=variant == 'eager_cl', compile=compile_mode)
    gen = torch.Generator().manual_seed(0)
    batch = torch.randint(0, 256, (b, 3, size, size), dtype=torch.uint8, generator=gen)
    self.batch = batch.to(self.device)
    if variant == 'eager_cl':
      self.batch = self.batch.contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
      self.data = self.model.images_from_uint8(self.batch)
      self.replay = self.model.teacher(torch.randn(b, config.model.latent_dim,
                                                   device=self.device)).contiguous(
                                                       memory_format=self.model.memory_format)
    self.failed_compile_s = None
    self.param_counts = {
        'teacher': torch_reference.num_params(self.model.teacher),
        'critic': torch_reference.num_params(self.model.critic),
        'student': torch_reference.num_params(self.model.student)}

  def step(self, kind):
    if self.variant == 'eager_1t':
      threads = self.torch.get_num_threads()
      self.torch.set_num_threads(1)
      try:
        return self._step(kind)
      finally:
        self.torch.set_num_threads(threads)
    return self._step(kind)

  def _step(self, kind):
    m = self.model
    if kind == 'adversarial':
      if self.variant == 'compile' and 'critic loss with gradient penalty' in m.compiled:
        start = time.perf_counter()
        try:
          m.adversarial_step(self.batch)
          return
        except Exception as e:  # pylint: disable=broad-except
          self.failed_compile_s = time.perf_counter() - start
          m.fallback_to_partial(e)
          print(f'    torch.compile of the critic loss with its gradient penalty failed after '
                f'{self.failed_compile_s:.1f}s: {m.compile_errors}; keeping it eager',
                flush=True)
      m.adversarial_step(self.batch)
    elif kind == 'student':
      m.student_step(self.data, self.replay)
    else:
      m.full_step(self.batch)

  def sync(self, kind):
    del kind
    if self.device.type == 'cuda':
      self.torch.cuda.synchronize()
