"""Reference calculators and the resumable reference pipeline (issue 3, item 2)."""

from __future__ import annotations

import hashlib
import importlib
import json
import subprocess
import sys
import warnings

import numpy as np
import pytest
from ase.optimize import FIRE

from segsim.atomistic import to_atoms
from segsim.lattice import build_cube, build_periodic
from segsim.training import calculators, reference
from segsim.training.calculators import (
    CALCULATOR_KINDS,
    MissingDependencyError,
    StandinCalculator,
    calculator_provenance,
    make_calculator,
)
from segsim.training.configurations import (
    core_segregated_occupations,
    surface_segregated_occupations,
    uniform_occupations,
)
from segsim.training.reference import (
    RelaxSettings,
    compute_references,
    format_progress,
    load_references,
)
from segsim.training.structures import ReferenceStructure

A = 5.87


def _nc(name: str, n_edge: int, occ_fn, x_cd: float = 0.25, **tags) -> ReferenceStructure:
    lat = build_cube(n_edge, A, 3)
    occ = occ_fn(lat, x_cd)
    return ReferenceStructure(
        name=name,
        kind="nc",
        atoms=to_atoms(lat, occ, vacuum_angstrom=6),
        lattice=lat,
        occupations=occ,
        x_cd=x_cd,
        n_edge=n_edge,
        tags={"arrangement": occ_fn.__name__, **tags},
    )


def _bulk(name: str, seed: int, x_cd: float = 0.25, **tags) -> ReferenceStructure:
    lat = build_periodic(2, A)
    occ = uniform_occupations(lat, x_cd, np.random.default_rng(seed))
    return ReferenceStructure(
        name=name,
        kind="bulk",
        atoms=to_atoms(lat, occ),
        lattice=lat,
        occupations=occ,
        x_cd=x_cd,
        n_edge=2,
        tags={"seed": seed, **tags},
    )


@pytest.fixture(scope="module")
def structures() -> list[ReferenceStructure]:
    return [
        _nc("nc2_core", 2, core_segregated_occupations),
        _nc("nc2_surface", 2, surface_segregated_occupations, x_cd=0.5),
        _bulk("bulk2_s0", 0),
        _bulk("bulk2_s1", 1, x_cd=0.5, vegard=True),
    ]


@pytest.fixture
def counting_standin(monkeypatch):
    """Replace the standin factory by one that records the calculators it builds."""
    built: list[StandinCalculator] = []
    entry = CALCULATOR_KINDS["standin"]

    def build(settings):
        calc = entry.build(settings)
        built.append(calc)
        return calc

    monkeypatch.setitem(
        CALCULATOR_KINDS,
        "standin",
        calculators.CalculatorKind(
            entry.name, entry.description, entry.defaults, build, entry.provenance
        ),
    )
    return lambda: sum(c.n_calculations for c in built)


# ----------------------------------------------------------------------------- calculators


def test_registry_kinds_and_unknown_kind():
    assert set(CALCULATOR_KINDS) == {"chgnet", "cp2k", "sevennet", "standin"}
    assert calculators.DEFAULT_KIND == "chgnet"
    with pytest.raises(
        ValueError, match=r"unknown calculator kind 'vasp'.*chgnet, cp2k, sevennet, standin"
    ):
        make_calculator("vasp")
    with pytest.raises(ValueError, match="unknown calculator kind"):
        compute_references([], calculator_kind="vasp", db_path="unused.db")


def test_unknown_setting_names_allowed():
    with pytest.raises(ValueError, match=r"unknown setting.*'cutof'.*allowed: cutoff_angstrom"):
        make_calculator("standin", {"cutof": 4.0})


@pytest.mark.parametrize("pbc", [False, True])
def test_standin_forces_are_minus_energy_gradient(pbc):
    lat = build_cube(2, A, 3) if not pbc else build_periodic(2, A)
    occ = surface_segregated_occupations(lat, 0.5) if not pbc else None
    if occ is None:
        occ = uniform_occupations(lat, 0.5, np.random.default_rng(3))
    atoms = to_atoms(lat, occ, vacuum_angstrom=None if pbc else 6)
    atoms.rattle(0.1, seed=1)
    calc, _ = make_calculator("standin")
    atoms.calc = calc
    forces = atoms.get_forces()
    h = 1e-5
    rng = np.random.default_rng(0)
    for idx in rng.choice(len(atoms), size=6, replace=False):
        for k in range(3):
            pos = atoms.positions.copy()
            pos[idx, k] += h
            atoms.positions = pos
            e_plus = atoms.get_potential_energy()
            pos[idx, k] -= 2 * h
            atoms.positions = pos
            e_minus = atoms.get_potential_energy()
            pos[idx, k] += h
            atoms.positions = pos
            assert forces[idx, k] == pytest.approx(-(e_plus - e_minus) / (2 * h), abs=1e-6)


