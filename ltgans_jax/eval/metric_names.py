"""The names of the evaluation rows: each metric's key, its title, its direction and how a cell
prints. What the rows measure: ``task_eval``; how a report reads them: ``run.report``.

A row's key is ``<metric>[_<features>][_student][_all]``: ``nll_paper``, ``nll_iwae``;
``fid_own`` / ``fid_inception`` and beside each FID ``<kid|precision|recall|density|coverage>_
<own|inception>`` on the same features; ``_student`` for the Student decoder's samples in the
GAN methods (``STUDENT_ROWS``); ``_all`` against every seen test set together; and the replay
audit's ``audit_share_<network>``, ``audit_classes_<network>``, ``AUDIT_ACCURACY``.
"""

from __future__ import annotations

from typing import Dict, List, Optional

from ltgans_jax.eval import feature_net, generative_metrics, inception

# Per feature extractor: the FID row's key, the suffix of its KID and PRDC rows, the name a
# report gives the features.
FEATURE_SETS = {'fid_own': ('own', 'own features'),
                'fid_inception': ('inception', 'InceptionV3 pool-3')}
SAMPLE_METRICS = ('kid', 'precision', 'recall', 'density', 'coverage')  # beside each FID


def _sample_metric_names() -> Dict[str, str]:
  names = {}
  for suffix, features in FEATURE_SETS.values():
    names[f'kid_{suffix}'] = f'KID ({features})'
    for metric in SAMPLE_METRICS[1:]:
      names[f'{metric}_{suffix}'] = (f'{metric} ({features}, '
                                     f'k={generative_metrics.NEAREST_K})')
  return names


METRIC_NAMES = {
    'nll_paper': 'NLL, paper quantity (squared error + KL)',
    'nll_iwae': 'NLL bound in nats (importance-weighted)',
    'fid_own': feature_net.FID_NAME,
    'fid_inception': inception.FID_NAME + ' (InceptionV3 pool-3)',
    **_sample_metric_names(),
}
# The GAN methods' generative rows are measured twice: on the generator's samples (the names
# above) and on the Student decoder's prior samples (the same names with this suffix).
STUDENT_ROWS = '_student'
METRIC_NAMES.update({
    f'{metric}{STUDENT_ROWS}': f'{title}, Student samples' for metric, title in
    list(METRIC_NAMES.items()) if not metric.startswith('nll_')})

# Heatmap titles (short: they share the line with the summary); report.md explains them.
AUDIT_NAMES = {
    'share': 'audit: share of samples',
    'classes': 'audit: classes covered',
}
AUDIT_ACCURACY = 'audit_classifier_accuracy'


def format_value(metric: str, value: float) -> str:
  """A report cell: KIDs (small, and signed) to 4 significant digits, the rest to 2 decimals."""
  return f'{value:.4g}' if metric.startswith('kid_') else f'{value:.2f}'


def lower_is_better(metric: str) -> Optional[bool]:
  """A matrix's direction: True for the NLLs, FIDs and KIDs, False for the audit's shares,
  classes and accuracy and for precision, recall and coverage, None for density (about 1 is
  best)."""
  if metric.startswith(('nll_', 'fid_', 'kid_')):
    return True
  if metric.startswith(('audit_', 'precision_', 'recall_', 'coverage_')):
    return False
  return None


def matrix_titles(rows: Dict[str, List[float]]) -> Dict[str, str]:
  """Metric name -> title for every forgetting matrix in an evaluation row."""
  titles = {m: t for m, t in METRIC_NAMES.items() if m in rows}
  for metric in rows:
    if metric.startswith('audit_') and metric != AUDIT_ACCURACY:
      kind, network = metric[len('audit_'):].split('_', 1)
      titles[metric] = f'{network} {AUDIT_NAMES[kind]}'
  if AUDIT_ACCURACY in rows:
    titles[AUDIT_ACCURACY] = 'audit: classifier accuracy'
  return titles
