"""The CLEASE KMC benchmark module imports and fails clearly without CLEASE."""

from __future__ import annotations

import pytest

from benchmarks import clease_kmc


def test_clease_available_is_bool():
    assert isinstance(clease_kmc.clease_available(), bool)


def test_missing_clease_raises_import_error(monkeypatch):
    monkeypatch.setattr(clease_kmc, "clease_available", lambda: False)
    with pytest.raises(ImportError, match="pip install clease"):
        clease_kmc.bench_clease_kmc(n_edge=3, n_events=1)


def test_pair_energies_match_provisional_model():
    from segsim.training.provisional import A_ANGSTROM, PAIR_ENERGIES_EV

    assert PAIR_ENERGIES_EV == clease_kmc.PAIR_ENERGIES_EV
    assert clease_kmc.A_ANGSTROM == A_ANGSTROM
