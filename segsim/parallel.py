"""Task parallelism over MPI ranks: the only module of segsim that imports mpi4py.

segsim's parallel work is embarrassingly parallel (independent NCs, treatments, sweep
points), so the model is a static task list that every rank builds identically; rank ``r`` of
``n`` runs tasks ``r, r + n, r + 2n, ...`` and writes only its own files, never a shared one
(parallel HDF5 is not available from wheels).  Rank 0 joins the results after a barrier.

Without mpi4py, or when started without ``mpiexec`` (a world of one rank), everything runs
serially through the same code path.  Random streams never depend on the rank: each task
carries its own seed, spawned from the user's seed with ``numpy.random.SeedSequence.spawn``,
so per-task results do not depend on the number of ranks.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

T = TypeVar("T")
R = TypeVar("R")


@dataclass
class World:
    """The ranks of this job (``size == 1`` and ``comm is None`` when serial)."""

    rank: int
    size: int
    comm: Any = None

    @property
    def is_root(self) -> bool:
        """True on rank 0 (the rank that joins results and prints tables)."""
        return self.rank == 0

    def barrier(self) -> None:
        """Wait for every rank (no-op when serial)."""
        if self.comm is not None:
            self.comm.Barrier()

    def gather(self, obj: Any) -> list[Any] | None:
        """Gather one picklable object per rank on rank 0 (``[obj]`` when serial)."""
        if self.comm is None:
            return [obj]
        return self.comm.gather(obj, root=0)

    def bcast(self, obj: Any) -> Any:
        """Broadcast rank 0's ``obj`` to every rank."""
        if self.comm is None:
            return obj
        return self.comm.bcast(obj, root=0)

    def my_tasks(self, tasks: Sequence[T]) -> list[T]:
        """Return this rank's share of ``tasks`` (round-robin, the same list on every rank)."""
        return list(tasks[self.rank :: self.size])


