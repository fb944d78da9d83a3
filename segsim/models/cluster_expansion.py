"""icet cluster expansions on the simple-cubic B lattice, compiled into flat tables.

This is the only module that imports :mod:`icet`.  A cluster expansion (CE) file usable by
segsim has a one-site simple-cubic primitive structure with the species ``Pb``, ``Cd`` and
``X`` (``X`` = no B cation; both vacancies ``V`` and outside sites ``O`` map to it), or
``Pb``, ``Cd``, ``V`` and ``X`` (the vacancy a species of its own, ``O`` alone is ``X``; see
:func:`segsim.species.ce_symbols`).  Its
parameters predict an energy in eV per B-lattice site of the periodic cell, so the total energy
of a grid of ``N`` sites is ``N * ce.predict(structure)``.

How icet's cluster vector is turned into tables (checked against icet 4.0 in the tests): for
orbit ``alpha`` with clusters ``c`` (the translation-inequivalent clusters per primitive cell,
as site offsets) and cluster-vector elements ``e`` (multicomponent vector ``m_e``, site
permutations ``P_e``, multiplicity ``M_e``, parameter ``J_e``),

    N * sum_e J_e cv_e = sum_R sum_c W_alpha(sigma_{R + c}),
    W_alpha(s_1..s_k) = sum_e (J_e / M_e) sum_{p in P_e} prod_q Theta_{m_e[p_q]}(s_q),

where ``Theta`` are icet's point functions.  ``W_alpha`` is tabulated for all ``n**k`` species
tuples (``n`` = 3 or 4 CE species), so a kernel evaluates a cluster with one table lookup.
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import numpy as np

from segsim import species
from segsim.lattice import Lattice
from segsim.models.base import ModelTables

_ATOMIC_NUMBER = {"Pb": 82, "Cd": 48, "V": 23, "X": 0}


#: CE metadata key of the CsBr chemical potential (eV per CsBr unit) of the energy reference.
MU_CSBR_KEY = "mu_csbr_ev"


class ClusterExpansionModel:
    """A validated icet ``ClusterExpansion`` for the B lattice.

    Parameters
    ----------
    ce
        An ``icet.ClusterExpansion`` whose primitive structure is one simple-cubic site with
        species Pb, Cd and X, or Pb, Cd, V and X.
    source
        Where it was read from (for metadata and error messages).
    """

    def __init__(self, ce: Any, source: str = "<memory>") -> None:
        self._ce = ce
        self.source = source
        cs = ce.get_cluster_space_copy()
        prim = cs.primitive_structure
        if len(prim) != 1:
            raise ValueError(f"{source}: primitive structure must have one site, has {len(prim)}")
        cell = np.asarray(prim.cell)
        a = float(cell[0, 0])
        if not np.allclose(cell, np.eye(3) * a, atol=1e-6 * a):
            raise ValueError(f"{source}: primitive cell must be simple cubic, got {cell.tolist()}")
        try:
            #: chemical symbol per segsim species code (V and O both X, or V its own)
            self.code_symbols: tuple[str, ...] = species.ce_symbols(cs.chemical_symbols[0])
        except ValueError as exc:
            raise ValueError(f"{source}: {exc}") from None
        self.n_ce_species = len(cs.chemical_symbols[0])
        self.a_angstrom = a
        self._cs = cs
        self._params = np.asarray(ce.parameters, dtype=np.float64)
        spmap = cs.species_maps[0]
        code_to_ce = [spmap[_ATOMIC_NUMBER[sym]] for sym in self.code_symbols]
        self._ce_index = np.asarray(code_to_ce, dtype=np.int64)
        self._orbits = self._extract_orbits()

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_file(cls, path: str | Path) -> ClusterExpansionModel:
        """Read an icet ``.ce`` file."""
        from icet import ClusterExpansion

        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"cluster expansion file not found: {path}")
        return cls(ClusterExpansion.read(str(path)), source=str(path))

    @property
    def icet_ce(self) -> Any:
        """The underlying ``icet.ClusterExpansion`` (do not mutate)."""
        return self._ce

    @property
    def metadata(self) -> dict[str, Any]:
        """The CE's metadata dictionary (icet's plus segsim's keys, e.g. ``segsim_label``)."""
        return dict(self._ce.metadata)

    @property
    def separate_vacancy(self) -> bool:
        """True for a four-species CE (Pb, Cd, V, X): an internal vacancy is not outside."""
        return bool(self._ce_index[species.VAC] != self._ce_index[species.OUT])

    @property
    def mu_csbr_ev(self) -> float | None:
        """Chemical potential of a CsBr unit in this CE's energy reference (eV), or None.

        ``segsim train`` stores it (metadata key ``mu_csbr_ev``, the lowest energy per CsBr
        unit of the reference calculator's relaxed CsBr cells) in four-species CEs fitted to
        total energies: the atomistic structures behind V -> O gain ``2 - k`` CsBr units
        (``k`` outside neighbours of the site), so the KMC needs it to turn a recession's CE
        energy change into a grand-canonical one (:mod:`segsim.kinetics`).
        """
        value = self._ce.metadata.get(MU_CSBR_KEY)
        return None if value is None else float(value)

    @property
    def parameters(self) -> np.ndarray:
        """The CE parameter vector (icet convention)."""
        return self._params.copy()

    def _extract_orbits(self) -> list[dict[str, Any]]:
        """Return, per active orbit, its cluster offsets and tabulated energies ``W``."""
        cs = self._cs
        params = self._params
        orbits: list[dict[str, Any]] = []
        index = 1  # parameter 0 is the zerolet
        n_sp = self.n_ce_species
        for oi in range(len(cs.orbit_list)):
            orbit = cs.orbit_list.get_orbit(oi)
            elements = orbit.cluster_vector_elements
            k = orbit.order
            clusters = [
                np.array([ls.unitcell_offset for ls in c.lattice_sites], dtype=np.int64)
                for c in orbit.clusters
            ]
            table = np.zeros(n_sp**k, dtype=np.float64)
            active = False
            for el in elements:
                j = params[index]
                index += 1
                if j == 0.0:
                    continue
                active = True
                mc = el["multicomponent_vector"]
                perms = el["site_permutations"]
                scale = j / el["multiplicity"]
                for flat, tup in enumerate(_species_tuples(k, n_sp)):
                    acc = 0.0
                    for p in perms:
                        prod = 1.0
                        for q in range(k):
                            prod *= cs.evaluate_cluster_function(n_sp, int(mc[p[q]]), int(tup[q]))
                        acc += prod
                    table[flat] += scale * acc
            if active:
                orbits.append({"order": k, "clusters": clusters, "weights": table})
        if index != len(params):
            raise ValueError(f"{self.source}: parameter count mismatch ({index} != {len(params)})")
        return orbits

    @property
    def reach(self) -> int:
        """Largest grid distance (per axis) between two sites of one active cluster."""
        r = 0
        for orb in self._orbits:
            for c in orb["clusters"]:
                r = max(r, int((c.max(axis=0) - c.min(axis=0)).max()))
        return r

    # ------------------------------------------------------------------ compilation
    def compile(self, lattice: Lattice) -> ModelTables:
        """Compile the CE into :class:`ModelTables` for ``lattice``'s periodic grid.

        Raises
        ------
        ValueError
            If the grid is so small that a cluster would contain the same site twice.
        """
        reach = self.reach
        if min(lattice.shape) <= 2 * reach:
            raise ValueError(
                f"grid {lattice.shape} too small for clusters reaching {reach} sites "
                f"(each dimension must exceed {2 * reach})"
            )
        max_order = max([o["order"] for o in self._orbits], default=1)
        disp_index: dict[tuple[int, int, int], int] = {(0, 0, 0): 0}

        def did(v: np.ndarray) -> int:
            key = (int(v[0]), int(v[1]), int(v[2]))
            if key not in disp_index:
                disp_index[key] = len(disp_index)
            return disp_index[key]

        weights: list[np.ndarray] = []
        local_rows: list[list[int]] = []
        anchor_rows: list[list[int]] = []
        offset = 0
        for orb in self._orbits:
            k = orb["order"]
            strides = [self.n_ce_species**q for q in range(k)]
            for c in orb["clusters"]:
                row = [offset]
                for q in range(k):
                    row += [did(c[q] - c[0]), strides[q]]
                row += [0, 0] * (max_order - k)
                anchor_rows.append(row)
                for p in range(k):
                    lrow = [offset, strides[p]]
                    for q in range(k):
                        if q != p:
                            lrow += [did(c[q] - c[p]), strides[q]]
                    lrow += [0, 0] * (max_order - k)
                    local_rows.append(lrow)
            weights.append(orb["weights"])
            offset += orb["weights"].size
        displacements = np.array(list(disp_index.keys()), dtype=np.int64).reshape(-1, 3)
        n_local_cols = 2 + 2 * (max_order - 1)
        n_anchor_cols = 1 + 2 * max_order
        tables = ModelTables(
            displacements=displacements,
            nbr=lattice.neighbor_table(displacements),
            ce_index=self._ce_index.copy(),
            weights=np.concatenate(weights) if weights else np.zeros(1),
            local_table=np.array(local_rows, dtype=np.int64).reshape(-1, n_local_cols),
            anchor_table=np.array(anchor_rows, dtype=np.int64).reshape(-1, n_anchor_cols),
            constant_ev=float(self._params[0]),
            reach=reach,
            metadata={
                "source": self.source,
                "cutoffs": list(self._ce.cutoffs),
                MU_CSBR_KEY: self.mu_csbr_ev if self.separate_vacancy else None,
            },
        )
        for arr in (
            tables.displacements,
            tables.nbr,
            tables.ce_index,
            tables.weights,
            tables.local_table,
            tables.anchor_table,
        ):
            arr.setflags(write=False)
        return tables

    # ------------------------------------------------------------------ icet interop
    def to_icet_structure(self, lattice: Lattice, occupations: np.ndarray) -> Any:
        """Return the ``ase.Atoms`` of the periodic grid with this CE's symbols.

        Positions use the CE's lattice constant so that icet maps them onto its primitive.
        """
        from ase import Atoms

        symbols = np.asarray(self.code_symbols)[np.asarray(occupations)]
        return Atoms(
            symbols=list(symbols),
            positions=lattice.coords.astype(np.float64) * self.a_angstrom,
            cell=np.diag(np.asarray(lattice.shape, dtype=np.float64) * self.a_angstrom),
            pbc=True,
        )

    def predict_total(self, lattice: Lattice, occupations: np.ndarray) -> float:
        """Return ``n_sites * icet.ClusterExpansion.predict`` (eV) for the grid (slow; tests)."""
        atoms = self.to_icet_structure(lattice, occupations)
        return float(self._ce.predict(atoms)) * len(atoms)


def _species_tuples(k: int, n_species: int = 3) -> list[tuple[int, ...]]:
    """Species tuples in table order: flat index = sum_q s_q * n_species**q."""
    return [tuple(reversed(t)) for t in itertools.product(range(n_species), repeat=k)]


def load_cluster_expansion(path: str | Path) -> ClusterExpansionModel:
    """Read and validate a cluster-expansion file."""
    return ClusterExpansionModel.from_file(path)
