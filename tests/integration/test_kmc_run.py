"""KMC from the command line: schema, invariants, resume, interruption, bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest

from segsim import driver, species
from segsim.cli import main
from segsim.config import load
from segsim.io import hdf5
from segsim.kernels.kmc import EVENT_TYPE_NAMES
from tests.helpers import FLAT_KRA, write_random_ce, write_yaml

FAST = {  # barriers low enough that a 3 nm NC sees every event type in a fraction of a second
    "attempt_frequency_per_s": 1e13,
    "e_kra_pb_ev": 0.55,
    "e_kra_cd_ev": 0.50,
    "e_exp_pb_ev": 0.90,
    "e_exp_cd_ev": 0.62,
    "e_rec_ev": 0.68,
    **FLAT_KRA,
}


@pytest.fixture(scope="module")
def ce_file(tmp_path_factory):
    return write_random_ce(tmp_path_factory.mktemp("ce") / "r.ce", cutoffs=[6.0], scale=0.02)


def kmc_input(model_path, **overrides):
    doc = {
        "system": {"edge_nm": 3.0, "x_cd": 0.25, "vacancy_fraction": 0.02},
        "model": {"kind": "cluster_expansion", "path": str(model_path)},
        "run": {"kind": "kmc", "temperature_k": 298.0, "duration_s": 2.0, "seed": 5},
        "kinetics": dict(FAST),
        "passivation": {"ligand": "pristine"},
        "output": {
            "frame_interval_s": 0.1,
            "snapshot_every_frames": 5,
            "checkpoint_every_frames": 2,
        },
    }
    for section, values in overrides.items():
        doc[section] = {**doc.get(section, {}), **values}
    return doc


def test_kmc_run_schema_invariants_and_info(tmp_path, ce_file, capsys):
    inp = write_yaml(tmp_path / "k.yaml", kmc_input(ce_file))
    out = tmp_path / "k.h5"
    assert main(["run", str(inp), "-o", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "days" in printed
    assert "PL peak" in printed
    tr = hdf5.read_trace(out)
    np.testing.assert_allclose(tr["time_s"], np.arange(21) * 0.1, rtol=1e-12, atol=1e-15)
    n_nc = 5**3
    n_cd0 = round(0.25 * n_nc)
    n_vac0 = round(0.02 * n_nc)
    # Conservation: cations in the crystal + expelled = initial, for Pb and Cd.
    np.testing.assert_array_equal(tr["n_cd"] + tr["cd_expelled"], n_cd0)
    np.testing.assert_array_equal(tr["n_pb"] + tr["pb_expelled"], n_nc - n_cd0 - n_vac0)
    assert tr["cd_expelled"][-1] > 0
    assert np.all(np.diff(tr["step"]) >= 0)
    np.testing.assert_allclose(tr["x_cd"], tr["n_cd"] / (tr["n_cd"] + tr["n_pb"]))
    assert tr["event_counts"].shape == (21, len(EVENT_TYPE_NAMES))
    np.testing.assert_array_equal(tr["event_counts"].sum(axis=1), tr["step"])
    assert np.all((tr["pl_peak_nm"] > 470) & (tr["pl_peak_nm"] < 512))
    # The frame energy is a full recompute; it equals the snapshot's energy.
    _, _lattice, tables = driver.build_system(load(inp))
    steps, occs = hdf5.read_snapshots(out)
    assert len(steps) == 5  # frames 0, 5, 10, 15, 20
    for st, occ in zip(steps, occs, strict=True):
        k = int(np.searchsorted(tr["step"], st))
        assert tr["energy_ev"][k] == pytest.approx(tables.total_energy(occ), abs=1e-9)
    # Nothing beyond the synthesised cube is ever a crystal site; inside it, receded sites may
    # regrow (docs/model.md), and the net count of receded sites is recessions - regrowths.
    beyond = ~_lattice.in_nc
    n_out0 = int(np.sum(occs[0] == species.OUT))
    for st, o in zip(steps, occs, strict=True):
        assert np.all(o[beyond] == species.OUT)
        k = int(np.searchsorted(tr["step"], st))
        recede, regrow = (
            tr["event_counts"][k, EVENT_TYPE_NAMES.index(n)] for n in ("recede", "regrow")
        )
        assert int(np.sum(o == species.OUT)) - n_out0 == recede - regrow
    assert main(["info", str(out)]) == 0
    text = capsys.readouterr().out
    assert "PL" in text
    assert "Cd out" in text


def test_kmc_resume_is_identical_to_uninterrupted(tmp_path, ce_file):
    cfg = load(write_yaml(tmp_path / "k.yaml", kmc_input(ce_file)))
    ref = tmp_path / "ref.h5"
    driver.run_kmc(cfg, ref, progress=False)
    part = tmp_path / "part.h5"
    with pytest.raises(driver.Interrupted):
        driver.run_kmc(cfg, part, progress=False, stop_at_time_s=0.55)
    tr_part = hdf5.read_trace(part)
    assert tr_part["time_s"][-1] == pytest.approx(0.6)
    assert main(["run", "-q", "--resume", str(part)]) == 0
    a, b = hdf5.read_trace(ref), hdf5.read_trace(part)
    assert set(a) == set(b)
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)
    ca, cb = hdf5.read_checkpoint(ref), hdf5.read_checkpoint(part)
    np.testing.assert_array_equal(ca[0]["occupations"], cb[0]["occupations"])
    assert ca[1]["rng_state"] == cb[1]["rng_state"]
    assert cb[1]["complete"]


def test_kmc_walltime_stop_inside_a_frame_resumes_identically(tmp_path, ce_file, monkeypatch):
    cfg = load(write_yaml(tmp_path / "k.yaml", kmc_input(ce_file)))
    ref = tmp_path / "ref.h5"
    driver.run_kmc(cfg, ref, progress=False)
    monkeypatch.setattr(driver, "KMC_CHUNK_EVENTS", 50)  # stop after the first chunk
    part = tmp_path / "part.h5"
    with pytest.raises(driver.Interrupted):
        driver.run_kmc(cfg, part, progress=False, walltime_s=0.0)
    ck = hdf5.read_checkpoint(part)
    assert ck[1]["step"] > 0
    assert ck[1]["time_s"] < 0.1
    monkeypatch.setattr(driver, "KMC_CHUNK_EVENTS", 200_000)
    driver.run_kmc(load(write_yaml(tmp_path / "k.yaml", kmc_input(ce_file))), part,
                   resume=True, progress=False)  # fmt: skip
    a, b = hdf5.read_trace(ref), hdf5.read_trace(part)
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)


def test_resume_when_no_event_happens_between_frames(tmp_path, ce_file):
    """Frames with the same event count (a frozen NC) are cut back by row, not by step."""
    doc = kmc_input(
        ce_file,
        system={"vacancy_fraction": 0.0},
        passivation={"ligand": {"name": "sealed", "theta": 1.0}},
    )
    cfg = load(write_yaml(tmp_path / "k.yaml", doc))
    ref = tmp_path / "ref.h5"
    driver.run_kmc(cfg, ref, progress=False)
    assert np.all(hdf5.read_trace(ref)["step"] == 0)  # nothing can happen
    part = tmp_path / "part.h5"
    with pytest.raises(driver.Interrupted):
        driver.run_kmc(cfg, part, progress=False, stop_at_time_s=0.75)
    # A job killed after writing frames beyond its last checkpoint: the finished file with
    # the checkpoint of frame 8 put back.
    import shutil

    import h5py

    crashed = tmp_path / "crashed.h5"
    shutil.copy(ref, crashed)
    with h5py.File(crashed, "a") as fc, h5py.File(part, "r") as fp:
        del fc["checkpoint"]
        fp.copy(fp["checkpoint"], fc, "checkpoint")
    driver.run_kmc(cfg, crashed, resume=True, progress=False)
    a, b = hdf5.read_trace(ref), hdf5.read_trace(crashed)
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)
    assert hdf5.read_snapshots(crashed)[0].shape == hdf5.read_snapshots(ref)[0].shape


def test_passivation_keeps_cd(tmp_path, ce_file):
    """Full coverage (theta = 1) closes every exit channel: nothing is expelled."""
    doc = kmc_input(ce_file, passivation={"ligand": {"name": "perfect", "theta": 1.0}})
    cfg = load(write_yaml(tmp_path / "k.yaml", doc))
    s = driver.run_kmc(cfg, tmp_path / "p.h5", progress=False)
    assert s.counts["expel_cd"] == 0
    assert s.counts["expel_pb"] == 0
    assert s.counts["hop_cd"] + s.counts["hop_pb"] > 0


def _rp_input(ce_file):
    """6 B sites per edge, an RP zone for sure, a treatment (DDABr) ending at 120 s."""
    return kmc_input(
        ce_file,
        system={"edge_nm": 3.6, "vacancy_fraction": 0.01},
        run={"duration_s": 400.0, "temperature_k": 298.0},
        kinetics={
            "e_kra_pb_ev": 0.75,
            "e_kra_cd_ev": 0.70,
            "e_exp_cd_ev": 0.80,
            "e_exp_pb_ev": 1.0,
            "e_rec_ev": 0.80,
            **FLAT_KRA,
        },
        rp={"e_rp_a_ev": 0.88, "eps_rp_ev": 0.08, "eta_ev": 0.05},
        synthesis={"rp_probability": 1.0, "mc_sweeps": 50, "rp_width_fraction": 1.0},
        passivation={"ligand": "ddabr"},
        output={"frame_interval_s": 40.0, "snapshot_every_frames": 1},
    )


def test_kmc_with_rp_synthesis_treatment_and_resume(tmp_path, ce_file):
    cfg = load(write_yaml(tmp_path / "rp.yaml", _rp_input(ce_file)))
    assert cfg.synthesis.temperature_k == 343.0  # default from potentials/rp.yaml
    ref = tmp_path / "ref.h5"
    driver.run_kmc(cfg, ref, progress=False)
    tr = hdf5.read_trace(ref)
    import h5py

    with h5py.File(ref) as f:
        assert f["metadata"].attrs["treatment_end_s"] == pytest.approx(120.0)
        phase = f["snapshots/phase"][:]
        occs = f["snapshots/occupations"][:]
    assert tr["has_rp"][0] == 1.0
    assert tr["rp_fraction"][0] > 0.2  # two layers under a whole face of a 6^3 NC
    assert tr["rp_fraction"][-1] < tr["rp_fraction"][0]  # RP relaxes, fastest in treatment
    assert tr["event_counts"][-1][5] > 0
    assert np.all(phase[:, occs[0] == species.OUT] == 0)
    # Frame energies include E_RP: equal to a full recompute of each snapshot.
    from segsim.rp import rp_energy_ev

    _, lattice, tables = driver.build_system(cfg)
    ck = hdf5.read_checkpoint(ref)
    e_last = tables.total_energy(ck[0]["occupations"]) + rp_energy_ev(
        ck[0]["occupations"], ck[0]["phase"], lattice.nn, cfg.rp
    )
    assert tr["energy_ev"][-1] == pytest.approx(e_last, abs=1e-9)
    # Stop during the treatment (at 80 s) and resume: identical to the uninterrupted run.
    part = tmp_path / "part.h5"
    with pytest.raises(driver.Interrupted):
        driver.run_kmc(cfg, part, progress=False, stop_at_time_s=70.0)
    assert main(["run", "-q", "--resume", str(part)]) == 0
    a, b = hdf5.read_trace(ref), hdf5.read_trace(part)
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)
    with h5py.File(ref) as fa, h5py.File(part) as fb:
        np.testing.assert_array_equal(fa["snapshots/phase"][:], fb["snapshots/phase"][:])
        np.testing.assert_array_equal(fa["checkpoint/phase"][:], fb["checkpoint/phase"][:])


@pytest.mark.parametrize(
    ("section", "values", "needle"),
    [
        ("synthesis", {"rp_probability": 1.5}, "synthesis.rp_probability"),
        ("synthesis", {"rp_width_fraction": 0.0}, "synthesis.rp_width_fraction"),
        ("rp", {"e_rp_a_ev": -0.1}, "rp.e_rp_a_ev"),
        ("rp", {"zeta": 1.0}, "rp.zeta"),
        ("passivation", {"ligand": "nonsense"}, "passivation.ligand"),
        ("kinetics", {"e_kra_cd_ev": -1.0}, "kinetics.e_kra_cd_ev"),
        ("kinetics", {"de_kra_cd_1cd_ev": float("nan")}, "kinetics.de_kra_cd_1cd_ev"),
        ("kinetics", {"de_kra_pb_2cd_ev": "low"}, "kinetics.de_kra_pb_2cd_ev"),
        ("kinetics", {"hop": "yes"}, "kinetics.hop"),
        ("kinetics", {"bogus": 1.0}, "kinetics.bogus"),
        ("run", {"duration_days": 1.0}, "run.duration_days"),  # both units given
        ("output", {"frame_interval_s": None}, "output.frame_interval_days"),
    ],
)
def test_bad_kmc_input_one_line_exit_2(tmp_path, ce_file, capsys, section, values, needle):
    doc = kmc_input(ce_file, **{section: values})
    inp = write_yaml(tmp_path / "bad.yaml", doc)
    out = tmp_path / "bad.h5"
    assert main(["run", str(inp), "-o", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert needle in err
    assert str(inp) in err
    assert not out.exists()
    assert not (tmp_path / "bad.h5.part").exists()


def test_kmc_and_mc_runs_with_a_four_species_ce(tmp_path, capsys):
    """A CE with the vacancy as its own species (Pb, Cd, V, X) runs through the CLI."""
    ce4 = write_random_ce(tmp_path / "v.ce", cutoffs=[8.4, 6.0], separate_vacancy=True)
    inp = write_yaml(tmp_path / "k.yaml", kmc_input(ce4))
    out = tmp_path / "k.h5"
    assert main(["run", str(inp), "-o", str(out)]) == 0
    tr = hdf5.read_trace(out)
    n_nc = 5**3
    n_cd0 = round(0.25 * n_nc)
    np.testing.assert_array_equal(tr["n_cd"] + tr["cd_expelled"], n_cd0)
    assert tr["event_counts"].sum() > 0
    _, _lattice, tables = driver.build_system(load(inp))
    steps, occs = hdf5.read_snapshots(out)
    for st, occ in zip(steps, occs, strict=True):
        k = int(np.searchsorted(tr["step"], st))
        assert tr["energy_ev"][k] == pytest.approx(tables.total_energy(occ), abs=1e-9)
    mc = {
        "run": {"kind": "canonical_mc", "temperature_k": 343.0, "n_steps": 5000, "seed": 2},
        "output": {"trace_interval_steps": 1000, "snapshot_interval_steps": 5000,
                   "checkpoint_interval_steps": 5000},
    }  # fmt: skip
    doc = kmc_input(ce4)
    doc.pop("kinetics")
    doc.pop("passivation")
    doc.update(mc)
    assert (
        main(["run", str(write_yaml(tmp_path / "m.yaml", doc)), "-o", str(tmp_path / "m.h5")]) == 0
    )
    capsys.readouterr()


def test_run_warns_when_calibrated_rates_meet_another_model(tmp_path, ce_file, capsys):
    """Inherited calibrated barriers with a model they were not made for: one stderr line."""
    own = {  # FAST sets every calibrated rate; these the RP barrier and the coverage
        "run": {"duration_s": 0.2},
        "rp": {"e_rp_a_ev": 1.0},
        "passivation": {"ligand": {"base": "pristine", "theta": 0.5}},
    }
    inp = write_yaml(tmp_path / "k.yaml", kmc_input(ce_file, **own))
    assert main(["run", str(inp), "-o", str(tmp_path / "k.h5")]) == 0
    assert "calibrated for" not in capsys.readouterr().err
    doc = kmc_input(ce_file, **own)
    del doc["kinetics"]["e_rec_ev"]
    inp = write_yaml(tmp_path / "w.yaml", doc)
    assert main(["run", str(inp), "-o", str(tmp_path / "w.h5")]) == 0
    err = [line for line in capsys.readouterr().err.splitlines() if "calibrated for" in line]
    assert len(err) == 1
    assert "e_rec_ev" in err[0]
    assert "rp.e_rp_a_ev" not in err[0]
    assert "calibrated for fitted.ce" in err[0]
    inp = write_yaml(tmp_path / "l.yaml", kmc_input(ce_file, run={"duration_s": 0.2}))
    assert main(["run", str(inp), "-o", str(tmp_path / "l.h5")]) == 0
    err = [line for line in capsys.readouterr().err.splitlines() if "calibrated for" in line]
    assert len(err) == 1
    assert "rp.e_rp_a_ev, ligands.pristine.theta are calibrated" in err[0]


HOLLOWNESS = (
    "n_vac_interior",
    "n_vac_surface",
    "interior_vacancy_fraction",
    "interior_vacancy_fraction_by_depth",
    "envelope_edge_nm",
    "occupied_envelope_edge_nm",
)


@pytest.fixture(scope="module")
def porous_run(tmp_path_factory, ce_file):
    """A 7-site NC with 15 % vacancies, a snapshot every other frame, 2 ms.

    With the FAST barriers a vacancy hops about 40 times per ms, so the NC keeps interior
    vacancies for a few frames while the surface recedes and Cd leaves.
    """
    d = tmp_path_factory.mktemp("porous")
    doc = kmc_input(
        ce_file,
        system={"edge_nm": 4.2, "vacancy_fraction": 0.15},
        run={"duration_s": 0.002},
        output={"frame_interval_s": 0.0001, "snapshot_every_frames": 2},
    )
    out = d / "p.h5"
    driver.run_kmc(load(write_yaml(d / "p.yaml", doc)), out, progress=False)
    return out


def test_kmc_hollowness_trace_equals_its_recomputation_from_the_snapshots(porous_run):
    from segsim.invariants import check_result, recomputed_frames

    tr = hdf5.read_trace(porous_run)
    assert set(HOLLOWNESS) <= set(tr)
    assert tr["interior_vacancy_fraction_by_depth"].shape == (21, 4)
    assert tr["n_vac_interior"].min() > 0  # a porous NC: the check compares real numbers
    assert tr["cd_expelled"][-1] > 0  # and it changed during the run
    recomputed = recomputed_frames(porous_run)
    assert set(range(0, 21, 2)) <= set(recomputed)  # every frame with a snapshot
    for k, values in recomputed.items():
        assert tr["n_vac_interior"][k] == values["n_vac_interior"]
        assert tr["n_vac_surface"][k] == values["n_vac_surface"]
        np.testing.assert_allclose(
            tr["interior_vacancy_fraction_by_depth"][k],
            values["interior_vacancy_fraction_by_depth"],
            rtol=1e-12,
        )
        assert tr["envelope_edge_nm"][k] == pytest.approx(values["envelope_edge_nm"], rel=1e-12)
    np.testing.assert_allclose(
        tr["interior_vacancy_fraction"],
        tr["n_vac_interior"] / (tr["n_pb"] + tr["n_cd"] + tr["n_vac"]),
        rtol=1e-12,
    )
    assert check_result(porous_run) == []


def test_invariant_check_finds_a_tampered_trace(porous_run, tmp_path):
    import shutil

    import h5py

    from segsim.invariants import check_result

    bad = tmp_path / "bad.h5"
    shutil.copy(porous_run, bad)
    with h5py.File(bad, "a") as f:
        f["trace/n_vac_interior"][20] += 1  # frame 20 has a snapshot
        f["trace/cd_expelled"][3] += 1
        f["trace/envelope_edge_nm"][5] = 0.1
        beyond = int(np.flatnonzero(~f["lattice/in_nc"][:].astype(bool))[0])
        f["particles/b_sites/species/value"][4, beyond] = 0  # a Pb beyond the synthesised cube
    problems = check_result(bad)
    assert any(p.startswith("frame 20: n_vac_interior =") for p in problems)
    assert any("n_vac_interior + n_vac_surface != n_vac" in p for p in problems)
    assert any(p.startswith("frame 3: n_cd + cd_expelled") for p in problems)
    assert "frame 5: occupied_envelope_edge_nm > envelope_edge_nm" in problems
    assert any("sites beyond the synthesised cube are not outside" in p for p in problems)


def test_info_prints_the_hollowness_and_recomputes_it_for_old_files(porous_run, tmp_path, capsys):
    import shutil

    import h5py

    tr = hdf5.read_trace(porous_run)
    capsys.readouterr()
    assert main(["info", str(porous_run)]) == 0
    new = capsys.readouterr().out
    assert f"interior vacancy fraction {tr['interior_vacancy_fraction'][-1]:.4f}" in new
    assert f"envelope edge {tr['envelope_edge_nm'][-1]:.2f} nm" in new
    assert "interior vacancy fraction by depth (surface -> core)" in new
    assert "recomputed" not in new
    # A file written before the datasets existed: recomputed from the snapshots.
    old = tmp_path / "old.h5"
    shutil.copy(porous_run, old)
    with h5py.File(old, "a") as f:
        for name in HOLLOWNESS:
            del f[f"trace/{name}"]
    assert main(["info", str(old)]) == 0
    text = capsys.readouterr().out
    assert text.count("[recomputed from the snapshot]") == 2
    assert text.replace(" [recomputed from the snapshot]", "") == new.replace(
        str(porous_run), str(old)
    )
    assert main(["info", "--json", str(old)]) == 0
    s = json.loads(capsys.readouterr().out)
    assert s["hollowness_source"] == {"first": "snapshot", "last": "snapshot"}
    assert s["last"]["n_vac_interior"] == tr["n_vac_interior"][-1]
    # ... and without snapshots, n/a.
    with h5py.File(old, "a") as f:
        for name in ("step", "occupations"):
            f[f"snapshots/{name}"].resize(0, axis=0)
    assert main(["info", str(old)]) == 0
    text = capsys.readouterr().out
    assert text.count("interior vacancies, envelope edge: n/a") == 2
