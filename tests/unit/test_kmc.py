"""Lattice KMC: sum tree, kernel == naive twin, detailed balance, conservation, diffusion."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from segsim import kinetics, species
from segsim.engine import KMCEngine, KMCState
from segsim.kernels import kmc as K
from segsim.kernels.select import _tree_build, _tree_sample, _tree_update
from segsim.lattice import NN_DISPLACEMENTS, build_periodic
from segsim.models.cluster_expansion import ClusterExpansionModel
from segsim.units import beta_per_ev
from tests.reference import naive

PARAMS = kinetics.KineticsParams(
    attempt_frequency_per_s=1e13,
    e_kra_pb_ev=0.30,
    e_kra_cd_ev=0.25,
    e_exp_pb_ev=0.45,
    e_exp_cd_ev=0.35,
    bep_alpha=0.5,
    e_rec_ev=0.32,
    bep_alpha_recession=0.4,  # on, so that the four-species recession term is tested
    # distinct KRA shifts with 1 and 2 Cd on the hop's axis: a swapped index changes rates
    de_kra_pb_1cd_ev=0.05,
    de_kra_pb_2cd_ev=-0.04,
    de_kra_cd_1cd_ev=-0.08,
    de_kra_cd_2cd_ev=0.06,
)


MU_CSBR = -6.676  # eV per CsBr unit: the CHGNet value of potentials/derived_parameters.yaml


def _naive_params(params, temperature_k, theta, ref, synth, mu=0.0):
    return {
        "beta": beta_per_ev(temperature_k),
        "nu": params.attempt_frequency_per_s,
        "e_kra": {species.PB: params.e_kra_pb_ev, species.CD: params.e_kra_cd_ev},
        "de_kra": {
            species.PB: (params.de_kra_pb_1cd_ev, params.de_kra_pb_2cd_ev),
            species.CD: (params.de_kra_cd_1cd_ev, params.de_kra_cd_2cd_ev),
        },
        "e_exp": {species.PB: params.e_exp_pb_ev, species.CD: params.e_exp_cd_ev},
        "ref": {species.PB: ref[0], species.CD: ref[1]},
        "alpha": params.bep_alpha,
        "e_rec": params.e_rec_ev,
        "alpha_rec": params.bep_alpha_recession,
        "mu_rec": mu + params.delta_mu_csbr_ev,
        "synth": synth,
        "regrowth": params.regrowth,
        "theta": theta,
        "hop": params.hop,
        "expulsion": params.expulsion,
        "recession": params.recession,
    }


def _start(lattice, rng, x_cd, n_vac):
    occ = lattice.empty_occupations()
    nc = np.flatnonzero(lattice.in_nc)
    chosen = rng.choice(nc, size=round(x_cd * nc.size) + n_vac, replace=False)
    occ[chosen[n_vac:]] = species.CD
    occ[chosen[:n_vac]] = species.VAC
    return occ


def _engine(tables, lattice, occ, params, temperature_k, theta, seed, mu=0.0):
    ref = kinetics.removal_reference_ev(tables, lattice) if lattice.pad else (0.0, 0.0, 0.0)
    kp = kinetics.parameter_vector(params, temperature_k=temperature_k, theta=theta,
                                   removal_ref_ev=ref, recession_mu_csbr_ev=mu)  # fmt: skip
    state = KMCState.initial(occ, tables)
    return KMCEngine(tables, lattice, state, np.random.default_rng(seed), kp), ref


# ------------------------------------------------------------------------------ sum tree
def test_sum_tree_matches_linear_scan_and_rebuild():
    rng = np.random.default_rng(3)
    n = 37
    leaves = rng.random(n) * (rng.random(n) < 0.6)
    tree = np.zeros(128)
    _tree_build(tree, leaves)
    for _ in range(200):  # random updates, some to zero
        k = int(rng.integers(n))
        leaves[k] = 0.0 if rng.random() < 0.3 else rng.random()
        _tree_update(tree, k, leaves[k])
    assert tree[1] == pytest.approx(leaves.sum(), rel=1e-14)
    rebuilt = np.zeros(128)
    _tree_build(rebuilt, leaves)
    np.testing.assert_array_equal(tree[1:], rebuilt[1:])  # bitwise: no drift
    cum = np.cumsum(leaves)
    for u in rng.random(2000):
        target = u * tree[1]
        leaf, rem = _tree_sample(tree, target)
        expected = int(np.searchsorted(cum, target, side="right"))
        if min(abs(cum - target)) > 1e-12:  # not at a boundary
            assert leaf == expected
        assert leaves[leaf] > 0.0
        assert -1e-12 <= rem < leaves[leaf] + 1e-12


def test_sum_tree_sampling_frequencies():
    leaves = np.array([0.0, 1.0, 0.0, 3.0, 0.5, 0.0, 0.0])
    tree = np.zeros(16)
    _tree_build(tree, leaves)
    rng = np.random.default_rng(4)
    counts = np.zeros(leaves.size)
    for u in rng.random(40000):
        counts[_tree_sample(tree, u * tree[1])[0]] += 1
    expected = 40000 * leaves / leaves.sum()
    assert counts[leaves == 0].sum() == 0
    nz = leaves > 0
    assert np.all(np.abs(counts[nz] - expected[nz]) < 5 * np.sqrt(expected[nz]))


# ---------------------------------------------------------------- kernel == naive twin
@pytest.fixture(
    scope="module",
    params=[(False, 6.0), (True, 6.0), (True, 8.4)],
    ids=["PbCdX", "PbCdVX", "PbCdVX-triplets"],
)
def small_system(make_ce, make_cube, request):
    # three-species CE (V and O both X) and four-species CE (V its own species), pairs only
    # (the kernel's integer pair field alone) and with triplets (the field plus the float
    # multi-site table, segsim.engine.pair_field_tables)
    separate, triplet_cutoff = request.param
    ce = make_ce([8.4, triplet_cutoff], np.random.default_rng(11), scale=0.04,
                 separate_vacancy=separate)  # fmt: skip
    model = ClusterExpansionModel(ce)
    lattice = make_cube(4, model.reach + 1)
    tables = model.compile(lattice)
    return ce, model, lattice, tables


def _naive_deltas(ce, shape):
    nce = naive.NaiveCE(ce)

    def flip(o, s, c):
        return nce.flip_delta_local(o, shape, s, c)

    def swap(o, i, j):
        return nce.swap_delta_local(o, shape, i, j)

    return flip, swap


@pytest.mark.parametrize(("theta", "mu"), [(0.0, 0.0), (0.6, 0.0), (0.3, MU_CSBR)])
def test_rates_equal_naive_rate_law(small_system, theta, mu):
    ce, _, lattice, tables = small_system
    occ = _start(lattice, np.random.default_rng(5), 0.3, 8)
    occ[lattice.site_index(np.array([2]), np.array([2]), np.array([2]))] = species.OUT  # a pit
    eng, ref = _engine(tables, lattice, occ, PARAMS, 500.0, theta, 0, mu)
    flip, swap = _naive_deltas(ce, lattice.shape)
    expected = np.zeros_like(eng.rates)
    for site, slot, rate in naive.naive_event_rates(
        occ, lattice.nn, flip, swap, _naive_params(PARAMS, 500.0, theta, ref, lattice.in_nc, mu)
    ):
        expected[site, slot] = rate
    np.testing.assert_allclose(eng.rates, expected, rtol=1e-9, atol=0)
    np.testing.assert_allclose(eng.site_total, expected.sum(axis=1), rtol=1e-9, atol=0)
    assert eng.total_rate_per_s == pytest.approx(expected.sum(), rel=1e-12)
    # Every kind of event is present in this configuration.
    for present in ((expected[:, :6] > 0).any(), (expected[:, 6] > 0).any(),
                    (expected[:, 7] > 0).any(), not (expected[:, 8] > 0).any()):  # fmt: skip
        assert present


def test_surface_exchange_barriers_and_detailed_balance(small_system):
    """Recession V -> O and regrowth O -> V: KRA-type barriers over ``dOmega`` (docs/model.md).

    ``Ea(V -> O) = max(E_rec + alpha dOmega, dOmega, 0)`` with the grand-canonical
    ``dOmega = dE(V -> O) - (2 - k) mu_CsBr``; the regrowth of the receded site comes back over
    the same saddle, so ``rate(V -> O) / rate(O -> V) = exp(-dOmega / kT)`` on every site kind
    (face, edge, corner) and for any share ``alpha``.  Three-species CE: ``dE = 0``.
    """
    _, model, lattice, tables = small_system
    temp = 500.0
    beta = beta_per_ev(temp)
    p, n = lattice.pad, lattice.n_edge
    c0 = p + n // 2
    sites = {
        "face": (c0, c0, p),
        "edge": (c0, p, p),
        "corner": (p, p, p),
    }
    nu, e_rec = PARAMS.attempt_frequency_per_s, PARAMS.e_rec_ev
    for alpha in (0.0, 0.4, 1.0):
        params = PARAMS.replace(bep_alpha_recession=alpha)
        for name, xyz in sites.items():
            site = int(lattice.site_index(*(np.array([v]) for v in xyz))[0])
            k = int(lattice.n_outside_nn[site])
            assert k == {"face": 1, "edge": 2, "corner": 3}[name]
            occ = lattice.empty_occupations()
            occ[site] = species.VAC
            de = tables.flip_energy_change(occ, site, species.OUT)
            if model.n_ce_species == 3:
                assert de == 0.0
            for mu in (0.0, MU_CSBR):
                d_omega = de - (2 - k) * mu
                rec, _ = _engine(tables, lattice, occ, params, temp, 0.0, 0, mu)
                ea = max(e_rec + alpha * d_omega, d_omega, 0.0)
                assert rec.rates[site, K.SLOT_RECEDE] == pytest.approx(
                    nu * np.exp(-beta * ea), rel=1e-9
                )
                receded = occ.copy()
                receded[site] = species.OUT
                grow, _ = _engine(tables, lattice, receded, params, temp, 0.0, 0, mu)
                ratio = rec.rates[site, K.SLOT_RECEDE] / grow.rates[site, K.SLOT_RECEDE]
                assert ratio == pytest.approx(np.exp(-beta * d_omega), rel=1e-9)
                # without regrowth the receded site stays outside (irreversible recession)
                off, _ = _engine(tables, lattice, receded, params.replace(regrowth=False), temp,
                                 0.0, 0, mu)  # fmt: skip
                assert off.rates[site, K.SLOT_RECEDE] == 0.0
    # an outside site beyond the synthesised cube never regrows
    pad_site = int(lattice.site_index(np.array([c0]), np.array([c0]), np.array([p - 1]))[0])
    eng, _ = _engine(tables, lattice, lattice.empty_occupations(), PARAMS, temp, 0.0, 0)
    assert not lattice.in_nc[pad_site]
    assert eng.rates[pad_site].sum() == 0.0


def test_trained_mu_csbr_reaches_the_kmc_only_for_four_species(make_ce, make_cube):
    """``mu_csbr_ev`` in a CE's metadata is compiled into the tables of a four-species CE."""
    for separate in (False, True):
        ce = make_ce([6.0], np.random.default_rng(2), scale=0.04, separate_vacancy=separate)
        assert kinetics.recession_mu_csbr_ev(ClusterExpansionModel(ce).compile(
            make_cube(3, 2))) == 0.0  # fmt: skip
        ce.metadata["mu_csbr_ev"] = MU_CSBR
        model = ClusterExpansionModel(ce)
        assert model.mu_csbr_ev == MU_CSBR
        assert model.separate_vacancy is separate
        mu = kinetics.recession_mu_csbr_ev(model.compile(make_cube(3, model.reach + 1)))
        assert mu == (MU_CSBR if separate else 0.0)
        kp = kinetics.parameter_vector(PARAMS, temperature_k=300.0, theta=0.0,
                                       recession_mu_csbr_ev=mu)  # fmt: skip
        assert kp[K.KP_MU_REC] == mu


