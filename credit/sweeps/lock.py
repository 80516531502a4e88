"""The sweep's workdir lock: :class:`credit.training.lock.WorkdirLock` under ``sweep.lock``.

Runs and sweeps share one lock (:mod:`credit.training.lock`); this module keeps
the sweep's names.
"""

from __future__ import annotations

from credit.training.lock import SWEEP_LOCK, WorkdirInUseError, WorkdirLock

LOCK_NAME = SWEEP_LOCK

__all__ = ["LOCK_NAME", "WorkdirInUseError", "WorkdirLock"]
