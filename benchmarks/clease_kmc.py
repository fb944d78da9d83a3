"""CLEASE side of ``segsim bench kmc``: single-vacancy kinetic Monte Carlo with CLEASE.

CLEASE (``pip install clease``) ships a rejection-free, single-vacancy KMC:
``clease.montecarlo.KineticMonteCarlo`` (residence-time / BKL algorithm, one moving vacancy
with the symbol ``"X"``), the event type ``clease.montecarlo.NeighbourSwap`` (vacancy <->
any site within a cutoff) and the barrier model ``clease.montecarlo.BEPBarrier``
(``Ea = Q[M] + alpha * (E_after - E_before)``).  With ``alpha = 0.5`` that is exactly the
kinetically-resolved-activation (KRA) rule ``Ea = E_KRA(M) + dE/2`` of segsim's vacancy hop.
The energies come from the CLEASE CE calculator (``clease.calculator.attach_calculator``),
which updates correlation functions incrementally in C++ (``clease_cxx.PyCEUpdater``).

:func:`bench_clease_kmc` builds that setup in CLEASE's own recommended way for the most
comparable model and times the event loop (``KineticMonteCarlo.run``) only:

* lattice: the simple-cubic B lattice (a = 5.87 A), Pb/Cd at ``x_cd`` with exactly one
  vacancy ``X`` (CLEASE's vacancy symbol), random arrangement.  ``geometry="periodic"``
  (default): a periodic ``n_edge**3`` bulk cell, CLEASE's usual setting (no outside region).
  ``geometry="nc"``: a cubic ``n_edge**3`` NC in a periodic ``(n_edge + 1)**3`` cell whose
  extra layer is outside (X for the CE, as in segsim); the vacancy starts at the centre and
  hops to cation neighbours only (a ``NeighbourSwap`` subclass overriding
  ``KMCEventType.get_swaps``, CLEASE's extension point).  ``n_edge = 20`` is the 12 nm NC.
* cluster expansion: CLEASE's default (``"polynomial"``) basis with clusters empty, singlets
  and nearest-neighbour pairs (``max_cluster_dia=[7.0]``), i.e. the same cluster set as
  segsim's provisional CE.  The ECIs are the *exact* translation of segsim's provisional
  nearest-neighbour pair model (Cd-Cd +0.030 eV, Pb-X = Cd-X +0.100 eV per bond, the rest 0):
  they are found by least squares against the pair-model energies of random structures and
  the residual is checked to be at round-off, and the CLEASE energy of the benchmark cell
  is checked against the pair model before and after the run.
* kinetics: ``NeighbourSwap`` (nearest neighbours), ``BEPBarrier`` with ``E_KRA = 0.7 eV``
  for Pb and Cd and ``alpha = 0.5``, attempt frequency 1e13 /s.  segsim also clips
  ``Ea >= max(dE, 0)``, which acts only for ``|dE| > 2 E_KRA = 1.4 eV``; a hop changes ten
  bonds by at most 0.1 eV each (``|dE| <= 1.0 eV``, ``<= 0.15 eV`` in the bulk), so the clip
  never acts and the rates are identical.
* one thread for the CE updater (``num_threads=1``), no observers, no logging checks.

One *event* is one executed vacancy hop, as in segsim's KMC.  ``KineticMonteCarlo._mc_step``
recomputes the rate of every candidate hop of the vacancy at every step (no rate cache), each
with two C++ CE updates driven from Python, so an event costs about ``a + b k`` for ``k``
candidate hops (``k = 6`` in the bulk, about 3.5 for a vacancy at the NC surface) and does
not depend on the cell size.  Use ``num_threads=1``: the OpenMP updater with two threads is
~100x slower for these tiny updates.  CLEASE is imported lazily, so this module imports
without it; :func:`clease_available` tells whether it is installed.

Run as a script for the numbers at several sizes::

    python -m benchmarks.clease_kmc --n-edge 8 12 20 --n-events 2000
"""

from __future__ import annotations

import importlib.util
import random
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