@pytest.mark.parametrize("mu", [0.0, -0.2])  # a small mu_CsBr keeps every event type present
def test_kernel_trajectory_equals_naive_twin(small_system, mu):
    """Same seed, same events, same times, same final state; all three event types occur."""
    ce, _, lattice, tables = small_system
    occ = _start(lattice, np.random.default_rng(6), 0.3, 6)
    theta, temp = 0.4, 600.0
    eng, ref = _engine(tables, lattice, occ, PARAMS, temp, theta, 123, mu)
    n_events = 120  # a 4^3 NC dissolves in about 140 (all sites expelled and receded)
    n, log = eng.advance(1e3, max_events=n_events, log_events=n_events)
    flip, swap = _naive_deltas(ce, lattice.shape)
    got = naive.naive_kmc(occ, lattice.nn, flip, swap, _naive_params(PARAMS, temp, theta, ref, lattice.in_nc, mu),
                          np.random.default_rng(123), t_start=0.0, t_stop=1e3,
                          max_events=n_events)  # fmt: skip
    assert n == len(got["events"])
    assert n == n_events
    assert [(int(s), int(k)) for s, k in zip(log.site, log.slot, strict=True)] == [
        (s, k) for s, k, _ in got["events"]
    ]
    np.testing.assert_allclose(log.time_s, [t for _, _, t in got["events"]], rtol=1e-10)
    np.testing.assert_array_equal(eng.state.occupations, got["occupations"])
    assert eng.state.energy_ev - eng.energy_drift_ev() == pytest.approx(
        eng.state.energy_ev, abs=1e-9
    )
    kinds = {int(k) for k in log.slot}
    assert kinds & set(range(6))
    assert K.SLOT_EXPEL in kinds
    assert K.SLOT_RECEDE in kinds
    # The incrementally maintained rates equal a rebuild from scratch.
    rates, tree = eng.rates.copy(), eng.tree.copy()
    eng.rebuild_rates()
    np.testing.assert_array_equal(eng.rates, rates)
    np.testing.assert_array_equal(eng.tree[1:], tree[1:])


