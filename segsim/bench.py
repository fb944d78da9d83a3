"""Benchmarks: segsim's canonical Monte Carlo against icet's ``mchammer`` on the same model.

:func:`bench_mc` runs both codes on one cluster expansion (CE), one periodic ``size**3``
simple-cubic supercell without outside sites (a bulk Pb/Cd alloy) and one random starting
configuration, and reports

* the trial-swap rates of both codes, measured in the same process, and their ratio;
* the equilibrium check: both codes' mean energy per site with autocorrelation-corrected
  standard errors, and whether they agree within three combined standard errors.

Both codes propose the same moves (a uniformly random unordered Pb/Cd pair, icet's
``CanonicalEnsemble.do_canonical_swap`` and segsim's
:func:`segsim.kernels.metropolis._run_mc_chunk`) with the same Boltzmann constant, so one
*trial step* means the same thing in both and the rates are directly comparable.

:func:`format_bench` turns the result into a human-readable table.  icet and ``mchammer`` are
imported lazily inside :func:`bench_mc`.
"""

from __future__ import annotations

import os
import random
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np

import segsim
from segsim import species
from segsim.engine import MCEngine, MCState
from segsim.lattice import build_periodic, random_occupations
from segsim.models.cluster_expansion import ClusterExpansionModel
from segsim.units import K_B_EV_PER_K

#: Trial steps per site (sweeps) of each code: (default, quick).  With 4096 sites the default
#: gives about 20 million segsim steps and 0.6 million icet steps (icet dominates the time).
SEGSIM_SWEEPS: tuple[int, int] = (5000, 250)
ICET_SWEEPS: tuple[int, int] = (150, 10)

#: Fraction of the energy samples discarded as equilibration, in both codes.
BURN_IN_FRACTION: float = 0.2

#: Tolerance (eV per site) for the two codes' energies of the same starting configuration.
STEP0_TOLERANCE_EV_PER_SITE: float = 1e-8

#: Sokal's window constant for the integrated autocorrelation time.
_SOKAL_C: float = 5.0

#: Atomic numbers of the CE symbols in icet's occupation vectors.
_ATOMIC_NUMBER_TO_CODE: dict[int, int] = {82: species.PB, 48: species.CD, 0: species.VAC}


def autocorrelation_stderr(samples: np.ndarray) -> tuple[float, float, float]:
    """Return the mean, its standard error and the integrated autocorrelation time.

    The standard error is ``sqrt(s**2 * tau / n)`` with ``s**2`` the sample variance and
    ``tau`` the integrated autocorrelation time (in samples),
    ``tau = 1 + 2 * sum_{t=1}^{W} rho(t)``, with Sokal's automatic window: the smallest ``W``
    with ``W >= 5 * tau(W)``.  ``tau`` is clipped below at 1 (anticorrelated or very short
    series then get the naive, larger error).

    Parameters
    ----------
    samples
        A time series of one observable (equally spaced samples).

    Returns
    -------
    tuple of float
        ``(mean, standard error of the mean, tau)``; the error and ``tau`` are NaN for fewer
        than two samples, and the error is 0 for a constant series.
    """
    y = np.asarray(samples, dtype=np.float64).ravel()
    n = y.size
    if n == 0:
        raise ValueError("no samples")
    mean = float(y.mean())
    if n < 2:
        return mean, float("nan"), float("nan")
    d = y - mean
    var0 = float(d @ d) / n
    if var0 <= 0.0:
        return mean, 0.0, 1.0
    n_fft = 1 << (2 * n - 1).bit_length()
    f = np.fft.rfft(d, n=n_fft)
    acf = np.fft.irfft(f * np.conj(f), n=n_fft)[:n]
    acf = acf / acf[0]
    taus = 2.0 * np.cumsum(acf) - 1.0
    inside = np.arange(n) < _SOKAL_C * taus
    window = int(np.argmin(inside)) if not inside.all() else n - 1
    tau = max(1.0, float(taus[window]))
    var = float(d @ d) / (n - 1)
    return mean, float(np.sqrt(var * tau / n)), tau


