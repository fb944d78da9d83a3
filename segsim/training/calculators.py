"""Reference calculators for the training pipeline: an explicit registry of ASE calculators.

Every kind of reference calculator is an entry of :data:`CALCULATOR_KINDS`; the pipeline
(:mod:`segsim.training.reference`) builds one with :func:`make_calculator`, which returns the
ASE calculator together with its *provenance*: a JSON-serialisable dict (kind, complete
settings, program and model versions) that is stored with every result and hashed to decide
which stored results can be reused.

Kinds
-----
``chgnet`` (default)
    The pretrained CHGNet universal potential (trained on PBE/PBE+U Materials Project data;
    its weights ship with the PyPI package and load offline) through
    :class:`chgnet.model.dynamics.CHGNetCalculator` on the CPU.  torch and chgnet are the
    optional extra ``segsim[train]`` and are imported only when a calculator is built.
    Settings: ``model_name`` (CHGNet model version, default ``"0.3.0"``), ``device``
    (default ``"cpu"``), ``n_threads`` (torch intra-op threads, default None: torch's
    choice).  About 0.45 s per energy + forces of a 775-atom NC on 2 CPU cores.
``sevennet``
    A pretrained SevenNet universal potential through :class:`sevenn.calculator.SevenNetCalculator`
    on the CPU.  The PyPI wheel of ``sevenn`` (0.13) carries its checkpoints, so it loads
    offline; the default ``model`` is ``"7net-0"`` (SevenNet-0, trained on MPtrj, the
    Materials Project PBE/PBE+U data CHGNet was trained on, with a different architecture:
    a committee member whose errors are not CHGNet's).  ``modal`` selects the fidelity of a
    multi-fidelity checkpoint (``"7net-mf-0"`` needs e.g. ``"PBE"``; None for single-fidelity
    models).  Part of ``segsim[train]``.  About 0.4 s per energy + forces of a 132-atom cell
    on one core (3.4 times CHGNet).
``cp2k``
    :class:`ase.calculators.cp2k.CP2K`: PBE with the DZVP-MOLOPT-SR-GTH basis and GTH-PBE
    pseudopotentials (the setup of the published DFT study).  ASE drives CP2K in *shell mode*
    (``cp2k.psmp -s``; Debian's ``/usr/bin/cp2k_shell`` is the same binary started in shell
    mode), one long-lived process per calculator.  See :data:`CP2K_DEFAULTS` for the settings.
    Building the calculator starts that process.  Periodic cells use CP2K's default
    (periodic) Poisson solver and the Gamma point only (add k-points with ``inp``).
    Non-periodic clusters (``atoms.pbc`` all False, e.g. NCs from
    ``segsim.atomistic.to_atoms(..., vacuum_angstrom=...)``) get, with
    ``poisson_solver="auto"``, ``&POISSON PERIODIC NONE, PSOLVER MT`` (Martyna-Tuckerman):
    that solver needs a box about twice the extent of the electron density, i.e. a vacuum
    (per side) at least about half the cluster's edge; ``stress_tensor`` must then stay False
    (no stress for a cluster).
``standin``
    :class:`StandinCalculator`, a cheap analytic pair potential (Morse pairs per species pair
    with a shifted-force cutoff) with consistent energy, forces and stress.  It is no physical
    model of the perovskite; it makes the whole pipeline run in tests in seconds without torch
    or CP2K and gives different energies for different Cd arrangements (Cd-Br and Pb-Br bonds
    have different equilibrium lengths).

Settings are validated: a setting that the kind does not know is an error that names the
known ones.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import os
import shlex
import shutil
import subprocess
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from ase import Atoms
from ase.calculators.calculator import Calculator, PropertyNotImplementedError, all_changes
from ase.neighborlist import neighbor_list
from ase.units import Rydberg

__all__ = [
    "CALCULATOR_KINDS",
    "CHGNET_DEFAULTS",
    "CP2K_DEFAULTS",
    "DEFAULT_KIND",
    "SEVENNET_DEFAULTS",
    "STANDIN_DEFAULTS",
    "CalculatorKind",
    "MissingDependencyError",
    "StandinCalculator",
    "calculator_provenance",
    "make_calculator",
    "resolve_settings",
]

#: Kind used when none is given.
DEFAULT_KIND = "chgnet"

#: Message of the error raised when the optional training extra is missing.
_TRAIN_EXTRA_HINT = "install segsim[train] (pip install 'segsim[train]') for torch and chgnet"


class MissingDependencyError(ImportError):
    """An optional dependency of a calculator kind is not installed."""


# --------------------------------------------------------------------------------------------
# standin: Morse pairs with a shifted-force cutoff
# --------------------------------------------------------------------------------------------

#: Default Morse parameters of the stand-in potential, per (sorted) element pair:
#: ``(D_eV, alpha_per_angstrom, r0_angstrom)``, ``phi(r) = D [(1 - exp(-alpha (r - r0)))^2 - 1]``.
#: B-Br bonds sit at ``a / 2`` (Pb-Br 2.95, Cd-Br 2.75 Angstrom: Cd is smaller), Cs-Br and
#: Br-Br near ``a / sqrt(2)`` (4.15 Angstrom for ``a = 5.87``).  The weak Cs-B repulsion
#: (``sqrt(3) a / 2 = 5.08`` Angstrom, inside ``r0``; stronger for Cd) makes even unrelaxed
#: energies depend on where Cd sits (B sites at the surface have fewer Cs neighbours).  Pairs
#: not listed do not interact.
STANDIN_PAIRS: dict[tuple[str, str], tuple[float, float, float]] = {
    ("Br", "Pb"): (1.0, 1.4, 2.95),
    ("Br", "Cd"): (1.0, 1.6, 2.75),
    ("Br", "Cs"): (0.2, 1.2, 4.0),
    ("Br", "Br"): (0.1, 1.2, 4.2),
    ("Cs", "Pb"): (0.05, 1.0, 5.4),
    ("Cd", "Cs"): (0.1, 1.0, 5.4),
}

#: Default settings of the ``standin`` kind.
STANDIN_DEFAULTS: dict[str, Any] = {
    "cutoff_angstrom": 5.6,
    "pairs": {f"{a}-{b}": list(p) for (a, b), p in STANDIN_PAIRS.items()},
}


def _pair_key(a: str, b: str) -> tuple[str, str]:
    s = sorted((a, b))
    return (s[0], s[1])


class StandinCalculator(Calculator):
    """Analytic pair potential: Morse pairs per element pair with a shifted-force cutoff.

    For a pair at distance ``r < r_c`` (``r_c`` = ``cutoff_angstrom``) the energy is

    ``phi_sf(r) = phi(r) - phi(r_c) - (r - r_c) phi'(r_c)``,
    ``phi(r) = D [(1 - exp(-alpha (r - r0)))^2 - 1]``,

    so energy and force go continuously to zero at the cutoff.  Neighbours come from
    :func:`ase.neighborlist.neighbor_list` (linear in the number of atoms); periodic
    boundaries follow ``atoms.pbc``.  Implemented: ``energy``, ``free_energy``, ``forces``
    and, for fully periodic cells, ``stress``.

    Parameters
    ----------
    pairs
        Morse parameters per pair, ``{"Br-Pb": (D_eV, alpha_per_angstrom, r0_angstrom), ...}``
        (element order in the key does not matter); default :data:`STANDIN_PAIRS`.
    cutoff_angstrom
        Pair cutoff in Angstrom.
    **kwargs
        Passed to :class:`ase.calculators.calculator.Calculator`.

    Attributes
    ----------
    n_calculations
        Number of times :meth:`calculate` ran (for tests and bookkeeping).
    """

    implemented_properties = ("energy", "free_energy", "forces", "stress")

    def __init__(
        self,
        pairs: Mapping[str, Any] | None = None,
        cutoff_angstrom: float = 5.6,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if not cutoff_angstrom > 0:
            raise ValueError(f"cutoff_angstrom must be positive, got {cutoff_angstrom}")
        self.cutoff_angstrom = float(cutoff_angstrom)
        table: dict[tuple[str, str], tuple[float, float, float]] = {}
        if pairs is None:
            table = dict(STANDIN_PAIRS)
        else:
            for key, par in pairs.items():
                elems = key.split("-") if isinstance(key, str) else list(key)
                if len(elems) != 2 or len(par) != 3:
                    raise ValueError(f"bad stand-in pair {key!r}: {par!r}")
                table[_pair_key(elems[0], elems[1])] = tuple(float(p) for p in par)  # type: ignore[assignment]
        self.pairs = table
        self.n_calculations = 0

    def _pair_terms(
        self, symbols: np.ndarray, i: np.ndarray, j: np.ndarray, r: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Return ``phi_sf(r)`` and ``d phi_sf / dr`` (eV, eV/Angstrom) for the listed pairs."""
        energy = np.zeros_like(r)
        d_energy = np.zeros_like(r)
        rc = self.cutoff_angstrom
        si, sj = symbols[i], symbols[j]
        for (a, b), (depth, alpha, r0) in self.pairs.items():
            mask = ((si == a) & (sj == b)) | ((si == b) & (sj == a))
            if not mask.any():
                continue
            rr = r[mask]
            ex = np.exp(-alpha * (rr - r0))
            ex_c = np.exp(-alpha * (rc - r0))
            phi = depth * ((1.0 - ex) ** 2 - 1.0)
            dphi = 2.0 * depth * alpha * ex * (1.0 - ex)
            phi_c = depth * ((1.0 - ex_c) ** 2 - 1.0)
            dphi_c = 2.0 * depth * alpha * ex_c * (1.0 - ex_c)
            energy[mask] = phi - phi_c - (rr - rc) * dphi_c
            d_energy[mask] = dphi - dphi_c
        return energy, d_energy

    def calculate(
        self,
        atoms: Atoms | None = None,
        properties: list[str] | tuple[str, ...] = ("energy",),
        system_changes: list[str] = all_changes,
    ) -> None:
        """Compute energy, forces and (periodic cells) stress of ``atoms``."""
        super().calculate(atoms, list(properties), system_changes)
        at = self.atoms
        assert at is not None
        self.n_calculations += 1
        symbols = np.asarray(at.get_chemical_symbols())
        # Each pair appears twice (i, j) and (j, i): halve the energy and the virial.
        i, j, d, vec = neighbor_list("ijdD", at, self.cutoff_angstrom, self_interaction=False)
        phi, dphi = self._pair_terms(symbols, i, j, d)
        energy = 0.5 * float(phi.sum())
        # F_i = -sum_j dphi/dr * (r_i - r_j) / r = +sum_j dphi/dr * D_ij / r, D_ij = r_j - r_i.
        fvec = (dphi / np.where(d > 0, d, 1.0))[:, None] * vec
        forces = np.zeros((len(at), 3))
        np.add.at(forces, i, fvec)
        self.results["energy"] = energy
        self.results["free_energy"] = energy
        self.results["forces"] = forces
        if at.pbc.all():
            # sigma_ab = (1 / V) sum_pairs dphi/dr D_a D_b / r  (ASE sign: dE/d strain / V).
            virial = 0.5 * np.einsum("pa,pb->ab", fvec, vec)
            s = virial / at.get_volume()
            self.results["stress"] = np.array(
                [s[0, 0], s[1, 1], s[2, 2], s[1, 2], s[0, 2], s[0, 1]]
            )
        elif "stress" in properties:
            raise PropertyNotImplementedError("stand-in stress needs a fully periodic cell")


