"""The Student's paper NLL split into its squared error and its KL, after every task, on each
seen task's evaluation subset, from a workdir's task-boundary checkpoints (one posterior sample
per image, keys of its own, so the totals differ from report.md's by sampling noise).

Usage, from the repository root: python experiments/results/evidence_mnist_fashion/nll_parts.py WORKDIR
"""
import os
import sys
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', '..'))
import jax, jax.numpy as jnp, numpy as np
import common
common.setup()
from ltgans_jax import durations, losses, pixels
from ltgans_jax.data import sequences
from ltgans_jax.eval import eval_subset
from ltgans_jax.methods import registry
from ltgans_jax.run import checkpointing

workdir = sys.argv[1]
config = common.config_from_workdir(workdir)
if 'generator_ema_decay' not in config.optim:  # workdirs written before the setting
  config.optim.generator_ema_decay = 0.0
tasks = sequences.build_sequence(config)
method = registry.build(config)
template = method.init_state(jax.random.key(config.seed))
task_steps = durations.task_steps(config, method, [len(t.train.images) for t in tasks])
manager = checkpointing.make_manager(config, workdir, task_steps)
subsets = eval_subset.task_subsets([t.test.labels for t in tasks], config.eval.num_examples, 0)
student = method.networks.student
for finished in range(len(tasks)):
  step = durations.global_step(task_steps, finished, task_steps[finished])
  state = checkpointing.restore_step(manager, step, template)
  params = state.student.params
  @jax.jit
  def parts(batch, key):
    images = pixels.from_uint8(batch)
    mean, log_var = student.apply({'params': params}, images, method='encode')
    z = mean + jnp.exp(0.5 * log_var) * jax.random.normal(key, mean.shape)
    rec = jax.nn.sigmoid(student.apply({'params': params}, z, method='decode'))
    rec_mean = jax.nn.sigmoid(student.apply({'params': params}, mean, method='decode'))
    x = pixels.to_unit_interval(images)
    return (jnp.sum(jnp.square(rec - x), axis=(1, 2, 3)), losses.gaussian_kl(mean, log_var),
            jnp.sum(jnp.square(rec_mean - x), axis=(1, 2, 3)))
  for t in range(finished + 1):
    images = tasks[t].test.images[subsets[t]]
    sse, kl, sse_mean = [np.concatenate(v) for v in zip(*[
        jax.device_get(parts(images[i:i + 250], jax.random.key(i))) for i in range(0, len(images), 250)])]
    print(f'after task {finished + 1} on {tasks[t].name}: paper NLL {np.mean(sse + kl):.2f} = '
          f'SSE {np.mean(sse):.2f} + KL {np.mean(kl):.2f}; SSE at the posterior mean {np.mean(sse_mean):.2f}')
manager.close()
