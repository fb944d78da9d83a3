import json

import numpy as np
import pytest

from segsim.atomistic import charge, formula_counts
from studies.dft_validation import dft_validation as dv

A = 5.87


@pytest.fixture(scope="module")
def cells():
    return {name: (atoms, desc) for name, atoms, desc in dv.validation_cells(A)}


def _cd_distance(atoms):
    idx = [i for i, s in enumerate(atoms.get_chemical_symbols()) if s == "Cd"]
    assert len(idx) == 2
    return atoms.get_distance(idx[0], idx[1], mic=True)


def test_cell_names_and_count(cells):
    assert len(cells) >= 6
    assert {"pure", "cd1", "cd2_axis", "cd2_face", "cd2_body", "vac_cd_near", "vac_cd_far"} <= set(
        cells
    )


@pytest.mark.parametrize(
    ("name", "n_atoms", "counts"),
    [
        ("pure", 40, {"Cs": 8, "Pb": 8, "Cd": 0, "Br": 24}),
        ("cd1", 40, {"Cs": 8, "Pb": 7, "Cd": 1, "Br": 24}),
        ("cd2_axis", 40, {"Cs": 8, "Pb": 6, "Cd": 2, "Br": 24}),
        ("cd2_face", 40, {"Cs": 8, "Pb": 6, "Cd": 2, "Br": 24}),
        ("cd2_body", 40, {"Cs": 8, "Pb": 6, "Cd": 2, "Br": 24}),
        ("vac_cd_near", 37, {"Cs": 8, "Pb": 6, "Cd": 1, "Br": 22}),
        ("vac_cd_far", 37, {"Cs": 8, "Pb": 6, "Cd": 1, "Br": 22}),
    ],
)
def test_compositions_and_charge(cells, name, n_atoms, counts):
    atoms, desc = cells[name]
    assert desc
    assert len(atoms) == n_atoms
    assert formula_counts(atoms) == counts
    assert charge(atoms) == 0
    assert atoms.pbc.all()
    np.testing.assert_allclose(atoms.cell.lengths(), [2 * A] * 3)


@pytest.mark.parametrize(
    ("name", "dist"),
    [("cd2_axis", A), ("cd2_face", A * np.sqrt(2)), ("cd2_body", A * np.sqrt(3))],
)
def test_cd_pair_distances(cells, name, dist):
    assert _cd_distance(cells[name][0]) == pytest.approx(dist)


def test_vacancy_positions_relative_to_cd(cells):
    for name, dist in (("vac_cd_near", A), ("vac_cd_far", A * np.sqrt(3))):
        atoms = cells[name][0]
        occ = np.array(atoms.info["occupations"])
        assert (occ == 2).sum() == 1
        assert (occ == 1).sum() == 1
        coords = np.indices((2, 2, 2)).reshape(3, -1).T * A
        d = coords[occ == 2][0] - coords[occ == 1][0]
        d -= np.round(d / (2 * A)) * 2 * A
        assert np.linalg.norm(d) == pytest.approx(dist)


def test_geometries_distinct(cells):
    hashes = {dv.geometry_hash(a) for a, _ in cells.values()}
    assert len(hashes) == len(cells)


def test_cp2k_input_has_published_setup(cells):
    atoms = cells["cd2_axis"][0]
    text = dv.cp2k_input(atoms)
    assert "&XC_FUNCTIONAL PBE" in text
    assert "RUN_TYPE ENERGY" in text
    assert "PERIODIC XYZ" in text
    for el in ("Cs", "Pb", "Cd", "Br"):
        assert f"&KIND {el}" in text
    assert text.count("BASIS_SET DZVP-MOLOPT-SR-GTH") == 4
    assert text.count("POTENTIAL GTH-PBE") == 4
    assert "CUTOFF 400" in text
    assert "REL_CUTOFF 60" in text
    assert "EPS_SCF 1.0E-06" in text
    assert "METHOD BROYDEN_MIXING" in text
    assert "&OT" not in text
    ot = dv.cp2k_input(atoms, {"scf_method": "OT"})
    assert "PRECONDITIONER FULL_SINGLE_INVERSE" in ot
    assert "&DIAGONALIZATION" not in ot
    with pytest.raises(ValueError, match="scf_method"):
        dv.cp2k_input(atoms, {"scf_method": "CG"})
    coord = text.split("&COORD")[1].split("&END COORD")[0].strip().splitlines()
    assert len(coord) == len(atoms)
    assert "CUTOFF 200" in dv.cp2k_input(atoms, {"cutoff_ry": 200})


