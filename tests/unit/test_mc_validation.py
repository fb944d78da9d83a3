"""MC validation helpers: cell entries, database path, the comparison and its table."""

from __future__ import annotations

import math

import numpy as np
import pytest

from segsim import species
from segsim.lattice import build_periodic
from segsim.training import mc_validation as mv
from segsim.training.structures import ReferenceStructure


def test_parse_cell_entries_and_errors():
    assert mv.parse_cell("bulk4", 0.25) == ("bulk", 4, 0.25)
    assert mv.parse_cell("nc6", 0.1) == ("nc", 6, 0.1)
    assert mv.parse_cell("bulk4_x0.5", 0.25) == ("bulk", 4, 0.5)
    for bad in ("bulk1", "slab4", "nc", "bulk4_x1.5", "nc6_x", "bulk4x0.5"):
        with pytest.raises(ValueError, match="entries must be 'bulk<n>' or 'nc<n>'"):
            mv.parse_cell(bad, 0.25)


def test_validation_database_sits_next_to_the_training_database(tmp_path):
    assert mv.validation_database_path(tmp_path / "training_mean.db") == (
        tmp_path / "training_mean_mcval.db"
    )


def _structure(name: str, occ: np.ndarray) -> ReferenceStructure:
    lattice = build_periodic(2, 5.87)
    return ReferenceStructure(name, "mcval_bulk", None, lattice, occ, 0.25, 2)


def test_compare_and_markdown_with_and_without_reference_rows():
    occ = np.full(8, species.PB, dtype=np.uint8)
    occ[:2] = species.CD
    pair = mv.ValidationPair(
        label="bulk2_x0.25",
        start=_structure("s", occ),
        final=_structure("f", occ[::-1].copy()),
        ce_start_ev=-10.0,
        ce_final_ev=-10.4,
        n_steps=100,
        temperature_k=343.0,
        acceptance=0.25,
    )
    recs = [
        {"name": "s", "energy_ev": -20.0, "energy_sem_ev": 0.03},
        {"name": "f", "energy_ev": -20.1, "energy_sem_ev": 0.04},
    ]
    (row,) = mv.compare([pair], recs)
    assert row["ce_de_ev"] == pytest.approx(-0.4)
    assert row["ref_de_ev"] == pytest.approx(-0.1)
    assert row["ref_sem_ev"] == pytest.approx(0.05)
    assert row["ce_de_mev_per_site"] == pytest.approx(-50.0)
    assert row["ref_de_mev_per_site"] == pytest.approx(-12.5)
    assert row["noise_ev"] == pytest.approx(0.05)  # no structure noise: the SEMs alone
    assert row["verdict"] == "not confirmed"  # -0.4 against -0.1, 2 sigma = 0.1
    text = mv.markdown([row], temperature_k=343.0, sweeps=10, skipped=["`bulk9` skipped: why"])
    assert (
        "| `bulk2_x0.25` | 8 | 0.250 | -0.400 | -0.100 +/- 0.050 | -50.00 | -12.50 | 0.050 | "
        "not confirmed |"
    ) in text
    # with the fit's structure noise (periodic cell: tau_bulk) the difference is within it
    (row,) = mv.compare([pair], recs, structure_noise_ev=(0.5, 0.2))
    assert row["noise_ev"] == pytest.approx(math.sqrt(0.05**2 + 2 * 0.2**2))
    assert row["verdict"] == "within noise"  # |-0.4| < 2 sigma = 0.59: no power either
    assert mv.verdict(-1.0, -0.9, 0.1) == "confirmed"
    assert mv.verdict(-0.1, 0.05, 0.1) == "within noise"
    assert mv.verdict(-1.0, -0.5, 0.1) == "not confirmed"
    assert "- `bulk9` skipped: why" in text
    # the final arrangement not computed yet (e.g. --cached-only): no reference numbers
    (row,) = mv.compare([pair], recs[:1])
    assert row["ref_de_ev"] is None
    assert row["ref_sem_ev"] is None
    assert "| -0.400 | not computed |" in mv.markdown([row], temperature_k=343.0, sweeps=10)
    # single-start rows carry no SEM
    (row,) = mv.compare([pair], [{**r, "energy_sem_ev": None} for r in recs])
    assert row["ref_sem_ev"] is None
    assert not math.isnan(row["ref_de_ev"])
    assert row["verdict"] is None  # no noise estimate at all: no verdict
    assert "| n/a | n/a |" in mv.markdown([row], temperature_k=343.0, sweeps=10)
