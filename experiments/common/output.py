"""What a script writes into ``<out>``: README.md, results.json and copied pictures; ``finish``
appends the runs and the machine and writes both files."""

from __future__ import annotations

import datetime
import glob
import json
import os
import shutil
from typing import List, Mapping, Optional, Sequence, Tuple

from .machine import machine_description
from .readback import load_report
from .runner import RunResult, shell_line
from .tables import runs_section


def copy_pictures(workdir: str, patterns: Sequence[str], dest_dir: str,
                  prefix: str = '') -> List[str]:
  """Copies workdir files matching the glob patterns into dest_dir (as prefix + basename);
  returns the copies' paths."""
  os.makedirs(dest_dir, exist_ok=True)
  copied = []
  for pattern in patterns:
    for path in sorted(glob.glob(os.path.join(workdir, pattern))):
      target = os.path.join(dest_dir, prefix + os.path.basename(path))
      shutil.copyfile(path, target)
      copied.append(target)
  return copied


def reset_outputs(out: str) -> None:
  """Removes what an earlier invocation wrote into ``out`` (README, results.json, plots,
  figures) so that no stale picture survives; workdirs and logs are left alone."""
  for name in ('figures', 'plots'):
    shutil.rmtree(os.path.join(out, name), ignore_errors=True)
  for name in ('README.md', 'results.json'):
    if os.path.exists(os.path.join(out, name)):
      os.remove(os.path.join(out, name))


def write_readme(out: str, title: str, sections: Sequence[Tuple[str, str]]) -> str:
  """<out>/README.md: a title, then (heading, markdown) sections."""
  lines = [f'# {title}', '',
           f'Written by the experiment script on '
           f'{datetime.datetime.now().isoformat(timespec="seconds")}.']
  for heading, body in sections:
    lines += ['', f'## {heading}', '', body.rstrip()]
  return write_markdown(out, lines)


def write_markdown(out: str, lines: Sequence[str], name: str = 'README.md') -> str:
  """<out>/<name> from markdown ``lines``; returns its path."""
  os.makedirs(out, exist_ok=True)
  path = os.path.join(out, name)
  with open(path, 'w') as f:
    f.write('\n'.join(lines) + '\n')
  return path


def write_json(path: str, payload) -> None:
  os.makedirs(os.path.dirname(path) or '.', exist_ok=True)
  with open(path, 'w') as f:
    json.dump(payload, f, indent=1, default=str)


def results_payload(results: Sequence[RunResult], extra: Optional[Mapping] = None) -> dict:
  """What <out>/results.json holds: every run with its command, time and final rows."""
  runs = []
  for r in results:
    report = load_report(r.workdir) if r.ok else None
    runs.append({
        'name': r.name, 'command': shell_line(r.command), 'seconds': r.seconds,
        'ok': r.ok, 'error': r.error, 'reused': r.reused, 'resumed': r.resumed,
        'tasks': report['tasks'] if report else None,
        'final': (report['records'][-1]['evaluation'] if report and report['records']
                  else None),
    })
  return {'runs': runs, **(extra or {})}


def finish(out: str, title: str, sections: List[Tuple[str, str]], results: Sequence[RunResult],
           extra: Optional[Mapping] = None) -> str:
  """Appends the runs and the machine to ``sections``, writes <out>/README.md and
  <out>/results.json, prints a two-line summary; returns the README's path."""
  sections = list(sections) + [('Runs', runs_section(results, out)),
                               ('Machine', machine_description(results))]
  readme = write_readme(out, title, sections)
  write_json(os.path.join(out, 'results.json'), results_payload(results, extra))
  print(f'{title}\nREADME: {readme}')
  return readme
