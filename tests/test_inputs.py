"""Every shipped input file validates (and names an existing model)."""

from pathlib import Path

import pytest

from segsim.config import load

INPUTS = sorted((Path(__file__).resolve().parent.parent / "inputs").glob("*.yaml"))


def test_there_are_inputs():
    assert any(p.name == "quickstart.yaml" for p in INPUTS)


@pytest.mark.parametrize("path", INPUTS, ids=[p.name for p in INPUTS])
def test_input_validates(path):
    cfg = load(path)
    assert cfg.model.path.is_file()
    assert cfg.run.n_steps >= 0
