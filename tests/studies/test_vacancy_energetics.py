"""The B-vacancy energetics measurement (studies/vacancy_energetics)."""

import json

import numpy as np
import pytest
import yaml

from segsim import species
from segsim.params.files import POTENTIALS_DIR
from segsim.training import provisional
from segsim.training import structures as structs
from segsim.training.reference import structure_hash
from studies.vacancy_energetics import vacancy_energetics as ve

REPO = POTENTIALS_DIR.parent
CHARGE = {"Cs": 1, "Pb": 2, "Cd": 2, "Br": -1}


@pytest.fixture(scope="module")
def nc4():
    return structs.build_vacancy_variants(4, a_angstrom=5.87, vacuum_angstrom=8.0, pad=3)


def test_structures_are_neutral_and_place_the_vacancies_as_named(nc4):
    assert set(nc4) == {structs.structure_name(4, v) for v in structs.VARIANTS if v != "v1-depth2"}
    for name, st in nc4.items():
        occ = np.asarray(st.occupations)
        v_sites = np.flatnonzero(occ == species.VAC)
        n_v = 1 if "_v1-" in name else 2
        assert v_sites.size == n_v, name
        assert sum(CHARGE[s] for s in st.atoms.get_chemical_symbols()) == 0, name
        depths = sorted(int(st.lattice.depth[s]) for s in v_sites)
        coords = st.lattice.coords[v_sites]
        if name.endswith("v1-face"):
            assert depths == [0]
            assert st.lattice.n_outside_nn[v_sites[0]] == 1  # a face site
        elif name.endswith("v1-depth1"):
            assert depths == [1]
        elif name.endswith("v1-edge"):
            assert st.lattice.n_outside_nn[v_sites[0]] == 2
        elif name.endswith("v1-corner"):
            assert st.lattice.n_outside_nn[v_sites[0]] == 3
        else:
            dist = np.abs(coords[0] - coords[1]).sum()  # Manhattan distance in sites
            if name.endswith("adjacent"):
                assert dist == 1, name
            else:
                assert dist >= 3, name
            assert depths == ([0, 0] if "-face-" in name else [0, 1]), name


def test_provisional_ce_gives_one_broken_bond_for_every_difference(nc4):
    # NN broken-bond model: each difference gains or loses exactly one cation-X contact pair
    nc5 = structs.build_vacancy_variants(5, a_angstrom=5.87, vacuum_angstrom=8.0, pad=3)
    for n, structures in ((4, nc4), (5, nc5)):
        ce = ve.ce_energies(structures, [POTENTIALS_DIR / "provisional.ce"])["provisional.ce"]
        for key, (plus, minus, _) in ve.DIFFERENCES.items():
            if key == "injection_depth2" and n < 5:
                continue
            diff = ce[structs.structure_name(n, plus)] - ce[structs.structure_name(n, minus)]
            assert diff == pytest.approx(provisional.GAMMA_BOND_EV, abs=1e-9), (n, key)


def test_summary_differences_and_report():
    rng = np.random.default_rng(0)
    truth = {v: 0.1 * i for i, v in enumerate(structs.VARIANTS) if v != "v1-depth2"}
    records = [
        {
            "name": structs.structure_name(4, v),
            "energy_ev": e + 0.01 * rng.standard_normal(),
            "seed": 1000 + k,
            "n_steps": 10,
            "fmax_final_ev_per_angstrom": 0.009,
            "command": "cmd",
            "start_kind": "ideal",
            "rattle_angstrom": 0.02,
        }
        for v, e in truth.items()
        for k in range(5)
    ]
    summary = ve.summarise(records)
    s = summary[structs.structure_name(4, "v1-face")]
    vals = [r["energy_ev"] for r in records if r["name"] == structs.structure_name(4, "v1-face")]
    assert s["n"] == 5
    assert s["mean"] == pytest.approx(np.mean(vals))
    assert s["sem"] == pytest.approx(np.std(vals, ddof=1) / np.sqrt(5))
    diff = ve.differences(summary, 4)
    assert "injection_depth2" not in diff
    for key, (plus, minus, _) in ve.DIFFERENCES.items():
        if key == "injection_depth2":
            continue
        assert diff[key][0] == pytest.approx(truth[plus] - truth[minus], abs=0.05)
        assert 0 < diff[key][1] < 0.02
    text = ve.markdown(records, 4, ce={"a.ce": {r["name"]: 0.0 for r in records}}, commands=["c"])
    assert "injection" in text
    assert "binding_surface" in text
    assert text.count("| nc4_x0_") >= len(truth) + len(records)
    assert text.count("## Start: ideal + rattle 0.02 A") == 1
    # another start kind gets its own section and is not averaged with the first
    other = [{**r, "start_kind": "untilted", "energy_ev": r["energy_ev"] + 5.0} for r in records]
    text2 = ve.markdown(records + other, 4, ce={})
    assert "## Start: untilted (Br on bond axes) + rattle 0.02 A" in text2
    mean_face = ve.summarise(records)[structs.structure_name(4, "v1-face")]["mean"]
    assert f"| {mean_face:.4f} |" in text2