def test_cp2k_input_only_kinds_present(cells):
    text = dv.cp2k_input(cells["pure"][0])
    assert "&KIND Cd" not in text


def test_parse_cp2k_output():
    text = (
        " CP2K| version string:                                          CP2K version 2023.1\n"
        "  *** SCF run converged in    25 steps ***\n"
        " ENERGY| Total FORCE_EVAL ( QS ) energy [a.u.]:            -513.200000000000\n"
    )
    res = dv.parse_cp2k_output(text)
    assert res["energy_hartree"] == pytest.approx(-513.2)
    assert res["energy_eV"] == pytest.approx(-513.2 * dv.HARTREE_EV)
    assert res["scf_steps"] == [25]
    assert res["cp2k_version"] == "CP2K version 2023.1"
    with pytest.raises(RuntimeError, match="converge"):
        dv.parse_cp2k_output(text + "  *** SCF run NOT converged ***\n")
    with pytest.raises(RuntimeError, match="energy"):
        dv.parse_cp2k_output("nothing")


def _synthetic(pair_mev):
    """Energies (eV): E = n_Cd * mu + pair term; vacancy cells differ by 50 meV."""
    e = {
        "pure": 0.0,
        "cd1": -1.0,
        "cd2_axis": -2.0 + pair_mev["axis"] / 1000,
        "cd2_face": -2.0 + pair_mev["face"] / 1000,
        "cd2_body": -2.0 + pair_mev["body"] / 1000,
        "vac_cd_near": -5.05,
        "vac_cd_far": -5.0,
    }
    return e


def _results(e_test, e_ref):
    cells = {}
    for name in e_test:
        cells[name] = {
            "description": f"desc {name}",
            "formula": "X",
            "n_atoms": 40,
            "methods": {
                "chgnet": {"energy_eV": e_test[name], "wall_s": 1.0},
                "cp2k": {"energy_eV": e_ref[name], "wall_s": 200.0},
            },
        }
    return {"provenance": {}, "cells": cells}


def test_validation_table_synthetic():
    e_t = _synthetic({"axis": 30.0, "face": 10.0, "body": 0.0})
    e_r = _synthetic({"axis": 20.0, "face": 10.0, "body": 5.0})
    table = dv.validation_table(_results(e_t, e_r))
    lines = {ln.split("|")[1].strip(): ln for ln in table.splitlines() if ln.startswith("|")}
    # cd2_axis - cd2_body: chgnet +30, cp2k +15, difference +15 meV
    cols = [c.strip() for c in lines["cd2_axis - cd2_body"].split("|")]
    assert cols[3:6] == ["+30.0", "+15.0", "+15.0"]
    cols = [c.strip() for c in lines["cd2_body - cd2_body"].split("|")]
    assert cols[3:6] == ["+0.0", "+0.0", "+0.0"]
    cols = [c.strip() for c in lines["pair cd2_face"].split("|")]
    assert cols[3:6] == ["+10.0", "+10.0", "+0.0"]
    cols = [c.strip() for c in lines["vac_cd_near - vac_cd_far"].split("|")]
    assert cols[3:6] == ["-50.0", "-50.0", "+0.0"]
    assert "cd1 - pure" not in lines
    assert "| pure | X | 40 |" in table


def test_validation_table_missing_values():
    e = _synthetic({"axis": 1.0, "face": 2.0, "body": 3.0})
    res = _results(e, e)
    del res["cells"]["cd2_body"]["methods"]["cp2k"]
    table = dv.validation_table(res)
    cols = [c.strip() for c in table.splitlines()[2].split("|")]
    assert cols[1] == "cd2_axis - cd2_body"
    assert cols[4:6] == ["-", "-"]
    assert dv.validation_table({"cells": {}}).count("\n") >= 2


