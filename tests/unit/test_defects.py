"""Unit tests of segsim.defects: definitions and formulas with hand numbers."""

from __future__ import annotations

import math

import numpy as np
import pytest

from segsim.defects import (
    BOLTZMANN_EV_PER_K,
    CSBR,
    PBBR2,
    TRANS_PAIR_ORIENTATIONS,
    ChemicalPotentials,
    combine,
    equilibrium_fraction,
    exchanged_units,
    formula_counts,
    fraction_interval,
    mean_sem,
    recession_energy_ev,
    vacancy_formation_energy_ev,
)
from segsim.defects.chemistry import perovskite_formation_energy_ev


def test_formula_counts_and_unknown_element() -> None:
    assert formula_counts(["Cs", "Pb", "Br", "Br", "Br"]) == {"Cs": 1, "Pb": 1, "Cd": 0, "Br": 3}
    with pytest.raises(ValueError, match="unexpected"):
        formula_counts(["Cs", "O"])


def test_exchanged_units_vacancy_and_recession() -> None:
    host = {"Cs": 27, "Pb": 27, "Cd": 0, "Br": 81}
    vac = {"Cs": 27, "Pb": 26, "Cd": 0, "Br": 79}
    assert exchanged_units(host, vac) == {PBBR2: 1, CSBR: 0}
    # Face recession in a 5^3 NC: the O state has one more CsBr than the V state.
    v_state = {"Cs": 200, "Pb": 124, "Cd": 0, "Br": 448}
    o_state = {"Cs": 201, "Pb": 124, "Cd": 0, "Br": 449}
    assert exchanged_units(v_state, o_state) == {PBBR2: 0, CSBR: -1}
    # Cd counts as M.
    assert (
        exchanged_units({"Cs": 1, "Pb": 0, "Cd": 1, "Br": 3}, {"Cs": 1, "Pb": 0, "Cd": 0, "Br": 1})[
            PBBR2
        ]
        == 1
    )
    # A Br vacancy alone is not a sum of neutral units.
    with pytest.raises(ValueError, match="not n MBr2"):
        exchanged_units(host, {"Cs": 27, "Pb": 27, "Cd": 0, "Br": 80})


def test_chemical_potential_limits() -> None:
    e_bulk, mu_csbr, mu_pbbr2 = -17.64, -6.676, -10.672
    rich = ChemicalPotentials.csbr_rich(e_bulk, mu_csbr)
    assert rich.mu_csbr_ev == mu_csbr
    assert rich.mu_pbbr2_ev == pytest.approx(-10.964)
    poor = ChemicalPotentials.pbbr2_rich(e_bulk, mu_pbbr2)
    assert poor.mu_pbbr2_ev == mu_pbbr2
    assert poor.mu_csbr_ev == pytest.approx(-6.968)
    for mu in (rich, poor):  # both on the stability line of CsPbBr3
        assert mu.mu_csbr_ev + mu.mu_pbbr2_ev == pytest.approx(e_bulk)
    dh = perovskite_formation_energy_ev(e_bulk, mu_csbr, mu_pbbr2)
    assert dh == pytest.approx(-0.292)
    assert rich.reservoir_energy_ev({PBBR2: 1, CSBR: 0}) == pytest.approx(-10.964)
    with pytest.raises(KeyError):
        rich.of("CdBr2")


def test_vacancy_formation_energy_hand_numbers() -> None:
    # 3^3 cell: E(V) - E(perfect) = 11.18 eV, mu_PbBr2 = -10.964 -> G_f = 0.216 eV.
    mu = ChemicalPotentials.csbr_rich(-17.64, -6.676)
    g = vacancy_formation_energy_ev(-465.10, -476.28, {PBBR2: 1, CSBR: 0}, mu)
    assert g == pytest.approx(0.216, abs=1e-9)
    # G_f(CsBr-rich) = G_f(PbBr2-rich) + dH.
    poor = ChemicalPotentials.pbbr2_rich(-17.64, -10.672)
    g_poor = vacancy_formation_energy_ev(-465.10, -476.28, {PBBR2: 1, CSBR: 0}, poor)
    assert g - g_poor == pytest.approx(perovskite_formation_energy_ev(-17.64, -6.676, -10.672))


def test_recession_energy_sign_convention() -> None:
    # O state gained one CsBr: dOmega = E(O) - E(V) - mu_CsBr.
    assert recession_energy_ev(-2689.0, -2682.5, 1, -6.676) == pytest.approx(0.176)
    # Corner: one CsBr fewer.
    assert recession_energy_ev(-2676.0, -2682.5, -1, -6.676) == pytest.approx(-0.176)


def test_equilibrium_fraction() -> None:
    kt = BOLTZMANN_EV_PER_K * 298.0
    assert float(equilibrium_fraction(0.3, 298.0)) == pytest.approx(math.exp(-0.3 / kt))
    assert float(equilibrium_fraction(0.3, 298.0, TRANS_PAIR_ORIENTATIONS)) == pytest.approx(
        3 * math.exp(-0.3 / kt)
    )
    # 0.263 eV at 298 K (the CE bulk number): k_B T = 25.68 meV, exp(-10.24) = 3.57e-5.
    assert float(equilibrium_fraction(0.263, 298.0)) == pytest.approx(3.566e-5, rel=0.002)
    np.testing.assert_allclose(equilibrium_fraction(np.array([0.0, 0.1]), 343.0)[0], 1.0)
    with pytest.raises(ValueError, match="temperature"):
        equilibrium_fraction(0.3, 0.0)
    with pytest.raises(ValueError, match="degeneracy"):
        equilibrium_fraction(0.3, 300.0, 0)


def test_fraction_interval_is_ordered_and_lognormal() -> None:
    c, lo, hi = fraction_interval(0.3, 0.05, 298.0)
    assert lo < c < hi
    assert c / lo == pytest.approx(hi / c)  # symmetric in log c
    assert math.log(hi / c) == pytest.approx(0.05 / (BOLTZMANN_EV_PER_K * 298.0))


def test_mean_sem_and_combine() -> None:
    m, s = mean_sem([1.0, 2.0, 3.0, 4.0])
    assert m == 2.5
    assert s == pytest.approx(np.std([1, 2, 3, 4], ddof=1) / 2.0)
    assert math.isnan(mean_sem([1.0])[1])
    with pytest.raises(ValueError, match="no values"):
        mean_sem([])
    assert combine(0.03, 0.04) == pytest.approx(0.05)