def test_kernel_stops_at_t_stop_like_naive(small_system):
    ce, _, lattice, tables = small_system
    occ = _start(lattice, np.random.default_rng(7), 0.3, 4)
    eng, ref = _engine(tables, lattice, occ, PARAMS, 600.0, 0.4, 9)
    t_stop = 20.0 / eng.total_rate_per_s  # about 20 events
    n, _ = eng.advance(t_stop, log_events=1000)
    flip, swap = _naive_deltas(ce, lattice.shape)
    got = naive.naive_kmc(occ, lattice.nn, flip, swap, _naive_params(PARAMS, 600.0, 0.4, ref, lattice.in_nc),
                          np.random.default_rng(9), t_start=0.0, t_stop=t_stop,
                          max_events=1000)  # fmt: skip
    assert 5 < n == len(got["events"])
    assert eng.state.time_s == t_stop == got["time"]
    np.testing.assert_array_equal(eng.state.occupations, got["occupations"])


# ------------------------------------------------------------------ restart / chunking
def test_chunking_and_restart_do_not_change_the_trajectory(small_system):
    _, _, lattice, tables = small_system
    occ = _start(lattice, np.random.default_rng(8), 0.3, 6)
    ref_eng, _ = _engine(tables, lattice, occ, PARAMS, 600.0, 0.4, 77)
    t1, t2 = 2e-10, 5e-10
    ref_eng.advance(t1)
    ref_eng.advance(t2)
    # Same two output times, but the first interval split by event-count chunks, then a
    # "restart": a fresh engine from the saved state and generator state.
    eng, _ = _engine(tables, lattice, occ, PARAMS, 600.0, 0.4, 77)
    while eng.state.time_s < t1:
        eng.advance(t1, max_events=7)
    saved = (eng.state.occupations.copy(), eng.state.time_s, eng.state.n_events,
             eng.state.counts.copy(), eng.state.energy_ev, eng.rng.bit_generator.state)  # fmt: skip
    state = KMCState(saved[0], saved[1], saved[2], saved[3], saved[4])
    rng = np.random.default_rng()
    rng.bit_generator.state = saved[5]
    eng2 = KMCEngine(tables, lattice, state, rng, eng.kp)
    eng2.advance(t2)
    assert ref_eng.state.n_events > 50
    np.testing.assert_array_equal(eng2.state.occupations, ref_eng.state.occupations)
    np.testing.assert_array_equal(eng2.state.counts, ref_eng.state.counts)
    assert eng2.state.n_events == ref_eng.state.n_events
    assert eng2.state.time_s == ref_eng.state.time_s


