"""Compile (and cache) every kernel once on tiny inputs of the production dtypes.

Used by ``segsim warmup`` before MPI or array jobs start, so that ranks load the on-disk cache
instead of compiling concurrently (see ``hpc/README.md``).
"""

import numpy as np

from segsim.kernels.energy import _flip_delta, _swap_delta, _total_energy
from segsim.kernels.metropolis import _run_mc_chunk


def warm_up() -> None:
    """Call each kernel on a 2-site toy model with the dtypes the engines use."""
    occ = np.array([0, 1], dtype=np.uint8)
    nbr = np.array([[0, 1], [1, 0]], dtype=np.int32)
    ce_index = np.array([2, 1, 0, 0], dtype=np.int64)
    weights = np.zeros(9, dtype=np.float64)
    local = np.array([[0, 1, 1, 3], [0, 3, 1, 1]], dtype=np.int64)
    anchor = np.array([[0, 0, 1, 1, 3]], dtype=np.int64)
    _flip_delta(occ, 0, 1, nbr, ce_index, weights, local)
    _swap_delta(occ, 0, 1, nbr, ce_index, weights, local)
    _total_energy(occ, nbr, ce_index, weights, anchor, 0.0)
    pb = np.array([0], dtype=np.int64)
    cd = np.array([1], dtype=np.int64)
    _run_mc_chunk(
        occ,
        np.zeros(2, np.uint8),
        pb,
        cd,
        1,
        1.0,
        0.0,
        nbr,
        ce_index,
        weights,
        local,
        np.random.default_rng(0),
    )


def warm_up_kmc() -> None:
    """Compile the KMC kernels (rates, refresh, event loop, RP terms) on a 4^3 NC.

    Uses the shipped provisional model and a real lattice, because the KMC kernels take the
    neighbour tables of a padded grid; a few events with the RP term on and a few with it off
    reach every kernel.
    """
    from segsim import kinetics
    from segsim.engine import KMCEngine, KMCState
    from segsim.lattice import build_cube
    from segsim.models import load_model
    from segsim.params.files import POTENTIALS_DIR
    from segsim.rp import PH_RP, RPEnergetics

    model = load_model("cluster_expansion", POTENTIALS_DIR / "provisional.ce")
    lattice = build_cube(4, 5.87, model.reach + 1)
    tables = model.compile(lattice)
    occ = lattice.empty_occupations()
    nc = np.flatnonzero(lattice.in_nc)
    occ[nc[::4]] = 1
    occ[nc[5]] = 2
    phase = np.zeros_like(occ)
    phase[nc[:16]] = PH_RP
    params = kinetics.load_defaults()
    rp = RPEnergetics(eps_rp_ev=0.1, eta_ev=0.05, j_rp_ev=0.01, e_rp_a_ev=0.5)
    kp = kinetics.parameter_vector(params, temperature_k=600.0, theta=0.5, rp=rp,
                                   rp_shift_ev=0.1)  # fmt: skip
    eng = KMCEngine(tables, lattice, KMCState.initial(occ, tables, phase),
                    np.random.default_rng(0), kp)  # fmt: skip
    eng.advance(1e9, max_events=50)
    # The event loop is compiled twice, with and without the RP term (kmc._make_run_kmc_chunk).
    kp_pv = kinetics.parameter_vector(params, temperature_k=600.0, theta=0.5)
    eng = KMCEngine(tables, lattice, KMCState.initial(occ, tables), np.random.default_rng(0), kp_pv)
    eng.advance(1e9, max_events=50)
