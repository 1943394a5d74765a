"""Two real processes on this machine train ``configs/test.py`` through the ordinary command
(``tests/entry/recording_main.py`` is ``python -m ltgans_jax.main`` plus a record of the
images each process placed, and JAX's persistent compilation cache written by process 1 too,
which JAX leaves to process 0), with the launcher's variables set: a coordinator on 127.0.0.1
at a free port, JAX's CPU collectives (gloo, ``jax_cpu_collectives_implementation``'s
default), one CPU device each. The reference is one process with two CPU devices: the same
global mesh of 2, so the same programs, and the final parameters must agree bit for bit. It
runs beside the two-process launches, not before them.

What is checked (issue 31): the final parameters against the reference's; that each process
placed only its half of every global batch; that one set of checkpoints and one report are
written, every file outside the checkpoints by process 0, which alone holds the workdir's lock; that a SIGKILL of either process
ends the other within ``STOP_LIMIT_S`` with one sentence, and that rerunning both commands
resumes to the reference's final parameters; and ``train.num_seeds=2`` across two processes.
"""

import hashlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import orbax.checkpoint as ocp
import pytest

import jax

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENTRY = os.path.join(ROOT, 'tests', 'entry', 'recording_main.py')
# Long enough to kill a process mid-task; the steps of a task take a few seconds.
OVERRIDES = {'train.steps_per_task': 30, 'train.checkpoint_every': 10, 'train.log_every': 10}
STEPS = 2 * 30
# Two seeds on one task: the seed axis across processes (the kill test covers both tasks).
SEED_OVERRIDES = {'data.num_tasks': 1, 'train.steps_per_task': 10,
                  'train.checkpoint_every': 10, 'train.log_every': 10, 'train.num_seeds': 2}
# A survivor notices a killed peer at its next collective (gloo sees the socket close), or,
# when the coordinator (process 0) dies, through JAX's coordination service: both within a
# second here. The limit leaves room for a loaded 2-core machine.
STOP_LIMIT_S = 20
# A hang guard, not a measure: a launch compiles from an empty cache on CI while the one-process
# reference and another test worker share the 2 cores with it.
LAUNCH_TIMEOUT_S = 600
LAUNCHER_VARIABLES = ('JAX_COORDINATOR_ADDRESS', 'JAX_NUM_PROCESSES', 'JAX_PROCESS_ID',
                      'SLURM_JOB_ID', 'XLA_FLAGS')


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(('127.0.0.1', 0))
    return s.getsockname()[1]


def _env(workdir, records, devices: int, process: int = None, port: int = None) -> dict:
  """The environment of one process: records go to ``records``-placed.jsonl and -writes.jsonl."""
  env = {k: v for k, v in os.environ.items() if k not in LAUNCHER_VARIABLES}
  env.update(PYTHONPATH=ROOT, LTGANS_TEST_PLACED=f'{records}placed.jsonl',
             LTGANS_TEST_WRITES=f'{records}writes.jsonl', LTGANS_TEST_WORKDIR=str(workdir),
             JAX_PLATFORMS='cpu', PYTHONUNBUFFERED='1',
             XLA_FLAGS=f'--xla_force_host_platform_device_count={devices}')
  if process is not None:
    env.update(JAX_COORDINATOR_ADDRESS=f'127.0.0.1:{port}', JAX_NUM_PROCESSES='2',
               JAX_PROCESS_ID=str(process))
  return env


def _command(workdir, overrides):
  return [sys.executable, ENTRY, '--config=configs/test.py', f'--workdir={workdir}',
          *(f'--config.{k}={v}' for k, v in overrides.items())]


def _start_pair(workdir, tmp_path, name, overrides=OVERRIDES):
  """Both processes of one launch: [(Popen, stderr path)] for processes 0 and 1."""
  port, pair = _free_port(), []
  for process in (0, 1):
    log = tmp_path / f'{name}.p{process}.log'
    pair.append((subprocess.Popen(  # pylint: disable=consider-using-with
        _command(workdir, overrides), cwd=ROOT, stdout=subprocess.DEVNULL,
        stderr=open(log, 'w'),  # pylint: disable=consider-using-with
        env=_env(workdir, f'{tmp_path}/', 1, process, port)), log))
  return pair


def _finish_pair(pair):
  for process, _ in pair:
    process.wait(timeout=LAUNCH_TIMEOUT_S)
  return [(process.returncode, log.read_text()) for process, log in pair]