def _segsim_mc_run(
    tables: Any,
    occ0: np.ndarray,
    seq: np.random.SeedSequence,
    temperature_k: float,
    sweeps: int,
    sweep_steps: int,
) -> dict[str, Any]:
    """Run and time segsim's MC for :func:`bench_mc`: energy per site after every sweep (eV).

    A warm-up call on a scratch state is timed separately (``compile_s``: numba compilation
    or its cache load), so ``wall_s`` is the sweeps alone.
    """
    n_sites = occ0.size
    t0 = time.perf_counter()
    scratch = MCEngine(
        tables, MCState.initial(occ0, tables), np.random.default_rng(0), temperature_k=temperature_k
    )
    scratch.advance(1)
    compile_s = time.perf_counter() - t0
    state = MCState.initial(occ0, tables)
    e0 = state.energy_ev / n_sites
    engine = MCEngine(tables, state, np.random.default_rng(seq), temperature_k=temperature_k)
    energies = np.empty(sweeps, dtype=np.float64)
    t0 = time.perf_counter()
    for k in range(sweeps):
        engine.advance(sweep_steps)
        energies[k] = state.energy_ev
    wall_s = time.perf_counter() - t0
    return {
        "energies": energies / n_sites,
        "e0": e0,
        "wall_s": wall_s,
        "compile_s": compile_s,
        "drift_ev": engine.energy_drift_ev(),
        "state": state,
    }


def _icet_mc_run(
    model: ClusterExpansionModel,
    lattice: Any,
    tables: Any,
    occ0: np.ndarray,
    temperature_k: float,
    seed: int,
    sweeps: int,
    sweep_steps: int,
) -> dict[str, Any]:
    """Run and time icet's ``CanonicalEnsemble`` for :func:`bench_mc` (energies per site, eV).

    icet seeds Python's global :mod:`random`; its state is restored afterwards.  The energy of
    icet's final configuration is recomputed with segsim's tables (``final_check_ev``).
    """
    from mchammer.calculators import ClusterExpansionCalculator
    from mchammer.ensembles import CanonicalEnsemble

    n_sites = lattice.n_sites
    structure = model.to_icet_structure(lattice, occ0)
    icet_steps = sweeps * sweep_steps
    saved_random_state = random.getstate()
    try:
        t0 = time.perf_counter()
        calculator = ClusterExpansionCalculator(structure, model.icet_ce)
        ensemble = CanonicalEnsemble(
            structure=structure,
            calculator=calculator,
            temperature=float(temperature_k),
            boltzmann_constant=K_B_EV_PER_K,
            random_seed=int(seed),
            dc_filename=None,
            ensemble_data_write_interval=sweep_steps,
            trajectory_write_interval=icet_steps,
        )
        setup_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        ensemble.run(icet_steps)
        wall_s = time.perf_counter() - t0
    finally:
        random.setstate(saved_random_state)
    with warnings.catch_warnings():
        # mchammer's DataContainer.get calls DataFrame.dropna(inplace=True), deprecated in
        # pandas 3.1; silence only that message (the suite turns warnings into errors).
        warnings.filterwarnings("ignore", message=r"The inplace keyword in DataFrame\.dropna")
        mctrial, potential, acceptance = ensemble.data_container.get(
            "mctrial", "potential", "acceptance_ratio"
        )
    mctrial = np.asarray(mctrial, dtype=np.int64)
    energies_all = np.asarray(potential, dtype=np.float64) / n_sites
    if mctrial[0] != 0 or mctrial.size != sweeps + 1:
        raise RuntimeError(f"unexpected icet sampling steps {mctrial[:3]}... ({mctrial.size})")
    final_codes = np.array(
        [_ATOMIC_NUMBER_TO_CODE[int(z)] for z in ensemble.configuration.occupations],
        dtype=species.OCC_DTYPE,
    )
    return {
        "energies": energies_all[1:],
        "e0": float(energies_all[0]),
        "wall_s": wall_s,
        "setup_s": setup_s,
        "acceptance": np.asarray(acceptance, dtype=np.float64)[1:],
        "final_check_ev": abs(tables.total_energy(final_codes) / n_sites - float(energies_all[-1])),
    }


