#!/usr/bin/env python
"""The step benchmark's command (the package ``benchmarks/bench/``; its docstring says what it
measures), and what its ``--_worker`` subprocesses run.

  python benchmarks/benchmark.py            # the full run (tens of minutes on 2 CPU cores)
  python benchmarks/benchmark.py --quick    # a smoke run at tiny sizes
  python benchmarks/benchmark.py --skip_torch
"""

import os
import sys

# The repository root, so that ``benchmarks``, ``experiments`` and ``ltgans_jax`` import from
# this checkout by their full names.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# pylint: disable=g-import-not-at-top,wrong-import-position
from experiments import common

common.setup()  # before jax: no memory preallocation, the package's XLA:CPU flags
from benchmarks.bench import main
# pylint: enable=g-import-not-at-top,wrong-import-position

if __name__ == '__main__':
  main.main()
