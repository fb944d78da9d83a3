"""A KMC run is warned when it takes rates calibrated for another energy model."""

from __future__ import annotations

import dataclasses
import shutil

from segsim import kinetics
from segsim.params.files import POTENTIALS_DIR

CALIBRATED = {"e_kra_pb_ev", "e_kra_cd_ev", "e_exp_cd_ev", "e_rec_ev"}


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
    assert kinetics.calibration_warning(other, mine) is None  # the input set them all


def test_defaults_file_without_a_model_gives_no_warning(tmp_path):
    src = (POTENTIALS_DIR / "kinetics.yaml").read_text()
    start, end = src.index("calibrated_with:"), src.index("parameters:")
    path = tmp_path / "k.yaml"
    path.write_text(src[:start] + src[end:])
    assert kinetics.calibration_of(path)[0] is None
    assert kinetics.calibration_warning(POTENTIALS_DIR / "provisional.ce", None, path) is None