def bench_mc(
    *,
    model_path: str | Path,
    size: int = 16,
    x: float = 0.25,
    temperature_k: float = 600.0,
    seed: int = 20240601,
    quick: bool = False,
) -> dict[str, Any]:
    """Benchmark segsim's canonical Monte Carlo against icet's ``CanonicalEnsemble``.

    Both codes start from the same random configuration (``round(x * size**3)`` Cd on a
    periodic ``size**3`` grid, drawn from ``seed``) and run Pb/Cd swap Metropolis at
    ``temperature_k`` with the CE read from ``model_path``: segsim through
    :class:`segsim.engine.MCEngine`, icet through ``mchammer.ensembles.CanonicalEnsemble`` with
    ``mchammer.calculators.ClusterExpansionCalculator`` (given segsim's Boltzmann constant).
    The energy per site is sampled once per sweep (``size**3`` trial steps) in both; the first
    :data:`BURN_IN_FRACTION` of the samples is discarded.

    segsim's rate excludes numba compilation (a warm-up call on a scratch state is timed
    separately, as ``segsim_compile_s``; with numba's on-disk cache this is a cache load);
    icet's rate includes its per-sweep energy observation, as in ordinary use.  Setup (CE
    compilation, icet calculator construction) is timed separately too.  icet seeds Python's
    global :mod:`random` module; its state is restored afterwards.

    Parameters
    ----------
    model_path
        icet ``.ce`` file with a one-site simple-cubic primitive (species Pb, Cd, X).
    size
        Sites per edge of the periodic supercell.
    x
        Cd fraction in [0, 1].
    temperature_k
        Temperature in K.
    seed
        Seed of the starting configuration, of segsim's generator and of icet's.
    quick
        Run far fewer steps (about 10 s in total for ``size=16``; for tests).

    Returns
    -------
    dict
        JSON-serialisable results; the keys are listed in the source and shown by
        :func:`format_bench`.  The main ones are ``segsim_steps_per_s``,
        ``icet_steps_per_s``, ``ratio`` (segsim / icet), the mean energies per site
        ``segsim_energy_mean_ev_per_site`` and ``icet_energy_mean_ev_per_site`` with their
        ``*_stderr_ev_per_site``, and ``energies_agree``.
    """
    if size < 1:
        raise ValueError(f"size must be >= 1, got {size}")
    if not 0.0 <= x <= 1.0:
        raise ValueError(f"x must be in [0, 1], got {x}")
    if not temperature_k > 0.0:
        raise ValueError(f"temperature_k must be > 0, got {temperature_k}")

    t0 = time.perf_counter()
    model = ClusterExpansionModel.from_file(model_path)
    lattice = build_periodic(size, model.a_angstrom)
    tables = model.compile(lattice)
    segsim_setup_s = time.perf_counter() - t0
    n_sites = lattice.n_sites
    seq_occ, seq_mc = np.random.SeedSequence(seed).spawn(2)
    occ0 = random_occupations(lattice, x, np.random.default_rng(seq_occ))
    n_cd = int(np.count_nonzero(occ0 == species.CD))
    sweep_steps = n_sites
    segsim_sweeps = SEGSIM_SWEEPS[1] if quick else SEGSIM_SWEEPS[0]
    icet_sweeps = ICET_SWEEPS[1] if quick else ICET_SWEEPS[0]

    sg = _segsim_mc_run(tables, occ0, seq_mc, temperature_k, segsim_sweeps, sweep_steps)
    ic = _icet_mc_run(model, lattice, tables, occ0, temperature_k, seed, icet_sweeps, sweep_steps)
    segsim_steps, icet_steps = segsim_sweeps * sweep_steps, icet_sweeps * sweep_steps
    segsim_e0, icet_e0 = sg["e0"], ic["e0"]

    # ---------------------------------------------------------------- statistics
    s_burn = int(BURN_IN_FRACTION * segsim_sweeps)
    i_burn = int(BURN_IN_FRACTION * icet_sweeps)
    s_mean, s_err, s_tau = autocorrelation_stderr(sg["energies"][s_burn:])
    i_mean, i_err, i_tau = autocorrelation_stderr(ic["energies"][i_burn:])
    diff = s_mean - i_mean
    combined = float(np.hypot(s_err, i_err))
    segsim_rate = segsim_steps / sg["wall_s"]
    icet_rate = icet_steps / ic["wall_s"]
    state = sg["state"]

    import icet
    import numba

    return {
        "benchmark": "mc",
        "model_path": str(model_path),
        "size": int(size),
        "n_sites": int(n_sites),
        "x": float(x),
        "n_cd": n_cd,
        "temperature_k": float(temperature_k),
        "seed": int(seed),
        "quick": bool(quick),
        "sample_interval_steps": int(sweep_steps),
        "burn_in_fraction": BURN_IN_FRACTION,
        # rates
        "segsim_steps": int(segsim_steps),
        "segsim_wall_s": float(sg["wall_s"]),
        "segsim_steps_per_s": float(segsim_rate),
        "segsim_compile_s": float(sg["compile_s"]),
        "segsim_setup_s": float(segsim_setup_s),
        "icet_steps": int(icet_steps),
        "icet_wall_s": float(ic["wall_s"]),
        "icet_steps_per_s": float(icet_rate),
        "icet_setup_s": float(ic["setup_s"]),
        "ratio": float(segsim_rate / icet_rate),
        # same quantity at step 0
        "step0_segsim_energy_ev_per_site": float(segsim_e0),
        "step0_icet_energy_ev_per_site": icet_e0,
        "step0_abs_diff_ev_per_site": float(abs(segsim_e0 - icet_e0)),
        "step0_energies_agree": bool(abs(segsim_e0 - icet_e0) < STEP0_TOLERANCE_EV_PER_SITE),
        # equilibrium check
        "segsim_n_samples": int(sg["energies"].size - s_burn),
        "segsim_energy_mean_ev_per_site": s_mean,
        "segsim_energy_stderr_ev_per_site": s_err,
        "segsim_tau_int_sweeps": s_tau,
        "segsim_acceptance": float(state.n_accepted / max(state.step, 1)),
        "icet_n_samples": int(ic["energies"].size - i_burn),
        "icet_energy_mean_ev_per_site": i_mean,
        "icet_energy_stderr_ev_per_site": i_err,
        "icet_tau_int_sweeps": i_tau,
        "icet_acceptance": float(ic["acceptance"].mean()),
        "energy_diff_ev_per_site": float(diff),
        "energy_diff_combined_stderr_ev_per_site": combined,
        "energies_agree": bool(abs(diff) <= 3.0 * combined),
        # consistency
        "segsim_energy_drift_ev": float(sg["drift_ev"]),
        "icet_final_config_abs_diff_ev_per_site": float(ic["final_check_ev"]),
        # environment
        "segsim_version": segsim.__version__,
        "icet_version": str(icet.__version__),
        "numba_version": str(numba.__version__),
        "numpy_version": str(np.__version__),
        "n_cpus": int(os.cpu_count() or 1),
    }


