"""A one-line progress display on stderr that stays quiet when not on a terminal."""

from __future__ import annotations

import math
import sys
import time
from typing import TextIO

from segsim.units import SECONDS_PER_DAY


def _human(v: float) -> str:
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(v) >= scale:
            return f"{v / scale:.2f}{unit}"
    return f"{v:.0f}"


def _duration(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "?"
    s = round(seconds)
    h, rem = divmod(s, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


class Progress:
    """Progress of a run in steps: rate, acceptance and ETA.

    Parameters
    ----------
    total_steps
        Steps at the end of the run.
    start_step
        Steps already done (resume).
    stream
        Where to draw (default stderr); nothing is drawn unless it is a terminal or
        ``enabled=True`` is forced.
    enabled
        Force the display on (True) or off (False); None: on if ``stream`` is a terminal.
    """

    def __init__(
        self,
        total_steps: int,
        *,
        start_step: int = 0,
        stream: TextIO | None = None,
        enabled: bool | None = None,
        min_interval_s: float = 0.2,
    ) -> None:
        self.stream = stream if stream is not None else sys.stderr
        if enabled is None:
            enabled = bool(getattr(self.stream, "isatty", lambda: False)())
        self.enabled = enabled
        self.total = int(total_steps)
        self.start_step = int(start_step)
        self.t0 = time.perf_counter()
        self._last_draw = 0.0
        self.min_interval_s = min_interval_s

    def update(self, step: int, *, acceptance: float | None = None, force: bool = False) -> None:
        """Redraw the line for ``step`` (rate-limited unless ``force``)."""
        if not self.enabled:
            return
        now = time.perf_counter()
        if not force and now - self._last_draw < self.min_interval_s:
            return
        self._last_draw = now
        elapsed = now - self.t0
        done = step - self.start_step
        rate = done / elapsed if elapsed > 0 else 0.0
        eta = (self.total - step) / rate if rate > 0 else float("inf")
        pct = 100.0 * step / self.total if self.total else 100.0
        line = f"  step {_human(step)}/{_human(self.total)} ({pct:5.1f}%)  {_human(rate)} steps/s"
        if acceptance is not None:
            line += f"  acc {acceptance:.3f}"
        line += f"  ETA {_duration(eta)}"
        self.stream.write("\r" + line.ljust(78))
        self.stream.flush()

    def close(self) -> None:
        """Finish the line."""
        if self.enabled:
            self.stream.write("\n")
            self.stream.flush()


class TimeProgress(Progress):
    """Progress of a kinetic run in simulated time: days reached, events/s and ETA.

    The ETA extrapolates the simulated-time rate (simulated s per wall s) of this session.

    Parameters
    ----------
    total_s
        Simulated time at the end of the run (s).
    start_s
        Simulated time already done (resume).
    """

    def __init__(
        self,
        total_s: float,
        *,
        start_s: float = 0.0,
        stream: TextIO | None = None,
        enabled: bool | None = None,
        min_interval_s: float = 0.2,
    ) -> None:
        super().__init__(0, stream=stream, enabled=enabled, min_interval_s=min_interval_s)
        self.total_s = float(total_s)
        self.start_s = float(start_s)
        self._events0: int | None = None

    def update_time(
        self, time_s: float, n_events: int, *, extra: str = "", force: bool = False
    ) -> None:
        """Redraw the line for simulated time ``time_s`` (s) after ``n_events`` events."""
        if not self.enabled:
            return
        if self._events0 is None:
            self._events0 = n_events
        now = time.perf_counter()
        if not force and now - self._last_draw < self.min_interval_s:
            return
        self._last_draw = now
        elapsed = now - self.t0
        ev_rate = (n_events - self._events0) / elapsed if elapsed > 0 else 0.0
        sim_rate = (time_s - self.start_s) / elapsed if elapsed > 0 else 0.0
        eta = (self.total_s - time_s) / sim_rate if sim_rate > 0 else float("inf")
        pct = 100.0 * time_s / self.total_s if self.total_s else 100.0
        line = (
            f"  t {time_s / SECONDS_PER_DAY:.3f}/{self.total_s / SECONDS_PER_DAY:.3f} d "
            f"({pct:5.1f}%)  "
            f"{_human(ev_rate)} ev/s"
        )
        if extra:
            line += f"  {extra}"
        line += f"  ETA {_duration(eta)}"
        self.stream.write("\r" + line.ljust(78))
        self.stream.flush()
