"""Reference energies: relax structures with a reference calculator and keep them in an ASE db.

:func:`compute_references` takes :class:`~segsim.training.structures.ReferenceStructure`
objects, relaxes each with a calculator of :mod:`segsim.training.calculators` and writes one
row per structure to an ASE database (sqlite) as soon as the structure is done;
:func:`load_references` reads the rows back.

Relaxation
----------
Positions are relaxed with an ASE optimizer (``FIRE`` by default, or ``BFGS`` / ``LBFGS``)
until the largest atomic force is at most ``fmax_ev_per_angstrom`` (default 0.01 eV/Angstrom)
or ``max_steps`` optimizer steps (default 1000) were taken; the row records whether the
criterion was met (``converged``), the steps taken, the energy before (``energy_unrelaxed_ev``)
and after (``energy_ev``, total energies in eV) and the final largest force.

Why 0.01 eV/Angstrom: with CHGNet, the n = 5 NC (775 atoms, x = 0.25) stopped at 0.05
eV/Angstrom lies 3.3-3.7 eV above its 0.01 eV/Angstrom energy (slow surface relaxation), and
by amounts that depend on the Cd arrangement: the uniform / surface-segregated order even
flips.  From 0.01 to 0.005 eV/Angstrom the energies change by 0.04 eV at most.  FIRE needs
about 280-330 steps (70-80 s on 2 cores) for 0.01 eV/Angstrom; BFGS is slower per step for
large NCs (a dense 3N x 3N Hessian) and ``LBFGS`` is a cheap quasi-Newton alternative.  NCs keep their
(vacuum) cell.  With ``relax_cell=True``, every periodic structure (bulk cells, the CsBr
references) also relaxes its cell through :class:`ase.filters.FrechetCellFilter` (or
``UnitCellFilter``).  Until 2026-12-02 only the cells tagged ``vegard`` (cubic arrangements,
used for the lattice parameter versus composition) did, and the others kept a = 5.87
Angstrom: their energies then carried a strain that the free NCs and the cell-relaxed end
members do not, about +10 meV per B site in apparent Pb-Cd mixing energy, which a CE
fitted to them turned into Cd clustering in large NCs.  A stored row whose ``relax_cell``
differs from the rule is recomputed.  The
convergence criterion then applies to the filter's generalised forces (stress times volume
included).  ``max_steps=0`` gives single points.  A structure that does not converge within
``max_steps`` is stored all the same (``converged`` False) and counts as done.

Start geometry: by default every structure is relaxed from its ideal cubic positions.  These
are a saddle of the octahedral tilts, and CHGNet relaxations from them end in different tilt
minima depending on tiny differences in the start (0.09-0.29 eV for one 4^3 NC, more than the
spread between Cd arrangements).  ``start="tilted"`` imposes one common tilt pattern, the
a-a-c+ Glazer tilt of orthorhombic CsPbBr3 (:mod:`segsim.training.tilt`), on every structure
first; ``rattle_angstrom`` / ``n_starts`` add random displacements on top (several starts, the
lowest energy kept).  ``python -m studies.start_spread.start_spread`` measures how far final
energies of one structure scatter between starts (``studies/start_spread/start_spread.md``).

Provenance and resuming
-----------------------
Each row carries ``data["provenance"]``: the calculator's provenance (kind, complete settings,
program/model versions; :func:`segsim.training.calculators.calculator_provenance`), the
relaxation criteria, and the segsim and ASE versions.  The *provenance hash*
(:func:`provenance_hash`) is a SHA-256 digest of the calculator provenance and the relaxation
criteria only (not of the segsim/ASE versions, so upgrading segsim does not discard finished
calculations).  Rows are keyed by ``(name, provenance_hash)``: a run finds the rows that
already exist for its hash and computes only the other structures, so an interrupted run
resumes where it stopped, while a run with other settings (or another calculator version)
computes everything anew next to the old rows.  A stored row whose structure differs from
the one given under the same name (``structure_hash``: a digest of species, positions, cell
and pbc) is an error: names are the database keys.

Rows are written one at a time, each in its own sqlite transaction, right after the structure
is done: interrupting a run loses at most the structure in progress.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import sys
import time
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from typing import Any

import ase
import ase.db
import numpy as np
from ase import Atoms
from ase.calculators.calculator import Calculator, PropertyNotImplementedError
from ase.calculators.singlepoint import SinglePointCalculator

import segsim
from segsim.training import calculators, tilt
from segsim.training.structures import ReferenceStructure

__all__ = [
    "AGGREGATES",
    "OPTIMIZERS",
    "STARTS",
    "RelaxSettings",
    "compute_references",
    "format_progress",
    "load_references",
    "provenance_hash",
    "relax_start",
    "start_atoms",
    "structure_hash",
]

#: Optimizers that can be chosen by name.
OPTIMIZERS: tuple[str, ...] = ("FIRE", "BFGS", "LBFGS")

#: Cell filters that can be chosen by name.
CELL_FILTERS: tuple[str, ...] = ("frechet", "unit")

#: Start geometries of a relaxation (see :class:`RelaxSettings`).
STARTS: tuple[str, ...] = ("ideal", "tilted", "tilted_anneal", "untilted")

#: How the final energies of several starts become the reference energy.
AGGREGATES: tuple[str, ...] = ("min", "mean")


@dataclass(frozen=True)
class RelaxSettings:
    """How structures are relaxed (part of the provenance hash).

    Attributes
    ----------
    optimizer
        ``"FIRE"`` (default), ``"BFGS"`` or ``"LBFGS"`` (ASE optimizers).
    fmax_ev_per_angstrom
        Convergence criterion: largest atomic force (eV/Angstrom).
    max_steps
        Largest number of optimizer steps (0: single point of the unrelaxed structure).
    relax_cell
        Also relax the cell of periodic structures.
    cell_filter
        ``"frechet"`` (:class:`ase.filters.FrechetCellFilter`, default) or ``"unit"``
        (:class:`ase.filters.UnitCellFilter`); ASE 3.29 deprecates ``ExpCellFilter`` in favour
        of the Frechet filter, so it is not offered.
    rattle_angstrom
        Standard deviation (Angstrom) of random displacements applied before relaxing
        (``Atoms.rattle``, seeds ``1000 + k`` for start ``k``).  The ideal cubic positions are
        a saddle of the octahedral tilts: a relaxation started exactly there can stop in a
        different high-symmetry state for each Cd arrangement (measured: 0.29 eV spread for
        one 4^3 NC, more than the spread between arrangements), so a small rattle lets every
        structure find its tilted minimum.  0 (default) relaxes the ideal positions.
    n_starts
        Independent rattled starts per structure; ``aggregate`` says which energy is kept.
    aggregate
        ``"min"`` (default): the lowest final energy over the starts (and that start's
        geometry); ``"mean"``: the mean of the final energies (the row also stores every
        start's energy, the standard error of the mean and the lowest energy; the geometry
        is the lowest start's).  The relaxed energy of a NC is a random variable of the
        start: the tilt landscape is glassy, and the minimum over a few starts is an
        extreme-value statistic that does not converge, while the mean does, as
        std / sqrt(n_starts) (``studies/start_spread/start_spread_notes.md``).  The mean is the
        energy of a typical quenched tilt state, the inherent-structure average of a NC
        whose tilts fluctuate at room temperature.
    start
        ``"ideal"`` (default): relax from the structure's own (ideal cubic) positions;
        ``"tilted"``: first impose the a-a-c+ Glazer tilt of orthorhombic CsPbBr3 on every
        structure (:func:`segsim.training.tilt.apply_glazer_tilt`: each Br moves
        perpendicular to its B-Br-B axis, B and Cs stay), so that all structures start in the
        same tilt basin; rattles, if any, come on top of the tilt; ``"tilted_anneal"``: the
        tilted (and rattled) start is annealed by molecular dynamics before the optimizer
        (``anneal_kelvin``, ``anneal_femtoseconds``); ``"untilted"``: relax from the ideal
        positions with the octahedral tilts switched off: every Br bonded to a B cation may
        move only along its B-Br bond axis (:class:`ase.constraints.FixedLine`), B and Cs move
        freely.  This gives the tilt-free (cubic-phase) minimum, the phase the simple-cubic
        lattice model describes, and removes the glassy tilt landscape that makes
        unconstrained relaxations of NCs depend on the start (issue 3 note); the convergence
        criterion then applies to the constrained forces.
    tilt_antiphase_degrees
        With ``start="tilted"``: tilt about x and y (antiphase along every axis), degrees.
    tilt_inphase_degrees
        With ``start="tilted"``: tilt about z (in phase along z), degrees.  The defaults are
        the angles of a CHGNet-relaxed CsPbBr3 cell
        (:data:`segsim.training.tilt.CHGNET_BULK_TILT_DEGREES`).
    anneal_kelvin, anneal_femtoseconds
        With ``start="tilted_anneal"``: after the tilt (and rattle), a Langevin molecular
        dynamics anneal at this temperature (K) for this long (fs; time step
        :data:`ANNEAL_TIMESTEP_FS`, friction :data:`ANNEAL_FRICTION_PER_FS`, velocities and
        noise from seed ``1000 + k``) before the optimizer, to let each structure settle
        into a nearby lower minimum.
    """

    optimizer: str = "FIRE"
    fmax_ev_per_angstrom: float = 0.01
    max_steps: int = 1000
    relax_cell: bool = False
    cell_filter: str = "frechet"
    rattle_angstrom: float = 0.0
    n_starts: int = 1
    aggregate: str = "min"
    start: str = "ideal"
    tilt_antiphase_degrees: float = tilt.CHGNET_BULK_TILT_DEGREES[0]
    tilt_inphase_degrees: float = tilt.CHGNET_BULK_TILT_DEGREES[1]
    anneal_kelvin: float = 100.0
    anneal_femtoseconds: float = 300.0

    def __post_init__(self) -> None:
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"unknown optimizer {self.optimizer!r}; allowed: {OPTIMIZERS}")
        if self.cell_filter not in CELL_FILTERS:
            raise ValueError(f"unknown cell filter {self.cell_filter!r}; allowed: {CELL_FILTERS}")
        if not self.fmax_ev_per_angstrom > 0:
            raise ValueError("fmax_ev_per_angstrom must be positive")
        if int(self.max_steps) != self.max_steps or self.max_steps < 0:
            raise ValueError(f"max_steps must be a non-negative integer, got {self.max_steps}")
        if self.rattle_angstrom < 0:
            raise ValueError("rattle_angstrom must be >= 0")
        if int(self.n_starts) != self.n_starts or self.n_starts < 1:
            raise ValueError(f"n_starts must be a positive integer, got {self.n_starts}")
        if self.n_starts > 1 and self.rattle_angstrom == 0:
            raise ValueError("n_starts > 1 needs rattle_angstrom > 0 (the starts would be equal)")
        if self.start not in STARTS:
            raise ValueError(f"unknown start {self.start!r}; allowed: {STARTS}")
        if self.aggregate not in AGGREGATES:
            raise ValueError(f"unknown aggregate {self.aggregate!r}; allowed: {AGGREGATES}")
        for name in ("tilt_antiphase_degrees", "tilt_inphase_degrees"):
            if not 0.0 <= getattr(self, name) < 30.0:
                raise ValueError(f"{name} must be in [0, 30) degrees")
        if self.anneal_kelvin < 0 or self.anneal_femtoseconds < 0:
            raise ValueError("anneal_kelvin and anneal_femtoseconds must be >= 0")

    @classmethod
    def from_any(cls, relax: RelaxSettings | Mapping[str, Any] | None) -> RelaxSettings:
        """Return settings from an instance, a mapping of some fields, or None (defaults).

        Raises
        ------
        ValueError
            For a mapping key that is no field (the message names the fields).
        """
        if relax is None:
            return cls()
        if isinstance(relax, RelaxSettings):
            return relax
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(relax) - names)
        if unknown:
            raise ValueError(f"unknown relax setting(s) {unknown}; allowed: {sorted(names)}")
        return cls(**dict(relax))


# --------------------------------------------------------------------------------------------
# hashes
# --------------------------------------------------------------------------------------------


def _canonical_json(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)


def _text_key(digest: str) -> str:
    """Return ``digest`` as a key an ASE database stores as text.

    ASE refuses a string value that reads as an integer, which a hex digest of only decimal
    digits does (about one in 1900 16-digit digests).  Such a digest gets an ``x`` (never a
    hex digit) for its first character; every other digest, hence every stored key, is
    unchanged.
    """
    return "x" + digest[1:] if digest.isdigit() else digest


def provenance_hash(calculator_provenance: Mapping[str, Any], relax: RelaxSettings) -> str:
    """Return the 16-hex-digit key of a calculator provenance plus relaxation criteria.

    Parameters
    ----------
    calculator_provenance
        From :func:`segsim.training.calculators.calculator_provenance`.
    relax
        The relaxation settings.
    """
    settings = asdict(relax)
    # The start options joined later: left out at their defaults so that existing
    # databases keep their keys (the tilt angles only count for a tilted start).
    for key, default in (("rattle_angstrom", 0.0), ("n_starts", 1), ("aggregate", "min")):
        if settings[key] == default:
            del settings[key]
    if relax.start == "ideal":
        del settings["start"]
    if relax.start not in ("tilted", "tilted_anneal"):
        for key in ("tilt_antiphase_degrees", "tilt_inphase_degrees"):
            del settings[key]
    if relax.start != "tilted_anneal":
        for key in ("anneal_kelvin", "anneal_femtoseconds"):
            del settings[key]
    payload = _canonical_json({"calculator": dict(calculator_provenance), "relax": settings})
    return _text_key(hashlib.sha256(payload.encode()).hexdigest()[:16])


def structure_hash(atoms: Atoms) -> str:
    """Return a 16-hex-digit digest of species, positions and cell (1e-6 Angstrom) and pbc."""
    h = hashlib.sha256()
    h.update(np.asarray(atoms.numbers, dtype=np.int64).tobytes())
    for arr in (atoms.positions, np.asarray(atoms.cell)):
        # Round to 1e-6 Angstrom; adding 0.0 turns -0.0 into 0.0.
        h.update((np.round(np.asarray(arr, dtype=np.float64), 6) + 0.0).tobytes())
    h.update(np.asarray(atoms.pbc, dtype=np.int8).tobytes())
    return _text_key(h.hexdigest()[:16])


# --------------------------------------------------------------------------------------------
# relaxation
# --------------------------------------------------------------------------------------------


def _max_force(forces: np.ndarray) -> float:
    return float(np.sqrt((np.asarray(forces) ** 2).sum(axis=1)).max()) if len(forces) else 0.0


def start_atoms(atoms: Atoms, relax: RelaxSettings, k: int = 0) -> Atoms:
    """Return start ``k`` of a relaxation: a copy of ``atoms`` as the settings prepare it.

    With ``relax.start`` ``"tilted"`` or ``"tilted_anneal"`` the a-a-c+ Glazer tilt is imposed
    (:func:`segsim.training.tilt.apply_glazer_tilt`); with ``relax.rattle_angstrom > 0`` the
    positions are then rattled (``Atoms.rattle``, seed ``1000 + k``).  Otherwise the copy has
    the positions of ``atoms``.  With ``relax.start == "untilted"`` the copy carries the
    constraints of :func:`untilted_constraints` (set before the rattle, which they project).

    Parameters
    ----------
    atoms
        The unrelaxed (ideal) structure; not modified.
    relax
        The relaxation settings.
    k
        Index of the start (``0 .. relax.n_starts - 1``).
    """
    trial = atoms.copy()
    if relax.start in ("tilted", "tilted_anneal"):
        tilt.apply_glazer_tilt(trial, relax.tilt_antiphase_degrees, relax.tilt_inphase_degrees)
    if relax.start == "untilted":  # before the rattle, which the constraint then projects
        trial.set_constraint(untilted_constraints(trial))
    if relax.rattle_angstrom > 0.0:
        trial.rattle(stdev=relax.rattle_angstrom, seed=1000 + k)
    return trial


def relax_start(
    atoms: Atoms, calc: Calculator, relax: RelaxSettings, k: int = 0, relax_cell: bool = False
) -> tuple[dict[str, Any], Atoms]:
    """Relax start ``k`` (:func:`start_atoms`) of ``atoms``; return the result and the atoms.

    With ``relax.start == "tilted_anneal"`` the start is first annealed (Langevin dynamics,
    seed ``1000 + k``).

    The result holds ``energy_ev`` (eV), ``forces``, ``stress``, ``converged``, ``n_steps``
    and ``fmax_final_ev_per_angstrom``; the returned atoms are in the relaxed state.
    """
    trial = start_atoms(atoms, relax, k)
    if relax.start == "tilted_anneal":
        _anneal(trial, calc, relax, seed=1000 + k)
    if relax.start == "untilted":  # start_atoms set the constraints
        try:
            out = _relax_once(trial, calc, relax, relax_cell)
        finally:
            trial.set_constraint()
        return out, trial
    return _relax_once(trial, calc, relax, relax_cell), trial


def untilted_constraints(atoms: Atoms) -> list[Any]:
    """Return constraints that keep every B-bonded Br on its B-Br bond axis (no tilts).

    One :class:`ase.constraints.FixedLine` per grid axis, holding the Br atoms whose bonds
    lie along that axis (found by :func:`segsim.training.tilt.octahedral_network` from the
    ideal geometry).
    """
    from ase.constraints import FixedLine

    net = tilt.octahedral_network(atoms)
    out = []
    for axis in range(3):
        idx = net.x_atoms[net.x_axis == axis]
        if idx.size:
            direction = np.zeros(3)
            direction[axis] = 1.0
            out.append(FixedLine(idx.tolist(), direction))
    return out


#: Time step of the anneal of ``start="tilted_anneal"``, fs.
ANNEAL_TIMESTEP_FS: float = 2.0

#: Langevin friction of that anneal, 1/fs (a 50 fs relaxation time).
ANNEAL_FRICTION_PER_FS: float = 0.02


def _anneal(atoms: Atoms, calc: Calculator, relax: RelaxSettings, seed: int) -> None:
    """Langevin dynamics of ``atoms`` (in place) at ``relax.anneal_kelvin``; velocities reset."""
    from ase import units
    from ase.md import velocitydistribution
    from ase.md.langevin import Langevin

    n_steps = round(relax.anneal_femtoseconds / ANNEAL_TIMESTEP_FS)
    if n_steps == 0:
        return
    atoms.calc = calc
    rng = np.random.default_rng(seed)
    # ASE 3.29 renamed MaxwellBoltzmannDistribution (now deprecated) to thermalize_momenta.
    thermalize = getattr(
        velocitydistribution,
        "thermalize_momenta",
        velocitydistribution.MaxwellBoltzmannDistribution,
    )
    thermalize(atoms, temperature_K=relax.anneal_kelvin, rng=rng)
    md = Langevin(
        atoms,
        timestep=ANNEAL_TIMESTEP_FS * units.fs,
        temperature_K=relax.anneal_kelvin,
        friction=ANNEAL_FRICTION_PER_FS / units.fs,
        fixcm=False,
        rng=rng,
    )
    md.run(n_steps)
    atoms.set_momenta(np.zeros((len(atoms), 3)))


def _submit_starts(pool: Any, atoms: Atoms, relax: RelaxSettings, relax_cell: bool) -> list[Any]:
    """Submit every start of one structure to the worker ``pool``; return the futures."""
    return [pool.submit(_start_job, atoms, relax, k, relax_cell) for k in range(relax.n_starts)]


def _relax(
    atoms: Atoms,
    calc: Calculator | None,
    relax: RelaxSettings,
    relax_cell: bool,
    futures: Sequence[Any] | None = None,
) -> dict[str, Any]:
    """Relax ``atoms`` in place; return energies, steps, convergence and final forces.

    Each of the ``relax.n_starts`` starts is prepared by :func:`start_atoms` (tilt and rattle
    as the settings say) and relaxed, here with ``calc``, or in worker processes when
    ``futures`` (:func:`_submit_starts`) are given, whose results are then collected.
    ``atoms`` ends in the state of the
    start with the lowest final energy, and ``n_steps`` counts the steps of all starts.
    ``energy_ev`` is that lowest energy (``relax.aggregate == "min"``) or the mean over the
    starts (``"mean"``; then ``energy_min_ev``, ``energy_sem_ev`` and ``start_energies_ev``
    are returned too).  ``energy_unrelaxed_ev`` is the energy of the structure as given
    (ideal positions).
    """
    ks = range(relax.n_starts)
    if futures is not None:
        runs = [f.result() for f in futures]
        energy0 = runs[0][3]  # start 0 computes it; the others return nan
    else:
        assert calc is not None
        atoms.calc = calc
        energy0 = float(atoms.get_potential_energy())
        runs = []
        for k in ks:
            out, trial = relax_start(atoms, calc, relax, k, relax_cell)
            runs.append((out, np.array(trial.positions), np.array(trial.cell), energy0))
    energies = np.array([r[0]["energy_ev"] for r in runs])
    best = int(np.argmin(energies))  # the first of equal minima, as a serial loop keeps
    out, positions, cell, _ = runs[best]
    atoms.set_cell(cell)
    atoms.set_positions(positions)
    if calc is not None:
        atoms.calc = calc
    n_steps = sum(r[0]["n_steps"] for r in runs)
    result = {"energy_unrelaxed_ev": energy0, **out, "n_steps": n_steps}
    result.pop("seconds", None)
    if futures is not None:  # the workers' own time, summed over the starts
        result["worker_seconds"] = float(sum(r[0]["seconds"] for r in runs))
    if relax.aggregate == "mean":
        n = len(energies)
        result.update(
            energy_ev=float(energies.mean()),
            energy_min_ev=float(energies.min()),
            energy_sem_ev=float(energies.std(ddof=1) / np.sqrt(n)) if n > 1 else 0.0,
            start_energies_ev=[float(e) for e in energies],
            converged=all(bool(r[0]["converged"]) for r in runs),
            fmax_final_ev_per_angstrom=max(r[0]["fmax_final_ev_per_angstrom"] for r in runs),
        )
    return result


_WORKER_CALC: Calculator | None = None


def _init_worker(kind: str, settings: Mapping[str, Any] | None) -> None:
    """Build the calculator of a start-relaxation worker process (one torch thread)."""
    global _WORKER_CALC
    calculators.limit_torch_threads(1)
    _WORKER_CALC, _ = calculators.make_calculator(kind, settings)


def _start_job(
    atoms: Atoms, relax: RelaxSettings, k: int, relax_cell: bool
) -> tuple[dict[str, Any], np.ndarray, np.ndarray, float]:
    """Relax start ``k`` in a worker; return the result, positions, cell, unrelaxed energy.

    Only start 0 evaluates the unrelaxed energy (one single point per structure, as serially).
    """
    assert _WORKER_CALC is not None
    t0 = time.perf_counter()
    atoms = atoms.copy()
    atoms.calc = _WORKER_CALC
    energy0 = float(atoms.get_potential_energy()) if k == 0 else math.nan
    out, trial = relax_start(atoms, _WORKER_CALC, relax, k, relax_cell)
    out = {**out, "seconds": time.perf_counter() - t0}
    return out, np.array(trial.positions), np.array(trial.cell), energy0


def _start_pool(kind: str, settings: Mapping[str, Any] | None, jobs: int) -> Any:
    """Return a process pool of ``jobs`` workers, each with its own calculator."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    # spawn, not fork: torch and numba threads do not survive a fork.
    ctx = multiprocessing.get_context("spawn")
    return ProcessPoolExecutor(
        jobs, mp_context=ctx, initializer=_init_worker, initargs=(kind, dict(settings or {}))
    )


def _relax_once(
    atoms: Atoms, calc: Calculator, relax: RelaxSettings, relax_cell: bool
) -> dict[str, Any]:
    """One optimizer run from the current positions of ``atoms``."""
    from ase import filters, optimize

    atoms.calc = calc
    target: Any = atoms
    if relax_cell:
        cls = (
            filters.FrechetCellFilter if relax.cell_filter == "frechet" else filters.UnitCellFilter
        )
        target = cls(atoms)
    opt_cls = getattr(optimize, relax.optimizer)
    opt = opt_cls(target, logfile=None)
    with warnings.catch_warnings():
        # FrechetCellFilter's matrix logarithm (scipy.linalg.logm) warns about round-off
        # of order 1e-13 at almost every step.
        warnings.filterwarnings("ignore", message="logm result may be inaccurate")
        converged = bool(opt.run(fmax=relax.fmax_ev_per_angstrom, steps=relax.max_steps))
    energy = float(atoms.get_potential_energy())
    forces = np.asarray(atoms.get_forces(), dtype=np.float64)
    stress = None
    if atoms.pbc.all():
        try:
            stress = np.asarray(atoms.get_stress(), dtype=np.float64)
        except PropertyNotImplementedError:
            stress = None
    return {
        "energy_ev": energy,
        "forces": forces,
        "stress": stress,
        "converged": converged,
        "n_steps": int(opt.nsteps),
        "fmax_final_ev_per_angstrom": _max_force(forces),
    }


# --------------------------------------------------------------------------------------------
# database
# --------------------------------------------------------------------------------------------


def _lattice_info(structure: ReferenceStructure) -> dict[str, Any] | None:
    lat = structure.lattice
    if lat is None:
        return None
    return {
        "shape": [int(s) for s in lat.shape],
        "n_edge": int(lat.n_edge),
        "pad": int(lat.pad),
        "a_angstrom": float(lat.a_angstrom),
        "periodic": bool(lat.pad == 0),
    }


def _row_record(row: Any) -> dict[str, Any]:
    """Turn a database row into the record returned by the public functions."""
    kv = row.key_value_pairs
    data = row.data
    occ = data.get("occupations")
    lattice = data.get("lattice")
    return {
        "id": int(row.id),
        "name": str(kv["name"]),
        "kind": str(kv["kind"]),
        "x_cd": float(kv["x_cd"]),
        "n_edge": int(kv["n_edge"]),
        "n_atoms": int(row.natoms),
        "energy_ev": float(row.energy),
        "energy_unrelaxed_ev": float(kv["energy_unrelaxed_ev"]),
        "converged": bool(kv["converged"]),
        "n_steps": int(kv["n_steps"]),
        "fmax_final_ev_per_angstrom": float(kv["fmax_final_ev_per_angstrom"]),
        "seconds": float(kv["seconds"]),
        "calculator_kind": str(kv["calculator_kind"]),
        "provenance_hash": str(kv["provenance_hash"]),
        "structure_hash": str(kv["structure_hash"]),
        "on_ce_lattice": bool(kv["on_ce_lattice"]),
        "relax_cell": bool(kv["relax_cell"]),
        "occupations": None if occ is None else np.asarray(occ, dtype=np.uint8),
        "shape": None if lattice is None else tuple(int(s) for s in lattice["shape"]),
        "lattice": lattice,
        "tags": dict(data.get("tags", {})),
        "provenance": data["provenance"],
        "atoms": row.toatoms(),
        "energy_sem_ev": float(kv["energy_sem_ev"]) if "energy_sem_ev" in kv else None,
        "start_energies_ev": (
            [float(e) for e in data["start_energies_ev"]] if "start_energies_ev" in data else None
        ),
    }


def _write_row(
    db: Any,
    structure: ReferenceStructure,
    atoms: Atoms,
    result: dict[str, Any],
    *,
    prov: dict[str, Any],
    prov_hash: str,
    s_hash: str,
    relax_cell: bool,
    seconds: float,
) -> int:
    out = atoms.copy()
    out.calc = SinglePointCalculator(
        out, energy=result["energy_ev"], forces=result["forces"], stress=result["stress"]
    )
    occ = structure.occupations
    data: dict[str, Any] = {
        "provenance": prov,
        "tags": dict(structure.tags),
        "lattice": _lattice_info(structure),
        "positions_unrelaxed_angstrom": np.asarray(structure.atoms.positions, dtype=np.float64),
        "cell_unrelaxed_angstrom": np.asarray(structure.atoms.cell, dtype=np.float64),
    }
    if occ is not None:
        data["occupations"] = np.asarray(occ, dtype=np.uint8)
    for arr in ("b_site", "owner_site"):
        if arr in structure.atoms.arrays:
            data[arr] = np.asarray(structure.atoms.arrays[arr], dtype=np.int64)
    key_value_pairs = {
        "name": str(structure.name),
        "kind": str(structure.kind),
        "x_cd": float(structure.x_cd),
        "n_edge": int(structure.n_edge),
        "calculator_kind": str(prov["calculator"]["kind"]),
        "provenance_hash": prov_hash,
        "structure_hash": s_hash,
        "converged": bool(result["converged"]),
        "n_steps": int(result["n_steps"]),
        "energy_unrelaxed_ev": float(result["energy_unrelaxed_ev"]),
        "fmax_final_ev_per_angstrom": float(result["fmax_final_ev_per_angstrom"]),
        "seconds": float(seconds),
        "on_ce_lattice": bool(structure.on_ce_lattice),
        "relax_cell": bool(relax_cell),
    }
    if "start_energies_ev" in result:  # aggregate "mean": the row's energy is the mean
        key_value_pairs["energy_min_ev"] = float(result["energy_min_ev"])
        key_value_pairs["energy_sem_ev"] = float(result["energy_sem_ev"])
        data["start_energies_ev"] = np.asarray(result["start_energies_ev"], dtype=np.float64)
    return int(db.write(out, key_value_pairs=key_value_pairs, data=data))


# --------------------------------------------------------------------------------------------
# progress
# --------------------------------------------------------------------------------------------


def format_progress(record: Mapping[str, Any]) -> str:
    """Return one progress line for a finished (or reused) structure.

    Parameters
    ----------
    record
        A record of :func:`compute_references`.
    """
    status = "reused" if record.get("reused") else ("ok" if record["converged"] else "NOT conv.")
    energy = f"E = {record['energy_ev']:.6f} eV"
    if record.get("start_energies_ev"):
        energy = (
            f"E = {record['energy_ev']:.4f} +/- {record['energy_sem_ev']:.4f} eV "
            f"(mean of {len(record['start_energies_ev'])} starts)"
        )
    return (
        f"{record['name']}: {record['n_atoms']} atoms, {energy}, "
        f"{record['n_steps']} steps, {record['seconds']:.1f} s [{status}]"
    )


def _print_progress(record: Mapping[str, Any]) -> None:
    print(format_progress(record), file=sys.stderr, flush=True)


# --------------------------------------------------------------------------------------------
# public API
# --------------------------------------------------------------------------------------------


def compute_references(
    structures: Sequence[ReferenceStructure],
    *,
    calculator_kind: str = calculators.DEFAULT_KIND,
    calculator_settings: Mapping[str, Any] | None = None,
    relax: RelaxSettings | Mapping[str, Any] | None = None,
    db_path: str | os.PathLike[str],
    progress: Callable[[dict[str, Any]], None] | bool | None = None,
    jobs: int = 1,
    compute: bool = True,
) -> list[dict[str, Any]]:
    """Relax the structures with a reference calculator and store them (resumable).

    Parameters
    ----------
    structures
        The structures; names must be unique.
    calculator_kind
        A key of :data:`segsim.training.calculators.CALCULATOR_KINDS` (default ``chgnet``).
    calculator_settings
        Overrides of the calculator's default settings.
    relax
        :class:`RelaxSettings`, a mapping of some of its fields, or None (defaults: FIRE,
        0.01 eV/Angstrom, 1000 steps, positions only).
    db_path
        ASE database (sqlite, e.g. ``refs.db``); created if missing.
    progress
        Called with each structure's record as soon as it is done (or found in the database);
        ``True`` prints :func:`format_progress` lines to stderr; None/False: quiet.
    jobs
        Relax up to this many starts at once in worker processes (one calculator and one
        torch thread each), the starts of the next structures too (up to ``2 jobs`` starts
        queued), so that more workers than starts per structure are kept busy.  The energies
        do not depend on it (each start has its own seed), and rows are written in input
        order as each structure completes; a stopped run loses only the structures in
        flight.
    compute
        False: compute nothing, return only the structures already in the database (same
        provenance and atoms); the calculator is never built.  For fitting a partial
        database while the rest is still being computed.

    Returns
    -------
    list of dict
        One record per structure, in input order (the fields of :func:`load_references`
        plus ``reused``: True where the row already existed); with ``compute=False`` only
        the stored ones.  The calculator is built only if at least one structure has to be
        computed.

    Raises
    ------
    ValueError
        Duplicate names, unknown calculator kind or setting.  (A stored row under the same
        name and provenance but with different atoms, ``structure_hash``, or relaxed with
        another ``relax_cell`` than the rule gives now, is stale: it is deleted and the
        structure recomputed, with a line on stderr.)
    """
    relax_s = RelaxSettings.from_any(relax)
    names = [s.name for s in structures]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ValueError(f"duplicate structure names: {dupes}")
    calc_prov = calculators.calculator_provenance(calculator_kind, calculator_settings)
    prov_hash = provenance_hash(calc_prov, relax_s)
    prov = {
        "calculator": calc_prov,
        "relax": asdict(relax_s),
        "segsim_version": segsim.__version__,
        "ase_version": ase.__version__,
        "provenance_hash": prov_hash,
    }
    if progress is True:
        report: Callable[[dict[str, Any]], None] | None = _print_progress
    elif progress is False or progress is None:
        report = None
    else:
        report = progress

    db = ase.db.connect(os.fspath(db_path), type="db")
    done = {rec["name"]: rec for rec in _select(db, provenance_hash=prov_hash)}

    if int(jobs) != jobs or jobs < 1:
        raise ValueError(f"jobs must be a positive integer, got {jobs}")
    calc: Calculator | None = None
    pool: Any = None
    # First the bookkeeping of every structure (reuse, skip, or drop a stale row), then the
    # computations, so that worker processes can run ahead of the structure being stored.
    plan: list[tuple[ReferenceStructure, str, bool]] = []
    for structure in structures:
        s_hash = structure_hash(structure.atoms)
        relax_cell = bool(relax_s.relax_cell and structure.atoms.pbc.all())
        stored = done.get(structure.name)
        stale = stored is not None and stored["structure_hash"] != s_hash
        wrong_cell = stored is not None and bool(stored["relax_cell"]) != relax_cell
        if not compute and (stale or wrong_cell or structure.name not in done):
            continue  # read-only: neither delete nor compute
        why = None
        if stale:
            # The generator has changed this structure since it was computed (e.g. a new
            # termination rule): the stored energy belongs to other atoms.
            why = (
                f"the stored structure differs from the generated one "
                f"(hash {stored['structure_hash']} != {s_hash})"
            )
        elif wrong_cell:
            why = (
                f"stored with relax_cell={bool(stored['relax_cell'])}, "
                f"the rule now asks relax_cell={relax_cell}"
            )
        if why is not None:
            # Drop the row before anything is computed, so that an interrupted run never
            # leaves two rows under one name, and recompute.
            print(f"{structure.name}: {why}; recomputing", file=sys.stderr, flush=True)
            db.delete([done.pop(structure.name)["id"]])
        plan.append((structure, s_hash, relax_cell))
    todo = [i for i, (st, _, _) in enumerate(plan) if st.name not in done]
    parallel = jobs > 1 and bool(todo)
    queued: dict[int, list[Any]] = {}  # plan index -> futures of its starts
    n_submitted = 0  # entries of ``todo`` submitted so far
    try:
        if parallel:
            pool = _start_pool(calculator_kind, calculator_settings, jobs)
        out: list[dict[str, Any]] = []
        for i, (structure, s_hash, relax_cell) in enumerate(plan):
            if structure.name in done:
                rec = {**done[structure.name], "reused": True}
            else:
                if parallel:  # keep up to 2 jobs starts queued, this structure's included
                    while n_submitted < len(todo) and (
                        todo[n_submitted] <= i or sum(map(len, queued.values())) < 2 * jobs
                    ):
                        j = todo[n_submitted]
                        queued[j] = _submit_starts(pool, plan[j][0].atoms, relax_s, plan[j][2])
                        n_submitted += 1
                elif calc is None:
                    calc, _ = calculators.make_calculator(calculator_kind, calculator_settings)
                atoms = structure.atoms.copy()
                t0 = time.perf_counter()
                result = _relax(atoms, calc, relax_s, relax_cell, queued.pop(i, None))
                # wall time of the relaxations: serial, or summed over the worker starts
                seconds = result.pop("worker_seconds", time.perf_counter() - t0)
                row_id = _write_row(
                    db,
                    structure,
                    atoms,
                    result,
                    prov=prov,
                    prov_hash=prov_hash,
                    s_hash=s_hash,
                    relax_cell=relax_cell,
                    seconds=seconds,
                )
                rec = {**_row_record(db.get(id=row_id)), "reused": False}
            if report is not None:
                report(rec)
            out.append(rec)
        return out
    finally:
        if pool is not None:
            # on an interruption: drop the queued starts, wait only for the running ones
            pool.shutdown(cancel_futures=True)


def _select(db: Any, **query: Any) -> Iterable[dict[str, Any]]:
    for row in db.select(**{k: v for k, v in query.items() if v is not None}):
        if "provenance_hash" in row.key_value_pairs:
            yield _row_record(row)


def load_references(
    db_path: str | os.PathLike[str],
    *,
    calculator_kind: str | None = None,
    provenance_hash: str | None = None,
) -> list[dict[str, Any]]:
    """Read reference rows back from the database (in insertion order).

    Parameters
    ----------
    db_path
        The database written by :func:`compute_references`.
    calculator_kind
        Only rows of this calculator kind.
    provenance_hash
        Only rows with this provenance hash (one consistent set of settings).

    Returns
    -------
    list of dict
        Per row: ``id``, ``name``, ``kind``, ``x_cd``, ``n_edge``, ``n_atoms``, ``energy_ev``
        (relaxed total energy, eV), ``energy_unrelaxed_ev``, ``converged``, ``n_steps``,
        ``fmax_final_ev_per_angstrom``, ``seconds``, ``calculator_kind``,
        ``provenance_hash``, ``structure_hash``, ``on_ce_lattice``, ``relax_cell``,
        ``occupations`` (uint8 B-lattice codes or None), ``shape`` (grid shape, or None),
        ``lattice`` (``shape``, ``n_edge``, ``pad``, ``a_angstrom``, ``periodic``; or None),
        ``tags``, ``provenance`` and ``atoms`` (the relaxed ``ase.Atoms``).

    Raises
    ------
    FileNotFoundError
        If ``db_path`` does not exist.
    """
    if not os.path.exists(db_path):
        raise FileNotFoundError(f"no reference database at {os.fspath(db_path)!r}")
    db = ase.db.connect(os.fspath(db_path), type="db")
    return list(_select(db, calculator_kind=calculator_kind, provenance_hash=provenance_hash))


def prune_database(db_path: str | os.PathLike, keep: Iterable[Mapping[str, Any]]) -> int:
    """Delete every row that is not one of the records ``keep`` (by name and provenance).

    ``segsim train`` calls this after computing the current structure set, so that the shipped
    database holds exactly the references the fit used (rows of an older provenance, e.g. a
    looser relaxation, or of structures no longer generated are removed).  Returns the number
    of rows deleted.
    """
    import sqlite3

    wanted = {(str(r["name"]), str(r["provenance_hash"])) for r in keep}
    db = ase.db.connect(os.fspath(db_path), type="db")
    stale = [
        row.id
        for row in db.select()
        if (str(row.get("name")), str(row.get("provenance_hash"))) not in wanted
    ]
    if stale:
        db.delete(stale)
        con = sqlite3.connect(os.fspath(db_path))
        try:
            con.execute("VACUUM")
        finally:
            con.close()
    return len(stale)