def format_bench(result: dict[str, Any]) -> str:
    """Return a human-readable table of a :func:`bench_mc` result.

    Parameters
    ----------
    result
        The dictionary returned by :func:`bench_mc`.
    """
    r = result

    def g(key: str, fmt: str) -> str:
        value = r.get(key)
        return "n/a" if value is None else format(value, fmt)

    head = (
        f"MC benchmark: {r.get('model_path')}  size {r.get('size')}^3 = {r.get('n_sites')} "
        f"sites, x = {r.get('x')} ({r.get('n_cd')} Cd), T = {r.get('temperature_k')} K, "
        f"seed {r.get('seed')}{' (quick)' if r.get('quick') else ''}"
    )
    rows = [
        ("", "segsim", "icet"),
        ("trial steps", g("segsim_steps", ",d"), g("icet_steps", ",d")),
        ("wall time / s", g("segsim_wall_s", ".3f"), g("icet_wall_s", ".3f")),
        ("steps / s", g("segsim_steps_per_s", ".4g"), g("icet_steps_per_s", ".4g")),
        ("setup / s", g("segsim_setup_s", ".3f"), g("icet_setup_s", ".3f")),
        ("numba compile / s", g("segsim_compile_s", ".3f"), "-"),
        ("acceptance", g("segsim_acceptance", ".4f"), g("icet_acceptance", ".4f")),
        (
            "E(step 0) / eV/site",
            g("step0_segsim_energy_ev_per_site", ".10f"),
            g("step0_icet_energy_ev_per_site", ".10f"),
        ),
        ("samples (sweeps)", g("segsim_n_samples", "d"), g("icet_n_samples", "d")),
        (
            "<E> / eV/site",
            g("segsim_energy_mean_ev_per_site", ".7f"),
            g("icet_energy_mean_ev_per_site", ".7f"),
        ),
        (
            "stderr / eV/site",
            g("segsim_energy_stderr_ev_per_site", ".2e"),
            g("icet_energy_stderr_ev_per_site", ".2e"),
        ),
        ("tau_int / sweeps", g("segsim_tau_int_sweeps", ".2f"), g("icet_tau_int_sweeps", ".2f")),
    ]
    w0 = max(len(row[0]) for row in rows)
    w1 = max(len(row[1]) for row in rows)
    w2 = max(len(row[2]) for row in rows)
    lines = [head]
    lines += [f"  {a:<{w0}}  {b:>{w1}}  {c:>{w2}}" for a, b, c in rows]
    agree = "yes" if r.get("energies_agree") else "NO"
    step0 = "yes" if r.get("step0_energies_agree") else "NO"
    three_sigma = 3.0 * float(r.get("energy_diff_combined_stderr_ev_per_site", float("nan")))
    lines += [
        f"  ratio (segsim / icet steps per s): {g('ratio', '.1f')}",
        f"  step-0 energies agree (< {STEP0_TOLERANCE_EV_PER_SITE:g} eV/site): {step0} "
        + f"(|diff| {g('step0_abs_diff_ev_per_site', '.1e')})",
        f"  <E> difference: {g('energy_diff_ev_per_site', '.2e')} eV/site, "
        + f"3 sigma = {three_sigma:.2e} -> agree: {agree}",
    ]
    return "\n".join(lines)


