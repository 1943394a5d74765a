"""Command line: ``python -m ltgans_jax.main [--config=configs/NAME.py] [--workdir=DIR]
[--mode=train|evaluate|sample] [--config.a.b=value ...]``.

Without ``--config`` the embedded default runs (``ltgans_jax/config_base.py``): scikit-learn's
digits in two tasks, no download, a few minutes on a laptop CPU.
"""

import logging as py_logging
import os
import sys

from absl import app, flags, logging
import jax
from ml_collections import config_flags

from ltgans_jax import inspect_run, train
from ltgans_jax.checkpointing import CheckpointError
from ltgans_jax.config_validation import ConfigError
from ltgans_jax.data.local import DatasetError

_DEFAULT_CONFIG = os.path.join(os.path.dirname(__file__), 'config_base.py')
config_flags.DEFINE_config_file('config', _DEFAULT_CONFIG, 'Experiment config file.',
                                lock_config=True)
flags.DEFINE_string('workdir', 'workdirs/default',
                    'Where checkpoints, TensorBoard events, samples and report.md go; rerun '
                    'with the same workdir to resume.')
flags.DEFINE_enum('mode', 'train', ['train', 'evaluate', 'sample'],
                  'train (or resume); evaluate the task-boundary checkpoints of a workdir; '
                  'sample N images of one network (config.sample) from the newest checkpoint.')
FLAGS = flags.FLAGS


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
  # Our modules log through Python's root logger at INFO; libraries that log through absl
  # (orbax writes a dozen lines per checkpoint) are kept to warnings.
  logging.set_verbosity(logging.INFO)
  py_logging.getLogger('absl').setLevel(py_logging.WARNING)
  if os.environ.get('JAX_COORDINATOR_ADDRESS') or os.environ.get('SLURM_JOB_ID'):
    jax.distributed.initialize()  # Multi-host (TPU VM pods, SLURM): one process per host.
  logging.info('JAX devices: %s', jax.devices())
  try:
    if FLAGS.mode == 'train':
      train.train_and_evaluate(FLAGS.config, FLAGS.workdir)
    elif FLAGS.mode == 'evaluate':
      inspect_run.evaluate_workdir(FLAGS.config, FLAGS.workdir)
    else:
      inspect_run.sample(FLAGS.config, FLAGS.workdir)
  except (ConfigError, DatasetError, train.DivergenceError, CheckpointError) as e:
    logging.error('%s', e)  # One sentence that says what to do; no traceback.
    sys.exit(f'error: {e}')
  except train.StopRequested as e:
    logging.warning('%s', e)
    sys.exit(143)


if __name__ == '__main__':
  app.run(main)