def test_builder_rejects_too_small_ncs():
    with pytest.raises(ValueError, match="n_edge"):
        structs.build_vacancy_variants(3, a_angstrom=5.87, vacuum_angstrom=8.0, pad=3)


def test_cli_with_standin_calculator_caches_and_resumes(tmp_path):
    doc = yaml.safe_load((REPO / "inputs" / "train.yaml").read_text())
    doc["calculator"] = {"kind": "standin", "max_steps": 2}
    doc["paths"] = {"database": "refs.db", "output_dir": "out"}
    inp = tmp_path / "train.yaml"
    inp.write_text(yaml.safe_dump(doc))
    out = tmp_path / "vac.md"
    args = ["--config", str(inp), "--edge", "4", "--starts", "2", "--out", str(out),
            "--ce", str(POTENTIALS_DIR / "provisional.ce")]  # fmt: skip
    assert ve.main(args) == 0
    cache = out.with_suffix(".jsonl")
    lines = cache.read_text().splitlines()
    assert len(lines) == 2 * (len(structs.VARIANTS) - 1)  # no depth-2 site at n = 4
    assert {json.loads(line)["name"] for line in lines} == set(
        structs.build_vacancy_variants(4, a_angstrom=5.87, vacuum_angstrom=8.0, pad=3)
    )
    assert "binding_normal" in out.read_text()
    assert ve.main(args) == 0  # resumes: nothing recomputed
    assert cache.read_text().splitlines() == lines
    # a record whose structure has changed since is recomputed, not reused
    recs = [json.loads(line) for line in lines]
    recs[0]["structure_hash"] = "0" * 16
    cache.write_text("".join(json.dumps(r) + "\n" for r in recs))
    assert ve.main(args) == 0
    after = [json.loads(line) for line in cache.read_text().splitlines()]
    assert len(after) == len(recs) + 1
    assert after[-1]["key"] == recs[0]["key"]
    built = structs.build_vacancy_variants(4, a_angstrom=5.87, vacuum_angstrom=8.0, pad=3)
    assert after[-1]["structure_hash"] == structure_hash(built[recs[0]["name"]].atoms)


def test_cache_key_ignores_how_starts_are_counted_and_combined():
    from dataclasses import replace

    from segsim.training.reference import RelaxSettings
    from studies.start_spread.start_spread import cache_fields

    base = RelaxSettings(rattle_angstrom=0.02, n_starts=6)
    keys = cache_fields(base)
    assert "aggregate" not in keys
    assert "n_starts" not in keys
    assert "anneal_kelvin" not in keys
    assert cache_fields(replace(base, n_starts=2, aggregate="mean")) == keys
    assert cache_fields(replace(base, fmax_ev_per_angstrom=0.05)) != keys
    assert "anneal_kelvin" in cache_fields(replace(base, start="tilted_anneal"))
    # the shipped caches were keyed before aggregate existed: they still match
    rec = json.loads((ve.HERE / "vacancy_energetics_nc5.jsonl").read_text().splitlines()[0])
    assert set(json.loads(rec["key"])["relax"]) == set(keys)
