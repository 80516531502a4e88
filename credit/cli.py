"""What the launchers in ``experiments/`` share: clear errors for bad input, no tracebacks.

:func:`run` is ``absl.app.run`` with two additions:

* a ``--config.<field>=<value>`` override that ml_collections cannot apply
  (an unknown field, a value of the wrong type) stops with one line naming the
  override, the field and, for an unknown field, the known fields at that
  level, instead of ml_collections' chained tracebacks;
* a :class:`credit.errors.UserError` raised by the launcher (a bad config
  value, an unusable workdir, an empty results file, ...) is printed as
  ``error: <message>`` and the process exits with status 1;
* a launcher that calls :func:`define_print_config` gets ``--print_config``:
  it prints every field of the resolved config (``--config.*`` overrides
  applied) as the ``--config.<field>=<value>`` paths that set it, and exits.

It also quiets one line that absl would otherwise show at every launch: JAX's
INFO record "Unable to initialize backend 'tpu': ... Failed to open libtpu.so"
on machines without libtpu (JAX itself treats that failure as expected; any
other backend failure, and every warning, still shows).
"""

from __future__ import annotations

import errno
import importlib.util
import logging as std_logging
import math
import os
import re
import sys
import time
from collections.abc import Callable, Sequence

from credit.errors import UserError

import ml_collections
from absl import app, flags

EXIT_USER_ERROR = 1


PRINT_CONFIG = "print_config"


def process_start() -> float:
  """The ``time.perf_counter()`` value at which this process started.

  Read from ``/proc`` (Linux), so that a launcher's elapsed times include
  Python's and JAX's start-up; elsewhere, the time of this call.
  """
  now = time.perf_counter()
  try:
    with open("/proc/self/stat") as f:
      after_name = f.read().rsplit(")", 1)[1].split()
    with open("/proc/uptime") as f:
      uptime = float(f.read().split()[0])
    # Field 22 of /proc/<pid>/stat (the 20th after the command name): start time in ticks.
    age = uptime - int(after_name[19]) / os.sysconf("SC_CLK_TCK")
  except (OSError, ValueError, IndexError):
    return now
  return now - max(0.0, age)


def peak_memory_gb() -> float:
  """This process's peak resident memory in GB (``ru_maxrss``: KiB on Linux, bytes on macOS).

  NaN where the ``resource`` module does not exist (Windows).
  """
  try:
    import resource
  except ImportError:
    return math.nan
  rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
  return rss / (1e9 if sys.platform == "darwin" else 1e9 / 1024)


def define_print_config() -> None:
  """Defines ``--print_config`` (print the resolved config and exit) for a launcher.

  The flag is declared in the calling launcher's name, so that its ``--help`` lists it.
  """
  caller = sys._getframe(1).f_globals.get("__name__")
  flags.DEFINE_bool(
    PRINT_CONFIG,
    False,
    "Print every field of the resolved config (after --config.* overrides) as the "
    "--config.<field>=<value> that sets it, and exit without running anything.",
    module_name=sys.argv[0] if caller == "__main__" else caller,
  )


def require(*names: str) -> None:
  """Stops with ``error: --<name> is required`` for each named flag left unset.

  Used instead of absl's ``mark_flags_as_required`` for flags that
  ``--print_config`` does not need.
  """
  for name in names:
    if flags.FLAGS[name].value is None:
      fail(f"--{name} is required ({flags.FLAGS[name].help})")


def config_fields(config, prefix: str = "") -> list[tuple[str, object]]:
  """``(dotted path, value)`` of every leaf field of ``config``, in sorted order."""
  out = []
  for key in sorted(config.keys()):
    value = config[key]
    if isinstance(value, ml_collections.ConfigDict | dict):
      out += config_fields(value, f"{prefix}{key}.")
    else:
      out.append((f"{prefix}{key}", value))
  return out


def config_text(config, spec: str | None = None, flag: str = "config") -> str:
  """The resolved config as ``path = value`` lines, with a header on how to override them."""
  fields = config_fields(config)
  source = f" of --{flag}={spec}" if spec else ""
  lines = [f"# {len(fields)} fields{source}; set any with --{flag}.<field>=<value>"]
  lines += [f"{path} = {value!r}" for path, value in fields]
  return "\n".join(lines)


class _QuietMissingLibtpu(std_logging.Filter):
  """Drops JAX's INFO record that libtpu is absent (printed by absl at every launch)."""

  def filter(self, record: std_logging.LogRecord) -> bool:
    if record.levelno > std_logging.INFO:
      return True
    message = record.getMessage()
    return not ("Unable to initialize backend 'tpu'" in message and "libtpu" in message)


def quiet_missing_libtpu() -> None:
  """Installs :class:`_QuietMissingLibtpu` on JAX's backend logger (idempotent)."""
  logger = std_logging.getLogger("jax._src.xla_bridge")
  if not any(isinstance(f, _QuietMissingLibtpu) for f in logger.filters):
    logger.addFilter(_QuietMissingLibtpu())


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


