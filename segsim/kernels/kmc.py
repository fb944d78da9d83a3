"""Rejection-free lattice kinetic Monte Carlo: rates, selection and the whole event loop.

Event catalogue (one row of ``N_SLOTS`` rates per grid site, see :mod:`segsim.kinetics` for
the physics and the parameter vector ``kp``):

======  ===============  ==========================================================
slot    event            applies when
======  ===============  ==========================================================
0-5     vacancy hop      the site holds Pb/Cd and its neighbour ``nn[site, slot]`` is V:
                         the cation moves into the vacancy (V <-> M exchange)
6       expulsion        the site holds Pb/Cd and has k >= 1 outside (O) neighbours:
                         the cation leaves into solution, the site becomes V
7       surface          the site is V with an O neighbour: it becomes O (recession);
        exchange         or the site is O inside the synthesised cube with an O
                         neighbour: it becomes V (regrowth, the reverse of recession)
8       RP relaxation    the site holds Pb/Cd inside an RP zone and is on the surface or
                         has a perovskite neighbour: its phase switches RP <-> perovskite
======  ===============  ==========================================================

Rates (``beta = 1/kT`` in 1/eV, ``nu`` in 1/s, energies in eV, ``dE`` from the CE kernels):

* hop: ``nu exp(-beta Ea)``, ``Ea = max(E_KRA(M, n) + dE/2, dE, 0)`` (detailed balance
  exact), ``E_KRA(M, n) = E_KRA(M) + dE_KRA(M, n)`` with ``n`` (0, 1, 2) the Cd on the two
  sites of the hop's axis next to the path: beyond the vacancy and behind the cation (the
  positions of the computed 1- and 2-Cd bands, :mod:`segsim.barriers.paths`; the reverse hop
  has the same two sites, so ``n`` and the KRA are the same both ways);
* expulsion: ``nu exp(-beta Ea) (1 - theta**k)``,
  ``Ea = max(0, E_exp(M) + alpha (dE_rm - dE_rm_ref(M)))`` with ``dE_rm`` the energy change
  of ``M -> V`` at this site (``M -> X`` for a three-species CE);
* recession ``V -> O`` and its reverse, regrowth ``O -> V``: with
  ``dOmega = dE(V -> O) - (2 - k) mu_CsBr`` the grand-canonical energy change of the
  recession (``k`` outside neighbours of the site, ``mu_CsBr`` the solution's CsBr chemical
  potential in the CE's energy reference, :mod:`segsim.kinetics`),
  recession ``Ea = max(E_rec + alpha_rec dOmega, dOmega, 0)`` and regrowth
  ``Ea = max(E_rec + alpha_rec dOmega, dOmega, 0) - dOmega``, both ``nu exp(-beta Ea)``:
  forward/backward ratio ``exp(-beta dOmega)`` exactly (detailed balance).  Both need
  ``k >= 1`` and the site inside the synthesised cube (``synth``), a condition that
  is the same before and after the event; regrowth is on only with ``kp[KP_REGROW_ON]``
  (without it the recession is irreversible, as the expulsion is);
* RP relaxation: ``nu exp(-beta Ea)``, ``Ea = max(E_RP_a - shift [adj] + dE/2, dE, 0)``
  with ``dE`` the change of ``E_RP`` (:mod:`segsim.kernels.rp`) and ``shift`` the barrier
  lowering of a ligand-exchange treatment (0 outside a treatment) on surface-adjacent sites
  (``adj``: the site or one of its crystal neighbours has an outside neighbour).  The
  condition depends only on the neighbours and on ``k``, never on the site's own phase, so
  the reverse of every allowed switch is allowed: detailed balance holds.

``dE`` of hops (and the energy bookkeeping of expulsions) is the CE change plus the RP change;
the expulsion barrier uses the CE removal energy only (MODEL.md section 3).

Update rule (written out in :func:`_refresh_after`): an event changes the occupation (or RP
phase) of its site(s).  The rates recomputed are the whole rows of the sites whose energy
changes see a changed site (the nearest neighbours and the CE's cluster neighbourhood
``dep``), plus the one hop slot of every other cation neighbour of a vacancy among those
sites (its partner's environment changed, and so may the Cd count on its axis: a changed
site is either next to the cation, whose row is recomputed, or beyond the vacancy, a nearest
neighbour of the changed site); a recession also recomputes the sites two
nearest-neighbour steps away when the RP phase is on.  Only tree leaves whose site total
changed are set, and their sums fixed once per event.  Energy changes come from an exact
integer field of the singlet and pair clusters (:func:`segsim.engine.pair_field_tables`)
plus, in floating point, any clusters of three or more sites.  The tests check after every
trajectory that the maintained rates, tree and field equal a rebuild from scratch.

Factorised rates (``hk[HK_ON]``, the default for a pair-field CE): with the KRA form and the
BEP share 1/2 a hop's barrier ``E_KRA(M, n) + dE/2`` splits into parts of its two sites, and
so does its rate::

    nu exp(-beta Ea) = A(M, n) * F(c) * G_M(v) * C(d, M)

with ``F(c) = exp(-beta dE(c: M -> V) / 2)`` of the cation site, ``G_M(v) = exp(-beta dE(v:
V -> M) / 2)`` of the vacancy site, ``C`` the hop's own pair row (a constant of direction and
species) and ``A = nu exp(-beta E_KRA(M, n))``.  ``dE`` is the same exact integer of the pair
field as the direct formula's.  The factors are kept per site (``fac``, their integers in
``dfi``) for the sites that can need them (a cation beside a V or O site, a vacancy beside a
cation; zero elsewhere), refreshed before the rates of an event's neighbourhood, so a site's
factor is computed once however many hops share it.  The direct formula is used instead
where the product is not the rate: the clip ``max(., dE, 0)`` acts (``|dE| >= 2 E_KRA``),
the RP term can act (``rp_near``: the site or a neighbour in an RP zone; elsewhere it is
exactly zero), or the CE has clusters of three or more sites.  Expulsion uses ``F`` too when
``alpha = 1/2`` (``HK_EXP_ON``) and its clip is inactive.  A factorised rate equals the direct
formula to a few ulp (tested to 1e-13 relative); ``hk[HK_ON] = 0`` runs the direct formula
everywhere, bitwise the kernel before factorisation (for benchmarks).
"""

