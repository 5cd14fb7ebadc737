"""Drift-free pacing of the storm emulator.

The pacer never sleeps "one tick" and hopes: it keeps the *cumulative* target -- the
integral of the target rate over elapsed time, measured on an absolute monotonic clock --
and each call to `due()` answers how many records are owed right now (cumulative target
minus records already sent). A late wake-up, a slow chunk or a rate change therefore
never accumulates error; the next chunk simply catches up.

Two release modes, both honouring "N records per tick of T seconds" (rate = N / T):
- smooth (default): records are owed continuously, so the emulator sends small chunks
  every few milliseconds and the flow into Kafka is even;
- burst: the credit of a whole tick is released at each tick boundary -- the seed's
  literal "N random records every T seconds".

A backlog larger than `max_backlog_s` seconds of target (the producer could not keep up,
or the process was suspended) is forgiven and counted in `skipped`, so the emulator does
not fire a huge catch-up burst after a stall.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

Clock = Callable[[], float]
RateFn = Callable[[float], float]  # monotonic time -> target tx/s


class Pacer:
    def __init__(self, rate_fn: RateFn, *, tick: float = 1.0, burst: bool = False,
                 clock: Clock = time.monotonic, max_backlog_s: float = 2.0):
        if tick <= 0:
            raise ValueError("tick must be > 0")
        self.clock = clock
        self.rate_fn = rate_fn
        self.tick = tick
        self.burst = burst
        self.max_backlog_s = max_backlog_s
        self.start = clock()
        self._last = self.start  # time up to which the target has been integrated
        self.target = 0.0  # cumulative target (records)
        self.sent = 0
        self.skipped = 0
        self.paused = False

    # ---- control --------------------------------------------------------------------
    def set_rate_fn(self, rate_fn: RateFn, tick: float | None = None) -> None:
        """Switch rate (or profile) without losing the credit integrated so far."""
        self._integrate(self.clock())
        self.rate_fn = rate_fn
        if tick is not None and tick > 0 and tick != self.tick:
            self.tick = tick

    def pause(self) -> None:
        self._integrate(self.clock())
        self.paused = True

    def resume(self) -> None:
        self._last = self._horizon(self.clock())
        self.paused = False

    # ---- pacing ---------------------------------------------------------------------
    def _horizon(self, now: float) -> float:
        """The moment up to which credit is released: now, or the last tick boundary."""
        if not self.burst:
            return now
        return self.start + math.floor((now - self.start) / self.tick + 1e-9) * self.tick

    def _integrate(self, now: float) -> None:
        until = self._horizon(now)
        if self.paused or until <= self._last:
            return
        # Midpoint rule: exact for steady and ramp profiles, good enough for the others
        # because the emulator integrates every few milliseconds.
        mid = (self._last + until) / 2
        self.target += max(0.0, self.rate_fn(mid)) * (until - self._last)
        self._last = until
        backlog = self.target - self.sent
        limit = max(1.0, self.rate_fn(until) * self.max_backlog_s)
        if backlog > limit:
            forgiven = int(backlog - limit)
            self.skipped += forgiven
            self.sent += forgiven

    def due(self) -> int:
        """Records owed now (0 when ahead of the target)."""
        self._integrate(self.clock())
        return max(0, int(self.target) - self.sent)

    def record(self, n: int) -> None:
        self.sent += n
