"""The energy-model contract and the flat tables the kernels evaluate.

An energy model answers energy questions about occupations and never mutates them.  It is
compiled once, for one :class:`~segsim.lattice.Lattice`, into a :class:`ModelTables` of flat
arrays; the kernels in :mod:`segsim.kernels.energy` see nothing else.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from segsim.kernels import energy as _k


@dataclass(frozen=True, eq=False)
class ModelTables:
    """A cluster expansion compiled for one periodic grid.

    Attributes
    ----------
    displacements
        Integer grid displacements used by the clusters, shape ``(n_disp, 3)``; row 0 is the
        zero displacement.
    nbr
        ``int32`` neighbour table ``(n_sites, n_disp)``: ``nbr[i, d]`` is the site at
        ``coords[i] + displacements[d]``.
    ce_index
        ``int64`` map from species code (Pb, Cd, V, O) to the CE basis index (0..2).
    weights
        Cluster energies in eV, flattened over (orbit, species tuple).
    local_table
        Rows ``[w_offset, center_stride, d_1, s_1, ...]`` for the clusters containing a site
        (used for energy changes).
    anchor_table
        Rows ``[w_offset, d_0, s_0, ...]`` for the clusters anchored at a site (used for the
        total energy).
    constant_ev
        Zerolet energy per site in eV.
    reach
        Largest |component| of any displacement, in sites: a site's energy change depends on
        sites at most ``reach`` away along each axis, and energy changes of two sites are
        coupled when they are within ``2 * reach``.
    metadata
        Free-form description of the source model (path, label, cutoffs).
    """

    displacements: np.ndarray
    nbr: np.ndarray
    ce_index: np.ndarray
    weights: np.ndarray
    local_table: np.ndarray
    anchor_table: np.ndarray
    constant_ev: float
    reach: int
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def n_sites(self) -> int:
        """Number of grid sites the tables were compiled for."""
        return int(self.nbr.shape[0])

    def _check(self, occupations: np.ndarray) -> np.ndarray:
        occ = np.asarray(occupations)
        if occ.dtype != np.uint8 or occ.shape != (self.n_sites,):
            raise ValueError(
                f"occupations must be uint8 of shape ({self.n_sites},), got {occ.dtype} {occ.shape}"
            )
        return occ

    def total_energy(self, occupations: np.ndarray) -> float:
        """Return the total energy of the periodic grid in eV.

        Equals ``n_sites * icet.ClusterExpansion.predict`` on the same grid.  Wrapper around
        the compiled ``_total_energy`` kernel.
        """
        occ = self._check(occupations)
        return float(
            _k._total_energy(
                occ, self.nbr, self.ce_index, self.weights, self.anchor_table, self.constant_ev
            )
        )

    def flip_energy_change(self, occupations: np.ndarray, site: int, new_code: int) -> float:
        """Return the energy change in eV when ``site`` takes species code ``new_code``.

        Wrapper around the compiled ``_flip_delta`` kernel; ``occupations`` is not modified.
        """
        occ = self._check(occupations)
        if not 0 <= site < self.n_sites or not 0 <= new_code < self.ce_index.size:
            raise ValueError("site or species code out of range")
        return float(
            _k._flip_delta(
                occ, site, new_code, self.nbr, self.ce_index, self.weights, self.local_table
            )
        )

    def swap_energy_change(self, occupations: np.ndarray, i: int, j: int) -> float:
        """Return the energy change in eV of exchanging the species on sites ``i`` and ``j``.

        Wrapper around the compiled ``_swap_delta`` kernel; ``occupations`` is left unchanged.
        """
        occ = self._check(occupations)
        if not (0 <= i < self.n_sites and 0 <= j < self.n_sites) or i == j:
            raise ValueError("i and j must be distinct sites")
        return float(
            _k._swap_delta(occ, i, j, self.nbr, self.ce_index, self.weights, self.local_table)
        )


class EnergyModel(Protocol):
    """What the engines need from an energy model.

    The model is compiled into :class:`ModelTables` for a lattice; all questions are then
    answered by the kernels from those tables.
    """

    def compile(self, lattice: Any) -> ModelTables:
        """Return the flat tables of this model for ``lattice``."""
        ...
