"""The stale-weights alarm: a failed push must not go unnoticed.

With trainer and engine in separate processes a failed push (engine restarted, drain timed out,
disk full) does not stop training — it silently turns on-policy RL into ever-more-off-policy RL.
`StaleWeightsAlarm` compares the version the trainer pushed with the one the engine reports and
logs loudly (and optionally raises) when the engine stops following. Every transport that talks to
another process feeds it after each push.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from forgerl.errors import EngineError

log = logging.getLogger(__name__)


class StaleWeightsError(EngineError):
    """The inference engine kept serving old weights for too long."""


class StaleWeightsAlarm:
    """Call `check(trainer_version, engine_version)` after every push.

    The alarm fires when the engine lags the trainer by more than `max_lag` versions (or cannot
    be reached: engine_version None) for `patience` checks in a row; it then logs at ERROR on
    every check until the engine catches up (and says so), calls `on_alarm`, and raises
    StaleWeightsError once the streak reaches `raise_after` (None: never raise). An engine
    *ahead* of the trainer (another trainer pushing to it?) fires at once.
    """

    def __init__(self, *, max_lag: int = 0, patience: int = 2, raise_after: int | None = None,
                 on_alarm: Callable[[str], None] | None = None, logger: logging.Logger | None = None,
                 name: str = "the inference engine") -> None:
        if max_lag < 0 or patience < 1 or (raise_after is not None and raise_after < patience):
            raise ValueError("need max_lag >= 0, patience >= 1 and raise_after >= patience (or None)")
        self.max_lag, self.patience, self.raise_after = max_lag, patience, raise_after
        self.on_alarm = on_alarm
        self.name = name  # which engine, in the messages: with many engines each has its own alarm
        self.log = logger or log
        self.streak = 0
        self.alarms = 0
        self.firing = False

    def check(self, trainer_version: int, engine_version: int | None) -> bool:
        """True while the alarm is firing."""
        if engine_version is not None and engine_version > trainer_version:
            return self._fire(f"{self.name} reports policy version {engine_version}, AHEAD of the trainer's "
                              f"{trainer_version}: another trainer may be pushing to it")
        lag = None if engine_version is None else trainer_version - engine_version
        if lag is not None and lag <= self.max_lag:
            if self.firing:
                self.log.warning("stale-weights alarm cleared: %s is at version %d (trainer %d)",
                                 self.name, engine_version, trainer_version)
            self.streak, self.firing = 0, False
            return False
        self.streak += 1
        if self.streak < self.patience:
            return False
        what = "cannot be reached" if lag is None else f"is at policy version {engine_version}, {lag} behind"
        message = (f"STALE WEIGHTS: {self.name} {what} the trainer's version {trainer_version} for "
                   f"{self.streak} checks in a row; rollouts are being sampled by old weights (off-policy). "
                   "Check the weight pushes and the engine's /admin/weights.")
        fired = self._fire(message)
        if self.raise_after is not None and self.streak >= self.raise_after:
            raise StaleWeightsError(message)
        return fired

    def _fire(self, message: str) -> bool:
        banner = "!" * 100
        self.log.error("\n%s\n%s\n%s", banner, message, banner)
        self.alarms += 1
        self.firing = True
        if self.on_alarm is not None:
            self.on_alarm(message)
        return True
