"""Every shipped input file validates (and names an existing model)."""

from pathlib import Path

import pytest

from segsim.config import SimulationConfig, TrainConfig, load_any

INPUTS = sorted((Path(__file__).resolve().parent.parent / "inputs").glob("*.yaml"))


def test_there_are_inputs():
    assert any(p.name == "quickstart.yaml" for p in INPUTS)


@pytest.mark.parametrize("path", INPUTS, ids=[p.name for p in INPUTS])
def test_input_validates(path):
    cfg = load_any(path)
    if isinstance(cfg, SimulationConfig):
        assert cfg.model.path.is_file()
        if cfg.run.kind == "kmc":
            assert cfg.run.duration_s > 0
            assert cfg.kinetics is not None
            assert 0.0 <= cfg.passivation.ligand.theta <= 1.0
            # The resolved configuration stored in result files reads back identically.
            from segsim.config import loads_resolved

            assert loads_resolved(cfg.to_yaml(), source="x").to_dict() == cfg.to_dict()
        else:
            assert cfg.run.n_steps >= 0
    else:
        assert isinstance(cfg, TrainConfig)
        potentials = Path(__file__).resolve().parent.parent / "potentials"
        assert not cfg.output_dir.is_relative_to(potentials)  # a fit never lands in potentials/
        assert cfg.database.parent == potentials
        assert cfg.fit.cutoff_candidates


def test_cli_validate_accepts_every_shipped_input(capsys):
    from segsim.cli import main

    assert main(["validate", *map(str, INPUTS)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert len(out) == len(INPUTS)
    assert all(": ok (" in line for line in out)
