"""How a run differs from its config file (the paper's sizes), stated plainly for a README."""

from __future__ import annotations

import importlib.util
import json
import os
import re
from typing import Dict, List, Mapping, Sequence

from .paths import REPO_ROOT


def load_config_file(config: str):
  """get_config() of a config file (path relative to the repository root)."""
  path = os.path.join(REPO_ROOT, config)
  spec = importlib.util.spec_from_file_location(
      'experiment_config_' + re.sub(r'\W', '_', config), path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config()


def flatten(tree: Mapping) -> Dict[str, object]:
  """A config's JSON as 'a.b' -> value (``config_base.flat_items``), tuples as lists (as JSON
  writes them)."""
  from ltgans_jax import config_base  # pylint: disable=g-import-not-at-top
  return {key: list(value) if isinstance(value, tuple) else value
          for key, value in config_base.flat_items(tree).items()}


def run_config_values(workdir: str) -> Dict[str, object]:
  with open(os.path.join(workdir, 'config.json')) as f:
    return flatten(json.load(f)['config'])


IGNORED_DIFFERENCES = ('data.data_dir', 'method')  # method: one run per method


def config_differences(config: str, workdir: str, ignore: Sequence[str] = ()) -> List[str]:
  """'key: file value -> run value' for every field the run changed from the config file."""
  reference = flatten(json.loads(load_config_file(config).to_json_best_effort()))
  actual = run_config_values(workdir)
  lines = []
  for key in sorted(actual):
    if key in IGNORED_DIFFERENCES or key in ignore:
      continue
    if reference.get(key) != actual[key]:
      lines.append(f'`{key}`: {reference.get(key)!r} -> {actual[key]!r}')
  return lines


def setting_section(config: str, workdir: str, quick: bool, notes: Sequence[str],
                    ignore: Sequence[str] = ()) -> str:
  """A plain statement of how these runs differ from the paper."""
  values = run_config_values(workdir)
  lines = []
  if quick:
    lines.append('**This is a `--quick` smoke run: tiny networks and a few steps per task; '
                 'its numbers say nothing about the method.**')
  lines.append(
      f'Images {values["data.image_size"]}x{values["data.image_size"]}x'
      f'{values["data.channels"]}; generator/critic widths {values["model.generator_width"]}/'
      f'{values["model.critic_width"]}, generator latent {values["model.latent_dim"]}; Student '
      f'width {values["vae.width"]}, latent {values["vae.latent_dim"]}, '
      + ('beta as given per run' if 'vae.beta' in ignore else f'beta {values["vae.beta"]}') +
      f'; batch {values["train.batch_size"]}; critic steps per generator step: '
      f'{values["gan.critic_steps"]}; '
      f'{values["train.steps_per_task"]} steps per task (the paper does not state its number '
      'of iterations); metrics on a class-stratified subset of '
      f'{values["eval.num_examples"]} test images of each task (eval.subset_seed='
      f'{values.get("eval.subset_seed", 0)}), IWAE with {values["eval.iwae_samples"]} samples.')
  differences = config_differences(config, workdir, ignore)
  if differences:
    lines.append(f'Changed from `{config}` (the paper\'s sizes where the paper gives them): '
                 + '; '.join(differences) + '.')
  else:
    lines.append(f'All values as in `{config}` (the paper\'s sizes where the paper gives them).')
  lines += list(notes)
  return '\n\n'.join(lines)
