"""Engines own the only mutable simulation state and advance it chunk by chunk.

The canonical Monte Carlo engine calls one compiled kernel per chunk
(:func:`segsim.kernels.metropolis._run_mc_chunk`), the kinetic Monte Carlo engine likewise
(:func:`segsim.kernels.kmc._run_kmc_chunk`); Python runs only between chunks.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from segsim import species
from segsim.kernels import kmc as _kmc
from segsim.kernels.metropolis import _run_mc_chunk
from segsim.models.base import ModelTables
from segsim.units import beta_per_ev


@dataclass
class MCState:
    """Mutable state of a canonical Monte Carlo run.

    Attributes
    ----------
    occupations
        Species code per grid site (``uint8``).
    pb_sites, cd_sites
        Sites holding Pb and Cd (``int64``); their order is part of the state because the
        kernel indexes them with random numbers.
    step
        Trial swaps done so far.
    energy_ev
        Total CE energy of the grid in eV, kept up to date from the accepted energy changes.
    n_accepted
        Accepted trial swaps so far.
    """

    occupations: np.ndarray
    pb_sites: np.ndarray
    cd_sites: np.ndarray
    step: int
    energy_ev: float
    n_accepted: int

    @classmethod
    def initial(cls, occupations: np.ndarray, tables: ModelTables) -> MCState:
        """Return the state at step 0 for ``occupations`` (copied)."""
        occ = np.array(occupations, dtype=species.OCC_DTYPE, copy=True)
        return cls(
            occupations=occ,
            pb_sites=np.flatnonzero(occ == species.PB).astype(np.int64),
            cd_sites=np.flatnonzero(occ == species.CD).astype(np.int64),
            step=0,
            energy_ev=tables.total_energy(occ),
            n_accepted=0,
        )

    def arrays(self) -> dict[str, Any]:
        """Return the state as named arrays and scalars (for checkpoints)."""
        return {
            "occupations": self.occupations,
            "pb_sites": self.pb_sites,
            "cd_sites": self.cd_sites,
            "step": self.step,
            "energy_ev": self.energy_ev,
            "n_accepted": self.n_accepted,
        }


class MCEngine:
    """Canonical (fixed composition) Metropolis Monte Carlo of Pb/Cd swaps.

    Parameters
    ----------
    tables
        The compiled energy model.
    state
        The state to advance (owned and mutated by the engine).
    rng
        The run's generator; passed into the compiled kernel, which advances it.
    temperature_k
        Temperature in K.
    """

    def __init__(
        self,
        tables: ModelTables,
        state: MCState,
        rng: np.random.Generator,
        *,
        temperature_k: float,
    ) -> None:
        self.tables = tables
        self.state = state
        self.rng = rng
        self.temperature_k = float(temperature_k)
        self.beta = beta_per_ev(temperature_k)

    def advance(self, n_steps: int) -> int:
        """Run ``n_steps`` trial swaps in one compiled call; return the number accepted."""
        if n_steps < 0:
            raise ValueError("n_steps must be >= 0")
        t = self.tables
        s = self.state
        n_acc, de_sum = _run_mc_chunk(
            s.occupations,
            s.pb_sites,
            s.cd_sites,
            int(n_steps),
            self.beta,
            t.nbr,
            t.ce_index,
            t.weights,
            t.local_table,
            self.rng,
        )
        s.step += int(n_steps)
        s.n_accepted += int(n_acc)
        s.energy_ev += float(de_sum)
        return int(n_acc)

    def energy_drift_ev(self) -> float:
        """Return running energy minus a full recompute (eV); should be ~1e-10 or less."""
        return self.state.energy_ev - self.tables.total_energy(self.state.occupations)


@dataclass
class KMCState:
    """Mutable state of a kinetic Monte Carlo run.

    The rates and the sum tree are not part of the state: they are a pure function of the
    occupations and are rebuilt bitwise identically on resume.

    Attributes
    ----------
    occupations
        Species code per grid site (``uint8``).
    time_s
        Simulated time in seconds.
    n_events
        Events executed so far.
    counts
        Events by type (``int64``, order :data:`segsim.kernels.kmc.EVENT_TYPE_NAMES`).
    energy_ev
        Total CE energy of the grid in eV, kept up to date from the events' energy changes.
    """

    occupations: np.ndarray
    time_s: float
    n_events: int
    counts: np.ndarray
    energy_ev: float

    @classmethod
    def initial(cls, occupations: np.ndarray, tables: ModelTables) -> KMCState:
        """Return the state at time 0 for ``occupations`` (copied)."""
        occ = np.array(occupations, dtype=species.OCC_DTYPE, copy=True)
        return cls(
            occupations=occ,
            time_s=0.0,
            n_events=0,
            counts=np.zeros(_kmc.N_EVENT_TYPES, dtype=np.int64),
            energy_ev=tables.total_energy(occ),
        )

    def counts_by_name(self) -> dict[str, int]:
        """Return the event counters keyed by event type name."""
        return {n: int(c) for n, c in zip(_kmc.EVENT_TYPE_NAMES, self.counts, strict=True)}


@dataclass
class EventLog:
    """Events of one :meth:`KMCEngine.advance` call (site, slot, time after the event in s)."""

    site: np.ndarray
    slot: np.ndarray
    time_s: np.ndarray


class KMCEngine:
    """Rejection-free lattice kinetic Monte Carlo (n-fold way) over a compiled energy model.

    Each :meth:`advance` is one call of the compiled
    :func:`segsim.kernels.kmc._run_kmc_chunk`, which selects events through a rate sum tree
    in O(log N) and recomputes only the rates near the changed sites
    (:func:`segsim.kernels.kmc._refresh_box`).

    Parameters
    ----------
    tables
        The compiled energy model.
    lattice
        The grid (for its shape and nearest-neighbour table).
    state
        The state to advance (owned and mutated by the engine).
    rng
        The run's generator; passed into the compiled kernel, which advances it.
    kp
        Parameter vector from :func:`segsim.kinetics.parameter_vector`.
    """

    def __init__(
        self,
        tables: ModelTables,
        lattice: Any,
        state: KMCState,
        rng: np.random.Generator,
        kp: np.ndarray,
    ) -> None:
        if state.occupations.shape != (tables.n_sites,):
            raise ValueError("occupations do not match the compiled tables")
        if kp.shape != (_kmc.N_KP,) or kp.dtype != np.float64:
            raise ValueError(f"kp must be float64 of shape ({_kmc.N_KP},)")
        self.tables = tables
        self.lattice = lattice
        self.state = state
        self.rng = rng
        self.kp = kp
        self.nn = np.ascontiguousarray(lattice.nn, dtype=np.int32)
        self.shape = np.asarray(lattice.shape, dtype=np.int64)
        self.reach = int(tables.reach)
        n = tables.n_sites
        p = 1
        while p < n:
            p *= 2
        self.rates = np.zeros((n, _kmc.N_SLOTS), dtype=np.float64)
        self.site_total = np.zeros(n, dtype=np.float64)
        self.tree = np.zeros(2 * p, dtype=np.float64)
        self.rebuild_rates()

    def rebuild_rates(self) -> None:
        """Recompute every rate and the sum tree from the occupations."""
        t = self.tables
        _kmc._init_rates(
            self.state.occupations, self.nn, t.nbr, t.ce_index, t.weights, t.local_table,
            self.kp, self.rates, self.site_total, self.tree,
        )  # fmt: skip

    @property
    def total_rate_per_s(self) -> float:
        """Sum of all event rates (1/s) in the current state."""
        return float(self.tree[1])

    def advance(
        self, t_stop_s: float, *, max_events: int = 2**62, log_events: int = 0
    ) -> tuple[int, EventLog | None]:
        """Run events until simulated time ``t_stop_s`` (s) or ``max_events`` events.

        Returns the number of events and, if ``log_events > 0``, the log of the first
        ``log_events`` events of this call.
        """
        if t_stop_s < self.state.time_s:
            raise ValueError("t_stop_s is before the current time")
        if max_events < 0 or log_events < 0:
            raise ValueError("max_events and log_events must be >= 0")
        t = self.tables
        s = self.state
        log_site = np.zeros(log_events, dtype=np.int64)
        log_slot = np.zeros(log_events, dtype=np.int64)
        log_time = np.zeros(log_events, dtype=np.float64)
        t_now, n_ev, de_sum = _kmc._run_kmc_chunk(
            s.occupations, self.rates, self.site_total, self.tree, self.nn, t.nbr, t.ce_index,
            t.weights, t.local_table, self.kp, self.shape, self.reach, float(s.time_s),
            float(t_stop_s), int(max_events), self.rng, s.counts, log_site, log_slot, log_time,
        )  # fmt: skip
        s.time_s = float(t_now)
        s.n_events += int(n_ev)
        s.energy_ev += float(de_sum)
        log = None
        if log_events:
            m = min(int(n_ev), log_events)
            log = EventLog(log_site[:m], log_slot[:m], log_time[:m])
        return int(n_ev), log

    def energy_drift_ev(self) -> float:
        """Return running energy minus a full recompute (eV); should be ~1e-10 or less."""
        return self.state.energy_ev - self.tables.total_energy(self.state.occupations)
