"""Vacancy energetics of a four-species CE against the CHGNet references (issue 26).

Every quantity is evaluated on the occupations of the training records where such records
exist (so the CE and CHGNet see the same structures), otherwise on a periodic Pb cell:

* ``vv_nn_bulk``: the nearest-neighbour V-V pair interaction in a Pb crystal,
  ``E(V V adjacent) - 2 E(V) + E(pure)`` (negative: attractive); ``vv_d2_bulk`` and
  ``vv_d3_bulk`` the same at the second and third neighbour;
* ``bind_nc{4,5}_{face,normal}``: divacancy binding ``E(apart) - E(adjacent)`` of the pure
  NCs (two V on a face; a face V and one below it), positive: the adjacent pair is lower;
* ``depth_nc5_1``, ``depth_nc5_2``, ``depth_nc4_1``: ``E(V at depth d) - E(V at the face
  centre)`` of the pure NC;
* ``domega_{face,edge,corner}``: the grand-canonical recession energy of the 4^3 NC,
  ``E(O state) - E(V state) - (2 - k) mu_CsBr`` (records ``nc4_x0_pit1-*`` against
  ``nc4_x0_vac1-depth0`` / ``nc4_x0_v1-edge`` / ``nc4_x0_v1-corner``);
* ``gf_bulk``: the partial-Schottky formation energy in the bulk (CsBr-rich),
  ``dE(Pb -> V) + e_bulk - mu_CsBr`` in a periodic Pb cell, ``e_bulk`` the CE energy per
  site of that cell (CHGNet: estimated from the pure NCs with one interior vacancy and the
  4^3 periodic CsPbBr3 cell);
* ``rm_*``: removal energy (Pb -> V) of the face-centre Pb of the pure 5^3 NC with one
  vacancy nearby, relative to the clean face (the issue-17 avalanche check: beyond the
  nearest neighbour it must not be negative).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from segsim import species
from segsim.training.fit import TrainingRecord, code_symbols_of, grid_atoms

#: (label, structure with the adjacent pair, structure with the pair apart)
DIVACANCY_PAIRS: tuple[tuple[str, str, str], ...] = (
    ("bind_nc5_face", "nc5_x0_v2-face-adjacent", "nc5_x0_v2-face-apart"),
    ("bind_nc5_normal", "nc5_x0_v2-normal-adjacent", "nc5_x0_v2-normal-apart"),
    ("bind_nc4_face", "nc4_x0_v2-face-adjacent", "nc4_x0_v2-face-apart"),
    ("bind_nc4_normal", "nc4_x0_v2-normal-adjacent", "nc4_x0_v2-normal-apart"),
)

#: (label, V at depth d, V at the face centre)
DEPTHS: tuple[tuple[str, str, str], ...] = (
    ("depth_nc5_1", "nc5_x0_vac1-depth1", "nc5_x0_vac1-depth0"),
    ("depth_nc5_2", "nc5_x0_vac1-depth2", "nc5_x0_vac1-depth0"),
    ("depth_nc4_1", "nc4_x0_vac1-depth1", "nc4_x0_vac1-depth0"),
)

#: (label, receded structure, vacancy structure, k outside neighbours of the site)
RECESSIONS: tuple[tuple[str, str, str, int], ...] = (
    ("domega_face", "nc4_x0_pit1-face", "nc4_x0_vac1-depth0", 1),
    ("domega_edge", "nc4_x0_pit1-edge", "nc4_x0_v1-edge", 2),
    ("domega_corner", "nc4_x0_pit1-corner", "nc4_x0_v1-corner", 3),
)

#: (pure NC, NC with one interior vacancy) for the CHGNet estimate of G_f
SCHOTTKY_NCS: tuple[tuple[str, str], ...] = (
    ("nc4_x0_pure", "nc4_x0_vac1-depth1"),
    ("nc5_x0_pure", "nc5_x0_vac1-depth1"),
    ("nc5_x0_pure", "nc5_x0_vac1-depth2"),
)

BULK_REFERENCE = "bulk4_x0_random_0"


@dataclass(frozen=True)
class Value:
    """One reference quantity: CHGNet (start mean, +/- combined SEM) and the CE, eV."""

    ref_ev: float | None
    ref_sem_ev: float | None
    ce_ev: float


def _as_icet(ce: Any) -> Any:
    """Return the icet ``ClusterExpansion`` of a path, a model or an icet CE."""
    if isinstance(ce, str):
        from icet import ClusterExpansion

        return ClusterExpansion.read(ce)
    return getattr(ce, "icet_ce", ce)


class Evaluator:
    """CE total energies of segsim occupation grids (``N_grid * predict``)."""

    def __init__(self, ce: Any) -> None:
        self.ce = _as_icet(ce)
        self.a = float(np.asarray(self.ce.primitive_structure.cell)[0, 0])
        self.symbols = code_symbols_of(self.ce.get_cluster_space_copy())

    def energy(self, occupations: np.ndarray, shape: Sequence[int]) -> float:
        """Return the CE total energy (eV) of a grid."""
        atoms = grid_atoms(np.asarray(occupations).reshape(-1), shape, self.a, self.symbols)
        return float(self.ce.predict(atoms)) * len(atoms)

    def record(self, rec: TrainingRecord) -> float:
        """Return the CE total energy of a training record's grid."""
        return self.energy(rec.occupations, rec.shape)


def _sem(*recs: TrainingRecord) -> float:
    s = [r.energy_sem_ev for r in recs]
    return float(math.sqrt(sum(x * x for x in s if math.isfinite(x))))


def _bulk_cell(n: int, sites: Mapping[tuple[int, int, int], int]) -> np.ndarray:
    occ = np.full((n, n, n), species.PB, dtype=species.OCC_DTYPE)
    for site, code in sites.items():
        occ[site] = code
    return occ


