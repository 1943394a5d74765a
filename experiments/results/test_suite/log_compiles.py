import sys, time, tempfile, os, logging
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))))
from ltgans_jax.cpu import xla_flags
xla_flags.apply_defaults()
os.environ.setdefault('JAX_COMPILATION_CACHE_DIR', '/tmp/ltgans_jax_test_compilation_cache')
os.environ.setdefault('JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS', '0')
os.environ.setdefault('JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES', '0')
import jax
jax.config.update('jax_log_compiles', True)
from configs import test as t
from ltgans_jax import train
cfg = t.get_config()
wd = tempfile.mkdtemp() + '/run'
t0 = time.time()
train.train_and_evaluate(cfg, wd)
print('WALL', time.time() - t0)
