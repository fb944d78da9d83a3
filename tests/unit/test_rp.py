"""RP domains: energy term, local changes, KMC with RP == naive twin, detailed balance, MC."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from segsim import kinetics, species
from segsim.engine import KMCEngine, KMCState, MCEngine, MCState
from segsim.kernels import kmc as K
from segsim.kernels import rp as KR
from segsim.models.cluster_expansion import ClusterExpansionModel
from segsim.rp import (
    MIN_DOMAIN_SITES,
    PH_RP,
    PH_ZONE,
    RPEnergetics,
    RPSeeding,
    cluster_sizes,
    rp_energy_ev,
    rp_observables,
    seed_zone,
)
from segsim.units import beta_per_ev
from tests.reference import naive
from tests.unit.test_kmc import PARAMS, _naive_deltas, _naive_params, _start

RP = RPEnergetics(eps_rp_ev=0.05, eta_ev=0.08, j_rp_ev=0.02, e_rp_a_ev=0.30)


def _naive_rp(rp, shift=0.0):
    return {"eps": rp.eps_rp_ev, "eta": rp.eta_ev, "j": rp.j_rp_ev, "e_rpa": rp.e_rp_a_ev,
            "shift": shift}  # fmt: skip


def _zone(lattice, rng, frac_rp=0.6):
    """A random RP zone: the two layers under the -z face, partly relaxed."""
    c = lattice.coords
    zone = lattice.in_nc & (c[:, 2] <= lattice.pad + 1)
    phase = np.zeros(lattice.n_sites, dtype=np.uint8)
    idx = np.flatnonzero(zone)
    phase[idx] = np.where(rng.random(idx.size) < frac_rp, PH_RP, PH_ZONE)
    return phase


@pytest.fixture(scope="module")
def rp_system(make_ce, make_cube):
    ce = make_ce([8.4, 6.0], np.random.default_rng(11), scale=0.04)
    model = ClusterExpansionModel(ce)
    lattice = make_cube(4, model.reach + 1)
    tables = model.compile(lattice)
    return ce, lattice, tables


# ------------------------------------------------------------------- energy and deltas
def test_rp_energy_and_local_changes_equal_full_sum_differences(rp_system):
    _, lattice, _ = rp_system
    rng = np.random.default_rng(1)
    nn = lattice.nn
    args = (RP.eps_rp_ev, RP.eta_ev, RP.j_rp_ev)
    nr = _naive_rp(RP)
    checked = {"hop": 0, "remove": 0, "flip": 0, "swap": 0}
    for trial in range(6):
        occ = _start(lattice, rng, 0.35, 10)
        phase = _zone(lattice, rng)
        e0 = naive.naive_rp_energy(occ, phase, nn, nr)
        assert rp_energy_ev(occ, phase, nn, RP) == pytest.approx(e0, abs=1e-12)
        if trial == 0:
            assert e0 != 0.0
        for site in np.flatnonzero(occ <= species.CD):
            for d in range(6):
                j = nn[site, d]
                if occ[j] == species.VAC:
                    after = occ.copy()
                    after[j], after[site] = occ[site], species.VAC
                    want = naive.naive_rp_energy(after, phase, nn, nr) - e0
                    assert KR._rp_hop_delta(occ, phase, nn, site, j, *args) == pytest.approx(
                        want, abs=1e-12
                    )
                    checked["hop"] += 1
            after = occ.copy()
            after[site] = species.VAC
            want = naive.naive_rp_energy(after, phase, nn, nr) - e0
            assert KR._rp_remove_delta(occ, phase, nn, site, *args) == pytest.approx(
                want, abs=1e-12
            )
            checked["remove"] += 1
            if phase[site] in (PH_RP, PH_ZONE):
                flipped = phase.copy()
                flipped[site] = PH_ZONE if phase[site] == PH_RP else PH_RP
                want = naive.naive_rp_energy(occ, flipped, nn, nr) - e0
                got = KR._rp_flip_delta(occ, phase, nn, site, *args)
                assert got == pytest.approx(want, abs=1e-12)
                checked["flip"] += 1
        pb = np.flatnonzero(occ == species.PB)
        cd = np.flatnonzero(occ == species.CD)
        for i, j in zip(rng.choice(pb, 40), rng.choice(cd, 40), strict=True):
            after = occ.copy()
            after[i], after[j] = species.CD, species.PB
            want = naive.naive_rp_energy(after, phase, nn, nr) - e0
            assert KR._rp_swap_delta(phase, i, j, RP.eta_ev) == pytest.approx(want, abs=1e-12)
            checked["swap"] += 1
    assert min(checked.values()) > 20, checked


# ------------------------------------------------------------------ KMC == naive twin
def _rp_engine(tables, lattice, occ, phase, params, temp, theta, seed, shift=0.0, rp=RP):
    ref = kinetics.removal_reference_ev(tables, lattice)
    kp = kinetics.parameter_vector(params, temperature_k=temp, theta=theta, removal_ref_ev=ref,
                                   rp=rp, rp_shift_ev=shift)  # fmt: skip
    state = KMCState.initial(occ, tables, phase)
    return KMCEngine(tables, lattice, state, np.random.default_rng(seed), kp), ref


@pytest.mark.parametrize("shift", [0.0, 0.12])
def test_rates_with_rp_equal_naive_rate_law(rp_system, shift):
    ce, lattice, tables = rp_system
    rng = np.random.default_rng(2)
    occ = _start(lattice, rng, 0.3, 8)
    phase = _zone(lattice, rng)
    eng, ref = _rp_engine(tables, lattice, occ, phase, PARAMS, 500.0, 0.4, 0, shift)
    flip, swap = _naive_deltas(ce, lattice.shape)
    p = _naive_params(PARAMS, 500.0, 0.4, ref, lattice.in_nc) | {
        "rp": _naive_rp(RP, shift),
        "phase": phase,
    }
    expected = np.zeros_like(eng.rates)
    for site, slot, rate in naive.naive_event_rates(occ, lattice.nn, flip, swap, p):
        expected[site, slot] = rate
    np.testing.assert_allclose(eng.rates, expected, rtol=1e-9, atol=0)
    assert (expected[:, K.SLOT_RP] > 0).sum() > 5
    # The shift acts on surface-adjacent sites only: some RP rates differ between the cases.
    base, _ = _rp_engine(tables, lattice, occ, phase, PARAMS, 500.0, 0.4, 0, 0.0)
    changed = eng.rates[:, K.SLOT_RP] != base.rates[:, K.SLOT_RP]
    assert changed.any() == (shift > 0)


@pytest.mark.parametrize("shift", [0.0, 0.12])
def test_kmc_with_rp_trajectory_equals_naive_twin(rp_system, shift):
    ce, lattice, tables = rp_system
    rng = np.random.default_rng(3)
    occ = _start(lattice, rng, 0.3, 6)
    phase = _zone(lattice, rng)
    temp, theta, n_events = 600.0, 0.4, 250
    eng, ref = _rp_engine(tables, lattice, occ, phase, PARAMS, temp, theta, 77, shift)
    n, log = eng.advance(1e3, max_events=n_events, log_events=n_events)
    flip, swap = _naive_deltas(ce, lattice.shape)
    p = _naive_params(PARAMS, temp, theta, ref, lattice.in_nc) | {
        "rp": _naive_rp(RP, shift),
        "phase": phase,
    }
    got = naive.naive_kmc(occ, lattice.nn, flip, swap, p, np.random.default_rng(77),
                          t_start=0.0, t_stop=1e3, max_events=n_events)  # fmt: skip
    assert n == n_events == len(got["events"])
    assert [(int(s), int(k)) for s, k in zip(log.site, log.slot, strict=True)] == [
        (s, k) for s, k, _ in got["events"]
    ]
    np.testing.assert_allclose(log.time_s, [t for _, _, t in got["events"]], rtol=1e-10)
    np.testing.assert_array_equal(eng.state.occupations, got["occupations"])
    np.testing.assert_array_equal(eng.state.phase, got["phase"])
    kinds = {int(k) for k in log.slot}
    assert {K.SLOT_RP, K.SLOT_EXPEL, K.SLOT_RECEDE} <= kinds
    assert kinds & set(range(6))
    assert abs(eng.energy_drift_ev()) < 1e-9
    e0 = tables.total_energy(occ) + rp_energy_ev(occ, phase, lattice.nn, RP)
    assert eng.state.energy_ev - e0 == pytest.approx(got["de_sum"], abs=1e-9)
    rates, tree = eng.rates.copy(), eng.tree.copy()
    eng.rebuild_rates()
    np.testing.assert_array_equal(eng.rates, rates)
    np.testing.assert_array_equal(eng.tree[1:], tree[1:])


def test_rp_off_leaves_phase_untouched_and_no_rp_events(rp_system):
    _, lattice, tables = rp_system
    rng = np.random.default_rng(4)
    occ = _start(lattice, rng, 0.3, 6)
    phase = _zone(lattice, rng)
    eng, _ = _rp_engine(tables, lattice, occ, phase, PARAMS, 600.0, 0.4, 5, rp=None)
    eng.advance(1e3, max_events=2000)
    np.testing.assert_array_equal(eng.state.phase, phase)
    assert eng.state.counts[K.EV_RP] == 0
    assert abs(eng.energy_drift_ev()) < 1e-9


# --------------------------------------------------------------------- detailed balance
def test_closed_system_with_rp_samples_the_canonical_distribution(make_ce, make_cube):
    """Hops + RP switches, no exits: time averages equal exact Boltzmann averages."""
    ce = make_ce([6.0], np.random.default_rng(21), scale=0.05)
    model = ClusterExpansionModel(ce)
    lattice = make_cube(3, model.reach + 1)
    tables = model.compile(lattice)
    nc = np.flatnonzero(lattice.in_nc)
    c = lattice.coords
    zone = np.flatnonzero(lattice.in_nc & (c[:, 2] == lattice.pad) & (c[:, 1] == lattice.pad + 1))
    assert zone.size == 3
    temp = 700.0
    rp = RPEnergetics(eps_rp_ev=0.03, eta_ev=0.09, j_rp_ev=0.02, e_rp_a_ev=0.12)

    def classify(o, ph):  # (Cd in the zone's RP?, number of RP zone sites) -> 8 classes
        cd = np.flatnonzero(o == species.CD)[0]
        return int(ph[cd] == PH_RP) * 4 + int((ph[zone] == PH_RP).sum())

    beta = beta_per_ev(temp)
    states = []
    for cd, v in itertools.permutations(nc, 2):
        o = lattice.empty_occupations()
        o[cd], o[v] = species.CD, species.VAC
        e_ce = tables.total_energy(o)
        for bits in itertools.product((PH_RP, PH_ZONE), repeat=3):
            ph = np.zeros(lattice.n_sites, dtype=np.uint8)
            ph[zone] = bits
            states.append((e_ce + rp_energy_ev(o, ph, lattice.nn, rp), classify(o, ph)))
    energies = np.array([e for e, _ in states])
    classes = [k for _, k in states]

    def dist(b):
        w = np.exp(-b * (energies - energies.min()))
        out = np.zeros(8)
        np.add.at(out, classes, w)
        return out / out.sum()

    exact = dist(beta)
    occ = lattice.empty_occupations()
    occ[nc[0]], occ[nc[13]] = species.CD, species.VAC
    phase = np.zeros(lattice.n_sites, dtype=np.uint8)
    phase[zone] = PH_RP
    closed = PARAMS.replace(expulsion=False, recession=False, e_kra_pb_ev=0.1, e_kra_cd_ev=0.15)
    eng, _ = _rp_engine(tables, lattice, occ, phase, closed, temp, 0.0, 31, rp=rp)
    eng.advance(np.inf, max_events=2_000)
    n_events, n_blocks = 200_000, 20
    o, ph = eng.state.occupations.copy(), eng.state.phase.copy()
    t_prev = eng.state.time_s
    _, log = eng.advance(np.inf, max_events=n_events, log_events=n_events)
    resid = np.zeros((n_events, 8))
    nn = lattice.nn
    for e, (site, slot, t) in enumerate(zip(log.site, log.slot, log.time_s, strict=True)):
        resid[e, classify(o, ph)] = t - t_prev
        t_prev = t
        if slot == K.SLOT_RP:
            ph[site] = PH_ZONE if ph[site] == PH_RP else PH_RP
        else:
            j = nn[site, slot]
            o[j], o[site] = o[site], species.VAC
    np.testing.assert_array_equal(o, eng.state.occupations)
    np.testing.assert_array_equal(ph, eng.state.phase)
    assert eng.state.counts[K.EV_RP] > 1000
    blocks = resid.reshape(n_blocks, -1, 8).sum(axis=1)
    frac = blocks / blocks.sum(axis=1, keepdims=True)
    mean = frac.mean(axis=0)
    err = frac.std(axis=0, ddof=1) / np.sqrt(n_blocks)
    mask = exact > 1e-3
    z = (mean[mask] - exact[mask]) / np.maximum(err[mask], 1e-4)
    assert np.all(np.abs(z) < 5), (mean, exact, z)
    z_hot = (mean[mask] - dist(beta / 1.3)[mask]) / np.maximum(err[mask], 1e-4)
    assert np.max(np.abs(z_hot)) > 8


# ---------------------------------------------------------------------- canonical MC
def test_mc_with_rp_equals_naive_chain_and_enriches_rp_in_cd(rp_system):
    ce, lattice, tables = rp_system
    rng = np.random.default_rng(8)
    occ = _start(lattice, rng, 0.25, 0)
    phase = _zone(lattice, rng, frac_rp=1.0)
    rp = RPEnergetics(eps_rp_ev=0.05, eta_ev=0.15, j_rp_ev=0.02, e_rp_a_ev=1.0)
    state = MCState.initial(occ, tables, phase)
    eng = MCEngine(tables, state, np.random.default_rng(9), temperature_k=343.0, rp=rp,
                   lattice=lattice)  # fmt: skip
    n_steps = 60  # chain comparison is exact only without round-off ties (asserted below)
    nce = naive.NaiveCE(ce)
    nr = _naive_rp(rp)

    def delta(o, i, j):
        after = o.copy()
        after[i], after[j] = o[j], o[i]
        return (
            nce.swap_delta_local(o, lattice.shape, i, j)
            + naive.naive_rp_energy(after, phase, lattice.nn, nr)
            - naive.naive_rp_energy(o, phase, lattice.nn, nr)
        )

    got = naive.naive_mc_chain(occ, state.pb_sites.copy(), state.cd_sites.copy(), n_steps,
                               beta_per_ev(343.0), delta, np.random.default_rng(9))  # fmt: skip
    assert got["n_near_ties"] == 0, "chain comparison ill-posed: choose another seed"
    eng.advance(n_steps)
    np.testing.assert_array_equal(eng.state.occupations, got["occupations"])
    assert eng.state.n_accepted == got["n_accepted"] > 10
    assert abs(eng.energy_drift_ev()) < 1e-9
    eng.advance(60_000)
    obs = rp_observables(eng.state.occupations, phase, lambda x: 5.87 - 0.4 * x, lattice.nn)
    assert obs["has_rp"] == 1.0
    # Thermal RP clusters of a relaxed zone (here 1, 2 and 7 sites) are not a domain; a
    # connected cluster of MIN_DOMAIN_SITES (8) is.
    occ = eng.state.occupations
    cat = np.flatnonzero(occ <= species.CD)
    lone = np.zeros_like(phase)
    lone[cat[0]] = PH_RP
    assert rp_observables(occ, lone, float, lattice.nn)["has_rp"] == 0.0
    assert rp_observables(occ, lone, float)["has_rp"] == 1.0  # no neighbour table: any site
    block = _connected_cations(lattice, occ, int(cat[len(cat) // 2]), MIN_DOMAIN_SITES)
    for n in (2, MIN_DOMAIN_SITES - 1):
        part = np.zeros_like(phase)
        part[block[:n]] = PH_RP
        got = rp_observables(occ, part, float, lattice.nn)
        assert got["has_rp"] == 0.0
        assert got["rp_fraction"] == n / len(cat)  # every RP site, domain or not
        assert np.isnan(got["x_rp"])  # inside domains: none
    part[block] = PH_RP
    got = rp_observables(occ, part, float, lattice.nn)
    assert got["has_rp"] == 1.0
    assert got["x_rp"] == np.mean(occ[block] == species.CD)
    assert obs["x_rp"] > 1.5 * obs["x_pv"]  # Cd enrichment of the RP domain
    assert obs["a_rp_angstrom"] < obs["a_pv_angstrom"]


# ------------------------------------------------------------------------- seeding
def test_seed_zone_geometry_and_probability(make_cube):
    lattice = make_cube(10, 2)
    sd = RPSeeding(probability=1.0, thickness_layers=2, width_fraction=0.5)
    for seed in range(6):
        phase = seed_zone(lattice, sd, np.random.default_rng(seed))
        rp = np.flatnonzero(phase == PH_RP)
        assert rp.size == 2 * 5 * 5
        assert lattice.in_nc[rp].all()
        assert (lattice.depth[rp] <= 1).all()
        assert (lattice.n_outside_nn[rp] >= 1).sum() == 25
        span = np.ptp(lattice.coords[rp], axis=0)
        assert sorted(span.tolist()) == [1, 4, 4]
    none = RPSeeding(probability=0.0, thickness_layers=2, width_fraction=0.5)
    assert not seed_zone(lattice, none, np.random.default_rng(0)).any()
    half = RPSeeding(probability=0.63, thickness_layers=2, width_fraction=0.5)
    hits = [seed_zone(lattice, half, np.random.default_rng(s)).any() for s in range(400)]
    assert abs(np.mean(hits) - 0.63) < 4 * np.sqrt(0.63 * 0.37 / 400)


def _connected_cations(lattice, occ, start, n):
    """Return ``n`` cation sites connected through ``lattice.nn``, breadth first from ``start``."""
    seen, queue = [start], [start]
    while queue and len(seen) < n:
        for j in lattice.nn[queue.pop(0)]:
            if occ[j] <= species.CD and int(j) not in seen and len(seen) < n:
                seen.append(int(j))
                queue.append(int(j))
    assert len(seen) == n
    return np.array(seen)


def _naive_cluster_sizes(mask, nn):
    """Obviously correct twin of :func:`segsim.rp.cluster_sizes`: one flood fill per cluster."""
    size = np.zeros(len(mask), dtype=np.int64)
    done = set()
    for i in np.flatnonzero(mask):
        if i in done:
            continue
        members, stack = {int(i)}, [int(i)]
        while stack:
            for j in nn[stack.pop()]:
                if mask[j] and int(j) not in members:
                    members.add(int(j))
                    stack.append(int(j))
        for m in members:
            size[m] = len(members)
        done |= members
    return size


@pytest.mark.parametrize("density", [0.05, 0.25, 0.35, 0.6])
def test_cluster_sizes_equal_a_flood_fill(make_cube, density):
    lattice = make_cube(7, 2)  # periodic box: clusters may wrap around it
    rng = np.random.default_rng(int(density * 100))
    mask = rng.random(lattice.n_sites) < density
    got = cluster_sizes(mask, lattice.nn)
    np.testing.assert_array_equal(got, _naive_cluster_sizes(mask, lattice.nn))
    assert (got[~mask] == 0).all()
    if density >= 0.35:  # above percolation (0.31 on the cubic lattice): one large cluster
        assert got.max() > 0.5 * mask.sum()
    assert cluster_sizes(np.zeros(lattice.n_sites, bool), lattice.nn).sum() == 0
