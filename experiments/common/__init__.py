"""Helpers shared by the experiment scripts (one script per table or figure of the paper).

A script turns its flags into override sets (``cli``), runs ``python -m ltgans_jax.main`` once
per (method, setting) as a subprocess (``runner``: log streamed to ``<workdir>.log``, wall time
measured; rerunning resumes, a finished run is reused), reads back what the workdirs hold
(``readback``: ``report.json``, ``eval/*.json``), and writes ``<out>/README.md`` with markdown
tables (``tables``, ``nll``), the exact commands, wall times, the machine (``machine``) and how
the setting differs from the paper (``setting``), plus plots (``plots``) and copied figures
(``output``).

Nothing here changes the library; the one computation done in-process is
``student_reconstruction_error`` (Fig. 4b's MSE), from a workdir's final checkpoint.

Importing this package changes nothing in the process: a script calls ``setup()`` first, before
anything imports jax. The names below are re-exported so that a script's ``common.X`` reads the
same whichever module holds X.
"""

from __future__ import annotations

import os
import sys

# pylint: disable=unused-import  # re-exported for the scripts' common.X
from .cli import (BASELINE_METHODS, METHOD_TITLES, PAPER_METHODS, QUICK_OVERRIDES, SIZES,
                  add_common_flags, add_folder_flags, config_path, missing_folders,
                  parse_assignments, resolve_folders, setup_logging, size_overrides,
                  small_overrides, split_methods)
from .machine import (cpu_name, devices_from_report, git_commit, jax_devices,
                      machine_description)
from .nll import FID_METRICS, NLL_METRICS, nll_sections
from .output import (copy_pictures, finish, reset_outputs, results_payload, write_json,
                     write_markdown, write_readme)
from .paths import REPO_ROOT, display_path, rel
from .plots import grouped_bars, new_figure
from .readback import (Interval, SeedRow, config_from_workdir, final_interval, final_row,
                       interval_over_seeds, is_complete, load_eval, load_report, mean_or_none,
                       per_task_after_each, record_row, seed_summaries,
                       student_reconstruction_error, task_names)
from .runner import (RUN_RECORD, RunResult, build_command, cpu_sets, format_value, method_runs,
                     run_all, run_config, shell_line, stop_all)
from .setting import (IGNORED_DIFFERENCES, config_differences, flatten, load_config_file,
                      run_config_values, setting_section)
from .tables import (FORGETTING_KEYS, fmt, forgetting_cells, forgetting_table, markdown_table,
                     metric_description, methods_by_task_table, runs_section, seeds_note)
# pylint: enable=unused-import


def setup() -> None:
  """Prepares the process for a script; call it first, before anything imports jax.

  The scripts may compute in-process (MSE) while training subprocesses share a GPU: never let
  this process grab most of the accelerator's memory (read when jax starts, hence first). The
  repository root goes on ``sys.path`` so that ``configs`` and ``ltgans_jax`` import from this
  checkout when a script runs as ``python experiments/<script>.py``; the package's XLA:CPU flags
  are set (``ltgans_jax.cpu.xla_flags``).
  """
  os.environ.setdefault('XLA_PYTHON_CLIENT_PREALLOCATE', 'false')
  if REPO_ROOT not in sys.path:
    sys.path.insert(0, REPO_ROOT)
  # The XLA:CPU flags every ``python -m ltgans_jax.main`` run gets, for what runs in-process.
  from ltgans_jax.cpu import xla_flags  # pylint: disable=g-import-not-at-top
  xla_flags.apply_defaults()
