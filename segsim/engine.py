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
from segsim.rng import state_to_json
from segsim.rp import RPEnergetics, rp_energy_ev
from segsim.units import SECONDS_PER_DAY, beta_per_ev


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
    phase
        RP phase code per site (:mod:`segsim.rp`); fixed during canonical MC.
    """

    occupations: np.ndarray
    pb_sites: np.ndarray
    cd_sites: np.ndarray
    step: int
    energy_ev: float
    n_accepted: int
    phase: np.ndarray | None = None

    @classmethod
    def initial(
        cls, occupations: np.ndarray, tables: ModelTables, phase: np.ndarray | None = None
    ) -> MCState:
        """Return the state at step 0 for ``occupations`` (copied).

        ``energy_ev`` is the CE energy; :class:`MCEngine` adds the RP term when it has one.
        """
        occ = np.array(occupations, dtype=species.OCC_DTYPE, copy=True)
        ph = np.zeros_like(occ) if phase is None else np.array(phase, dtype=np.uint8, copy=True)
        return cls(
            occupations=occ,
            pb_sites=np.flatnonzero(occ == species.PB).astype(np.int64),
            cd_sites=np.flatnonzero(occ == species.CD).astype(np.int64),
            step=0,
            energy_ev=tables.total_energy(occ),
            n_accepted=0,
            phase=ph,
        )

    @classmethod
    def from_checkpoint(cls, arrays: dict[str, Any], attrs: dict[str, Any]) -> MCState:
        """Return the state stored by :meth:`checkpoint` (the phase field is not stored)."""
        return cls(
            occupations=arrays["occupations"].astype(species.OCC_DTYPE),
            pb_sites=arrays["pb_sites"].astype(np.int64),
            cd_sites=arrays["cd_sites"].astype(np.int64),
            step=int(attrs["step"]),
            energy_ev=float(attrs["energy_ev"]),
            n_accepted=int(attrs["n_accepted"]),
        )

    def checkpoint(
        self, rng: np.random.Generator, complete: bool
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        """Return ``(arrays, attrs)`` of a checkpoint: the state and the generator's state."""
        arrays = {
            "occupations": self.occupations,
            "pb_sites": self.pb_sites,
            "cd_sites": self.cd_sites,
        }
        attrs = {
            "step": self.step,
            "energy_ev": self.energy_ev,
            "n_accepted": self.n_accepted,
            "rng_state": state_to_json(rng.bit_generator.state),
            "complete": complete,
        }
        return arrays, attrs


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
    rp
        RP energetics (:class:`segsim.rp.RPEnergetics`) if the state's phase field carries
        RP domains; only ``eta`` changes in a Pb/Cd swap.
    """

    def __init__(
        self,
        tables: ModelTables,
        state: MCState,
        rng: np.random.Generator,
        *,
        temperature_k: float,
        rp: Any = None,
        lattice: Any = None,
    ) -> None:
        self.tables = tables
        self.state = state
        self.rng = rng
        self.temperature_k = float(temperature_k)
        self.beta = beta_per_ev(temperature_k)
        if state.phase is None:
            state.phase = np.zeros_like(state.occupations)
        self.rp = rp
        self.eta_rp = float(rp.eta_ev) if rp is not None else 0.0
        self._nn = None if lattice is None else lattice.nn
        if rp is not None and lattice is None:
            raise ValueError("an RP term needs the lattice (neighbour table)")
        if state.step == 0 and rp is not None:
            state.energy_ev = self.total_energy_ev()  # at step 0: the full energy, CE + RP
        #: Acceptance ratio of the last :meth:`advance_to` (0 before the first).
        self.last_acceptance = 0.0

    def advance(self, n_steps: int) -> int:
        """Run ``n_steps`` trial swaps in one compiled call; return the number accepted."""
        if n_steps < 0:
            raise ValueError("n_steps must be >= 0")
        t = self.tables
        s = self.state
        n_acc, de_sum = _run_mc_chunk(
            s.occupations,
            s.phase,
            s.pb_sites,
            s.cd_sites,
            int(n_steps),
            self.beta,
            self.eta_rp,
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

    # ---- the run loop's view (segsim.runloop): position = trial steps done
    @property
    def position(self) -> int:
        """How far the run is: trial swaps done (frames are placed in steps)."""
        return self.state.step

    def advance_to(self, target: int) -> None:
        """Run up to trial step ``target`` in one compiled call (a whole frame interval)."""
        n = int(target) - self.state.step
        n_acc = self.advance(n)
        self.last_acceptance = n_acc / n if n else 0.0

    def checkpoint(self, frame: int, complete: bool) -> tuple[dict[str, Any], dict[str, Any]]:
        """Return the checkpoint ``(arrays, attrs)`` (``frame`` is implied by the step)."""
        return self.state.checkpoint(self.rng, complete)

    def snapshot(self) -> tuple[int, np.ndarray]:
        """Return ``(step, occupations)`` for the snapshot datasets."""
        return self.state.step, self.state.occupations

    def report(self, bar: Any, *, force: bool = False) -> None:
        """Update a :class:`segsim.progress.Progress` line."""
        bar.update(self.state.step, acceptance=self.last_acceptance, force=force)

    def where(self) -> str:
        """Say where the run stands (for the message of an interrupted run)."""
        return f"step {self.state.step}"

    def total_energy_ev(self) -> float:
        """Return the full recompute of the energy (CE + RP) in eV."""
        e = self.tables.total_energy(self.state.occupations)
        if self.rp is not None:
            e += rp_energy_ev(self.state.occupations, self.state.phase, self._nn, self.rp)
        return e

    def energy_drift_ev(self) -> float:
        """Return running energy minus a full recompute (eV); should be ~1e-10 or less."""
        return self.state.energy_ev - self.total_energy_ev()


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
        Total energy of the grid (CE, plus RP when the engine has the RP term) in eV, kept up
        to date from the events' energy changes.
    phase
        RP phase code per site (:mod:`segsim.rp`; all perovskite without RP domains).
    """

    occupations: np.ndarray
    time_s: float
    n_events: int
    counts: np.ndarray
    energy_ev: float
    phase: np.ndarray | None = None

    @classmethod
    def initial(
        cls, occupations: np.ndarray, tables: ModelTables, phase: np.ndarray | None = None
    ) -> KMCState:
        """Return the state at time 0 for ``occupations`` and ``phase`` (copied).

        ``energy_ev`` is the CE energy; :class:`KMCEngine` adds the RP term when it is on.
        """
        occ = np.array(occupations, dtype=species.OCC_DTYPE, copy=True)
        ph = np.zeros_like(occ) if phase is None else np.array(phase, dtype=np.uint8, copy=True)
        return cls(
            occupations=occ,
            time_s=0.0,
            n_events=0,
            counts=np.zeros(_kmc.N_EVENT_TYPES, dtype=np.int64),
            energy_ev=tables.total_energy(occ),
            phase=ph,
        )

    def counts_by_name(self) -> dict[str, int]:
        """Return the event counters keyed by event type name."""
        return {n: int(c) for n, c in zip(_kmc.EVENT_TYPE_NAMES, self.counts, strict=True)}

    @classmethod
    def from_checkpoint(cls, arrays: dict[str, Any], attrs: dict[str, Any]) -> KMCState:
        """Return the state stored by :meth:`checkpoint`."""
        return cls(
            occupations=arrays["occupations"].astype(species.OCC_DTYPE),
            time_s=float(attrs["time_s"]),
            n_events=int(attrs["step"]),
            counts=arrays["counts"].astype(np.int64),
            energy_ev=float(attrs["energy_ev"]),
            phase=arrays["phase"].astype(np.uint8),
        )

    def checkpoint(
        self, rng: np.random.Generator, frame: int, complete: bool
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        """Return ``(arrays, attrs)`` of a checkpoint at ``frame`` (the last frame written)."""
        arrays = {"occupations": self.occupations, "counts": self.counts, "phase": self.phase}
        attrs = {
            "step": self.n_events,
            "time_s": self.time_s,
            "frame": frame,
            "energy_ev": self.energy_ev,
            "rng_state": state_to_json(rng.bit_generator.state),
            "complete": complete,
        }
        return arrays, attrs


@dataclass
class EventLog:
    """Events of one :meth:`KMCEngine.advance` call (site, slot, time after the event in s)."""

    site: np.ndarray
    slot: np.ndarray
    time_s: np.ndarray


def dependency_columns(tables: ModelTables) -> np.ndarray:
    """Return the columns of ``tables.nbr`` that a site's energy changes depend on.

    The zero displacement and every displacement of the CE's local clusters
    (``local_table``): the energy change of flipping site ``s`` reads only the sites
    ``nbr[s, dep]``.  The set must be closed under negation (it is for any set of whole
    clusters), so that ``s`` sees ``i`` exactly when ``i`` sees ``s``: the KMC's rate refresh
    (:func:`segsim.kernels.kmc._refresh_after`) relies on it.

    Raises
    ------
    ValueError
        If the displacements are not closed under negation.
    """
    disp = np.asarray(tables.displacements, dtype=np.int64)
    cols = set(np.asarray(tables.local_table)[:, 2::2].ravel().tolist()) | {0}
    index = {tuple(d): k for k, d in enumerate(disp.tolist())}
    for k in cols:
        if index.get(tuple((-disp[k]).tolist())) not in cols:
            raise ValueError("the model's cluster displacements are not closed under negation")
    return np.array(sorted(cols), dtype=np.int64)


#: Bits of headroom of the pair field: |field| <= 2**FIELD_BITS quanta, so that the sums of
#: a swap's energy change (four field entries and four weights) stay far inside int64.
FIELD_BITS = 57


def pair_field_tables(tables: ModelTables) -> tuple[tuple[Any, ...], np.ndarray]:
    """Split the CE's local clusters into an exact integer pair field and the rest.

    Rows of ``tables.local_table`` with at most one other site (singlets and pairs) go into
    ``pair_table`` (``[w_offset, centre_stride, d, stride]``); their energies are kept per
    site and species in ``field`` as integer multiples of ``quantum`` = 2**-k eV, with k the
    largest that keeps every field entry below 2**:data:`FIELD_BITS` quanta (k <= 57:
    ``provisional.ce`` 57, ``fitted.ce`` 49).  ``w_int`` is ``weights / quantum`` rounded (by
    at most 2**-(k+1) eV per weight, the weights' own float round-off for eV-sized
    weights); from there every sum is exact integer arithmetic, so a field kept up to date
    event by event is bitwise the one a rebuild gives (resume exactness).  Clusters of three
    or more sites stay in the returned ``multi_table`` (same row layout as
    ``local_table``), evaluated in floating point.

    Returns
    -------
    (fld, multi_table)
        ``fld = (field, colinfo, w_int, pair_table, nn_col, quantum)``: ``field`` int64
        ``(n_sites, n_ce_species)`` (zero; filled by the kernel), ``colinfo[q] =
        [pair row with displacement q or -1, column of -displacement q]`` with one extra last
        row ``[-1, n_disp]`` for "no column", ``nn_col[d]`` the column of nearest-neighbour
        direction ``d`` (-1 if the CE has none), ``quantum`` in eV.
    """
    from segsim.lattice import NN_DISPLACEMENTS

    lt = np.asarray(tables.local_table, dtype=np.int64)
    disp = np.asarray(tables.displacements, dtype=np.int64)
    n_disp = disp.shape[0]
    index = {tuple(d): k for k, d in enumerate(disp.tolist())}
    colinfo = np.full((n_disp + 1, 2), -1, dtype=np.int64)
    colinfo[n_disp, 1] = n_disp
    for k, d in enumerate(disp.tolist()):
        colinfo[k, 1] = index.get(tuple(-c for c in d), n_disp)
    pair_rows, multi_rows = [], []
    for row in lt:
        if np.any(row[5::2] != 0):  # a second other site: three or more sites
            multi_rows.append(row)
            continue
        col = int(row[2])
        if row[3] != 0:
            if colinfo[col, 0] >= 0:  # a second pair row with this displacement
                multi_rows.append(row)
                continue
            colinfo[col, 0] = len(pair_rows)
        pair_rows.append(row[:4])
    pair_table = np.array(pair_rows, dtype=np.int64).reshape(-1, 4)
    multi_table = np.array(multi_rows, dtype=np.int64).reshape(-1, lt.shape[1])
    weights = np.asarray(tables.weights, dtype=np.float64)
    # a bound of at least 1 eV keeps k finite for all-zero weights (then k = 57)
    bound = max(pair_table.shape[0] * float(np.abs(weights).max(initial=0.0)), 1.0)
    k = FIELD_BITS - int(np.ceil(np.log2(bound)))
    quantum = float(2.0**-k)
    w_int = (weights * 2.0**k).round().astype(np.int64)  # exact: a power-of-two scaling
    nn_col = np.array([index.get(tuple(d), -1) for d in NN_DISPLACEMENTS.tolist()], dtype=np.int64)
    n_species = int(np.asarray(tables.ce_index).max()) + 1
    field = np.zeros((tables.n_sites, n_species), dtype=np.int64)
    return (field, colinfo, w_int, pair_table, nn_col, quantum), multi_table


class KMCEngine:
    """Rejection-free lattice kinetic Monte Carlo (n-fold way) over a compiled energy model.

    Each :meth:`advance` is one call of the compiled
    :func:`segsim.kernels.kmc._run_kmc_chunk`, which selects events through a rate sum tree
    in O(log N) and recomputes only the rates that the changed sites can change
    (:func:`segsim.kernels.kmc._refresh_after`).

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
    factorised
        Factorised rates (:mod:`segsim.kernels.kmc`, "Factorised rates"; used when the CE is
        a pair-field CE); False runs the direct rate formula everywhere, the kernel before
        factorisation, for benchmarks.  Both give the same rates to a few ulp.
    """

    def __init__(
        self,
        tables: ModelTables,
        lattice: Any,
        state: KMCState,
        rng: np.random.Generator,
        kp: np.ndarray,
        *,
        factorised: bool = True,
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
        if state.phase is None:
            state.phase = np.zeros_like(state.occupations)
        self.nn = np.ascontiguousarray(lattice.nn, dtype=np.int32)
        # the synthesised cube: where a receded site may regrow (segsim.kinetics)
        self.synth = np.ascontiguousarray(lattice.in_nc, dtype=np.uint8)
        self.dep = dependency_columns(tables)
        self.fld, self._multi_table = pair_field_tables(tables)
        n = tables.n_sites
        self._stamp = np.zeros(n + 1, dtype=np.int64)  # scratch marks of the rate refresh
        # scratch list of the tree leaves one event changes (at most every site it refreshes)
        self._changed = np.zeros(14 * (self.dep.size + 6) + 36, dtype=np.int64)
        self._hood = np.zeros(2 * (self.dep.size + 6), dtype=np.int64)  # an event's reach
        p = 1
        while p < n:
            p *= 2
        self.rates = np.zeros((n, _kmc.N_SLOTS), dtype=np.float64)
        self.site_total = np.zeros(n, dtype=np.float64)
        self.tree = np.zeros(2 * p, dtype=np.float64)
        # factorised rates (segsim.kernels.kmc, "Factorised rates"): per-site factors and
        # their field integers; the RP-zone neighbourhood and the constants are set by
        # rebuild_rates
        self.factorised = bool(factorised)
        self._fac = np.zeros((n, 2), dtype=np.float64)
        self._dfi = np.zeros((n, 2), dtype=np.int64)
        self.rebuild_rates()
        if state.n_events == 0 and state.time_s == 0.0:
            state.energy_ev = self.total_energy_ev()  # at time 0: the full energy, CE + RP

    def rebuild_rates(self) -> None:
        """Recompute every rate, rate factor and the sum tree from the occupations."""
        t = self.tables
        self._hk, self._hcorr = _kmc.hop_constants(
            self.kp, self.fld, self._multi_table, t.ce_index, factorised=self.factorised
        )
        self._rp_near = _kmc.rp_near_sites(self.state.phase, self.nn)
        _kmc._init_rates(
            self.state.occupations, self.state.phase, self.nn, t.nbr, t.ce_index, t.weights,
            self._multi_table, self.kp, self.fld, self.rates, self.site_total, self.tree,
            self.synth, self._fx,
        )  # fmt: skip

    @property
    def _fx(self) -> tuple[np.ndarray, ...]:
        return (self._fac, self._dfi, self._rp_near, self._hk, self._hcorr)

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
        arrays = _kmc.KMCArrays(
            s.occupations, s.phase, self.rates, self.site_total, self.tree, self.nn, t.nbr,
            t.ce_index, t.weights, self._multi_table, self.kp, self.fld, self.dep, self._stamp,
            self._changed, s.counts, self.synth, self._fx, self._hood,
        )  # fmt: skip
        t_now, n_ev, de_sum = _kmc._run_kmc_chunk(
            arrays,
            float(s.time_s),
            float(t_stop_s),
            int(max_events),
            self.rng,
            log_site,
            log_slot,
            log_time,
        )
        s.time_s = float(t_now)
        s.n_events += int(n_ev)
        s.energy_ev += float(de_sum)
        log = None
        if log_events:
            m = min(int(n_ev), log_events)
            log = EventLog(log_site[:m], log_slot[:m], log_time[:m])
        return int(n_ev), log

    @property
    def rp_energetics(self) -> RPEnergetics | None:
        """The RP energetics in ``kp`` (None when the RP term is off)."""
        kp = self.kp
        if kp[_kmc.KP_RP_ON] <= 0.0:
            return None
        return RPEnergetics(
            eps_rp_ev=float(kp[_kmc.KP_EPS_RP]),
            eta_ev=float(kp[_kmc.KP_ETA_RP]),
            j_rp_ev=float(kp[_kmc.KP_J_RP]),
            e_rp_a_ev=float(kp[_kmc.KP_ERPA]),
        )

    def total_energy_ev(self) -> float:
        """Return the full recompute of the energy (CE + RP when on) in eV."""
        e = self.tables.total_energy(self.state.occupations)
        rp = self.rp_energetics
        if rp is not None:
            e += rp_energy_ev(self.state.occupations, self.state.phase, self.lattice.nn, rp)
        return e

    # ---- the run loop's view (segsim.runloop): position = simulated time in s
    #: Events per compiled call in :meth:`advance_to` (between progress updates and stop
    #: checks); chunk boundaries that are not frame times do not change the trajectory.
    chunk_events: int = 200_000

    @property
    def position(self) -> float:
        """How far the run is: simulated time in s (frames are placed in time)."""
        return self.state.time_s

    def advance_to(self, target: float) -> None:
        """Run one chunk of at most :attr:`chunk_events` events towards time ``target`` (s)."""
        self.advance(float(target), max_events=self.chunk_events)

    def checkpoint(self, frame: int, complete: bool) -> tuple[dict[str, Any], dict[str, Any]]:
        """Return the checkpoint ``(arrays, attrs)``; ``frame`` is the last frame written."""
        return self.state.checkpoint(self.rng, frame, complete)

    def snapshot(self) -> tuple[int, np.ndarray, np.ndarray]:
        """Return ``(events, occupations, phase)`` for the snapshot datasets."""
        return self.state.n_events, self.state.occupations, self.state.phase

    def report(self, bar: Any, *, force: bool = False) -> None:
        """Update a :class:`segsim.progress.TimeProgress` line."""
        s = self.state
        if force:
            bar.update_time(s.time_s, s.n_events, force=True)
        else:
            bar.update_time(s.time_s, s.n_events, extra=f"Cd out {s.counts[_kmc.EV_EXPEL_CD]}")

    def where(self) -> str:
        """Say where the run stands (for the message of an interrupted run)."""
        return f"t = {self.state.time_s / SECONDS_PER_DAY:.4f} d"

    def set_parameters(self, kp: np.ndarray) -> None:
        """Switch to another parameter vector (e.g. at the end of a treatment); rebuilds rates."""
        if kp.shape != (_kmc.N_KP,) or kp.dtype != np.float64:
            raise ValueError(f"kp must be float64 of shape ({_kmc.N_KP},)")
        self.kp = kp
        self.rebuild_rates()

    def energy_drift_ev(self) -> float:
        """Return running energy minus a full recompute (eV); should be ~1e-10 or less."""
        return self.state.energy_ev - self.total_energy_ev()