from typing import NamedTuple

import numpy as np

from segsim.kernels._jit import borrow, njit, njit_inline
from segsim.kernels.energy import (
    _field_apply,
    _field_flip_delta,
    _field_init,
    _field_swap_delta,
    _pair_swap_correction,
)
from segsim.kernels.rp import (
    PH_PV,
    PH_RP,
    PH_ZONE,
    _rp_flip_delta,
    _rp_hop_delta,
    _rp_remove_delta,
)
from segsim.kernels.select import _tree_build, _tree_fix_paths, _tree_sample


class KMCArrays(NamedTuple):
    """Every array the KMC event loop reads or updates, packed into one argument.

    A named tuple crosses into numba as one heterogeneous tuple (its fields become static
    members), so the chunk kernel takes this plus the clock, the generator and the event log
    instead of twenty-three separate arguments; unpacking it at the kernel's entry costs
    nothing measurable (``docs/performance.md``).  Built by :class:`segsim.engine.KMCEngine`.
    """

    occ: np.ndarray  # species per grid site (uint8)
    phase: np.ndarray  # RP phase per site (uint8)
    rates: np.ndarray  # (n_sites, N_SLOTS) event rates, 1/s
    site_total: np.ndarray  # row sums of rates, 1/s
    tree: np.ndarray  # rate sum tree (segsim.kernels.select)
    nn: np.ndarray  # (n_sites, 6) nearest neighbours (int32)
    nbr: np.ndarray  # CE neighbour table (ModelTables.nbr)
    ce_index: np.ndarray  # species -> CE species index
    weights: np.ndarray  # CE weights per cluster table
    local_table: np.ndarray  # CE clusters of three or more sites
    kp: np.ndarray  # parameter vector (segsim.kinetics.parameter_vector)
    fld: tuple  # exact pair field (segsim.engine.pair_field_tables)
    dep: np.ndarray  # CE dependency columns (segsim.engine.dependency_columns)
    stamp: np.ndarray  # scratch marks of the rate refresh
    changed: np.ndarray  # scratch list of changed tree leaves
    counts: np.ndarray  # events by type (int64)
    synth: np.ndarray  # 1 on the sites of the synthesised cube (uint8): regrowth allowed
    fx: tuple  # factorised rates: (fac, dfi, rp_near, hk, hcorr), see "Factorised rates"
    hood: np.ndarray  # scratch list of the sites within reach of an event (int64)


# Species codes (segsim.species), repeated here as compile-time constants.
_PB = 0
_CD = 1
_VAC = 2
_OUT = 3

#: Event slots per site.
N_SLOTS = 9
SLOT_EXPEL = 6
SLOT_RECEDE = 7
SLOT_RP = 8

#: Event-type counters (``counts`` array of the chunk kernel).
EV_HOP_PB = 0
EV_HOP_CD = 1
EV_EXPEL_PB = 2
EV_EXPEL_CD = 3
EV_RECEDE = 4
EV_RP = 5
EV_REGROW = 6
N_EVENT_TYPES = 7
EVENT_TYPE_NAMES = ("hop_pb", "hop_cd", "expel_pb", "expel_cd", "recede", "rp", "regrow")

#: Indices into the parameter vector ``kp`` (float64), filled by :mod:`segsim.kinetics`.
KP_BETA = 0  # 1/(k_B T), 1/eV
KP_NU = 1  # attempt frequency, 1/s
KP_EKRA = 2  # E_KRA(Pb), E_KRA(Cd) at 2, 3 (eV)
KP_EEXP = 4  # E_exp(Pb), E_exp(Cd) at 4, 5 (eV)
KP_ALPHA = 6  # Bronsted-Evans-Polanyi share of the removal energy
KP_REF = 7  # dE_rm_ref(Pb), dE_rm_ref(Cd) at 7, 8 (eV)
KP_EREC = 9  # surface recession barrier (eV)
KP_THETA = 10  # passivated fraction of surface AX sites
KP_HOP_ON = 11  # 1.0 / 0.0 switches
KP_EXPEL_ON = 12
KP_RECEDE_ON = 13
KP_RP_ON = 14  # 1.0: the RP phase field and its relaxation events are active
KP_EPS_RP = 15  # eps_RP (eV per RP cation site)
KP_ETA_RP = 16  # eta (eV): Cd preference for RP sites
KP_J_RP = 17  # J_RP (eV per RP/perovskite cation pair)
KP_ERPA = 18  # E_RP_a, RP <-> perovskite switching barrier (eV)
KP_ERPA_SHIFT = 19  # barrier lowering on surface sites during a ligand exchange (eV)
KP_REC_REF = 20  # V -> O energy change at the reference face site (eV; reported, no rate)
KP_ALPHA_REC = 21  # Bronsted-Evans-Polanyi share of dOmega in the recession barrier
KP_MU_REC = 22  # mu_CsBr of the solution in the CE's energy reference (eV per CsBr unit)
KP_REGROW_ON = 23  # 1.0: regrowth O -> V, the reverse of recession, is on
KP_DKRA = 24  # E_KRA shifts with 1, 2 Cd on the hop's axis: Pb at 24, 25; Cd at 26, 27 (eV)
N_KP = 28

