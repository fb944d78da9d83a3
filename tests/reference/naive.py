"""Slow, obviously-correct plain-Python twins of segsim's kernels.

Nothing here uses segsim's compiled tables (:class:`segsim.models.base.ModelTables`) or
:mod:`segsim.models.cluster_expansion`: the cluster expansion is evaluated straight from
icet's orbit list, and the Metropolis chain is a plain loop that draws random numbers in the
same order as :func:`segsim.kernels.metropolis._run_mc_chunk`.

Conventions (see ``segsim/species.py``): occupations are species codes per site of a periodic
grid of shape ``(L, L, L)`` in C order (``site = (ix * L + iy) * L + iz``); Pb=0, Cd=1,
V=2 and O=3; V and O are both the CE species ``X``, except in a four-species CE, where V
is the species ``V``.

The cluster vector is icet's (the definition, written out):

    cv_0 = 1,
    cv_e = 1 / (N * M_e) * sum_R sum_{c in orbit(e).clusters} sum_{p in P_e}
           prod_q Theta_{m_e[p[q]]}(sigma_{R + c_q}),

with ``N`` grid sites, ``M_e`` the multiplicity, ``P_e`` the site permutations and ``m_e``
the multicomponent vector of element ``e``, ``Theta`` icet's point functions and
``sigma`` the species index of a site (``cs.species_maps[0]``).  The total energy is
``E = N * sum_e J_e cv_e`` (``J_0`` the zerolet).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

# Species codes and the atomic number icet sees for each (X = no B cation, Z = 0).
PB, CD, VAC, OUT = 0, 1, 2, 3
_ATOMIC_NUMBER_OF_CODE = {PB: 82, CD: 48, VAC: 0, OUT: 0}
#: The symbol "V" (Z = 23) that a four-species CE uses for the vacancy.
_Z_VACANCY_SPECIES = 23


class NaiveCE:
    """A cluster expansion evaluated directly from icet's orbit list, in plain Python.

    Parameters
    ----------
    ce
        An ``icet.ClusterExpansion`` on a one-site simple-cubic primitive cell.
    """

    def __init__(self, ce: Any) -> None:
        cs = ce.get_cluster_space_copy()
        self.params = np.asarray(ce.parameters, dtype=np.float64)
        n_allowed = len(cs.chemical_symbols[0])
        spmap = cs.species_maps[0]
        z_of_code = dict(_ATOMIC_NUMBER_OF_CODE)
        if _Z_VACANCY_SPECIES in spmap:  # a four-species CE: the vacancy is "V" (Z = 23)
            z_of_code[VAC] = _Z_VACANCY_SPECIES
        #: species code -> icet species index
        self.species_index = {code: int(spmap[z]) for code, z in z_of_code.items()}
        #: theta[m][s]: point function m evaluated for species index s
        self.theta = [
            [cs.evaluate_cluster_function(n_allowed, m, s) for s in range(n_allowed)]
            for m in range(n_allowed - 1)
        ]
        # One entry per orbit: its clusters (lists of integer offsets) and its elements
        # (parameter index, multicomponent vector, permutations, multiplicity).
        self.orbits: list[dict[str, Any]] = []
        index = 1
        for oi in range(len(cs.orbit_list)):
            orbit = cs.orbit_list.get_orbit(oi)
            clusters = [
                [tuple(int(v) for v in ls.unitcell_offset) for ls in c.lattice_sites]
                for c in orbit.clusters
            ]
            elements = []
            for el in orbit.cluster_vector_elements:
                elements.append(
                    (
                        index,
                        [int(m) for m in el["multicomponent_vector"]],
                        [[int(v) for v in p] for p in el["site_permutations"]],
                        int(el["multiplicity"]),
                    )
                )
                index += 1
            self.orbits.append({"clusters": clusters, "elements": elements})
        if index != self.params.size:
            raise ValueError(f"parameter count mismatch: {index} != {self.params.size}")
        self._memo: dict[tuple[int, tuple[int, ...]], list[float]] = {}

    # ------------------------------------------------------------------ one cluster
    def _element_sums(self, orbit_index: int, sigmas: tuple[int, ...]) -> list[float]:
        """Return, per element of the orbit, sum_p prod_q Theta_{m[p[q]]}(sigma_q)."""
        key = (orbit_index, sigmas)
        if key not in self._memo:
            sums = []
            for _, mc, perms, _ in self.orbits[orbit_index]["elements"]:
                acc = 0.0
                for p in perms:
                    prod = 1.0
                    for q in range(len(sigmas)):
                        prod *= self.theta[mc[p[q]]][sigmas[q]]
                    acc += prod
                sums.append(acc)
            self._memo[key] = sums
        return self._memo[key]

    def _sigmas(self, grid: np.ndarray, origin: tuple[int, int, int], cluster: list) -> tuple:
        """Return the species indices of ``cluster`` translated to ``origin`` (wrapped)."""
        lx, ly, lz = grid.shape
        ox, oy, oz = origin
        return tuple(
            self.species_index[int(grid[(ox + dx) % lx, (oy + dy) % ly, (oz + dz) % lz])]
            for dx, dy, dz in cluster
        )

    def cluster_energy(
        self, grid: np.ndarray, orbit_index: int, cluster_index: int, origin: tuple
    ) -> float:
        """Return the energy (eV) of one cluster instance: sum_e J_e/M_e sum_p prod Theta."""
        orbit = self.orbits[orbit_index]
        sigmas = self._sigmas(grid, origin, orbit["clusters"][cluster_index])
        sums = self._element_sums(orbit_index, sigmas)
        return sum(
            self.params[idx] / mult * s
            for (idx, _, _, mult), s in zip(orbit["elements"], sums, strict=True)
        )

    # ------------------------------------------------------------------ whole grid
    def cluster_vector(self, occupations: np.ndarray, shape: tuple[int, int, int]) -> np.ndarray:
        """Return icet's cluster vector of the periodic grid, from the definition."""
        grid = np.asarray(occupations).reshape(shape)
        n_sites = grid.size
        raw = np.zeros(self.params.size)
        raw[0] = 1.0
        for origin in np.ndindex(*shape):
            for oi, orbit in enumerate(self.orbits):
                for cluster in orbit["clusters"]:
                    sums = self._element_sums(oi, self._sigmas(grid, origin, cluster))
                    for (idx, _, _, _), s in zip(orbit["elements"], sums, strict=True):
                        raw[idx] += s
        cv = raw.copy()
        for orbit in self.orbits:
            for idx, _, _, mult in orbit["elements"]:
                cv[idx] = raw[idx] / (n_sites * mult)
        return cv

    def total_energy(self, occupations: np.ndarray, shape: tuple[int, int, int]) -> float:
        """Return the total energy (eV) of the periodic grid, ``N * J . cv``."""
        n_sites = int(np.prod(shape))
        return float(n_sites * np.dot(self.params, self.cluster_vector(occupations, shape)))

    def swap_delta_full(
        self, occupations: np.ndarray, shape: tuple[int, int, int], i: int, j: int
    ) -> float:
        """Return E(after swapping sites i and j) - E(before), by two full recomputes."""
        after = np.array(occupations, copy=True)
        after[i], after[j] = occupations[j], occupations[i]
        return self.total_energy(after, shape) - self.total_energy(occupations, shape)

    def flip_delta_full(
        self, occupations: np.ndarray, shape: tuple[int, int, int], site: int, new_code: int
    ) -> float:
        """Return E(site set to new_code) - E(before), by two full recomputes."""
        after = np.array(occupations, copy=True)
        after[site] = new_code
        return self.total_energy(after, shape) - self.total_energy(occupations, shape)

    # ------------------------------------------------------------------ local sums
    def _instances_touching(
        self, shape: tuple[int, int, int], sites: list[int]
    ) -> set[tuple[int, int, tuple[int, int, int]]]:
        """Return every cluster instance (orbit, cluster, origin) that contains a site."""
        lx, ly, lz = shape
        found = set()
        for site in sites:
            x, y, z = (int(v) for v in np.unravel_index(site, shape))
            for oi, orbit in enumerate(self.orbits):
                for ci, cluster in enumerate(orbit["clusters"]):
                    for dx, dy, dz in cluster:
                        found.add((oi, ci, ((x - dx) % lx, (y - dy) % ly, (z - dz) % lz)))
        return found

    def swap_delta_local(
        self, occupations: np.ndarray, shape: tuple[int, int, int], i: int, j: int
    ) -> float:
        """Return the swap energy change summed over the cluster instances touching i or j.

        Every instance that contains ``i`` or ``j`` is collected once (a set), and its energy
        is evaluated before and after the swap; all other instances are unchanged.
        """
        flat = np.asarray(occupations).reshape(-1)
        swapped = flat.copy()
        swapped[i], swapped[j] = flat[j], flat[i]
        before, after = flat.reshape(shape), swapped.reshape(shape)
        de = 0.0
        for oi, ci, origin in self._instances_touching(shape, [i, j]):
            de += self.cluster_energy(after, oi, ci, origin)
            de -= self.cluster_energy(before, oi, ci, origin)
        return de

    def flip_delta_local(
        self, occupations: np.ndarray, shape: tuple[int, int, int], site: int, new_code: int
    ) -> float:
        """Return the energy change of setting ``site`` to ``new_code``, summed locally.

        Every cluster instance that contains ``site`` is evaluated before and after.
        """
        flat = np.asarray(occupations).reshape(-1)
        changed = flat.copy()
        changed[site] = new_code
        before, after = flat.reshape(shape), changed.reshape(shape)
        de = 0.0
        for oi, ci, origin in self._instances_touching(shape, [site]):
            de += self.cluster_energy(after, oi, ci, origin)
            de -= self.cluster_energy(before, oi, ci, origin)
        return de


