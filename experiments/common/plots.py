"""Matplotlib figures without pyplot state: a blank figure, and grouped bars per task."""

from __future__ import annotations

import os
from typing import Mapping, Optional, Sequence

from .cli import METHOD_TITLES


def new_figure(width: float = 7.0, height: float = 4.0, ncols: int = 1):
  """A matplotlib Agg figure and its axes (no pyplot state, no GUI)."""
  from matplotlib.backends.backend_agg import FigureCanvasAgg  # pylint: disable=g-import-not-at-top
  from matplotlib.figure import Figure  # pylint: disable=g-import-not-at-top
  figure = Figure(figsize=(width, height), dpi=100)
  FigureCanvasAgg(figure)
  axes = figure.subplots(1, ncols, squeeze=False)[0]
  return figure, list(axes)


def grouped_bars(path: str, names: Sequence[str],
                 columns: Mapping[str, Optional[Sequence[float]]], ylabel: str,
                 title: str) -> str:
  """Bar plot: one group per task, one bar per method (missing values left out)."""
  import numpy as np  # pylint: disable=g-import-not-at-top
  figure, (ax,) = new_figure(max(6.0, 0.9 * len(names) * max(1, len(columns)) / 2 + 3), 4.2)
  width = 0.8 / max(1, len(columns))
  x = np.arange(len(names))
  for i, (method, values) in enumerate(columns.items()):
    if not values:
      continue
    heights = [v if v is not None else np.nan for v in values[:len(names)]]
    ax.bar(x[:len(heights)] + (i - (len(columns) - 1) / 2) * width, heights, width,
           label=METHOD_TITLES.get(method, method))
  ax.set_xticks(x, labels=list(names), rotation=30, ha='right')
  ax.set_ylabel(ylabel)
  ax.set_title(title, fontsize=10)
  ax.margins(y=0.25)  # Room above the bars for the legend.
  ax.legend(fontsize=8, loc='upper center', ncol=min(4, max(1, len(columns))))
  figure.tight_layout()
  os.makedirs(os.path.dirname(path), exist_ok=True)
  figure.savefig(path)
  return path