def _build_standin(settings: dict[str, Any]) -> Calculator:
    return StandinCalculator(pairs=settings["pairs"], cutoff_angstrom=settings["cutoff_angstrom"])


def _standin_provenance(settings: dict[str, Any]) -> dict[str, Any]:
    return {"model": "Morse pairs, shifted-force cutoff (segsim stand-in)"}


# --------------------------------------------------------------------------------------------
# chgnet
# --------------------------------------------------------------------------------------------

#: Default settings of the ``chgnet`` kind.
CHGNET_DEFAULTS: dict[str, Any] = {"model_name": "0.3.0", "device": "cpu", "n_threads": None}

#: Default settings of the ``sevennet`` kind.
SEVENNET_DEFAULTS: dict[str, Any] = {"model": "7net-0", "modal": None, "device": "cpu"}


def limit_torch_threads(n: int) -> None:
    """Give torch ``n`` threads in this process, if torch is installed (worker processes).

    Kind-agnostic, unlike CHGNet's ``n_threads`` setting: the stand-in calculator and CP2K
    need no torch, and their settings do not take that key.
    """
    try:
        import torch
    except ImportError:
        return
    torch.set_num_threads(n)


def _require(module: str) -> Any:
    """Import an optional module or raise :class:`MissingDependencyError` with the hint."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingDependencyError(
            f"this calculator needs {module!r}, which is not installed: {_TRAIN_EXTRA_HINT}"
        ) from exc


def _dist_version(name: str) -> str:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError as exc:
        raise MissingDependencyError(
            f"this calculator needs {name!r}, which is not installed: {_TRAIN_EXTRA_HINT}"
        ) from exc


def _build_chgnet(settings: dict[str, Any]) -> Calculator:
    with warnings.catch_warnings():
        # chgnet, pymatgen and torch emit deprecation / user warnings on import and load.
        warnings.simplefilter("ignore")
        _require("chgnet")
        torch = _require("torch")
        model_mod = importlib.import_module("chgnet.model")
        dyn_mod = importlib.import_module("chgnet.model.dynamics")
        if settings["n_threads"] is not None:
            torch.set_num_threads(int(settings["n_threads"]))
        model = model_mod.CHGNet.load(
            model_name=str(settings["model_name"]), use_device=settings["device"], verbose=False
        )
        return dyn_mod.CHGNetCalculator(
            model, use_device=settings["device"], on_isolated_atoms="error"
        )


def _build_sevennet(settings: dict[str, Any]) -> Calculator:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        _require("torch")
        calc_mod = _require("sevenn.calculator")
        kwargs = {"device": settings["device"]}
        if settings["modal"] is not None:
            kwargs["modal"] = str(settings["modal"])
        return calc_mod.SevenNetCalculator(str(settings["model"]), **kwargs)


def _torch_model_provenance(model: str, package: str, device: str) -> dict[str, Any]:
    """Provenance of a pretrained torch potential: model text, package and torch versions."""
    return {
        "model": model,
        f"{package}_version": _dist_version(package),
        "torch_version": _dist_version("torch"),
        "device": device,
    }


def _sevennet_provenance(settings: dict[str, Any]) -> dict[str, Any]:
    model = f"SevenNet {settings['model']} (pretrained checkpoint shipped in the sevenn wheel)"
    return _torch_model_provenance(model, "sevenn", settings["device"])


def _chgnet_provenance(settings: dict[str, Any]) -> dict[str, Any]:
    model = f"CHGNet {settings['model_name']} (pretrained, Materials Project PBE/PBE+U)"
    return _torch_model_provenance(model, "chgnet", settings["device"])


# --------------------------------------------------------------------------------------------
# cp2k
# --------------------------------------------------------------------------------------------

#: CP2K data directory of the Debian package.
CP2K_DATA_DIR = "/usr/share/cp2k"

#: OT minimisers the ``ot_minimizer`` setting allows.
CP2K_OT_MINIMIZERS: tuple[str, ...] = ("DIIS", "CG")

#: Default settings of the ``cp2k`` kind.
#:
#: * ``command``: shell-mode command (ASE's CP2K calculator needs CP2K's shell mode):
#:   ``cp2k_shell`` (Debian) or e.g. ``"env OMP_NUM_THREADS=2 cp2k.psmp -s"``;
#: * ``version_command``: prints the CP2K version for the provenance;
#: * ``xc``, ``basis_set``, ``pseudo_potential``: PBE, DZVP-MOLOPT-SR-GTH, GTH-PBE (the
#:   MOLOPT-SR aliases and the GTH-PBE aliases pick matching valences: Cs q9, Pb q4, Cd q12,
#:   Br q7);
#: * ``basis_set_file``, ``potential_file``: absolute paths under :data:`CP2K_DATA_DIR`;
#: * ``cutoff_ry``, ``rel_cutoff_ry``: plane-wave cutoff of the finest grid and the relative
#:   cutoff, in Rydberg;
#: * ``max_scf``, ``eps_scf``: SCF iterations (inner loop with OT) and convergence;
#: * ``ot``: orbital transformation (FULL_SINGLE_INVERSE preconditioner, ``outer_max_scf``
#:   outer loops) -- robust for these closed-shell semiconductors; False uses CP2K's default
#:   diagonalisation;
#: * ``ot_minimizer``: the OT minimiser, one of :data:`CP2K_OT_MINIMIZERS`: ``DIIS`` (fast
#:   near convergence) or ``CG`` (conjugate gradients with a two-point line search: slower
#:   per step, but it does not stall where DIIS creeps, as on the 132-atom Cd saddle, whose
#:   DIIS gradient stayed at 1.5e-5);
#: * ``charge`` (0: the structures are charge-balanced) and ``multiplicity`` (1: closed shell);
#: * ``poisson_solver``: ``"auto"`` (clusters: non-periodic MT solver; periodic cells:
#:   default) or None (CP2K's default);
#: * ``stress_tensor``: analytic stress (needed to relax a periodic cell; keep False for
#:   clusters);
#: * ``directory``: where CP2K writes its input, output and restart files (None: current
#:   directory); ``print_level``: CP2K's global print level;
#: * ``inp``: extra CP2K input template merged into the generated input (e.g. k-points).
CP2K_DEFAULTS: dict[str, Any] = {
    "command": "cp2k_shell",
    "version_command": "cp2k.psmp --version",
    "xc": "PBE",
    "basis_set": "DZVP-MOLOPT-SR-GTH",
    "basis_set_file": f"{CP2K_DATA_DIR}/BASIS_MOLOPT",
    "pseudo_potential": "GTH-PBE",
    "potential_file": f"{CP2K_DATA_DIR}/GTH_POTENTIALS",
    "cutoff_ry": 400.0,
    "rel_cutoff_ry": 50.0,
    "max_scf": 50,
    "eps_scf": 1.0e-6,
    "ot": True,
    "ot_minimizer": "DIIS",
    "outer_max_scf": 10,
    "charge": 0,
    "multiplicity": 1,
    "poisson_solver": "auto",
    "stress_tensor": False,
    "directory": None,
    "print_level": "LOW",
    "inp": "",
}


def _validate_cp2k(settings: Mapping[str, Any]) -> None:
    """Raise ValueError for an ``ot_minimizer`` outside :data:`CP2K_OT_MINIMIZERS`."""
    minimizer = settings.get("ot_minimizer", "DIIS")
    if not isinstance(minimizer, str) or minimizer.upper() not in CP2K_OT_MINIMIZERS:
        raise ValueError(
            f"cp2k setting ot_minimizer: {minimizer!r} is not one of "
            f"{', '.join(CP2K_OT_MINIMIZERS)}"
        )


def cp2k_input_template(settings: Mapping[str, Any]) -> str:
    """Return the CP2K input template for the settings ASE's CP2K calculator has no keyword for.

    That is ``REL_CUTOFF``, ``EPS_SCF`` and the OT / outer-SCF sections; ``settings["inp"]``
    is appended (CP2K merges repeated sections).

    Parameters
    ----------
    settings
        Complete ``cp2k`` settings (:data:`CP2K_DEFAULTS` merged with the user's).
    """
    scf = [f"      EPS_SCF {float(settings['eps_scf']):.3e}"]
    if settings["ot"]:
        _validate_cp2k(settings)
        minimizer = str(settings["ot_minimizer"]).upper()
        scf += [
            "      &OT ON",
            f"        MINIMIZER {minimizer}",
            *(["        LINESEARCH 2PNT"] if minimizer == "CG" else []),
            "        PRECONDITIONER FULL_SINGLE_INVERSE",
            "      &END OT",
            "      &OUTER_SCF ON",
            f"        MAX_SCF {int(settings['outer_max_scf'])}",
            f"        EPS_SCF {float(settings['eps_scf']):.3e}",
            "      &END OUTER_SCF",
        ]
    lines = [
        "&FORCE_EVAL",
        "  &DFT",
        "    &MGRID",
        f"      REL_CUTOFF [Ry] {float(settings['rel_cutoff_ry']):.6g}",
        "    &END MGRID",
        "    &SCF",
        *scf,
        "    &END SCF",
        "  &END DFT",
        "&END FORCE_EVAL",
    ]
    extra = str(settings["inp"] or "").strip()
    return "\n".join(lines) + ("\n" + extra if extra else "") + "\n"


def cp2k_parameters(settings: Mapping[str, Any]) -> dict[str, Any]:
    """Return the keyword arguments of :class:`ase.calculators.cp2k.CP2K` for the settings.

    Parameters
    ----------
    settings
        Complete ``cp2k`` settings (:data:`CP2K_DEFAULTS` merged with the user's).
    """
    directory = settings["directory"]
    label = "cp2k" if directory is None else os.path.join(os.fspath(directory), "cp2k")
    return {
        "command": str(settings["command"]),
        "label": label,
        "xc": str(settings["xc"]),
        "basis_set": str(settings["basis_set"]),
        "basis_set_file": str(settings["basis_set_file"]),
        "pseudo_potential": str(settings["pseudo_potential"]),
        "potential_file": str(settings["potential_file"]),
        "cutoff": float(settings["cutoff_ry"]) * Rydberg,
        "max_scf": int(settings["max_scf"]),
        "charge": int(settings["charge"]),
        "multiplicity": settings["multiplicity"],
        "poisson_solver": settings["poisson_solver"],
        "stress_tensor": bool(settings["stress_tensor"]),
        "print_level": str(settings["print_level"]),
        "inp": cp2k_input_template(settings),
    }


def _cp2k_executable(command: str) -> str:
    words = shlex.split(command)
    exe = next((w for w in words if "cp2k" in os.path.basename(w)), words[0] if words else "")
    return exe


def _build_cp2k(settings: dict[str, Any]) -> Calculator:
    from ase.calculators.cp2k import CP2K

    exe = _cp2k_executable(str(settings["command"]))
    if shutil.which(exe) is None:
        raise FileNotFoundError(
            f"CP2K executable {exe!r} (from command {settings['command']!r}) not found"
        )
    if settings["directory"] is not None:
        os.makedirs(settings["directory"], exist_ok=True)
    return CP2K(**cp2k_parameters(settings))


def _cp2k_provenance(settings: dict[str, Any]) -> dict[str, Any]:
    cmd = shlex.split(str(settings["version_command"]))
    if not cmd or shutil.which(cmd[0]) is None:
        raise FileNotFoundError(
            f"CP2K version command {settings['version_command']!r} not found: is CP2K installed?"
        )
    out = subprocess.run(cmd, capture_output=True, text=True, check=False, timeout=60).stdout
    version = next(
        (ln.strip() for ln in out.splitlines() if ln.strip().startswith("CP2K version")),
        "unknown",
    )
    revision = next(
        (ln.strip() for ln in out.splitlines() if ln.strip().startswith("Source code revision")),
        "unknown",
    )
    return {"model": "CP2K Quickstep DFT", "cp2k_version": version, "cp2k_revision": revision}


# --------------------------------------------------------------------------------------------
# registry
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CalculatorKind:
    """One entry of :data:`CALCULATOR_KINDS`.

    Calling it with settings returns ``(calculator, provenance)`` like :func:`make_calculator`.

    Attributes
    ----------
    name
        Registry key.
    description
        One line for error messages and listings.
    defaults
        Complete default settings; user settings may override only these keys.
    build
        ``build(settings) -> ase Calculator`` (settings complete).
    provenance
        ``provenance(settings) -> dict`` of versions (cheap: it does not build the calculator).
    validate
        ``validate(settings)`` raises ValueError for a value the kind cannot use (None: any
        value of a known key is passed on); called by :func:`resolve_settings`.
    """

    name: str
    description: str
    defaults: Mapping[str, Any]
    build: Callable[[dict[str, Any]], Calculator]
    provenance: Callable[[dict[str, Any]], dict[str, Any]]
    validate: Callable[[dict[str, Any]], None] | None = None

    def __call__(self, settings: Mapping[str, Any] | None = None) -> tuple[Calculator, dict]:
        """Build the calculator; return it and its provenance."""
        full = resolve_settings(self.name, settings)
        prov = calculator_provenance(self.name, full)
        return self.build(full), prov


#: The reference calculators, by kind.
CALCULATOR_KINDS: dict[str, CalculatorKind] = {
    "chgnet": CalculatorKind(
        "chgnet",
        "pretrained CHGNet universal potential on the CPU (needs segsim[train])",
        CHGNET_DEFAULTS,
        _build_chgnet,
        _chgnet_provenance,
    ),
    "sevennet": CalculatorKind(
        "sevennet",
        "pretrained SevenNet universal potential on the CPU (needs segsim[train])",
        SEVENNET_DEFAULTS,
        _build_sevennet,
        _sevennet_provenance,
    ),
    "cp2k": CalculatorKind(
        "cp2k",
        "CP2K PBE, DZVP-MOLOPT-SR-GTH, GTH-PBE via ASE's shell-mode driver",
        CP2K_DEFAULTS,
        _build_cp2k,
        _cp2k_provenance,
        _validate_cp2k,
    ),
    "standin": CalculatorKind(
        "standin",
        "analytic Morse-pair stand-in (tests; not physical)",
        STANDIN_DEFAULTS,
        _build_standin,
        _standin_provenance,
    ),
}


def _kind(kind: str) -> CalculatorKind:
    try:
        return CALCULATOR_KINDS[kind]
    except (KeyError, TypeError):
        allowed = ", ".join(sorted(CALCULATOR_KINDS))
        raise ValueError(f"unknown calculator kind {kind!r}; allowed: {allowed}") from None


def resolve_settings(kind: str, settings: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Return the complete settings of ``kind``: its defaults updated with ``settings``.

    Parameters
    ----------
    kind
        A key of :data:`CALCULATOR_KINDS`.
    settings
        Overrides of some defaults (None: the defaults).

    Raises
    ------
    ValueError
        For an unknown kind or a setting the kind does not have (both name the allowed ones).
    """
    entry = _kind(kind)
    full = {k: _copy(v) for k, v in entry.defaults.items()}
    unknown = sorted(set(settings or {}) - set(full))
    if unknown:
        raise ValueError(
            f"unknown setting(s) {unknown} for calculator kind {kind!r}; "
            f"allowed: {', '.join(sorted(full))}"
        )
    full.update({k: _copy(v) for k, v in (settings or {}).items()})
    if entry.validate is not None:
        entry.validate(full)
    return full


def _copy(value: Any) -> Any:
    """Copy into JSON-like plain containers (dicts, lists, scalars)."""
    if isinstance(value, Mapping):
        return {str(k): _copy(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_copy(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    return value


def calculator_provenance(kind: str, settings: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Return the provenance of a calculator without building it.

    Parameters
    ----------
    kind
        A key of :data:`CALCULATOR_KINDS`.
    settings
        Overrides of the kind's defaults.

    Returns
    -------
    dict
        ``{"kind": ..., "settings": <complete settings>, **versions}`` (JSON-serialisable).
    """
    entry = _kind(kind)
    full = resolve_settings(kind, settings)
    return {"kind": entry.name, "settings": full, **entry.provenance(full)}


def make_calculator(
    kind: str = DEFAULT_KIND, settings: Mapping[str, Any] | None = None
) -> tuple[Calculator, dict[str, Any]]:
    """Build a reference calculator.

    Parameters
    ----------
    kind
        A key of :data:`CALCULATOR_KINDS`: ``"chgnet"`` (default), ``"cp2k"`` or ``"standin"``.
    settings
        Overrides of the kind's default settings (see the module docstring).

    Returns
    -------
    tuple
        ``(calculator, provenance)``: an ASE calculator and the dict of
        :func:`calculator_provenance`.

    Raises
    ------
    ValueError
        Unknown kind or setting (the message names the allowed ones).
    MissingDependencyError
        ``chgnet`` without torch/chgnet installed ("install segsim[train]").
    FileNotFoundError
        ``cp2k`` without a CP2K executable.
    """
    return _kind(kind)(settings)