def _launched_by_mpi() -> bool:
    """Return True if an MPI launcher started this process (else MPI is not imported)."""
    keys = ("PMI_RANK", "PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "MPI_LOCALNRANKS")
    return any(k in os.environ for k in keys)


def world(*, force_serial: bool = False) -> World:
    """Return the job's :class:`World`.

    mpi4py is imported only when an MPI launcher (``mpiexec``/``srun``) started the process
    and ``force_serial`` is false; otherwise, and if mpi4py is not installed, the world is a
    single serial rank.  ``pip install -e ".[mpi]"`` brings mpi4py and MPICH.
    """
    if force_serial or not _launched_by_mpi():
        return World(0, 1)
    try:
        from mpi4py import MPI
    except ImportError:
        return World(0, 1)
    comm = MPI.COMM_WORLD
    if comm.Get_size() == 1:
        return World(0, 1)
    _serial_ase()
    return World(comm.Get_rank(), comm.Get_size(), comm)


def _serial_ase() -> None:
    """Make ASE's file I/O per rank: segsim's ranks read and write their own files.

    Once mpi4py is imported, ``ase.parallel.world`` becomes COMM_WORLD and ``ase.io.read``
    reads on rank 0 and broadcasts to every rank: a hidden collective.  icet reads each
    cluster expansion through it, and segsim's ranks load the model once per task, so when
    the ranks run different numbers of tasks those broadcasts pair up with the wrong calls
    on the other rank (measured: a hang, or a ``bcast`` that returns ASE's payload).  ASE's
    world is a lazy wrapper that every module shares, so replacing its communicator by
    ASE's own serial stand-in makes every ASE call local to its rank.
    """
    import ase.parallel

    ase.parallel.world.comm = ase.parallel.DummyMPI()


def share(n_tasks: int, n_ranks: int, cost: Sequence[float] | None = None) -> list[list[int]]:
    """Split task indices ``0..n_tasks-1`` over ranks; each rank's list longest first.

    Without ``cost``: round-robin (rank ``r`` gets ``r, r + n, ...``).  With it, longest
    processing time first: tasks in decreasing cost (ties by index) go one by one to the
    rank with the least cost so far (ties: the lowest rank), so every rank computes the same
    split and the load is balanced.  Within a rank the tasks are ordered by decreasing cost,
    so that the longest start first.
    """
    if cost is None:
        return [list(range(r, n_tasks, n_ranks)) for r in range(n_ranks)]
    if len(cost) != n_tasks:
        raise ValueError("one cost per task")
    order = sorted(range(n_tasks), key=lambda k: (-float(cost[k]), k))
    load = [0.0] * n_ranks
    out: list[list[int]] = [[] for _ in range(n_ranks)]
    for k in order:
        r = min(range(n_ranks), key=lambda q: (load[q], q))
        out[r].append(k)
        load[r] += float(cost[k])
    return out


def run_tasks(
    w: World,
    tasks: Sequence[T],
    fn: Callable[[T], R],
    *,
    threads: int = 1,
    cost: Sequence[float] | None = None,
) -> list[R] | None:
    """Run ``fn`` on this rank's tasks; return all results in task order on rank 0.

    Other ranks return ``None``.  The split over ranks is :func:`share` (round-robin, or
    balanced by ``cost``, the expected cost of each task, longest first).  With ``threads``
    > 1 a rank runs its tasks on that many threads, each taking the next task when it is
    free (dynamic hand-out, longest first): the compiled kernels release the GIL, so the
    threads run in parallel.  Per-task results do not depend on ranks or threads (each task
    has its own seed and files).  SIGINT/SIGTERM stop every running task of the process
    (:mod:`segsim.stopflag`).  An exception in any task is re-raised on its rank after the
    others finish (no new task starts after it), so that no rank waits forever at the
    gather.
    """
    if threads < 1:
        raise ValueError(f"threads must be >= 1, got {threads}")
    mine_idx = share(len(tasks), w.size, cost)[w.rank]
    mine: list[tuple[int, Any]] = []
    error: BaseException | None = None
    if threads == 1:
        for k in mine_idx:
            try:
                mine.append((k, fn(tasks[k])))
            except Exception as exc:  # noqa: BLE001  (re-raised after the gather: no hang)
                error = exc
                break
    else:
        mine, error = _run_threaded(tasks, fn, mine_idx, threads)
    gathered = w.gather((mine, repr(error) if error else None))
    if error is not None:
        raise error
    if not w.is_root:
        return None
    assert gathered is not None
    failed = [e for _, e in gathered if e]
    if failed:
        raise RuntimeError(f"a task failed on another rank: {failed[0]}")
    out: list[Any] = [None] * len(tasks)
    for part, _ in gathered:
        for k, r in part:
            out[k] = r
    return out


def _run_threaded(
    tasks: Sequence[T], fn: Callable[[T], R], order: list[int], threads: int
) -> tuple[list[tuple[int, Any]], BaseException | None]:
    """Run ``fn`` on ``tasks[k]`` for ``k`` in ``order`` on a pool of ``threads`` threads."""
    import queue
    import threading

    from segsim.stopflag import StopFlag

    todo: queue.Queue[int] = queue.Queue()
    for k in order:
        todo.put(k)
    done: list[tuple[int, Any]] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def worker() -> None:
        while not errors:
            try:
                k = todo.get_nowait()
            except queue.Empty:
                return
            try:
                r = fn(tasks[k])
            except BaseException as exc:  # noqa: BLE001  (reported by the main thread)
                with lock:
                    errors.append(exc)
                return
            with lock:
                done.append((k, r))

    pool = [threading.Thread(target=worker, daemon=True) for _ in range(threads)]
    with StopFlag():  # the main thread's handler reaches every task's flag
        for t in pool:
            t.start()
        for t in pool:
            while t.is_alive():
                t.join(timeout=0.5)  # wake up for signals
    done.sort()
    return done, (errors[0] if errors else None)
