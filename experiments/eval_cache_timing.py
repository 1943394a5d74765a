"""Seconds spent evaluating at the task boundaries of a Split-MNIST run, with each seen test
set's reference statistics recomputed at every evaluation (``eval.cache_reference_stats=False``,
the behaviour before ``ltgans_jax/eval/reference_stats.py``) and cached.

Trains (or reuses) one Split-MNIST workdir (``configs/split_mnist_cpu.py``, few steps per task:
the states only need to exist), restores its task-boundary states, then evaluates every one of
them (``TaskEvaluator.evaluate``: everything a task boundary measures) once per variant and
round, in one process with one evaluator (one compilation, after an untimed warm-up), the
variants' order reversed every other round so that a drift of the machine's speed falls on all
of them alike:

* ``recompute``: at the boundary of task k, each of the k seen test sets and their union go
  through the feature network: sum_k (k + 1) passes over 2 * 500 * sum_k k images for 10 tasks
  of 500 test images;
* ``cache, cold``: an empty cache folder (a training run): each test set goes through the
  network once, at its first boundary; the union comes from the cached features;
* ``cache, warm``: the files the warm-up wrote, read by a fresh cache (a resumed run, or
  ``--mode=evaluate`` after training): no pass at all.

It also checks that the three give the same FID/KID/PRDC values. With ``--inception_weights``
the FID Inception features are measured too (slow on a CPU: a job for an accelerator).

Usage (from the repository root):

  python experiments/eval_cache_timing.py --data_dir=DIR [--quick] [--steps_per_task=50]
      [--num_examples=500] [--repeats=2] [--inception_weights=PATH] [--set KEY=VALUE ...]
      [--out=experiments/results/eval_cache_timing] [--workdir_root=DIR]
"""

from __future__ import annotations

import argparse
import logging
import os
import tempfile
import time
from typing import Dict, List, Sequence, Tuple

import common

common.setup()  # before anything imports jax (see common.setup)

NAME = 'eval_cache_timing'
CONFIG = 'configs/split_mnist_cpu.py'
VARIANTS = ('recompute', 'cache, cold', 'cache, warm')
# The rows whose values read the reference statistics (the NLLs and the audit do not).
GENERATIVE_PREFIXES = ('fid_', 'kid_', 'precision_', 'recall_', 'density_', 'coverage_')