def _fake(calls, method, offset=0.0):
    def run(atoms, workdir):
        calls.append((method, len(atoms), workdir))
        return {"energy_eV": offset + 0.01 * (atoms.numbers == 48).sum() + len(atoms)}

    return run


def test_run_validation_writes_and_resumes(tmp_path):
    out = tmp_path / "res.json"
    md = tmp_path / "res.md"
    calls = []
    funcs = {"chgnet": _fake(calls, "chgnet"), "cp2k": _fake(calls, "cp2k", 1.0)}
    res = dv.run_validation(
        out,
        cells=["pure", "cd2_axis"],
        workdir=tmp_path / "scratch",
        energy_functions=funcs,
        table_md=md,
        log=None,
    )
    assert len(calls) == 4
    assert [c[0] for c in calls] == ["chgnet", "chgnet", "cp2k", "cp2k"]
    disk = json.loads(out.read_text())
    assert disk["cells"].keys() == {"pure", "cd2_axis"}
    assert disk["cells"]["pure"]["methods"]["cp2k"]["energy_eV"] == pytest.approx(41.0)
    assert disk["cells"]["pure"]["methods"]["cp2k"]["settings"]["xc"] == "PBE"
    assert "wall_s" in disk["cells"]["cd2_axis"]["methods"]["chgnet"]
    assert disk["provenance"]["a_angstrom"] == A
    assert res["cells"]["cd2_axis"]["n_atoms"] == 40
    assert md.exists()

    # Resume: nothing recomputed; a new cell is added.
    calls.clear()
    dv.run_validation(
        out,
        cells=["pure", "cd2_axis", "cd1"],
        workdir=tmp_path / "scratch",
        energy_functions=funcs,
        log=None,
    )
    assert [(c[0], c[1]) for c in calls] == [("chgnet", 40), ("cp2k", 40)]
    assert set(json.loads(out.read_text())["cells"]) == {"pure", "cd2_axis", "cd1"}

    # Changed CP2K settings: only CP2K reruns.
    calls.clear()
    dv.run_validation(
        out,
        cells=["pure"],
        cp2k_settings={"cutoff_ry": 200.0},
        workdir=tmp_path / "scratch",
        energy_functions=funcs,
        log=None,
    )
    assert [c[0] for c in calls] == ["cp2k"]
    disk = json.loads(out.read_text())
    assert disk["cells"]["pure"]["methods"]["cp2k"]["settings"]["cutoff_ry"] == 200.0

    # No resume: everything recomputed.
    calls.clear()
    dv.run_validation(
        out, cells=["pure"], resume=False, energy_functions=funcs, workdir=tmp_path, log=None
    )
    assert len(calls) == 2


def test_run_validation_rejects_unknown_cell(tmp_path):
    with pytest.raises(ValueError, match="unknown cells"):
        dv.run_validation(tmp_path / "x.json", cells=["nope"], energy_functions={}, log=None)


def test_method_settings():
    assert dv.method_settings("cp2k", {"cutoff_ry": 300})["cutoff_ry"] == 300
    assert dv.method_settings("cp2k")["cutoff_ry"] == 400
    with pytest.raises(ValueError, match="unknown"):
        dv.method_settings("vasp")


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:Converting a tensor with requires_grad:UserWarning")
def test_chgnet_single_point(cells):
    pytest.importorskip("chgnet")
    fn = dv.chgnet_energy_function()
    e = fn(cells["pure"][0], None)["energy_eV"]
    assert -4.0 * 40 < e < -2.0 * 40


def test_validation_markdown_and_table_only_cli(tmp_path, capsys):
    e = _synthetic({"axis": 1.0, "face": 2.0, "body": 3.0})
    res = _results(e, e)
    text = dv.validation_markdown(res)
    assert text.startswith("# DFT validation")
    assert "DZVP-MOLOPT-SR-GTH" in text
    assert "GTH-PBE" in text
    assert "\n\n| quantity |" in text
    out = tmp_path / "r.json"
    out.write_text(json.dumps(res))
    md = tmp_path / "r.md"
    assert dv.main([str(out), "--table-only", "--table", str(md)]) == 0
    assert md.read_text() == text
    assert "| quantity |" in capsys.readouterr().out


