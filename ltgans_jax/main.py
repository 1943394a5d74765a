"""Command line: ``python -m ltgans_jax.main [--config=configs/NAME.py | --config=NAME]
[--workdir=DIR] [--mode=train|evaluate|sample] [--config.a.b=value ...]``.

``--config`` takes a config file's path or, from any directory, the name of one of the configs
the package ships (the files of ``configs/``: ``--config=msfo``; ``named_configs``).

Without ``--config`` the embedded default runs (``ltgans_jax/config_base.py``): scikit-learn's
digits in two tasks, no download, a few minutes on a laptop CPU.
"""

import logging as py_logging
import os
import sys

from absl import app, flags, logging
import jax
import ml_collections
from ml_collections import config_flags

from ltgans_jax import multihost, named_configs, startup, train
from ltgans_jax.config_validation import ConfigError
from ltgans_jax.data.local import DatasetError
from ltgans_jax.run import checkpointing, hooks, inspect as inspect_run
from ltgans_jax.run.checkpointing import CheckpointError, DISK_ERRORS

_DEFAULT_CONFIG = os.path.join(os.path.dirname(__file__), 'config_base.py')
config_flags.DEFINE_config_file(
    'config', _DEFAULT_CONFIG, 'Experiment config: a file (configs/msfo.py) or the name of a '
    'packaged config (msfo).', lock_config=True)
flags.DEFINE_string('workdir', 'workdirs/default',
                    'Where checkpoints, TensorBoard events, samples and report.md go; rerun '
                    'with the same workdir to resume.')
flags.DEFINE_enum('mode', 'train', ['train', 'evaluate', 'sample'],
                  'train (or resume); evaluate the task-boundary checkpoints of a workdir; '
                  'sample N images of one network (config.sample) from the newest checkpoint.')
FLAGS = flags.FLAGS


def with_config_file(argv):
  """``argv`` with the value of ``--config=NAME`` (or ``--config NAME``) replaced by the path
  of the packaged config of that name (``named_configs.resolve``; paths are kept as given).
  Raises ConfigError for a bare name that no packaged config has."""
  argv = list(argv)
  for i, arg in enumerate(argv):
    if arg.startswith('--config='):
      argv[i] = '--config=' + named_configs.resolve(arg.split('=', 1)[1])
    elif arg == '--config' and i + 1 < len(argv):
      argv[i + 1] = named_configs.resolve(argv[i + 1])
  return argv


def parse_flags(argv):
  """absl's flag parsing, with a config name turned into its file (``with_config_file``) and an
  error raised by the ``--config`` file's own code (a syntax error, a ``get_config`` that
  raises) turned into one sentence instead of a traceback."""
  try:
    argv = with_config_file(argv)
  except ConfigError as e:
    sys.exit(f'error: {e}')
  path = next((a.split('=', 1)[1] for a in argv if a.startswith('--config=')), 'the --config')
  try:
    return FLAGS(argv)
  except flags.Error as e:
    lines = [line.strip() for line in str(e).splitlines() if line.strip()]
    if 'Error whilst parsing config file' in str(e):  # get_config raised a ValueError/TypeError
      sys.exit(f'error: {path} cannot be loaded: {lines[-1]}; fix it, or pass another --config.')
    sys.exit(f'FATAL Flags parsing error: {" ".join(lines)}\n'
             'Pass --helpshort or --helpfull to see help on flags.')
  except Exception as e:  # pylint: disable=broad-except  # whatever the user's file raises
    text = ' '.join(str(e).replace('\\n', ' ').replace("\\'", "'").split())
    culprit = next((a.split('=', 1)[0] for a in argv if a.startswith('--config.')
                    and f"'{a.split('=', 1)[0].rsplit('.', 1)[-1]}'" in text), None)
    text = text.replace("'", '').replace(' Did you mean', '; did you mean')
    if isinstance(e, (AttributeError, KeyError)) and culprit:  # --config.a.b: no such key
      sys.exit(f'error: {culprit} is not a key of the config ({text}); fix the override.')
    where = f' (line {e.lineno})' if isinstance(e, SyntaxError) and e.lineno else ''
    first = str(e).splitlines()[0] if str(e) else ''
    sys.exit(f'error: {path} cannot be loaded{where}: {type(e).__name__}: {first}; fix it, or '
             'pass another --config.')


def loaded_config():
  """``FLAGS.config``, or ConfigError if the file is missing or ``get_config`` returned
  something other than a ConfigDict (config_flags defers both until the config is read)."""
  config, path = FLAGS.config, config_flags.get_config_filename(FLAGS['config'])
  if isinstance(config, ml_collections.ConfigDict):
    return config
  try:
    config.keys()  # an unloadable file: config_flags raises its deferred error on access
  except OSError as e:
    reason = 'no such file' if not os.path.exists(path) else str(e).splitlines()[-1].strip()
    raise ConfigError(f'--config={path} cannot be loaded ({reason}); pass the path of a config '
                      'file such as configs/test.py, or one of these packaged config names: '
                      f'{", ".join(named_configs.names())}.') from None
  except AttributeError:
    pass
  raise ConfigError(f'--config={path}: get_config() returned {type(config).__name__}, not an '
                    'ml_collections.ConfigDict; return one built on '
                    'ltgans_jax.config_base.get_config().')


