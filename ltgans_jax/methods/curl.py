"""CURL: Continual Unsupervised Representation Learning (Rao, Visin, Rusu, Teh, Pascanu and
Hadsell, NeurIPS 2019; arXiv:1910.14481), the paper's baseline [5], as ``config.method='curl'``.

The model (``CurlVAE``): a categorical latent y over ``curl.max_components`` mixture components,
of which ``active`` are in use; q(y|x) = softmax over the active components' logits;
q(z|x, y=k) a Gaussian from component k's head on a shared encoder; a learnt Gaussian prior
p(z|y=k) per component; one decoder p(x|z); p(y) uniform over the active components. The loss
is the negative ELBO with the expectation over y computed exactly (every active component is
decoded):

  sum_k q(k|x) [ -log p(x|z_k) + beta * KL(q(z|x,k) || p(z|k)) ] + KL(q(y|x) || U(active)).

Dynamic expansion: while fewer than ``max_components`` are active and at least
``curl.min_steps_between_expansions`` steps have passed since the start or the last expansion,
an image of a training batch whose squared error + KL (the paper's NLOG, ``nll_paper``) is
above ``curl.expansion_threshold`` goes into a fixed-size buffer (``curl.buffer_size``). When
it is full a new component is added, initialised as a copy of the component to which the
buffer's images are most assigned (summed q(y|x)), and then only the new component's
parameters are trained: its column of the q(y|x) logit layer (kernel column and bias entry),
its q(z|x,y) head (its 2L output units) and its prior p(z|y) (``component_mask``), for
``curl.expansion_steps`` Adam steps on the whole buffer with y fixed to it (loss
-log p(x|z) + beta KL(q(z|x,y) || p(z|y)) - log q(y|x)). Every other parameter, and its Adam
moments, comes out bit for bit (the shared Adam step count advances, as TF1's shared beta powers
do); the buffer is then emptied.

Mixture generative replay: ``usage`` sums q(y|x) per component over every real training image
(computed before that step's update). At each task boundary a frozen snapshot of the model and
of ``usage`` is taken; afterwards every step adds a batch of the snapshot's samples: y drawn
with probability proportional to the snapshot's usage over its active components
(``replay_components``), z ~ p(z|y), x its decoder's mean image, trained with the same
unsupervised loss. Samples for evaluation (``sample``, FID) use the model's own p(y), uniform
over the active components, as the original's ``Curl.sample`` does.

Values taken from the authors' code (github.com/deepmind/deepmind-research/tree/master/curl,
``training.py`` ``run_training`` and ``train_main.py``):
* ``curl.expansion_steps = 10``: ``num_buffer_train_steps = 10`` passes over the buffer; with
  its MNIST batch size of 100 and ``exp_buffer_size = 100`` a pass is one step, as one step on
  the whole buffer is here.
* ``curl.buffer_size = 100``: ``exp_buffer_size = 100``.
* ``curl.min_steps_between_expansions = 100``: ``exp_wait_steps = 100`` after an expansion and
  ``exp_burn_in = 100`` at the start.
* Usage counts: ``recent_component_counts += sum(train_probs)`` (q(y|x), summed over each real
  batch), moved into ``cumulative_component_counts`` at each snapshot; ``get_generated_data``
  draws y with probability ``cumulative_component_counts / sum``.
* The copy source (argmax of q(y|x) summed over the buffer), the expansion loss
  (``elbo_supervised``, y = the new component), the shared Adam optimiser, KL(q(y|x) || U),
  the exact expectation over the active components, n_z = 32 (``vae.latent_dim``) and the
  learning rate 1e-3 (``optim.student_learning_rate``).
Ours (no counterpart there): ``curl.expansion_threshold = 80`` (a squared error + KL, see
below) and ``curl.max_components = 12`` (the original's ``n_y = 30``).

Where this differs from the authors' code:
* Networks: the encoder trunk and the decoder are the LT-GANs Student's convolutional networks
  (``models.ConvTrunk`` and ``models.Generator``, same width and latent size), so the
  comparison matches capacity; the original's are MLPs (shared encoder 1200-600-300-150 ReLU,
  one linear q(z|x,y) head per component on it, decoder 500-500 to 784 Bernoulli logits).
* Variances: log-variances here; the original's heads and prior give a variance through a
  softplus.
* The prior p(z|y): free per-component mean and log-variance rows, initialised to N(0, I); the
  original's are two linear layers on one-hot y, i.e. per-component rows plus a bias shared by
  every component, the rows initialised at random (so the components' priors differ at init).
* Data and likelihood: ``vae.likelihood`` on grey-level images; the original binarises MNIST at
  0.5 and uses a Bernoulli likelihood.
* The poorly-explained test: squared error + KL above ``expansion_threshold``, so one threshold
  serves both likelihoods; the original's is ELBO = log p(x|z) - KL_y - KL_z below
  ``ll_thresh = -200`` nats.
* Buffer overflow: here the buffer keeps the first ``buffer_size`` poor images and drops the
  rest of the batch that fills it; the original appends every poor image of that batch, keeps
  the latest multiple of its batch size and trains on them batch by batch.
* What expansion trains: the original's ``train_step_expansion`` has ``var_list`` = the whole
  q(y|x) output layer, every component's q(z|x,y) head and the whole prior layers, so the
  softmax gradient also moves the other active components' logit columns, the shared prior
  bias moves every component's prior, and Adam momentum moves the other heads (zero gradient);
  here only the new component's parameters change and the others' Adam moments are kept.
* Replay schedule: here every step adds a replay batch as large as the real one and sums the
  losses; the original, from the second data period on, replaces every second real batch
  (``gen_every_n = 2``) by a batch pre-generated at the snapshot (at most 5000 batches). Usage is
  counted on real batches only in both; the steps between expansions count real batches in both
  (every step has one here).
* Replayed images are the decoder's mean images; the original thresholds them at 0.5
  (``binarize_fn``) for MNIST and Omniglot.
* Inactive components are never replayed here (before any usage, y is uniform over the active
  ones); the original floors every count at 1e-12, over all ``n_y`` components.
* The snapshot is refreshed at task boundaries: the original's default ``gen_replay_type =
  'fixed'`` (refresh period = steps per class, the same thing when a task is a class); its
  'dynamic' mode (refresh at each expansion) and supervised replay (SMGR) are not implemented.
* Batch size and length: ``train.batch_size`` and ``train.steps_per_task`` (the original: 100
  per batch, 100000 steps over the 10 MNIST classes).
* Components live in fixed-size arrays (``max_components``) of which the first ``active`` are
  used, so the state's size never changes; the step is compiled once per number of active
  components (at most ``max_components`` times), so its cost grows with the components in use
  as the original's does.

Implementation notes: the trunk being frozen during expansion, its features of the buffer are
computed once, and each step differentiates only the component parameters through the new
component's decoding alone: no convolution weight gradient inside the expansion's
``lax.fori_loop`` (XLA:CPU runs those far slower in a loop); a Python-unrolled loop ran as fast
but compiled slower. ``train_steps`` and the training loop read ``int(state.active)`` on the
host at every call to pick the compilation: a device-to-host sync that waits for the previous
call (no asynchronous dispatch across steps). ``active`` can grow at any step (an expansion),
so it cannot be read once per task; keeping it on the device would mean computing every one of
``max_components`` components at every step.

State: ``CurlState``, the same size for every task.
"""

