"""The benchmark's report: ``results.json`` (everything measured), ``results.md`` (one table
per section, written from the JSON's dict alone) and ``steps_per_sec.png``."""

from __future__ import annotations

import json
import os
import statistics
from typing import Dict, List, Optional

from benchmarks.bench.measure import QUIET, paired_ratio
from benchmarks.bench.settings import KIND_NAMES, KINDS


def fmt_bytes(n) -> str:
  if n is None:
    return 'n/a'
  return f'{n / 2**20:.0f} MiB' if n >= 2**20 else f'{n / 1024:.1f} KiB'


def fmt_rate(res) -> str:
  if not res or 'median' not in res:
    return 'failed' if res and 'error' in res else 'n/a'
  return f'{res["median"]:.3f}'


def fmt_ratio(r, bold=True) -> str:
  if not r or 'median' not in r:
    return 'n/a'
  b = '**' if bold else ''
  return f'{b}{r["median"]:.2f}x{b} [{r["min"]:.2f}, {r["max"]:.2f}]'


def fmt_quiet(res, a, b) -> str:
  r = paired_ratio(res, a, b, QUIET)
  if not r:
    return 'n/a'
  return f'{r["median"]:.2f}x ({r["n"]})' if r.get('n') else '(0)'


def _mean_other(r) -> str:
  cores = r.get('other_cores')
  return f'{statistics.mean(cores):.2f}' if cores else ''


def write_report(report: Dict, out_dir: str) -> None:
  """``results.json`` and ``results.md`` in ``out_dir``: a head, then one section per part of
  ``report`` that is there (a run in progress has only some)."""
  os.makedirs(out_dir, exist_ok=True)
  with open(os.path.join(out_dir, 'results.json'), 'w') as f:
    json.dump(report, f, indent=1, default=str)
  lines = head_lines(report)
  for section in (comparison_lines, resample_lines, measurement_lines, param_count_lines,
                  memory_lines, torch_compile_lines, batch_scaling_lines, state_bytes_lines,
                  device_scaling_lines, xla_flags_lines, notes_lines):
    lines += section(report)
  with open(os.path.join(out_dir, 'results.md'), 'w') as f:
    f.write('\n'.join(lines))


def head_lines(report: Dict) -> List[str]:
  """The title, the machine, software, command and sizes, and how the timing works."""
  m, sz = report['machine'], report['sizes']
  return [f'# LT-GANs step benchmark: JAX vs PyTorch ({report["platform"]})', '',
          f'- Machine: {m["cpu_model"]}, {m["cpu_count"]} logical cores '
          f'({m["cpu_affinity"]} usable by this process), {m["memory_gib"]} GiB RAM; GPU: '
          f'{m["gpu"] or "none"}.',
          f'- Software: Python {m["python"]}; jax {m["jax"]}, jaxlib {m["jaxlib"]}, flax '
          f'{m["flax"]}, optax {m["optax"]}; torch {m["torch"]} ({m["torch_threads"]} threads'
          f'{", " + m["torch_notes"] if m.get("torch_notes") else ""}); numpy {m["numpy"]}.',
          f'- XLA_FLAGS: `{m["xla_flags"] or "(unset)"}`; JAX backend: {report["platform"]}.',
          f'- Run: `{report["command"]}` started {report["date"]}, git {report["git"]}; wall '
          f'time {report.get("wall_s", float("nan")) / 60:.1f} min; load average (1/5/15 min) at '
          f'start {report["loadavg_start"]}, at end {report.get("loadavg_end", "(running)")}.',
          f'- Sizes: batch {sz["batch"]}, z={sz["latent"]}, widths {sz["width"]} (generators, '
          f'critic, Student), Student latent {sz["vae_latent"]}, 3 channels; '
          f'{sz["rounds"]} timed windows of about {sz["window_s"]} s (at least one step) per '
          'implementation and step.'
          + (' **Quick smoke run: tiny sizes, not a measurement.**' if report['quick'] else ''),
          '',
          'Method: all implementations of one image size live in this one process. For each '
          'step every implementation is called once (the *first call*: JAX traces and '
          'compiles, torch.compile compiles, eager PyTorch creates its kernels), twice more to '
          'warm up, and then timed in rounds of one window each, the order reversed every '
          'other round. steps/s is the median over windows [min, max]; a ratio A / B is the '
          'median over rounds of A\'s rate over B\'s rate in the same round [min, max]. '
          '*Other load* is how many cores other processes kept busy during the timed windows '
          '(from /proc/stat): this machine is shared, and PyTorch\'s OpenMP threads suffer more '
          'from a busy core than XLA\'s thread pool does.', '']


