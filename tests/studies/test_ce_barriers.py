"""The CE-barrier table (studies/ce_barriers) against the analytic values of provisional.ce.

``provisional.ce`` is a nearest-neighbour pair model with one broken-bond energy
``GAMMA_BOND_EV`` (0.07 eV): removing a cation costs GAMMA less per extra outside neighbour,
one surface vacancy beside a face site lowers the removal by GAMMA, a vacancy moved one layer
in costs GAMMA, and V and O are one species (no recession energy).
"""

from __future__ import annotations

import pytest

from segsim.training.provisional import GAMMA_BOND_EV
from studies.ce_barriers import ce_barriers


def _row(rows, label):
    (line,) = [r for r in rows if r.startswith(f"| {label} |")]
    return [float(v) for v in line.strip("|").split("|")[1:4]]  # mean, min, max


def test_provisional_removal_recession_and_injection_are_the_broken_bond_values():
    rows = ce_barriers.model_rows("provisional.ce", edge_nm=4.0)
    g = GAMMA_BOND_EV
    assert _row(rows, "dE_rm(Pb), k = 1") == pytest.approx([0.0, 0.0, 0.0], abs=1e-9)
    assert _row(rows, "dE_rm(Pb), k = 2") == pytest.approx([-g, -g, -g], abs=1e-9)
    assert _row(rows, "dE_rm(Pb), k = 3") == pytest.approx([-2 * g] * 3, abs=1e-9)
    assert _row(rows, "dE_rm(Pb), face, beside a surface V") == pytest.approx([-g] * 3, abs=1e-9)
    for k in (1, 2, 3):
        assert _row(rows, f"dE_rec + (k - 1) mu_CsBr, k = {k}") == pytest.approx([0.0] * 3)
    assert _row(rows, "V injection (face centre -> depth 1, pure NC)")[0] == pytest.approx(g)


def test_provisional_sees_only_nearest_neighbour_vacancies():
    rows = ce_barriers.model_rows("provisional.ce", edge_nm=4.0)
    g = GAMMA_BOND_EV
    for m in range(6):
        label = f"dE_rm(Pb), face centre of a pure NC, {m} vacant neighbours"
        assert _row(rows, label)[0] == pytest.approx(-m * g, abs=1e-9)
    below = "dE_rm(Pb), face centre of a pure NC, one V below at d^2 = {}"
    assert _row(rows, below.format(1))[0] == pytest.approx(-g, abs=1e-9)
    assert _row(rows, below.format(2))[0] == pytest.approx(0.0, abs=1e-9)
    assert _row(rows, below.format(3))[0] == pytest.approx(0.0, abs=1e-9)


def test_the_training_database_now_holds_third_neighbour_vacancy_pairs():
    vv = ce_barriers.training_vv_distances()
    assert vv.get(3, 0) >= 3
    assert vv.get(2, 0) >= 4
    assert vv.get(4, 0) >= 1


def test_the_refit_removes_the_third_neighbour_avalanche_term():
    """studies/ce_barriers/refit: a V at d^2 = 3 no longer lowers a Pb's removal by ~1.5 eV."""
    refit = ce_barriers.HERE / "refit" / "fitted.ce"
    rows = ce_barriers.model_rows(str(refit), edge_nm=4.0)
    for d2 in (1, 2, 3):
        label = f"dE_rm(Pb), face centre of a pure NC, one V below at d^2 = {d2}"
        assert abs(_row(rows, label)[0]) < 0.1
    assert abs(_row(rows, "dE_rm(Pb), face centre of a pure NC, 5 vacant neighbours")[0]) < 0.3


def test_the_shipped_fitted_ce_has_no_removal_avalanche():
    """potentials/fitted.ce (vacancy pairs held to the nearest neighbour): no vacancy makes a
    neighbouring removal cheaper, and vacancies beyond the nearest neighbour change nothing."""
    rows = ce_barriers.model_rows("fitted.ce", edge_nm=4.0)
    below = "dE_rm(Pb), face centre of a pure NC, one V below at d^2 = {}"
    assert _row(rows, below.format(2))[0] == pytest.approx(0.0, abs=1e-9)
    assert _row(rows, below.format(3))[0] == pytest.approx(0.0, abs=1e-9)
    for m in range(6):  # each vacant nearest neighbour: the same, non-negative step
        label = f"dE_rm(Pb), face centre of a pure NC, {m} vacant neighbours"
        assert _row(rows, label)[0] >= -1e-9
        assert _row(rows, label)[0] == pytest.approx(m * _row(rows, below.format(1))[0], abs=3e-3)
    for n in (2, 4, 8):
        label = f"dE_rm(Pb), face centre of a pure NC, {n} surface V at 2nd/3rd neighbours"
        assert _row(rows, label)[0] == pytest.approx(0.0, abs=1e-9)