# ------------------------------------------------------------- conservation and drift
def test_conservation_no_site_beyond_the_synthesised_cube_filled_and_energy_drift(small_system):
    _, _, lattice, tables = small_system
    occ = _start(lattice, np.random.default_rng(10), 0.3, 3)
    eng, _ = _engine(tables, lattice, occ, PARAMS, 600.0, 0.2, 5)
    n_pb0 = int((occ == species.PB).sum())
    n_cd0 = int((occ == species.CD).sum())
    beyond = ~lattice.in_nc
    total = 0
    while total < 100_000 and eng.total_rate_per_s > 0:
        n, _ = eng.advance(np.inf, max_events=2_000)
        total += n
        o = eng.state.occupations
        c = eng.state.counts_by_name()
        assert int((o == species.PB).sum()) + c["expel_pb"] == n_pb0
        assert int((o == species.CD).sum()) + c["expel_cd"] == n_cd0
        assert np.all(o[beyond] == species.OUT)  # nothing grows beyond the synthesised cube
        out = o == species.OUT
        assert int(out.sum()) - int((occ == species.OUT).sum()) == c["recede"] - c["regrow"]
    c = eng.state.counts_by_name()
    assert min(c["expel_cd"], c["expel_pb"], c["recede"], c["hop_cd"], c["regrow"]) > 0
    assert sum(c.values()) == eng.state.n_events
    assert abs(eng.energy_drift_ev()) < 1e-9


def test_energy_drift_after_1e5_hops(small_system):
    _, _, lattice, tables = small_system
    occ = _start(lattice, np.random.default_rng(12), 0.3, 6)
    closed = PARAMS.replace(expulsion=False, recession=False)
    eng, _ = _engine(tables, lattice, occ, closed, 500.0, 0.0, 6)
    n, _ = eng.advance(np.inf, max_events=100_000)
    assert n == 100_000
    assert abs(eng.energy_drift_ev()) < 1e-9