def _start_reference(workdir, tmp_path, overrides=OVERRIDES):
  """One process with two CPU devices, the same command: (Popen, stderr path). It shares no
  workdir, record, port or process with the two-process launches, so it runs beside them
  rather than before them: alone, its one process leaves the second core mostly idle."""
  log = tmp_path / 'reference.log'
  return subprocess.Popen(  # pylint: disable=consider-using-with
      _command(workdir, overrides), cwd=ROOT, stdout=subprocess.DEVNULL,
      stderr=open(log, 'w'),  # pylint: disable=consider-using-with
      env=_env(workdir, f'{tmp_path}/reference_', 2)), log


def _finish_reference(reference):
  process, log = reference
  process.wait(timeout=LAUNCH_TIMEOUT_S)
  assert process.returncode == 0, log.read_text()[-3000:]


def _final_parameters(workdir, step):
  """The checkpoint of ``step`` as numpy arrays, by path."""
  path = os.path.join(workdir, 'checkpoints', str(step), 'default')
  metadata = ocp.PyTreeCheckpointer().metadata(path).item_metadata.tree
  restore_args = jax.tree_util.tree_map(lambda _: ocp.RestoreArgs(restore_type=np.ndarray),
                                        metadata)
  tree = ocp.PyTreeCheckpointer().restore(path, args=ocp.args.PyTreeRestore(
      restore_args=restore_args))
  return {jax.tree_util.keystr(k): v for k, v in jax.tree_util.tree_leaves_with_path(tree)}


def _assert_bit_identical(workdir, reference, step):
  ours, theirs = _final_parameters(workdir, step), _final_parameters(reference, step)
  assert ours.keys() == theirs.keys()
  differing = [k for k in ours if not np.array_equal(ours[k], theirs[k])]
  assert not differing, f'{len(differing)} of {len(ours)} leaves differ, e.g. {differing[:3]}'


def _kill_when(pair, workdir, step, victim):
  """SIGKILLs process ``victim`` once checkpoint ``step`` is committed; returns the seconds
  the other process took to end, its exit status and its stderr."""
  deadline = time.time() + LAUNCH_TIMEOUT_S
  while not os.path.exists(os.path.join(workdir, 'checkpoints', str(step),
                                        'commit_success.txt')):
    assert time.time() < deadline, f'checkpoint {step} never came'
    assert all(p.poll() is None for p, _ in pair), [log.read_text()[-2000:] for _, log in pair]
    time.sleep(0.05)
  pair[victim][0].send_signal(signal.SIGKILL)
  killed = time.time()
  survivor, log = pair[1 - victim]
  try:
    survivor.wait(timeout=STOP_LIMIT_S)
  except subprocess.TimeoutExpired:
    survivor.kill()
    pytest.fail(f'process {1 - victim} still ran {STOP_LIMIT_S} s after process {victim} '
                'was killed')
  pair[victim][0].wait()
  return time.time() - killed, survivor.returncode, log.read_text()


def _last_line(stderr: str) -> str:
  return [line for line in stderr.splitlines() if line.strip()][-1]


def _check_placements(tmp_path, overrides=OVERRIDES):
  """Each record of ``placed.jsonl``: the process placed exactly its half of every global
  batch of its call, [n, B/2, ...] (or [n, S, B/2, ...]), and nothing of the other half."""
  from configs import test as test_config  # pylint: disable=g-import-not-at-top
  from ltgans_jax.data import batching, sequences  # pylint: disable=g-import-not-at-top
  config = test_config.get_config()
  config.update_from_flattened_dict(overrides)
  tasks = sequences.build_sequence(config)
  half = config.train.batch_size // 2
  records = [json.loads(line) for line in (tmp_path / 'placed.jsonl').read_text().splitlines()]
  assert {r['process'] for r in records} == {0, 1}
  for record in records:
    p, task = record['process'], record['task']
    per_seed = []
    for seed in record['seeds']:
      batches = batching.TaskBatches(tasks[task].train.images, config.train.batch_size, seed,
                                     task)
      per_seed.append(np.stack([batches[record['first_step'] + i][p * half:(p + 1) * half]
                                for i in range(record['num_steps'])]))
    expected = per_seed[0] if config.train.num_seeds == 1 else np.stack(per_seed, axis=1)
    assert record['shape'] == list(expected.shape)
    assert record['digest'] == hashlib.sha256(expected.tobytes()).hexdigest(), record
  # Both processes placed every step of both tasks (a resumed launch places a step again).
  for p in (0, 1):
    steps = {(r['task'], r['first_step'] + i) for r in records if r['process'] == p
             for i in range(r['num_steps'])}
    assert steps == {(t, s) for t in range(len(tasks))
                     for s in range(config.train.steps_per_task)}