#: How to install the optional dependency (used in the error message).
INSTALL_HINT: str = "pip install clease"

#: Pseudo-cubic lattice constant of the B lattice (Angstrom), as segsim's CE.
A_ANGSTROM: float = 5.87

#: Cluster diameter cutoff for pairs (Angstrom): between the first (5.87) and second (8.30)
#: neighbour distances, so the CE has nearest-neighbour pairs only.  Also the hop cutoff.
CUTOFF_ANGSTROM: float = 7.0

#: Species of the single B sublattice; ``"X"`` is CLEASE's (and ASE's) vacancy symbol.
CE_SPECIES: tuple[str, str, str] = ("Pb", "Cd", "X")

#: Nearest-neighbour pair energies (eV per bond) of segsim's provisional CE
#: (``segsim.training.provisional.PAIR_ENERGIES_EV``); point energies are all zero.
PAIR_ENERGIES_EV: dict[str, float] = {
    "Pb-Pb": 0.0,
    "Pb-Cd": 0.0,
    "Cd-Cd": 0.030,
    "Pb-X": 0.035,
    "Cd-X": 0.035,
    "X-X": 0.0,
}

#: KRA barriers (eV) of a Pb and a Cd hop into a neighbouring vacancy.
E_KRA_EV: dict[str, float] = {"Pb": 0.7, "Cd": 0.7}

#: Share of the energy change in the barrier (KRA: 1/2).
BEP_ALPHA: float = 0.5

#: Attempt frequency of every hop (1/s).
ATTEMPT_FREQUENCY_PER_S: float = 1.0e13

#: Edge of the periodic cell used to map the pair model on the ECIs, and number of random
#: structures used for the least-squares mapping.
_FIT_EDGE: int = 4
_N_FIT_STRUCTURES: int = 30

#: Largest accepted residual of the pair-model -> ECI mapping and of the energy checks
#: (eV per site).
_TOLERANCE_EV_PER_SITE: float = 1e-9

#: Events run (untimed) before the timed loop.
_WARMUP_EVENTS: int = 50


class CleaseUnavailableError(ImportError):
    """CLEASE is not installed (``pip install clease``)."""


def clease_available() -> bool:
    """Return True if the ``clease`` package (and its compiled ``clease_cxx``) can be found."""
    try:
        return (
            importlib.util.find_spec("clease") is not None
            and importlib.util.find_spec("clease_cxx") is not None
        )
    except (ImportError, ValueError):
        return False


def _require_clease() -> Any:
    """Import and return the ``clease`` module, or raise :class:`CleaseUnavailableError`."""
    if not clease_available():
        raise CleaseUnavailableError(
            f"the CLEASE KMC benchmark needs CLEASE, which is not installed ({INSTALL_HINT})"
        )
    try:
        import clease
    except ImportError as exc:  # installed but broken (e.g. ABI mismatch of clease_cxx)
        raise CleaseUnavailableError(
            f"CLEASE is installed but cannot be imported ({exc}); reinstall it ({INSTALL_HINT})"
        ) from exc
    return clease


def _pair_matrix() -> np.ndarray:
    """Return the symmetric pair-energy matrix ``V[s, t]`` (eV) in :data:`CE_SPECIES` order."""
    v = np.zeros((3, 3))
    for key, value in PAIR_ENERGIES_EV.items():
        s, t = (CE_SPECIES.index(name) for name in key.split("-"))
        v[s, t] = v[t, s] = value
    return v


def _bonds(atoms: Any) -> np.ndarray:
    """Return the nearest-neighbour bonds ``(i, j)``, ``i < j``, of a periodic cell."""
    from ase.neighborlist import neighbor_list

    first, second = neighbor_list("ij", atoms, CUTOFF_ANGSTROM)
    keep = first < second
    return np.stack([first[keep], second[keep]], axis=1)