# ------------------------------------------------------------------ detailed balance
def _time_weighted_classes(eng, n_events, classify, n_classes, n_blocks):
    """Replay the event log; return the time fraction of each class in consecutive blocks."""
    occ = eng.state.occupations.copy()
    t_prev = eng.state.time_s
    _, log = eng.advance(np.inf, max_events=n_events, log_events=n_events)
    resid = np.zeros((n_events, n_classes))
    nn = eng.lattice.nn
    for e, (site, slot, t) in enumerate(zip(log.site, log.slot, log.time_s, strict=True)):
        resid[e, classify(occ)] = t - t_prev  # time spent in the state before event e
        t_prev = t
        j = nn[site, slot]
        occ[j], occ[site] = occ[site], species.VAC
    blocks = resid.reshape(n_blocks, -1, n_classes).sum(axis=1)
    return blocks / blocks.sum(axis=1, keepdims=True)


def test_closed_system_kmc_samples_the_canonical_distribution(make_ce, make_cube):
    """KMC with hops only -> time averages equal the exact Boltzmann averages (enumerated)."""
    ce = make_ce([6.0], np.random.default_rng(21), scale=0.05)
    model = ClusterExpansionModel(ce)
    lattice = make_cube(3, model.reach + 1)
    tables = model.compile(lattice)
    nc = np.flatnonzero(lattice.in_nc)
    kind = lattice.n_outside_nn  # 0 centre, 1 face, 2 edge, 3 corner
    temp = 700.0

    def classify(o):  # (Cd site kind, vacancy site kind) -> 16 classes
        cd = np.flatnonzero(o == species.CD)[0]
        v = np.flatnonzero(o == species.VAC)[0]
        return int(kind[cd]) * 4 + int(kind[v])

    exact = np.zeros(16)
    energies, classes = [], []
    for cd, v in itertools.permutations(nc, 2):
        o = lattice.empty_occupations()
        o[cd], o[v] = species.CD, species.VAC
        energies.append(tables.total_energy(o))
        classes.append(classify(o))
    energies = np.array(energies)
    w = np.exp(-beta_per_ev(temp) * (energies - energies.min()))
    np.add.at(exact, classes, w)
    exact /= exact.sum()

    occ = lattice.empty_occupations()
    occ[nc[0]], occ[nc[13]] = species.CD, species.VAC
    closed = PARAMS.replace(expulsion=False, recession=False, e_kra_pb_ev=0.1, e_kra_cd_ev=0.15)
    eng, _ = _engine(tables, lattice, occ, closed, temp, 0.0, 31)
    eng.advance(np.inf, max_events=2_000)  # burn-in
    frac = _time_weighted_classes(eng, 200_000, classify, 16, 20)
    mean = frac.mean(axis=0)
    err = frac.std(axis=0, ddof=1) / np.sqrt(frac.shape[0])
    mask = exact > 1e-3
    z = (mean[mask] - exact[mask]) / np.maximum(err[mask], 1e-4)
    assert np.all(np.abs(z) < 5), (mean, exact, z)
    # Power: the same statistic rejects the distribution of a 30% higher temperature.
    w_hot = np.exp(-beta_per_ev(1.3 * temp) * (energies - energies.min()))
    hot = np.zeros(16)
    np.add.at(hot, classes, w_hot)
    hot /= hot.sum()
    z_hot = (mean[mask] - hot[mask]) / np.maximum(err[mask], 1e-4)
    assert np.max(np.abs(z_hot)) > 8


