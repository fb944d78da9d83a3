"""Ruddlesden-Popper (RP) phase field: its energy term as compiled local changes.

MODEL.md section 2: ``E_RP = sum over RP sites of (eps_RP - eta [Cd]) + J_RP * (number of
RP/perovskite nearest-neighbour pairs)``.  segsim's reading, written down in
:mod:`segsim.rp`:

* the phase is a property of the *site* (of the lattice region), kept in a ``uint8`` array
  ``phase`` with the codes below; a cation that hops takes the phase of the site it lands on;
* the site term and the pair term count only sites that hold a cation (Pb or Cd).  A vacancy
  carries no RP energy, so a recession (V -> O) leaves ``E_RP`` unchanged, as MODEL.md
  requires (``dE = 0``), and a vacancy remembers the phase of its site;
* RP can only exist inside the zone where an RP fault was seeded (code ``PH_ZONE``: perovskite
  inside that zone).  Relaxation RP -> perovskite and its reverse act only there.

All functions take the energy parameters in eV and return energy changes in eV.  The
obviously-correct twin is :func:`segsim.rp.rp_energy_ev` (a vectorised full sum), and the
tests check every local change against differences of full sums.
"""

from segsim.kernels._jit import njit_inline

_PB = 0
_CD = 1

#: Phase codes (``uint8``): perovskite outside any RP zone, RP, perovskite inside an RP zone.
PH_PV = 0
PH_RP = 1
PH_ZONE = 2


@njit_inline
def _pair_cost(site, ph_site, occ, phase, nn, skip):
    """Count the cation neighbours of ``site`` (not ``skip``) of the other RP-ness.

    ``ph_site`` is ``1`` for RP and ``0`` otherwise.
    """
    n = 0
    for d in range(6):
        c = nn[site, d]
        if c == skip or occ[c] > _CD:
            continue
        if (phase[c] == PH_RP) != (ph_site == 1):
            n += 1
    return n


@njit_inline
def _rp_site_energy(site, sp, occ, phase, nn, eps, eta, j_rp, skip):
    """Return the RP energy (eV) of cation ``sp`` on ``site``.

    That is its site term plus all its RP/perovskite pairs with the cations around it
    (``skip`` excluded).
    """
    is_rp = 1 if phase[site] == PH_RP else 0
    e = 0.0
    if is_rp:
        e = eps - (eta if sp == _CD else 0.0)
    return e + j_rp * _pair_cost(site, is_rp, occ, phase, nn, skip)


@njit_inline
def _rp_hop_delta(occ, phase, nn, i, j, eps, eta, j_rp):
    """``dE_RP`` (eV) of the cation on ``i`` moving into the vacancy on neighbour ``j``."""
    sp = occ[i]
    return _rp_site_energy(j, sp, occ, phase, nn, eps, eta, j_rp, i) - _rp_site_energy(
        i, sp, occ, phase, nn, eps, eta, j_rp, j
    )


@njit_inline
def _rp_remove_delta(occ, phase, nn, site, eps, eta, j_rp):
    """``dE_RP`` (eV) of removing the cation on ``site`` (it becomes a vacancy)."""
    return -_rp_site_energy(site, occ[site], occ, phase, nn, eps, eta, j_rp, -1)


@njit_inline
def _rp_flip_delta(occ, phase, nn, site, eps, eta, j_rp):
    """``dE_RP`` (eV) of switching the phase of the cation site ``site`` (RP <-> zone)."""
    was_rp = 1 if phase[site] == PH_RP else 0
    base = eps - (eta if occ[site] == _CD else 0.0)
    pairs_old = _pair_cost(site, was_rp, occ, phase, nn, -1)
    pairs_new = _pair_cost(site, 1 - was_rp, occ, phase, nn, -1)
    sign = -1.0 if was_rp else 1.0
    return sign * base + j_rp * (pairs_new - pairs_old)


@njit_inline
def _rp_swap_delta(phase, i, j, eta):
    """``dE_RP`` (eV) of a Pb (on ``i``) / Cd (on ``j``) exchange: only ``eta`` changes."""
    return -eta * ((1.0 if phase[i] == PH_RP else 0.0) - (1.0 if phase[j] == PH_RP else 0.0))
