"""The PyTorch reference used by benchmarks/benchmark.py mirrors the Flax networks and losses.

Skipped where torch is not installed (it is an optional dependency: ``pip install
torch==2.13.0``).
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

torch = pytest.importorskip('torch')

from benchmarks import torch_reference as tr  # pylint: disable=g-import-not-at-top
from ltgans_jax import losses, models  # pylint: disable=g-import-not-at-top

WIDTH, LATENT, STUDENT_LATENT = 4, 8, 5


@pytest.fixture(autouse=True)
def _one_torch_thread():
  # Tiny tensors: one thread is fastest, and immune to a busy core stalling OpenMP barriers.
  threads = torch.get_num_threads()
  torch.set_num_threads(1)
  yield
  torch.set_num_threads(threads)


def _flax_count(module, *inputs):
  shapes = jax.eval_shape(lambda: module.init(jax.random.key(0), *inputs))
  return sum(int(np.prod(x.shape)) for x in jax.tree_util.tree_leaves(shapes['params']))


@pytest.mark.parametrize('mode', tr.RESAMPLE_MODES)
@pytest.mark.parametrize('size', [28, 32, 64])
@pytest.mark.parametrize('channels', [1, 3])
def test_parameter_counts_match_flax(size, mode, channels):
  images = jnp.zeros((1, size, size, channels))
  pairs = [
      (models.Generator(size, channels, WIDTH, mode), (jnp.zeros((1, LATENT)),),
       tr.Generator(size, channels, WIDTH, LATENT, mode)),
      (models.Critic(size, WIDTH, mode), (images,), tr.Critic(size, channels, WIDTH, mode)),
      (models.StudentVAE(size, channels, WIDTH, STUDENT_LATENT, mode),
       (images, jnp.zeros((1, STUDENT_LATENT))),
       tr.StudentVAE(size, channels, WIDTH, STUDENT_LATENT, mode)),
  ]
  for flax_module, inputs, torch_module in pairs:
    assert tr.num_params(torch_module) == _flax_count(flax_module, *inputs), type(torch_module)


def _random_params(module, rng, *inputs):
  """Random values with the Flax parameter tree's shapes (no JAX initialisation to run)."""
  shapes = jax.eval_shape(lambda: module.init(jax.random.key(0), *inputs))['params']
  return jax.tree_util.tree_map(
      lambda s: (0.3 * rng.standard_normal(s.shape)).astype(np.float32), shapes)


@pytest.mark.parametrize('mode', tr.RESAMPLE_MODES)
def test_same_weights_give_the_same_function(mode):
  size, channels, batch = 28, 3, 2
  rng = np.random.default_rng(0)
  z = rng.standard_normal((batch, LATENT), dtype=np.float32)
  x = rng.standard_normal((batch, size, size, channels), dtype=np.float32)
  generator, critic = models.Generator(size, channels, WIDTH, mode), models.Critic(size, WIDTH,
                                                                                  mode)
  g_params, d_params = _random_params(generator, rng, z), _random_params(critic, rng, x)
  g_torch = tr.load_flax_params(tr.Generator(size, channels, WIDTH, LATENT, mode), g_params, size)
  d_torch = tr.load_flax_params(tr.Critic(size, channels, WIDTH, mode), d_params, size)
  with torch.no_grad():
    samples = g_torch(torch.from_numpy(z)).numpy().transpose(0, 2, 3, 1)
    scores = d_torch(torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))).numpy()
  # Equal up to float32 summation order.
  np.testing.assert_allclose(samples, jax.jit(generator.apply)({'params': g_params}, z),
                             atol=1e-4)
  np.testing.assert_allclose(scores, jax.jit(critic.apply)({'params': d_params}, x), atol=1e-4,
                             rtol=1e-4)


def _points(batch=5, shape=(3, 4, 4), seed=0):
  return torch.randn((batch,) + shape, generator=torch.Generator().manual_seed(seed))