def naive_mc_chain(
    occupations: np.ndarray,
    pb_sites: np.ndarray,
    cd_sites: np.ndarray,
    n_steps: int,
    beta: float,
    delta_energy: Callable[[np.ndarray, int, int], float],
    rng: np.random.Generator,
    *,
    tie_tol: float = 1e-12,
) -> dict[str, Any]:
    """Run canonical Metropolis Pb/Cd swaps in plain Python; the inputs are not modified.

    Draws random numbers exactly as ``_run_mc_chunk``: per trial ``u1`` (Pb list index
    ``int(u1 * n_pb)``) and ``u2`` (Cd list index ``int(u2 * n_cd)``), and a third ``u3``
    only when ``dE > 0``; the swap is accepted if ``dE <= 0`` or ``u3 < exp(-beta * dE)``.
    On acceptance the two list entries exchange their sites.

    A trial whose ``|dE|`` is below ``tie_tol`` is a *near tie*: its exact value is zero up to
    round-off, so whether a third number is drawn depends on the sign of the rounding error,
    which two correct implementations need not share.  Chains can only be compared number for
    number when ``n_near_ties`` is zero (or when both use the same ``dE`` function).

    Parameters
    ----------
    delta_energy
        ``delta_energy(occupations, i, j)``: energy change (eV) of swapping sites ``i`` and
        ``j``, e.g. :meth:`NaiveCE.swap_delta_local` with the shape bound in.

    Returns
    -------
    dict
        ``occupations``, ``pb_sites``, ``cd_sites`` (new arrays), ``n_accepted``,
        ``de_sum`` (eV), ``de_trials`` (the energy change of every trial) and
        ``n_near_ties``.
    """
    occ = np.array(occupations, copy=True)
    pb = [int(s) for s in pb_sites]
    cd = [int(s) for s in cd_sites]
    n_accepted = 0
    de_sum = 0.0
    de_trials = []
    if len(pb) > 0 and len(cd) > 0:
        for _ in range(n_steps):
            a = int(rng.random() * len(pb))
            b = int(rng.random() * len(cd))
            i, j = pb[a], cd[b]
            de = float(delta_energy(occ, i, j))
            de_trials.append(de)
            accept = True
            if de > 0.0:
                accept = rng.random() < math.exp(-beta * de)
            if accept:
                occ[i], occ[j] = occ[j], occ[i]
                pb[a], cd[b] = j, i
                n_accepted += 1
                de_sum += de
    return {
        "occupations": occ,
        "pb_sites": np.array(pb, dtype=np.int64),
        "cd_sites": np.array(cd, dtype=np.int64),
        "n_accepted": n_accepted,
        "de_sum": de_sum,
        "de_trials": np.array(de_trials),
        "n_near_ties": int(np.sum(np.abs(np.array(de_trials)) < tie_tol)),
    }


