"""Tests of segsim.bench (segsim vs icet MC benchmark) and lattice.build_periodic."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest

from segsim import species
from segsim.bench import autocorrelation_stderr, bench_mc, format_bench
from segsim.lattice import NN_DISPLACEMENTS, build_periodic, random_occupations

A_ANGSTROM = 5.9

REQUIRED_KEYS = {
    "model_path",
    "size",
    "n_sites",
    "x",
    "temperature_k",
    "seed",
    "segsim_steps",
    "segsim_wall_s",
    "segsim_steps_per_s",
    "segsim_compile_s",
    "icet_steps",
    "icet_wall_s",
    "icet_steps_per_s",
    "ratio",
    "step0_segsim_energy_ev_per_site",
    "step0_icet_energy_ev_per_site",
    "step0_energies_agree",
    "segsim_energy_mean_ev_per_site",
    "segsim_energy_stderr_ev_per_site",
    "icet_energy_mean_ev_per_site",
    "icet_energy_stderr_ev_per_site",
    "energy_diff_ev_per_site",
    "energy_diff_combined_stderr_ev_per_site",
    "energies_agree",
}


def _write_random_ce(path: Path, seed: int = 3) -> Path:
    """Write a small CE (pairs to 2NN, NN-NN-2NN triplets) with meV-scale random ECIs."""
    from ase import Atoms
    from icet import ClusterExpansion, ClusterSpace

    prim = Atoms("Pb", positions=[[0.0, 0.0, 0.0]], cell=np.eye(3) * A_ANGSTROM, pbc=True)
    cs = ClusterSpace(
        prim, cutoffs=[1.5 * A_ANGSTROM, 1.5 * A_ANGSTROM], chemical_symbols=[["Pb", "Cd", "X"]]
    )
    params = np.random.default_rng(seed).normal(0.0, 0.005, len(cs))
    params[0] = -2.5
    ClusterExpansion(cs, params).write(str(path))
    return path


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, float, float]:
    """One quick bench on a 6^3 grid (kept small: the suite also runs with the JIT off).

    Returns the result and, to check that icet's seeding of the global ``random`` module is
    undone, the next global random number after the bench and the one expected without it.
    """
    path = _write_random_ce(tmp_path_factory.mktemp("ce") / "random.ce")
    random.seed(1234)
    expected = random.random()
    random.seed(1234)
    result = bench_mc(model_path=path, size=6, x=0.25, temperature_k=600.0, seed=11, quick=True)
    return result, random.random(), expected


@pytest.fixture
def quick_result(quick_run: tuple[dict, float, float]) -> dict:
    return quick_run[0]


# ------------------------------------------------------------------------ build_periodic
def test_build_periodic_is_bulk() -> None:
    lat = build_periodic(4, A_ANGSTROM)
    assert lat.shape == (4, 4, 4)
    assert lat.pad == 0
    assert lat.n_edge == 4
    assert lat.n_sites == 64
    assert lat.in_nc.all()
    assert (lat.depth == 0).all()
    assert (lat.n_outside_nn == 0).all()
    for arr in (lat.coords, lat.nn, lat.in_nc, lat.depth, lat.n_outside_nn):
        assert not arr.flags.writeable
    np.testing.assert_allclose(lat.cell_angstrom, np.eye(3) * 4 * A_ANGSTROM)


def test_build_periodic_neighbors_wrap() -> None:
    lat = build_periodic(4, A_ANGSTROM)
    # site 0 is (0, 0, 0): +x -> (1, 0, 0) = 16, -x -> (3, 0, 0) = 48, ...
    assert lat.nn[0].tolist() == [16, 48, 4, 12, 1, 3]
    # every neighbour is one lattice step away, modulo the box
    diff = (lat.coords[lat.nn] - lat.coords[:, None, :]) % 4
    np.testing.assert_array_equal(diff, np.broadcast_to(NN_DISPLACEMENTS % 4, diff.shape))


def test_build_periodic_random_occupations_fill_all_sites() -> None:
    lat = build_periodic(4, A_ANGSTROM)
    occ = random_occupations(lat, 0.25, np.random.default_rng(0))
    assert np.count_nonzero(occ == species.CD) == 16
    assert np.count_nonzero(occ == species.PB) == 48
    assert not np.any(occ == species.OUT)


def test_build_periodic_rejects_bad_size() -> None:
    with pytest.raises(ValueError, match="n_cells"):
        build_periodic(0, A_ANGSTROM)


# ------------------------------------------------------------------------ statistics
def test_stderr_independent_samples() -> None:
    y = np.random.default_rng(1).normal(size=20000)
    mean, err, tau = autocorrelation_stderr(y)
    assert tau == pytest.approx(1.0, abs=0.2)
    assert err == pytest.approx(np.std(y, ddof=1) / np.sqrt(y.size), rel=0.1)
    assert abs(mean) < 4 * err


def test_stderr_correlated_samples() -> None:
    # AR(1) with phi: tau_int = (1 + phi) / (1 - phi) = 19 for phi = 0.9
    phi, n = 0.9, 100_000
    noise = np.random.default_rng(2).normal(size=n)
    y = np.empty(n)
    y[0] = noise[0]
    for t in range(1, n):
        y[t] = phi * y[t - 1] + noise[t]
    _, err, tau = autocorrelation_stderr(y)
    assert tau == pytest.approx(19.0, rel=0.25)
    assert err > 3.0 * np.std(y, ddof=1) / np.sqrt(n)


def test_stderr_edge_cases() -> None:
    assert autocorrelation_stderr(np.full(10, 2.0)) == (2.0, 0.0, 1.0)
    mean, err, tau = autocorrelation_stderr(np.array([1.5]))
    assert mean == 1.5
    assert np.isnan(err)
    assert np.isnan(tau)
    with pytest.raises(ValueError, match="no samples"):
        autocorrelation_stderr(np.array([]))


# ------------------------------------------------------------------------ bench_mc
def test_bench_has_keys_and_is_json(quick_result: dict) -> None:
    assert set(quick_result) >= REQUIRED_KEYS
    assert json.loads(json.dumps(quick_result)) == quick_result
    assert quick_result["n_sites"] == 216
    assert quick_result["quick"] is True


def test_bench_rates_positive_and_ratio_consistent(quick_result: dict) -> None:
    r = quick_result
    assert r["segsim_steps"] > r["icet_steps"] > 0
    assert r["segsim_steps_per_s"] > 0
    assert r["icet_steps_per_s"] > 0
    assert r["segsim_compile_s"] >= 0
    assert r["segsim_steps_per_s"] == pytest.approx(r["segsim_steps"] / r["segsim_wall_s"])
    assert r["icet_steps_per_s"] == pytest.approx(r["icet_steps"] / r["icet_wall_s"])
    assert r["ratio"] == pytest.approx(r["segsim_steps_per_s"] / r["icet_steps_per_s"])


def test_bench_step0_energies_agree(quick_result: dict) -> None:
    r = quick_result
    assert r["step0_energies_agree"] is True
    assert abs(r["step0_segsim_energy_ev_per_site"] - r["step0_icet_energy_ev_per_site"]) < 1e-8
    assert r["icet_final_config_abs_diff_ev_per_site"] < 1e-8
    assert abs(r["segsim_energy_drift_ev"]) < 1e-8


def test_bench_statistics_are_finite(quick_result: dict) -> None:
    r = quick_result
    for code in ("segsim", "icet"):
        assert np.isfinite(r[f"{code}_energy_mean_ev_per_site"])
        assert r[f"{code}_energy_stderr_ev_per_site"] >= 0
        assert 0 < r[f"{code}_acceptance"] <= 1
    assert r["energy_diff_ev_per_site"] == pytest.approx(
        r["segsim_energy_mean_ev_per_site"] - r["icet_energy_mean_ev_per_site"]
    )
    assert r["energies_agree"] == (
        abs(r["energy_diff_ev_per_site"]) <= 3 * r["energy_diff_combined_stderr_ev_per_site"]
    )


def test_format_bench(quick_result: dict) -> None:
    text = format_bench(quick_result)
    assert "segsim" in text
    assert "icet" in text
    assert "ratio" in text
    assert f"{quick_result['ratio']:.1f}" in text


def test_bench_restores_global_random_state(quick_run: tuple[dict, float, float]) -> None:
    _, after, expected = quick_run
    assert after == expected


def test_bench_rejects_bad_arguments(tmp_path: Path) -> None:
    path = _write_random_ce(tmp_path / "tiny.ce")
    with pytest.raises(ValueError, match="x must be"):
        bench_mc(model_path=path, size=6, x=1.5, quick=True)
    with pytest.raises(FileNotFoundError):
        bench_mc(model_path=tmp_path / "missing.ce", size=6, quick=True)


def test_bench_kmc_rows_per_ce_and_aging_block(tmp_path: Path) -> None:
    """`segsim bench kmc` figures: per-size rows, plain events/s per CE, the aging block."""
    from segsim.bench import bench_kmc, format_bench_kmc
    from segsim.params.files import POTENTIALS_DIR

    repo = POTENTIALS_DIR.parent
    ces = (POTENTIALS_DIR / "provisional.ce", POTENTIALS_DIR / "fitted.ce")
    result = bench_kmc(
        model_path=ces[0],
        edges_nm=(6.0,),
        n_events=2000,
        with_clease=False,
        plain_ces=ces,
        aging_inputs=(repo / "inputs" / "aging_ddabr.yaml",),
        aging_days=0.01,
    )
    json.dumps(result)  # serialisable
    assert [r["edge_nm"] for r in result["sizes"]] == [6.0]
    assert result["sizes"][0]["n_events"] == 2000
    assert set(result["plain_by_ce"]) == {str(c) for c in ces}
    assert all(v > 0 for v in result["plain_by_ce"].values())
    aging = result["aging_14d"]["aging_ddabr"]
    assert aging["days"] == pytest.approx(0.01)
    assert aging["events"] == sum(aging["event_mix"].values()) > 0
    assert aging["peak_rss_mib"] > 0
    assert aging["speedup"] is None  # no acceleration yet: said, not faked
    text = format_bench_kmc(result)
    assert "aging aging_ddabr" in text
    assert "fitted.ce" in text