def _check_writes(tmp_path):
  """Process 0 wrote every file of the workdir outside the checkpoints; process 1 none."""
  records = [json.loads(line) for line in (tmp_path / 'writes.jsonl').read_text().splitlines()]
  assert {r['path'] for r in records if r['process'] == 0} >= {'report.md', 'config.json'}
  assert [r['path'] for r in records if r['process'] == 1] == []


def _files(workdir):
  """The workdir's files outside the checkpoints and the TensorBoard folders (whose event
  files are named by the time they were opened)."""
  found = set()
  for folder, _, names in os.walk(workdir):
    for name in names:
      relative = os.path.relpath(os.path.join(folder, name), workdir)
      parts = relative.split(os.sep)
      if parts[0] != 'checkpoints' and 'tensorboard' not in parts:
        found.add(relative)
  return found


def test_two_processes_train_kill_and_resume_to_the_one_process_parameters(tmp_path):
  reference = str(tmp_path / 'reference')
  one_process = _start_reference(reference, tmp_path)
  workdir = str(tmp_path / 'two')

  # Launch 1: process 1 killed in task 1; process 0, the coordinator, ends by itself.
  pair = _start_pair(workdir, tmp_path, 'launch1')
  seconds, code, stderr = _kill_when(pair, workdir, 10, victim=1)
  print(f'process 1 killed: process 0 ended after {seconds:.2f} s, status {code}')
  assert code == 1
  assert 'another process of this run ended' in _last_line(stderr), stderr[-2000:]

  # Launch 2 resumes; process 0 (the coordinator) killed in task 2; process 1 ends by itself.
  pair = _start_pair(workdir, tmp_path, 'launch2')
  seconds, code, stderr = _kill_when(pair, workdir, STEPS // 2 + 10, victim=0)
  print(f'process 0 killed: process 1 ended after {seconds:.2f} s, status {code}')
  assert code == 1
  # Either sentence: our own, where Python sees the failed collective first, or the one said
  # when JAX's runtime ends the process (multihost.end_with_a_sentence_on_abort).
  assert re.search(r'another process of this run ended|was ended by JAX\'s runtime',
                   _last_line(stderr)), stderr[-2000:]

  # Launch 3 resumes to the end: the reference's parameters, bit for bit.
  pair = _start_pair(workdir, tmp_path, 'launch3')
  results = _finish_pair(pair)
  assert [code for code, _ in results] == [0, 0], [err[-2000:] for _, err in results]
  _finish_reference(one_process)
  _assert_bit_identical(workdir, reference, STEPS)
  _check_placements(tmp_path)
  _check_writes(tmp_path)

  # One run's files: the same set a one-process run writes, by process 0 (which held the
  # lock); one set of checkpoints.
  assert _files(workdir) == _files(reference)
  with open(os.path.join(workdir, 'lock.json')) as f:
    assert json.load(f)['pid'] == pair[0][0].pid
  assert sorted(os.listdir(os.path.join(workdir, 'checkpoints'))) == sorted(
      os.listdir(os.path.join(reference, 'checkpoints')))
  report = json.loads(open(os.path.join(workdir, 'report.json')).read())
  assert report['tasks'] == ['digits[0-4]', 'digits[5-9]']
  assert [r['steps'] for r in report['records']] == [STEPS // 2, STEPS // 2]


def test_two_seeds_across_two_processes(tmp_path):
  reference = str(tmp_path / 'reference')
  one_process = _start_reference(reference, tmp_path, SEED_OVERRIDES)
  workdir = str(tmp_path / 'two')
  results = _finish_pair(_start_pair(workdir, tmp_path, 'seeds', SEED_OVERRIDES))
  assert [code for code, _ in results] == [0, 0], [err[-2000:] for _, err in results]
  _finish_reference(one_process)
  _assert_bit_identical(workdir, reference, SEED_OVERRIDES['train.steps_per_task'])
  _check_placements(tmp_path, SEED_OVERRIDES)
  _check_writes(tmp_path)
  assert _files(workdir) == _files(reference)
  assert {'seed0/report.md', 'seed1/report.md', 'report.md'} <= _files(workdir)
