"""Defect thermodynamics of the model's B vacancy (issue 26, item 2), CHGNet and SevenNet.

``python -m studies.defect_thermodynamics.defect_thermodynamics run GROUP ...`` relaxes the
structures of the named groups and appends every relaxation to a JSON-lines cache
(``defect_thermodynamics.jsonl``; an interrupted run resumes, finished jobs are skipped);
``... report`` writes ``defect_thermodynamics.md`` from the cache.  The defect chemistry and
the formulas are :mod:`segsim.defects`; README.md has the exact commands.

Jobs (one record each, keyed by calculator, mode, structure name and start ``k``):

``volume``
    Perfect periodic CsPbBr3 cell of ``n^3`` formula units (built by
    :func:`segsim.lattice.build_periodic` + :func:`segsim.atomistic.to_atoms`), rattled start
    0, positions and a hydrostatic (cubic) cell relaxed: the calculator's lattice constant
    ``a_n = (V / n^3)^(1/3)`` at which that size's fixed-cell jobs are built.
``cell``
    Reference crystals (CsBr CsCl and rock-salt, PbBr2 Pnma): positions and the full cell
    (Frechet filter) relaxed, start 0.
``relax``
    Positions only at fixed cell, FIRE, fmax 0.01 eV/A, at most 1000 steps, rattled ideal
    starts (0.02 A, seeds ``1000 + k``): the criteria of ``inputs/train.yaml`` and the start
    convention of ``studies/vacancy_energetics`` (the tilt landscape is glassy: energies are
    start means with standard errors).
``single``
    Single point of a second calculator on the geometry the CHGNet ``relax`` job of the same
    structure and start saved (``geometries/``).

Groups: ``refs`` (CsBr, PbBr2), ``bulk2`` (perfect and V only: the cells of the CP2K check,
``cp2k_check.py``), ``bulk3``, ``bulk4`` (perfect, V with the z trans Br pair
removed = the model's vacancy, V with a cis Br pair removed; ``bulk3`` also Cd next to and far
from a V), ``nc5``, ``nc6`` (pure NCs: perfect, V at the face centre and depths 1, 2 (3),
the face site receded (pit), a step (V beside a pit -> two-site pit), edge and corner V and
O).  ``--calc sevennet`` relaxes with SevenNet-0 (``7net-0``), ``--single sevennet`` runs
SevenNet single points on the CHGNet geometries.

Records of an earlier study with the identical structure (same structure hash) and the same
relaxation settings can be imported (``import``): the 5^3 face/depth records of
``studies/vacancy_energetics/vacancy_energetics_nc5.jsonl`` (6 starts) and the per-start
energies of ``potentials/training.db`` (4 starts); their records name the source.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import shlex
import sys
import time
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from pathlib import Path
from typing import Any

import numpy as np

#: This study's folder (its outputs live here).
HERE = Path(__file__).resolve().parent
#: Default cache and report.
CACHE = HERE / "defect_thermodynamics.jsonl"
REPORT = HERE / "defect_thermodynamics.md"
GEOMETRIES = HERE / "geometries"
#: The training database (per-start CHGNet energies and the lowest start's geometry).
TRAINING_DB = HERE.parents[1] / "potentials" / "training.db"
#: 5^3 NC states whose CHGNet relaxations come from the training database (``import``).
DB_NC_STATES: tuple[str, ...] = (
    "pure",
    "vac1-depth0",
    "vac1-depth1",
    "vac1-depth2",
    "v1-edge",
    "v1-corner",
)

#: Lattice constant (Angstrom), vacuum (Angstrom) and outside layers of the NCs: those of
#: ``inputs/train.yaml`` (the NCs are relaxed in vacuum, the start lattice constant only sets
#: the ideal positions).
NC_A_ANGSTROM = 5.87
NC_VACUUM_ANGSTROM = 8.0
NC_PAD = 3
#: Relaxation settings (``inputs/train.yaml``).
FMAX_EV_PER_ANGSTROM = 0.01
MAX_STEPS = 1000
RATTLE_ANGSTROM = 0.02
#: Cell relaxations (references, volumes) get more steps.
CELL_MAX_STEPS = 2000

#: The calculators: name -> description.
CALCULATORS: dict[str, str] = {
    "chgnet": "CHGNet 0.3.0 (pretrained, MP PBE/PBE+U)",
    "sevennet": "SevenNet-0 (7net-0, sevenn 0.13 wheel checkpoint, MPtrj PBE/PBE+U)",
}

__all__ = ["build_structure", "job_list", "main"]


# --------------------------------------------------------------------------------------------
# structures
# --------------------------------------------------------------------------------------------


def _pbbr2_pnma() -> Any:
    """PbBr2, PbCl2 (cotunnite) type, Pnma, all atoms on 4c (x, 1/4, z); 12 atoms.

    Start cell and coordinates: the cotunnite arrangement with PbBr2's approximate lattice
    (a 8.06, b 4.73, c 9.54 Angstrom); the cell relaxation and the density check in the
    report decide whether the structure is credible.
    """
    from ase.spacegroup import crystal

    return crystal(
        ["Pb", "Br", "Br"],
        basis=[(0.2620, 0.25, 0.0950), (0.8620, 0.25, 0.0730), (0.4780, 0.25, 0.8380)],
        spacegroup=62,
        cellpar=[8.06, 4.73, 9.54, 90, 90, 90],
    )


def _reference(name: str) -> Any:
    from ase.build import bulk

    if name == "csbr_cscl":
        return bulk("CsBr", "cesiumchloride", a=4.29)
    if name == "csbr_rocksalt":
        return bulk("CsBr", "rocksalt", a=7.2, cubic=True)
    if name == "pbbr2_pnma":
        return _pbbr2_pnma()
    raise KeyError(name)


def _bulk(n: int, variant: str, a_angstrom: float) -> Any:
    """Periodic ``n^3`` cell; ``variant``: perfect, v-trans, v-cis, v-cd-near, v-cd-far."""
    from segsim import species
    from segsim.atomistic import to_atoms
    from segsim.lattice import build_periodic

    lat = build_periodic(n, a_angstrom)
    occ = np.zeros(lat.n_sites, dtype=species.OCC_DTYPE)
    site = 0
    if variant == "perfect":
        return to_atoms(lat, occ)
    if variant in ("v-trans", "v-cd-near", "v-cd-far"):
        occ[site] = species.VAC
        if variant == "v-cd-near":
            occ[int(lat.nn[site][0])] = species.CD  # a nearest neighbour (along x)
        elif variant == "v-cd-far":
            # farthest site of the periodic cell: (n//2, n//2, n//2)
            h = n // 2
            far = int(lat.site_index(np.array([h]), np.array([h]), np.array([h]))[0])
            occ[far] = species.CD
        return to_atoms(lat, occ)
    if variant == "v-cis":
        atoms = to_atoms(lat, occ)
        pos0 = lat.coords[site].astype(float) * a_angstrom
        drop = [int(np.flatnonzero(atoms.get_array("b_site") == site)[0])]
        for k in (2, 0):  # the +z and +x Br: a cis pair
            target = pos0.copy()
            target[k] += 0.5 * a_angstrom
            box = atoms.cell.lengths()
            d = np.linalg.norm((atoms.positions - target + 0.5 * box) % box - 0.5 * box, axis=1)
            j = int(np.argmin(np.where(atoms.numbers == 35, d, np.inf)))
            drop.append(j)
        del atoms[sorted(drop)]
        return atoms
    raise KeyError(variant)


def nc_states(n: int) -> dict[str, dict[str, list[tuple[int, int, int]]]]:
    """Return the NC states: name suffix -> {"V": grid coords, "O": grid coords}.

    Coordinates are on :func:`segsim.lattice.build_cube` with pad :data:`NC_PAD`; the face is
    the bottom (-z) face, ``c`` its centre column, the edge site the centre of the bottom -y
    edge, the corner the bottom -x -y corner (the names of
    :mod:`segsim.training.structures`).
    """
    p = NC_PAD
    c = p + n // 2
    edge, corner = (c, p, p), (p, p, p)
    states: dict[str, dict[str, list[tuple[int, int, int]]]] = {
        "pure": {"V": [], "O": []},
        "vac1-depth0": {"V": [(c, c, p)], "O": []},
    }
    for d in range(1, (n + 1) // 2):
        states[f"vac1-depth{d}"] = {"V": [(c, c, p + d)], "O": []}
    states.update(
        {
            "pit1-face": {"V": [], "O": [(c, c, p)]},
            "pit1-face_v-beside": {"V": [(c + 1, c, p)], "O": [(c, c, p)]},
            "pit2-face": {"V": [], "O": [(c, c, p), (c + 1, c, p)]},
            "v1-edge": {"V": [edge], "O": []},
            "pit1-edge": {"V": [], "O": [edge]},
            "v1-corner": {"V": [corner], "O": []},
            "pit1-corner": {"V": [], "O": [corner]},
        }
    )
    return states


def nc_lattice_occupations(n: int, suffix: str) -> tuple[Any, np.ndarray]:
    """Return the lattice and occupations of NC state ``suffix`` (:func:`nc_states`)."""
    from segsim import species
    from segsim.lattice import build_cube

    lat = build_cube(n, NC_A_ANGSTROM, NC_PAD)
    occ = np.where(lat.in_nc, species.PB, species.OUT).astype(species.OCC_DTYPE)
    st = nc_states(n)[suffix]
    for code, key in ((species.VAC, "V"), (species.OUT, "O")):
        for xyz in st[key]:
            occ[int(lat.site_index(*(np.array([v]) for v in xyz))[0])] = code
    return lat, occ


def bulk_lattice_occupations(n: int, variant: str) -> tuple[Any, np.ndarray]:
    """Return the periodic lattice and B occupations of a bulk variant (cis = trans here)."""
    from segsim import species
    from segsim.lattice import build_periodic

    lat = build_periodic(n, NC_A_ANGSTROM)
    occ = np.zeros(lat.n_sites, dtype=species.OCC_DTYPE)
    if variant != "perfect":
        occ[0] = species.VAC
    if variant == "v-cd-near":
        occ[int(lat.nn[0][0])] = species.CD
    if variant == "v-cd-far":
        h = n // 2
        occ[int(lat.site_index(np.array([h]), np.array([h]), np.array([h]))[0])] = species.CD
    return lat, occ


def build_structure(name: str, a_bulk: Callable[[int], float] | None = None) -> Any:
    """Return the unrelaxed atoms of structure ``name``.

    Names: ``csbr_cscl``, ``csbr_rocksalt``, ``pbbr2_pnma``; ``bulk{n}_{variant}``;
    ``nc{n}_x0_{suffix}`` (:func:`nc_states`).  ``a_bulk(n)`` gives the lattice constant of
    the fixed-cell bulk jobs (Angstrom); the volume job builds at :data:`NC_A_ANGSTROM`.
    """
    from segsim.atomistic import to_atoms

    if name.startswith(("csbr", "pbbr2")):
        return _reference(name)
    if name.startswith("bulk"):
        head, variant = name.split("_", 1)
        n = int(head[4:])
        a = NC_A_ANGSTROM if a_bulk is None else a_bulk(n)
        return _bulk(n, variant, a)
    if name.startswith("nc"):
        head, _, suffix = name.split("_", 2)
        lat, occ = nc_lattice_occupations(int(head[2:]), suffix)
        return to_atoms(lat, occ, vacuum_angstrom=NC_VACUUM_ANGSTROM)
    raise KeyError(name)


# --------------------------------------------------------------------------------------------
# jobs
# --------------------------------------------------------------------------------------------


def _groups(n_starts_bulk: int) -> dict[str, list[tuple[str, str]]]:
    g: dict[str, list[tuple[str, str]]] = {
        "refs": [("cell", "csbr_cscl"), ("cell", "csbr_rocksalt"), ("cell", "pbbr2_pnma")]
    }
    for n in (2, 3, 4):
        variants = ["perfect", "v-trans"] + (["v-cis"] if n > 2 else [])
        variants += ["v-cd-near", "v-cd-far"] if n == 3 else []
        g[f"bulk{n}"] = [("volume", f"bulk{n}_perfect")] + [
            ("relax", f"bulk{n}_{v}") for v in variants
        ]
    for n in (5, 6):
        g[f"nc{n}"] = [("relax", f"nc{n}_x0_{s}") for s in nc_states(n)]
    return g


def job_key(calc: str, mode: str, name: str, k: int) -> str:
    """Return the cache key of one job."""
    return f"{calc}|{mode}|{name}|{k}"


def job_list(
    groups: Sequence[str],
    calc: str,
    n_starts: int,
    names: Sequence[str] | None = None,
    *,
    tilted: bool = False,
    first_start: int = 0,
) -> list[tuple[str, str, str, int]]:
    """Return the jobs ``(calc, mode, name, k)`` of the groups (start-major order).

    ``tilted``: the fixed-cell relaxations start from the a-a-c+ tilted positions
    (``reference.RelaxSettings(start="tilted")``, mode ``relax_tilted``); starts
    ``first_start .. n_starts - 1``.
    """
    table = _groups(n_starts)
    entries = [e for grp in groups for e in table[grp]]
    if names:
        entries = [e for e in entries if e[1] in names or e[0] != "relax"]
    jobs = [(calc, m, nm, 0) for m, nm in entries if m != "relax"]
    relax_mode = "relax_tilted" if tilted else "relax"
    for k in range(first_start, n_starts):
        jobs += [(calc, relax_mode, nm, k) for m, nm in entries if m == "relax"]
    return jobs


def read_cache(path: Path) -> list[dict[str, Any]]:
    """Return the cached records, first of each key (a truncated last line is ignored).

    Two runs of the same job (e.g. two chains started at once) append two records with the
    same key; the first one counts.
    """
    if not path.exists():
        return []
    out, seen = [], set()
    for line in path.read_text().splitlines():
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            continue
        if rec["key"] in seen:
            continue
        seen.add(rec["key"])
        out.append(rec)
    return out


def lattice_constants(records: Sequence[dict[str, Any]], calc: str) -> dict[int, float]:
    """Return ``{n: a_n}`` (Angstrom) from the ``volume`` records of ``calc``."""
    return {
        int(r["name"][4:].split("_")[0]): float(r["a_angstrom"])
        for r in records
        if r["calculator"] == calc and r["mode"] == "volume"
    }


# --------------------------------------------------------------------------------------------
# worker
# --------------------------------------------------------------------------------------------

_CALC: dict[str, Any] = {}


def _calculator(calc: str) -> Any:
    if calc not in _CALC:
        import warnings

        from segsim.training.calculators import limit_torch_threads

        limit_torch_threads(1)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if calc == "chgnet":
                from segsim.training.calculators import make_calculator

                _CALC[calc], _ = make_calculator("chgnet", {})
            elif calc == "sevennet":
                from sevenn.calculator import SevenNetCalculator

                _CALC[calc] = SevenNetCalculator("7net-0", device="cpu")
            else:
                raise KeyError(calc)
    return _CALC[calc]


def geometry_path(calc: str, name: str, k: int, mode: str = "relax") -> Path:
    """Return where the relaxed geometry of a job is kept (gzipped extended XYZ)."""
    tag = "_tilted" if mode == "relax_tilted" else ""
    return GEOMETRIES / calc / f"{name}{tag}_k{k}.extxyz.gz"


def _write_geometry(atoms: Any, path: Path) -> None:
    from ase.io import write

    path.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(path, "wt") as fh:
        write(fh, atoms, format="extxyz")


def _read_geometry(path: Path) -> Any:
    from ase.io import read

    with gzip.open(path, "rt") as fh:
        return read(fh, format="extxyz")


def run_job(job: tuple[str, str, str, int], a_by_n: dict[int, float], source_calc: str) -> dict:
    """Run one job (in a worker process); return its record."""
    import warnings

    from ase import filters, optimize

    from segsim.defects import formula_counts
    from segsim.training import reference

    calc_name, mode, name, k = job
    calc = _calculator(calc_name)
    relax = reference.RelaxSettings(
        optimizer="FIRE",
        fmax_ev_per_angstrom=FMAX_EV_PER_ANGSTROM,
        max_steps=MAX_STEPS,
        rattle_angstrom=RATTLE_ANGSTROM,
        n_starts=1,
        start="tilted" if mode == "relax_tilted" else "ideal",
    )
    t0 = time.perf_counter()
    a = None
    chgnet_same_geometry = None
    tilt_deg = None
    if mode in ("single", "single-db"):
        if mode == "single":
            atoms = _read_geometry(geometry_path(source_calc, name, k))
        else:  # the lowest start's CHGNet geometry stored in potentials/training.db
            from ase.db import connect

            row = connect(TRAINING_DB).get(name=name)
            atoms = row.toatoms()
            chgnet_same_geometry = float(row.energy_min_ev)
        unrelaxed_hash = None
        atoms.calc = calc
        energy = float(atoms.get_potential_energy())
        forces = atoms.get_forces()
        out = {
            "energy_ev": energy,
            "n_steps": 0,
            "converged": None,
            "fmax_final_ev_per_angstrom": float(np.sqrt((forces**2).sum(axis=1)).max()),
        }
    else:
        if name.startswith("bulk") and mode in ("relax", "relax_tilted"):
            n = int(name[4:].split("_")[0])
            a = a_by_n[n]
            base = build_structure(name, lambda _n: a)
        else:
            base = build_structure(name)
        unrelaxed_hash = reference.structure_hash(base)
        if mode in ("relax", "relax_tilted"):
            out, atoms = reference.relax_start(base, calc, relax, k)
            if name.startswith("bulk"):
                from segsim.training.tilt import measure_tilt_degrees

                try:  # the a-a-c+ pattern needs an even cell (not 3^3)
                    t = measure_tilt_degrees(atoms, base)
                    tilt_deg = [round(float(t["antiphase_degrees"]), 2),
                                round(float(t["inphase_degrees"]), 2)]  # fmt: skip
                except ValueError:
                    tilt_deg = None
        else:
            atoms = reference.start_atoms(base, relax, k)
            atoms.calc = calc
            target = filters.FrechetCellFilter(atoms, hydrostatic_strain=(mode == "volume"))
            opt = optimize.FIRE(target, logfile=None)
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message="logm result may be inaccurate")
                conv = bool(opt.run(fmax=FMAX_EV_PER_ANGSTROM, steps=CELL_MAX_STEPS))
            forces = atoms.get_forces()
            out = {
                "energy_ev": float(atoms.get_potential_energy()),
                "n_steps": int(opt.nsteps),
                "converged": conv,
                "fmax_final_ev_per_angstrom": float(np.sqrt((forces**2).sum(axis=1)).max()),
                "stress_ev_per_angstrom3": [float(s) for s in atoms.get_stress()],
            }
            if mode == "volume":
                n = int(name[4:].split("_")[0])
                a = float((atoms.get_volume() / n**3) ** (1.0 / 3.0))
        _write_geometry(atoms, geometry_path(calc_name, name, k, mode))
    seconds = time.perf_counter() - t0
    counts = formula_counts(atoms.get_chemical_symbols())
    rec = {
        "key": job_key(*job),
        "calculator": calc_name,
        "mode": mode,
        "name": name,
        "k": k,
        "seed": 1000 + k,
        "energy_ev": float(out["energy_ev"]),
        "n_steps": int(out["n_steps"]),
        "converged": out["converged"],
        "fmax_final_ev_per_angstrom": float(out["fmax_final_ev_per_angstrom"]),
        "seconds": seconds,
        "n_atoms": len(atoms),
        "counts": counts,
        "structure_hash": unrelaxed_hash,
        "source": {
            "single": f"single point on {source_calc} geometry",
            "single-db": "single point on the lowest-start CHGNet geometry of potentials/training.db",
        }.get(mode, "this study"),
    }
    if tilt_deg is not None:
        rec["tilt_antiphase_inphase_degrees"] = tilt_deg
    if chgnet_same_geometry is not None:
        rec["chgnet_energy_same_geometry_ev"] = chgnet_same_geometry
    if a is not None:
        rec["a_angstrom"] = a
    if mode in ("cell", "volume"):
        cell = atoms.cell.cellpar()
        mass_g = float(atoms.get_masses().sum()) / 6.02214076e23
        rec["cellpar"] = [float(x) for x in cell]
        rec["density_g_per_cm3"] = mass_g / (atoms.get_volume() * 1e-24)
        rec["stress_ev_per_angstrom3"] = out["stress_ev_per_angstrom3"]
    return rec


def _init_worker() -> None:
    os.environ["OMP_NUM_THREADS"] = "1"


def run(
    jobs: Sequence[tuple[str, str, str, int]],
    cache: Path,
    n_workers: int,
    command: str,
    source_calc: str = "chgnet",
) -> None:
    """Run the jobs not yet in the cache, ``n_workers`` at a time; append each record.

    Fixed-cell bulk jobs wait for their size's ``volume`` record (same calculator).
    """
    done = {r["key"] for r in read_cache(cache)}
    pending = [j for j in jobs if job_key(*j) not in done]
    print(f"{len(pending)} jobs to run ({len(jobs) - len(pending)} cached)", flush=True)
    running: dict[Any, tuple[str, str, str, int]] = {}
    with ProcessPoolExecutor(max_workers=n_workers, initializer=_init_worker) as pool:
        while pending or running:
            records = read_cache(cache)
            a_by = {
                c: lattice_constants(records, c) for c in {j[0] for j in pending} | {source_calc}
            }

            def ready(
                j: tuple[str, str, str, int], a_by: dict[str, dict[int, float]] = a_by
            ) -> bool:
                if j[1].startswith("relax") and j[2].startswith("bulk"):
                    return int(j[2][4:].split("_")[0]) in a_by[j[0]]
                return True

            for j in list(pending):
                if len(running) >= n_workers:
                    break
                if ready(j):
                    pending.remove(j)
                    fut = pool.submit(run_job, j, a_by[j[0]], source_calc)
                    running[fut] = j
            if not running:
                raise RuntimeError(f"jobs wait for volume records that no job makes: {pending}")
            finished, _ = wait(list(running), return_when=FIRST_COMPLETED)
            for fut in finished:
                j = running.pop(fut)
                try:
                    rec = fut.result()
                except Exception as exc:  # noqa: BLE001 (report the failed job, run the others)
                    print(f"FAILED {j}: {exc!r}", flush=True)
                    continue
                rec["command"] = command
                with cache.open("a") as fh:
                    fh.write(json.dumps(rec) + "\n")
                print(
                    f"{rec['key']}: E {rec['energy_ev']:.4f} eV, {rec['n_steps']} steps, "
                    f"fmax {rec['fmax_final_ev_per_angstrom']:.4f}, {rec['seconds']:.0f} s",
                    flush=True,
                )


# --------------------------------------------------------------------------------------------
# import of identical earlier relaxations
# --------------------------------------------------------------------------------------------


def import_records(cache: Path, repo_root: Path) -> int:
    """Import earlier CHGNet relaxations of identical 5^3 structures; return how many."""
    from ase.db import connect

    from segsim.defects import formula_counts
    from segsim.training import reference

    have = {r["key"] for r in read_cache(cache)}
    new: list[dict[str, Any]] = []
    hashes = {}
    for suffix in nc_states(5):
        atoms = build_structure(f"nc5_x0_{suffix}")
        hashes[f"nc5_x0_{suffix}"] = (
            reference.structure_hash(atoms),
            formula_counts(atoms.get_chemical_symbols()),
            len(atoms),
        )
    rename = {"v1-face": "vac1-depth0", "v1-depth1": "vac1-depth1", "v1-depth2": "vac1-depth2"}
    src = repo_root / "studies/vacancy_energetics/vacancy_energetics_nc5.jsonl"
    for line in src.read_text().splitlines():
        r = json.loads(line)
        suffix = rename.get(r["name"].split("_", 2)[2])
        key_relax = json.loads(r["key"])["relax"]
        if suffix is None or r["start_kind"] != "ideal" or r["rattle_angstrom"] != RATTLE_ANGSTROM:
            continue
        if key_relax["fmax_ev_per_angstrom"] != FMAX_EV_PER_ANGSTROM or key_relax["relax_cell"]:
            continue
        name = f"nc5_x0_{suffix}"
        h, counts, n_atoms = hashes[name]
        if r["structure_hash"] != h:
            print(f"skip {r['name']}: structure hash {r['structure_hash']} != {h}")
            continue
        k = int(r["seed"]) - 1000
        new.append(
            {
                "key": job_key("chgnet", "relax", name, k) + "|import-ve",
                "calculator": "chgnet",
                "mode": "relax",
                "name": name,
                "k": k,
                "seed": int(r["seed"]),
                "energy_ev": float(r["energy_ev"]),
                "n_steps": int(r["n_steps"]),
                "converged": bool(r["converged"]),
                "fmax_final_ev_per_angstrom": float(r["fmax_final_ev_per_angstrom"]),
                "seconds": float(r["seconds"]),
                "n_atoms": n_atoms,
                "counts": counts,
                "structure_hash": h,
                "source": f"imported: {src.relative_to(repo_root)} ({r['name']})",
            }
        )
    db_path = repo_root / "potentials/training.db"
    db = connect(db_path)
    for name, (h, counts, n_atoms) in hashes.items():
        rows = list(db.select(name=name))
        if not rows:
            continue
        row = rows[0]
        if row.structure_hash != h:
            print(f"skip db {name}: structure hash {row.structure_hash} != {h}")
            continue
        for k, e in enumerate(row.data["start_energies_ev"]):
            if any(r["name"] == name and r["k"] == k for r in new):
                continue  # the same relaxation (same structure, settings, seed) from the jsonl
            new.append(
                {
                    "key": job_key("chgnet", "relax", name, k) + "|import-db",
                    "calculator": "chgnet",
                    "mode": "relax",
                    "name": name,
                    "k": k,
                    "seed": 1000 + k,
                    "energy_ev": float(e),
                    "n_steps": None,
                    "converged": bool(row.converged),
                    "fmax_final_ev_per_angstrom": None,
                    "seconds": None,
                    "n_atoms": n_atoms,
                    "counts": counts,
                    "structure_hash": h,
                    "source": (
                        f"imported: potentials/training.db row {name} (provenance "
                        f"{row.provenance_hash}; per-start energies, steps not stored)"
                    ),
                }
            )
    new = [r for r in new if r["key"] not in have]
    with cache.open("a") as fh:
        for r in new:
            fh.write(json.dumps(r) + "\n")
    return len(new)


# --------------------------------------------------------------------------------------------
# command line
# --------------------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point (see the module docstring)."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run", help="run the jobs of groups")
    r.add_argument("groups", nargs="+", choices=list(_groups(1)))
    r.add_argument("--calc", choices=list(CALCULATORS), default="chgnet")
    r.add_argument("--single", action="store_true", help="single points on CHGNet geometries")
    r.add_argument(
        "--single-db", action="store_true",
        help="with --single: also the lowest-start 5^3 geometries of potentials/training.db",
    )  # fmt: skip
    r.add_argument("--starts", type=int, default=4)
    r.add_argument("--first-start", type=int, default=0, help="skip starts below this k")
    r.add_argument("--tilted", action="store_true", help="a-a-c+ tilted starts (relax_tilted)")
    r.add_argument("--names", nargs="*", default=None, help="only these relax structures")
    r.add_argument("--jobs", type=int, default=2)
    r.add_argument("--cache", default=str(CACHE))
    sub.add_parser("import", help="import identical earlier CHGNet relaxations")
    rep = sub.add_parser("report", help="write the Markdown report from the cache")
    rep.add_argument("--cache", default=str(CACHE))
    rep.add_argument("--out", default=str(REPORT))
    args = p.parse_args(argv)
    command = "OMP_NUM_THREADS=1 python -m studies.defect_thermodynamics.defect_thermodynamics " + (
        shlex.join(list(sys.argv[1:] if argv is None else argv))
    )
    if args.cmd == "import":
        print(import_records(CACHE, HERE.parents[1]), "records imported")
        return 0
    if args.cmd == "report":
        from studies.defect_thermodynamics.report import write_report

        write_report(Path(args.cache), Path(args.out))
        return 0
    jobs = job_list(
        args.groups, args.calc, args.starts, args.names,
        tilted=args.tilted, first_start=args.first_start,
    )  # fmt: skip
    if args.single:
        jobs = [("sevennet" if args.calc == "chgnet" else args.calc, "single", nm, k)
                for (_, m, nm, k) in jobs if m == "relax"]  # fmt: skip
        done = {
            (r["name"], r["k"])
            for r in read_cache(Path(args.cache))
            if r["calculator"] == "chgnet" and r["mode"] == "relax" and r["source"] == "this study"
        }
        jobs = [j for j in jobs if (j[2], j[3]) in done]
        if args.tilted:
            raise SystemExit("--single runs on the ideal-start (relax) geometries only")
        if args.single_db:
            jobs += [("sevennet", "single-db", f"nc5_x0_{s}", 0) for s in DB_NC_STATES]
    run(jobs, Path(args.cache), args.jobs, command)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
