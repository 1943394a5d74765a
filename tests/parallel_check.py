"""Run by tests/test_parallel.py in a subprocess with 4 simulated CPU devices (XLA_FLAGS must be
set before JAX starts): a data-parallel step equals the single-device step on the same global
batch, and a 2-task lifelong run works on the 4-device mesh."""

import os
import sys
import tempfile

os.environ['XLA_FLAGS'] = '--xla_force_host_platform_device_count=4'
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # pylint: disable=g-import-not-at-top
import numpy as np

from configs import test as test_config_module  # pylint: disable=g-import-not-at-top
from ltgans_jax import train
from ltgans_jax.methods import ltgans_state as state_lib
from tests.helpers import build, random_batch


def run_two_steps(config, place_state, place_batch):
  _, optimizers, state, step_fns = build(config)
  state = place_state(state)
  for phase in ('joint', 'lakd'):
    if phase == 'lakd':
      state = state_lib.begin_next_task(state, optimizers.generator)
    for i in range(2):
      state, _ = step_fns[phase](state, place_batch(random_batch(config, i)),
                                 jax.random.key(i), update_generators=True)
  return jax.device_get(state)


def main():
  assert jax.device_count() == 4, jax.devices()
  config = test_config_module.get_config()
  one = jax.devices()[0]
  single = run_two_steps(config, lambda s: jax.device_put(s, one),
                         lambda b: jax.device_put(b, one))
  mesh = train.data_mesh()
  replicated = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())
  sharded = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec('data'))
  parallel = run_two_steps(config, lambda s: jax.device_put(s, replicated),
                           lambda b: jax.device_put(b, sharded))
  worst = 0.0
  for a, b in zip(jax.tree_util.tree_leaves(single), jax.tree_util.tree_leaves(parallel)):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
    worst = max(worst, float(np.max(np.abs(np.asarray(a, np.float64) - b))))
  print(f'max |single - parallel| over the state: {worst:.3g}')

  with tempfile.TemporaryDirectory() as workdir:
    final = train.train_and_evaluate(config, workdir)
    assert int(final.task) == 1
    assert len(final.critic.params['Dense_0']['kernel'].sharding.device_set) == 4
  print('PARALLEL OK')


if __name__ == '__main__':
  main()