from __future__ import annotations

import functools
import math
from typing import Any, Dict

import flax.linen as nn
import flax.struct
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from ltgans_jax import losses, models, pixels, rng
from ltgans_jax.methods import base
from ltgans_jax.methods.network_state import (NetworkState, apply_gradients, copy_tree,
                                              student_optimizer)

# The parameters holding one slice per component; the trunk and the decoder are shared.
COMPONENT_PARAMS = ('cluster_head', 'latent_head', 'prior_mean', 'prior_log_var')


class CurlVAE(nn.Module):
  """Mixture-of-Gaussians-prior VAE over ``max_components`` components.

  ``encode``: images [B, S, S, C] in [-1, 1] -> (y_logits [B, K], mean [B, K, L],
  log_var [B, K, L]), the composition of ``features`` (the shared trunk, -> [B, D]) and
  ``heads``; ``decode``: z [N, L] -> logits [N, S, S, C]; ``prior`` -> (mean [K, L],
  log_var [K, L]).
  """
  image_size: int
  channels: int
  width: int
  latent_dim: int
  max_components: int
  resample: str = 'pixel_shuffle'
  conv: models.ModuleDef = nn.Conv
  conv_transpose: models.ModuleDef = nn.ConvTranspose

  def setup(self):
    self.trunk = models.ConvTrunk(self.image_size, self.width, self.resample, conv=self.conv)
    self.cluster_head = nn.Dense(self.max_components)
    self.latent_head = nn.Dense(self.max_components * 2 * self.latent_dim)
    self.decoder = models.Generator(self.image_size, self.channels, self.width, self.resample,
                                    output='logits', conv=self.conv,
                                    conv_transpose=self.conv_transpose)
    shape = (self.max_components, self.latent_dim)
    self.prior_mean = self.param('prior_mean', nn.initializers.zeros, shape)
    self.prior_log_var = self.param('prior_log_var', nn.initializers.zeros, shape)

  def __call__(self, x):
    y_logits, mean, _ = self.encode(x)
    return y_logits, self.decode(mean[:, 0])

  def features(self, x):
    return self.trunk(x)

  def heads(self, h):
    heads = self.latent_head(h).reshape(h.shape[0], self.max_components, 2 * self.latent_dim)
    mean, log_var = jnp.split(heads, 2, axis=-1)
    return self.cluster_head(h), mean, log_var

  def encode(self, x):
    return self.heads(self.features(x))

  def decode(self, z):
    return self.decoder(z)

  def prior(self):
    return self.prior_mean, self.prior_log_var


