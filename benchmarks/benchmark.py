#!/usr/bin/env python
"""The step benchmark's command (the package ``experiments/bench/``; its docstring says what it
measures), and what its ``--_worker`` subprocesses run.

  python experiments/benchmark.py            # the full run (tens of minutes on 2 CPU cores)
  python experiments/benchmark.py --quick    # a smoke run at tiny sizes
  python experiments/benchmark.py --skip_torch
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # pylint: disable=g-import-not-at-top,wrong-import-position

common.setup()  # before jax: the repository root on sys.path, no memory preallocation
from bench import main  # pylint: disable=g-import-not-at-top,wrong-import-position

if __name__ == '__main__':
  main.main()
