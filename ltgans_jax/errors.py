"""Errors a user can cause. Each message is one sentence naming the value and what to do;
``main`` prints it without a traceback.

This module and ``files`` are the package's floor: they import nothing of it, so that every
layer (``data``, ``eval``, ``methods``, ``run``) may raise these without importing upwards.
"""


class ConfigError(ValueError):
  """A config value is out of range or inconsistent; the message names it and what is accepted."""


class CheckpointError(RuntimeError):
  """A file a run saved to resume from (a checkpoint, the FID feature network) cannot be
  restored; the message says what to do."""
