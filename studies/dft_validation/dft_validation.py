"""DFT validation of the reference calculator (CHGNet) with CP2K PBE single points (issue 3).

The reference energies of the cluster expansion come from CHGNet (``MODEL.md``, section 5), a
universal potential trained on PBE data.  This module checks it against PBE itself on small
periodic cells where PBE is affordable on a workstation: 2x2x2 cubic CsPbBr3 supercells (40
atoms, 37 with a B vacancy) built by :func:`segsim.lattice.build_periodic` and
:func:`segsim.atomistic.to_atoms`, i.e. exactly the structures segsim uses.

Choice of geometry
------------------
All cells are **unrelaxed**, at the ideal cubic positions with ``a = 5.87`` Angstrom, and both
methods see **identical** geometries (single points).  Comparing energy differences between
Cd arrangements at fixed geometry isolates the difference between the two potential-energy
surfaces (CHGNet vs PBE electronic structure) from differences in the relaxation; relaxed
energies would mix in two different relaxation paths and are much more expensive in PBE.
Relaxation lowers all cells, and mostly those with the most Cd (small Cd2+ in a Pb-sized
octahedron), so the fixed-geometry differences are not the segregation energies used in
production; they validate the calculator, not the model.

Quantities compared (see :func:`validation_table`)
--------------------------------------------------
* **Cd-Cd arrangements** (Cs8Pb6Cd2Br24): ``E - E_ref`` with the body-diagonal pair (the
  farthest one in the 2x2x2 cell) as the reference; three pair distances ``a``,
  ``a sqrt 2``, ``a sqrt 3`` (minimum image).
* **Cd-Cd pair energy** ``E(2 Cd) + E(0 Cd) - 2 E(1 Cd)``: the same atoms on both sides, so
  no chemical potentials are needed; it is the interaction energy of the two Cd in the cell
  (periodic images included).
* The Cd substitution ``E(1 Cd) - E(0 Cd)`` is *not* composition balanced (Pb -> Cd); total
  energies of CP2K (pseudopotential, Cd with 12 and Pb with 4 valence electrons) and CHGNet
  have unrelated zeros per element, so it is not compared (both totals are in the table).
* **Vacancy-Cd binding** (Cs8Pb6Cd1Br22, one B vacancy with its trans Br pair removed):
  ``E(V next to Cd) - E(V far from Cd)``.  Same composition, so no chemical potentials
  (a vacancy formation energy would need mu(CsBr) and mu(PbBr2) and is not attempted).

CP2K setup (:data:`CP2K_SETTINGS`)
----------------------------------
The published setup: PBE, DZVP-MOLOPT-SR-GTH basis sets, GTH-PBE pseudopotentials (Cs q9,
Pb q4, Cd q12, Br q7, all present in Debian's ``/usr/share/cp2k``), plane-wave cutoff
400 Ry, REL_CUTOFF 60 Ry, EPS_DEFAULT 1e-12, EPS_SCF 1e-6, periodic XYZ, Gamma point only.
The 2x2x2 cell is 11.74 Angstrom on a side and folds the R point of the cubic cell (the
band-gap point of CsPbBr3) onto Gamma; with a PBE gap of ~1.5-2 eV, Gamma-only sampling is
adequate for energy *differences* between arrangements of the same cell (the k-point error
largely cancels), not for absolute total energies.

SCF: diagonalisation with Broyden mixing (alpha 0.3, 8 histories), atomic initial guess, no
smearing (closed-shell semiconductors).  Orbital transformation (OT) with the
FULL_SINGLE_INVERSE preconditioner was tried first (``scf_method="OT"`` still produces it):
in a 200 Ry smoke test on the pure cell both the DIIS and the CG minimisers stalled at an OT
gradient of ~1e-3 after 15-25 steps (still 0.1-0.3 Ha above the ground state), whereas
diagonalisation + Broyden converged to 1e-6 in 12 steps.
Cutoff check: at CUTOFF 600 Ry, E(cd2_axis) - E(cd2_body) changes by 0.02 meV (393.0 meV at
both cutoffs; ``studies/dft_validation/dft_validation_cutoff600.json``).
CP2K runs as one process (``cp2k.psmp -i in.inp``, no MPI launcher) with
``OMP_NUM_THREADS`` threads; its scratch files go to a work directory outside the repository
(default ``/tmp/dftval``).

Run in the background with ``python -m studies.dft_validation.dft_validation OUT.json``; results are
written after every cell and a rerun resumes (cells with identical settings and geometry are
skipped).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from ase import Atoms

from segsim import species
from segsim.atomistic import to_atoms
from segsim.lattice import build_periodic

#: Hartree in eV (CODATA 2018, as ``ase.units.Hartree``).
HARTREE_EV = 27.211386245988

#: Lattice constant of the validation cells (Angstrom): segsim's cubic CsPbBr3 value.
A_DEFAULT_ANGSTROM = 5.87

#: Basis set and pseudopotential (valence charge q) per element, from /usr/share/cp2k.
CP2K_KINDS: dict[str, tuple[str, str]] = {
    "Cs": ("DZVP-MOLOPT-SR-GTH-q9", "GTH-PBE-q9"),
    "Pb": ("DZVP-MOLOPT-SR-GTH-q4", "GTH-PBE-q4"),
    "Cd": ("DZVP-MOLOPT-SR-GTH-q12", "GTH-PBE-q12"),
    "Br": ("DZVP-MOLOPT-SR-GTH-q7", "GTH-PBE-q7"),
}

#: Production CP2K settings (see the module docstring).  ``scf_method`` is ``"DIAG"``
#: (diagonalisation + Broyden mixing, used) or ``"OT"`` (orbital transformation).
CP2K_SETTINGS: dict[str, Any] = {
    "xc": "PBE",
    "basis_file": "BASIS_MOLOPT",
    "potential_file": "GTH_POTENTIALS",
    "kinds": {k: list(v) for k, v in CP2K_KINDS.items()},
    "cutoff_ry": 400.0,
    "rel_cutoff_ry": 60.0,
    "ngrids": 4,
    "eps_default": 1.0e-12,
    "eps_scf": 1.0e-6,
    "max_scf": 100,
    "outer_max_scf": 10,
    "scf_method": "DIAG",
    "ot_minimizer": "CG",
    "ot_linesearch": "2PNT",
    "ot_preconditioner": "FULL_SINGLE_INVERSE",
    "mixing_alpha": 0.3,
    "nbroyden": 8,
    "scf_guess": "ATOMIC",
    "kpoints": "Gamma",
    "periodic": "XYZ",
}

#: Per-cell CP2K overrides.  The vacancy cells did not converge with plain Broyden mixing
#: (density residual oscillating at 1e-2..1 after 47 steps), so both of them (the only pair
#: compared with each other) use Fermi-Dirac smearing at 300 K with 20 added MOs and a
#: smaller mixing parameter; for a gapped system the smearing does not change the energy.
#: Keys absent from :data:`CP2K_SETTINGS` (``smear_kelvin``, ``added_mos``) default to off.
CELL_CP2K_OVERRIDES: dict[str, dict[str, Any]] = {
    name: {"smear_kelvin": 300.0, "added_mos": 20, "mixing_alpha": 0.1}
    for name in ("vac_cd_near", "vac_cd_far")
}

#: CHGNet settings recorded in the provenance (static single point, no relaxation).
CHGNET_SETTINGS: dict[str, Any] = {"model": "CHGNet pretrained (default)", "relax": False}

#: CHGNet relaxation settings (positions only, fixed cubic cell; method ``chgnet_relaxed``).
CHGNET_RELAX_SETTINGS: dict[str, Any] = {
    "model": "CHGNet pretrained (default)",
    "relax": "positions, fixed cell, FIRE",
    "fmax_eV_per_angstrom": 0.02,
    "max_steps": 1000,
}

#: Energy calculator: ``(atoms, workdir) -> {"energy_eV": float, ...}``.
EnergyFunction = Callable[[Atoms, Path], dict[str, Any]]


# --------------------------------------------------------------------------------------------
# Cells
# --------------------------------------------------------------------------------------------


def _site(ix: int, iy: int, iz: int, n: int = 2) -> int:
    """Return the site index of grid point ``(ix, iy, iz)`` of a periodic ``n**3`` lattice."""
    return int((ix * n + iy) * n + iz)


def validation_cells(a_angstrom: float = A_DEFAULT_ANGSTROM) -> list[tuple[str, Atoms, str]]:
    """Build the periodic validation cells (2x2x2 cubic supercells, ideal positions).

    Parameters
    ----------
    a_angstrom
        Pseudo-cubic lattice constant in Angstrom.

    Returns
    -------
    list of (str, ase.Atoms, str)
        ``(name, atoms, description)``, in this order (priority of the slow runs):
        ``cd2_axis``, ``cd2_face``, ``cd2_body`` (Cs8Pb6Cd2Br24 with the two Cd ``a``, ``a sqrt 2`` and ``a sqrt 3`` apart),
        ``pure`` (Cs8Pb8Br24), ``cd1`` (Cs8Pb7CdBr24), ``vac_cd_near``, ``vac_cd_far``
        (Cs8Pb6CdBr22: one B vacancy, with its trans Br pair along z removed, next to the Cd
        along x, or body-diagonal to it), ``cd4_rocksalt``, ``cd4_column``, ``cd4_layer``
        (Cs8Pb4Cd4Br24: x = 1/2 in rock-salt order, in columns, in (001) layers).  Each Atoms carries ``info["occupations"]``
        (B-lattice codes, site order of :func:`segsim.lattice.build_periodic`).
    """
    lat = build_periodic(2, a_angstrom)
    # Ordered by priority for the slow CP2K runs: the Cd-Cd arrangements first.
    specs: list[tuple[str, dict[int, int], str]] = [
        (
            "cd2_axis",
            {_site(0, 0, 0): species.CD, _site(1, 0, 0): species.CD},
            "two Cd nearest neighbours along x (d = a)",
        ),
        (
            "cd2_face",
            {_site(0, 0, 0): species.CD, _site(1, 1, 0): species.CD},
            "two Cd along a face diagonal (d = a sqrt 2)",
        ),
        (
            "cd2_body",
            {_site(0, 0, 0): species.CD, _site(1, 1, 1): species.CD},
            "two Cd along the body diagonal (d = a sqrt 3); reference arrangement",
        ),
        ("pure", {}, "CsPbBr3, no Cd (reference for the pair energy)"),
        ("cd1", {_site(0, 0, 0): species.CD}, "one Cd (x = 1/8)"),
        (
            "vac_cd_near",
            {_site(0, 0, 0): species.CD, _site(1, 0, 0): species.VAC},
            "B vacancy (z Br pair removed) next to the Cd along x",
        ),
        (
            "vac_cd_far",
            {_site(0, 0, 0): species.CD, _site(1, 1, 1): species.VAC},
            "B vacancy (z Br pair removed) body-diagonal to the Cd; reference",
        ),
        # x = 1/2: is B-site rock-salt order as favourable as CHGNet says (-35 meV per B site
        # in cell-relaxed 2^3 cells, the order a CE fitted to CHGNet builds in large NCs)?
        (
            "cd4_rocksalt",
            {_site(*v): species.CD for v in ((0, 0, 0), (1, 1, 0), (1, 0, 1), (0, 1, 1))},
            "x = 1/2, B-site rock-salt order (no Cd-Cd nearest neighbours)",
        ),
        (
            "cd4_column",
            {_site(*v): species.CD for v in ((0, 0, 0), (0, 0, 1), (1, 1, 0), (1, 1, 1))},
            "x = 1/2, Cd columns along z (two Cd-Cd nearest neighbours per Cd)",
        ),
        (
            "cd4_layer",
            {_site(*v): species.CD for v in ((0, 0, 0), (1, 0, 0), (0, 1, 0), (1, 1, 0))},
            (
                "x = 1/2, alternating Cd and Pb (001) planes (four Cd-Cd neighbours per Cd); "
                "reference"
            ),
        ),
    ]
    cells = []
    for name, subs, desc in specs:
        occ = lat.empty_occupations()
        occ[:] = species.PB
        for i, code in subs.items():
            occ[i] = code
        atoms = to_atoms(lat, occ)
        atoms.info["occupations"] = [int(c) for c in occ]
        cells.append((name, atoms, desc))
    return cells


def database_cells(db_path: str | Path, names: Sequence[str]) -> list[tuple[str, Atoms, str]]:
    """Return the relaxed geometries of reference-database rows as validation cells.

    PBE single points at the reference calculator's own minima: unlike the ideal cubic
    cells of :func:`validation_cells` they carry the octahedral tilts (for relaxations from
    rattled starts), which change arrangement energies by tens of meV per B site.

    Raises
    ------
    ValueError
        If a name is not in the database.
    """
    from segsim.training.reference import load_references

    by_name = {r["name"]: r for r in load_references(db_path)}
    missing = [n for n in names if n not in by_name]
    if missing:
        raise ValueError(f"not in {db_path}: {missing}")
    out = []
    for name in names:
        rec = by_name[name]
        atoms = rec["atoms"].copy()
        atoms.calc = None
        atoms.info["occupations"] = [int(c) for c in np.asarray(rec["occupations"])]
        relax = (rec.get("provenance") or {}).get("relax", {})
        desc = (
            f"{rec['calculator_kind']}-relaxed ({relax.get('n_starts', 1)} start(s), "
            f"rattle {relax.get('rattle_angstrom', 0.0)} A, cell relaxed: {rec['relax_cell']})"
        )
        out.append((name, atoms, desc))
    return out


def formula_table(results: dict[str, Any], methods: Sequence[str] = ("chgnet", "cp2k")) -> str:
    """Return energies relative to the first cell (by name) of each composition, meV per cell.

    For cell sets without fixed names (:func:`database_cells`).
    """
    cells = results.get("cells", {})
    groups: dict[str, list[str]] = {}
    for name in sorted(cells):
        groups.setdefault(cells[name]["formula"], []).append(name)
    head = "| cell | formula | " + " | ".join(f"{m} (meV/cell)" for m in methods) + " |"
    lines = [head, "|---|---|" + "---:|" * len(methods)]
    for formula, names in groups.items():
        ref = names[0]
        for name in names:
            vals = [
                _fmt(_diff(_energy(results, name, m), _energy(results, ref, m))) for m in methods
            ]
            lines.append(f"| {name} - {ref} | {formula} | " + " | ".join(vals) + " |")
    return "\n".join(lines) + "\n"


def geometry_hash(atoms: Atoms) -> str:
    """Return a short hash of numbers, positions (1e-6 Angstrom) and cell of a structure."""
    h = hashlib.sha256()
    h.update(np.asarray(atoms.numbers, dtype=np.int64).tobytes())
    h.update(np.round(atoms.positions, 6).astype(np.float64).tobytes())
    h.update(np.round(np.asarray(atoms.cell), 6).astype(np.float64).tobytes())
    return h.hexdigest()[:16]


# --------------------------------------------------------------------------------------------
# CP2K
# --------------------------------------------------------------------------------------------


def cp2k_input(
    atoms: Atoms,
    settings: dict[str, Any] | None = None,
    *,
    project: str = "segsim",
    data_dir: str = "/usr/share/cp2k",
) -> str:
    """Return the CP2K input text for a single-point PBE energy of ``atoms``.

    Parameters
    ----------
    atoms
        Periodic structure (orthorhombic or general cell; positions in Angstrom).
    settings
        Overrides of :data:`CP2K_SETTINGS` (e.g. ``{"cutoff_ry": 200}`` for a smoke test).
    project
        CP2K project name (prefix of its output files).
    data_dir
        Directory holding the basis-set and pseudopotential files.
    """
    s = {**CP2K_SETTINGS, **(settings or {})}
    kinds = s["kinds"]
    cell = np.asarray(atoms.cell)
    lines = [
        "&GLOBAL",
        f"  PROJECT {project}",
        "  RUN_TYPE ENERGY",
        "  PRINT_LEVEL MEDIUM",
        "&END GLOBAL",
        "&FORCE_EVAL",
        "  METHOD Quickstep",
        "  &DFT",
        f"    BASIS_SET_FILE_NAME {data_dir}/{s['basis_file']}",
        f"    POTENTIAL_FILE_NAME {data_dir}/{s['potential_file']}",
        "    CHARGE 0",
        "    MULTIPLICITY 1",
        "    &MGRID",
        f"      CUTOFF {float(s['cutoff_ry']):g}",
        f"      REL_CUTOFF {float(s['rel_cutoff_ry']):g}",
        f"      NGRIDS {int(s['ngrids'])}",
        "    &END MGRID",
        "    &QS",
        f"      EPS_DEFAULT {float(s['eps_default']):.1E}",
        "    &END QS",
        "    &SCF",
        f"      SCF_GUESS {s['scf_guess']}",
        f"      EPS_SCF {float(s['eps_scf']):.1E}",
        f"      MAX_SCF {int(s['max_scf'])}",
    ]
    if s.get("added_mos"):
        lines.append(f"      ADDED_MOS {int(s['added_mos'])}")
    if s.get("smear_kelvin"):
        lines += [
            "      &SMEAR ON",
            "        METHOD FERMI_DIRAC",
            f"        ELECTRONIC_TEMPERATURE [K] {float(s['smear_kelvin']):g}",
            "      &END SMEAR",
        ]
    if s["scf_method"] == "OT":
        lines += [
            "      &OT",
            f"        MINIMIZER {s['ot_minimizer']}",
            f"        LINESEARCH {s['ot_linesearch']}",
            f"        PRECONDITIONER {s['ot_preconditioner']}",
            "      &END OT",
            "      &OUTER_SCF",
            f"        EPS_SCF {float(s['eps_scf']):.1E}",
            f"        MAX_SCF {int(s['outer_max_scf'])}",
            "      &END OUTER_SCF",
        ]
    elif s["scf_method"] == "DIAG":
        lines += [
            "      &DIAGONALIZATION",
            "        ALGORITHM STANDARD",
            "      &END DIAGONALIZATION",
            "      &MIXING",
            "        METHOD BROYDEN_MIXING",
            f"        ALPHA {float(s['mixing_alpha']):g}",
            f"        NBROYDEN {int(s['nbroyden'])}",
            "      &END MIXING",
        ]
    else:
        raise ValueError(f"scf_method must be 'OT' or 'DIAG', got {s['scf_method']!r}")
    lines += [
        "    &END SCF",
        "    &XC",
        f"      &XC_FUNCTIONAL {s['xc']}",
        "      &END XC_FUNCTIONAL",
        "    &END XC",
        "  &END DFT",
        "  &SUBSYS",
        "    &CELL",
    ]
    for label, vec in zip("ABC", cell, strict=True):
        lines.append(f"      {label} {vec[0]:.8f} {vec[1]:.8f} {vec[2]:.8f}")
    lines += [f"      PERIODIC {s['periodic']}", "    &END CELL", "    &COORD"]
    for sym, pos in zip(atoms.get_chemical_symbols(), atoms.positions, strict=True):
        lines.append(f"      {sym} {pos[0]:.8f} {pos[1]:.8f} {pos[2]:.8f}")
    lines.append("    &END COORD")
    for sym in sorted(set(atoms.get_chemical_symbols())):
        basis, pot = kinds[sym]
        lines += [
            f"    &KIND {sym}",
            f"      BASIS_SET {basis}",
            f"      POTENTIAL {pot}",
            "    &END KIND",
        ]
    lines += ["  &END SUBSYS", "&END FORCE_EVAL", ""]
    return "\n".join(lines)


_ENERGY_RE = re.compile(r"ENERGY\|\s+Total FORCE_EVAL \( QS \) energy[^:]*:\s+(-?\d+\.\d+)")
_SCF_STEPS_RE = re.compile(r"SCF run converged in\s+(\d+) steps")
_VERSION_RE = re.compile(r"CP2K\|\s+version string:\s+(.+)")


def parse_cp2k_output(text: str) -> dict[str, Any]:
    """Parse the total energy (eV), SCF convergence and version from CP2K output text.

    Raises
    ------
    RuntimeError
        If no total energy is found or the SCF did not converge.
    """
    m = _ENERGY_RE.findall(text)
    if not m:
        raise RuntimeError("no 'ENERGY| Total FORCE_EVAL ( QS ) energy' line in CP2K output")
    if "SCF run NOT converged" in text:
        raise RuntimeError("CP2K SCF did not converge")
    steps = [int(x) for x in _SCF_STEPS_RE.findall(text)]
    version = _VERSION_RE.search(text)
    return {
        "energy_hartree": float(m[-1]),
        "energy_eV": float(m[-1]) * HARTREE_EV,
        "scf_steps": steps,
        "cp2k_version": version.group(1).strip() if version else None,
    }


def cp2k_energy_function(
    settings: dict[str, Any] | None = None,
    *,
    executable: str = "cp2k.psmp",
    omp_threads: int = 2,
) -> EnergyFunction:
    """Return an energy function running ``cp2k.psmp -i in.inp`` in a work directory.

    Parameters
    ----------
    settings
        Overrides of :data:`CP2K_SETTINGS`.
    executable
        CP2K binary (one process, OpenMP threads only, no MPI launcher).
    omp_threads
        ``OMP_NUM_THREADS`` for CP2K.
    """

    def run(atoms: Atoms, workdir: Path) -> dict[str, Any]:
        workdir.mkdir(parents=True, exist_ok=True)
        (workdir / "in.inp").write_text(cp2k_input(atoms, settings))
        env = {**os.environ, "OMP_NUM_THREADS": str(omp_threads)}
        with open(workdir / "out.log", "w") as out:
            proc = subprocess.run(
                [executable, "-i", "in.inp"],
                cwd=workdir,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env,
                check=False,
            )
        text = (workdir / "out.log").read_text(errors="replace")
        if proc.returncode != 0:
            raise RuntimeError(f"{executable} exited with {proc.returncode}; see {workdir}")
        res = parse_cp2k_output(text)
        res["workdir"] = str(workdir)
        return res

    return run


def chgnet_energy_function() -> EnergyFunction:
    """Return an energy function computing a CHGNet static single point (CPU)."""
    from chgnet.model.dynamics import CHGNetCalculator

    calc = CHGNetCalculator(use_device="cpu")

    def run(atoms: Atoms, workdir: Path) -> dict[str, Any]:
        at = atoms.copy()
        at.calc = calc
        return {
            "energy_eV": float(at.get_potential_energy()),
            "model_version": getattr(calc.model, "version", None),
        }

    return run


def chgnet_relaxed_energy_function(
    fmax_eV_per_angstrom: float = CHGNET_RELAX_SETTINGS["fmax_eV_per_angstrom"],
    max_steps: int = CHGNET_RELAX_SETTINGS["max_steps"],
) -> EnergyFunction:
    """Return an energy function relaxing positions (fixed cell) with CHGNet (FIRE, CPU).

    The relaxation starts from the ideal positions without symmetry breaking, so it keeps
    the cubic point symmetry of each arrangement (no octahedral tilts).
    """
    from ase.optimize import FIRE
    from chgnet.model.dynamics import CHGNetCalculator

    calc = CHGNetCalculator(use_device="cpu")

    def run(atoms: Atoms, workdir: Path) -> dict[str, Any]:
        at = atoms.copy()
        at.calc = calc
        opt = FIRE(at, logfile=None)
        converged = bool(opt.run(fmax=fmax_eV_per_angstrom, steps=max_steps))
        disp = np.linalg.norm(at.positions - atoms.positions, axis=1)
        return {
            "energy_eV": float(at.get_potential_energy()),
            "converged": converged,
            "n_steps": int(opt.nsteps),
            "max_displacement_angstrom": float(disp.max()),
            "model_version": getattr(calc.model, "version", None),
        }

    return run


def _versions() -> dict[str, Any]:
    """Collect software versions for the provenance record."""
    import ase

    out: dict[str, Any] = {"python": sys.version.split()[0], "ase": ase.__version__}
    for mod in ("chgnet", "torch"):
        try:
            out[mod] = __import__(mod).__version__
        except Exception:  # noqa: BLE001 - provenance only
            out[mod] = None
    out["cp2k_executable"] = shutil.which("cp2k.psmp")
    out["host"] = platform.node()
    return out


# --------------------------------------------------------------------------------------------
# Driver
# --------------------------------------------------------------------------------------------


def method_settings(
    method: str, cp2k_settings: dict[str, Any] | None = None, cell: str | None = None
) -> dict[str, Any]:
    """Return the full settings dict recorded (and compared on resume) for ``method``.

    For CP2K: :data:`CP2K_SETTINGS`, then the :data:`CELL_CP2K_OVERRIDES` of ``cell``, then
    ``cp2k_settings``.
    """
    if method == "cp2k":
        return {
            **CP2K_SETTINGS,
            **CELL_CP2K_OVERRIDES.get(cell or "", {}),
            **(cp2k_settings or {}),
        }
    if method == "chgnet":
        return dict(CHGNET_SETTINGS)
    if method == "chgnet_relaxed":
        return dict(CHGNET_RELAX_SETTINGS)
    raise ValueError(f"unknown method {method!r}")


def run_validation(
    out_json: str | Path,
    *,
    methods: Sequence[str] = ("chgnet", "cp2k"),
    resume: bool = True,
    a_angstrom: float = A_DEFAULT_ANGSTROM,
    cells: Sequence[str] | None = None,
    cp2k_settings: dict[str, Any] | None = None,
    workdir: str | Path = "/tmp/dftval",
    energy_functions: dict[str, EnergyFunction] | None = None,
    table_md: str | Path | None = None,
    log: Callable[[str], None] | None = print,
    cell_list: Sequence[tuple[str, Atoms, str]] | None = None,
    geometry: str = "ideal cubic positions (unrelaxed), identical for all methods",
) -> dict[str, Any]:
    """Compute single points for every validation cell and method, saving after each one.

    Parameters
    ----------
    out_json
        Results file; rewritten (atomically) after every finished cell and method.
    methods
        Methods to run, each for every cell in turn (``"chgnet"``, ``"cp2k"``, and the
        optional ``"chgnet_relaxed"``: CHGNet after relaxing positions at fixed cell).
    resume
        Keep the results already in ``out_json`` and skip a (cell, method) whose stored
        settings and geometry hash equal the current ones.  With False the file is rebuilt.
    a_angstrom
        Lattice constant of the cells.
    cells
        Names of the cells to run (default all of :func:`validation_cells`), in that order.
    cp2k_settings
        Overrides of :data:`CP2K_SETTINGS`.
    workdir
        Scratch root; each CP2K run uses ``workdir/<cell>_<settings hash>``.
    energy_functions
        Per method, a function ``(atoms, workdir) -> {"energy_eV": ...}`` replacing the
        default (for tests).  Defaults are built lazily, only for methods that have work.
    table_md
        If given, :func:`validation_markdown` is rewritten there together with ``out_json``.
    log
        Progress printer (None: silent).
    cell_list
        ``(name, atoms, description)`` cells to use instead of :func:`validation_cells`
        (e.g. :func:`database_cells`); their atoms need ``info["occupations"]``.
    geometry
        What the geometries are, for the provenance.

    Returns
    -------
    dict
        The results (the content of ``out_json``): ``{"provenance": ..., "cells": {name:
        {"description", "formula", "n_atoms", "geometry_hash", "occupations",
        "methods": {method: {"energy_eV", "wall_s", "settings", ...}}}}}``.
    """
    out_path = Path(out_json)
    results: dict[str, Any] = {"provenance": {}, "cells": {}}
    if resume and out_path.exists():
        results = json.loads(out_path.read_text())
        results.setdefault("cells", {})
    results["provenance"] = {
        "module": "studies.dft_validation.dft_validation",
        "a_angstrom": a_angstrom,
        "geometry": geometry,
        "versions": _versions(),
    }
    funcs: dict[str, EnergyFunction] = dict(energy_functions or {})
    all_cells = list(cell_list) if cell_list is not None else validation_cells(a_angstrom)
    if cells is not None:
        unknown = set(cells) - {c[0] for c in all_cells}
        if unknown:
            raise ValueError(f"unknown cells: {sorted(unknown)}")
    chosen = set(cells) if cells is not None else None
    say = log or (lambda _msg: None)

    todo = [c for c in all_cells if chosen is None or c[0] in chosen]
    for name, atoms, desc in todo:
        ghash = geometry_hash(atoms)
        entry = results["cells"].get(name)
        if entry is None or entry.get("geometry_hash") != ghash:
            entry = {"methods": {}}
        entry.update(
            description=desc,
            formula=atoms.get_chemical_formula(mode="metal"),
            n_atoms=len(atoms),
            geometry_hash=ghash,
            occupations=atoms.info["occupations"],
        )
        results["cells"][name] = entry
    # Methods outer: the fast ones (CHGNet) finish for every cell before the slow CP2K runs.
    for method in methods:
        for name, atoms, _desc in todo:
            settings = method_settings(method, cp2k_settings, name)
            entry = results["cells"][name]
            done = entry["methods"].get(method)
            if done is not None and done.get("settings") == settings:
                say(f"{name}/{method}: done, skipped")
                continue
            if method in funcs:
                func = funcs[method]
            elif method == "cp2k":
                func = cp2k_energy_function(settings)
            elif method == "chgnet":
                func = funcs[method] = chgnet_energy_function()
            elif method == "chgnet_relaxed":
                func = funcs[method] = chgnet_relaxed_energy_function()
            else:
                raise ValueError(f"unknown method {method!r}")
            shash = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:8]
            wd = Path(workdir) / f"{name}_{method}_{shash}"
            say(f"{name}/{method}: running ({len(atoms)} atoms) in {wd}")
            t0 = time.perf_counter()
            try:
                res = func(atoms, wd)
            except Exception as exc:  # noqa: BLE001 - record, go on with the other cells
                wall = time.perf_counter() - t0
                entry.setdefault("errors", {})[method] = {
                    "error": f"{type(exc).__name__}: {exc}",
                    "settings": settings,
                    "wall_s": round(wall, 2),
                }
                say(f"{name}/{method}: FAILED after {wall:.1f} s: {exc}")
                _save(out_path, results, table_md)
                continue
            wall = time.perf_counter() - t0
            entry.get("errors", {}).pop(method, None)
            entry["methods"][method] = {
                **res,
                "wall_s": round(wall, 2),
                "settings": settings,
                "finished": time.strftime("%Y-%m-%dT%H:%M:%S"),
            }
            say(f"{name}/{method}: E = {res['energy_eV']:.6f} eV in {wall:.1f} s")
            _save(out_path, results, table_md)
    _save(out_path, results, table_md)
    return results


def _save(out_path: Path, results: dict[str, Any], table_md: str | Path | None) -> None:
    """Write the results file and, if requested, the markdown table."""
    _write_json(out_path, results)
    if table_md is not None:
        Path(table_md).write_text(validation_markdown(results))


def _write_json(path: Path, data: dict[str, Any]) -> None:
    """Write ``data`` to ``path`` atomically (temporary file + rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data, indent=1, sort_keys=False) + "\n")
    tmp.replace(path)