def test_standin_stress_is_strain_derivative():
    lat = build_periodic(2, A)
    atoms = to_atoms(lat, uniform_occupations(lat, 0.5, np.random.default_rng(3)))
    atoms.rattle(0.1, seed=2)
    atoms.calc = StandinCalculator()
    stress = atoms.get_stress(voigt=False)
    cell0, pos0, vol = atoms.cell.array.copy(), atoms.positions.copy(), atoms.get_volume()
    h = 1e-6
    for a, b in [(0, 0), (1, 1), (2, 2), (0, 1), (1, 2), (0, 2)]:
        energies = []
        for sign in (1, -1):
            eps = np.eye(3)
            eps[a, b] += sign * h / (2 if a != b else 1)
            eps[b, a] += sign * h / 2 if a != b else 0.0
            atoms.set_cell(cell0 @ eps, scale_atoms=False)
            atoms.positions = pos0 @ eps
            energies.append(atoms.get_potential_energy())
        assert stress[a, b] == pytest.approx((energies[0] - energies[1]) / (2 * h) / vol, abs=1e-7)


def test_standin_energy_depends_on_cd_arrangement():
    lat = build_cube(3, A, 3)
    unrelaxed, relaxed = [], []
    for fn in (core_segregated_occupations, surface_segregated_occupations):
        atoms = to_atoms(lat, fn(lat, 0.25), vacuum_angstrom=6)
        atoms.calc = StandinCalculator()
        unrelaxed.append(atoms.get_potential_energy())
        FIRE(atoms, logfile=None).run(fmax=0.05, steps=300)
        relaxed.append(atoms.get_potential_energy())
    assert abs(unrelaxed[0] - unrelaxed[1]) > 0.01
    assert abs(relaxed[0] - relaxed[1]) > 0.05


def test_standin_relaxation_lowers_energy_and_reaches_fmax():
    lat = build_cube(2, A, 3)
    atoms = to_atoms(lat, core_segregated_occupations(lat, 0.25), vacuum_angstrom=6)
    atoms.calc = StandinCalculator()
    e0 = atoms.get_potential_energy()
    assert FIRE(atoms, logfile=None).run(fmax=0.05, steps=300)
    assert atoms.get_potential_energy() < e0
    assert np.sqrt((atoms.get_forces() ** 2).sum(axis=1)).max() <= 0.05


def test_standin_provenance_has_parameters():
    _, prov = make_calculator("standin", {"cutoff_angstrom": 4.5})
    assert prov["kind"] == "standin"
    assert prov["settings"]["cutoff_angstrom"] == 4.5
    assert prov["settings"]["pairs"]["Br-Cd"] == [1.0, 1.6, 2.75]


def test_chgnet_missing_gives_install_hint(monkeypatch):
    monkeypatch.setitem(sys.modules, "chgnet", None)  # makes `import chgnet` fail
    with pytest.raises(MissingDependencyError, match=r"install segsim\[train\]"):
        make_calculator("chgnet")


def test_chgnet_missing_distribution_gives_install_hint(monkeypatch):
    def missing(name):
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(calculators.importlib.metadata, "version", missing)
    with pytest.raises(MissingDependencyError, match=r"install segsim\[train\]"):
        calculator_provenance("chgnet")


def test_cp2k_parameters_published_setup(tmp_path):
    full = calculators.resolve_settings("cp2k", {"cutoff_ry": 300, "directory": tmp_path})
    params = calculators.cp2k_parameters(full)
    assert params["xc"] == "PBE"
    assert params["basis_set"] == "DZVP-MOLOPT-SR-GTH"
    assert params["pseudo_potential"] == "GTH-PBE"
    assert params["basis_set_file"].endswith("BASIS_MOLOPT")
    assert params["potential_file"].endswith("GTH_POTENTIALS")
    assert params["charge"] == 0
    assert params["multiplicity"] == 1
    assert params["cutoff"] == pytest.approx(300 * 13.605693122994)
    assert params["label"] == str(tmp_path / "cp2k")
    assert "REL_CUTOFF [Ry] 50" in params["inp"]
    assert "&OT ON" in params["inp"]
    assert "MINIMIZER DIIS" in params["inp"]
    assert "LINESEARCH" not in params["inp"]