def test_closed_nc_with_surface_exchange_samples_the_grand_canonical_distribution(
    make_ce, make_cube
):
    """Hops + recession + regrowth, no expulsion: time averages equal exact enumeration.

    A 3^3 NC of 25 Pb and two sites that are V or O: every arrangement is enumerated with its
    grand-canonical weight ``exp(-(E - csbr_units * mu_CsBr) / kT)`` (``naive.csbr_units``,
    an independent statement of the ``(2 - k)`` rule), and the KMC's time fractions of the
    classes (centre site: Pb / V / O) x (number of O: 0, 1, 2) must match.  The interior
    vacancy fraction of the model's equilibrium is the class "centre V".
    """
    ce = make_ce([6.0], np.random.default_rng(23), scale=0.05, separate_vacancy=True)
    model = ClusterExpansionModel(ce)
    lattice = make_cube(3, model.reach + 1)
    tables = model.compile(lattice)
    nc = np.flatnonzero(lattice.in_nc)
    centre = int(nc[np.flatnonzero(lattice.n_outside_nn[nc] == 0)[0]])
    temp, mu = 600.0, 0.04

    def classify(o):
        c = {species.PB: 0, species.VAC: 1, species.OUT: 2}[int(o[centre])]
        return c * 3 + int(np.sum(o[nc] == species.OUT))

    omegas, classes = [], []
    for a, b in itertools.combinations(nc, 2):
        for sa, sb in itertools.product((species.VAC, species.OUT), repeat=2):
            o = lattice.empty_occupations()
            o[a], o[b] = sa, sb
            omegas.append(tables.total_energy(o) - naive.csbr_units(o, lattice.nn) * mu)
            classes.append(classify(o))
    omegas = np.array(omegas)

    def distribution(t):
        w = np.exp(-beta_per_ev(t) * (omegas - omegas.min()))
        out = np.zeros(9)
        np.add.at(out, classes, w)
        return out / out.sum()

    exact = distribution(temp)
    occ = lattice.empty_occupations()
    occ[centre] = species.VAC
    occ[nc[0]] = species.OUT
    closed = PARAMS.replace(expulsion=False, e_kra_pb_ev=0.15, e_rec_ev=0.2)
    eng, _ = _engine(tables, lattice, occ, closed, temp, 0.0, 33, mu)
    eng.advance(np.inf, max_events=5_000)  # burn-in
    n_events, n_blocks = 300_000, 20
    occ = eng.state.occupations.copy()
    t_prev = eng.state.time_s
    _, log = eng.advance(np.inf, max_events=n_events, log_events=n_events)
    resid = np.zeros((n_events, 9))
    for e, (site, slot, t) in enumerate(zip(log.site, log.slot, log.time_s, strict=True)):
        resid[e, classify(occ)] = t - t_prev
        t_prev = t
        if slot < 6:
            j = lattice.nn[site, slot]
            occ[j], occ[site] = occ[site], species.VAC
        else:
            assert slot == K.SLOT_RECEDE
            occ[site] = species.OUT if occ[site] == species.VAC else species.VAC
    np.testing.assert_array_equal(occ, eng.state.occupations)
    c = eng.state.counts_by_name()
    assert min(c["recede"], c["regrow"], c["hop_pb"]) > 1000
    blocks = resid.reshape(n_blocks, -1, 9).sum(axis=1)
    frac = blocks / blocks.sum(axis=1, keepdims=True)
    mean = frac.mean(axis=0)
    err = frac.std(axis=0, ddof=1) / np.sqrt(n_blocks)
    mask = exact > 1e-3
    assert mask.sum() >= 4  # several classes populated, the interior vacancy among them
    assert exact[3:6].sum() > 1e-3
    z = (mean[mask] - exact[mask]) / np.maximum(err[mask], 1e-4)
    assert np.all(np.abs(z) < 5), (mean, exact, z)
    z_hot = (mean[mask] - distribution(1.3 * temp)[mask]) / np.maximum(err[mask], 1e-4)
    assert np.max(np.abs(z_hot)) > 8


# ------------------------------------------------------------------------- diffusion
def test_single_vacancy_diffusion_coefficient_matches_random_walk(make_ce_with, n_params):
    """Zero ECIs, periodic bulk: <r^2>(tau) = 6 D tau with D = w a^2, w = nu exp(-E_KRA/kT)."""
    ce = make_ce_with([6.0], np.zeros(n_params([6.0])))
    model = ClusterExpansionModel(ce)
    lattice = build_periodic(8, 5.87)
    tables = model.compile(lattice)
    occ = np.zeros(lattice.n_sites, dtype=np.uint8)
    occ[100] = species.VAC
    temp = 300.0
    params = PARAMS.replace(expulsion=False, recession=False, e_kra_pb_ev=0.5)
    eng, _ = _engine(tables, lattice, occ, params, temp, 0.0, 41)
    w = params.attempt_frequency_per_s * np.exp(-beta_per_ev(temp) * params.e_kra_pb_ev)
    assert eng.total_rate_per_s == pytest.approx(6 * w, rel=1e-12)
    n_ev = 200_000
    _, log = eng.advance(np.inf, max_events=n_ev, log_events=n_ev)
    # The vacancy moves opposite to the cation that jumps into it.
    steps = -NN_DISPLACEMENTS[log.slot].astype(float) * lattice.a_angstrom
    pos = np.cumsum(steps, axis=0)
    times = log.time_s
    tau = 10.0 / (6 * w)  # ~10 hops per window
    edges = np.arange(0.0, times[-1], tau)
    idx = np.searchsorted(times, edges, side="right") - 1  # last event before each edge
    p = np.where(idx[:, None] >= 0, pos[np.maximum(idx, 0)], 0.0)
    r2 = np.sum(np.diff(p, axis=0) ** 2, axis=1)
    expected = 6 * w * lattice.a_angstrom**2 * tau
    se = r2.std(ddof=1) / np.sqrt(r2.size)
    assert abs(r2.mean() - expected) < 4 * se, (r2.mean(), expected, se)
    assert se < 0.03 * expected
    # Waiting times are exponential with mean 1 / (6 w).
    dts = np.diff(times)
    assert dts.mean() == pytest.approx(1 / (6 * w), rel=0.02)