def parse_args(argv=None) -> argparse.Namespace:
  parser = argparse.ArgumentParser(description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument('--data_dir', required=True, help='Folder holding mnist/ (IDX files).')
  parser.add_argument('--quick', action='store_true',
                      help='Tiny networks, 2 tasks of 4 steps, 16 test images per task: a '
                      'smoke test of the script; the seconds mean nothing.')
  parser.add_argument('--steps_per_task', type=int, default=50,
                      help='Training steps per task (the states only need to exist).')
  parser.add_argument('--num_examples', type=int, default=500,
                      help='eval.num_examples: test images per task.')
  parser.add_argument('--repeats', type=int, default=2, help='Rounds of all variants.')
  parser.add_argument('--inception_weights', default='',
                      help='pytorch-fid\'s pt_inception-2015-12-05-6726825d.pth: time the FID '
                      'Inception features too.')
  common.add_folder_flags(parser)
  args = parser.parse_args(argv)
  if args.repeats < 1:
    parser.error(f'--repeats={args.repeats}; it must be >= 1.')
  return args


def training_overrides(args: argparse.Namespace) -> Dict[str, object]:
  """The training run's config overrides, later entries winning: the timing setting,
  ``--quick``, ``--set``."""
  overrides: Dict[str, object] = {
      'data.data_dir': os.path.abspath(args.data_dir),
      'train.steps_per_task': args.steps_per_task,
      'eval.num_examples': args.num_examples,
  }
  if args.quick:
    overrides.update(common.QUICK_OVERRIDES)
    overrides['data.num_tasks'] = 2
  overrides.update(common.parse_assignments(args.set))
  return overrides


class TimedCache:
  """A ``reference_stats.ReferenceCache`` that adds up the seconds spent in it."""

  def __init__(self, cache):
    self.cache, self.seconds = cache, 0.0

  def _timed(self, method, *args):
    started = time.perf_counter()
    try:
      return method(*args)
    finally:
      self.seconds += time.perf_counter() - started

  def task(self, name: str, task: int):
    return self._timed(self.cache.task, name, task)

  def union(self, name: str, num_tasks: int):
    return self._timed(self.cache.union, name, num_tasks)


def _counting(extractor, counter: List[int]):
  """``extractor`` whose features function adds the number of images it sees to counter[0]."""
  from ltgans_jax.eval import reference_stats  # pylint: disable=g-import-not-at-top

  def features_fn(batch):
    counter[0] += len(batch)
    return extractor.features_fn(batch)
  return reference_stats.Extractor(features_fn, extractor.digest)


def variant_cache(extractors: dict, test_images: Sequence, variant: str, folder: str,
                  counter: List[int]) -> TimedCache:
  """A reference cache of ``extractors`` (name -> ``reference_stats.Extractor``) and
  ``test_images`` under ``variant``'s caching, with files in ``folder``."""
  from ltgans_jax.eval import reference_stats  # pylint: disable=g-import-not-at-top
  counted = {name: _counting(extractor, counter) for name, extractor in extractors.items()}
  return TimedCache(reference_stats.ReferenceCache(counted, test_images, folder,
                                                   enabled=variant != 'recompute'))


def evaluate_all(evaluator, states: Sequence) -> Tuple[float, List[dict]]:
  """(seconds, rows) of evaluating every boundary state in order."""
  started = time.perf_counter()
  rows = [evaluator.evaluate(state, task) for task, state in enumerate(states)]
  return time.perf_counter() - started, rows


def largest_relative_difference(rows_a: Sequence[dict], rows_b: Sequence[dict]) -> float:
  """max |a - b| / max(|b|, 1e-12) over the generative metrics of two runs' rows."""
  largest = 0.0
  for row_a, row_b in zip(rows_a, rows_b):
    for metric in row_b:
      if metric.startswith(GENERATIVE_PREFIXES):
        for a, b in zip(row_a[metric], row_b[metric]):
          largest = max(largest, abs(a - b) / max(abs(b), 1e-12))
  return largest


def time_variants(evaluator, states: Sequence, repeats: int, scratch: str) -> dict:
  """Per variant: the seconds of each round, the seconds in the reference statistics, the
  reference passes and images, and the rows of its last round; cache files go under
  ``scratch``."""
  warm_folder = os.path.join(scratch, 'warm')
  extractors, test_images = evaluator.references.extractors, evaluator.test_images
  # Untimed: a whole uncached pass compiles every program an evaluation needs (each boundary's
  # and the uncached unions' shapes included); then the last state, which reads every task,
  # fills the warm variant's folder.
  evaluator.references = variant_cache(extractors, test_images, 'recompute', '', [0])
  evaluate_all(evaluator, states)
  evaluator.references = variant_cache(extractors, test_images, 'cache, cold', warm_folder, [0])
  evaluator.evaluate(states[-1], len(states) - 1)
  results = {v: {'seconds': [], 'reference_seconds': [], 'passes': 0, 'images': 0}
             for v in VARIANTS}
  for round_ in range(repeats):
    folders = {'recompute': '', 'cache, cold': os.path.join(scratch, f'cold{round_}'),
               'cache, warm': warm_folder}
    for variant in (VARIANTS if round_ % 2 == 0 else VARIANTS[::-1]):
      counter = [0]
      evaluator.references = variant_cache(extractors, test_images, variant, folders[variant],
                                           counter)
      seconds, rows = evaluate_all(evaluator, states)
      record = results[variant]
      record['seconds'].append(seconds)
      record['reference_seconds'].append(evaluator.references.seconds)
      record['passes'], record['images'] = evaluator.references.cache.passes, counter[0]
      record['rows'] = rows
      logging.info('round %d, %s: %.1f s (%.1f s in the reference statistics, %d passes)',
                   round_ + 1, variant, seconds, evaluator.references.seconds,
                   record['passes'])
  return results


def _mean(values: Sequence[float]) -> float:
  return sum(values) / len(values)


def timing_table(results: dict, num_boundaries: int) -> str:
  """The markdown table of ``time_variants``' results, and a line on what the cache saves."""
  baseline = _mean(results['recompute']['seconds'])
  rows = []
  for variant, record in results.items():
    mean = _mean(record['seconds'])
    rows.append([f'`{variant}`', ', '.join(f'{s:.1f}' for s in record['seconds']),
                 f'{mean:.1f}', f'{mean / num_boundaries:.2f}',
                 f'{_mean(record["reference_seconds"]):.1f}', str(record['passes']),
                 str(record['images']), f'{baseline / mean:.2f}x'])
  table = common.markdown_table(
      ['variant', 'seconds per round', 'mean s', 'mean s per boundary',
       'of which reference statistics (s)', 'reference passes', 'reference images',
       'speed-up vs recompute'], rows)
  saved = {v: baseline - _mean(results[v]['seconds']) for v in VARIANTS[1:]}
  return table + (f'\n\nSaved over the {num_boundaries} boundaries: {saved["cache, cold"]:.1f} s '
                  f'({saved["cache, cold"] / baseline:.0%}) in a training run, '
                  f'{saved["cache, warm"]:.1f} s ({saved["cache, warm"] / baseline:.0%}) in a '
                  '`--mode=evaluate` after it.')


def agreement_lines(results: dict) -> str:
  baseline = results['recompute']['rows']
  lines = [f'- `{variant}` against `recompute`: largest relative difference of a FID, KID or '
           f'PRDC value {largest_relative_difference(results[variant]["rows"], baseline):.2g}.'
           for variant in VARIANTS[1:]]
  return '\n'.join(lines)


def restore(workdir: str, inception_weights: str, scratch: str):
  """(evaluator, states) of a trained workdir; nothing is written into it."""
  from ltgans_jax.run import inspect as inspect_run
  from ltgans_jax.eval import task_eval  # pylint: disable=g-import-not-at-top
  config = common.config_from_workdir(workdir)
  config.eval.inception_weights = inception_weights
  tasks, method, states = inspect_run.boundary_states(config, workdir)
  evaluator = task_eval.TaskEvaluator(config, method, tasks, workdir, reference_folder=scratch)
  return evaluator, states


def main(argv=None) -> None:
  common.setup_logging()
  args = parse_args(argv)
  out, root = common.resolve_folders(args, NAME)
  run = common.run_config('split_mnist', CONFIG, os.path.join(root, 'ltgans'),
                          training_overrides(args))
  if not run.ok:
    raise SystemExit(f'The training run failed: {run.error} (log: {run.log}).')
  with tempfile.TemporaryDirectory(prefix='eval_cache_timing_') as scratch:
    evaluator, states = restore(run.workdir, args.inception_weights, scratch)
    results = time_variants(evaluator, states, args.repeats, scratch)
  num_examples = len(evaluator.test_images[0])
  extractors = ', '.join(f'`{name}`' for name in evaluator.features)
  measured = (
      f'{len(states)} task-boundary states of `{CONFIG}` ({len(states)} tasks, '
      f'{num_examples} test images per task, extractors {extractors}), each evaluated by '
      '`TaskEvaluator.evaluate` (the NLLs, the IWAE bound, the samples, FID/KID/PRDC, the '
      f'replay audit), in {args.repeats} round(s) of the three variants, their order reversed '
      'every other round, after an untimed warm-up (one uncached evaluation of every state, '
      'which compiles every program, and one cached evaluation of the last state, which '
      'writes the warm variant\'s files). `recompute`: `eval.cache_reference_stats=False` '
      '(the behaviour before the cache); `cache, cold`: an empty cache folder per round (a '
      'training run); `cache, warm`: a fresh cache reading the files the warm-up wrote (a '
      'resumed run, `--mode=evaluate`). "Reference statistics" is the time spent getting the '
      'test sets\' features and moments (feature passes, file reads, the union\'s '
      'covariance); the rest of an evaluation does not depend on the cache.')
  sections = [('What is measured', measured),
              ('Seconds over all task boundaries', timing_table(results, len(states))),
              ('Same values', agreement_lines(results))]
  if args.quick:
    sections.insert(0, ('Note', '**A `--quick` smoke run: tiny networks, 2 tasks, 16 test '
                                'images per task; its seconds say nothing.**'))
  payload = {v: {k: r[k] for k in ('seconds', 'reference_seconds', 'passes', 'images')}
             for v, r in results.items()}
  common.reset_outputs(out)
  common.finish(out, 'Evaluation time with and without cached reference statistics', sections,
                [run], {'timing': payload})


if __name__ == '__main__':
  main()