def comparison_lines(report: Dict) -> List[str]:
  """JAX (pixel shuffle) against eager PyTorch in both modes and torch.compile, per step."""
  lines = ['## JAX vs PyTorch', '',
           '| image | step | JAX ps steps/s | torch eager ps | **JAX ps / eager ps** | '
           'torch eager strided | **JAX ps / eager strided** | torch.compile ps | '
           '**JAX ps / compile ps** | quiet rounds only: JAX ps / eager ps, / eager strided, '
           '/ compile ps (rounds) | other load (cores) |',
           '|---|---|---|---|---|---|---|---|---|---|---|']
  for case in report['cases']:
    for kind, res in case['kinds'].items():
      others = [c for r in res.values() for c in r.get('other_cores', [])]
      lines.append('| ' + ' | '.join([
          f'{case["image_size"]}px', KIND_NAMES[kind], fmt_rate(res.get('jax ps')),
          fmt_rate(res.get('torch eager ps')),
          fmt_ratio(paired_ratio(res, 'jax ps', 'torch eager ps')),
          fmt_rate(res.get('torch eager strided')),
          fmt_ratio(paired_ratio(res, 'jax ps', 'torch eager strided')),
          fmt_rate(res.get('torch.compile ps')),
          fmt_ratio(paired_ratio(res, 'jax ps', 'torch.compile ps')),
          ', '.join(fmt_quiet(res, 'jax ps', n) for n in (
              'torch eager ps', 'torch eager strided', 'torch.compile ps')),
          f'{statistics.mean(others):.2f}' if others else '']) + ' |')
  lines += ['', '"ps": `model.resample=\'pixel_shuffle\'` (the default); "strided": 4x4 '
            'stride-2 (transposed) convolutions, the textbook DCGAN layers and PyTorch\'s '
            'natural form. Ratios > 1: JAX is faster. *Quiet rounds*: only the rounds in which '
            f'other processes kept at most {QUIET} cores busy during both windows.', '']
  return lines


def resample_lines(report: Dict) -> List[str]:
  """JAX pixel shuffle against JAX strided (32px), when both were timed."""
  if not any('jax strided' in c['kinds'].get('full', {}) for c in report['cases']):
    return []
  lines = ['## Resample modes (32px)', '',
           '| step | JAX ps | JAX strided | **JAX ps / JAX strided** | torch eager ps | '
           'torch eager strided | JAX strided / eager strided |',
           '|---|---|---|---|---|---|---|']
  for case in report['cases']:
    if 'jax strided' not in case['kinds'].get('full', {}):
      continue
    for kind, res in case['kinds'].items():
      lines.append('| ' + ' | '.join([
          KIND_NAMES[kind], fmt_rate(res.get('jax ps')), fmt_rate(res.get('jax strided')),
          fmt_ratio(paired_ratio(res, 'jax ps', 'jax strided')),
          fmt_rate(res.get('torch eager ps')), fmt_rate(res.get('torch eager strided')),
          fmt_ratio(paired_ratio(res, 'jax strided', 'torch eager strided'))]) + ' |')
  lines.append('')
  return lines