def test_batched_path_fix_equals_rebuild():
    """``_tree_fix_paths`` (one event's changed leaves, duplicates allowed) == a rebuild."""
    from segsim.kernels.select import _tree_fix_paths

    rng = np.random.default_rng(8)
    n = 1000
    leaves = rng.random(n) * (rng.random(n) < 0.5)
    tree = np.zeros(2048)
    _tree_build(tree, leaves)
    for _ in range(300):
        m = int(rng.integers(0, 40))
        changed = rng.integers(0, n, size=m)
        changed[m // 2 :] = np.minimum(changed[m // 2 :] + 1, n - 1)  # neighbours, duplicates
        for k in changed:
            leaves[k] = 0.0 if rng.random() < 0.3 else rng.random()
            tree[1024 + k] = leaves[k]
        _tree_fix_paths(tree, changed.astype(np.int64), m)
        rebuilt = np.zeros(2048)
        _tree_build(rebuilt, leaves)
        np.testing.assert_array_equal(tree[1:], rebuilt[1:])


def test_dependency_columns_are_the_clusters_displacements(small_system):
    """The rate refresh's neighbourhood: zero displacement plus every local-cluster offset."""
    from segsim.engine import dependency_columns

    _, _, _, tables = small_system
    dep = dependency_columns(tables)
    disp = tables.displacements[dep]
    assert dep[0] == 0
    assert not disp[0].any()
    used = set(np.asarray(tables.local_table)[:, 2::2].ravel().tolist()) | {0}
    assert set(dep.tolist()) == used
    as_set = {tuple(d) for d in disp.tolist()}
    assert all(tuple(-c for c in d) in as_set for d in as_set)  # closed under negation


def test_pair_field_is_exact_and_kept_bitwise(small_system):
    """The integer pair field: energies equal the float kernels', kept field == rebuild."""
    from segsim.engine import pair_field_tables

    _, model, lattice, tables = small_system
    fld, multi = pair_field_tables(tables)
    n_multi = multi.shape[0]
    assert n_multi + fld[3].shape[0] >= tables.local_table.shape[0]
    if model.reach and tables.local_table.shape[1] > 4:
        assert n_multi > 0  # the triplet CE exercises the float part
    occ = _start(lattice, np.random.default_rng(12), 0.3, 6)
    eng, _ = _engine(tables, lattice, occ, PARAMS, 600.0, 0.4, 5)
    eng.advance(1e3, max_events=60)
    kept = eng.fld[0].copy()
    eng.rebuild_rates()
    np.testing.assert_array_equal(eng.fld[0], kept)
    from segsim.kernels.energy import _field_flip_delta

    occ = eng.state.occupations
    for site in np.flatnonzero(occ != species.OUT)[:40]:
        for code in (species.PB, species.CD, species.VAC, species.OUT):
            want = tables.flip_energy_change(occ, int(site), code)
            got = _field_flip_delta(occ, int(site), code, tables.nbr, tables.ce_index,
                                    tables.weights, multi, eng.fld[0], eng.fld[5])  # fmt: skip
            assert got == pytest.approx(want, abs=1e-12)


# ------------------------------------------------------------------- factorised rates
def _direct_twin(eng):
    """The same state under the direct rate formula (the kernel before factorisation)."""
    st = KMCState(eng.state.occupations.copy(), eng.state.time_s, eng.state.n_events,
                  eng.state.counts.copy(), eng.state.energy_ev, eng.state.phase.copy())  # fmt: skip
    return KMCEngine(eng.tables, eng.lattice, st, np.random.default_rng(0), eng.kp,
                     factorised=False)  # fmt: skip


def _clip_acts(eng):
    """Number of hops whose barrier clip max(., dE, 0) acts (|dE| >= 2 E_KRA)."""
    occ, nn, n_act = eng.state.occupations, eng.lattice.nn, 0
    fld = eng.fld
    for c in np.flatnonzero(occ <= species.CD):
        for d in range(6):
            v = nn[c, d]
            if occ[v] != species.VAC:
                continue
            ispec = int(occ[c])
            de = (eng._dfi[c, 0] + eng._dfi[v, ispec] + eng._hcorr[d, ispec]) * fld[5]
            n_cd = int(occ[nn[v, d]] == species.CD) + int(occ[nn[c, d ^ 1]] == species.CD)
            e_kra = eng.kp[K.KP_EKRA + ispec] + (
                eng.kp[K.KP_DKRA + 2 * ispec + n_cd - 1] if n_cd else 0.0
            )
            n_act += abs(de) >= 2 * e_kra
    return n_act


@pytest.mark.parametrize("e_kra", [0.30, 0.004])
def test_factorised_rates_equal_the_direct_formula(small_system, e_kra):
    """Every rate (hops, expulsion, surface exchange) equals the direct formula to 1e-13
    relative, with the clip inactive (0.30 eV) and acting on many hops (4 meV); the product
    form is used for the pair CEs, the direct one for CEs with triplets."""
    import dataclasses

    _, _, lattice, tables = small_system
    params = dataclasses.replace(PARAMS, e_kra_pb_ev=e_kra, e_kra_cd_ev=e_kra,
                                 de_kra_pb_1cd_ev=0.0, de_kra_pb_2cd_ev=0.0,
                                 de_kra_cd_1cd_ev=0.0, de_kra_cd_2cd_ev=0.0)  # fmt: skip
    occ = _start(lattice, np.random.default_rng(15), 0.3, 12)
    eng, _ = _engine(tables, lattice, occ, params, 500.0, 0.3, 1)
    eng.advance(np.inf, max_events=200)  # a state made by the kernel's own updates
    twin = _direct_twin(eng)
    pair_only = eng._multi_table.shape[0] == 0
    assert eng._hk[K.HK_ON] == float(pair_only)
    assert twin._hk[K.HK_ON] == 0.0
    assert (eng.rates > 0).sum() > 20
    np.testing.assert_array_equal(eng.rates > 0, twin.rates > 0)
    np.testing.assert_allclose(eng.rates, twin.rates, rtol=1e-13, atol=0)
    if pair_only:
        n_act = _clip_acts(eng)
        assert (n_act > 0) == (e_kra < 0.01)  # the clip branch is exercised where intended
        # the kept factors are bitwise what a rebuild computes
        fac, dfi, rates = eng._fac.copy(), eng._dfi.copy(), eng.rates.copy()
        eng.rebuild_rates()
        np.testing.assert_array_equal(eng._fac, fac)
        np.testing.assert_array_equal(eng._dfi, dfi)
        np.testing.assert_array_equal(eng.rates, rates)


def test_factorised_kernel_runs_the_direct_kernels_trajectory_with_an_rp_zone():
    """The shipped CE (pairs) with an RP zone: the RP term is computed exactly where it can
    act (rp_near), and the factorised kernel runs the same events as the direct one."""
    from segsim.kernels.rp import PH_RP, PH_ZONE
    from segsim.lattice import build_cube
    from segsim.models import load_model
    from segsim.params.files import POTENTIALS_DIR

    model = load_model("cluster_expansion", POTENTIALS_DIR / "fitted.ce")
    lattice = build_cube(6, model.a_angstrom, model.reach + 1)
    tables = model.compile(lattice)
    occ = _start(lattice, np.random.default_rng(3), 0.25, 20)
    phase = np.zeros_like(occ)
    coords = lattice.coords
    lo = coords[lattice.in_nc].min(axis=0)
    zone = lattice.in_nc & (coords[:, 0] <= lo[0] + 1)  # a two-layer slab on the -x face
    phase[zone] = PH_ZONE
    phase[zone & (coords[:, 0] == lo[0])] = PH_RP
    from segsim.params.rp import RPEnergetics

    params = kinetics.KineticsParams(
        attempt_frequency_per_s=1e13, e_kra_pb_ev=0.55, e_kra_cd_ev=0.5, e_exp_pb_ev=0.8,
        e_exp_cd_ev=0.6, bep_alpha=0.5, e_rec_ev=0.7,
    )  # fmt: skip
    rp = RPEnergetics(eps_rp_ev=0.05, eta_ev=0.1, j_rp_ev=0.04, e_rp_a_ev=0.6)
    ref = kinetics.removal_reference_ev(tables, lattice)
    kp = kinetics.parameter_vector(params, temperature_k=400.0, theta=0.3, removal_ref_ev=ref,
                                   rp=rp)  # fmt: skip
    engines = []
    for fact in (True, False):
        st = KMCState.initial(occ.copy(), tables, phase.copy())
        engines.append(KMCEngine(tables, lattice, st, np.random.default_rng(9), kp,
                                 factorised=fact))  # fmt: skip
    fast, direct = engines
    assert fast._hk[K.HK_ON] == 1.0
    near = fast._rp_near.astype(bool)
    assert 0 < near.sum() < near.size
    np.testing.assert_allclose(fast.rates, direct.rates, rtol=1e-13, atol=0)
    logs = [e.advance(np.inf, max_events=3000, log_events=3000)[1] for e in engines]
    np.testing.assert_array_equal(logs[0].site, logs[1].site)
    np.testing.assert_array_equal(logs[0].slot, logs[1].slot)
    np.testing.assert_allclose(logs[0].time_s, logs[1].time_s, rtol=1e-12)
    assert (logs[0].slot == K.SLOT_RP).any()  # RP relaxation happened
    hops = logs[0].slot < 6
    assert near[logs[0].site[hops]].any()
    assert (~near[logs[0].site[hops]]).any()
    np.testing.assert_allclose(fast.rates, direct.rates, rtol=1e-13, atol=0)
    rates, tree = fast.rates.copy(), fast.tree.copy()
    fast.rebuild_rates()
    np.testing.assert_array_equal(fast.rates, rates)
    np.testing.assert_array_equal(fast.tree[1:], tree[1:])
