# Where a run of configs/test.py compiles: each compile attributed to its innermost
# ltgans_jax frames. Run from the repository root: python experiments/results/test_suite/compile_sites.py
import sys, os, time, tempfile, logging, traceback, collections
sys.path.insert(0, os.getcwd())
from ltgans_jax.cpu import xla_flags
xla_flags.apply_defaults()
os.environ.setdefault('JAX_COMPILATION_CACHE_DIR', '/tmp/ltgans_jax_test_compilation_cache')
os.environ.setdefault('JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS', '0')
os.environ.setdefault('JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES', '0')
import jax
jax.config.update('jax_log_compiles', True)
sites = collections.Counter()
class H(logging.Handler):
  def emit(self, record):
    msg = record.getMessage()
    if not msg.startswith('Compiling'): return
    frames = [f for f in traceback.extract_stack() if '/ltgans_jax/' in f.filename]
    where = ' <- '.join(f'{os.path.basename(f.filename)}:{f.lineno}:{f.name}' for f in frames[-3:][::-1])
    sites[where] += 1
logging.getLogger('jax').addHandler(H())
from configs import test as t
from ltgans_jax import train
cfg = t.get_config()
wd = tempfile.mkdtemp() + '/run'
t0 = time.time()
train.train_and_evaluate(cfg, wd)
print('WALL', time.time() - t0, 'compiles', sum(sites.values()))
for k, v in sites.most_common(45): print(v, k)