# --------------------------------------------------------------------------------------------
# Table
# --------------------------------------------------------------------------------------------

#: Relative-energy groups: (reference cell, cells of the same composition).
ARRANGEMENT_GROUPS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("cd2_body", ("cd2_axis", "cd2_face", "cd2_body")),
    ("vac_cd_far", ("vac_cd_near", "vac_cd_far")),
    ("cd4_layer", ("cd4_rocksalt", "cd4_column", "cd4_layer")),
)


def _energy(results: dict[str, Any], cell: str, method: str) -> float | None:
    """Return the stored energy (eV) of ``cell`` with ``method``, or None."""
    try:
        return float(results["cells"][cell]["methods"][method]["energy_eV"])
    except (KeyError, TypeError):
        return None


def _fmt(x: float | None) -> str:
    """Format an energy in meV (or a dash)."""
    return "-" if x is None else f"{1000.0 * x:+.1f}"


def _diff(a: float | None, b: float | None) -> float | None:
    """Return ``a - b`` or None if either is missing."""
    return None if a is None or b is None else a - b


def _quantities(results: dict[str, Any], method: str) -> list[tuple[str, str, float | None]]:
    """Return ``(quantity, description, value in eV)`` rows of one method (see the table)."""
    cells = results.get("cells", {})
    rows: list[tuple[str, str, float | None]] = []
    for ref, group in ARRANGEMENT_GROUPS:
        for cell in group:
            if cell not in cells and ref not in cells:
                continue
            desc = cells.get(cell, {}).get("description", "")
            val = _diff(_energy(results, cell, method), _energy(results, ref, method))
            rows.append((f"{cell} - {ref}", desc, val))
    for cell in ("cd2_axis", "cd2_face", "cd2_body"):
        if cell not in cells:
            continue
        e2, e0, e1 = (_energy(results, c, method) for c in (cell, "pure", "cd1"))
        val = None if e2 is None or e0 is None or e1 is None else e2 + e0 - 2.0 * e1
        rows.append((f"pair {cell}", "E(2Cd) + E(pure) - 2 E(1Cd)", val))
    return rows