def pair_model_energy(atoms: Any, bonds: np.ndarray | None = None) -> float:
    """Return the pair-model energy (eV) of ``atoms``: sum of ``V`` over nearest-neighbour bonds."""
    if bonds is None:
        bonds = _bonds(atoms)
    code = {name: i for i, name in enumerate(CE_SPECIES)}
    occ = np.array([code[s] for s in atoms.get_chemical_symbols()])
    v = _pair_matrix()
    return float(v[occ[bonds[:, 0]], occ[bonds[:, 1]]].sum())


def _sc_cell(n_edge: int) -> Any:
    """Return a periodic simple-cubic cell of ``n_edge**3`` Pb sites."""
    from ase.build import bulk

    return bulk("Pb", crystalstructure="sc", a=A_ANGSTROM).repeat((n_edge, n_edge, n_edge))


def fit_eci(settings: Any, seed: int = 0) -> tuple[dict[str, float], float]:
    """Map the pair model exactly on CLEASE ECIs of ``settings``' cluster set.

    Random structures (random compositions of Pb, Cd and X) of a periodic ``4**3`` cell give
    correlation functions (``clease.corr_func.CorrFunction``) and pair-model energies per site;
    the ECIs are their least-squares solution.  The cluster set (empty, singlets, NN pairs)
    spans the pair model, so the residual is at round-off.

    Returns
    -------
    tuple
        ``(eci, max_residual_ev_per_site)``; ``settings``' active template is left at the
        fitting cell.
    """
    from clease.corr_func import CorrFunction

    rng = np.random.default_rng(seed)
    atoms = _sc_cell(_FIT_EDGE)
    settings.set_active_template(atoms=atoms)
    atoms = settings.atoms.copy()
    bonds = _bonds(atoms)
    names = list(settings.all_cf_names)
    cf = CorrFunction(settings)
    rows, energies = [], []
    for _ in range(_N_FIT_STRUCTURES):
        weights = rng.dirichlet(np.ones(3))
        atoms.symbols = list(rng.choice(CE_SPECIES, size=len(atoms), p=weights))
        values = cf.get_cf_by_names(atoms, names)
        rows.append([values[name] for name in names])
        energies.append(pair_model_energy(atoms, bonds) / len(atoms))
    matrix, target = np.array(rows), np.array(energies)
    coef, *_ = np.linalg.lstsq(matrix, target, rcond=None)
    residual = float(np.max(np.abs(matrix @ coef - target)))
    if residual > _TOLERANCE_EV_PER_SITE:
        raise RuntimeError(f"pair model not representable by the CLEASE ECIs: {residual:.2e} eV")
    eci = {name: float(c) for name, c in zip(names, coef, strict=True)}
    return eci, residual


def _cation_swap_type(base: type) -> type:
    """Return a ``NeighbourSwap`` subclass that offers only cation (non-X) neighbours."""

    class CationNeighbourSwap(base):
        """Vacancy hops to neighbouring Pb/Cd only (never into the outside region, X)."""

        def get_swaps(self, atoms: Any, vac_idx: int) -> list[int]:
            numbers = atoms.numbers
            return [j for j in self.nl[vac_idx] if numbers[j] != 0]

    return CationNeighbourSwap