def measurement_lines(report: Dict) -> List[str]:
  """Every implementation and step: first call, steps/s, XLA temp buffers, ratio to JAX."""
  lines = ['## All measurements', '',
           '| image | step | implementation | first call (s) | steps/s median [min, max] | '
           'steps/window | XLA temp buffers | JAX ps / this | other load (cores) |',
           '|---|---|---|---|---|---|---|---|---|']
  for case in report['cases']:
    for kind, res in case['kinds'].items():
      for name, r in res.items():
        if 'median' not in r:
          lines.append(f'| {case["image_size"]}px | {KIND_NAMES[kind]} | {name} | '
                       f'{r.get("first_call_s", float("nan")):.2f} | failed: '
                       f'{r.get("error", "")[:200]} | | | | |')
          continue
        first = f'{r["first_call_s"]:.2f}'
        if r.get('failed_full_compile_s') is not None:
          first += f' (incl. {r["failed_full_compile_s"]:.1f} failed full compile)'
        temp = r.get('xla_memory', {}).get('temp_size_in_bytes')
        ratio = '' if name == 'jax ps' else (fmt_ratio(paired_ratio(res, 'jax ps', name))
                                              + f'; quiet {fmt_quiet(res, "jax ps", name)}')
        lines.append(f'| {case["image_size"]}px | {KIND_NAMES[kind]} | {name} | {first} | '
                     f'{r["median"]:.3f} [{r["min"]:.3f}, {r["max"]:.3f}] | '
                     f'{r["steps_per_window"]} | '
                     f'{fmt_bytes(temp) if temp is not None else ""} | {ratio} | '
                     f'{_mean_other(r)} |')
  lines.append('')
  return lines


def param_count_lines(report: Dict) -> List[str]:
  """Each implementation's parameter counts, checked against JAX's."""
  lines = ['## Parameter counts', '',
           '| image | implementation | generator | critic | Student | same as JAX |',
           '|---|---|---|---|---|---|']
  for case in report['cases']:
    counts = case['param_counts']
    for name, c in counts.items():
      ref = counts.get(f'jax {name.split()[-1]}')
      same = '' if name.startswith('jax') else ('yes' if c == ref else f'**NO** (JAX {ref})')
      lines.append(f'| {case["image_size"]}px | {name} | {c["teacher"]:,} | {c["critic"]:,} | '
                   f'{c["student"]:,} | {same} |')
  lines.append('')
  return lines


def memory_lines(report: Dict) -> List[str]:
  """Peak memory per step of each implementation alone in a fresh process."""
  if not report.get('memory'):
    return []
  gpu_run = report['platform'] == 'gpu'
  how = {v.get('how') for r in report['memory'] for v in r.get('kinds', {}).values()}
  lines = ['## Peak memory (each implementation alone in a fresh process)', '',
           'Per step: ' + '; '.join(sorted(h for h in how if h)) + '. '
           + ('' if gpu_run else
              '"above import" subtracts the RSS right after importing the framework; '
              '"peak RSS of the subprocess" is its VmHWM since it started (which for JAX '
              'includes the compiler\'s peak; `resource.getrusage` would not do in a child '
              'process, where ru_maxrss starts at the parent\'s RSS at the fork).'), '',
           '| image | implementation | ' + ' | '.join(KIND_NAMES[k] for k in KINDS)
           + ('' if gpu_run else ' | RSS after import | peak RSS of the subprocess |'),
           '|---|---|' + '---|' * len(KINDS) + ('' if gpu_run else '---|---|')]
  for r in report['memory']:
    if 'error' in r:
      lines.append(f'| {r["image_size"]}px | {r["name"]} | failed: {r["error"][:200]} |'
                   + ' |' * (len(KINDS) - 1 + (0 if gpu_run else 2)))
      continue
    cells = []
    for k in KINDS:
      v = r['kinds'].get(k, {})
      cell = fmt_bytes(v.get('peak_bytes'))
      if not gpu_run and v.get('peak_bytes'):
        cell += f' ({fmt_bytes(v["peak_bytes"] - r["rss_after_import"])} above import)'
      cells.append(cell)
    if not gpu_run:
      cells += [fmt_bytes(r.get('rss_after_import')), fmt_bytes(r.get('max_rss_bytes'))]
    lines.append(f'| {r["image_size"]}px | {r["name"]} | ' + ' | '.join(cells) + ' |')
  lines.append('')
  return lines


