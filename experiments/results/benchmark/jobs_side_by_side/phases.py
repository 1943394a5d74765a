"""Where a driver run's wall time went: python phases.py WORKDIR [WORKDIR ...].

Per workdir: the FID feature network's training (from the log's timestamps), each task's
training (``report.json``: steps, seconds, steps/s) and the whole run (``experiment_run.json``).
"""

import datetime
import json
import os
import re
import sys

STAMP = re.compile(r'^I\d{4} (\d\d:\d\d:\d\d\.\d+) ')


def stamp(line):
  match = STAMP.match(line)
  return datetime.datetime.strptime(match.group(1), '%H:%M:%S.%f') if match else None


def feature_net_seconds(log_path):
  start = end = None
  with open(log_path) as f:
    for line in f:
      if 'Training the FID feature network' in line:
        start = stamp(line)
      elif 'Feature network accuracy' in line:
        end = stamp(line)
  return (end - start).total_seconds() if start and end else None


def main(workdirs):
  for workdir in workdirs:
    workdir = workdir.rstrip('/')
    with open(os.path.join(workdir, 'report.json')) as f:
      records = json.load(f)['records']
    with open(os.path.join(workdir, 'experiment_run.json')) as f:
      total = json.load(f)['seconds']
    net = feature_net_seconds(workdir + '.log')
    tasks = ', '.join(f'task {i + 1} {r["steps"]} steps {r["seconds"]:.0f} s '
                      f'({r["steps"] / r["seconds"]:.2f} steps/s)' for i, r in enumerate(records))
    print(f'{os.path.basename(workdir)}: total {total:.0f} s; feature net '
          f'{"-" if net is None else f"{net:.0f} s"}; {tasks}')


if __name__ == '__main__':
  main(sys.argv[1:])