#: Indices into ``hk``, the constants of the factorised rates (float64, :func:`hop_constants`).
HK_ON = 0  # 1.0: factorised rates (the pair-field CE); 0.0: the direct formula everywhere
HK_EXP_ON = 1  # 1.0: expulsion rates factorised too (bep_alpha == 1/2)
HK_HALF_BETA_Q = 2  # beta * quantum / 2 (1/quantum): a factor is exp(-HK_HALF_BETA_Q * dfi)
HK_A = 3  # nu exp(-beta E_KRA(M, n)): M = Pb at 3, 4, 5 (n = 0, 1, 2 Cd); Cd at 6, 7, 8 (1/s)
HK_C = 9  # exp(-beta dE_pair(d, M) / 2), the hop's own pair row: index 9 + 2 d + ispec
HK_EXPA = 21  # nu exp(-beta (E_exp(M) - alpha dE_rm_ref(M))): Pb at 21, Cd at 22 (1/s)
HK_CHAN = 23  # 1 - theta**k for k = 0..6 at 23..29 (the expulsion channel)
N_HK = 30


@njit
def _channel_table(theta, out):
    """``out[k] = 1 - theta**k`` for k = 0..6, computed as the direct expulsion rate does."""
    for k in range(7):
        out[k] = 1.0 - theta**k