class CurlState(flax.struct.PyTreeNode):
  model: NetworkState
  replay_params: Any           # snapshot of model.params taken at the last task boundary
  replay_active: jnp.ndarray   # int32, active components of the snapshot (0: no replay yet)
  active: jnp.ndarray          # int32, components in use (1 at the start)
  buffer: jnp.ndarray          # uint8 [buffer_size, H, W, C], poorly explained images
  buffer_count: jnp.ndarray    # int32, filled rows of ``buffer``
  steps_since_expansion: jnp.ndarray  # int32
  task: jnp.ndarray            # int32 scalar, 0-based
  task_step: jnp.ndarray       # int32 scalar
  usage: jnp.ndarray           # float32 [max_components], q(y|x) summed over training images
  replay_usage: jnp.ndarray    # float32 [max_components], ``usage`` at the last task boundary


def copy_component(params: Dict, source, target, latent_dim: int) -> Dict:
  """``params`` with component ``target``'s cluster logit, latent head and prior set to
  ``source``'s (the encoder trunk and decoder are shared)."""
  params = dict(params)
  cluster = dict(params['cluster_head'])
  cluster['kernel'] = cluster['kernel'].at[:, target].set(cluster['kernel'][:, source])
  cluster['bias'] = cluster['bias'].at[target].set(cluster['bias'][source])
  latent = dict(params['latent_head'])
  kernel = latent['kernel'].reshape(latent['kernel'].shape[0], -1, 2 * latent_dim)
  bias = latent['bias'].reshape(-1, 2 * latent_dim)
  latent['kernel'] = kernel.at[:, target].set(kernel[:, source]).reshape(
      latent['kernel'].shape)
  latent['bias'] = bias.at[target].set(bias[source]).reshape(latent['bias'].shape)
  params['cluster_head'], params['latent_head'] = cluster, latent
  for name in ('prior_mean', 'prior_log_var'):
    params[name] = params[name].at[target].set(params[name][source])
  return params


