"""Errors a user can cause. Each message is one sentence naming the value and what to do;
``main`` prints it without a traceback."""


class ConfigError(ValueError):
  """A config value is out of range or inconsistent; the message names it and what is accepted."""
