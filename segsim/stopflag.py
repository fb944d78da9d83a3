"""SIGINT/SIGTERM as a flag that every run of the process sees, in any thread.

A run checks its :class:`StopFlag` between chunks (:func:`segsim.runloop.run_frames`).
Python delivers signals to the main thread only, so a run on a worker thread (the NCs of an
ensemble on a thread pool, :func:`segsim.parallel.run_tasks`) cannot install a handler; the
handler of whichever flag the main thread holds therefore also sets :data:`REQUESTED`, which
every flag of the process reads.  A command clears it when it starts (:func:`clear`).
"""

from __future__ import annotations

import contextlib
import signal
import threading
from typing import Any, Self

#: Set once SIGINT or SIGTERM reached a handler of this process (any :class:`StopFlag`).
REQUESTED = threading.Event()


def clear() -> None:
    """Forget an earlier stop request (at the start of a command)."""
    REQUESTED.clear()


class StopFlag:
    """Turns SIGINT/SIGTERM into a flag checked between chunks.

    ``stop`` is True once this flag was set (a wall-time limit, ``stop_at``) or a signal
    reached any flag of the process.  In the main thread the context installs the handler
    (and restores the previous one on exit); in other threads it installs nothing.
    """

    def __init__(self) -> None:
        self._stop = False
        self._old: dict[int, Any] = {}

    @property
    def stop(self) -> bool:
        """True once this flag was set or the process received SIGINT/SIGTERM."""
        return self._stop or REQUESTED.is_set()

    @stop.setter
    def stop(self, value: bool) -> None:
        self._stop = bool(value)

    def __enter__(self) -> Self:
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                with contextlib.suppress(ValueError):  # e.g. an embedded interpreter
                    self._old[sig] = signal.signal(sig, self._handler)
        return self

    def _handler(self, signum: int, frame: Any) -> None:
        self._stop = True
        REQUESTED.set()

    def __exit__(self, *exc: object) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)
