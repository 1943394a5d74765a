"""Final states of short test-config runs, saved flat, to compare commits bit for bit."""
import sys, os, numpy as np, jax
sys.path.insert(0, os.getcwd())
from configs import test as t
from ltgans_jax import train
out = sys.argv[1]
os.makedirs(out, exist_ok=True)
cases = {'ltgans_c1': {}, 'ltgans_c3': {'gan.critic_steps': 3, 'train.steps_per_task': 7},
         'ltgans_c2_withgen': {'gan.critic_steps': 2, 'vae.update_schedule': 'with_generator', 'train.steps_per_task': 5},
         'no_lakd_c2': {'method': 'no_lakd', 'gan.critic_steps': 2},
         'lgm': {'method': 'lgm'}, 'curl': {'method': 'curl', 'train.steps_per_task': 6}}
for name, over in cases.items():
  if len(sys.argv) > 2 and name not in sys.argv[2].split(','): continue
  c = t.get_config()
  for k, v in over.items():
    node = c
    *path, last = k.split('.')
    for p in path: node = node[p]
    node[last] = v
  c.eval.num_examples = 8
  state = train.train_and_evaluate(c, os.path.join(out, 'wd_' + name))
  leaves = jax.tree_util.tree_flatten_with_path(state)[0]
  np.savez(os.path.join(out, name + '.npz'), **{jax.tree_util.keystr(p): np.asarray(jax.random.key_data(l) if jax.dtypes.issubdtype(l.dtype, jax.dtypes.prng_key) else l) for p, l in leaves})
  print(name, 'saved', flush=True)