def _without_orbax_tracebacks(record: py_logging.LogRecord) -> bool:
  """A logging filter: orbax logs the traceback of a failed background save from each of its
  threads (a full disk: ~1000 lines) before the error reaches the run, which turns it into one
  sentence (``checkpointing.finish``); its records keep their first line, without the
  traceback."""
  if record.exc_info and 'orbax' in record.pathname:
    record.exc_info, record.exc_text = None, None
    record.msg, record.args = str(record.getMessage()).splitlines()[0][:300], ()
  return True


def _not_a_failed_write_left_unread(record: py_logging.LogRecord) -> bool:
  """A logging filter for asyncio: drops 'Task exception was never retrieved' of orbax's
  writes that a full disk failed (one per array; the run reports the error once)."""
  error = record.exc_info[1] if record.exc_info else None
  return not (error is not None and 'never retrieved' in str(record.msg)
              and checkpointing.disk_error(error) is not None)


def _unraisablehook_without_closed_loops(hook):
  """``hook`` (``sys.unraisablehook``), silent for the 'Event loop is closed' that TensorStore
  reports from its own threads when a failed save (a full disk) has closed orbax's event loop
  while other writes were in flight: one traceback per array, after the run has already said
  what failed."""
  def quiet(unraisable):
    if (isinstance(unraisable.exc_value, RuntimeError)
        and str(unraisable.exc_value) == 'Event loop is closed'):
      return
    hook(unraisable)
  return quiet


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
  # Our modules log through Python's root logger at INFO; libraries that log through absl
  # (orbax writes a dozen lines per checkpoint) are kept to warnings.
  logging.set_verbosity(logging.INFO)
  py_logging.getLogger('absl').setLevel(py_logging.WARNING)
  py_logging.getLogger('absl').addFilter(_without_orbax_tracebacks)
  py_logging.getLogger('asyncio').addFilter(_not_a_failed_write_left_unread)
  sys.unraisablehook = _unraisablehook_without_closed_loops(sys.unraisablehook)
  try:
    config = loaded_config()
    if multihost.initialize_from_environment(os.environ):  # one process per host, if asked
      multihost.end_with_a_sentence_on_abort()
    try:
      logging.info('JAX devices: %s', jax.devices())
    except (RuntimeError, AssertionError) as e:  # JAX_PLATFORMS names a backend not here
      detail = str(e).splitlines()[0][:200] if str(e) else 'no such device on this machine'
      raise ConfigError(f'JAX cannot start the backend JAX_PLATFORMS='
                        f'{os.environ.get("JAX_PLATFORMS", "")!r} asks for ({detail}); unset '
                        'JAX_PLATFORMS or set it to one this machine has (cpu).') from None
    if FLAGS.mode == 'train':
      train.train_and_evaluate(config, FLAGS.workdir)
    elif FLAGS.mode == 'evaluate':
      inspect_run.evaluate_workdir(config, FLAGS.workdir)
    else:
      inspect_run.sample(config, FLAGS.workdir)
  except (ConfigError, DatasetError, hooks.DivergenceError, CheckpointError) as e:
    _fail(str(e))  # One sentence that says what to do; no traceback.
  except OSError as e:
    if e.errno not in DISK_ERRORS:
      _fail_unexpectedly(e)
    _fail(f'cannot write {e.filename or "into the workdir"} ({e.strerror}); free space there '
          '(or make it writable) and rerun the same command' + (
              ': training resumes from its newest checkpoint.' if FLAGS.mode == 'train'
              else ' (it trains nothing and changes no checkpoint).'))
  except hooks.StopRequested as e:  # every process of a run stops at the same step
    logging.warning('%s', e)
    sys.exit(143)
  except Exception as e:  # pylint: disable=broad-except
    _fail_unexpectedly(e)


def _fail(message: str):
  """Ends the run with ``message`` (one sentence) and exit status 1; in a multi-process run at
  once, so that the other processes end too instead of waiting for this one
  (``multihost.end_process``)."""
  if multihost.running():
    multihost.end_process(1, message)
  logging.error('%s', message)
  sys.exit(f'error: {message}')


def _fail_unexpectedly(error: BaseException):
  """An error with no sentence of ours: its traceback, as Python would print it, except in a
  multi-process run, where a lost peer gets one sentence and any process ends at once."""
  if not multihost.running():
    raise error
  if multihost.lost_peer(error):
    multihost.end_process(1, multihost.lost_peer_message(error))
  logging.exception('process %d of %d failed:', jax.process_index(), jax.process_count())
  multihost.end_process(1, None)


def run():
  """The entry point: the user's XLA_FLAGS checked and the XLA:CPU flags added first (XLA reads
  them once, when JAX starts its backends), float32 mode (``startup``), then absl's flag
  parsing and ``main``."""
  try:
    startup.prepare()
  except ConfigError as e:
    sys.exit(f'error: {e}')
  app.run(main, flags_parser=parse_flags)


if __name__ == '__main__':
  run()