# ----------------------------------------------------------------------------- KMC
#: Event slots of a site (the layout of segsim.kernels.kmc): 0-5 hop into nn[site, slot],
#: 6 expulsion, 7 recession, 8 RP switch.
N_SLOTS, SLOT_EXPEL, SLOT_RECEDE, SLOT_RP = 9, 6, 7, 8
#: RP phase codes (segsim.rp): perovskite, RP, relaxed perovskite inside an RP zone.
PH_PV, PH_RP, PH_ZONE = 0, 1, 2


def naive_rp_energy(occupations: np.ndarray, phase: np.ndarray, nn: np.ndarray, rp: dict) -> float:
    """``E_RP`` (eV) by its definition, every nearest-neighbour pair visited once (i < j).

    ``rp`` holds ``eps``, ``eta``, ``j`` (eV).  Only cation (Pb/Cd) sites count.
    """
    e = 0.0
    for i in range(occupations.shape[0]):
        if occupations[i] > CD:
            continue
        if phase[i] == PH_RP:
            e += rp["eps"] - (rp["eta"] if occupations[i] == CD else 0.0)
        for d in range(6):
            j = int(nn[i, d])
            if j > i and occupations[j] <= CD and (phase[i] == PH_RP) != (phase[j] == PH_RP):
                e += rp["j"]
    return e