def validation_table(
    results: dict[str, Any],
    methods: tuple[str, str] = ("chgnet", "cp2k"),
    extra_methods: Sequence[str] = ("chgnet_relaxed",),
) -> str:
    """Return a markdown table comparing CHGNet and PBE energy differences.

    Parameters
    ----------
    results
        The dict written by :func:`run_validation`.
    methods
        ``(tested, reference)`` method names.
    extra_methods
        Further methods shown in extra columns (without a difference column) when at least
        one cell has them.

    Returns
    -------
    str
        Markdown: one row per compared quantity (meV per cell): the arrangement energies
        relative to the reference arrangement of the same composition, the Cd-Cd pair
        energies ``E(2 Cd) + E(0 Cd) - 2 E(1 Cd)`` and the vacancy-Cd binding, with the
        difference tested - reference; then the total energies and wall times per cell.
        Missing results show as a dash.
    """
    mt, mr = methods
    cells = results.get("cells", {})
    extras = [m for m in extra_methods if any(m in e.get("methods", {}) for e in cells.values())]
    cols = [_quantities(results, m) for m in (mt, mr, *extras)]
    head = f"| quantity | description | {mt} (meV/cell) | {mr} (meV/cell) | {mt} - {mr} (meV) |"
    head += "".join(f" {m} (meV/cell) |" for m in extras)
    head += "\n|---|---|---:|---:|---:|" + "---:|" * len(extras) + "\n"
    body = ""
    for i, (q, d, a) in enumerate(cols[0]):
        b = cols[1][i][2]
        body += f"| {q} | {d} | {_fmt(a)} | {_fmt(b)} | {_fmt(_diff(a, b))} |"
        body += "".join(f" {_fmt(c[i][2])} |" for c in cols[2:]) + "\n"
    shown = (mt, mr, *extras)
    tot = "\n| cell | formula | atoms | " + " | ".join(f"E {m} (eV) | wall {m} (s)" for m in shown)
    tot += " |\n|---|---|---:|" + "---:|---:|" * len(shown) + "\n"
    for name, entry in cells.items():
        parts = []
        for m in shown:
            r = entry.get("methods", {}).get(m)
            parts += ["-", "-"] if r is None else [f"{r['energy_eV']:.4f}", f"{r['wall_s']:.0f}"]
        tot += f"| {name} | {entry.get('formula', '')} | {entry.get('n_atoms', '')} | "
        tot += " | ".join(parts) + " |\n"
    return head + body + tot


