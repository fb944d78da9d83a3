"""Engines own the only mutable simulation state and advance it chunk by chunk.

The canonical Monte Carlo engine calls one compiled kernel per chunk
(:func:`segsim.kernels.metropolis._run_mc_chunk`); Python runs only between chunks.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from segsim import species
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
