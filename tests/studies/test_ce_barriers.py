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