def _unit_weight(scale=1.0):
  w = torch.randn((3, 4, 4), generator=torch.Generator().manual_seed(1))
  return scale * w / torch.linalg.norm(w)


def test_gradient_penalty_of_unit_norm_linear_critic_is_zero():
  w = _unit_weight()
  penalty = tr.gradient_penalty(lambda x: torch.sum(x * w, dim=(1, 2, 3)) + 3.0, _points())
  assert penalty.shape == (5,)
  np.testing.assert_allclose(penalty.detach().numpy(), 0.0, atol=1e-10)


def test_gradient_penalty_of_scaled_linear_critic():
  w = _unit_weight(3.0)  # gradient norm 3 everywhere: penalty (3 - 1)^2 = 4
  penalty = tr.gradient_penalty(lambda x: torch.sum(x * w, dim=(1, 2, 3)), _points())
  np.testing.assert_allclose(penalty.detach().numpy(), 4.0, rtol=1e-5)


def test_gradient_penalty_of_quadratic_matches_closed_form_and_jax():
  a = 0.7
  points = _points()
  penalty = tr.gradient_penalty(lambda x: 0.5 * a * torch.sum(x**2, dim=(1, 2, 3)), points)
  expected = (a * torch.sqrt(torch.sum(points**2, dim=(1, 2, 3))) - 1.0) ** 2
  np.testing.assert_allclose(penalty.detach().numpy(), expected.numpy(), rtol=1e-5)
  jax_penalty = losses.gradient_penalty(lambda x: 0.5 * a * jnp.sum(x**2, axis=(1, 2, 3)),
                                        jnp.asarray(points.numpy()))
  np.testing.assert_allclose(penalty.detach().numpy(), jax_penalty, rtol=1e-5)


def test_gradient_penalty_is_differentiable_in_the_critic_weights():
  w = _unit_weight(2.0).requires_grad_(True)
  penalty = tr.gradient_penalty(lambda x: torch.sum(x * w, dim=(1, 2, 3)), _points())
  (grad,) = torch.autograd.grad(penalty.mean(), w)
  # d/dw (||w|| - 1)^2 = 2 (||w|| - 1) w / ||w||, which is w at ||w|| = 2.
  np.testing.assert_allclose(grad.numpy(), w.detach().numpy(), rtol=1e-5, atol=1e-7)


def test_student_loss_matches_jax():
  rng = np.random.default_rng(3)
  logits = rng.standard_normal((2, 3, 4, 4), dtype=np.float32)
  targets = rng.uniform(size=(2, 3, 4, 4)).astype(np.float32)
  mean, log_var = rng.standard_normal((2, 2, 5), dtype=np.float32)
  std = 1 / np.sqrt(2)
  nll = tr.reconstruction_nll(torch.from_numpy(logits), torch.from_numpy(targets), 'gaussian',
                              std)
  kl = tr.gaussian_kl(torch.from_numpy(mean), torch.from_numpy(log_var))
  np.testing.assert_allclose(nll.numpy(), losses.reconstruction_nll(
      logits, targets, 'gaussian', std), rtol=1e-5)
  np.testing.assert_allclose(kl.numpy(), losses.gaussian_kl(mean, log_var), rtol=1e-5)


def test_lakd_step_updates_the_assistant_critic_and_student_but_not_the_teacher():
  step = tr.TorchLAKD(image_size=28, channels=1, latent_dim=LATENT, generator_width=WIDTH,
                      critic_width=WIDTH, vae_width=WIDTH, vae_latent_dim=STUDENT_LATENT)
  nets = ('teacher', 'assistant', 'critic', 'student')
  before = {n: [p.detach().clone() for p in getattr(step, n).parameters()] for n in nets}
  batch = torch.randint(0, 256, (4, 1, 28, 28), dtype=torch.uint8)
  step.full_step(batch)
  for n in nets:
    changed = any(not torch.equal(a, b) for a, b in zip(before[n], getattr(step, n).parameters()))
    assert changed == (n != 'teacher'), n
  assert all(p.requires_grad for p in step.critic.parameters())
