"""The defect thermodynamics study (studies/defect_thermodynamics): structures and bookkeeping."""

from __future__ import annotations

import json

import numpy as np
import pytest

from segsim.defects import exchanged_units, formula_counts
from segsim.training import structures as structs
from segsim.training.reference import structure_hash
from studies.defect_thermodynamics import defect_thermodynamics as dt
from studies.defect_thermodynamics import report

CHARGE = {"Cs": 1, "Pb": 2, "Cd": 2, "Br": -1}


def _counts(name: str) -> dict[str, int]:
    return formula_counts(dt.build_structure(name, lambda n: 5.95).get_chemical_symbols())


@pytest.mark.parametrize("variant", ["perfect", "v-trans", "v-cis", "v-cd-near", "v-cd-far"])
def test_bulk_cells_are_neutral_and_lack_one_mbr2(variant: str) -> None:
    atoms = dt.build_structure(f"bulk3_{variant}", lambda n: 5.95)
    assert sum(CHARGE[s] for s in atoms.get_chemical_symbols()) == 0
    units = exchanged_units(_counts("bulk3_perfect"), _counts(f"bulk3_{variant}"))
    assert units == {"PbBr2": 0 if variant == "perfect" else 1, "CsBr": 0}


def test_cis_and_trans_vacancies_remove_different_br() -> None:
    trans = dt.build_structure("bulk3_v-trans", lambda n: 5.95)
    cis = dt.build_structure("bulk3_v-cis", lambda n: 5.95)
    missing = []
    perfect = dt.build_structure("bulk3_perfect", lambda n: 5.95)
    br0 = perfect.positions[perfect.numbers == 35]
    for cell in (trans, cis):
        br = cell.positions[cell.numbers == 35]
        gone = [p for p in br0 if np.min(np.linalg.norm(br - p, axis=1)) > 1e-6]
        missing.append(np.array(gone))
    # trans: +z and -z of site 0 (1.5 a apart... a apart); cis: +z and +x (a / sqrt 2 apart)
    for gone, dist in zip(missing, (5.95, 5.95 / np.sqrt(2)), strict=True):
        assert len(gone) == 2
        d = gone[0] - gone[1]
        d -= np.round(d / (3 * 5.95)) * 3 * 5.95  # minimum image in the 3^3 cell
        assert np.linalg.norm(d) == pytest.approx(dist)


def test_nc5_states_match_the_training_structures() -> None:
    """Same structure hash as the earlier studies: what makes `import` legitimate."""
    variants = structs.build_vacancy_variants(5, a_angstrom=5.87, vacuum_angstrom=8.0, pad=3)
    for ours, theirs in (("vac1-depth0", "v1-face"), ("vac1-depth2", "v1-depth2"),
                         ("v1-edge", "v1-edge"), ("v1-corner", "v1-corner")):  # fmt: skip
        mine = dt.build_structure(f"nc5_x0_{ours}")
        assert structure_hash(mine) == structure_hash(
            variants[structs.structure_name(5, theirs)].atoms
        )


def test_recession_exchanges_two_minus_k_csbr() -> None:
    """Each V -> O pair of the report gains 2 - k CsBr (k outside neighbours of the site)."""
    k = {"vac1-depth0": 1, "pit1-face_v-beside": 2, "v1-edge": 2, "v1-corner": 3}
    for v, o in report.RECESSION.values():
        units = exchanged_units(_counts(f"nc5_x0_{v}"), _counts(f"nc5_x0_{o}"))
        assert units["PbBr2"] == 0
        assert -units["CsBr"] == 2 - k[v], (v, o)


def test_job_list_orders_starts_and_modes() -> None:
    jobs = dt.job_list(["bulk4"], "chgnet", 2, ["bulk4_perfect"], tilted=True)
    assert jobs[0] == ("chgnet", "volume", "bulk4_perfect", 0)
    assert jobs[1:] == [("chgnet", "relax_tilted", "bulk4_perfect", k) for k in (0, 1)]


def test_cache_keeps_the_first_record_of_a_key(tmp_path) -> None:
    path = tmp_path / "c.jsonl"
    recs = [{"key": "a", "e": 1}, {"key": "a", "e": 2}, {"key": "b", "e": 3}]
    path.write_text("\n".join(json.dumps(r) for r in recs) + "\n{truncated")
    assert [r["e"] for r in dt.read_cache(path)] == [1, 3]


def test_summarise_prefers_this_study_per_seed() -> None:
    base = {"calculator": "chgnet", "mode": "relax", "name": "x", "counts": {"Cs": 1}}
    recs = [
        {**base, "seed": 1000, "energy_ev": -1.0, "source": "imported"},
        {**base, "seed": 1000, "energy_ev": -2.0, "source": "this study"},
        {**base, "seed": 1001, "energy_ev": -4.0, "source": "imported"},
    ]
    st = report.summarise(recs)[("chgnet", "relax", "x")]
    assert st.n == 2
    assert st.mean == pytest.approx(-3.0)
