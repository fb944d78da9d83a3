"""Reference structures for fitting the cluster expansion (issue 3).

The contract shared by the training pipeline: structure generation produces
:class:`ReferenceStructure` objects, the reference pipeline computes their (relaxed) energies and
stores them in an ASE database keyed by :attr:`ReferenceStructure.name`, and the fit turns those
on the CE lattice (``lattice`` and ``occupations`` not None) into icet training data.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from segsim import species
from segsim.lattice import Lattice


@dataclass(eq=False)
class ReferenceStructure:
    """One structure of the training (or validation) set.

    Attributes
    ----------
    name
        Unique, stable key (e.g. ``nc5_x0.25_core``); the database row is found by it.
    kind
        ``"nc"`` (nanocrystal), ``"bulk"`` (periodic cell), ``"nc_vacancy"``, ``"nc_rp"``
        (NC with a Ruddlesden-Popper fault), ...
    atoms
        The atomistic structure (unrelaxed), charge-balanced (see :mod:`segsim.atomistic`).
    lattice
        The B-lattice grid the CE sees, or None for structures that are not on the CE lattice
        (RP faults: they feed eps_RP and eta, not the CE).
    occupations
        B-lattice species codes on ``lattice`` (Pb, Cd, V, O), or None.
    x_cd
        Cd fraction of the B cations.
    n_edge
        B sites per edge (NC) or per periodic cell edge (bulk).
    tags
        Free-form, JSON-serialisable description (arrangement, seed, RP region, ...).
    """

    name: str
    kind: str
    atoms: Any
    lattice: Lattice | None
    occupations: np.ndarray | None
    x_cd: float
    n_edge: int
    tags: dict[str, Any] = field(default_factory=dict)

    @property
    def on_ce_lattice(self) -> bool:
        """Whether this structure can be a CE training structure."""
        return self.lattice is not None and self.occupations is not None

    def ce_structure(self, a_angstrom: float) -> Any:
        """Return the ``ase.Atoms`` of the B-lattice grid with CE symbols (Pb, Cd, X).

        Parameters
        ----------
        a_angstrom
            Lattice constant of the CE's primitive cell (positions must map onto it).
        """
        from ase import Atoms

        if self.lattice is None or self.occupations is None:
            raise ValueError(f"{self.name}: not on the CE lattice")
        symbols = np.asarray(species.CE_SYMBOLS)[self.occupations]
        return Atoms(
            symbols=list(symbols),
            positions=self.lattice.coords.astype(np.float64) * a_angstrom,
            cell=np.diag(np.asarray(self.lattice.shape, dtype=np.float64) * a_angstrom),
            pbc=True,
        )
