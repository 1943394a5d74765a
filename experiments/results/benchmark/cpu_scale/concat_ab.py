"""A one-off A/B (run from the repository root: python experiments/results/benchmark/cpu_scale/concat_ab.py 28 lakd 6) at our CPU scale (28x28x1, widths 16, batch 64): the full LAKD step as the library
writes it, against the same maths with one critic pass over [real; fakes], one gradient-penalty
pass over all interpolates and one Student pass over [data; replay]. Alternating 3 s windows."""
import dataclasses, os, sys, time
# The repository root (this file is experiments/results/benchmark/cpu_scale/concat_ab.py).
sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), *['..'] * 4)))
from experiments import common
common.setup()
import jax, jax.numpy as jnp, numpy as np
from benchmarks.bench import settings
from benchmarks.bench.impls import JaxImpl, make_config, lt_gans
from ltgans_jax import losses, pixels
from ltgans_jax.methods import ltgans_steps

class Concat(ltgans_steps.GanSteps):
  def critic_loss(self, params, real, fakes):
    critic = self.critic_fn(params)
    names = list(fakes)
    b = real.shape[0]
    scores = critic(jnp.concatenate([real] + [fakes[n][0] for n in names]))
    real_score = jnp.mean(scores[:b])
    interp = jnp.concatenate([losses.interpolate(real, fakes[n][0], fakes[n][1]) for n in names])
    pen = losses.gradient_penalty(critic, interp)
    loss, metrics = 0.0, {}
    for i, n in enumerate(names):
      fake_score = jnp.mean(scores[(i + 1) * b:(i + 2) * b])
      penalty = jnp.mean(pen[i * b:(i + 1) * b])
      loss = loss + fake_score - real_score + self.penalty_weight * penalty
      metrics[f'critic/wasserstein_{n}'] = real_score - fake_score
      metrics[f'critic/penalty_{n}'] = penalty
    return loss, metrics

  def student_update(self, student, data, replay, keys):
    if replay is None:
      return super().student_update(student, data, replay, keys)
    b = data.shape[0]
    def loss_fn(params):
      images = jnp.concatenate([data, replay])
      noise = jnp.concatenate([jax.random.normal(keys['student_noise'], (b, self.student_latent_dim)),
                               jax.random.normal(keys['student_replay_noise'], (b, self.student_latent_dim))])
      logits, mean, log_var = self.networks.student.apply({'params': params}, images, noise)
      loss, aux = losses.student_loss(logits, pixels.to_unit_interval(images), mean, log_var, **self.student_loss_kwargs)
      return jnp.mean(loss[:b]) + jnp.mean(loss[b:]), {}
    (_, m), grads = jax.value_and_grad(loss_fn, has_aux=True)(student.params)
    from ltgans_jax.methods.network_state import apply_gradients
    return apply_gradients(student, grads, self.optimizers.student), m

config = make_config(settings.CPU_SCALE, int(sys.argv[1]) if len(sys.argv) > 1 else 28, 'pixel_shuffle')
impl = JaxImpl(config)
gs = lt_gans(config).gan_steps
cs = Concat(**{f.name: getattr(gs, f.name) for f in dataclasses.fields(gs)})
phase = sys.argv[2] if len(sys.argv) > 2 else 'lakd'
fns = {'library': jax.jit(lambda s, b, k: getattr(gs, phase)(s, b, k, True), donate_argnums=0),
       'concat': jax.jit(lambda s, b, k: getattr(cs, phase)(s, b, k, True), donate_argnums=0)}
states = {k: jax.tree.map(jnp.copy, impl.state) for k in fns}
key = jax.random.key(3)
outs = {}
for k, f in fns.items():
  t = time.perf_counter(); states[k], outs[k] = f(states[k], impl.batch, key); jax.block_until_ready(states[k])
  print(k, 'first call', round(time.perf_counter() - t, 2), 's; temp MiB',
        round(f.lower(states[k], impl.batch, key).compile().memory_analysis().temp_size_in_bytes / 2**20, 1), flush=True)
print('metrics agree:', {m: float(abs(outs['library'][m] - outs['concat'][m])) for m in outs['library'] if m in outs['concat']})
rates = {k: [] for k in fns}
for r in range(int(sys.argv[3]) if len(sys.argv) > 3 else 8):
  for k in (list(fns) if r % 2 == 0 else list(fns)[::-1]):
    n, t = 0, time.perf_counter()
    while time.perf_counter() - t < 3:
      states[k], _ = fns[k](states[k], impl.batch, key); jax.block_until_ready(states[k]); n += 1
    rates[k].append(n / (time.perf_counter() - t))
ratios = sorted(c / l for c, l in zip(rates['concat'], rates['library']))
print(phase, config.data.image_size, {k: round(float(np.median(v)), 2) for k, v in rates.items()},
      'concat/library median', round(ratios[len(ratios) // 2], 3), '[', round(ratios[0], 3), round(ratios[-1], 3), ']')
