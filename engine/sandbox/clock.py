"""The sandbox's clock: what a verification window in the sandbox waits on, when the sandbox
is started with one (``--clock``), instead of waiting on the wall clock.

Its time passes only when someone waits on it: a wait of N seconds moves it on N seconds at
once, so a thirty-minute window is over as soon as its samples are taken, however fast or
slow the machine. A test can hold it: every wait then stands still, with the window in the
middle of its work, until the clock is let go. The sandbox's kubeconfig names it (a cluster
extension), which is how the verification module finds it; without it, time is real.
"""

from __future__ import annotations

import threading

EXTENSION = "runbook.sandbox/clock"


class SandboxClock:
    def __init__(self) -> None:
        self._now = 0.0
        self._held = False
        self._waiting = 0
        self._changed = threading.Condition()

    def now(self) -> float:
        with self._changed:
            return self._now

    def sleep(self, seconds: float) -> float:
        """Wait ``seconds`` of the clock's time (none of the wall clock's unless held);
        return the time after."""
        with self._changed:
            self._waiting += 1
            self._changed.notify_all()
            try:
                self._changed.wait_for(lambda: not self._held)
                self._now += max(0.0, seconds)
                return self._now
            finally:
                self._waiting -= 1
                self._changed.notify_all()

    def hold(self) -> None:
        with self._changed:
            self._held = True

    def release(self) -> None:
        with self._changed:
            self._held = False
            self._changed.notify_all()

    def state(self) -> dict[str, object]:
        with self._changed:
            return {"now": self._now, "held": self._held, "waiting": self._waiting}