def torch_compile_lines(report: Dict) -> List[str]:
  """What torch.compile compiled and what failed, or why it was not run."""
  compiled = [(c['image_size'], c['torch_compile']) for c in report['cases']
              if 'torch_compile' in c]
  if compiled:
    lines = ['## torch.compile', '']
    for size, tc in compiled:
      lines.append(f'- {size}px: compiled (inductor): {"; ".join(tc["compiled"])}. Eager: the '
                   'critic pass of the gradient penalty (`autograd.grad(create_graph=True)` and '
                   'the double backward through it) and the optimiser steps (fused Adam).')
      for what, err in tc['errors'].items():
        lines.append(f'  - {what}: failed, `{err}`'
                     + (f', after {tc["failed_full_compile_s"]:.1f} s'
                        if tc.get('failed_full_compile_s') else ''))
    lines.append('')
    return lines
  if report.get('torch_compile_note'):
    return ['## torch.compile', '', report['torch_compile_note'], '']
  return []


def batch_scaling_lines(report: Dict) -> List[str]:
  """JAX's full step against the batch size."""
  if not report.get('batch_scaling'):
    return []
  lines = ['## JAX batch scaling (32px, ps, full LAKD step)', '',
           '| batch | first call (s) | steps/s median [min, max] | examples/s | '
           'XLA temp buffers | other load (cores) |', '|---|---|---|---|---|---|']
  for r in report['batch_scaling']:
    if 'median' not in r:
      lines.append(f'| {r["batch"]} | failed: {r.get("error", "")[:150]} | | | | |')
      continue
    lines.append(f'| {r["batch"]} | {r["first_call_s"]:.2f} | {r["median"]:.3f} '
                 f'[{r["min"]:.3f}, {r["max"]:.3f}] | {r["median"] * r["batch"]:.1f} | '
                 f'{fmt_bytes(r.get("xla_memory", {}).get("temp_size_in_bytes"))} | '
                 f'{_mean_other(r)} |')
  lines.append('')
  return lines


def state_bytes_lines(report: Dict) -> List[str]:
  """The lifelong state's bytes after 1, 5 and 10 tasks, and the networks' parameter bytes."""
  if not report.get('state_bytes'):
    return []
  tasks = report['sizes']['tasks']
  lines = ['## Lifelong state size (`state.state_bytes`)', '',
           '| image | at the start | ' + ' | '.join(f'after {t} tasks' for t in tasks)
           + ' | parameters: Teacher / Assistant / critic / Student |',
           '|---' * (len(tasks) + 3) + '|']
  for r in report['state_bytes']:
    after = [r['after'].get(t, r['after'].get(str(t))) for t in tasks]
    p = r['params']
    lines.append(f'| {r["image_size"]}px | {r["start"]:,} B | '
                 + ' | '.join(f'{a:,} B' for a in after)
                 + f' | {fmt_bytes(p["teacher"])} / {fmt_bytes(p["assistant"])} / '
                   f'{fmt_bytes(p["critic"])} / {fmt_bytes(p["student"])} |')
  lines += ['', '"After k tasks": `begin_next_task` applied k times (role swap, fresh '
            'Assistant optimiser state). The state holds no data and no per-task copies.', '']
  return lines