def component_mask(params: Dict, component, latent_dim: int) -> Dict:
  """A bool pytree shaped like ``params``: True exactly on component ``component``'s own
  parameters (the ones ``copy_component`` copies): its cluster logit column (kernel column and
  bias entry), its latent head's 2 * latent_dim output units, its prior mean and log-variance
  rows; False on the trunk, the decoder and every other component."""
  mask = dict(jax.tree_util.tree_map(lambda p: jnp.zeros(jnp.shape(p), bool), params))
  num = params['prior_mean'].shape[0]
  is_component = jnp.arange(num) == component                  # [K]
  units = jnp.repeat(is_component, 2 * latent_dim)              # [K * 2L], the head's layout
  cluster, latent = params['cluster_head'], params['latent_head']
  mask['cluster_head'] = {
      'kernel': jnp.broadcast_to(is_component[None], cluster['kernel'].shape),
      'bias': is_component}
  mask['latent_head'] = {
      'kernel': jnp.broadcast_to(units[None], latent['kernel'].shape), 'bias': units}
  for name in ('prior_mean', 'prior_log_var'):
    mask[name] = jnp.broadcast_to(is_component[:, None], params[name].shape)
  return mask


def masked_apply_gradients(network: NetworkState, grads, mask,
                           optimizer: optax.GradientTransformation) -> NetworkState:
  """``network_state.apply_gradients`` on the elements where ``mask`` (a bool pytree like the
  params)
  only: elsewhere the parameters and their optimiser moments come back bit for bit, while the
  optimiser state not tied to parameters (Adam's step count) advances."""
  where = lambda m, new, old: jnp.where(m, new, old)
  grads = jax.tree_util.tree_map(lambda g, m: jnp.where(m, g, jnp.zeros_like(g)), grads, mask)
  updates, opt_state = optimizer.update(grads, network.opt_state, network.params)
  params = jax.tree_util.tree_map(where, mask, optax.apply_updates(network.params, updates),
                                  network.params)
  state_mask = optax.tree_utils.tree_map_params(
      optimizer, lambda _, m: m, opt_state, mask,
      transform_non_params=lambda x: jnp.ones(jnp.shape(x), bool))
  opt_state = jax.tree_util.tree_map(where, state_mask, opt_state, network.opt_state)
  return NetworkState(params=params, opt_state=opt_state)


def add_to_buffer(buffer, count, images, is_poor):
  """Appends the rows of ``images`` [B, H, W, C] where ``is_poor`` [B] to ``buffer``
  [S, H, W, C] after its ``count`` filled rows, dropping what does not fit; -> (buffer, count)."""
  positions = count + jnp.cumsum(is_poor) - 1
  positions = jnp.where(is_poor, positions, buffer.shape[0])  # out of range: dropped
  buffer = buffer.at[positions].set(images, mode='drop')
  return buffer, jnp.minimum(count + jnp.sum(is_poor), buffer.shape[0]).astype(count.dtype)


def replay_components(key, usage, active, num: int):
  """[num] int32 components drawn with probability proportional to ``usage`` [K] over the
  first ``active`` (at least one); uniform over them while their usage sums to zero. The
  others are never drawn."""
  valid = jnp.arange(usage.shape[0]) < jnp.maximum(active, 1)
  weights = jnp.where(valid, jnp.maximum(usage, 0.0), 0.0)
  weights = jnp.where(jnp.sum(weights) > 0, weights, valid.astype(weights.dtype))
  return jax.random.categorical(key, jnp.log(weights), shape=(num,)).astype(jnp.int32)


def _normal_log_density(x, mean, log_var):
  """log N(x; mean, exp(log_var)) summed over the last axis."""
  return -0.5 * jnp.sum(jnp.square(x - mean) * jnp.exp(-log_var) + log_var
                        + math.log(2 * math.pi), axis=-1)


