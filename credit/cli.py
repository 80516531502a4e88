"""What the launchers in ``experiments/`` share: clear errors for bad input, no tracebacks.

:func:`run` is ``absl.app.run`` with two additions:

* a ``--config.<field>=<value>`` override that ml_collections cannot apply
  (an unknown field, a value of the wrong type) stops with one line naming the
  override, the field and, for an unknown field, the known fields at that
  level, instead of ml_collections' chained tracebacks;
* a :class:`credit.errors.UserError` raised by the launcher (a bad config
  value, an unusable workdir, an empty results file, ...) is printed as
  ``error: <message>`` and the process exits with status 1.
"""

from __future__ import annotations

import importlib.util
import os
import re
import sys
from collections.abc import Callable, Sequence

from credit.errors import UserError

import ml_collections
from absl import app

EXIT_USER_ERROR = 1


def fail(message: str) -> None:
  """Prints ``error: message`` to stderr and exits with status 1."""
  print(f"error: {message}", file=sys.stderr, flush=True)
  sys.exit(EXIT_USER_ERROR)


def load_config_file(spec: str):
  """The config of ``path[:arg]`` as ml_collections loads it (``get_config(arg)``)."""
  path, _, arg = spec.partition(":")
  module_spec = importlib.util.spec_from_file_location("_credit_cli_config", path)
  if module_spec is None or not os.path.exists(path):
    raise UserError(f"config file {path!r} does not exist")
  module = importlib.util.module_from_spec(module_spec)
  module_spec.loader.exec_module(module)
  return module.get_config(arg) if arg else module.get_config()


def _overrides(argv: Sequence[str], name: str) -> list[tuple[str, str]]:
  """``(field path, text)`` of every ``--name.path[=value]`` / ``--noname.path`` in ``argv``."""
  out = []
  for i, arg in enumerate(argv):
    m = re.match(rf"^--?(no)?{re.escape(name)}\.([^=]+)(=(.*))?$", arg)
    if m:
      shown = arg if m.group(3) or i + 1 >= len(argv) else f"{arg} {argv[i + 1]}"
      out.append((m.group(2), shown))
  return out


def _config_spec(argv: Sequence[str], name: str) -> str | None:
  for i, arg in enumerate(argv):
    m = re.match(rf"^--?{re.escape(name)}(=(.*))?$", arg)
    if m:
      return m.group(2) if m.group(1) else (argv[i + 1] if i + 1 < len(argv) else None)
  return None


def unknown_override(config, path: str) -> str | None:
  """Why ``path`` is not a field of ``config`` (``None`` when it is one)."""
  node, done = config, []
  for part in path.split("."):
    if not isinstance(node, ml_collections.ConfigDict | dict):
      return f"{'.'.join(done)} is a value, not a block of fields, so it has no field {part!r}"
    if part not in node:
      where = f"of {'.'.join(done)}" if done else "at the top level"
      return (
        f"unknown config field {'.'.join([*done, part])!r}; the known fields {where} are "
        f"{sorted(node.keys())}"
      )
    node = node[part]
    done.append(part)
  return None


def explain_override_failure(argv: Sequence[str], err: Exception, name: str = "config") -> str:
  """A one-line account of a ``--config.*`` override that ml_collections failed to apply."""
  spec = _config_spec(argv, name)
  overrides = _overrides(argv, name)
  if spec is not None:
    try:
      config = load_config_file(spec)
    except Exception as load_err:  # noqa: BLE001 - the file itself is broken: say so
      return f"cannot load --{name}={spec}: {type(load_err).__name__}: {load_err}"
    for path, shown in overrides:
      why = unknown_override(config, path)
      if why is not None:
        return f"{shown}: {why}"
  detail = f"{type(err).__name__}: {err}"
  given = ", ".join(shown for _, shown in overrides) or f"--{name}={spec}"
  return f"cannot apply {given}: {detail}"


def parse_flags(argv: list[str], config_flag: str = "config") -> list[str]:
  """absl's flag parsing, with config-override failures reported as one clear line."""
  try:
    return app.parse_flags_with_usage(argv)  # absl's own errors: message and exit 1
  except SystemExit:
    raise
  except Exception as err:  # noqa: BLE001 - ml_collections raises plain AttributeError etc.
    fail(explain_override_failure(argv, err, config_flag))
  return []  # not reached


def run(main: Callable[[list[str]], None], config_flag: str = "config") -> None:
  """``absl.app.run(main)``; user errors end the process with ``error: ...`` and status 1."""

  def guarded(argv: list[str]) -> None:
    try:
      main(argv)
    except UserError as err:
      fail(str(err))

  app.run(guarded, flags_parser=lambda argv: parse_flags(argv, config_flag))