def device_scaling_lines(report: Dict) -> List[str]:
  """The full step with the batch sharded over 1, 2 and 4 simulated CPU devices."""
  if not report.get('device_scaling'):
    return []
  lines = ['## Simulated devices (CPU, `--xla_force_host_platform_device_count=N`, 32px ps, '
           'full LAKD step)', '',
           'One subprocess per N. The batch is sharded over a 1-D `data` mesh and the state '
           'replicated, as in `train.train_and_evaluate`. The simulated devices share the '
           'same cores, so this shows what partitioning costs, not a speed-up.', '',
           '| devices | first call (s) | steps/s median [min, max] | other load (cores) |',
           '|---|---|---|---|']
  for r in report['device_scaling']:
    full = r.get('results', {}).get('full', {})
    if 'median' in full:
      lines.append(f'| {r.get("devices", r["requested_devices"])} | '
                   f'{full["first_call_s"]:.2f} | {full["median"]:.3f} '
                   f'[{full["min"]:.3f}, {full["max"]:.3f}] | {_mean_other(full)} |')
    else:
      lines.append(f'| {r["requested_devices"]} | failed: '
                   f'{(r.get("error") or full.get("error", ""))[:200]} | | |')
  lines.append('')
  return lines


def xla_flags_lines(report: Dict) -> List[str]:
  """The three JAX steps with XLA's CPU defaults against ltgans_jax's flags, A B A B."""
  if not report.get('xla_flags_ab'):
    return []
  lines = ["## XLA:CPU flags: XLA's defaults against ltgans_jax's (32px ps; fresh "
           'subprocesses, alternating A B A B)', '',
           '`import ltgans_jax` turns off the YNNPACK library fusions of XLA:CPU '
           '(`ltgans_jax/cpu/xla_flags.py`; `LTGANS_XLA_CPU_DEFAULTS=0` keeps XLA\'s defaults). '
           'Every other JAX figure on this page is with that setting.', '',
           '| variant | run | XLA_FLAGS | ' + ' | '.join(
               KIND_NAMES[k] + ' steps/s' for k in KINDS) + ' |',
           '|---|---|---|---|---|---|']
  for r in report['xla_flags_ab']:
    res = r.get('results', {})
    head = f'| {r["variant"]} | {r["repeat"]} | `{r.get("xla_flags") or "(unset)"}` | '
    if 'error' in r:
      lines.append(head + f'failed: {r["error"][:200]} | | |')
    else:
      lines.append(head + ' | '.join(
          f'{res[k]["median"]:.3f} [{res[k]["min"]:.3f}, {res[k]["max"]:.3f}]'
          if 'median' in res.get(k, {}) else 'failed' for k in KINDS) + ' |')
  lines.append('')
  return lines


def notes_lines(report: Dict) -> List[str]:
  if not report.get('notes'):
    return []
  return ['## Notes', ''] + [f'- {n}' for n in report['notes']] + ['']


def save_figure(report: Dict, out_dir: str) -> Optional[str]:
  """A bar chart of steps/s per implementation (only when matplotlib is installed)."""
  try:
    import matplotlib  # pylint: disable=g-import-not-at-top
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  except ImportError:
    return None
  cases = report['cases']
  if not cases:
    return None
  fig, axes = plt.subplots(1, len(cases), figsize=(6 * len(cases), 4), squeeze=False)
  for ax, case in zip(axes[0], cases):
    names = list(dict.fromkeys(n for res in case['kinds'].values() for n in res))
    width = 0.8 / max(len(names), 1)
    for i, name in enumerate(names):
      vals = [case['kinds'][k].get(name, {}).get('median', 0.0) for k in KINDS]
      ax.bar([k + i * width for k in range(len(KINDS))], vals, width, label=name)
    ax.set_xticks([k + 0.4 - width / 2 for k in range(len(KINDS))])
    ax.set_xticklabels([KIND_NAMES[k] for k in KINDS])
    ax.set_ylabel('steps/s (median)')
    ax.set_title(f'{case["image_size"]}px, {report["platform"]}')
    ax.legend(fontsize=7)
  fig.tight_layout()
  path = os.path.join(out_dir, 'steps_per_sec.png')
  fig.savefig(path, dpi=100)
  plt.close(fig)
  return path