def test_validation_table_extra_method_column():
    e = _synthetic({"axis": 1.0, "face": 2.0, "body": 3.0})
    res = _results(e, e)
    assert "chgnet_relaxed" not in dv.validation_table(res)
    res["cells"]["cd2_axis"]["methods"]["chgnet_relaxed"] = {"energy_eV": -3.0, "wall_s": 5.0}
    res["cells"]["cd2_body"]["methods"]["chgnet_relaxed"] = {"energy_eV": -3.5, "wall_s": 5.0}
    table = dv.validation_table(res)
    row = next(ln for ln in table.splitlines() if ln.startswith("| cd2_axis - cd2_body"))
    assert row.split("|")[6].strip() == "+500.0"
    row = next(ln for ln in table.splitlines() if ln.startswith("| cd2_face - cd2_body"))
    assert row.split("|")[6].strip() == "-"


def test_vacancy_cells_use_smearing(cells):
    s = dv.method_settings("cp2k", cell="vac_cd_near")
    assert s["smear_kelvin"] == 300.0
    text = dv.cp2k_input(cells["vac_cd_near"][0], s)
    assert "&SMEAR ON" in text
    assert "ADDED_MOS 20" in text
    assert "&SMEAR" not in dv.cp2k_input(cells["cd2_axis"][0])
    assert dv.method_settings("cp2k", cell="cd2_axis") == dv.method_settings("cp2k")


def test_run_validation_records_failures_and_continues(tmp_path):
    out = tmp_path / "res.json"

    def flaky(atoms, workdir):
        if len(atoms) == 37:
            raise RuntimeError("CP2K SCF did not converge")
        return {"energy_eV": -1.0}

    dv.run_validation(
        out,
        methods=("cp2k",),
        cells=["vac_cd_near", "pure"],
        energy_functions={"cp2k": flaky},
        workdir=tmp_path,
        log=None,
    )
    disk = json.loads(out.read_text())
    assert "converge" in disk["cells"]["vac_cd_near"]["errors"]["cp2k"]["error"]
    assert "cp2k" not in disk["cells"]["vac_cd_near"]["methods"]
    assert disk["cells"]["pure"]["methods"]["cp2k"]["energy_eV"] == -1.0


def test_database_cells_run_at_the_relaxed_geometries(tmp_path):
    from segsim.training import structures as st
    from segsim.training.reference import compute_references, load_references

    structs = [
        s
        for s in st.build_training_set(
            nc_edges=(2,), compositions=(), n_random=0, n_profiles=0, nc_end_members=(),
            vacancy_structures=0, bulk_sizes=(2,), rp_edges=(), csbr=False,
        )
        if s.name in ("bulk2_x0.5_rocksalt", "bulk2_x0.5_random_0", "bulk2_x0_random_0")
    ]  # fmt: skip
    db = tmp_path / "refs.db"
    compute_references(structs, calculator_kind="standin", relax={"relax_cell": True}, db_path=db)
    names = [s.name for s in structs]
    cells = dv.database_cells(db, names)
    relaxed = {r["name"]: r["atoms"] for r in load_references(db)}
    for name, atoms, desc in cells:
        np.testing.assert_allclose(atoms.positions, relaxed[name].positions)
        assert "standin-relaxed" in desc
        assert len(atoms.info["occupations"]) == 8
    with pytest.raises(ValueError, match="not in"):
        dv.database_cells(db, ["nope"])
    calls = []
    funcs = {"chgnet": _fake(calls, "chgnet"), "cp2k": _fake(calls, "cp2k", 1.0)}
    md = tmp_path / "r.md"
    res = dv.run_validation(
        tmp_path / "r.json", workdir=tmp_path / "w", energy_functions=funcs, log=None,
        cell_list=cells, geometry="relaxed geometries of refs.db rows", table_md=md,
    )  # fmt: skip
    assert set(res["cells"]) == set(names)
    assert res["provenance"]["geometry"].startswith("relaxed")
    text = md.read_text()
    # x = 1/2 cells share a formula: one relative row each, against the first by name
    assert "| bulk2_x0.5_rocksalt - bulk2_x0.5_random_0 |" in text
    assert "relaxed geometries of refs.db rows" in text