# --------------------------------------------------------------------------------- KMC
#: Simulated days of the aging runs of ``segsim bench kmc --quick`` (the full run: 14).
AGING_QUICK_DAYS: float = 0.05

#: NC edges (nm) of the KMC scaling benchmark.
KMC_EDGES_NM: tuple[float, ...] = (6.0, 12.0, 18.0, 24.0, 30.0)


def bench_kmc(
    *,
    model_path: str | Path,
    edges_nm: tuple[float, ...] = KMC_EDGES_NM,
    n_events: int = 400_000,
    vacancy_fraction: float = 0.002,
    temperature_k: float = 298.0,
    theta: float = 0.5,
    seed: int = 0,
    with_clease: bool = True,
    plain_ces: tuple[str | Path, ...] = (),
    aging_inputs: tuple[str | Path, ...] = (),
    aging_days: float | None = None,
) -> dict[str, Any]:
    """Measure KMC events per second for cubic NCs of several edges.

    Each NC (x = 0.25, random, with ``vacancy_fraction`` internal vacancies so that hops,
    expulsion and recession all occur) runs ``n_events`` events with the default kinetics
    (``potentials/kinetics.yaml``) after a burn-in of ``n_events // 10`` events that also
    triggers compilation.  The cost per event should be nearly independent of the NC size
    (O(log N) selection, local rate updates).  If CLEASE is installed
    (``benchmarks/clease_kmc.py``), its single-vacancy KMC on a comparable model is timed
    in the same process and the ratio is reported.

    ``plain_ces`` adds ``plain_by_ce``: the events/s of the 12 nm row (the same NC, kinetics
    and seed) with each of these CE files, so that models compare in one process.
    ``aging_inputs`` adds ``aging_14d`` (:func:`bench_aging`): the wall time of whole aging
    runs of those input files (``aging_days`` shortens them, for tests).
    """
    model = ClusterExpansionModel.from_file(model_path)
    rows = [
        _bench_nc_row(model, edge, n_events, vacancy_fraction, temperature_k, theta, seed)
        for edge in edges_nm
    ]
    result: dict[str, Any] = {
        "benchmark": "kmc",
        "segsim_version": segsim.__version__,
        "model": str(model_path),
        "temperature_k": temperature_k,
        "theta": theta,
        "vacancy_fraction": vacancy_fraction,
        "sizes": rows,
        "clease": None,
    }
    twelve = next((r for r in rows if abs(r["edge_nm"] - 12.0) < 1e-9), rows[0])
    result["events_per_s_12nm"] = twelve["events_per_s"]
    result["plain_by_ce"] = {
        str(ce): _bench_nc_row(ClusterExpansionModel.from_file(ce), twelve["edge_nm"], n_events,
                               vacancy_fraction, temperature_k, theta, seed)["events_per_s"]
        for ce in plain_ces
    }  # fmt: skip
    if aging_inputs:
        result["aging_14d"] = bench_aging(aging_inputs, duration_days=aging_days)
    result["single_vacancy"] = _bench_single_vacancy(model, twelve["n_edge"], n_events, seed)
    if with_clease:
        result["clease"] = _bench_clease(result["single_vacancy"])
    return result