HELP_FLAGS = ("help", "helpshort", "helpfull", "helpxml", "h", "?")


def asked_for_help(argv: Sequence[str]) -> bool:
  """Whether ``argv`` holds one of absl's help flags (``--help``, ``-h``, ``--helpfull``, ...)."""
  return any(re.match(rf"^--?({'|'.join(map(re.escape, HELP_FLAGS))})$", a) for a in argv[1:])


def user_error_in(err: BaseException | None) -> UserError | None:
  """The innermost :class:`UserError` in ``err``'s chain of causes (``None``: there is none).

  What a config file's ``get_config`` raises (e.g. an unknown ``:variant``) reaches
  the launcher wrapped: ml_collections re-raises it as the same type with a
  traceback for its message, and absl wraps that in a flag error. The innermost
  one carries the original message.
  """
  found, seen = None, set()
  while err is not None and id(err) not in seen:
    if isinstance(err, UserError):
      found = err
    seen.add(id(err))
    err = err.__cause__ or err.__context__
  return found


def parse_flags(argv: list[str], config_flag: str = "config") -> list[str]:
  """absl's flag parsing, with config-override failures reported as one clear line.

  ``--help`` (and absl's other help flags) print the flags and exit with status 0:
  absl itself exits with 1 after printing them, which scripts read as a failure.
  """
  try:
    return flags.FLAGS(argv)
  except SystemExit as err:
    if err.code == 1 and asked_for_help(argv):
      sys.exit(0)
    raise
  except flags.Error as err:  # absl's own errors (an unknown flag, a bad value)
    user = user_error_in(err)
    if user is not None:
      fail(str(user))
    print(f"FATAL Flags parsing error: {err}", file=sys.stderr)
    print("Pass --helpshort or --helpfull to see help on flags.", file=sys.stderr, flush=True)
    sys.exit(EXIT_USER_ERROR)
  except Exception as err:  # noqa: BLE001 - ml_collections raises plain AttributeError etc.
    user = user_error_in(err)
    fail(str(user) if user is not None else explain_override_failure(argv, err, config_flag))
  return []  # not reached


def define_config_file(name: str, default: str | None, help_text: str, lock_config: bool) -> None:
  """``config_flags.DEFINE_config_file``, with a failure at definition time as one line.

  A flag with a default config file parses that file, and applies the command
  line's ``--<name>.*`` overrides to it, as soon as it is defined (when the
  launcher is imported, before :func:`run`): without this, an unknown field in
  an override of the default config ended in ml_collections' chained traceback.
  """
  from ml_collections import config_flags

  try:
    config_flags.DEFINE_config_file(name, default, help_text, lock_config=lock_config)
  except Exception as err:  # noqa: BLE001 - see parse_flags
    user = user_error_in(err)
    argv = list(sys.argv)
    if default is not None and _config_spec(argv, name) is None:
      argv.append(f"--{name}={default}")
    fail(str(user) if user is not None else explain_override_failure(argv, err, name))


# Write failures that mean "the disk, not the program": said in one line, not a traceback.
DISK_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EIO, errno.EFBIG})


def disk_error_in(err: BaseException | None) -> OSError | None:
  """The write failure for want of disk in ``err``'s chain (checkpoint writers wrap it)."""
  seen = set()
  while err is not None and id(err) not in seen:
    if isinstance(err, OSError) and err.errno in DISK_ERRNOS:
      return err
    seen.add(id(err))
    err = err.__cause__ or err.__context__
  return None


def disk_error_message(err: OSError) -> str:
  where = f" {err.filename}" if err.filename else ""
  return (
    f"cannot write{where}: {err.strerror or err}. Nothing half-written was left behind. Free "
    "space (or make the folder writable) and rerun the same command: a sweep resumes from "
    "its last checkpoint, a single run starts over."
  )


def run(main: Callable[[list[str]], None], config_flag: str = "config") -> None:
  """``absl.app.run(main)``; user errors end the process with ``error: ...`` and status 1.

  So does a write that fails for want of disk (full, over quota, read-only): one line
  naming the file, not a traceback.
  """

  def guarded(argv: list[str]) -> None:
    if PRINT_CONFIG in flags.FLAGS and flags.FLAGS[PRINT_CONFIG].value:
      flag = flags.FLAGS[config_flag]
      spec = getattr(flag, "config_filename", None) or _config_spec(sys.argv, config_flag)
      print(config_text(flag.value, spec, config_flag), flush=True)
      return
    try:
      main(argv)
    except UserError as err:
      fail(str(err))
    except Exception as err:  # noqa: BLE001 - re-raised unless the disk is at fault
      disk = disk_error_in(err)
      if disk is None:
        raise
      fail(disk_error_message(disk))

  quiet_missing_libtpu()
  app.run(guarded, flags_parser=lambda argv: parse_flags(argv, config_flag))