def naive_event_rates(
    occupations: np.ndarray,
    nn: np.ndarray,
    flip_delta: Callable[[np.ndarray, int, int], float],
    swap_delta: Callable[[np.ndarray, int, int], float],
    p: dict[str, float],
) -> list[tuple[int, int, float]]:
    """Return every non-zero event ``(site, slot, rate in 1/s)`` in site-major order.

    Written straight from MODEL.md section 3.  ``p`` holds ``beta`` (1/eV), ``nu`` (1/s),
    ``e_kra`` / ``e_exp`` / ``ref`` (dicts species code -> eV), optionally ``de_kra`` (dict
    species code -> the KRA's change with 1 and 2 Cd on the hop's axis), ``alpha``, ``e_rec`` and
    optionally ``alpha_rec`` and ``mu_rec`` (eV per CsBr unit; with ``dOmega`` the change of the
    grand-canonical energy ``E - csbr_units * mu_rec`` from the V to the O state of a site, the
    recession barrier is ``max(e_rec + alpha_rec dOmega, dOmega, 0)`` and the regrowth barrier
    that minus ``dOmega``), ``synth`` (bool per site: where recession and regrowth may
    happen), ``regrowth`` (bool),
    ``theta`` and the switches ``hop``, ``expulsion``, ``recession`` (bools); optionally
    ``rp`` (dict: ``eps``, ``eta``, ``j``, ``e_rpa``, ``shift`` in eV) and then ``phase``
    (the RP phase codes, read and not modified).  RP energy changes are differences of
    :func:`naive_rp_energy`.
    """
    out = []
    rp = p.get("rp")
    phase = p.get("phase")

    def rp_change(new_occ, new_phase):
        if rp is None:
            return 0.0
        return naive_rp_energy(new_occ, new_phase, nn, rp) - naive_rp_energy(
            occupations, phase, nn, rp
        )

    for site in range(occupations.shape[0]):
        sp = int(occupations[site])
        k = sum(1 for d in range(6) if occupations[nn[site, d]] == OUT)
        if sp in (PB, CD):
            for d in range(6):
                j = int(nn[site, d])
                if p["hop"] and occupations[j] == VAC:
                    de = swap_delta(occupations, site, j)
                    after = occupations.copy()
                    after[j], after[site] = sp, VAC
                    de += rp_change(after, phase)
                    e_kra = p["e_kra"][sp]
                    # Cd on the hop's axis: the site beyond the vacancy (one more step in the
                    # hop's direction d) and the site behind the cation (whose step d is the
                    # cation), found by search, not by the kernel's d ^ 1 pairing
                    beyond = int(nn[j, d])
                    behind = [int(u) for u in range(len(occupations)) if int(nn[u, d]) == site]
                    n_cd = int(occupations[beyond] == CD) + sum(
                        int(occupations[u] == CD) for u in behind
                    )
                    if n_cd:
                        e_kra += p.get("de_kra", {}).get(sp, (0.0, 0.0))[n_cd - 1]
                    ea = max(e_kra + de / 2, de, 0.0)
                    out.append((site, d, p["nu"] * math.exp(-p["beta"] * ea)))
            if p["expulsion"] and k > 0 and 1.0 - p["theta"] ** k > 0.0:
                de_rm = flip_delta(occupations, site, VAC)
                ea = max(0.0, p["e_exp"][sp] + p["alpha"] * (de_rm - p["ref"][sp]))
                rate = p["nu"] * math.exp(-p["beta"] * ea) * (1.0 - p["theta"] ** k)
                out.append((site, SLOT_EXPEL, rate))
            if rp is not None and phase[site] in (PH_RP, PH_ZONE):
                crystal = [int(j) for j in nn[site] if occupations[j] != OUT]
                if k > 0 or any(phase[j] != PH_RP for j in crystal):
                    flipped = phase.copy()
                    flipped[site] = PH_ZONE if phase[site] == PH_RP else PH_RP
                    de = rp_change(occupations, flipped)
                    adj = k > 0 or any(
                        occupations[nn[j, d]] == OUT for j in crystal for d in range(6)
                    )
                    ea0 = rp["e_rpa"] - (rp["shift"] if adj else 0.0)
                    ea = max(ea0 + de / 2, de, 0.0)
                    out.append((site, SLOT_RP, p["nu"] * math.exp(-p["beta"] * ea)))
        elif sp in (VAC, OUT) and p["recession"] and k > 0 and p["synth"][site]:
            if sp == OUT and not p.get("regrowth", False):
                continue
            # the V state and the O state of this site, whichever we are in
            with_v, with_o = occupations.copy(), occupations.copy()
            with_v[site], with_o[site] = VAC, OUT
            e_v_to_o = (
                flip_delta(occupations, site, OUT)
                if sp == VAC
                else -flip_delta(occupations, site, VAC)
            )
            mu = p.get("mu_rec", 0.0)
            d_omega = e_v_to_o - (csbr_units(with_o, nn) - csbr_units(with_v, nn)) * mu
            ea = max(p["e_rec"] + p.get("alpha_rec", 0.0) * d_omega, d_omega, 0.0)
            if sp == OUT:  # regrowth: the reverse path, over the same saddle
                ea -= d_omega
            out.append((site, SLOT_RECEDE, p["nu"] * math.exp(-p["beta"] * ea)))
    return out