def test_cp2k_ot_minimizer_cg_and_a_bad_one():
    full = calculators.resolve_settings("cp2k", {"ot_minimizer": "cg"})
    inp = calculators.cp2k_parameters(full)["inp"]
    assert "MINIMIZER CG" in inp
    assert "LINESEARCH 2PNT" in inp
    with pytest.raises(ValueError, match=r"ot_minimizer: 'BFGS' is not one of DIIS, CG"):
        calculators.resolve_settings("cp2k", {"ot_minimizer": "BFGS"})


# ----------------------------------------------------------------------------- pipeline


def test_pipeline_database_contents_and_provenance(tmp_path, structures):
    db = tmp_path / "refs.db"
    lines: list[str] = []
    recs = compute_references(
        structures,
        calculator_kind="standin",
        calculator_settings=None,
        relax={"fmax_ev_per_angstrom": 0.05, "max_steps": 300},
        db_path=db,
        progress=lambda r: lines.append(format_progress(r)),
    )
    assert [r["name"] for r in recs] == [s.name for s in structures]
    assert len(lines) == len(structures)
    assert all(not r["reused"] for r in recs)
    for rec, s in zip(recs, structures, strict=True):
        assert rec["converged"]
        assert rec["fmax_final_ev_per_angstrom"] <= 0.05
        assert rec["energy_ev"] < rec["energy_unrelaxed_ev"]
        assert rec["n_steps"] > 0
        assert rec["n_atoms"] == len(s.atoms)
        np.testing.assert_array_equal(rec["occupations"], s.occupations)
        assert rec["shape"] == s.lattice.shape
        assert rec["tags"] == s.tags
        # NCs keep their cell; positions moved.
        np.testing.assert_allclose(rec["atoms"].cell.array, s.atoms.cell.array)
        assert not np.allclose(rec["atoms"].positions, s.atoms.positions)
    loaded = load_references(db)
    assert [r["name"] for r in loaded] == [s.name for s in structures]
    for rec, back in zip(recs, loaded, strict=True):
        assert back["energy_ev"] == pytest.approx(rec["energy_ev"])
        assert back["kind"] in ("nc", "bulk")
        prov = back["provenance"]
        assert prov["calculator"]["kind"] == "standin"
        assert prov["calculator"]["settings"]["cutoff_angstrom"] == 5.6
        assert prov["relax"]["optimizer"] == "FIRE"
        assert prov["relax"]["fmax_ev_per_angstrom"] == 0.05
        assert prov["segsim_version"]
        assert back["calculator_kind"] == "standin"
    assert load_references(db, calculator_kind="chgnet") == []
    assert len(load_references(db, provenance_hash=recs[0]["provenance_hash"])) == 4
    # Different Cd arrangements: different energies.
    assert abs(recs[0]["energy_ev"] - recs[1]["energy_ev"]) > 0.1


def test_pipeline_resumes_without_recomputation(tmp_path, structures, counting_standin):
    db = tmp_path / "refs.db"
    kw = {"calculator_kind": "standin", "calculator_settings": None, "relax": None}
    first = compute_references(structures[:2], db_path=db, **kw)
    n_first = counting_standin()
    assert n_first > 0
    full = compute_references(structures, db_path=db, **kw)
    n_full = counting_standin() - n_first
    assert [r["reused"] for r in full] == [True, True, False, False]
    assert [r["energy_ev"] for r in full[:2]] == [r["energy_ev"] for r in first]
    # Only the two new structures were computed: as many calls as computing them alone.
    solo = compute_references(structures[2:], db_path=tmp_path / "solo.db", **kw)
    assert counting_standin() - n_first - n_full == n_full
    assert [r["energy_ev"] for r in solo] == pytest.approx([r["energy_ev"] for r in full[2:]])
    # Everything done: nothing is computed (the calculator is not even built).
    before = counting_standin()
    again = compute_references(structures, db_path=db, **kw)
    assert counting_standin() == before
    assert all(r["reused"] for r in again)
    assert len(load_references(db)) == 4


