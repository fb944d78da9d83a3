import dataclasses
from pathlib import Path

import numpy as np
import pytest
import yaml

from segsim.config import ConfigError
from segsim.params import ligands as passivation
from segsim.params.ligands import Ligand, expulsion_channel_factor, load_library, resolve_ligand

SIX = ["pristine", "cs_oleate", "cs_phace", "olabr", "pheabr", "ddabr"]


def _library_doc():
    return yaml.safe_load(passivation.DEFAULT_LIBRARY_PATH.read_text())


def _write(tmp_path, doc):
    p = tmp_path / "ligands.yaml"
    p.write_text(yaml.safe_dump(doc))
    return p


def _assert_one_line(err, source, key, fragment):
    msg = str(err.value)
    assert str(source) in msg
    assert key in msg
    assert fragment in msg
    assert "\n" not in msg
    assert err.value.key == key


def test_library_has_the_six_treatments():
    lib = load_library()
    assert list(lib) == SIX
    repo = Path(__file__).resolve().parents[2]
    assert repo / "potentials" / "ligands.yaml" == passivation.DEFAULT_LIBRARY_PATH
    for name, lig in lib.items():
        assert isinstance(lig, Ligand)
        assert lig.name == name
        assert 0.0 <= lig.theta <= 1.0
        assert lig.label
        assert "calibration" in lig.source
    thetas = {n: lib[n].theta for n in SIX}
    # every fitted value is the one `segsim calibrate` wrote (traceable to its command)
    fitted = yaml.safe_load(
        (repo / "studies/calibration_fitted/calibrated_fitted.yaml").read_text()
    )
    assert fitted["calibration"]["ensemble"]["model"] == "potentials/fitted.ce"
    for name, values in fitted["ligands"].items():
        for key, value in values.items():
            assert getattr(lib[name], key) == value, f"{name}.{key}"
    assert thetas["pristine"] == 0.50  # held: the pristine shift fixes E_exp(Cd) with it
    # the published efficacy order: ddabr > olabr ~ pheabr > carboxylates ~ pristine (the
    # carboxylates' coverages differ only within what loses all the Cd, ligands.yaml)
    assert thetas["ddabr"] > thetas["olabr"] == thetas["pheabr"]
    assert thetas["olabr"] > max(thetas["cs_oleate"], thetas["cs_phace"], thetas["pristine"])
    assert lib["pristine"].rp_barrier_shift_ev == 0.0
    assert lib["pristine"].treatment_duration_s == 0.0
    for name in SIX[1:]:
        assert lib[name].rp_barrier_shift_ev > 0.0
        assert lib[name].treatment_duration_s == 120.0


def test_library_is_frozen_and_calls_are_independent():
    lib = load_library()
    with pytest.raises(dataclasses.FrozenInstanceError):
        lib["ddabr"].theta = 0.1  # type: ignore[misc]
    lib.pop("ddabr")
    assert "ddabr" in load_library()


@pytest.mark.parametrize(
    ("mutate", "key", "fragment"),
    [
        (
            lambda d: d["ligands"]["ddabr"].__setitem__("theta", 1.2),
            "ligands.ddabr.theta",
            "[0, 1]",
        ),
        (
            lambda d: d["ligands"]["olabr"].__setitem__("theta", -0.1),
            "ligands.olabr.theta",
            "[0, 1]",
        ),
        (
            lambda d: d["ligands"]["olabr"].__setitem__("theta", "high"),
            "ligands.olabr.theta",
            "[0, 1]",
        ),
        (
            lambda d: d["ligands"]["olabr"].__setitem__("theta", True),
            "ligands.olabr.theta",
            "[0, 1]",
        ),
        (
            lambda d: d["ligands"]["pheabr"].__setitem__("colour", "red"),
            "ligands.pheabr.colour",
            "allowed keys",
        ),
        (lambda d: d["ligands"]["pheabr"].pop("theta"), "ligands.pheabr.theta", "missing"),
        (
            lambda d: d["ligands"]["cs_phace"].__setitem__("treatment_duration_s", -1),
            "ligands.cs_phace.treatment_duration_s",
            ">= 0",
        ),
        (
            lambda d: d["ligands"]["cs_phace"].__setitem__("rp_barrier_shift_ev", -0.1),
            "ligands.cs_phace.rp_barrier_shift_ev",
            ">= 0",
        ),
        (lambda d: d.__setitem__("version", 2), "version", "allowed keys"),
        (lambda d: d.__setitem__("ligands", {}), "ligands", "non-empty"),
    ],
)
def test_bad_library_is_one_line_config_error(tmp_path, mutate, key, fragment):
    doc = _library_doc()
    mutate(doc)
    path = _write(tmp_path, doc)
    with pytest.raises(ConfigError) as err:
        load_library(path)
    _assert_one_line(err, path, key, fragment)


def test_library_file_errors(tmp_path):
    with pytest.raises(ConfigError, match="file not found"):
        load_library(tmp_path / "none.yaml")


def test_resolve_library_name():
    lib = load_library()
    assert resolve_ligand("ddabr", lib, source="in.yaml", key="run.ligand") is lib["ddabr"]