def vacancy_values(
    ce: Any, records: Mapping[str, TrainingRecord], mu_csbr_ev: float
) -> dict[str, Value]:
    """Return every quantity of the module docstring, CE against CHGNet where it exists."""
    ev = Evaluator(ce)
    out: dict[str, Value] = {}
    # periodic Pb cell, no image within the reach (10.2 A = 2 sites; 12.0 A: 2 sites)
    n = 8
    shape = (n, n, n)
    e0 = ev.energy(_bulk_cell(n, {}), shape)
    e1 = ev.energy(_bulk_cell(n, {(0, 0, 0): species.VAC}), shape)
    for label, r in (
        ("vv_nn_bulk", (1, 0, 0)),
        ("vv_d2_bulk", (1, 1, 0)),
        ("vv_d3_bulk", (1, 1, 1)),
    ):
        e2 = ev.energy(_bulk_cell(n, {(0, 0, 0): species.VAC, r: species.VAC}), shape)
        out[label] = Value(None, None, e2 - 2.0 * e1 + e0)
    e_site = e0 / n**3
    gf_ce = e1 - e0 + e_site - mu_csbr_ev
    bulk = records.get(BULK_REFERENCE)
    gf_ref: list[float] = []
    gf_sem: list[float] = []
    if bulk is not None:
        e_bulk = bulk.energy_ev / bulk.n_b_sites
        for pure, vac in SCHOTTKY_NCS:
            if pure in records and vac in records:
                gf_ref.append(
                    records[vac].energy_ev - records[pure].energy_ev + e_bulk - mu_csbr_ev
                )
                gf_sem.append(_sem(records[vac], records[pure]))
    out["gf_bulk"] = Value(
        float(np.mean(gf_ref)) if gf_ref else None,
        float(np.mean(gf_sem)) if gf_sem else None,
        gf_ce,
    )
    for label, adj, apart in DIVACANCY_PAIRS:
        if adj in records and apart in records:
            a, b = records[adj], records[apart]
            out[label] = Value(b.energy_ev - a.energy_ev, _sem(a, b), ev.record(b) - ev.record(a))
    for label, deep, face in DEPTHS:
        if deep in records and face in records:
            a, b = records[deep], records[face]
            out[label] = Value(a.energy_ev - b.energy_ev, _sem(a, b), ev.record(a) - ev.record(b))
    for label, pit, vac, k in RECESSIONS:
        if pit in records and vac in records:
            a, b = records[pit], records[vac]
            shift = (2 - k) * mu_csbr_ev
            out[label] = Value(
                a.energy_ev - b.energy_ev - shift,
                _sem(a, b),
                ev.record(a) - ev.record(b) - shift,
            )
    out.update(removal_values(ev, records))
    return out


def removal_values(ev: Evaluator, records: Mapping[str, TrainingRecord]) -> dict[str, Value]:
    """Return the removal energy of the face-centre Pb of the pure 5^3 NC with one V nearby.

    CE only.

    Relative to the clean face: ``rm_beside`` (a surface V beside it, nearest neighbour),
    ``rm_below_d1`` (right below), and, beyond the nearest neighbour, ``rm_surface_d2``,
    ``rm_surface_d4`` (surface V at squared distance 2 and 4), ``rm_below_d2`` and
    ``rm_below_d3`` (one layer below at squared distance 2, 3).
    """
    rec = records.get("nc5_x0_pure")
    if rec is None:
        return {}
    shape = rec.shape
    occ0 = rec.occupations.reshape(shape)
    inside = np.argwhere(occ0 != species.OUT)
    lo = inside.min(axis=0)
    hi = inside.max(axis=0)
    c = (lo + hi) // 2
    top = lo[2]  # the face z = lo
    centre = (int(c[0]), int(c[1]), int(top))

    def removal(extra: tuple[int, int, int] | None) -> float:
        occ = occ0.copy()
        if extra is not None:
            occ[extra] = species.VAC
        e_before = ev.energy(occ, shape)
        occ[centre] = species.VAC
        return ev.energy(occ, shape) - e_before

    ref = removal(None)
    sites = {
        "rm_beside": (centre[0] + 1, centre[1], top),
        "rm_below_d1": (centre[0], centre[1], top + 1),
        "rm_surface_d2": (centre[0] + 1, centre[1] + 1, top),
        "rm_surface_d4": (centre[0] + 2, centre[1], top),
        "rm_below_d2": (centre[0] + 1, centre[1], top + 1),
        "rm_below_d3": (centre[0] + 1, centre[1] + 1, top + 1),
    }
    return {k: Value(None, None, removal(s) - ref) for k, s in sites.items()}


def mc_arrangement_values(
    ce: Any, mcval: Sequence[TrainingRecord]
) -> list[tuple[str, float, float, float]]:
    """CE against CHGNet on the stored MC-validation arrangements (no new calculation).

    For every ``*_final-<digest>`` record of the validation database (the MC arrangements of
    the CEs validated so far) and its cell's ``*_start``: ``(name, CE dE, CHGNet dE, SEM)``,
    eV.  A candidate CE that ranks those stored arrangements as CHGNet does has not lost the
    Cd ordering that made the shipped CE pass its MC validation.
    """
    ev = Evaluator(ce)
    starts = {r.name.rsplit("_start", 1)[0]: r for r in mcval if r.name.endswith("_start")}
    rows = []
    for r in sorted(mcval, key=lambda r: r.name):
        if "_final-" not in r.name:
            continue
        s = starts.get(r.name.split("_final-")[0])
        if s is None:
            continue
        rows.append((r.name, ev.record(r) - ev.record(s), r.energy_ev - s.energy_ev, _sem(r, s)))
    return rows
