"""How the benchmark times and weighs a step: the first call, interleaved timed windows and
ratios paired by round, the CPU time other processes took (/proc/stat), and this process's
memory (/proc/self/status, getrusage)."""

from __future__ import annotations

import os
import resource
import statistics
import time
import traceback
from typing import Any, Dict, List, Optional


def cpu_snapshot():
  """(wall s, busy CPU seconds of the whole machine, CPU seconds of this process)."""
  try:
    with open('/proc/stat') as f:
      values = [int(v) for v in f.readline().split()[1:9]]
    busy = (sum(values) - values[3] - values[4]) / os.sysconf('SC_CLK_TCK')
  except (OSError, ValueError):
    busy = float('nan')
  t = os.times()
  return time.perf_counter(), busy, t.user + t.system


def other_cores(start, end) -> float:
  """Average number of cores busy with other processes between two ``cpu_snapshot``s."""
  wall = end[0] - start[0]
  return max(0.0, ((end[1] - start[1]) - (end[2] - start[2])) / wall) if wall > 0 else 0.0


def timed_window(impl, kind, n: int) -> float:
  start = time.perf_counter()
  for _ in range(n):
    impl.step(kind)
  impl.sync(kind)
  return n / (time.perf_counter() - start)


def measure_interleaved(impls: Dict[str, Any], kind: str, rounds: int,
                        window_s: float) -> Dict[str, Dict]:
  """First call, two warm-up steps, then ``rounds`` rounds of one timed window per
  implementation (the order reversed every other round). Returns per-implementation results;
  an implementation that raises is reported with its error and left out of later rounds."""
  results, live = {}, {}
  for name, impl in impls.items():
    res = results[name] = {'kind': kind}
    try:
      start = time.perf_counter()
      impl.step(kind)
      impl.sync(kind)
      res['first_call_s'] = time.perf_counter() - start
      if getattr(impl, 'failed_compile_s', None) is not None and kind == 'adversarial':
        res['failed_full_compile_s'] = impl.failed_compile_s
      warm = []
      for _ in range(2):
        start = time.perf_counter()
        impl.step(kind)
        impl.sync(kind)
        warm.append(time.perf_counter() - start)
      res['steps_per_window'] = max(1, int(round(window_s / max(min(warm), 1e-6))))
      if impl.framework == 'jax':
        try:
          res['xla_memory'] = impl.memory_analysis(kind)
        except Exception as e:  # pylint: disable=broad-except
          res['xla_memory_error'] = repr(e)[:300]
      res['rates'], res['other_cores'] = [], []
      live[name] = impl
    except Exception as e:  # pylint: disable=broad-except
      res['error'] = f'{type(e).__name__}: {str(e).strip()[:500]}'
      print(f'    {name} {kind}: FAILED {res["error"]}', flush=True)
      traceback.print_exc(limit=3)
  names = list(live)
  for r in range(rounds):
    for name in (names if r % 2 == 0 else names[::-1]):
      if 'error' in results[name]:
        continue
      try:
        before = cpu_snapshot()
        results[name]['rates'].append(timed_window(live[name], kind,
                                                   results[name]['steps_per_window']))
        results[name]['other_cores'].append(other_cores(before, cpu_snapshot()))
      except Exception as e:  # pylint: disable=broad-except
        results[name]['error'] = f'{type(e).__name__}: {str(e).strip()[:500]}'
        print(f'    {name} {kind}: FAILED in round {r}: {results[name]["error"]}', flush=True)
  for name, res in results.items():
    rates = res.get('rates')
    if rates:
      res.update(median=statistics.median(rates), min=min(rates), max=max(rates))
    if 'median' in res:
      print(f'    {kind:12s} {name:30s} first call {res["first_call_s"]:7.2f}s  '
            f'{res["median"]:8.3f} steps/s  [{res["min"]:.3f}, {res["max"]:.3f}]  '
            f'x{res["steps_per_window"]} steps/window  other load '
            f'{statistics.mean(res["other_cores"]):.2f} cores', flush=True)
  return results


def paired_ratio(results: Dict[str, Dict], a: str, b: str,
                 max_other: Optional[float] = None) -> Optional[Dict[str, float]]:
  """Median (and range) over rounds of rate(a) / rate(b), rounds matched by index; with
  ``max_other``, only the rounds in which other processes kept at most that many cores busy
  during both windows."""
  ra, rb = results.get(a, {}).get('rates'), results.get(b, {}).get('rates')
  if not ra or not rb:
    return None
  oa = results[a].get('other_cores') or [0.0] * len(ra)
  ob = results[b].get('other_cores') or [0.0] * len(rb)
  ratios = [x / y for x, y, u, v in zip(ra, rb, oa, ob)
            if max_other is None or max(u, v) <= max_other]
  if not ratios:
    return {'n': 0}
  return {'median': statistics.median(ratios), 'min': min(ratios), 'max': max(ratios),
          'n': len(ratios)}


QUIET = 0.25  # cores busy with other processes, at most, for a round to count as quiet


def loadavg() -> Optional[List[float]]:
  try:
    return [round(x, 2) for x in os.getloadavg()]
  except OSError:
    return None


def proc_status_kb(field: str) -> Optional[int]:
  try:
    with open('/proc/self/status') as f:
      for line in f:
        if line.startswith(field + ':'):
          return int(line.split()[1])
  except OSError:
    pass
  return None


def reset_peak_rss() -> bool:
  """Resets the kernel's peak-RSS mark (VmHWM) of this process; False where not possible."""
  try:
    with open('/proc/self/clear_refs', 'w') as f:
      f.write('5')
    return True
  except OSError:
    return False


def max_rss_bytes() -> int:
  """getrusage's max RSS of this process over its whole life (kB on Linux)."""
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def rss_bytes() -> int:
  return (proc_status_kb('VmRSS') or 0) * 1024