def test_resolve_unknown_name_lists_allowed():
    lib = load_library()
    with pytest.raises(ConfigError) as err:
        resolve_ligand("oleic_acid", lib, source="in.yaml", key="run.ligand")
    _assert_one_line(err, "in.yaml", "run.ligand", "oleic_acid")
    for name in SIX:
        assert name in str(err.value)


def test_resolve_user_ligand():
    lib = load_library()
    lig = resolve_ligand(
        {"name": "my_shell", "theta": 0.9, "treatment_duration_s": 60},
        lib,
        source="in.yaml",
        key="run.ligand",
    )
    assert lig == Ligand(
        name="my_shell",
        label="my_shell",
        theta=0.9,
        treatment_duration_s=60.0,
        source="user-defined in in.yaml",
    )


def test_resolve_base_with_overrides():
    lib = load_library()
    plain = resolve_ligand({"base": "ddabr"}, lib, source="in.yaml", key="run.ligand")
    assert plain == lib["ddabr"]
    mod = resolve_ligand({"base": "ddabr", "theta": 0.99}, lib, source="in.yaml", key="ligand")
    assert mod.theta == 0.99
    assert mod.name == "ddabr_custom"
    assert mod.rp_barrier_shift_ev == lib["ddabr"].rp_barrier_shift_ev
    assert mod.treatment_duration_s == lib["ddabr"].treatment_duration_s
    assert "theta" in mod.source
    named = resolve_ligand(
        {"base": "olabr", "name": "olabr_short", "treatment_duration_s": 10},
        lib,
        source="in.yaml",
        key="ligand",
    )
    assert named.name == "olabr_short"
    assert named.theta == lib["olabr"].theta
    assert named.treatment_duration_s == 10.0


@pytest.mark.parametrize(
    ("spec", "key", "fragment"),
    [
        ({"name": "x", "theta": 1.5}, "run.ligand.theta", "[0, 1]"),
        ({"name": "x"}, "run.ligand.theta", "missing"),
        ({"theta": 0.5}, "run.ligand.name", "missing"),
        ({"name": "x", "theta": 0.5, "coverage": 1}, "run.ligand.coverage", "allowed keys"),
        ({"base": "nope", "theta": 0.5}, "run.ligand.base", "ddabr"),
        ({"base": "ddabr", "rp_barrier_shift_ev": "big"}, "run.ligand.rp_barrier_shift_ev", ">= 0"),
        ({"name": "", "theta": 0.5}, "run.ligand.name", "non-empty"),
        (["ddabr"], "run.ligand", "mapping"),
    ],
)
def test_resolve_bad_user_ligand(spec, key, fragment):
    lib = load_library()
    with pytest.raises(ConfigError) as err:
        resolve_ligand(spec, lib, source="in.yaml", key="run.ligand")
    _assert_one_line(err, "in.yaml", key, fragment)


def test_ligand_dataclass_validates():
    with pytest.raises(ValueError, match="theta"):
        Ligand(name="a", label="a", theta=1.01)
    with pytest.raises(ValueError, match="treatment_duration_s"):
        Ligand(name="a", label="a", theta=0.5, treatment_duration_s=-1.0)


def test_channel_factor_values():
    assert expulsion_channel_factor(0.5, 1) == pytest.approx(0.5)
    assert expulsion_channel_factor(0.5, 2) == pytest.approx(0.75)
    assert expulsion_channel_factor(0.5, 3) == pytest.approx(0.875)
    assert expulsion_channel_factor(0.999, 1) == pytest.approx(0.001)
    assert expulsion_channel_factor(0.985, 3) == pytest.approx(1 - 0.985**3)
    for theta in (0.0, 0.3, 1.0):
        assert expulsion_channel_factor(theta, 0) == 0.0  # interior: no exit channel
    assert expulsion_channel_factor(1.0, 3) == 0.0  # fully passivated
    assert expulsion_channel_factor(0.0, 1) == 1.0  # bare surface
    k = np.arange(7)
    f = expulsion_channel_factor(0.6, k)
    assert isinstance(f, np.ndarray)
    np.testing.assert_allclose(f, 1.0 - 0.6**k)
    assert np.all(np.diff(f) > 0)  # more outside neighbours, more channels
    assert isinstance(expulsion_channel_factor(0.6, 2), float)
    ddabr = load_library()["ddabr"]
    assert ddabr.channel_factor(1) == pytest.approx(1.0 - ddabr.theta)


@pytest.mark.parametrize(("theta", "k"), [(1.1, 1), (-0.1, 1), (0.5, 7), (0.5, -1), (0.5, 1.5)])
def test_channel_factor_rejects_bad_input(theta, k):
    with pytest.raises(ValueError):  # noqa: PT011
        expulsion_channel_factor(theta, k)


def test_modules_stay_light():
    import subprocess
    import sys

    code = (
        "import sys, segsim.optics, segsim.params.ligands, segsim.config; "
        "bad = [m for m in ('numba', 'h5py', 'icet') if m in sys.modules]; "
        "print(bad); sys.exit(1 if bad else 0)"
    )
    root = Path(__file__).resolve().parents[2]
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=root, capture_output=True, text=True, check=False
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