class CurlMethod(base.LifelongMethod):
  """See the module docstring."""

  fid_samples = ('student',
                 'the mixture model (y uniform over the active components, z ~ p(z|y))')

  def __init__(self, config: ml_collections.ConfigDict, name: str = 'curl',
               layers: models.Layers = models.Layers()):
    self.config, self.name = config, name
    data, vae, curl = config.data, config.vae, config.curl
    self.model = CurlVAE(data.image_size, data.channels, vae.width, vae.latent_dim,
                         curl.max_components, config.model.resample,
                         conv=layers.conv, conv_transpose=layers.conv_transpose)
    self.num_components, self.latent_dim = curl.max_components, vae.latent_dim
    self.optimizer = student_optimizer(config)

  # State ------------------------------------------------------------------------------------
  def init_state(self, key):
    size, channels = self.config.data.image_size, self.config.data.channels
    params = self.model.init(key, jnp.zeros((1, size, size, channels)))['params']
    zero = lambda: jnp.zeros((), jnp.int32)  # separate buffers (the state is donated)
    return CurlState(
        model=NetworkState(params, self.optimizer.init(params)), replay_params=copy_tree(params),
        replay_active=zero(), active=jnp.ones((), jnp.int32),
        buffer=jnp.zeros((self.config.curl.buffer_size, size, size, channels), jnp.uint8),
        buffer_count=zero(), steps_since_expansion=zero(), task=zero(), task_step=zero(),
        usage=jnp.zeros((self.num_components,), jnp.float32),
        replay_usage=jnp.zeros((self.num_components,), jnp.float32))

  def phase(self, task):
    return 'first' if task == 0 else 'replay'

  def begin_next_task(self, state):
    return state.replace(replay_params=copy_tree(state.model.params), replay_active=state.active,
                         replay_usage=jnp.copy(state.usage), task=state.task + 1,
                         task_step=jnp.zeros_like(state.task_step))

  # The model's terms ------------------------------------------------------------------------
  def _terms(self, params, images, num_active: int, key):
    """Per-image loss terms of images [B, H, W, C] in [-1, 1] under the first ``num_active``
    (static) components, every one of them decoded.

    Returns a dict of [B] arrays: 'loss' (negative beta-ELBO), 'paper' (squared error + KL, the
    NLOG), and [B, num_active] 'log_q_y', 'recon', 'kl_z'.
    """
    vae, n = self.config.vae, num_active
    y_logits, mean, log_var = self.model.apply({'params': params}, images, method='encode')
    y_logits, mean, log_var = y_logits[:, :n], mean[:, :n], log_var[:, :n]
    log_q_y = jax.nn.log_softmax(y_logits, axis=-1)
    q_y = jnp.exp(log_q_y)
    z = mean + jnp.exp(0.5 * log_var) * jax.random.normal(key, mean.shape)  # [B, n, L]
    num = z.shape[0]
    logits = self.model.apply({'params': params}, z.reshape(num * n, -1), method='decode')
    targets = jnp.repeat(pixels.to_unit_interval(images), n, axis=0)
    recon = losses.reconstruction_nll(logits, targets, vae.likelihood,
                                      vae.decoder_std).reshape(num, n)
    squared_error = jnp.sum(jnp.square(jax.nn.sigmoid(logits) - targets),
                            axis=(1, 2, 3)).reshape(num, n)
    prior_mean, prior_log_var = self.model.apply({'params': params}, method='prior')
    kl_z = losses.gaussian_kl_between(mean, log_var, prior_mean[:n], prior_log_var[:n])
    kl_y = jnp.sum(q_y * (log_q_y + math.log(n)), axis=-1)  # KL(q(y|x) || uniform over n)
    expect = lambda value: jnp.sum(q_y * value, axis=-1)
    return {'loss': expect(recon + vae.beta * kl_z) + kl_y,
            'paper': expect(squared_error + kl_z) + kl_y,
            'log_q_y': log_q_y, 'recon': recon, 'kl_z': kl_z}

  @functools.partial(jax.jit, static_argnums=(0, 4))
  def _generate(self, params, active, key, num, components=None):
    """[num, H, W, C] mean images in [-1, 1]: y uniform over ``active`` (or ``components``
    [num]), z ~ p(z|y)."""
    key_y, key_z = jax.random.split(key)
    y = (jax.random.randint(key_y, (num,), 0, jnp.maximum(active, 1))
         if components is None else components)
    prior_mean, prior_log_var = self.model.apply({'params': params}, method='prior')
    z = prior_mean[y] + jnp.exp(0.5 * prior_log_var[y]) * jax.random.normal(
        key_z, (num, self.latent_dim))
    logits = self.model.apply({'params': params}, z, method='decode')
    return pixels.from_logits(logits)

  # Training ---------------------------------------------------------------------------------
  @property
  def plan(self):
    # No donation: XLA may return one buffer for equal scalar outputs (the counters an
    # expansion resets), which could then not be donated twice; the state is small. Not
    # vmappable: the number of active components is static (one compilation per count), read
    # on the host before every fused call (see the module docstring), and may differ between
    # seeds.
    return base.StepPlan(step=self.step_function, variant=lambda task, _: self.phase(task),
                         static_args=self.static_step_args, vmappable=False,
                         donate_state=False)

  def static_step_args(self, state):
    return tuple(int(active) for active in np.asarray(state.active).reshape(-1))

  def step_function(self, variant, static=None):
    return functools.partial(self._step, replay=variant == 'replay',
                             num_active=1 if static is None else static)

  def train_steps(self):
    """Each phase jitted alone, reading ``state.active`` on the host at every call."""
    def host_step(phase):
      jitted = jax.jit(lambda state, batch, key, num_active:
                       self.step_function(phase, num_active)(state, batch, key),
                       static_argnames='num_active')

      def step(state, batch, key):
        return jitted(state, batch, key, num_active=int(state.active))
      return step
    return {'first': host_step('first'), 'replay': host_step('replay')}

  def _step(self, state: CurlState, batch, key, *, replay: bool, num_active: int):
    """One update on a batch [B, H, W, C] uint8 (plus as many replayed samples when
    ``replay``), then the usage counts, the buffer and, when it is full, an expansion.
    ``num_active`` equals ``state.active``."""
    curl = self.config.curl
    key_data, key_replay, key_generate, key_expand, key_y = jax.random.split(key, 5)
    data = pixels.from_uint8(batch)
    replayed = None
    if replay:
      components = replay_components(key_y, state.replay_usage, state.replay_active,
                                     data.shape[0])
      replayed = jax.lax.stop_gradient(self._generate(
          state.replay_params, state.replay_active, key_generate, data.shape[0], components))

    def loss_fn(params):
      terms = self._terms(params, data, num_active, key_data)
      metrics = {'student/loss_data': jnp.mean(terms['loss'])}
      loss = metrics['student/loss_data']
      if replay:
        metrics['student/loss_replay'] = jnp.mean(
            self._terms(params, replayed, num_active, key_replay)['loss'])
        loss = loss + metrics['student/loss_replay']
      used = jnp.sum(jnp.exp(terms['log_q_y']), axis=0)  # [num_active], q(y|x) on real images
      return loss, (metrics, terms['paper'], used)

    (_, (metrics, paper, used)), grads = jax.value_and_grad(loss_fn, has_aux=True)(
        state.model.params)
    model = apply_gradients(state.model, grads, self.optimizer)
    usage = state.usage.at[:num_active].add(used)
    warmed_up = state.steps_since_expansion >= curl.min_steps_between_expansions
    active, since = state.active, state.steps_since_expansion + 1
    expand = jnp.zeros((), bool)
    if num_active < self.num_components:
      is_poor = (paper > curl.expansion_threshold) & warmed_up
    else:  # at the cap nothing enters the buffer (the original's "eligible" test)
      is_poor = jnp.zeros(paper.shape, bool)
    buffer, count = add_to_buffer(state.buffer, state.buffer_count, batch, is_poor)
    if num_active < self.num_components:
      expand = (count >= buffer.shape[0]) & warmed_up
      model, active, count, since = jax.lax.cond(
          expand, functools.partial(self._expand, num_active=num_active, key=key_expand),
          lambda model, buffer, count, since: (model, state.active, count, since),
          model, buffer, count, since)
    metrics.update({'curl/active_components': active, 'curl/buffer_count': count,
                    'curl/expanded': expand.astype(jnp.int32),
                    'curl/poorly_explained_fraction': jnp.mean(is_poor.astype(jnp.float32))})
    return state.replace(model=model, active=active, buffer=buffer, buffer_count=count,
                         steps_since_expansion=since, task_step=state.task_step + 1,
                         usage=usage), metrics

  def _expand(self, model: NetworkState, buffer, count, since, *, num_active: int, key):
    """Adds component ``num_active`` as a copy of the one the buffer uses most, trains only its
    parameters (``component_mask``) for ``curl.expansion_steps`` steps on the buffer with y
    fixed to it, and empties the buffer; -> (model, active, 0, 0)."""
    del count, since
    vae, new = self.config.vae, num_active
    images = pixels.from_uint8(buffer)
    targets = pixels.to_unit_interval(images)
    # The trunk is frozen during expansion: its features of the buffer are computed once.
    features = self.model.apply({'params': model.params}, images, method='features')
    y_logits, _, _ = self.model.apply({'params': model.params}, features, method='heads')
    usage = jnp.sum(jax.nn.softmax(y_logits[:, :num_active], axis=-1), axis=0)
    model = model.replace(params=copy_component(model.params, jnp.argmax(usage), new,
                                                self.latent_dim))
    mask = component_mask(model.params, new, self.latent_dim)

    def loss_fn(component_params, params, step_key):
      """Mean over the buffer of -log p(x|z) + beta KL(q(z|x,new) || p(z|new)) - log q(new|x),
      z ~ q(z|x,new); differentiated with respect to the component parameters only."""
      params = dict(params, **component_params)
      y_logits, mean, log_var = self.model.apply({'params': params}, features, method='heads')
      log_q_y = jax.nn.log_softmax(y_logits[:, :new + 1], axis=-1)[:, new]
      mean, log_var = mean[:, new], log_var[:, new]
      z = mean + jnp.exp(0.5 * log_var) * jax.random.normal(step_key, mean.shape)
      logits = self.model.apply({'params': params}, z, method='decode')
      recon = losses.reconstruction_nll(logits, targets, vae.likelihood, vae.decoder_std)
      kl_z = losses.gaussian_kl_between(mean, log_var, params['prior_mean'][new],
                                        params['prior_log_var'][new])
      return jnp.mean(recon + vae.beta * kl_z - log_q_y)

    def train_on_buffer(i, model):
      # Only the component parameters are differentiated: no convolution weight gradient in
      # the loop (see the module docstring).
      component_grads = jax.grad(loss_fn)(
          {name: model.params[name] for name in COMPONENT_PARAMS}, model.params,
          jax.random.fold_in(key, i))
      grads = dict(jax.tree_util.tree_map(jnp.zeros_like, model.params), **component_grads)
      return masked_apply_gradients(model, grads, mask, self.optimizer)

    model = jax.lax.fori_loop(0, self.config.curl.expansion_steps, train_on_buffer, model)
    return (model, jnp.asarray(new + 1, jnp.int32), jnp.zeros((), jnp.int32),
            jnp.zeros((), jnp.int32))

  # Evaluation -------------------------------------------------------------------------------
  def sample(self, state, network, key, num):
    return self._generate(state.model.params, state.active, key, num)

  def picture_grids(self, state, num):
    rows = int(round(math.sqrt(num)))
    components = (jnp.arange(num) // rows) % state.active  # one row per component
    return {'mixture_samples_row_per_component': self._generate(
        state.model.params, state.active,
        rng.stream_key(self.config.seed, rng.STUDENT_GRID_LATENTS), num, components)}

  def vae_view(self, state):
    """The encoder of each image's most probable active component, and the decoder."""
    params = state.model.params
    return base.VAEView(encode=functools.partial(self._encode_best, params, int(state.active)),
                        decode=functools.partial(self._decode, params))

  @functools.partial(jax.jit, static_argnums=(0, 2))
  def _encode_best(self, params, num_active, images):
    """images [N, H, W, C] -> (mean [N, L], log_var [N, L]) of each image's most probable
    component among the first ``num_active``."""
    y_logits, mean, log_var = self.model.apply({'params': params}, images, method='encode')
    best = jnp.argmax(y_logits[:, :num_active], axis=-1)[:, None, None]
    return (jnp.take_along_axis(mean, best, axis=1)[:, 0],
            jnp.take_along_axis(log_var, best, axis=1)[:, 0])

  @functools.partial(jax.jit, static_argnums=0)
  def _decode(self, params, z):
    """latents [N, L] -> logits [N, H, W, C]."""
    return self.model.apply({'params': params}, z, method='decode')

  @functools.partial(jax.jit, static_argnums=(0, 2))
  def _paper_batch(self, params, num_active, batch_uint8, key):
    return self._terms(params, pixels.from_uint8(batch_uint8), num_active, key)['paper']

  def nll_paper(self, state, images, key, batch_size: int = 250):
    total = 0.0
    for i, start in enumerate(range(0, len(images), batch_size)):
      total += float(jnp.sum(self._paper_batch(state.model.params, int(state.active),
                                               images[start:start + batch_size],
                                               jax.random.fold_in(key, i))))
    return total / len(images)

  @functools.partial(jax.jit, static_argnums=(0, 2, 5))
  def _log_weights(self, params, num_active, batch_uint8, key, num_samples):
    """[num_samples, B] log p(x|z) p(z|y) p(y) / (q(y|x) q(z|x,y)), (y, z) ~ q(y|x) q(z|x,y)."""
    vae = self.config.vae
    images = pixels.from_uint8(batch_uint8)
    y_logits, mean, log_var = self.model.apply({'params': params}, images, method='encode')
    log_q_y = jax.nn.log_softmax(y_logits[:, :num_active], axis=-1)  # [B, n]
    key_y, key_z = jax.random.split(key)
    y = jax.random.categorical(key_y, log_q_y, shape=(num_samples, images.shape[0]))
    pick = lambda a: jnp.take_along_axis(a[None], y[..., None, None], axis=2)[:, :, 0]
    mean_y, log_var_y = pick(mean), pick(log_var)  # [S, B, L]
    z = mean_y + jnp.exp(0.5 * log_var_y) * jax.random.normal(key_z, mean_y.shape)
    logits = self.model.apply({'params': params}, z.reshape(-1, z.shape[-1]), method='decode')
    targets = jnp.broadcast_to(pixels.to_unit_interval(images)[None],
                               (num_samples,) + images.shape).reshape(logits.shape)
    log_likelihood = -losses.reconstruction_nll(logits, targets, vae.likelihood,
                                                vae.decoder_std).reshape(y.shape)
    prior_mean, prior_log_var = self.model.apply({'params': params}, method='prior')
    log_prior = (_normal_log_density(z, prior_mean[y], prior_log_var[y])
                 - math.log(num_active))
    log_proposal = (jnp.take_along_axis(log_q_y[None], y[..., None], axis=2)[..., 0]
                    + _normal_log_density(z, mean_y, log_var_y))
    return log_likelihood + log_prior - log_proposal

  def nll_iwae(self, state, images, key, num_samples, batch_size: int = 250,
               chunk_size: int = 25):
    """k-sample importance-weighted -log p(x) with proposal q(y|x) q(z|x,y), nats per image."""
    chunk = min(chunk_size, num_samples)
    per_image = []
    for i, start in enumerate(range(0, len(images), batch_size)):
      batch = np.asarray(images[start:start + batch_size])
      log_w = [np.asarray(self._log_weights(state.model.params, int(state.active), batch,
                                            jax.random.fold_in(jax.random.fold_in(key, i), c),
                                            chunk), np.float64)
               for c in range(-(-num_samples // chunk))]
      log_w = np.concatenate(log_w)[:num_samples]
      per_image.append(np.logaddexp.reduce(log_w, axis=0) - math.log(num_samples))
    return float(-np.concatenate(per_image).mean())
