"""Task parallelism: the split over ranks, the thread pool, the process-wide stop flag."""

from __future__ import annotations

import threading
import time

import pytest

from segsim import parallel, stopflag


def test_share_is_round_robin_without_costs_and_balanced_with_them():
    assert parallel.share(7, 3) == [[0, 3, 6], [1, 4], [2, 5]]
    cost = [1.0, 9.0, 2.0, 8.0, 3.0, 3.0]
    split = parallel.share(6, 2, cost)
    assert sorted(k for part in split for k in part) == list(range(6))  # every task once
    loads = [sum(cost[k] for k in part) for part in split]
    assert loads == [13.0, 13.0]  # LPT: 9+3+1 / 8+3+2
    for part in split:  # longest first within a rank
        assert [cost[k] for k in part] == sorted((cost[k] for k in part), reverse=True)
    assert parallel.share(6, 2, cost) == split  # the same on every rank
    with pytest.raises(ValueError, match="one cost per task"):
        parallel.share(3, 2, [1.0])


def test_threads_run_tasks_at_once_and_return_them_in_task_order():
    barrier = threading.Barrier(2, timeout=20)  # passes only if two tasks run together
    seen: list[int] = []

    def fn(k: int) -> int:
        if k < 2:
            barrier.wait()
        seen.append(k)
        return k * k

    w = parallel.World(0, 1)
    out = parallel.run_tasks(w, list(range(6)), fn, threads=2, cost=[5, 6, 1, 1, 1, 1])
    assert out == [k * k for k in range(6)]
    assert sorted(seen) == list(range(6))
    with pytest.raises(ValueError, match="threads"):
        parallel.run_tasks(w, [1], fn, threads=0)


def test_a_failing_task_is_raised_and_no_new_task_starts_after_it():
    started: list[int] = []

    def fn(k: int) -> int:
        started.append(k)
        if k == 0:
            raise RuntimeError("task 0 failed")
        time.sleep(0.05)
        return k

    w = parallel.World(0, 1)
    with pytest.raises(RuntimeError, match="task 0 failed"):
        parallel.run_tasks(w, list(range(20)), fn, threads=2)
    assert len(started) < 20


def test_a_stop_request_reaches_flags_of_every_thread():
    stopflag.clear()
    seen = []

    def worker() -> None:
        with stopflag.StopFlag() as flag:  # installs no handler off the main thread
            seen.append(flag.stop)
            stopflag.REQUESTED.wait(5)
            seen.append(flag.stop)

    t = threading.Thread(target=worker)
    t.start()
    with stopflag.StopFlag() as main_flag:
        time.sleep(0.1)
        main_flag._handler(2, None)  # what SIGINT does in the main thread
    t.join(5)
    assert seen == [False, True]
    assert main_flag.stop
    stopflag.clear()
    fresh = stopflag.StopFlag()
    assert not fresh.stop
    fresh.stop = True  # a wall-time limit sets only its own flag
    assert fresh.stop
    assert not stopflag.REQUESTED.is_set()