def test_pipeline_other_settings_recompute(tmp_path, structures, counting_standin):
    db = tmp_path / "refs.db"
    base = compute_references(
        structures[:1], calculator_kind="standin", calculator_settings=None, relax=None, db_path=db
    )
    n0 = counting_standin()
    other_calc = compute_references(
        structures[:1],
        calculator_kind="standin",
        calculator_settings={"cutoff_angstrom": 4.5},
        relax=None,
        db_path=db,
    )
    n1 = counting_standin()
    assert n1 > n0
    assert not other_calc[0]["reused"]
    assert other_calc[0]["provenance_hash"] != base[0]["provenance_hash"]
    other_relax = compute_references(
        structures[:1],
        calculator_kind="standin",
        calculator_settings=None,
        relax={"fmax_ev_per_angstrom": 0.02},
        db_path=db,
    )
    assert counting_standin() > n1
    assert not other_relax[0]["reused"]
    assert other_relax[0]["fmax_final_ev_per_angstrom"] <= 0.02
    hashes = {r["provenance_hash"] for r in load_references(db)}
    assert len(hashes) == 3
    assert len(load_references(db, provenance_hash=base[0]["provenance_hash"])) == 1


def test_interrupted_run_keeps_finished_rows(tmp_path, structures, monkeypatch):
    db = tmp_path / "refs.db"
    real_relax = reference._relax
    calls = {"n": 0}

    def interrupted(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return real_relax(*args, **kwargs)

    monkeypatch.setattr(reference, "_relax", interrupted)
    with pytest.raises(KeyboardInterrupt):
        compute_references(
            structures, calculator_kind="standin", calculator_settings=None, relax=None, db_path=db
        )
    assert [r["name"] for r in load_references(db)] == ["nc2_core", "nc2_surface"]
    monkeypatch.setattr(reference, "_relax", real_relax)
    recs = compute_references(
        structures, calculator_kind="standin", calculator_settings=None, relax=None, db_path=db
    )
    assert [r["reused"] for r in recs] == [True, True, False, False]
    assert len(load_references(db)) == 4


def test_changed_structure_under_the_same_name_is_recomputed(tmp_path, structures, capsys):
    db = tmp_path / "refs.db"
    kw = {"calculator_kind": "standin", "calculator_settings": None, "relax": {"max_steps": 0}}
    (first,) = compute_references(structures[:1], db_path=db, **kw)
    s = structures[1]
    changed = ReferenceStructure(
        structures[0].name, s.kind, s.atoms, s.lattice, s.occupations, s.x_cd, s.n_edge
    )
    (rec,) = compute_references([changed], db_path=db, **kw)
    assert not rec["reused"]
    assert "recomputing" in capsys.readouterr().err
    assert rec["structure_hash"] != first["structure_hash"]
    rows = load_references(db)
    assert [r["name"] for r in rows] == [structures[0].name]  # the stale row is gone
    assert rows[0]["structure_hash"] == rec["structure_hash"]
    assert rows[0]["n_atoms"] == len(s.atoms)
    (again,) = compute_references([changed], db_path=db, **kw)
    assert again["reused"]
    with pytest.raises(ValueError, match="duplicate structure names"):
        compute_references([s, s], db_path=db, **kw)


def test_single_point_and_cell_relaxation(tmp_path, structures):
    db = tmp_path / "refs.db"
    sp = compute_references(
        structures[2:],
        calculator_kind="standin",
        calculator_settings=None,
        relax={"max_steps": 0},
        db_path=db,
    )
    assert all(r["n_steps"] == 0 for r in sp)
    assert all(r["energy_ev"] == r["energy_unrelaxed_ev"] for r in sp)
    cell = compute_references(
        structures,
        calculator_kind="standin",
        calculator_settings=None,
        relax=RelaxSettings(relax_cell=True),
        db_path=db,
    )
    # Every periodic cell relaxes its cell (tagged vegard or not); NCs keep their box.
    assert [r["relax_cell"] for r in cell] == [False, False, True, True]
    for rec, st in zip(cell, structures, strict=True):
        moved = not np.allclose(rec["atoms"].cell.array, st.atoms.cell.array)
        assert moved == st.atoms.pbc.all(), st.name
    assert cell[2]["converged"]
    assert cell[2]["energy_ev"] < cell[2]["energy_unrelaxed_ev"]


def test_rows_relaxed_under_the_old_cell_rule_are_recomputed(tmp_path, structures, capsys):
    from segsim.training import reference

    db = tmp_path / "refs.db"
    first = compute_references(
        structures[2:], calculator_kind="standin", relax={"relax_cell": True}, db_path=db
    )
    # fake a row of the old rule: the untagged periodic cell stored with a fixed cell
    import ase.db

    con = ase.db.connect(db)
    con.update(first[0]["id"], relax_cell=False)
    capsys.readouterr()
    # read-only mode does not use it, and does not delete it
    cached = compute_references(
        structures[2:], calculator_kind="standin", relax={"relax_cell": True}, db_path=db,
        compute=False,
    )  # fmt: skip
    assert [r["name"] for r in cached] == [structures[3].name]
    again = compute_references(
        structures[2:], calculator_kind="standin", relax={"relax_cell": True}, db_path=db
    )
    assert "the rule now asks relax_cell=True; recomputing" in capsys.readouterr().err
    assert [r["reused"] for r in again] == [False, True]
    assert all(r["relax_cell"] for r in again)
    assert len(reference.load_references(db)) == 2


def test_relax_settings_validation():
    with pytest.raises(ValueError, match="unknown optimizer"):
        RelaxSettings(optimizer="SD")
    with pytest.raises(ValueError, match="unknown cell filter"):
        RelaxSettings(cell_filter="exp")  # ExpCellFilter is deprecated in ASE
    with pytest.raises(ValueError, match="max_steps"):
        RelaxSettings(max_steps=-1)
    with pytest.raises(ValueError, match=r"unknown relax setting.*'fmax'"):
        RelaxSettings.from_any({"fmax": 0.1})
    assert RelaxSettings.from_any(None) == RelaxSettings()
    assert RelaxSettings().fmax_ev_per_angstrom == 0.01
    assert RelaxSettings().optimizer == "FIRE"


def test_load_references_missing_db(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_references(tmp_path / "nope.db")


# ----------------------------------------------------------------------------- slow


@pytest.mark.slow
def test_chgnet_relaxes_small_nc(tmp_path):
    pytest.importorskip("chgnet")
    s = _nc("nc2_core", 2, core_segregated_occupations)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch / pymatgen warnings during inference
        recs = compute_references(
            [s],
            calculator_kind="chgnet",
            calculator_settings=None,
            relax={"max_steps": 200},
            db_path=tmp_path / "chgnet.db",
        )
    rec = recs[0]
    assert np.isfinite(rec["energy_ev"])
    assert rec["energy_ev"] < rec["energy_unrelaxed_ev"]
    prov = rec["provenance"]["calculator"]
    assert prov["chgnet_version"]
    assert prov["torch_version"]
    assert prov["device"] == "cpu"


def _cp2k_single_point(atoms, tmp_path):
    """Energy, forces and provenance of a cheap CP2K single point (closes the shell)."""
    calc, prov = make_calculator(
        "cp2k", {"cutoff_ry": 150, "rel_cutoff_ry": 30, "directory": tmp_path}
    )
    try:
        atoms.calc = calc
        return atoms.get_potential_energy(), atoms.get_forces(), prov
    finally:
        calc.close()


@pytest.mark.slow
def test_cp2k_single_point_smoke(tmp_path):
    """A CsBr (CsCl structure) cell with a low cutoff: the CP2K setup runs end to end."""
    import shutil

    from ase import Atoms

    if shutil.which("cp2k_shell") is None:
        pytest.skip("cp2k_shell not installed")
    atoms = Atoms(
        "CsBr", scaled_positions=[[0, 0, 0], [0.5, 0.5, 0.5]], cell=np.eye(3) * 4.3, pbc=True
    )
    energy, forces, prov = _cp2k_single_point(atoms, tmp_path)
    assert np.isfinite(energy)
    assert np.abs(forces).max() < 0.05  # forces vanish by symmetry
    assert prov["cp2k_version"].startswith("CP2K version")
    assert prov["settings"]["basis_set"] == "DZVP-MOLOPT-SR-GTH"


@pytest.mark.slow
def test_cp2k_cluster_single_point_smoke(tmp_path):
    """A non-periodic CsBr dimer: the MT Poisson solver path (no stress) runs."""
    import shutil

    from ase import Atoms

    if shutil.which("cp2k_shell") is None:
        pytest.skip("cp2k_shell not installed")
    atoms = Atoms("CsBr", positions=[[0, 0, 0], [3.1, 0, 0]], pbc=False)
    atoms.center(vacuum=5.0)
    energy, forces, _ = _cp2k_single_point(atoms, tmp_path)
    assert np.isfinite(energy)
    assert forces[0, 0] == pytest.approx(-forces[1, 0], abs=0.1)
    assert "PSOLVER  MT" in (tmp_path / "cp2k.inp").read_text()


def test_modules_do_not_import_torch():
    code = (
        "import sys, segsim.training.reference, segsim.training.calculators; "
        "assert 'torch' not in sys.modules and 'chgnet' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_prune_database_keeps_exactly_the_current_records(tmp_path, structures):
    from segsim.training.reference import prune_database

    db = tmp_path / "refs.db"
    kw = {"calculator_kind": "standin", "calculator_settings": None, "db_path": db}
    old = compute_references(structures, relax={"fmax_ev_per_angstrom": 0.2}, **kw)
    new = compute_references(structures[:3], relax={"fmax_ev_per_angstrom": 0.1}, **kw)
    assert old[0]["provenance_hash"] != new[0]["provenance_hash"]
    assert len(load_references(db)) == len(structures) + 3
    assert prune_database(db, new) == len(structures)
    left = load_references(db)
    assert sorted((r["name"], r["provenance_hash"]) for r in left) == sorted(
        (r["name"], r["provenance_hash"]) for r in new
    )
    assert prune_database(db, new) == 0


def test_start_options_keep_old_hashes_and_change_new_ones():
    from segsim.training.reference import RelaxSettings, provenance_hash

    calc = {"kind": "standin", "settings": {"cutoff_angstrom": 5.6}}
    default = RelaxSettings()
    legacy = json.dumps(
        {"calculator": calc, "relax": {"optimizer": "FIRE", "fmax_ev_per_angstrom": 0.01,
                                       "max_steps": 1000, "relax_cell": False,
                                       "cell_filter": "frechet"}},
        sort_keys=True, separators=(",", ":"), default=str,
    )  # fmt: skip
    assert provenance_hash(calc, default) == hashlib.sha256(legacy.encode()).hexdigest()[:16]
    rattled = RelaxSettings(rattle_angstrom=0.03, n_starts=2)
    assert provenance_hash(calc, rattled) != provenance_hash(calc, default)
    with pytest.raises(ValueError, match="n_starts > 1 needs rattle"):
        RelaxSettings(n_starts=2)
    with pytest.raises(ValueError, match="rattle_angstrom"):
        RelaxSettings(rattle_angstrom=-0.1)


def test_multi_start_relaxation_keeps_the_lowest_energy(tmp_path, structures):
    kw = {"calculator_kind": "standin", "calculator_settings": None}
    relax = {"rattle_angstrom": 0.05, "max_steps": 200}
    one = compute_references(structures[:1], relax={**relax, "n_starts": 1},
                             db_path=tmp_path / "one.db", **kw)[0]  # fmt: skip
    three = compute_references(structures[:1], relax={**relax, "n_starts": 3},
                               db_path=tmp_path / "three.db", **kw)[0]  # fmt: skip
    # Start 0 of both runs is the same (seed 1000): three starts can only go lower.
    assert three["energy_ev"] <= one["energy_ev"]
    assert three["n_steps"] > one["n_steps"]
    assert three["atoms"].get_potential_energy() == pytest.approx(three["energy_ev"])
    # Rattled starts move the atoms off the ideal positions before relaxing.
    assert one["energy_unrelaxed_ev"] == pytest.approx(three["energy_unrelaxed_ev"])


def test_mean_aggregate_stores_the_mean_of_the_starts_and_workers_agree(tmp_path, structures):
    """aggregate 'mean': the row energy is the mean of the starts, each as relaxed alone."""
    kw = {"calculator_kind": "standin", "calculator_settings": None}
    relax = {"rattle_angstrom": 0.05, "max_steps": 200, "n_starts": 3}
    mean = compute_references(structures[:2], relax={**relax, "aggregate": "mean"},
                              db_path=tmp_path / "mean.db", **kw)  # fmt: skip
    low = compute_references(structures[:2], relax=relax, db_path=tmp_path / "min.db", **kw)
    calc, _ = make_calculator("standin")
    settings = RelaxSettings(**relax)
    for rec, lo, st in zip(mean, low, structures[:2], strict=True):
        alone = [
            reference.relax_start(st.atoms, calc, settings, k)[0]["energy_ev"] for k in range(3)
        ]
        assert rec["start_energies_ev"] == pytest.approx(alone, abs=1e-9)
        assert rec["energy_ev"] == pytest.approx(np.mean(alone), abs=1e-9)
        assert rec["energy_sem_ev"] == pytest.approx(np.std(alone, ddof=1) / np.sqrt(3), abs=1e-9)
        assert max(alone) - min(alone) > 1e-4  # the starts differ: the mean is not the min
        assert lo["energy_ev"] == pytest.approx(min(alone), abs=1e-9)
        assert lo["start_energies_ev"] is None  # 'min' rows keep the old layout
        # The geometry is the lowest start's.
        atoms = rec["atoms"].copy()
        atoms.calc = calc
        assert atoms.get_potential_energy() == pytest.approx(min(alone), abs=1e-6)
        assert "mean of 3 starts" in format_progress(rec)
    # Worker processes (jobs = 2) give the same energies.
    par = compute_references(structures[:2], relax={**relax, "aggregate": "mean"},
                             db_path=tmp_path / "par.db", jobs=2, **kw)  # fmt: skip
    for a, b in zip(mean, par, strict=True):
        assert b["start_energies_ev"] == pytest.approx(a["start_energies_ev"], abs=1e-9)
        np.testing.assert_allclose(b["atoms"].positions, a["atoms"].positions, atol=1e-9)
    # The aggregate is part of the provenance; jobs is not (a rerun reuses the rows).
    again = compute_references(structures[:2], relax={**relax, "aggregate": "mean"},
                               db_path=tmp_path / "par.db", jobs=1, **kw)  # fmt: skip
    assert all(r["reused"] for r in again)
    calc_prov = calculator_provenance("standin")
    assert reference.provenance_hash(calc_prov, RelaxSettings(**relax)) != (
        reference.provenance_hash(calc_prov, RelaxSettings(**relax, aggregate="mean"))
    )
    with pytest.raises(ValueError, match="unknown aggregate 'median'"):
        RelaxSettings(aggregate="median")
    with pytest.raises(ValueError, match="jobs must be a positive integer"):
        compute_references(structures[:1], db_path=tmp_path / "x.db", jobs=0, **kw)


def test_workers_run_ahead_across_structures_with_the_serial_result(tmp_path, structures):
    """jobs > starts per structure: the next structures' starts run ahead, rows stay in order."""
    kw = {"calculator_kind": "standin", "calculator_settings": None}
    relax = {"rattle_angstrom": 0.05, "max_steps": 200}  # one start per structure
    serial = compute_references(structures, relax=relax, db_path=tmp_path / "s.db", **kw)
    db = tmp_path / "p.db"
    # one structure stored already: it is reused in place, the others computed by 3 workers
    compute_references(structures[1:2], relax=relax, db_path=db, **kw)
    par = compute_references(structures, relax=relax, db_path=db, jobs=3, **kw)
    assert [r["name"] for r in par] == [st.name for st in structures]
    assert [r["reused"] for r in par] == [False, True, False, False]
    for a, b in zip(serial, par, strict=True):
        assert b["energy_ev"] == pytest.approx(a["energy_ev"], abs=1e-9)
        assert b["energy_unrelaxed_ev"] == pytest.approx(a["energy_unrelaxed_ev"], abs=1e-9)
        np.testing.assert_allclose(b["atoms"].positions, a["atoms"].positions, atol=1e-9)
        assert b["seconds"] > 0.0


def test_tilted_start_changes_the_hash_only_when_chosen():
    from segsim.training.reference import RelaxSettings, provenance_hash

    calc = {"kind": "standin", "settings": {"cutoff_angstrom": 5.6}}
    default = provenance_hash(calc, RelaxSettings())
    # Tilt angles do not matter for an ideal start: old databases keep their keys.
    assert provenance_hash(calc, RelaxSettings(tilt_antiphase_degrees=3.0)) == default
    tilted = provenance_hash(calc, RelaxSettings(start="tilted"))
    assert tilted != default
    assert provenance_hash(calc, RelaxSettings(start="tilted", tilt_inphase_degrees=4.0)) != tilted
    with pytest.raises(ValueError, match="unknown start 'twisted'"):
        RelaxSettings(start="twisted")
    with pytest.raises(ValueError, match="tilt_antiphase_degrees"):
        RelaxSettings(start="tilted", tilt_antiphase_degrees=45.0)


def test_tilted_start_relaxes_from_the_glazer_pattern(tmp_path, structures):
    from segsim.training import tilt
    from segsim.training.reference import start_atoms

    relax = RelaxSettings(start="tilted", max_steps=300)
    nc = structures[0].atoms
    start = start_atoms(nc, relax)
    expected = nc.positions + tilt.glazer_tilt_displacements(nc, *tilt.CHGNET_BULK_TILT_DEGREES)
    np.testing.assert_allclose(start.positions, expected)
    np.testing.assert_array_equal(nc.positions, structures[0].atoms.positions)  # not modified
    rattled = RelaxSettings(start="tilted", rattle_angstrom=0.02, n_starts=2)
    first, second = start_atoms(nc, rattled, 0), start_atoms(nc, rattled, 1)
    assert 0 < np.abs(first.positions - start.positions).max() < 0.2
    assert not np.allclose(first.positions, second.positions)
    kw = {"calculator_kind": "standin", "calculator_settings": None}
    ideal = compute_references(structures, db_path=tmp_path / "i.db", **kw)
    recs = compute_references(structures, relax=relax, db_path=tmp_path / "t.db", **kw)
    for rec, ref in zip(recs, ideal, strict=True):
        assert rec["provenance"]["relax"]["start"] == "tilted"
        assert rec["provenance_hash"] != ref["provenance_hash"]
        # The unrelaxed energy is that of the structure as given (ideal positions).
        assert rec["energy_unrelaxed_ev"] == pytest.approx(ref["energy_unrelaxed_ev"])
        assert rec["converged"]


def test_annealed_tilted_start_is_reproducible_per_seed(structures):
    from segsim.training.reference import provenance_hash, relax_start

    calc_prov = {"kind": "standin", "settings": {"cutoff_angstrom": 5.6}}
    tilted = RelaxSettings(start="tilted", anneal_kelvin=300.0)  # anneal unused: not hashed
    assert provenance_hash(calc_prov, tilted) == provenance_hash(
        calc_prov, RelaxSettings(start="tilted")
    )
    annealed = RelaxSettings(start="tilted_anneal", anneal_femtoseconds=20.0, max_steps=300)
    assert provenance_hash(calc_prov, annealed) != provenance_hash(calc_prov, tilted)
    calc, _ = make_calculator("standin")
    nc = structures[0].atoms
    one, a1 = relax_start(nc, calc, annealed, 0)
    again, a2 = relax_start(nc, calc, annealed, 0)
    _, a3 = relax_start(nc, calc, annealed, 1)
    np.testing.assert_array_equal(a1.positions, a2.positions)
    assert one["energy_ev"] == again["energy_ev"]
    assert not np.allclose(a1.positions, a3.positions)  # another seed, another trajectory
    assert one["converged"]
    with pytest.raises(ValueError, match="anneal"):
        RelaxSettings(start="tilted_anneal", anneal_kelvin=-1.0)


def test_untilted_start_keeps_every_bonded_br_on_its_bond_axis(structures):
    """The tilt-free relaxation: Br move only along their B-Br axes; hash differs."""
    from segsim.training import tilt
    from segsim.training.reference import provenance_hash, relax_start, untilted_constraints

    calc_prov = {"kind": "standin", "settings": {"cutoff_angstrom": 5.6}}
    untilted = RelaxSettings(start="untilted", rattle_angstrom=0.03, max_steps=300)
    assert provenance_hash(calc_prov, untilted) != provenance_hash(
        calc_prov, RelaxSettings(rattle_angstrom=0.03)
    )
    # Tilt angles play no part in an untilted start.
    assert provenance_hash(calc_prov, untilted) == provenance_hash(
        calc_prov,
        RelaxSettings(
            start="untilted", rattle_angstrom=0.03, max_steps=300, tilt_inphase_degrees=3.0
        ),
    )
    nc = structures[0].atoms
    net = tilt.octahedral_network(nc)
    cons = untilted_constraints(nc)
    assert sum(len(c.index) for c in cons) == net.x_atoms.size > 0
    calc, _ = make_calculator("standin")
    out, relaxed = relax_start(nc, calc, untilted, 0)
    assert out["converged"]
    assert not relaxed.constraints  # removed after the relaxation
    moved = relaxed.positions - nc.positions
    for axis in range(3):
        br = net.x_atoms[net.x_axis == axis]
        off = np.delete(moved[br], axis, axis=1)
        np.testing.assert_allclose(off, 0.0, atol=1e-9)  # no displacement across the bond
    assert np.abs(moved[net.x_atoms]).max() > 1e-3  # but they did relax along it
    others = np.setdiff1d(np.arange(len(nc)), net.x_atoms)
    assert np.abs(moved[others]).max() > 1e-3  # B and Cs are free (rattled and relaxed)


def test_all_digit_digests_become_text_keys_that_ase_stores(tmp_path):
    """ASE refuses string values that read as integers; a digest of only digits is changed."""
    import ase.db
    from ase import Atoms

    from segsim.training.reference import _text_key

    assert _text_key("0123501091913323") == "x123501091913323"
    assert _text_key("0123abc091913323") == "0123abc091913323"  # the usual case: unchanged
    db = ase.db.connect(str(tmp_path / "k.db"), type="db")
    db.write(Atoms("H"), key_value_pairs={"provenance_hash": _text_key("0123501091913323")})
    assert db.get(id=1).provenance_hash == "x123501091913323"
