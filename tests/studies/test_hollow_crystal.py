"""The vacancy energetics of studies/hollow_crystal against independent evaluations."""

from __future__ import annotations

import math

import numpy as np
import pytest

from segsim import species
from segsim.lattice import build_cube, build_periodic
from segsim.models.cluster_expansion import load_cluster_expansion
from segsim.params.files import POTENTIALS_DIR
from segsim.units import beta_per_ev
from studies.hollow_crystal import hollow_crystal

FITTED = POTENTIALS_DIR / "fitted.ce"


def test_formation_energy_and_equilibrium_fraction_of_the_fitted_ce():
    got = hollow_crystal.ce_numbers(FITTED, n_edge=8)
    model = load_cluster_expansion(FITTED)
    # G_f from total energies of a 4^3 periodic cell (the study uses 8^3 and a flip energy)
    cell = build_periodic(4, model.a_angstrom)
    t = model.compile(cell)
    occ = cell.empty_occupations()
    e0 = t.total_energy(occ)
    occ[5] = species.VAC
    g_f = t.total_energy(occ) - e0 + e0 / cell.n_sites - model.mu_csbr_ev
    assert got["g_f_bulk_csbr_rich"] == pytest.approx(g_f, abs=1e-9)
    for temp in hollow_crystal.TEMPERATURES_K:
        assert got[f"c_eq_{temp:.0f}K"] == pytest.approx(math.exp(-beta_per_ev(temp) * g_f))
    # dOmega of a corner recession from total energies: E(O) - E(V) + mu (the corner loses
    # one CsBr unit, docs/model.md)
    lat = build_cube(8, model.a_angstrom, model.reach + 1)
    tc = model.compile(lat)
    corner = int(lat.site_index(*(np.array([lat.pad]) for _ in range(3)))[0])
    o = lat.empty_occupations()
    o[corner] = species.VAC
    e_v = tc.total_energy(o)
    o[corner] = species.OUT
    assert got["domega_corner"] == pytest.approx(tc.total_energy(o) - e_v + model.mu_csbr_ev)
    # what both the CE and CHGNet say: lower-coordinated sites recede more easily
    assert got["domega_corner"] < got["domega_edge"] < got["domega_face"]
