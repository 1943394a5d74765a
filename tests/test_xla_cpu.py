"""The XLA:CPU flags that ``main`` applies before JAX starts (ltgans_jax/cpu/xla_flags.py)."""

import os
import subprocess
import sys

import pytest

from ltgans_jax.cpu import xla_flags

FLAG = '--xla_cpu_experimental_ynn_fusion_type='


def test_appends_the_flag_to_what_the_user_set():
  env = {'XLA_FLAGS': '--xla_force_host_platform_device_count=4'}
  assert xla_flags.apply_defaults(env, jaxlib_version='0.10.2', backends_started=False)
  assert env['XLA_FLAGS'].split() == ['--xla_force_host_platform_device_count=4', FLAG]
  env = {}
  assert xla_flags.apply_defaults(env, jaxlib_version='0.11.0rc1', backends_started=False)
  assert env['XLA_FLAGS'] == FLAG


def test_leaves_xla_flags_alone_when_it_should():
  cases = [
      # The user chose a value for the same flag: theirs wins.
      ({'XLA_FLAGS': '--xla_cpu_experimental_ynn_fusion_type=individual_dot'}, '0.10.2', False),
      # Opt-out.
      ({'LTGANS_XLA_CPU_DEFAULTS': '0'}, '0.10.2', False),
      # A jaxlib that may not know the flag (XLA aborts on unknown flags).
      ({}, '0.9.1', False),
      # JAX already started: too late, and a warning says so.
      ({}, '0.10.2', True),
  ]
  for env, version, started in cases:
    before = dict(env)
    assert not xla_flags.apply_defaults(env, jaxlib_version=version, backends_started=started)
    assert env == before


def test_importing_the_package_leaves_xla_flags_alone():
  env = {k: v for k, v in os.environ.items()
         if k not in ('XLA_FLAGS', xla_flags.OPT_OUT_VARIABLE)}
  code = 'import os, ltgans_jax, ltgans_jax.main; print(repr(os.environ.get("XLA_FLAGS", "")))'
  out = subprocess.run([sys.executable, '-c', code], env=env, capture_output=True, text=True,
                       check=True, cwd=os.path.dirname(os.path.dirname(__file__))).stdout
  assert out.strip() == "''"


def test_a_fresh_process_runs_with_the_flag_main_applies():
  env = {k: v for k, v in os.environ.items()
         if k not in ('XLA_FLAGS', xla_flags.OPT_OUT_VARIABLE)}
  # What ``main.run`` does first, then a JAX computation.
  code = ('import os; from ltgans_jax.cpu import xla_flags; xla_flags.apply_defaults(); '
          'import jax.numpy as jnp; '
          'print(float(jnp.ones(3).sum()), os.environ.get("XLA_FLAGS", ""))')
  out = subprocess.run([sys.executable, '-c', code], env=env, capture_output=True, text=True,
                       check=True, cwd=os.path.dirname(os.path.dirname(__file__))).stdout
  total, *flags = out.split()
  assert float(total) == 3.0
  expected = [FLAG] if xla_flags.apply_defaults({}, backends_started=False) else []
  assert flags == expected


def test_without_ynn_flag_removes_every_value_of_it_and_nothing_else():
  flags = ('--xla_force_host_platform_device_count=4 '
           '--xla_cpu_experimental_ynn_fusion_type=individual_dot --xla_cpu_use_onednn=true '
           + FLAG)
  assert xla_flags.without_ynn_flag(flags) == (
      '--xla_force_host_platform_device_count=4 --xla_cpu_use_onednn=true')
  assert xla_flags.without_ynn_flag('') == ''


def test_a_flags_file_name_gets_nothing_appended():
  """XLA reads an XLA_FLAGS value that does not start with -- as a file name; appending our
  flag would make it another name, shown to the user as if they had typed it."""
  env = {'XLA_FLAGS': '/etc/xla_flags.txt'}
  assert not xla_flags.apply_defaults(env, jaxlib_version='0.10.2', backends_started=False)
  assert env == {'XLA_FLAGS': '/etc/xla_flags.txt'}


def test_xla_complaints_are_read_and_pinned_on_a_flag():
  stderr = ('I1207 01:25:20.1 4085 x.cc:1] something\n'
            'E1207 01:25:35.022967    4866 debug_options_flags.cc:145] Illegal value for '
            "--xla_cpu_experimental_ynn_fusion_type 'LIBRARY_FUSION_TYPE_BOGUS'\n"
            'F1207 01:25:35.023034    4866 parse_flags_from_env.cc:220] Check failed: ...\n')
  complaint = xla_flags.xla_complaint(stderr)
  assert complaint == ("Illegal value for --xla_cpu_experimental_ynn_fusion_type "
                       "'LIBRARY_FUSION_TYPE_BOGUS'")
  tokens = ['--xla_dump_to=/tmp/d', '--xla_cpu_experimental_ynn_fusion_type=bogus']
  assert xla_flags.culprit(complaint, tokens) == tokens[1]
  assert xla_flags.culprit('Unknown flag in XLA_FLAGS: --xla_x=1', ['--a=1', '--xla_x=1']) == (
      '--xla_x=1')
  assert xla_flags.culprit("Couldn't interpret value abc for flag xla_a", ['--xla_a=abc']) == (
      '--xla_a=abc')
  assert xla_flags.xla_complaint('Traceback ...\nRuntimeError: other') is None


def test_no_xla_flags_means_no_probe():
  """Nor only ours, inherited from a parent that ran apply_defaults (the test suite's
  subprocesses): the probe costs seconds."""
  xla_flags.check_flags({}, probe=lambda *a: pytest.fail('probed'))
  xla_flags.check_flags({'XLA_FLAGS': f' {FLAG} '}, probe=lambda *a: pytest.fail('probed'))