def csbr_units(occupations: np.ndarray, nn: np.ndarray) -> int:
    """CsBr units the atomistic structure holds beyond its cations and vacancies, up to a constant.

    ``2 N_O - N_OO`` (outside sites, nearest-neighbour outside pairs): a recession with ``k``
    outside neighbours adds ``2 - k`` (segsim.kinetics, checked against the atomistic builder
    in test_atomistic).  The grand-canonical energy is ``E - csbr_units * mu_CsBr``.
    """
    out = occupations == OUT
    pairs = sum(int(np.sum(out & out[nn[:, d]])) for d in range(6)) // 2
    return 2 * int(out.sum()) - pairs


def naive_kmc(
    occupations: np.ndarray,
    nn: np.ndarray,
    flip_delta: Callable[[np.ndarray, int, int], float],
    swap_delta: Callable[[np.ndarray, int, int], float],
    p: dict[str, float],
    rng: np.random.Generator,
    *,
    t_start: float,
    t_stop: float,
    max_events: int,
) -> dict[str, Any]:
    """Plain-Python rejection-free KMC: full rate recompute and a linear scan every event.

    Draws random numbers as ``_run_kmc_chunk``: ``u1`` for ``dt = -ln(1 - u1) / R``; if the
    clock would pass ``t_stop`` it stops there without an event; otherwise ``u2 * R`` is
    located in the cumulative rates (site-major, slot order).  Returns the final
    ``occupations`` (a copy), ``phase`` (a copy, if ``p`` has ``rp``), ``time``, the event
    log ``events`` [(site, slot, time)] and ``de_sum`` (eV, CE + RP).
    """
    occ = np.array(occupations, copy=True)
    rp = p.get("rp")
    p = dict(p)
    if rp is not None:
        p["phase"] = np.array(p["phase"], copy=True)
    phase = p.get("phase")

    def e_rp():
        return 0.0 if rp is None else naive_rp_energy(occ, phase, nn, rp)

    t = t_start
    events = []
    de_sum = 0.0
    while len(events) < max_events:
        rates = naive_event_rates(occ, nn, flip_delta, swap_delta, p)
        total = sum(r for _, _, r in rates)
        if total <= 0.0:
            t = t_stop
            break
        dt = -math.log(1.0 - rng.random()) / total
        if t + dt > t_stop:
            t = t_stop
            break
        t += dt
        target = rng.random() * total
        acc = 0.0
        chosen = rates[-1]
        for ev in rates:
            acc += ev[2]
            if target < acc:
                chosen = ev
                break
        site, slot, _ = chosen
        e_before = e_rp()
        if slot < 6:
            j = int(nn[site, slot])
            de_sum += swap_delta(occ, site, j)
            occ[j], occ[site] = occ[site], VAC
        elif slot == SLOT_EXPEL:
            de_sum += flip_delta(occ, site, VAC)
            occ[site] = VAC
        elif slot == SLOT_RP:
            phase[site] = PH_ZONE if phase[site] == PH_RP else PH_RP
        else:
            new = OUT if occ[site] == VAC else VAC  # recession, or regrowth
            de_sum += flip_delta(occ, site, new)
            occ[site] = new
        de_sum += e_rp() - e_before
        events.append((site, slot, t))
    out = {"occupations": occ, "time": t, "events": events, "de_sum": de_sum}
    if rp is not None:
        out["phase"] = phase
    return out