def _benchmark_cell(
    n_edge: int, geometry: str, x_cd: float, rng: np.random.Generator
) -> tuple[Any, np.ndarray]:
    """Return the starting configuration and its mask of crystal (non-outside) sites.

    ``"periodic"``: the periodic ``n_edge**3`` cell, all sites crystal.  ``"nc"``: a cubic
    NC of ``n_edge**3`` sites in a periodic ``(n_edge + 1)**3`` cell whose extra layer is
    outside (X); with nearest-neighbour interactions one layer isolates the NC from its
    periodic images.  Exactly one crystal site is the vacancy (X), ``round(x_cd * (N - 1))``
    of the other ``N - 1`` crystal sites are Cd, the rest Pb.
    """
    edge = n_edge if geometry == "periodic" else n_edge + 1
    cell = _sc_cell(edge)
    grid = np.rint(cell.get_scaled_positions(wrap=True) * edge).astype(int) % edge
    crystal = np.ones(len(cell), bool) if geometry == "periodic" else np.all(grid >= 1, axis=1)
    sites = np.flatnonzero(crystal)
    n_cd = round(x_cd * (len(sites) - 1))
    symbols = np.array(["X"] * len(cell), dtype=object)
    symbols[sites] = "Pb"
    order = rng.permutation(sites)
    symbols[order[1 : 1 + n_cd]] = "Cd"
    if geometry == "nc":  # start the vacancy at the NC centre
        centre = np.all(grid == (n_edge + 1) // 2, axis=1)
        order = np.concatenate([np.flatnonzero(centre & (symbols == "Pb")), order])
    symbols[order[0]] = "X"
    cell.symbols = list(symbols)
    return cell, crystal


def bench_clease_kmc(
    n_edge: int = 8,
    n_events: int = 2000,
    temperature_k: float = 298.0,
    x_cd: float = 0.25,
    seed: int = 0,
    *,
    geometry: str = "periodic",
) -> dict[str, Any]:
    """Time CLEASE's single-vacancy KMC on an ``n_edge**3`` simple-cubic B lattice.

    Parameters
    ----------
    n_edge
        Sites per edge of the crystal (``n_edge**3`` crystal sites, one of them the vacancy).
    n_events
        Vacancy hops in the timed loop.
    temperature_k
        Temperature (K).
    x_cd
        Cd fraction of the cation sites.
    seed
        Seed of the configuration, of the ECI mapping and of CLEASE's event selection
        (which draws from Python's global ``random``).
    geometry
        ``"periodic"`` (default): a periodic bulk cell with the six-neighbour
        ``NeighbourSwap`` of CLEASE.  ``"nc"``: a cubic NC surrounded by one layer of outside
        sites (X for the CE, as in segsim), the vacancy started at the centre and allowed to
        hop to cation neighbours only (a ``NeighbourSwap`` subclass, CLEASE's extension
        point ``KMCEventType.get_swaps``).

    Returns
    -------
    dict
        ``events_per_s``, ``n_events``, ``n_sites`` (crystal sites), ``wall_s`` (event loop
        only), ``clease_version``, ``notes`` and the details of the setup and checks.

    Raises
    ------
    CleaseUnavailableError
        An :class:`ImportError` if CLEASE is not installed.
    """
    clease = _require_clease()
    if n_edge < 3:
        raise ValueError("n_edge must be >= 3 (six distinct nearest neighbours)")
    if n_events < 1:
        raise ValueError("n_events must be >= 1")
    if not 0.0 <= x_cd <= 1.0:
        raise ValueError("x_cd must be in [0, 1]")
    if geometry not in ("periodic", "nc"):
        raise ValueError("geometry must be 'periodic' or 'nc'")

    from clease.calculator import attach_calculator
    from clease.montecarlo import BEPBarrier, KineticMonteCarlo, NeighbourSwap
    from clease.settings import CEBulk, Concentration

    swap_type = NeighbourSwap if geometry == "periodic" else _cation_swap_type(NeighbourSwap)
    t_setup = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="clease-bench-") as tmp:
        settings = CEBulk(
            Concentration(basis_elements=[list(CE_SPECIES)]),
            crystalstructure="sc",
            a=A_ANGSTROM,
            size=[_FIT_EDGE] * 3,
            db_name=str(Path(tmp) / "clease.db"),
            max_cluster_dia=[CUTOFF_ANGSTROM],
            basis_func_type="polynomial",
        )
        eci, fit_residual = fit_eci(settings, seed=seed)

        rng = np.random.default_rng(seed)
        cell, _ = _benchmark_cell(n_edge, geometry, x_cd, rng)
        counts = {s: int(np.sum(cell.symbols == s)) for s in CE_SPECIES}
        # attach_calculator re-orders the sites; find the outside ones again by position.
        atoms = attach_calculator(settings, cell, eci=eci, num_threads=1)
        edge = round(np.cbrt(len(atoms)))
        grid = np.rint(atoms.get_scaled_positions(wrap=True) * edge).astype(int) % edge
        outside = np.zeros(len(atoms), bool) if geometry == "periodic" else np.any(grid == 0, 1)
        n_sites = int(np.sum(~outside))
        bonds = _bonds(atoms)
        e0_clease = atoms.get_potential_energy()
        e0_pair = pair_model_energy(atoms, bonds)

        def vacancy() -> int:
            return int(np.flatnonzero((atoms.numbers == 0) & ~outside)[0])

        kmc = KineticMonteCarlo(
            atoms,
            temperature_k,
            BEPBarrier(dict(E_KRA_EV), alpha=BEP_ALPHA),
            [swap_type(atoms, CUTOFF_ANGSTROM)],
        )
        kmc.attempt_freq = ATTEMPT_FREQUENCY_PER_S
        kmc.log_interval = False
        random.seed(seed)
        kmc.run(_WARMUP_EVENTS, vacancy())
        vac = vacancy()
        t_kmc0 = kmc.time
        setup_s = time.perf_counter() - t_setup

        t0 = time.perf_counter()
        kmc.run(n_events, vac)
        wall_s = time.perf_counter() - t0

        e1_clease = kmc.evaluator.get_energy()
        e1_pair = pair_model_energy(atoms, bonds)
        if np.any(atoms.numbers[outside] != 0) or int(np.sum(atoms.numbers == 0)) != (
            int(outside.sum()) + 1
        ):
            raise RuntimeError("the vacancy left the crystal or the X count changed")

    energy_error = max(abs(e0_clease - e0_pair), abs(e1_clease - e1_pair)) / len(atoms)
    if energy_error > _TOLERANCE_EV_PER_SITE:
        raise RuntimeError(f"CLEASE energy differs from the pair model by {energy_error:.2e} eV")
    where = (
        f"a periodic simple-cubic {n_edge}^3 bulk cell (no outside region) with NeighbourSwap "
        "(6 nearest neighbours)"
        if geometry == "periodic"
        else f"a cubic {n_edge}^3 NC in a periodic {n_edge + 1}^3 cell whose extra layer is X "
        "(outside), hops to cation neighbours only (NeighbourSwap subclass)"
    )
    return {
        "events_per_s": n_events / wall_s,
        "n_events": n_events,
        "n_sites": n_sites,
        "wall_s": wall_s,
        "clease_version": str(clease.__version__),
        "notes": (
            "CLEASE KineticMonteCarlo (residence-time, one moving vacancy X) with BEPBarrier "
            f"(E_KRA {E_KRA_EV['Pb']} eV for Pb and Cd, alpha {BEP_ALPHA} = KRA) on {where}; "
            "CLEASE CE calculator (C++ incremental updater, 1 thread) with the exact ECIs of "
            "segsim's provisional nearest-neighbour pair model in CLEASE's polynomial basis "
            "(clusters: empty, singlets, NN pairs); wall_s times KineticMonteCarlo.run only "
            f"(setup and {_WARMUP_EVENTS} warm-up events excluded)."
        ),
        "n_edge": n_edge,
        "geometry": geometry,
        "cell_sites": len(atoms),
        "temperature_k": temperature_k,
        "x_cd": x_cd,
        "seed": seed,
        "counts": counts,
        "setup_s": setup_s,
        "eci": eci,
        "eci_fit_residual_ev_per_site": fit_residual,
        "energy_check_error_ev_per_site": energy_error,
        "simulated_time_s": float(kmc.time - t_kmc0),
    }


def main(argv: list[str] | None = None) -> int:
    """Print :func:`bench_clease_kmc` results as JSON lines for one or more cell sizes."""
    import argparse
    import json

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-edge", type=int, nargs="+", default=[8, 12, 20])
    parser.add_argument("--n-events", type=int, default=2000)
    parser.add_argument("--temperature-k", type=float, default=298.0)
    parser.add_argument("--x-cd", type=float, default=0.25)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--geometry", choices=["periodic", "nc"], default="periodic")
    args = parser.parse_args(argv)
    for n in args.n_edge:
        result = bench_clease_kmc(
            n, args.n_events, args.temperature_k, args.x_cd, args.seed, geometry=args.geometry
        )
        result.pop("eci")
        print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
