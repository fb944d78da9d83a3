"""Canonical Metropolis Monte Carlo: kernel == naive twin, exact Boltzmann sampling, drift."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from scipy import stats

from segsim import species
from segsim.engine import MCEngine, MCState
from segsim.kernels.metropolis import _run_mc_chunk
from segsim.models.cluster_expansion import ClusterExpansionModel
from segsim.units import K_B_EV_PER_K, beta_per_ev
from tests.reference import naive


def _start(lattice, rng, x_cd, n_vac=0):
    """NC occupations with Cd fraction ``x_cd`` and ``n_vac`` vacancies; O outside."""
    occ = lattice.empty_occupations()
    nc = np.flatnonzero(lattice.in_nc)
    chosen = rng.choice(nc, size=round(x_cd * nc.size) + n_vac, replace=False)
    occ[chosen[n_vac:]] = species.CD
    occ[chosen[:n_vac]] = species.VAC
    return occ


def _assert_state_consistent(state, occ0):
    occ = state.occupations
    np.testing.assert_array_equal(np.sort(state.pb_sites), np.flatnonzero(occ == species.PB))
    np.testing.assert_array_equal(np.sort(state.cd_sites), np.flatnonzero(occ == species.CD))
    # Only Pb and Cd move; vacancies and outside sites stay where they are.
    np.testing.assert_array_equal(occ == species.VAC, occ0 == species.VAC)
    np.testing.assert_array_equal(occ == species.OUT, occ0 == species.OUT)


# ---------------------------------------------------------------------- kernel == naive
def _chain_setup(make_ce, make_cube, ce_seed=18):
    ce = make_ce([12.0, 8.4], np.random.default_rng(ce_seed), scale=0.03)
    model = ClusterExpansionModel(ce)
    lattice = make_cube(4, model.reach + 1)
    tables = model.compile(lattice)
    occ0 = _start(lattice, np.random.default_rng(1), 0.3, n_vac=4)
    pb0 = np.flatnonzero(occ0 == species.PB).astype(np.int64)
    # A scrambled list order: the order is part of the state.
    cd0 = np.random.default_rng(2).permutation(np.flatnonzero(occ0 == species.CD)).astype(np.int64)
    return ce, lattice, tables, occ0, pb0, cd0


def _kernel_chain(tables, occ0, pb0, cd0, n_steps, beta, seed):
    occ, pb, cd = occ0.copy(), pb0.copy(), cd0.copy()
    rng = np.random.default_rng(seed)
    n_acc, de_sum = _run_mc_chunk(
        occ,
        np.zeros_like(occ),
        pb,
        cd,
        n_steps,
        beta,
        0.0,
        tables.nbr,
        tables.ce_index,
        tables.weights,
        tables.local_table,
        rng,
    )
    return {
        "occupations": occ,
        "pb_sites": pb,
        "cd_sites": cd,
        "n_accepted": n_acc,
        "de_sum": de_sum,
        "rng": rng,
    }


def _assert_same_chain(got, ref, rng_ref):
    np.testing.assert_array_equal(got["occupations"], ref["occupations"])
    np.testing.assert_array_equal(got["pb_sites"], ref["pb_sites"])
    np.testing.assert_array_equal(got["cd_sites"], ref["cd_sites"])
    assert got["n_accepted"] == ref["n_accepted"]
    assert got["de_sum"] == pytest.approx(ref["de_sum"], abs=1e-9)
    assert got["rng"].bit_generator.state == rng_ref.bit_generator.state


@pytest.mark.parametrize("temperature_k", [300.0, 3000.0])
def test_kernel_chain_equals_naive_chain(make_ce, make_cube, temperature_k):
    # The twin computes every dE from icet's orbit list (naive local sum), not from the
    # compiled tables.
    ce, lattice, tables, occ0, pb0, cd0 = _chain_setup(make_ce, make_cube)
    twin = naive.NaiveCE(ce)
    beta = beta_per_ev(temperature_k)
    n_steps = 400
    rng_naive = np.random.default_rng(99)
    ref = naive.naive_mc_chain(
        occ0,
        pb0,
        cd0,
        n_steps,
        beta,
        lambda occ, i, j: twin.swap_delta_local(occ, lattice.shape, i, j),
        rng_naive,
    )
    # With a trial at dE = 0 up to round-off the two chains may legitimately differ in
    # whether they draw a third number (see naive_mc_chain); this setup has none.
    assert ref["n_near_ties"] == 0, "chain comparison ill-posed: choose another seed"
    got = _kernel_chain(tables, occ0, pb0, cd0, n_steps, beta, 99)
    _assert_same_chain(got, ref, rng_naive)
    # The chain exercised every branch: downhill moves, and uphill moves both accepted and
    # rejected (so the third draw happened and mattered).
    de = ref["de_trials"]
    assert np.any(de <= 0.0)
    assert np.sum(de > 0.0) > 10
    assert 0 < got["n_accepted"] < n_steps
    assert got["n_accepted"] > np.sum(de <= 0.0)
    # The final energy difference is what the chain summed.
    de_total = tables.total_energy(got["occupations"]) - tables.total_energy(occ0)
    assert got["de_sum"] == pytest.approx(de_total, abs=1e-9)


@pytest.mark.parametrize("temperature_k", [30.0, 300.0, 3000.0, 1e6])
def test_kernel_chain_equals_naive_chain_with_table_energies(make_ce, make_cube, temperature_k):
    # Same comparison with the twin's dE taken from the public tables wrapper (the same
    # _swap_delta kernel): this checks selection, acceptance and bookkeeping over a long
    # chain, ties included.
    _, _, tables, occ0, pb0, cd0 = _chain_setup(make_ce, make_cube, ce_seed=17)
    beta = beta_per_ev(temperature_k)
    n_steps = 5000
    rng_naive = np.random.default_rng(123)
    ref = naive.naive_mc_chain(occ0, pb0, cd0, n_steps, beta, tables.swap_energy_change, rng_naive)
    got = _kernel_chain(tables, occ0, pb0, cd0, n_steps, beta, 123)
    _assert_same_chain(got, ref, rng_naive)
    assert 0 < got["n_accepted"] < n_steps
    assert ref["n_near_ties"] > 0  # this setup has round-off ties, and they agree too


def test_kernel_chain_with_zero_energies_equals_naive_chain(make_ce_with, make_cube, n_params):
    # All ECIs zero: every dE is exactly 0, so every trial is accepted without a third draw
    # (``dE <= 0``): the generator advances by exactly two numbers per trial.
    cutoffs = [12.0, 8.4]
    ce = make_ce_with(cutoffs, np.zeros(n_params(cutoffs)))
    model = ClusterExpansionModel(ce)
    lattice = make_cube(4, 1)
    tables = model.compile(lattice)
    twin = naive.NaiveCE(ce)
    occ0 = _start(lattice, np.random.default_rng(3), 0.4, n_vac=2)
    pb0 = np.flatnonzero(occ0 == species.PB).astype(np.int64)
    cd0 = np.flatnonzero(occ0 == species.CD).astype(np.int64)
    n_steps = 300
    rng_naive = np.random.default_rng(5)
    ref = naive.naive_mc_chain(
        occ0,
        pb0,
        cd0,
        n_steps,
        beta_per_ev(300.0),
        lambda occ, i, j: twin.swap_delta_local(occ, lattice.shape, i, j),
        rng_naive,
    )
    assert np.all(ref["de_trials"] == 0.0)
    got = _kernel_chain(tables, occ0, pb0, cd0, n_steps, beta_per_ev(300.0), 5)
    _assert_same_chain(got, ref, rng_naive)
    assert got["n_accepted"] == n_steps
    two_per_trial = np.random.default_rng(5)
    two_per_trial.random(2 * n_steps)
    assert got["rng"].bit_generator.state == two_per_trial.bit_generator.state


def test_engine_chunking_does_not_change_the_chain(make_ce, make_cube):
    ce = make_ce([12.0, 8.4, 8.4], np.random.default_rng(4))
    model = ClusterExpansionModel(ce)
    lattice = make_cube(5, model.reach + 1)
    tables = model.compile(lattice)
    occ0 = _start(lattice, np.random.default_rng(5), 0.25, n_vac=3)
    one = MCEngine(
        tables, MCState.initial(occ0, tables), np.random.default_rng(6), temperature_k=600.0
    )
    many = MCEngine(
        tables, MCState.initial(occ0, tables), np.random.default_rng(6), temperature_k=600.0
    )
    one.advance(3000)
    for n in (1, 0, 999, 1000, 500, 500):
        many.advance(n)
    np.testing.assert_array_equal(one.state.occupations, many.state.occupations)
    np.testing.assert_array_equal(one.state.pb_sites, many.state.pb_sites)
    np.testing.assert_array_equal(one.state.cd_sites, many.state.cd_sites)
    assert one.state.n_accepted == many.state.n_accepted > 0
    assert one.state.step == many.state.step == 3000
    assert one.rng.bit_generator.state == many.rng.bit_generator.state
    _assert_state_consistent(many.state, occ0)


def test_chain_without_pb_or_cd_does_nothing(make_ce, make_cube):
    ce = make_ce([8.4], np.random.default_rng(0))
    model = ClusterExpansionModel(ce)
    lattice = make_cube(3, model.reach + 1)
    tables = model.compile(lattice)
    occ = lattice.empty_occupations()  # all Pb, no Cd
    engine = MCEngine(
        tables, MCState.initial(occ, tables), np.random.default_rng(0), temperature_k=300.0
    )
    state_before = engine.rng.bit_generator.state
    assert engine.advance(100) == 0
    np.testing.assert_array_equal(engine.state.occupations, occ)
    assert engine.rng.bit_generator.state == state_before
    with pytest.raises(ValueError, match=">= 0"):
        engine.advance(-1)


# ---------------------------------------------------------------------- exact Boltzmann
def _chisquare_pvalue(counts, probs, min_expected=5.0):
    """Chi-square goodness-of-fit p-value, pooling the bins with small expected counts."""
    counts = np.asarray(counts, dtype=float)
    expected = counts.sum() * np.asarray(probs, dtype=float) / np.sum(probs)
    order = np.argsort(expected)
    exp_sorted, obs_sorted = expected[order], counts[order]
    # Pool the smallest bins together until the pool reaches min_expected.
    cut = int(np.searchsorted(np.cumsum(exp_sorted), min_expected)) + 1
    cut = max(cut, int(np.sum(exp_sorted < min_expected)))
    if cut > 0:
        exp_sorted = np.concatenate([[exp_sorted[:cut].sum()], exp_sorted[cut:]])
        obs_sorted = np.concatenate([[obs_sorted[:cut].sum()], obs_sorted[cut:]])
    assert exp_sorted.min() >= min_expected
    return stats.chisquare(obs_sorted, exp_sorted).pvalue


def test_metropolis_samples_exact_boltzmann_distribution(make_ce_with, make_cube, n_params):
    # 3 x 3 x 3 NC with 2 Cd: C(27, 2) = 351 configurations, all enumerated.
    cutoffs = [8.4, 8.4]  # pairs at a and sqrt(2) a, triplets: reach 1
    temperature_k = 300.0
    kt = K_B_EV_PER_K * temperature_k
    raw = np.random.default_rng(2024).normal(size=n_params(cutoffs))
    raw[0] = 0.0
    model = ClusterExpansionModel(make_ce_with(cutoffs, raw))
    lattice = make_cube(3, model.reach + 1)
    nc = np.flatnonzero(lattice.in_nc)
    configs = list(itertools.combinations(nc.tolist(), 2))
    assert len(configs) == 351

    def occupations(cfg):
        occ = lattice.empty_occupations()
        occ[list(cfg)] = species.CD
        return occ

    # Energies are linear in the parameters: scale them so that the spread is ~ kT.
    e_raw = np.array([model.predict_total(lattice, occupations(c)) for c in configs])
    scale = kt / np.std(e_raw)
    model = ClusterExpansionModel(make_ce_with(cutoffs, raw * scale))
    tables = model.compile(lattice)
    energies = np.array([model.predict_total(lattice, occupations(c)) for c in configs])
    np.testing.assert_allclose(energies, e_raw * scale, rtol=0, atol=1e-9)
    assert 4.0 < np.ptp(energies) / kt < 12.0

    def boltzmann(t_k):
        w = np.exp(-(energies - energies.min()) / (K_B_EV_PER_K * t_k))
        return w / w.sum()

    index = {c: k for k, c in enumerate(configs)}
    engine = MCEngine(
        tables,
        MCState.initial(occupations(configs[0]), tables),
        np.random.default_rng(7),
        temperature_k=temperature_k,
    )
    engine.advance(2000)
    n_samples, thin = 60_000, 25
    counts = np.zeros(len(configs))
    for _ in range(n_samples):
        engine.advance(thin)
        counts[index[tuple(sorted(engine.state.cd_sites.tolist()))]] += 1
    assert engine.state.n_accepted > n_samples * thin // 10

    p_right = _chisquare_pvalue(counts, boltzmann(temperature_k))
    assert p_right > 1e-3, p_right
    # The test has power: the same histogram is rejected at a wrong temperature.
    p_wrong = _chisquare_pvalue(counts, boltzmann(3.0 * temperature_k))
    assert p_wrong < 1e-6, p_wrong
    p_close = _chisquare_pvalue(counts, boltzmann(1.2 * temperature_k))
    assert p_close < 1e-6, p_close
    p_uniform = _chisquare_pvalue(counts, np.ones(len(configs)))
    assert p_uniform < 1e-6, p_uniform
    assert abs(engine.energy_drift_ev()) < 1e-9


# ---------------------------------------------------------------------- flat profile
def _layer_profile_z(make_ce_with, make_cube, n_params, cutoffs, params, seed):
    """Run MC on an 8-cube at x = 0.25; return (z-scores of layer means vs x, SE ratios)."""
    x = 0.25
    model = ClusterExpansionModel(make_ce_with(cutoffs, params))
    lattice = make_cube(8, model.reach + 1)
    tables = model.compile(lattice)
    occ0 = _start(lattice, np.random.default_rng(seed), x)
    engine = MCEngine(
        tables, MCState.initial(occ0, tables), np.random.default_rng(seed + 1), temperature_k=300.0
    )
    layers = [lattice.depth == d for d in range(lattice.n_layers)]
    sizes = np.array([m.sum() for m in layers])
    assert sizes.tolist() == [296, 152, 56, 8]
    engine.advance(5000)
    n_blocks, per_block, thin = 40, 50, 1000
    block_means = np.zeros((n_blocks, len(layers)))
    for b in range(n_blocks):
        acc = np.zeros(len(layers))
        for _ in range(per_block):
            engine.advance(thin)
            cd = engine.state.occupations == species.CD
            acc += [cd[m].mean() for m in layers]
        block_means[b] = acc / per_block
    _assert_state_consistent(engine.state, occ0)
    mean = block_means.mean(axis=0)
    se = block_means.std(axis=0, ddof=1) / np.sqrt(n_blocks)
    # Hypergeometric standard error of independent uniform samples, for comparison.
    n_nc, n_cd = lattice.n_nc_sites, round(x * lattice.n_nc_sites)
    var_h = x * (1 - x) / sizes * (n_nc - sizes) / (n_nc - 1)
    se_h = np.sqrt(var_h / (n_blocks * per_block))
    assert n_cd == 128
    with np.errstate(divide="ignore"):  # a layer may hold no Cd at all when segregated
        return (mean - x) / se, se / se_h


def test_zero_eci_gives_flat_cd_profile(make_ce_with, make_cube, n_params):
    cutoffs = [8.4]
    z, se_ratio = _layer_profile_z(
        make_ce_with, make_cube, n_params, cutoffs, np.zeros(n_params(cutoffs)), seed=30
    )
    assert np.all(np.abs(z) < 4.0), z
    # The samples are decorrelated: block errors match those of independent draws.
    assert np.all((se_ratio > 0.5) & (se_ratio < 2.0)), se_ratio


def test_flat_profile_check_detects_segregation(make_ce_with, make_cube, n_params):
    # Power of the check above: a nearest-neighbour Cd-X interaction (Cd attracted to or
    # repelled from the surface) makes the same statistic fail.
    cutoffs = [6.0]
    params = np.random.default_rng(8).normal(0.0, 0.05, size=n_params(cutoffs))
    z, _ = _layer_profile_z(make_ce_with, make_cube, n_params, cutoffs, params, seed=31)
    assert np.max(np.abs(z)) > 10.0, z


# ---------------------------------------------------------------------- energy drift
def test_running_energy_has_no_drift(make_ce, make_cube):
    ce = make_ce([12.0, 8.4, 8.4], np.random.default_rng(12), scale=0.05)
    model = ClusterExpansionModel(ce)
    lattice = make_cube(5, model.reach + 1)
    tables = model.compile(lattice)
    occ0 = _start(lattice, np.random.default_rng(13), 0.3, n_vac=5)
    engine = MCEngine(
        tables, MCState.initial(occ0, tables), np.random.default_rng(14), temperature_k=800.0
    )
    e0 = engine.state.energy_ev
    for _ in range(200):
        engine.advance(1000)
    assert engine.state.step == 200_000
    assert engine.state.n_accepted > 10_000
    assert abs(engine.state.energy_ev - e0) > 0.1  # it went somewhere
    assert abs(engine.energy_drift_ev()) < 1e-9
    assert engine.state.energy_ev == pytest.approx(
        model.predict_total(lattice, engine.state.occupations), abs=1e-8
    )
    _assert_state_consistent(engine.state, occ0)