def hop_constants(
    kp: np.ndarray,
    fld: tuple,
    multi_table: np.ndarray,
    ce_index: np.ndarray,
    *,
    factorised: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """Return ``(hk, hcorr)``: the constants of the factorised rates (module docstring).

    Parameters
    ----------
    kp
        The parameter vector (:mod:`segsim.kinetics`).
    fld
        The pair field tuple (:func:`segsim.engine.pair_field_tables`).
    multi_table
        The CE's clusters of three or more sites: factorised rates need none.
    ce_index
        Species code -> CE species index.
    factorised
        False: ``hk[HK_ON] = 0``, the direct formula everywhere (the kernel before
        factorisation, for benchmarks and tests).

    Returns
    -------
    hk
        float64 ``(N_HK,)``, indexed by the ``HK_*`` constants.
    hcorr
        int64 ``(6, 2)``: the pair-field integer of the hop's own pair row, by direction and
        mover (Pb, Cd), as :func:`segsim.kernels.energy._field_swap_delta` adds it.
    """
    _, colinfo, w_int, pair_table, nn_col, quantum = fld
    hk = np.zeros(N_HK, dtype=np.float64)
    hcorr = np.zeros((6, 2), dtype=np.int64)
    if not factorised or np.asarray(multi_table).shape[0] > 0:
        return hk, hcorr
    beta, nu = float(kp[KP_BETA]), float(kp[KP_NU])
    hk[HK_ON] = 1.0
    hk[HK_HALF_BETA_Q] = 0.5 * beta * quantum
    for ispec in range(2):
        for n in range(3):
            e_kra = kp[KP_EKRA + ispec]
            if n > 0:
                e_kra += kp[KP_DKRA + 2 * ispec + n - 1]
            hk[HK_A + 3 * ispec + n] = nu * np.exp(-beta * e_kra)
        hk[HK_EXPA + ispec] = nu * np.exp(
            -beta * (kp[KP_EEXP + ispec] - kp[KP_ALPHA] * kp[KP_REF + ispec])
        )
    if kp[KP_ALPHA] == 0.5:
        hk[HK_EXP_ON] = 1.0
    _channel_table(float(kp[KP_THETA]), hk[HK_CHAN : HK_CHAN + 7])
    # the hop's own pair row, as _field_swap_delta adds it (cation a on i, vacancy b on j)
    b = int(ce_index[_VAC])
    for d in range(6):
        t = int(colinfo[colinfo[nn_col[d], 1], 0])
        for ispec in range(2):
            a = int(ce_index[ispec])
            corr = int(_pair_swap_correction(t, a, b, w_int, pair_table)) if t >= 0 else 0
            hcorr[d, ispec] = corr
            hk[HK_C + 2 * d + ispec] = np.exp(-hk[HK_HALF_BETA_Q] * corr)
    return hk, hcorr


def rp_near_sites(phase: np.ndarray, nn: np.ndarray) -> np.ndarray:
    """Return 1 on the sites where a hop's RP term can be non-zero (uint8).

    A site of an RP zone (phase not ``PH_PV``) or next to one: the RP energy of a hop
    reads only the two sites' phases and their neighbours' (:mod:`segsim.kernels.rp`), and
    the zone is fixed for a run (relaxation switches RP <-> zone inside it).
    """
    zone = np.asarray(phase) != PH_PV
    near = zone | zone[np.asarray(nn)].any(axis=1)
    return near.astype(np.uint8)


@njit_inline
def _clear_row(rates, site):
    for s in range(N_SLOTS):
        rates[site, s] = 0.0


@njit_inline
def _surface_exchange_rate(site, sp, occ, nn, nbr, ce_index, weights, local_table, kp, fld):
    """Return the rate (1/s) of recession (``sp`` V) or regrowth (``sp`` O) of ``site``.

    The caller has checked that the site lies in the synthesised cube and that the
    event is switched on.  ``k`` (outside neighbours) does not change with the event, so the
    condition ``k >= 1`` is the same in both states and each direction is the other's reverse.
    """
    k = 0
    for d in range(6):
        if occ[nn[site, d]] == _OUT:
            k += 1
    if k == 0:
        return 0.0
    de = _field_flip_delta(occ, site, _OUT if sp == _VAC else _VAC, nbr, ce_index, weights,
                           local_table, fld[0], fld[5])  # fmt: skip
    if sp == _OUT:
        de = -de  # dE of V -> O, seen from the O state
    # grand-canonical: V -> O gains 2 - k CsBr units from the solution
    domega = de - (2 - k) * kp[KP_MU_REC]
    ea = max(kp[KP_EREC] + kp[KP_ALPHA_REC] * domega, domega, 0.0)
    if sp == _OUT:
        ea -= domega
    return kp[KP_NU] * np.exp(-kp[KP_BETA] * ea)


@njit_inline
def _site_rates(
    site, occ, phase, nn, nbr, ce_index, weights, local_table, kp, fld, rates, old_total, rp_on,
    env, fx,
):  # fmt: skip
    """Write the event rates (1/s) of ``site`` into ``rates[site]``; return their sum.

    ``old_total`` is the site's previous sum: a row that was all zero and stays so is not
    rewritten (the common case of an interior cation with no vacancy neighbour).  ``occ`` is
    modified transiently by the energy kernels and restored.  Energy changes come from the
    pair field ``fld`` (:func:`segsim.engine.pair_field_tables`) and ``local_table``, the
    CE's clusters of three or more sites.  ``env`` marks the synthesised cube (``KMCArrays.synth``).
    """
    sp = occ[site]
    if sp >= _VAC:  # V or O (species codes 2, 3)
        if old_total != 0.0:
            _clear_row(rates, site)
        on = kp[KP_RECEDE_ON] > 0.0 and env[site] != 0
        if sp == _OUT:
            on = on and kp[KP_REGROW_ON] > 0.0
        if not on:
            return 0.0
        r = _surface_exchange_rate(site, sp, occ, nn, nbr, ce_index, weights, local_table, kp,
                                   fld)  # fmt: skip
        rates[site, SLOT_RECEDE] = r
        return r
    # Pb or Cd: look for vacancy and outside neighbours first.
    k = 0
    n_vac = 0
    for d in range(6):
        oj = occ[nn[site, d]]
        if oj == _OUT:
            k += 1
        elif oj == _VAC:
            n_vac += 1
    in_zone = rp_on and phase[site] != PH_PV
    if n_vac == 0 and k == 0 and not in_zone:
        if old_total != 0.0:
            _clear_row(rates, site)
        return 0.0
    beta = kp[KP_BETA]
    nu = kp[KP_NU]
    ispec = 0 if sp == _PB else 1
    total = 0.0
    hop_on = kp[KP_HOP_ON] > 0.0
    for d in range(6):
        r = 0.0
        j = nn[site, d]
        if hop_on and occ[j] == _VAC:
            r = _hop_rate(site, d, sp, occ, phase, nn, nbr, ce_index, weights, local_table, kp,
                          fld, rp_on, fx)  # fmt: skip
            total += r
        rates[site, d] = r
    r = 0.0
    if k > 0 and kp[KP_EXPEL_ON] > 0.0:
        hk = fx[3]
        fast = hk[HK_EXP_ON] > 0.0
        channel = hk[HK_CHAN + k] if fast else 1.0 - kp[KP_THETA] ** k
        if channel > 0.0:
            if fast:
                de = fx[1][site, 0] * fld[5]
            else:
                de = _field_flip_delta(occ, site, _VAC, nbr, ce_index, weights, local_table,
                                       fld[0], fld[5])  # fmt: skip
            arg = kp[KP_EEXP + ispec] + kp[KP_ALPHA] * (de - kp[KP_REF + ispec])
            if fast and arg > 0.0:
                r = hk[HK_EXPA + ispec] * fx[0][site, 0] * channel
            else:
                r = nu * np.exp(-beta * max(arg, 0.0)) * channel
            total += r
    rates[site, SLOT_EXPEL] = r
    rates[site, SLOT_RECEDE] = 0.0
    r = _rp_switch_rate(site, k, occ, phase, nn, kp) if in_zone else 0.0
    total += r
    rates[site, SLOT_RP] = r
    return total


# The RP terms are separate, non-inlined functions: _site_rates is inlined into every
# caller, and the RP code (rarely run; never without RP domains) need not be copied with it.


@njit
def _rp_hop_term(occ, phase, nn, i, j, kp):
    """Return the RP energy change (eV) of the hop ``i -> j`` (a vacancy)."""
    return _rp_hop_delta(occ, phase, nn, i, j, kp[KP_EPS_RP], kp[KP_ETA_RP], kp[KP_J_RP])


@njit
def _rp_switch_rate(site, k, occ, phase, nn, kp):
    """Return the RP <-> perovskite switch rate (1/s) of cation ``site`` in an RP zone.

    The switch is possible on a surface site (``k`` outside neighbours) or next to a crystal
    neighbour that is not RP, a condition independent of the site's own phase.
    """
    active = k > 0
    if not active:
        for d in range(6):
            j = nn[site, d]
            if occ[j] <= _VAC and phase[j] != PH_RP:
                active = True
                break
    if not active:
        return 0.0
    de = _rp_flip_delta(occ, phase, nn, site, kp[KP_EPS_RP], kp[KP_ETA_RP], kp[KP_J_RP])
    ea0 = kp[KP_ERPA]
    if kp[KP_ERPA_SHIFT] != 0.0 and _surface_adjacent(site, k, occ, nn):
        ea0 -= kp[KP_ERPA_SHIFT]
    ea = max(ea0 + 0.5 * de, de, 0.0)
    return kp[KP_NU] * np.exp(-kp[KP_BETA] * ea)


@njit_inline
def _surface_adjacent(site, k, occ, nn):
    """Return True if ``site`` (``k`` outside neighbours) or a crystal neighbour is on the surface."""
    if k > 0:
        return True
    for d in range(6):
        j = nn[site, d]
        if occ[j] <= _VAC:
            for d2 in range(6):
                if occ[nn[j, d2]] == _OUT:
                    return True
    return False


@njit_inline
def _set_factor(s, occ, nn, ce_index, field, fx):
    """Recompute the rate factors of site ``s`` (module docstring, "Factorised rates").

    A cation beside a V or O site gets ``F`` (slot 0: its hops and its expulsion), a vacancy
    beside a cation ``G_Pb`` and ``G_Cd`` (slots 0, 1); every other site zeros.  Which sites
    need factors depends only on their nearest neighbours, and the values on the site's
    field, so refreshing every site of an event's neighbourhood keeps ``fac`` and ``dfi``
    bitwise what :func:`_init_rates` computes.
    """
    fac, dfi = fx[0], fx[1]
    h = fx[3][HK_HALF_BETA_Q]
    sp = occ[s]
    need = False
    if sp <= _CD:
        for d in range(6):
            if occ[nn[s, d]] >= _VAC:
                need = True
                break
        if need:
            x = field[s, ce_index[_VAC]] - field[s, ce_index[sp]]
            dfi[s, 0] = x
            fac[s, 0] = np.exp(-h * x)
    elif sp == _VAC:
        for d in range(6):
            if occ[nn[s, d]] <= _CD:
                need = True
                break
        if need:
            for m in range(2):  # species codes Pb = 0, Cd = 1
                x = field[s, ce_index[m]] - field[s, ce_index[_VAC]]
                dfi[s, m] = x
                fac[s, m] = np.exp(-h * x)
    if not need:
        dfi[s, 0] = 0
        fac[s, 0] = 0.0
    if sp != _VAC:
        dfi[s, 1] = 0
        fac[s, 1] = 0.0


@njit
def _init_rates(
    occ, phase, nn, nbr, ce_index, weights, local_table, kp, fld, rates, site_total, tree, env,
    fx,
):  # fmt: skip
    """Compute the pair field, the rate factors, every rate, their sums and the tree anew."""
    _field_init(occ, nbr, ce_index, fld[2], fld[3], fld[0])
    on = fx[3][HK_ON] > 0.0
    for site in range(occ.shape[0]):
        if on:
            _set_factor(site, occ, nn, ce_index, fld[0], fx)
        else:
            fx[0][site, 0] = fx[0][site, 1] = 0.0
            fx[1][site, 0] = fx[1][site, 1] = 0
    rates[:, :] = 0.0
    site_total[:] = 0.0
    rp_on = kp[KP_RP_ON] > 0.0
    for site in range(occ.shape[0]):
        site_total[site] = _site_rates(
            site, occ, phase, nn, nbr, ce_index, weights, local_table, kp, fld, rates,
            site_total[site], rp_on, env, fx,
        )  # fmt: skip
    _tree_build(tree, site_total)


@njit_inline
def _hop_rate(c, d, sp, occ, phase, nn, nbr, ce_index, weights, local_table, kp, fld, rp_on, fx):
    """Return the rate (1/s) of the hop of cation ``c`` (``sp``) into the vacancy ``nn[c, d]``.

    Factorised (module docstring) unless the clip or the RP term can act; then, and always
    with ``hk[HK_ON] == 0``, the direct formula.
    """
    v = nn[c, d]
    ispec = 0 if sp == _PB else 1
    n_cd = 0  # Cd on the hop's axis, both ends (counted, not summed: numpy bools add as OR)
    if occ[nn[v, d]] == _CD:
        n_cd += 1
    if occ[nn[c, d ^ 1]] == _CD:
        n_cd += 1
    e_kra = kp[KP_EKRA + ispec]
    if n_cd > 0:
        e_kra += kp[KP_DKRA + 2 * ispec + n_cd - 1]
    hk = fx[3]
    if hk[HK_ON] > 0.0 and not (rp_on and (fx[2][c] != 0 or fx[2][v] != 0)):
        dfi = fx[1]
        de = (dfi[c, 0] + dfi[v, ispec] + fx[4][d, ispec]) * fld[5]  # the swap's exact dE
        if -2.0 * e_kra < de < 2.0 * e_kra:  # the clip is inactive: the product is the rate
            fac = fx[0]
            return (hk[HK_A + 3 * ispec + n_cd] * fac[c, 0] * fac[v, ispec]
                    * hk[HK_C + 2 * d + ispec])  # fmt: skip
    else:
        de = _field_swap_delta(occ, c, v, fld[4][d], nbr, ce_index, weights, local_table,
                               fld[0], fld[1], fld[2], fld[3], fld[5])  # fmt: skip
        if rp_on:
            de += _rp_hop_term(occ, phase, nn, c, v, kp)
    ea = max(e_kra + 0.5 * de, de, 0.0)
    return kp[KP_NU] * np.exp(-kp[KP_BETA] * ea)


@njit_inline
def _set_leaf(s, total, site_total, tree, changed, n_changed):
    """Store the new total of site ``s`` in its tree leaf and list the leaf as changed."""
    site_total[s] = total
    tree[tree.shape[0] // 2 + s] = total
    changed[n_changed] = s
    return n_changed + 1


@njit_inline
def _refresh_site(
    s, occ, phase, nn, nbr, ce_index, weights, local_table, kp, fld, rates, site_total, tree,
    rp_on, changed, n_changed, env, fx,
):  # fmt: skip
    """Recompute the rates of site ``s``; if its total changed, set its tree leaf.

    The changed leaf is appended to ``changed`` (the sums above it are fixed once for all
    leaves of the event by :func:`segsim.kernels.select._tree_fix_paths`); returns the new
    number of changed leaves.
    """
    old = site_total[s]
    r = _site_rates(
        s, occ, phase, nn, nbr, ce_index, weights, local_table, kp, fld, rates, old, rp_on, env,
        fx,
    )  # fmt: skip
    if r != old:
        n_changed = _set_leaf(s, r, site_total, tree, changed, n_changed)
    return n_changed


@njit_inline
def _refresh_hop_slot(
    c, d, occ, phase, nn, nbr, ce_index, weights, local_table, kp, fld, rates, site_total, tree,
    rp_on, changed, n_changed, fx,
):  # fmt: skip
    """Recompute only the hop of cation ``c`` into its neighbour ``nn[c, d]`` (a vacancy).

    The site total is the row summed in slot order, as :func:`_site_rates` sums it, so it is
    bitwise the value a full recompute gives.
    """
    r = _hop_rate(c, d, occ[c], occ, phase, nn, nbr, ce_index, weights, local_table, kp, fld,
                  rp_on, fx)  # fmt: skip
    if r == rates[c, d]:
        return n_changed
    rates[c, d] = r
    total = 0.0
    for k in range(N_SLOTS):
        total += rates[c, k]
    if total != site_total[c]:
        n_changed = _set_leaf(c, total, site_total, tree, changed, n_changed)
    return n_changed


@njit_inline
def _refresh_after(
    i,
    j,
    recession,
    occ,
    phase,
    nn,
    nbr,
    dep,
    stamp,
    ce_index,
    weights,
    local_table,
    kp,
    fld,
    rates,
    site_total,
    tree,
    changed,
    rp_on,
    env,
    fx,
    hood,
):
    """Recompute every rate that the change of sites ``i`` and ``j`` (``-1``: none) can change.

    ``dep`` lists the columns of ``nbr`` that a site's energy changes depend on (the zero
    displacement and every displacement of the CE's local clusters, a set closed under
    negation: :func:`segsim.engine.dependency_columns`); with the nearest neighbours they
    make the neighbourhood of a site.  Then:

    * every rate of a site ``s`` in the neighbourhood of ``i`` (or ``j``) may change: its own
      flip/swap energies see the changed site, or its outside-neighbour count ``k``, or its
      hop partners -> the whole row of ``s`` is recomputed (pass 1);
    * the hop of a cation ``c`` into a vacancy ``v`` depends on the environments of both, so
      it changes too when ``v`` is such a site -> that one slot of every other cation
      neighbour of such a vacancy is recomputed (pass 2).

    A recession or regrowth (``recession`` True) changes whether ``i`` is outside, which the RP barrier
    lowering reads two neighbours away (:func:`_surface_adjacent`): with the RP phase on, the
    sites within two nearest-neighbour steps of ``i`` are recomputed as well.

    With factorised rates the factors of the whole neighbourhood are refreshed first (pass
    0: the sites whose field or nearest neighbours changed), so that pass 1 and 2 read
    current factors.

    ``stamp`` (one entry per site plus a counter at the end) marks the sites already
    recomputed in this call, ``hood`` lists the neighbourhood; ``changed`` is scratch space
    for the changed tree leaves, whose sums are fixed at the end in one batch.  ``rp_on`` is a compile-time constant of the
    chunk kernel.
    """
    n_hood = _neighbourhood(i, j, nn, nbr, dep, stamp, hood)
    epoch = stamp[occ.shape[0]]
    if fx[3][HK_ON] > 0.0:  # pass 0: the factors first, pass 1 reads them
        for k in range(n_hood):
            _set_factor(hood[k], occ, nn, ce_index, fld[0], fx)
    m = 0
    for k in range(n_hood):
        m = _refresh_site(
            hood[k], occ, phase, nn, nbr, ce_index, weights, local_table, kp, fld, rates,
            site_total, tree, rp_on, changed, m, env, fx,
        )  # fmt: skip
    if rp_on and recession:
        for d in range(6):
            s1 = nn[i, d]
            for d2 in range(6):
                s = nn[s1, d2]
                if stamp[s] != epoch:
                    stamp[s] = epoch
                    m = _refresh_site(
                        s, occ, phase, nn, nbr, ce_index, weights, local_table, kp, fld, rates,
                        site_total, tree, rp_on, changed, m, env, fx,
                    )  # fmt: skip
    if kp[KP_HOP_ON] > 0.0:
        m = _refresh_vacancy_partners(
            hood, n_hood, occ, phase, nn, nbr, stamp, epoch, ce_index, weights, local_table, kp,
            fld, rates, site_total, tree, changed, m, rp_on, fx,
        )  # fmt: skip
    _tree_fix_paths(tree, changed, m)


@njit_inline
def _neighbourhood(i, j, nn, nbr, dep, stamp, hood):
    """List the sites within reach of ``i`` and ``j`` (``-1``: none) once each, in ``hood``.

    The nearest neighbours and the CE's dependency columns of each (with the sites
    themselves: column 0); every listed site is marked with a new epoch of ``stamp``
    (``stamp[-1]``).  Returns the number of sites listed.
    """
    n = stamp.shape[0] - 1
    epoch = stamp[n] + 1
    stamp[n] = epoch
    k = 0
    for t in range(2):
        c = i if t == 0 else j
        if c < 0:
            break
        for q in range(dep.shape[0] + 6):  # the nearest neighbours, then the CE's neighbourhood
            s = nn[c, q] if q < 6 else nbr[c, dep[q - 6]]
            if stamp[s] != epoch:
                stamp[s] = epoch
                hood[k] = s
                k += 1
    return k


@njit_inline
def _refresh_vacancy_partners(
    hood, n_hood, occ, phase, nn, nbr, stamp, epoch, ce_index, weights, local_table, kp, fld,
    rates, site_total, tree, changed, m, rp_on, fx,
):  # fmt: skip
    """Pass 2 of :func:`_refresh_after`: the hop slot of each other cation beside a vacancy.

    The vacancies are those of the neighbourhood ``hood[:n_hood]``; cations stamped
    ``epoch`` had their whole row recomputed already.
    """
    for k in range(n_hood):
        v = hood[k]
        if occ[v] != _VAC:
            continue
        for d in range(6):
            c2 = nn[v, d]
            if stamp[c2] != epoch and occ[c2] <= _CD:
                # nn[c2, d ^ 1] == v: the directions come in +/- pairs
                m = _refresh_hop_slot(
                    c2, d ^ 1, occ, phase, nn, nbr, ce_index, weights, local_table, kp, fld,
                    rates, site_total, tree, rp_on, changed, m, fx,
                )  # fmt: skip
    return m


def _make_run_kmc_chunk(rp_enabled):
    """Return the compiled chunk kernel with the RP phase field on or off.

    ``rp_enabled`` is a compile-time constant of the returned function, so without RP
    domains the RP code is compiled out of the whole event loop (as a runtime branch it
    cost ~20 % of the speed of RP-free runs, single-vacancy bench, 2026-12-01).
    """

    @njit
    def _run_kmc_chunk(a, t_now, t_stop, max_events, rng, log_site, log_slot, log_time):
        """Advance the KMC until simulated time ``t_stop`` (s) or ``max_events`` events.

        Each event draws ``u1 = rng.random()`` for the waiting time ``dt = -ln(1 - u1) / R``
        (``R`` = total rate); if ``t_now + dt > t_stop`` the clock is set to ``t_stop`` and the
        chunk ends without an event (memoryless: the pending event is redrawn later).  Otherwise a
        second draw ``u2`` picks the event with probability proportional to its rate through the
        sum tree (site) and a scan of the site's slots, the event is applied and the rates within
        reach of the changed sites are recomputed (see :func:`_refresh_after`).  With ``R = 0``
        the clock jumps to ``t_stop``.

        ``local_table`` holds the CE's clusters of three or more sites; pairs and singlets are
        in the pair field ``fld`` (:func:`segsim.engine.pair_field_tables`), which is updated
        exactly (integer quanta) with every occupation change.

        ``a`` is the :class:`KMCArrays` of the run; its ``occ``, ``phase``, ``rates``,
        ``site_total``, ``tree``, field, scratch arrays and ``counts`` are updated in place.  If
        the log arrays are longer than the number of events, event ``e`` of this chunk is
        recorded as ``log_site[e], log_slot[e], log_time[e]`` (time after the event).

        Returns
        -------
        (t_now, n_events, sum of the events' energy changes (CE + RP) in eV)
        """
        rp_on = rp_enabled
        occ, phase, rates, site_total, tree = a.occ, a.phase, a.rates, a.site_total, a.tree
        nn, nbr, ce_index, weights, local_table = a.nn, a.nbr, a.ce_index, a.weights, a.local_table
        kp, fld, dep, stamp, changed, counts = a.kp, a.fld, a.dep, a.stamp, a.changed, a.counts
        env = a.synth
        fx = a.fx
        hood = a.hood
        field, colinfo, w_int, pair_table, nn_col, quantum = fld
        eps = kp[KP_EPS_RP]
        eta = kp[KP_ETA_RP]
        j_rp = kp[KP_J_RP]
        n_ev = 0
        de_sum = 0.0
        n_log = log_site.shape[0]
        while n_ev < max_events:
            total = tree[1]
            if not total > 0.0:
                t_now = t_stop
                break
            u1 = rng.random()
            dt = -np.log(1.0 - u1) / total
            if t_now + dt > t_stop:
                t_now = t_stop
                break
            t_now += dt
            leaf, rem = _tree_sample(tree, rng.random() * total)
            slot = -1
            last = -1
            for k in range(N_SLOTS):  # (no row view: a view costs two atomic refcounts)
                rk = rates[leaf, k]
                if rk > 0.0:
                    last = k
                    if rem < rk:
                        slot = k
                        break
                    rem -= rk
            if slot < 0:  # round-off past the last non-zero slot
                slot = last
            sp = occ[leaf]
            partner = -1  # the second changed site (the hop's vacancy), if any
            if slot < 6:
                partner = nn[leaf, slot]
                de = _field_swap_delta(occ, leaf, partner, nn_col[slot], nbr, ce_index, weights,
                                       local_table, field, colinfo, w_int, pair_table, quantum)  # fmt: skip
                if rp_on:
                    de += _rp_hop_delta(occ, phase, nn, leaf, partner, eps, eta, j_rp)
                _field_apply(leaf, ce_index[sp], ce_index[_VAC], nbr, dep, colinfo, w_int,
                             pair_table, field)  # fmt: skip
                _field_apply(partner, ce_index[_VAC], ce_index[sp], nbr, dep, colinfo, w_int,
                             pair_table, field)  # fmt: skip
                occ[partner] = sp
                occ[leaf] = _VAC
                counts[EV_HOP_PB + sp] += 1
            elif slot == SLOT_EXPEL:
                de = _field_flip_delta(occ, leaf, _VAC, nbr, ce_index, weights, local_table,
                                       field, quantum)  # fmt: skip
                if rp_on:
                    de += _rp_remove_delta(occ, phase, nn, leaf, eps, eta, j_rp)
                _field_apply(leaf, ce_index[sp], ce_index[_VAC], nbr, dep, colinfo, w_int,
                             pair_table, field)  # fmt: skip
                occ[leaf] = _VAC
                counts[EV_EXPEL_PB + sp] += 1
            elif rp_on and slot == SLOT_RP:
                de = _rp_flip_delta(occ, phase, nn, leaf, eps, eta, j_rp)
                phase[leaf] = PH_ZONE if phase[leaf] == PH_RP else PH_RP
                counts[EV_RP] += 1
            else:  # SLOT_RECEDE: recession V -> O or regrowth O -> V
                new = _OUT if sp == _VAC else _VAC
                de = _field_flip_delta(occ, leaf, new, nbr, ce_index, weights, local_table,
                                       field, quantum)  # fmt: skip
                _field_apply(leaf, ce_index[sp], ce_index[new], nbr, dep, colinfo, w_int,
                             pair_table, field)  # fmt: skip
                occ[leaf] = new
                counts[EV_RECEDE if sp == _VAC else EV_REGROW] += 1
            _refresh_after(
                leaf, partner, slot == SLOT_RECEDE, occ, phase, nn, nbr, dep, stamp, ce_index,
                weights, local_table, kp, fld, rates, site_total, tree, changed, rp_on, env, fx,
                hood,
            )  # fmt: skip
            de_sum += de
            if n_ev < n_log:
                log_site[n_ev] = leaf
                log_slot[n_ev] = slot
                log_time[n_ev] = t_now
            n_ev += 1
        return t_now, n_ev, de_sum

    @njit
    def _run_kmc_chunk_borrowed(a, t_now, t_stop, max_events, rng, log_site, log_slot, log_time):
        # Every array is borrowed once here (no atomic reference counts in the event loop,
        # see segsim.kernels._jit.borrow); the caller holds them for the whole call.
        f = a.fld
        fld_b = (borrow(f[0]), borrow(f[1]), borrow(f[2]), borrow(f[3]), borrow(f[4]), f[5])
        b = KMCArrays(
            borrow(a.occ), borrow(a.phase), borrow(a.rates), borrow(a.site_total),
            borrow(a.tree), borrow(a.nn), borrow(a.nbr), borrow(a.ce_index), borrow(a.weights),
            borrow(a.local_table), borrow(a.kp), fld_b, borrow(a.dep), borrow(a.stamp),
            borrow(a.changed), borrow(a.counts), borrow(a.synth),
            (borrow(a.fx[0]), borrow(a.fx[1]), borrow(a.fx[2]), borrow(a.fx[3]),
             borrow(a.fx[4])),
            borrow(a.hood),
        )  # fmt: skip
        return _run_kmc_chunk(
            b, t_now, t_stop, max_events, rng, borrow(log_site), borrow(log_slot),
            borrow(log_time),
        )  # fmt: skip

    return _run_kmc_chunk_borrowed


_run_kmc_chunk_pv = _make_run_kmc_chunk(False)  # no RP domains (kp[KP_RP_ON] == 0)
_run_kmc_chunk_rp = _make_run_kmc_chunk(True)


def _run_kmc_chunk(a, t_now, t_stop, max_events, rng, log_site, log_slot, log_time):
    """Run one chunk with the kernel compiled for ``a.kp[KP_RP_ON]`` (see the kernels' docstring).

    ``a`` is the :class:`KMCArrays` of the run: ``a.fld`` is the pair field tuple
    ``(field, colinfo, w_int, pair_table, nn_col, quantum)`` and ``a.local_table`` the CE's
    clusters of three or more sites (:func:`segsim.engine.pair_field_tables`).
    """
    kernel = _run_kmc_chunk_rp if a.kp[KP_RP_ON] > 0.0 else _run_kmc_chunk_pv
    return kernel(a, t_now, t_stop, max_events, rng, log_site, log_slot, log_time)
