"""Errors that mean "what you gave is wrong", reported by the launchers without a traceback.

Each names the thing at fault (a config field and its value, a folder, a file)
and what is allowed. The launchers in ``experiments/`` print such an error as
one ``error: ...`` line and exit with status 1 (:func:`credit.cli.run`); any
other exception is a bug and keeps its traceback.
"""

from __future__ import annotations


class UserError(Exception):
  """A bad input (config, workdir, results file, data), as opposed to a bug."""


class ConfigError(UserError, ValueError):
  """A config field is unknown, has the wrong type, or a value outside what is allowed."""


class UnknownFieldError(ConfigError, KeyError):
  """A config names a field that does not exist (an override with a typo)."""

  def __str__(self) -> str:  # KeyError would quote the message
    return str(self.args[0]) if self.args else ""


class WorkdirError(UserError, ValueError):
  """A run's workdir cannot be used: not a folder, not writable, or it holds another run."""


class ResultsFileError(UserError, ValueError):
  """A results file is missing, empty or malformed."""
