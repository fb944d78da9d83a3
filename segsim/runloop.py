"""The one run loop: advance an engine chunk by chunk, record frames, checkpoint, stop cleanly.

Canonical MC and KMC share this loop (icet's ``BaseEnsemble.run``, SPPARKS' ``run``); what
differs between them is a small engine interface and the frame schedule:

* the engine (:class:`segsim.engine.MCEngine`, :class:`segsim.engine.KMCEngine`) gives its
  ``position`` (trial steps, or simulated time in s), ``advance_to(target)`` (one compiled
  chunk towards a frame), ``checkpoint(frame, complete)``, ``snapshot()``, ``report(bar)``
  and ``where()``;
* the schedule (:class:`StepSchedule`, :class:`TimeSchedule`) places the frames and says at
  which frames a snapshot and a checkpoint are written;
* the observers (:mod:`segsim.observers`) say what a frame holds; the sink (``H5Sink``)
  writes it.

The loop itself opens no file, parses no input and knows no physics.  A run stopped by a
signal, a wall-time limit or ``stop_at`` writes a checkpoint; resumed from it, the run writes
exactly what an uninterrupted run writes.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from segsim.observers import Observer, observe

__all__ = ["Schedule", "StepSchedule", "TimeSchedule", "run_frames", "write_first_frame"]


class Schedule(Protocol):
    """Where the frames of a run lie and which frames carry a snapshot or a checkpoint."""

    n_frames: int  # frames after the first (frame 0 is the start)

    def target(self, frame: int) -> float:
        """Position (step or time in s) of ``frame``."""
        ...

    def snapshot_due(self, frame: int, done: bool) -> bool:
        """Whether ``frame`` carries an occupation snapshot."""
        ...

    def checkpoint_due(self, frame: int) -> bool:
        """Whether ``frame`` carries a checkpoint (besides the last and a stopped one)."""
        ...


@dataclass(frozen=True)
class StepSchedule:
    """Frames every ``interval`` trial steps and at ``total`` (canonical MC).

    Snapshots and checkpoints are written at the frames whose step is a multiple of their
    interval (0: never; the last frame always has both when the interval is not 0 / always a
    checkpoint).
    """

    total: int
    interval: int
    snapshot_interval: int = 0
    checkpoint_interval: int = 0

    @property
    def n_frames(self) -> int:
        """Frames after the first."""
        return -(-self.total // self.interval) if self.total > 0 else 0

    def target(self, frame: int) -> int:
        """Step of ``frame``."""
        return min(frame * self.interval, self.total)

    def frame_of(self, step: int) -> int:
        """Index of the frame at ``step`` (a resumed MC run restarts on a frame)."""
        return self.n_frames if step >= self.total else step // self.interval

    def snapshot_due(self, frame: int, done: bool) -> bool:
        """Whether ``frame`` carries a snapshot."""
        si = self.snapshot_interval
        return bool(si) and (self.target(frame) % si == 0 or done)

    def checkpoint_due(self, frame: int) -> bool:
        """Whether ``frame`` carries a checkpoint."""
        ci = self.checkpoint_interval
        return bool(ci) and self.target(frame) % ci == 0


@dataclass(frozen=True)
class TimeSchedule:
    """Frames at given simulated times in s (KMC); snapshots and checkpoints every k frames."""

    times: np.ndarray  # frame times in s, starting at 0
    snapshot_every: int = 0
    checkpoint_every: int = 1

    @classmethod
    def regular(
        cls,
        total_s: float,
        interval_s: float,
        *,
        extra_s: Sequence[float] = (),
        snapshot_every: int = 0,
        checkpoint_every: int = 1,
    ) -> TimeSchedule:
        """Return frames at 0, every ``interval_s``, ``total_s`` and each time in ``extra_s``.

        Times in ``extra_s`` outside ``(0, total_s)`` are ignored (a ligand-exchange
        treatment that ends inside the run adds its end as a frame: the rates switch there).
        """
        n = math.ceil(total_s / interval_s - 1e-9)
        grid = [min(k * interval_s, total_s) for k in range(n + 1)]
        grid += [t for t in extra_s if 0.0 < t < total_s]
        times = np.unique(np.asarray(grid, dtype=np.float64))
        return cls(times, snapshot_every=snapshot_every, checkpoint_every=checkpoint_every)

    @property
    def n_frames(self) -> int:
        """Frames after the first."""
        return len(self.times) - 1

    def target(self, frame: int) -> float:
        """Time (s) of ``frame``."""
        return float(self.times[frame])

    def snapshot_due(self, frame: int, done: bool) -> bool:
        """Whether ``frame`` carries a snapshot."""
        k = self.snapshot_every
        return bool(k) and (frame % k == 0 or done)

    def checkpoint_due(self, frame: int) -> bool:
        """Whether ``frame`` carries a checkpoint."""
        return frame % self.checkpoint_every == 0


def write_first_frame(
    engine: Any, schedule: Schedule, *, observers: Sequence[Observer], sink: Any
) -> None:
    """Append frame 0 of a new run (with a checkpoint, and a snapshot if snapshots are on)."""
    done = schedule.n_frames == 0
    sink.append(
        observe(observers, engine),
        snapshot=engine.snapshot() if schedule.snapshot_due(0, done) else None,
        checkpoint=engine.checkpoint(0, done),
    )


def run_frames(
    engine: Any,
    schedule: Schedule,
    frame: int,
    *,
    observers: Sequence[Observer],
    sink: Any,
    stop: Any,
    bar: Any,
    deadline: float | None = None,
    stop_at: float | None = None,
    on_frame: Callable[[Any], None] | None = None,
) -> bool:
    """Advance ``engine`` from ``frame`` to the last frame; return True when the run is done.

    Parameters
    ----------
    engine
        The engine (see the module docstring for the interface it provides).
    schedule
        The frames.
    frame
        The last frame already written (0 for a new run; from the checkpoint on resume).
    observers
        What each frame records.
    sink
        Where frames, snapshots and checkpoints go (``append``, ``checkpoint``).
    stop
        An object with a boolean ``stop`` attribute, set by a signal handler; checked after
        every chunk.
    bar
        The progress line (updated after every chunk through ``engine.report``).
    deadline
        ``time.perf_counter()`` value after which the run stops cleanly (wall-time limit).
    stop_at
        Stop cleanly at the first frame at or after this position (tests of resume).
    on_frame
        Called with the engine after every frame is reached and before it is recorded (the
        end of a ligand-exchange treatment switches the rates there).

    Returns
    -------
    bool
        True if the last frame was written; False if the run stopped first, after writing a
        checkpoint (at the last frame, or mid-interval for a chunked engine).
    """
    n_frames = schedule.n_frames
    end = schedule.target(n_frames)
    while frame < n_frames:
        target = schedule.target(frame + 1)
        while engine.position < target and not stop.stop:
            engine.advance_to(target)
            engine.report(bar, force=engine.position >= end)
            if deadline is not None and time.perf_counter() > deadline:
                stop.stop = True
        if engine.position < target:  # stopped inside a frame interval
            sink.checkpoint(*engine.checkpoint(frame, False))
            return False
        frame += 1
        done = frame >= n_frames
        if on_frame is not None:
            on_frame(engine)
        if stop_at is not None and engine.position >= stop_at:
            stop.stop = True
        ckpt = done or stop.stop or schedule.checkpoint_due(frame)
        sink.append(
            observe(observers, engine),
            snapshot=engine.snapshot() if schedule.snapshot_due(frame, done) else None,
            checkpoint=engine.checkpoint(frame, done) if ckpt else None,
        )
        if stop.stop and not done:
            return False
    return True
