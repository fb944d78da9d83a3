"""The MC-validation study command (studies/mc_validation): any CE file against a reference."""

from __future__ import annotations

import pytest

from studies.mc_validation import mc_validation as study


def test_module_command_validates_any_ce_file(tmp_path, capsys):
    """``python -m studies.mc_validation.mc_validation``: the provisional CE against the stand-in."""
    import yaml

    from segsim.params.files import POTENTIALS_DIR
    from segsim.training.reference import load_references

    doc = {
        "structures": {"nc_edges": [3], "compositions": [0.25]},
        "calculator": {"kind": "standin", "max_steps": 5},
        "fit": {
            "cutoff_candidates": [[6.0]],
            "fit_methods": ["least-squares"],
            "mc_validation_sweeps": 20,
        },
        "paths": {"database": "refs.db", "output_dir": "out"},
    }
    cfg = tmp_path / "train.yaml"
    cfg.write_text(yaml.safe_dump(doc))
    db, out = tmp_path / "extra.db", tmp_path / "val.md"
    ce = str(POTENTIALS_DIR / "provisional.ce")
    argv = [ce, "--config", str(cfg), "--cells", "bulk3", "nc3", "--database", str(db)]
    assert study.main([*argv, "--out", str(out)]) == 0
    recs = load_references(db)
    assert len(recs) == 4
    text = out.read_text()
    assert "| `bulk3_x0.25` | 27 |" in text
    assert "| `nc3_x0.25` | 27 |" in text
    assert "not computed" not in text
    with pytest.raises(SystemExit):
        study.main([ce, "--config", str(cfg), "--cells", "slab4"])
    assert "--cells: entries must be" in capsys.readouterr().err
