"""A KMC run is warned when it takes rates calibrated for another energy model."""

from __future__ import annotations

import dataclasses
import shutil

from segsim import kinetics
from segsim.params.files import POTENTIALS_DIR
from segsim.params.ligands import load_library
from segsim.params.rp import load_rp_defaults

CALIBRATED = {"e_exp_cd_ev", "e_rec_ev"}  # E_KRA is computed since issue 27


def test_shipped_kinetics_name_their_model_and_calibrated_keys():
    model, keys = kinetics.calibration_of()
    assert model == (POTENTIALS_DIR / "fitted.ce").resolve()
    assert set(keys) == CALIBRATED  # literature and estimate values are not listed


def test_warning_only_for_another_model_with_inherited_calibrated_values(tmp_path):
    assert kinetics.calibration_warning(POTENTIALS_DIR / "fitted.ce") is None
    copy = tmp_path / "copy.ce"
    shutil.copyfile(POTENTIALS_DIR / "fitted.ce", copy)
    assert kinetics.calibration_warning(copy) is None  # same bytes, same model

    other = POTENTIALS_DIR / "provisional.ce"
    text = kinetics.calibration_warning(other)
    assert text is not None
    assert "\n" not in text
    assert all(k in text for k in CALIBRATED)
    assert "calibrated for fitted.ce, not for provisional.ce" in text

    defaults = kinetics.load_defaults()
    mine = dataclasses.replace(
        defaults, **{k: getattr(defaults, k) + 0.01 for k in CALIBRATED - {"e_rec_ev"}}
    )
    text = kinetics.calibration_warning(other, mine)
    assert text is not None
    assert "e_rec_ev" in text
    assert "e_exp_cd_ev" not in text
    mine = dataclasses.replace(mine, e_rec_ev=defaults.e_rec_ev + 0.01)
    text = kinetics.calibration_warning(other, mine)
    assert text is not None
    assert "e_rec_ev" not in text
    assert "rp.e_rp_a_ev" in text  # the RP barrier and the coverages are calibrated too
    assert "ligand coverages and RP shifts of ligands.yaml" in text  # the whole library

    rp = load_rp_defaults()[0]
    ddabr = load_library()["ddabr"]
    text = kinetics.calibration_warning(other, mine, rp=rp, ligands=[ddabr])
    assert text is not None
    assert "ligands.ddabr.theta" in text
    assert "ligands.ddabr.rp_barrier_shift_ev" in text
    my_rp = dataclasses.replace(rp, e_rp_a_ev=rp.e_rp_a_ev + 0.01)
    my_ddabr = dataclasses.replace(ddabr, theta=0.5, rp_barrier_shift_ev=0.0)
    text = kinetics.calibration_warning(other, mine, rp=my_rp, ligands=[ddabr])
    assert text is not None
    assert "rp.e_rp_a_ev" not in text
    assert kinetics.calibration_warning(other, mine, rp=my_rp, ligands=[my_ddabr]) is None


def test_inherited_calibration_names_only_calibrated_values():
    kept = kinetics.inherited_calibration()
    assert "rp.e_rp_a_ev" in kept
    assert not any(k.startswith("rp.") and k != "rp.e_rp_a_ev" for k in kept)  # estimates
    library = load_library()
    assert {f"ligands.{n}.theta" for n in library} <= set(kept)
    assert "ligands.pristine.rp_barrier_shift_ev" not in kept  # no treatment, nothing fitted
    assert "ligands.ddabr.rp_barrier_shift_ev" in kept
    custom = dataclasses.replace(library["ddabr"], name="mine")  # not a library ligand
    assert not any("ligands." in k for k in kinetics.inherited_calibration(None, [custom]))


def test_defaults_file_without_a_model_gives_no_warning(tmp_path):
    src = (POTENTIALS_DIR / "kinetics.yaml").read_text()
    start, end = src.index("calibrated_with:"), src.index("parameters:")
    path = tmp_path / "k.yaml"
    path.write_text(src[:start] + src[end:])
    assert kinetics.calibration_of(path)[0] is None
    assert kinetics.calibration_warning(POTENTIALS_DIR / "provisional.ce", None, path) is None


def test_shipped_rates_and_rp_barrier_are_the_written_calibration():
    """kinetics.yaml and rp.yaml carry the values `segsim calibrate` wrote, nothing retyped."""
    import yaml

    path = POTENTIALS_DIR.parent / "studies/calibration_fitted/calibrated_fitted.yaml"
    fitted = yaml.safe_load(path.read_text())
    assert (POTENTIALS_DIR.parent / fitted["calibration"]["ensemble"]["model"]).resolve() == (
        kinetics.calibration_of()[0]
    )
    defaults = kinetics.load_defaults()
    for key, value in fitted["kinetics"].items():
        assert getattr(defaults, key) == value, key
    rp = load_rp_defaults()[0]
    for key, value in fitted["rp"].items():
        assert getattr(rp, key) == value, key
