"""CURL: Continual Unsupervised Representation Learning (Rao, Visin, Rusu, Teh, Pascanu and
Hadsell, NeurIPS 2019; arXiv:1910.14481), the paper's baseline [5], as ``config.method='curl'``.

The model (``CurlVAE``): a categorical latent y over ``curl.max_components`` mixture components,
of which ``active`` are in use; q(y|x) = softmax over the active components' logits;
q(z|x, y=k) a Gaussian from component k's head on a shared encoder; a learnt Gaussian prior
p(z|y=k) per component; one decoder p(x|z). The loss is the negative ELBO with the expectation
over y computed exactly (every active component is decoded):

  sum_k q(k|x) [ -log p(x|z_k) + beta * KL(q(z|x,k) || p(z|k)) ] + KL(q(y|x) || U(active)).

Dynamic expansion: a data image whose squared error + KL (the paper's NLOG, ``nll_paper``) is
above ``curl.expansion_threshold`` goes into a fixed-size buffer; when the buffer is full a new
component is added, initialised as a copy of the component to which the buffer's images are
most assigned (summed q(y|x)), and trained for ``curl.expansion_steps`` steps on the buffer with
y fixed to it; the buffer is then emptied. Mixture generative replay: at each task boundary a
frozen snapshot of the model is taken; afterwards every step adds a batch of its samples
(y uniform over the snapshot's active components, z ~ p(z|y), x its decoder's mean image),
trained with the same unsupervised loss.

Where this differs from the authors' code (github.com/deepmind/deepmind-research/tree/master/curl):
* The encoder and decoder are the LT-GANs Student's convolutional networks (``models.ConvTrunk``
  and ``models.Generator``, same width and latent size), not the original MLPs, so the
  comparison matches capacity; the likelihood is ``vae.likelihood`` (Bernoulli in the original).
* The snapshot for replay is refreshed at task boundaries, not every fixed number of steps
  (the two coincide when tasks are as long as the refresh period), and replayed images are
  means, not Bernoulli draws.
* The poorly-explained test uses the squared error + KL, not the log-likelihood, so one
  threshold serves both likelihoods; no image enters the buffer, and no component is added,
  until ``curl.min_steps_between_expansions`` steps after the start or the last expansion.
* Components live in fixed-size arrays (``max_components``) of which the first ``active`` are
  used, so the state's size never changes; the step is compiled once per number of active
  components (at most ``max_components`` times), so its cost grows with the components in use
  as the original's does.

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

from ltgans_jax import losses, methods, models, rng, steps
from ltgans_jax.state import NetworkState, copy_tree


class CurlVAE(nn.Module):
  """Mixture-of-Gaussians-prior VAE over ``max_components`` components.

  ``encode``: images [B, S, S, C] in [-1, 1] -> (y_logits [B, K], mean [B, K, L],
  log_var [B, K, L]); ``decode``: z [N, L] -> logits [N, S, S, C]; ``prior`` -> (mean [K, L],
  log_var [K, L]).
  """
  image_size: int
  channels: int
  width: int
  latent_dim: int
  max_components: int
  resample: str = 'pixel_shuffle'
  conv_gradients: str = 'auto'

  def setup(self):
    self.trunk = models.ConvTrunk(self.image_size, self.width, self.resample,
                                  self.conv_gradients)
    self.cluster_head = nn.Dense(self.max_components)
    self.latent_head = nn.Dense(self.max_components * 2 * self.latent_dim)
    self.decoder = models.Generator(self.image_size, self.channels, self.width, self.resample,
                                    output='logits', conv_gradients=self.conv_gradients)
    shape = (self.max_components, self.latent_dim)
    self.prior_mean = self.param('prior_mean', nn.initializers.zeros, shape)
    self.prior_log_var = self.param('prior_log_var', nn.initializers.zeros, shape)

  def __call__(self, x):
    y_logits, mean, _ = self.encode(x)
    return y_logits, self.decode(mean[:, 0])

  def encode(self, x):
    h = self.trunk(x)
    heads = self.latent_head(h).reshape(h.shape[0], self.max_components, 2 * self.latent_dim)
    mean, log_var = jnp.split(heads, 2, axis=-1)
    return self.cluster_head(h), mean, log_var

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


def add_to_buffer(buffer, count, images, is_poor):
  """Appends the rows of ``images`` [B, H, W, C] where ``is_poor`` [B] to ``buffer``
  [S, H, W, C] after its ``count`` filled rows, dropping what does not fit; -> (buffer, count)."""
  positions = count + jnp.cumsum(is_poor) - 1
  positions = jnp.where(is_poor, positions, buffer.shape[0])  # out of range: dropped
  buffer = buffer.at[positions].set(images, mode='drop')
  return buffer, jnp.minimum(count + jnp.sum(is_poor), buffer.shape[0]).astype(count.dtype)


def _normal_log_density(x, mean, log_var):
  """log N(x; mean, exp(log_var)) summed over the last axis."""
  return -0.5 * jnp.sum(jnp.square(x - mean) * jnp.exp(-log_var) + log_var
                        + math.log(2 * math.pi), axis=-1)


class CurlMethod(methods.LifelongMethod):
  """See the module docstring."""

  fid_source = 'the mixture model (y uniform over the active components, z ~ p(z|y))'

  def __init__(self, config: ml_collections.ConfigDict, name: str = 'curl'):
    self.config, self.name = config, name
    data, vae, curl = config.data, config.vae, config.curl
    self.model = CurlVAE(data.image_size, data.channels, vae.width, vae.latent_dim,
                         curl.max_components, config.model.resample,
                         config.model.conv_gradients)
    self.num_components, self.latent_dim = curl.max_components, vae.latent_dim
    self.optimizer = optax.adam(config.optim.student_learning_rate)

  # State ------------------------------------------------------------------------------------
  def init_state(self, key):
    size, channels = self.config.data.image_size, self.config.data.channels
    params = self.model.init(key, jnp.zeros((1, size, size, channels)))['params']
    zero = lambda: jnp.zeros((), jnp.int32)  # separate buffers (the state is donated)
    return CurlState(
        model=NetworkState(params, self.optimizer.init(params)), replay_params=copy_tree(params),
        replay_active=zero(), active=jnp.ones((), jnp.int32),
        buffer=jnp.zeros((self.config.curl.buffer_size, size, size, channels), jnp.uint8),
        buffer_count=zero(), steps_since_expansion=zero(), task=zero(), task_step=zero())

  def phase(self, task):
    return 'first' if task == 0 else 'replay'

  def begin_next_task(self, state):
    return state.replace(replay_params=copy_tree(state.model.params), replay_active=state.active,
                         task=state.task + 1, task_step=jnp.zeros_like(state.task_step))

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
    targets = jnp.repeat(losses.to_unit_interval(images), n, axis=0)
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
    return jax.nn.sigmoid(logits) * 2 - 1

  # Training ---------------------------------------------------------------------------------
  def train_steps(self):
    # No donation: XLA may return one buffer for equal scalar outputs (the counters an
    # expansion resets), which could then not be donated twice; the state is small.
    def host_step(replay):
      jitted = jax.jit(functools.partial(self._step, replay=replay),
                       static_argnames=('update_generators', 'num_active'))

      def step(state, batch, key, update_generators: bool = True):
        # The number of active components is static: one compilation per count.
        return jitted(state, batch, key, update_generators=update_generators,
                      num_active=int(state.active))
      return step
    return {'first': host_step(False), 'replay': host_step(True)}

  def _step(self, state: CurlState, batch, key, update_generators: bool = True, *,
            replay: bool, num_active: int):
    """One update on a batch [B, H, W, C] uint8 (plus as many replayed samples when
    ``replay``), then the buffer and, when it is full, an expansion. ``num_active`` equals
    ``state.active``; ``update_generators`` is unused (no GAN)."""
    del update_generators
    curl = self.config.curl
    key_data, key_replay, key_generate, key_expand = jax.random.split(key, 4)
    data = steps.images_from_uint8(batch)
    replayed = (jax.lax.stop_gradient(self._generate(
        state.replay_params, state.replay_active, key_generate, data.shape[0]))
        if replay else None)

    def loss_fn(params):
      terms = self._terms(params, data, num_active, key_data)
      metrics = {'student/loss_data': jnp.mean(terms['loss'])}
      loss = metrics['student/loss_data']
      if replay:
        metrics['student/loss_replay'] = jnp.mean(
            self._terms(params, replayed, num_active, key_replay)['loss'])
        loss = loss + metrics['student/loss_replay']
      return loss, (metrics, terms['paper'])

    (_, (metrics, paper)), grads = jax.value_and_grad(loss_fn, has_aux=True)(
        state.model.params)
    model = steps.apply_gradients(state.model, grads, self.optimizer)
    warmed_up = state.steps_since_expansion >= curl.min_steps_between_expansions
    is_poor = (paper > curl.expansion_threshold) & warmed_up
    buffer, count = add_to_buffer(state.buffer, state.buffer_count, batch, is_poor)
    active, since = state.active, state.steps_since_expansion + 1
    expand = jnp.zeros((), bool)
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
                         steps_since_expansion=since, task_step=state.task_step + 1), metrics

  def _expand(self, model: NetworkState, buffer, count, since, *, num_active: int, key):
    """Adds component ``num_active`` as a copy of the one the buffer uses most, trains it on
    the buffer with y fixed to it, and empties the buffer; -> (model, active, 0, 0)."""
    del count, since
    images = steps.images_from_uint8(buffer)
    y_logits, _, _ = self.model.apply({'params': model.params}, images, method='encode')
    usage = jnp.sum(jax.nn.softmax(y_logits[:, :num_active], axis=-1), axis=0)
    new = num_active
    model = model.replace(params=copy_component(model.params, jnp.argmax(usage), new,
                                                self.latent_dim))

    def train_on_buffer(i, model):
      def loss_fn(params):
        terms = self._terms(params, images, new + 1, jax.random.fold_in(key, i))
        per_image = (terms['recon'][:, new] + self.config.vae.beta * terms['kl_z'][:, new]
                     - terms['log_q_y'][:, new])
        return jnp.mean(per_image)
      grads = jax.grad(loss_fn)(model.params)
      return steps.apply_gradients(model, grads, self.optimizer)

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
    params = state.model.params

    num_active = int(state.active)

    def encode(images):
      y_logits, mean, log_var = self.model.apply({'params': params}, images, method='encode')
      best = jnp.argmax(y_logits[:, :num_active], axis=-1)[:, None, None]
      return (jnp.take_along_axis(mean, best, axis=1)[:, 0],
              jnp.take_along_axis(log_var, best, axis=1)[:, 0])

    return methods.VAEView(
        encode=encode,
        decode=lambda z: self.model.apply({'params': params}, z, method='decode'))

  @functools.partial(jax.jit, static_argnums=(0, 2))
  def _paper_batch(self, params, num_active, batch_uint8, key):
    return self._terms(params, steps.images_from_uint8(batch_uint8), num_active, key)['paper']

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
    images = steps.images_from_uint8(batch_uint8)
    y_logits, mean, log_var = self.model.apply({'params': params}, images, method='encode')
    log_q_y = jax.nn.log_softmax(y_logits[:, :num_active], axis=-1)  # [B, n]
    key_y, key_z = jax.random.split(key)
    y = jax.random.categorical(key_y, log_q_y, shape=(num_samples, images.shape[0]))
    pick = lambda a: jnp.take_along_axis(a[None], y[..., None, None], axis=2)[:, :, 0]
    mean_y, log_var_y = pick(mean), pick(log_var)  # [S, B, L]
    z = mean_y + jnp.exp(0.5 * log_var_y) * jax.random.normal(key_z, mean_y.shape)
    logits = self.model.apply({'params': params}, z.reshape(-1, z.shape[-1]), method='decode')
    targets = jnp.broadcast_to(losses.to_unit_interval(images)[None],
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