def validation_markdown(results: dict[str, Any]) -> str:
    """Return the markdown report: title, setup, definitions and :func:`validation_table`."""
    cp2k = next(
        (
            e["methods"]["cp2k"]
            for e in results.get("cells", {}).values()
            if "cp2k" in e.get("methods", {})
        ),
        None,
    )
    s = (cp2k or {}).get("settings") or method_settings("cp2k")
    kinds = ", ".join(f"{el} {b}/{p}" for el, (b, p) in s["kinds"].items())
    a = results.get("provenance", {}).get("a_angstrom", A_DEFAULT_ANGSTROM)
    text = [
        "# DFT validation of CHGNet: CP2K PBE single points",
        "",
        (
            "Generated by `python -m studies.dft_validation.dft_validation` (see its module docstring)"
            " from `dft_validation.json`."
        ),
        "",
        (
            f"* Cells: 2x2x2 periodic cubic supercells, ideal (unrelaxed) positions at a = {a} A,"
            " identical for both methods (built by `build_periodic` + `to_atoms`)."
        ),
        f"* CP2K: {s['xc']}, {kinds}; CUTOFF {s['cutoff_ry']:g} Ry, REL_CUTOFF"
        f" {s['rel_cutoff_ry']:g} Ry, EPS_DEFAULT {s['eps_default']:g}, EPS_SCF"
        f" {s['eps_scf']:g}, SCF {s['scf_method']}"
        + (" (Broyden mixing)" if s["scf_method"] == "DIAG" else "")
        + f", Gamma point only, periodic {s['periodic']}.",
        "* CHGNet: pretrained model, static single point on CPU.",
        (
            "* `X - ref`: energy of an arrangement relative to the reference arrangement of the"
            " same composition (meV per cell).  `pair`: E(2 Cd) + E(pure) - 2 E(1 Cd), the"
            " interaction of the two Cd including their periodic images (same atoms on both"
            " sides, no chemical potentials).  `vac_cd_near - vac_cd_far`: vacancy-Cd binding at"
            " fixed composition (both vacancy cells: CP2K with Fermi-Dirac smearing at 300 K)."
            "  `chgnet_relaxed`: CHGNet after relaxing positions at fixed cell (FIRE, fmax 0.02"
            " eV/A, no symmetry breaking)."
        ),
        "",
    ]
    geometry = results.get("provenance", {}).get("geometry", "")
    if geometry and not geometry.startswith("ideal"):
        text[4] = f"* Cells: {geometry}; the same atoms for every method."
        return "\n".join(text) + "\n" + formula_table(results)
    return "\n".join(text) + "\n" + validation_table(results)


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry: ``python -m studies.dft_validation.dft_validation OUT.json``."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("out_json", help="results file (resumed if it exists)")
    p.add_argument("--methods", default="chgnet,cp2k", help="comma-separated methods")
    p.add_argument("--cells", default=None, help="comma-separated cell names (default all)")
    p.add_argument(
        "--from-db",
        default=None,
        help="take the relaxed geometries of these --cells from a segsim train database",
    )
    p.add_argument("--no-resume", action="store_true", help="start a fresh results file")
    p.add_argument("--cutoff-ry", type=float, default=None, help="override CUTOFF (Ry)")
    p.add_argument("--rel-cutoff-ry", type=float, default=None, help="override REL_CUTOFF (Ry)")
    p.add_argument("--workdir", default="/tmp/dftval", help="CP2K scratch root")
    p.add_argument("--table", default=None, help="also write the markdown report here")
    p.add_argument(
        "--table-only", action="store_true", help="only (re)write the report from OUT.json"
    )
    args = p.parse_args(argv)
    if args.table_only:
        res = json.loads(Path(args.out_json).read_text())
        report = validation_markdown(res)
        if args.table:
            Path(args.table).write_text(report)
        print(report)
        return 0
    overrides: dict[str, Any] = {}
    if args.cutoff_ry is not None:
        overrides["cutoff_ry"] = args.cutoff_ry
    if args.rel_cutoff_ry is not None:
        overrides["rel_cutoff_ry"] = args.rel_cutoff_ry

    table_path = Path(args.table) if args.table else None

    def log(msg: str) -> None:
        print(time.strftime("%H:%M:%S"), msg, flush=True)

    extra: dict[str, Any] = {}
    if args.from_db:
        if not args.cells:
            p.error("--from-db needs --cells (row names)")
        extra["cell_list"] = database_cells(args.from_db, args.cells.split(","))
        extra["geometry"] = f"relaxed geometries of {Path(args.from_db).name} rows"
    res = run_validation(
        args.out_json,
        methods=tuple(m for m in args.methods.split(",") if m),
        resume=not args.no_resume,
        cells=args.cells.split(",") if args.cells else None,
        cp2k_settings=overrides or None,
        workdir=args.workdir,
        table_md=table_path,
        log=log,
        **extra,
    )
    print(validation_markdown(res))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
