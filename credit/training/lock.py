"""One writer per workdir: a lock file holding the owner's PID, host and start time.

Two sweeps writing the same cells would interleave checkpoints and results, and
two runs of ``experiments.train`` the rows of one ``metrics.csv``, so a second
writer on a workdir in use is refused. The lock is ``<workdir>/sweep.lock`` for
a sweep and ``<workdir>/run.lock`` for a single run (JSON), written whole and
renamed into place, so a reader never sees a half-written lock; checking and
writing it happen under an ``flock`` of the workdir itself, so two writers
started at once cannot both take it (and no guard file is left behind). A lock
whose process is gone (same host, PID not running, or running but started at
another time, i.e. a reused PID) is stale and is taken over with a warning:
that is what a process killed with SIGKILL leaves. A lock held from another
host cannot be checked and is always respected.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import time
import warnings

from credit.errors import UserError

SWEEP_LOCK = "sweep.lock"
RUN_LOCK = "run.lock"
LOCK_NAME = SWEEP_LOCK


class WorkdirInUseError(UserError, RuntimeError):
  """Another live run or sweep holds the workdir."""


def _start_ticks(pid: int) -> int | None:
  """The process's start time in clock ticks since boot (Linux), else ``None``."""
  try:
    with open(f"/proc/{pid}/stat") as f:
      stat = f.read()
  except OSError:
    return None
  # The command name (field 2) may hold spaces: fields resume after its ")".
  return int(stat.rsplit(")", 1)[1].split()[19])


def _alive(pid: int, start_ticks: int | None) -> bool:
  try:
    os.kill(pid, 0)
  except ProcessLookupError:
    return False
  except PermissionError:
    return True  # exists, owned by someone else
  if start_ticks is not None:
    now = _start_ticks(pid)
    if now is not None and now != start_ticks:
      return False  # the PID was reused by a newer process
  return True


class WorkdirLock:
  """A context manager holding ``<workdir>/<name>`` for this process.

  ``what`` names the writer in messages (``"sweep"``, ``"run"``).

  Raises:
    WorkdirInUseError: on entry, when a live process holds the lock.
  """

  def __init__(self, workdir: str, name: str = SWEEP_LOCK, what: str = "sweep"):
    self.path = os.path.join(workdir, name)
    self.what = what
    self.owner = {
      "pid": os.getpid(),
      "host": socket.gethostname(),
      "start_ticks": _start_ticks(os.getpid()),
      "started": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    self.held = False

  def read(self) -> dict | None:
    """The current lock's content; ``None`` when there is no lock."""
    try:
      with open(self.path) as f:
        return json.load(f)
    except FileNotFoundError:
      return None
    except (OSError, ValueError):
      return {}  # unreadable: treated as held by an unknown owner

  def _write(self) -> None:
    tmp = f"{self.path}.{self.owner['pid']}.tmp"
    try:
      with open(tmp, "w") as f:
        json.dump(self.owner, f)
      os.replace(tmp, self.path)
    finally:
      if os.path.exists(tmp):  # a failed write (disk full) leaves no temp file behind
        os.remove(tmp)

  def acquire(self) -> None:
    folder = os.path.dirname(self.path)
    os.makedirs(folder, exist_ok=True)
    # The check and the write happen under an flock of the workdir, so two
    # writers starting at once cannot both find the lock free (or both take
    # over the same stale one).
    guard = os.open(folder, os.O_RDONLY)
    try:
      fcntl.flock(guard, fcntl.LOCK_EX)
      self._acquire_locked()
    finally:
      os.close(guard)  # releases the flock

  def _acquire_locked(self) -> None:
    holder = self.read()
    if holder is not None:
      same_host = holder.get("host") == self.owner["host"]
      pid = holder.get("pid")
      if not (same_host and isinstance(pid, int) and not _alive(pid, holder.get("start_ticks"))):
        raise WorkdirInUseError(
          f"workdir {os.path.dirname(self.path)} is in use by another {self.what}: PID "
          f"{holder.get('pid', '?')} on host {holder.get('host', '?')}, started "
          f"{holder.get('started', '?')}. Wait for it to finish or stop it, or use another "
          f"--workdir. If that {self.what} is surely gone (e.g. it ran on another host), delete "
          f"{self.path}."
        )
      warnings.warn(
        f"taking over the stale lock {self.path} of {self.what} PID {pid} on {holder['host']} "
        "(that process is gone)",
        RuntimeWarning,
        stacklevel=4,
      )
    self._write()
    self.held = True

  def release(self) -> None:
    if self.held and (self.read() or {}).get("pid") == self.owner["pid"]:
      os.remove(self.path)
    self.held = False

  def __enter__(self) -> WorkdirLock:
    self.acquire()
    return self

  def __exit__(self, *exc) -> None:
    self.release()