def naive_debye_intensity(
    atoms: Any, two_theta_deg: np.ndarray, wavelength: float = 1.5406
) -> np.ndarray:
    """Twin of the Debye pattern (:func:`segsim.viz.xrd.debye_intensity`, kernel
    :func:`segsim.kernels.debye._pair_histograms`): no histogram, every ordered pair of atoms.

    ``I = P(2theta) sum_i sum_j f_i f_j sin(q r_ij) / (q r_ij)`` (the i = j terms are
    ``f_i^2``), ``q = 4 pi sin(theta) / lambda``, ``P = (1 + cos^2 2theta) / 2``; the form
    factors are segsim's (tabulated data, not code under test).
    """
    from segsim.viz.xrd import form_factor

    tt = np.asarray(two_theta_deg, dtype=np.float64)
    q = 4 * np.pi * np.sin(np.radians(tt) / 2) / wavelength
    symbols = atoms.get_chemical_symbols()
    pos = atoms.positions
    out = np.zeros_like(q)
    for k, qk in enumerate(q):
        f = np.array([form_factor(s, qk / (4 * np.pi)) for s in symbols])
        total = 0.0
        for i in range(len(atoms)):
            for j in range(len(atoms)):
                r = np.linalg.norm(pos[i] - pos[j])
                total += f[i] * f[j] * (1.0 if r == 0 else math.sin(qk * r) / (qk * r))
        out[k] = total
    return 0.5 * (1 + np.cos(np.radians(tt)) ** 2) * out


def naive_distance_to_outside(points: np.ndarray, is_out: np.ndarray) -> np.ndarray:
    """Twin of the distances behind :func:`segsim.atomistic.depth_below_surface_angstrom`.

    Distances in grid units from each point to the nearest O site of the periodic grid
    ``is_out`` (minimum image), every O site tried, no tree and no search window.
    """
    shape = np.asarray(is_out.shape, dtype=np.float64)
    outs = np.argwhere(is_out).astype(np.float64)
    res = np.full(len(points), np.inf)
    for p, x in enumerate(np.asarray(points, dtype=np.float64)):
        best = math.inf
        for o in outs:
            d = x - o
            d -= shape * np.round(d / shape)
            best = min(best, math.sqrt(float(d @ d)))
        res[p] = best
    return res
