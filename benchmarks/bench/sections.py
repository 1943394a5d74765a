"""The in-process parts of the benchmark, each adding its rows to the report: one image size
with every implementation interleaved, the lifelong state's size, and JAX's batch scaling."""

from __future__ import annotations

import gc

from benchmarks.bench.impls import (JaxImpl, TorchImpl, jax_param_counts, lifelong_state_sizes,
                                    make_config)
from benchmarks.bench.measure import loadavg, measure_interleaved
from benchmarks.bench.settings import KINDS, SHORT_MODE, impl_name


def torch_device(platform_name: str) -> str:
  return 'cuda' if platform_name == 'gpu' else 'cpu'


def run_case(image_size, jax_modes, torch_variants, sizes, platform_name, report,
             try_full_compile):
  """One image size: every implementation, interleaved, for the three steps."""
  print(f'\n== {image_size}x{image_size}x3', flush=True)
  impls, params, errors = {}, {}, {}
  for mode in jax_modes:
    name = impl_name('jax', mode)
    impls[name] = JaxImpl(make_config(sizes, image_size, mode))
    params[name] = impls[name].param_counts
  for variant, mode in torch_variants:
    name = impl_name(variant, mode)
    config = make_config(sizes, image_size, mode)
    try:
      impls[name] = TorchImpl(config, variant, torch_device(platform_name), try_full_compile)
      params[name] = impls[name].param_counts
      if f'jax {SHORT_MODE[mode]}' not in params:
        params[f'jax {SHORT_MODE[mode]}'] = jax_param_counts(config)
    except Exception as e:  # pylint: disable=broad-except
      errors[name] = f'{type(e).__name__}: {str(e).strip()[:500]}'
      print(f'    {name}: could not be built: {errors[name]}', flush=True)
  case = {'image_size': image_size, 'param_counts': params, 'build_errors': errors,
          'kinds': {}, 'loadavg': {}}
  for kind in KINDS:
    case['loadavg'][kind] = {'before': loadavg()}
    case['kinds'][kind] = measure_interleaved(impls, kind, sizes['rounds'], sizes['window_s'])
    case['loadavg'][kind]['after'] = loadavg()
  for impl in impls.values():
    if getattr(impl, 'variant', None) == 'compile':
      case['torch_compile'] = {'compiled': list(impl.model.compiled),
                               'errors': dict(impl.model.compile_errors),
                               'failed_full_compile_s': impl.failed_compile_s}
  report['cases'].append(case)
  del impls
  gc.collect()
  return case


def state_sizes(sizes, report):
  rows = []
  for image_size in sizes['sizes']:
    row = lifelong_state_sizes(make_config(sizes, image_size, 'pixel_shuffle'), sizes['tasks'])
    rows.append(row)
    print(f'    state bytes {image_size}px: start {row["start"]}, after tasks '
          f'{row["after"]}', flush=True)
  report['state_bytes'] = rows


def batch_scaling(sizes, report):
  print('\n== JAX batch scaling (32px, pixel_shuffle, full LAKD step)', flush=True)
  rows = []
  for b in sizes['batch_scaling']:
    impl = JaxImpl(make_config(sizes, 32, 'pixel_shuffle', batch=b))
    name = f'jax ps batch {b}'
    res = measure_interleaved({name: impl}, 'full', sizes['scaling_rounds'],
                              sizes['window_s'])[name]
    res['batch'] = b
    rows.append(res)
    del impl
    gc.collect()
  report['batch_scaling'] = rows