def _bench_nc_row(
    model: ClusterExpansionModel,
    edge_nm: float,
    n_events: int,
    vacancy_fraction: float,
    temperature_k: float,
    theta: float,
    seed: int,
) -> dict[str, Any]:
    """Time ``n_events`` KMC events of one random x = 0.25 NC (see :func:`bench_kmc`)."""
    from segsim import kinetics
    from segsim.engine import KMCEngine, KMCState
    from segsim.lattice import build_cube, n_edge_from_nm
    from segsim.synthesis import initial_kmc_occupations

    params = kinetics.load_defaults()
    n = n_edge_from_nm(edge_nm, model.a_angstrom)
    lattice = build_cube(n, model.a_angstrom, model.reach + 1)
    tables = model.compile(lattice)
    rng = np.random.default_rng(seed)
    occ = initial_kmc_occupations(lattice, 0.25, vacancy_fraction, rng)
    kp = kinetics.parameter_vector(
        params,
        temperature_k=temperature_k,
        theta=theta,
        removal_ref_ev=kinetics.removal_reference_ev(tables, lattice),
        recession_mu_csbr_ev=kinetics.recession_mu_csbr_ev(tables),
    )
    t0 = time.perf_counter()
    engine = KMCEngine(tables, lattice, KMCState.initial(occ, tables), rng, kp)
    setup_s = time.perf_counter() - t0
    engine.advance(np.inf, max_events=max(1, n_events // 10))
    c0 = engine.state.counts.copy()
    t0 = time.perf_counter()
    done, _ = engine.advance(np.inf, max_events=n_events)
    wall = time.perf_counter() - t0
    mix = engine.state.counts - c0
    return {
        "edge_nm": edge_nm,
        "n_edge": n,
        "n_grid_sites": lattice.n_sites,
        "n_events": int(done),
        "wall_s": wall,
        "events_per_s": done / wall if wall > 0 else float("nan"),
        "setup_s": setup_s,
        "event_mix": {k: int(v) for k, v in zip(_kmc_event_names(), mix, strict=True)},
    }


def bench_aging(
    inputs: tuple[str | Path, ...], *, duration_days: float | None = None
) -> dict[str, Any]:
    """Run whole aging inputs (``segsim run``'s KMC driver, frames and all) and time them.

    Each input runs once, into a temporary result file, without a progress line.  Per input:
    wall seconds, simulated days, events executed and per second, the event mix, and the
    process's peak resident memory after the run (MiB; ``ru_maxrss``, so it includes
    everything loaded before).  ``accelerated`` is None and ``speedup`` null: the exact
    acceleration of issue 16 item 2 is not implemented (see ``docs/performance.md``).

    Parameters
    ----------
    inputs
        KMC input files (``inputs/aging_pristine.yaml`` ...).
    duration_days
        Simulated days instead of each input's duration (None: as written).
    """
    import dataclasses
    import resource
    import tempfile

    from segsim import config as _config
    from segsim.driver import run_kmc

    out: dict[str, Any] = {}
    for path in inputs:
        cfg = _config.load(path)
        if duration_days is not None:
            cfg = dataclasses.replace(
                cfg, run=dataclasses.replace(cfg.run, duration_s=duration_days * 86400.0)
            )
        with tempfile.TemporaryDirectory() as tmp:
            t0 = time.perf_counter()
            summary = run_kmc(cfg, Path(tmp) / "aging.h5", progress=False)
            wall = time.perf_counter() - t0
        peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
        out[Path(path).stem] = {
            "input": str(path),
            "days": summary.time_s / 86400.0,
            "wall_s_plain": wall,
            "events": int(summary.n_events),
            "events_per_s": summary.n_events / wall if wall > 0 else float("nan"),
            "event_mix": dict(summary.counts),
            "peak_rss_mib": peak_mib,
            "x_cd": [summary.x_cd_start, summary.x_cd],
            "accelerated": None,
            "speedup": None,
        }
    return out


#: The matched comparison with CLEASE: one vacancy, hops only, E_KRA = 0.7 eV for Pb and Cd.
SINGLE_VACANCY_E_KRA_EV = 0.7


def _bench_single_vacancy(
    model: ClusterExpansionModel, n_edge: int, n_events: int, seed: int
) -> dict[str, Any]:
    """Time the setup CLEASE can also run: one vacancy hopping in the NC (no other events).

    The vacancy starts at the centre of an ``n_edge`` cube of x = 0.25 (random), E_KRA is
    :data:`SINGLE_VACANCY_E_KRA_EV` for Pb and Cd, 298 K, expulsion and recession off.
    """
    from segsim import kinetics
    from segsim.engine import KMCEngine, KMCState
    from segsim.lattice import build_cube

    lattice = build_cube(n_edge, model.a_angstrom, model.reach + 1)
    tables = model.compile(lattice)
    rng = np.random.default_rng(seed)
    occ = random_occupations(lattice, 0.25, rng)
    c = lattice.pad + n_edge // 2
    centre = int(lattice.site_index(np.array([c]), np.array([c]), np.array([c]))[0])
    occ[centre] = species.VAC
    e = SINGLE_VACANCY_E_KRA_EV
    params = kinetics.load_defaults().replace(
        e_kra_pb_ev=e, e_kra_cd_ev=e, expulsion=False, recession=False
    )
    kp = kinetics.parameter_vector(params, temperature_k=298.0, theta=0.0)
    engine = KMCEngine(tables, lattice, KMCState.initial(occ, tables), rng, kp)
    engine.advance(np.inf, max_events=max(1, n_events // 10))
    t0 = time.perf_counter()
    done, _ = engine.advance(np.inf, max_events=n_events)
    wall = time.perf_counter() - t0
    return {
        "n_edge": n_edge,
        "n_grid_sites": lattice.n_sites,
        "n_events": int(done),
        "wall_s": wall,
        "events_per_s": done / wall if wall > 0 else float("nan"),
        "e_kra_ev": e,
    }


def _kmc_event_names() -> tuple[str, ...]:
    from segsim.kernels.kmc import EVENT_TYPE_NAMES

    return EVENT_TYPE_NAMES


def _bench_clease(segsim_row: dict[str, Any]) -> dict[str, Any] | None:
    """Time CLEASE's KMC (``benchmarks/clease_kmc.py``) if CLEASE is importable."""
    import importlib.util

    path = Path(__file__).resolve().parent.parent / "benchmarks" / "clease_kmc.py"
    if not path.is_file():
        return {"available": False, "reason": f"{path} not found"}
    spec = importlib.util.spec_from_file_location("segsim_clease_kmc", path)
    if spec is None or spec.loader is None:
        return None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    if not mod.clease_available():
        return {"available": False}
    out = dict(mod.bench_clease_kmc(n_edge=segsim_row["n_edge"], n_events=20_000, geometry="nc"))
    out["available"] = True
    out["ratio_segsim_over_clease"] = segsim_row["events_per_s"] / out["events_per_s"]
    return out


def format_bench_kmc(result: dict[str, Any]) -> str:
    """Return a human-readable table of :func:`bench_kmc` results."""
    lines = [
        f"segsim KMC, {result['model']}, {result['temperature_k']} K, theta {result['theta']}",
        "  edge (nm)  n  grid sites   events/s   setup (s)",
    ]
    for r in result["sizes"]:
        lines.append(
            f"  {r['edge_nm']:9.1f} {r['n_edge']:3d} {r['n_grid_sites']:11d} "
            f"{r['events_per_s']:10.3g} {r['setup_s']:10.2f}"
        )
    for ce, rate in result.get("plain_by_ce", {}).items():
        lines.append(f"  12 nm, plain, {ce}: {rate:.3g} events/s")
    for name, a in (result.get("aging_14d") or {}).items():
        lines.append(
            f"  aging {name}: {a['days']:.1f} d, {a['events']:,} events in {a['wall_s_plain']:.1f} s "
            f"({a['events_per_s']:.3g}/s), x {a['x_cd'][0]:.3f} -> {a['x_cd'][1]:.3f}, "
            f"peak RSS {a['peak_rss_mib']:.0f} MiB"
        )
    sv = result["single_vacancy"]
    lines.append(
        f"  single vacancy, hops only, E_KRA {sv['e_kra_ev']} eV, n = {sv['n_edge']}: "
        f"{sv['events_per_s']:.3g} events/s"
    )
    cl = result.get("clease")
    if cl is None:
        lines.append("  CLEASE: not run (--quick)")
    elif not cl.get("available"):
        why = cl.get("reason", "not installed (pip install clease)")
        lines.append(f"  CLEASE: {why} - no comparison")
    else:
        lines.append(
            f"  CLEASE {cl.get('clease_version', '?')}: {cl['events_per_s']:.3g} events/s "
            f"(same NC, single vacancy) -> segsim/CLEASE = "
            f"{cl['ratio_segsim_over_clease']:.0f}"
        )
    return "\n".join(lines)
