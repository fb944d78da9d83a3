"""MC validation: the reference calculator checks what the fitted CE's Monte Carlo does.

The extrapolation check (:mod:`segsim.training.extrapolation`) shows what a fitted CE does in
a large NC, but not whether that is right: a CE can order or segregate Cd because of a term
the training structures never tested.  This check closes the loop in the usual way of cluster
expansion work (validate the structures that the CE's own Monte Carlo produces):

1. for each validation cell (a periodic bulk cell or a NC, ``n`` B sites per edge, Cd
   fraction ``x``) draw a random Pb/Cd arrangement (the *start*, seeded by its name);
2. run canonical Metropolis MC with the fitted CE from it (``sweeps`` trial swaps per cation
   site at ``temperature_k``): the *final* arrangement, what the CE predicts;
3. relax both with the reference calculator (same settings and caching as the training
   set, in a database of their own, so the training database holds exactly the structures the
   fit used) and compare ``E(final) - E(start)`` from the CE and from the reference.

If the CE's MC lowers the energy by far more than the reference calculator confirms, its
large-NC prediction is an extrapolation artefact; if they agree, it is the reference
calculator's own prediction.  The final structure's name carries a digest of its
arrangement, so a refit that changes the MC result computes the new arrangement and never
reuses an energy of another one.  These structures never enter the fit.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from segsim import species
from segsim.config import parse_cell
from segsim.lattice import build_cube, build_periodic
from segsim.models.cluster_expansion import ClusterExpansionModel
from segsim.training.fit import structure_noise_for
from segsim.training.structures import ReferenceStructure, _nc_structure, format_x

__all__ = [
    "ValidationPair",
    "compare",
    "markdown",
    "parse_cell",
    "validation_database_path",
    "validation_pairs",
    "verdict",
]

#: Kinds of validation cell: periodic bulk cell, or NC in vacuum.
CELL_KINDS = ("bulk", "nc")


@dataclass(frozen=True)
class ValidationPair:
    """The start and the MC-final structure of one validation cell, with CE energies (eV)."""

    label: str  # e.g. ``bulk4_x0.25``
    start: ReferenceStructure
    final: ReferenceStructure
    ce_start_ev: float  # CE energy of the periodic grid (total, eV)
    ce_final_ev: float
    n_steps: int
    temperature_k: float
    acceptance: float

    @property
    def n_b_sites(self) -> int:
        """Crystal B sites (Pb + Cd + V) of the cell."""
        occ = np.asarray(self.start.occupations)
        return int(np.count_nonzero(occ != species.OUT))


def validation_database_path(database: str | Path) -> Path:
    """Return the database of the validation structures next to the training ``database``.

    ``potentials/training_mean.db`` -> ``potentials/training_mean_mcval.db``.
    """
    p = Path(database)
    return p.with_name(f"{p.stem}_mcval{p.suffix or '.db'}")


def _digest(occupations: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(occupations, dtype=np.uint8).tobytes()).hexdigest()[
        :10
    ]


def validation_pairs(
    model: Any,
    cells: Sequence[tuple[str, int, float]],
    *,
    sweeps: int,
    temperature_k: float,
    seed: int,
    pad: int,
    vacuum_angstrom: float,
    prefix: str = "mcval",
) -> tuple[list[ValidationPair], list[str]]:
    """Build the start and MC-final structures of each validation cell with the CE ``model``.

    Returns the pairs and, for each cell that is skipped, a line saying why: a periodic cell
    must exceed twice the CE's reach along each axis (:meth:`ClusterExpansionModel.compile`),
    which depends on the fitted clusters, so it is only known after the fit.

    Parameters
    ----------
    model
        The fitted cluster expansion: a :class:`ClusterExpansionModel` or a ``.ce`` path
        (three or four species).
    cells
        ``(kind, n, x_cd)``: ``kind`` in :data:`CELL_KINDS`, ``n`` B sites per edge, the Cd
        fraction of the B cations (``round(x n^3)`` Cd; :func:`parse_cell`).
    sweeps
        MC trial swaps per cation site.
    temperature_k
        MC temperature (K).
    seed
        Seeds the start arrangements (per cell, with its label) and the MC chains.
    pad
        Outside layers of the NC grids (>= the CE's reach + 1).
    vacuum_angstrom
        Vacuum around the NCs (Angstrom).
    prefix
        Name prefix of the structures and their kind (``mcval``: the validation, never
        fitted; ``mcfit<r>``: round ``r`` of the MC training rounds, :func:`training_rounds`).
        Other prefixes than ``mcval`` also seed the start arrangement, so that every round
        starts from a new random arrangement.
    """
    from segsim.engine import MCEngine, MCState

    if not isinstance(model, ClusterExpansionModel):
        model = ClusterExpansionModel.from_file(model)
    a = model.a_angstrom
    out = []
    skipped = []
    for kind, n, x_cd in cells:
        if kind not in CELL_KINDS:
            raise ValueError(f"validation cell kind must be one of {CELL_KINDS}, got {kind!r}")
        label = f"{kind}{int(n)}_x{format_x(x_cd)}"
        if kind == "bulk" and int(n) <= 2 * model.reach:
            skipped.append(
                f"`{label}` skipped: this CE's clusters reach {model.reach} sites, so a "
                f"periodic cell needs more than {2 * model.reach} sites per edge"
            )
            continue
        lattice = build_periodic(int(n), a) if kind == "bulk" else build_cube(int(n), a, pad)
        seed_key = f"{seed}:{label}" if prefix == "mcval" else f"{seed}:{prefix}:{label}"
        key = int.from_bytes(hashlib.sha256(seed_key.encode()).digest()[:8], "little")
        rng = np.random.default_rng(key)
        occ = lattice.empty_occupations()
        crystal = np.flatnonzero(lattice.in_nc)
        n_cd = round(float(x_cd) * crystal.size)
        occ[rng.choice(crystal, size=n_cd, replace=False)] = species.CD
        tables = model.compile(lattice)
        state = MCState.initial(occ, tables)
        e0 = float(state.energy_ev)
        n_steps = int(sweeps) * int(crystal.size)
        engine = MCEngine(tables, state, rng, temperature_k=temperature_k)
        n_acc = engine.advance(n_steps) if n_steps else 0
        final = state.occupations.copy()
        tags = {"validation": label, "temperature_k": float(temperature_k), "sweeps": int(sweeps)}
        # The periodic cells get no vacuum; the kind says validation (never fitted) or round.
        vacuum = None if kind == "bulk" else vacuum_angstrom
        kind_s = f"{'mcval' if prefix == 'mcval' else 'mcfit'}_{kind}"
        start_s = _nc_structure(
            f"{prefix}_{label}_start", lattice, occ, vacuum, kind=kind_s, **tags
        )
        final_s = _nc_structure(
            f"{prefix}_{label}_final-{_digest(final)}", lattice, final, vacuum, kind=kind_s, **tags
        )
        out.append(
            ValidationPair(
                label=label,
                start=start_s,
                final=final_s,
                ce_start_ev=e0,
                ce_final_ev=float(tables.total_energy(final)),
                n_steps=n_steps,
                temperature_k=float(temperature_k),
                acceptance=n_acc / n_steps if n_steps else 0.0,
            )
        )
    return out, skipped


def verdict(ce_de_ev: float, ref_de_ev: float, noise_ev: float) -> str:
    """Return what the reference says about a CE gain, at two standard deviations.

    ``"not confirmed"``: CE and reference differ by more than ``2 noise``; ``"confirmed"``:
    they agree within it and the CE gain exceeds it (so the test could have failed);
    ``"within noise"``: they agree, but so would a CE that gains nothing.
    """
    if abs(ce_de_ev - ref_de_ev) > 2.0 * noise_ev:
        return "not confirmed"
    return "confirmed" if abs(ce_de_ev) > 2.0 * noise_ev else "within noise"


def compare(
    pairs: Sequence[ValidationPair],
    records: Sequence[Mapping[str, Any]],
    structure_noise_ev: tuple[float, float] | None = None,
) -> list[dict[str, Any]]:
    """Return one row per pair: CE and reference ``E(final) - E(start)`` (eV and meV/site).

    ``records`` are the reference records (:func:`segsim.training.reference.compute_references`);
    a pair whose structures are not both among them gets ``None`` reference values.
    ``structure_noise_ev`` (``(tau_nc, tau_bulk)``, the fit's ``noise_nc_ev`` and
    ``noise_bulk_ev``) is the noise of one relaxed energy beyond its start SEM; the noise
    of the difference is ``sqrt(sem_start**2 + sem_final**2 + 2 tau**2)`` (``tau`` 0 without
    it; no noise, hence no verdict, if neither SEMs nor ``tau`` are known), and each row gets
    a :func:`verdict`.
    """
    by_name = {str(r["name"]): r for r in records}
    rows = []
    for p in pairs:
        n = p.n_b_sites
        ce_de = p.ce_final_ev - p.ce_start_ev
        rs, rf = by_name.get(p.start.name), by_name.get(p.final.name)
        ref_de = sem = noise = None
        tau = None
        if structure_noise_ev is not None:
            periodic = n == int(np.asarray(p.start.occupations).size)
            tau = structure_noise_for(periodic, structure_noise_ev)
        if rs is not None and rf is not None:
            ref_de = float(rf["energy_ev"]) - float(rs["energy_ev"])
            sems = [r.get("energy_sem_ev") for r in (rs, rf)]
            if all(s is not None for s in sems):
                sem = math.hypot(*sems)
            if sem is not None or tau is not None:
                noise = math.sqrt((sem or 0.0) ** 2 + 2.0 * (tau or 0.0) ** 2)
        rows.append(
            {
                "label": p.label,
                "n_b_sites": n,
                "n_steps": p.n_steps,
                "acceptance": p.acceptance,
                "ce_de_ev": ce_de,
                "ref_de_ev": ref_de,
                "ref_sem_ev": sem,
                "noise_ev": noise,
                "verdict": None if noise is None else verdict(ce_de, ref_de, noise),
                "ce_de_mev_per_site": 1e3 * ce_de / n,
                "ref_de_mev_per_site": None if ref_de is None else 1e3 * ref_de / n,
                "final_name": p.final.name,
            }
        )
    return rows


def markdown(
    rows: Sequence[Mapping[str, Any]],
    *,
    temperature_k: float,
    sweeps: int,
    skipped: Sequence[str] = (),
) -> str:
    """Return the report section body for the rows of :func:`compare` (and skipped cells)."""
    lines = [
        (
            f"Canonical MC with this CE ({temperature_k:g} K, {sweeps} trial swaps per cation "
            "site) from a random arrangement; both arrangements relaxed with the reference "
            "calculator (database `*_mcval.db`, never fitted). `E(final) - E(start)`: what "
            "the CE's MC gains, and how much of it the reference confirms. A CE gain that the "
            "reference does not confirm is an extrapolation artefact. `noise`: one standard "
            "deviation of the reference difference (start SEMs and, where the fit has them, "
            "its structure noise); `verdict` at two of them: *confirmed* (agree, and the CE "
            "gain exceeds the noise), *within noise* (agree, but so would no gain), *not "
            "confirmed* (differ)."
        ),
        "",
        (
            "| cell | B sites | acceptance | CE (eV) | reference (eV) | CE (meV/site) | "
            "reference (meV/site) | noise (eV) | verdict |"
        ),
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        if r["ref_de_ev"] is None:
            ref, ref_site = "not computed", ""
        else:
            sem = f" +/- {r['ref_sem_ev']:.3f}" if r["ref_sem_ev"] is not None else ""
            ref, ref_site = f"{r['ref_de_ev']:+.3f}{sem}", f"{r['ref_de_mev_per_site']:+.2f}"
        noise = "n/a" if r.get("noise_ev") is None else f"{r['noise_ev']:.3f}"
        lines.append(
            f"| `{r['label']}` | {r['n_b_sites']} | {r['acceptance']:.3f} | "
            f"{r['ce_de_ev']:+.3f} | {ref} | {r['ce_de_mev_per_site']:+.2f} | {ref_site} | "
            f"{noise} | {r.get('verdict') or 'n/a'} |"
        )
    if skipped:
        lines += ["", *(f"- {line}" for line in skipped)]
    return "\n".join(lines)
