import dataclasses

import pytest
import yaml

from segsim.config import ConfigError, from_dict, load
from tests.helpers import small_input, write_yaml


@pytest.fixture
def model_file(tmp_path):
    p = tmp_path / "m.ce"
    p.write_text("placeholder")  # config only checks that the file exists
    return p


def test_valid_input_is_frozen_and_resolved(tmp_path, model_file):
    path = write_yaml(tmp_path / "in.yaml", small_input("m.ce"))
    cfg = load(path)
    assert cfg.model.path == model_file.resolve()
    assert cfg.system.x_cd == 0.25
    assert isinstance(cfg.run.n_steps, int)
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.run.seed = 3  # type: ignore[misc]
    again = from_dict(yaml.safe_load(cfg.to_yaml()), source="x")
    assert again.to_dict() == cfg.to_dict()


@pytest.mark.parametrize(
    ("section", "values", "key", "fragment"),
    [
        ("run", {"temperature_k": -5.0}, "run.temperature_k", "> 0"),
        ("run", {"temperature_k": "hot"}, "run.temperature_k", "number"),
        ("system", {"x_cd": 1.5}, "system.x_cd", "[0, 1]"),
        ("system", {"x_cd": -0.1}, "system.x_cd", "[0, 1]"),
        ("system", {"edge_nm": 0}, "system.edge_nm", "> 0"),
        ("system", {"colour": "blue"}, "system.colour", "allowed keys"),
        ("run", {"kind": "grand_canonical"}, "run.kind", "canonical_mc"),
        ("run", {"n_steps": 1.5}, "run.n_steps", "integer"),
        ("run", {"seed": True}, "run.seed", "integer"),
        ("model", {"path": "missing.ce"}, "model.path", "file not found"),
        ("model", {"kind": "neural"}, "model.kind", "cluster_expansion"),
        ("output", {"snapshot_interval_steps": 1500}, "output.snapshot_interval_steps", "multiple"),
        ("output", {"trace_interval_steps": 0}, "output.trace_interval_steps", "> 0"),
    ],
)
def test_bad_values_name_file_key_and_allowed(tmp_path, model_file, section, values, key, fragment):
    path = write_yaml(tmp_path / "bad.yaml", small_input("m.ce", **{section: values}))
    with pytest.raises(ConfigError) as err:
        load(path)
    msg = str(err.value)
    assert str(path) in msg
    assert key in msg
    assert fragment in msg
    assert "\n" not in msg


def test_missing_key_and_section(tmp_path, model_file):
    doc = small_input("m.ce")
    del doc["run"]["temperature_k"]
    with pytest.raises(ConfigError, match=r"run\.temperature_k: missing required key"):
        load(write_yaml(tmp_path / "a.yaml", doc))
    doc = small_input("m.ce")
    del doc["output"]
    with pytest.raises(ConfigError, match="output: missing section"):
        load(write_yaml(tmp_path / "b.yaml", doc))


def test_unknown_section_and_not_a_mapping(tmp_path, model_file):
    doc = small_input("m.ce")
    doc["extra"] = {}
    with pytest.raises(ConfigError, match="unknown section"):
        load(write_yaml(tmp_path / "a.yaml", doc))
    p = tmp_path / "list.yaml"
    p.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="mapping"):
        load(p)


def test_unreadable_yaml(tmp_path):
    p = tmp_path / "broken.yaml"
    p.write_text("system: {edge_nm: 3\nrun: [\n")
    with pytest.raises(ConfigError, match=r"not valid YAML at line \d+"):
        load(p)
    with pytest.raises(ConfigError, match="file not found"):
        load(tmp_path / "nope.yaml")


def _train_doc():
    from pathlib import Path

    import yaml as _yaml

    root = Path(__file__).resolve().parents[2]
    return _yaml.safe_load((root / "inputs" / "train.yaml").read_text())


def test_train_input_loads_with_lists_and_paths(tmp_path):
    from segsim.config import TrainConfig, load_any

    cfg = load_any(write_yaml(tmp_path / "t.yaml", _train_doc()))
    assert isinstance(cfg, TrainConfig)
    assert cfg.structures.nc_edges == (3, 4, 5)
    assert cfg.fit.cutoff_candidates[0] == (6.0,)
    assert cfg.database == (tmp_path / "../potentials/training.db").resolve()
    assert cfg.calculator.settings == {}
    assert cfg.fit.mc_validation == ("bulk4", "bulk4_x0.5", "nc6")
    assert cfg.fit.mc_rounds == 0
    doc = _train_doc()
    del doc["fit"]["mc_validation"]
    assert load_any(write_yaml(tmp_path / "n.yaml", doc)).fit.mc_validation == ()
    doc["fit"]["mc_rounds"] = 2  # rounds of what?
    with pytest.raises(ConfigError, match=r"fit\.mc_rounds: needs the cells of fit\.mc_validation"):
        load_any(write_yaml(tmp_path / "n.yaml", doc))
    doc = _train_doc()
    doc["fit"]["mc_validation"] = ["bulk4", "bulk4_x0.5", "nc6"]
    cfg = load_any(write_yaml(tmp_path / "v.yaml", doc))
    assert cfg.fit.mc_validation == ("bulk4", "bulk4_x0.5", "nc6")


def test_train_never_writes_into_the_shipped_data_folder(tmp_path):
    from segsim.config import load_train
    from segsim.params.files import POTENTIALS_DIR

    doc = _train_doc()
    assert load_train(write_yaml(tmp_path / "a.yaml", doc)).output_dir != POTENTIALS_DIR
    doc["paths"]["output_dir"] = str(POTENTIALS_DIR)
    with pytest.raises(ConfigError, match=r"paths\.output_dir: must not be the shipped data") as e:
        load_train(write_yaml(tmp_path / "b.yaml", doc))
    assert "\n" not in str(e.value)


def test_train_surface_pit_edges_need_four_sites_per_edge(tmp_path):
    from segsim.config import load_any

    doc = _train_doc()
    del doc["structures"]["surface_pit_edges"]  # off unless asked for
    assert load_any(write_yaml(tmp_path / "a.yaml", doc)).structures.surface_pit_edges == ()
    doc["structures"]["surface_pit_edges"] = [4, 5]
    assert load_any(write_yaml(tmp_path / "b.yaml", doc)).structures.surface_pit_edges == (4, 5)
    doc["structures"]["surface_pit_edges"] = [3]
    with pytest.raises(ConfigError, match=r"structures\.surface_pit_edges: must be >= 4 \(got 3\)"):
        load_any(write_yaml(tmp_path / "c.yaml", doc))


def test_train_noise_weights_come_in_pairs(tmp_path):
    from segsim.config import load_any

    doc = _train_doc()
    del doc["fit"]["noise_nc_ev"], doc["fit"]["noise_bulk_ev"]  # off unless asked for
    assert load_any(write_yaml(tmp_path / "a.yaml", doc)).fit.structure_noise_ev is None
    doc["fit"].update(noise_nc_ev=0.12, noise_bulk_ev=0.03)
    assert load_any(write_yaml(tmp_path / "b.yaml", doc)).fit.structure_noise_ev == (0.12, 0.03)
    doc["fit"]["noise_bulk_ev"] = None  # one without the other
    with pytest.raises(ConfigError, match=r"fit\.noise_bulk_ev: must be set with the other"):
        load_any(write_yaml(tmp_path / "c.yaml", doc))
    doc["fit"]["noise_bulk_ev"] = -0.01
    with pytest.raises(ConfigError, match=r"fit\.noise_bulk_ev"):
        load_any(write_yaml(tmp_path / "d.yaml", doc))


def test_train_vacancy_pair_cutoff_needs_a_separate_vacancy(tmp_path):
    from segsim.config import load_any

    doc = _train_doc()
    assert load_any(write_yaml(tmp_path / "a.yaml", doc)).fit.vacancy_pair_cutoff_angstrom == 6.0
    del doc["fit"]["vacancy_pair_cutoff_angstrom"]  # off unless asked for
    assert load_any(write_yaml(tmp_path / "b.yaml", doc)).fit.vacancy_pair_cutoff_angstrom is None
    doc["fit"].update(vacancy_pair_cutoff_angstrom=6.0, separate_vacancy=False)
    with pytest.raises(
        ConfigError, match=r"fit\.vacancy_pair_cutoff_angstrom: needs fit\.separate_vacancy"
    ):
        load_any(write_yaml(tmp_path / "c.yaml", doc))
    doc["fit"].update(vacancy_pair_cutoff_angstrom=-1.0, separate_vacancy=True)
    with pytest.raises(ConfigError, match=r"fit\.vacancy_pair_cutoff_angstrom"):
        load_any(write_yaml(tmp_path / "d.yaml", doc))


def test_train_vacancy_pair_partners_and_structure_weights(tmp_path):
    from segsim.config import load_any

    doc = _train_doc()
    f = load_any(write_yaml(tmp_path / "a.yaml", doc)).fit
    assert f.vacancy_pair_partners == ("Cd", "V", "X")  # the default: every partner
    assert f.structure_weights == {}
    doc["fit"].update(
        vacancy_pair_partners=["Cd", "V"],
        structure_weights={"nc4_x0_v4-*": 0, "nc*_v2-*": 2.5},
    )
    f = load_any(write_yaml(tmp_path / "b.yaml", doc)).fit
    assert f.vacancy_pair_partners == ("Cd", "V")
    assert f.structure_weights == {"nc4_x0_v4-*": 0.0, "nc*_v2-*": 2.5}
    # the file's order is kept (the first matching pattern decides); write_yaml sorts keys
    text = (tmp_path / "b.yaml").read_text()
    sorted_pair = "    nc*_v2-*: 2.5\n    nc4_x0_v4-*: 0\n"
    assert sorted_pair in text
    reordered = text.replace(sorted_pair, "    nc4_x0_v4-*: 0\n    nc*_v2-*: 2.5\n")
    (tmp_path / "b2.yaml").write_text(reordered)
    assert list(load_any(tmp_path / "b2.yaml").fit.structure_weights) == [
        "nc4_x0_v4-*",
        "nc*_v2-*",
    ]
    for value, needle in ((["Cd", "Pb"], "among"), (["V", "V"], "distinct")):
        doc["fit"]["vacancy_pair_partners"] = value
        with pytest.raises(ConfigError, match=rf"fit\.vacancy_pair_partners: .*{needle}"):
            load_any(write_yaml(tmp_path / "c.yaml", doc))
    doc["fit"].update(vacancy_pair_partners=["V"], vacancy_pair_cutoff_angstrom=None)
    with pytest.raises(
        ConfigError, match=r"fit\.vacancy_pair_partners: needs fit\.vacancy_pair_cutoff"
    ):
        load_any(write_yaml(tmp_path / "d.yaml", doc))
    doc["fit"].update(vacancy_pair_partners=["V"], vacancy_pair_cutoff_angstrom=6.0)
    for weights in ({"nc4_*": -1.0}, {"nc4_*": "x"}, {"nc4_*": True}):
        doc["fit"]["structure_weights"] = weights
        with pytest.raises(ConfigError, match=r"fit\.structure_weights: the factor of 'nc4_\*'"):
            load_any(write_yaml(tmp_path / "e.yaml", doc))


@pytest.mark.parametrize(
    ("section", "key", "value", "needle"),
    [
        ("calculator", "kind", "vasp", "calculator.kind: must be one of"),
        ("fit", "fit_methods", ["least-squares", "magic"], "fit.fit_methods: must be among"),
        (
            "fit",
            "cutoff_candidates",
            [[6.0], ["far"]],
            "fit.cutoff_candidates[1][0]: must be a number",
        ),
        ("fit", "cutoff_candidates", [], "fit.cutoff_candidates: must be a non-empty list"),
        ("structures", "nc_edges", [1, 3], "structures.nc_edges: must be >= 2"),
        ("structures", "compositions", [0.1, 1.5], "structures.compositions: must be in [0, 1]"),
        ("calculator", "optimizer", "LBFGS", "calculator.optimizer: must be one of"),
        ("fit", "mc_validation", ["bulk4", "slab3"], "fit.mc_validation: entries must be"),
        ("fit", "mc_validation", ["nc6", "nc6"], "fit.mc_validation: entries must be distinct"),
        ("fit", "mc_validation", ["bulk4_x1.5"], "fit.mc_validation: entries must be"),
        ("fit", "mc_validation_x", 1.2, "fit.mc_validation_x: must be in [0, 1]"),
    ],
)
def test_bad_train_input(tmp_path, section, key, value, needle):
    from segsim.config import load_train

    doc = _train_doc()
    doc[section][key] = value
    path = write_yaml(tmp_path / "t.yaml", doc)
    with pytest.raises(ConfigError) as err:
        load_train(path)
    assert needle in str(err.value)
    assert str(path) in str(err.value)


def test_kinetics_defaults_file_and_the_later_recession_share(tmp_path):
    from segsim.config import DEFAULT_KINETICS, load_kinetics_defaults

    shipped = load_kinetics_defaults(DEFAULT_KINETICS)
    assert shipped["bep_alpha_recession"] == 0.5  # KRA-type surface exchange (docs/model.md)
    assert shipped["delta_mu_csbr_ev"] == 0.0  # CsBr-saturated solution
    doc = yaml.safe_load(DEFAULT_KINETICS.read_text())
    # the computed barriers are read from the table next to the file (issue 27)
    (tmp_path / "barriers.yaml").write_text((DEFAULT_KINETICS.parent / "barriers.yaml").read_text())
    for later in ("bep_alpha_recession", "delta_mu_csbr_ev"):  # a file written before them
        del doc["parameters"][later]
    older = load_kinetics_defaults(write_yaml(tmp_path / "old.yaml", doc))
    assert older == shipped
    for bad in (0.1, float("-inf"), float("nan")):  # supersaturated CsBr; not finite
        doc["parameters"]["delta_mu_csbr_ev"] = bad
        with pytest.raises(ConfigError, match=r"delta_mu_csbr_ev: must be (a )?finite"):
            load_kinetics_defaults(write_yaml(tmp_path / "super.yaml", doc))
    del doc["parameters"]["delta_mu_csbr_ev"]
    doc["parameters"]["bep_alpha_recession"] = 1.5
    path = write_yaml(tmp_path / "bad.yaml", doc)
    with pytest.raises(ConfigError) as err:
        load_kinetics_defaults(path)
    assert str(path) in str(err.value)
    assert "parameters.bep_alpha_recession: must be in [0, 1]" in str(err.value)
    del doc["parameters"]["e_rec_ev"]  # a parameter without a default stays required
    with pytest.raises(ConfigError, match="e_rec_ev"):
        load_kinetics_defaults(write_yaml(tmp_path / "bad2.yaml", doc))


def test_train_vacancy_cluster_terms(tmp_path):
    from segsim.config import load_any

    doc = _train_doc()
    assert load_any(write_yaml(tmp_path / "a.yaml", doc)).fit.vacancy_cluster_terms is None
    doc["fit"]["vacancy_cluster_terms"] = ["V-V-V", "X-V-V"]
    f = load_any(write_yaml(tmp_path / "b.yaml", doc)).fit
    assert f.vacancy_cluster_terms == ("V-V-V", "X-V-V")
    for terms, needle in (
        (["V-V"], "three or more sites"),
        (["Pb-V-V"], "species must be among"),
        (["Cd-Cd-X"], "needs a vacancy"),
        (["V-V-X", "X-V-V"], "distinct"),
    ):
        doc["fit"]["vacancy_cluster_terms"] = terms
        with pytest.raises(ConfigError, match=rf"fit\.vacancy_cluster_terms: .*{needle}"):
            load_any(write_yaml(tmp_path / "c.yaml", doc))
    # a 4-site term needs a candidate with quadruplets; train.yaml has triplets at most
    doc["fit"]["vacancy_cluster_terms"] = ["V-V-V-V"]
    with pytest.raises(ConfigError, match=r"fit\.vacancy_cluster_terms: a term of 4 sites"):
        load_any(write_yaml(tmp_path / "d.yaml", doc))
    doc["fit"]["cutoff_candidates"] = [[10.2, 8.4, 8.4]]
    assert load_any(write_yaml(tmp_path / "e.yaml", doc)).fit.vacancy_cluster_terms == ("V-V-V-V",)
    doc["fit"]["separate_vacancy"] = False
    doc["fit"]["vacancy_pair_cutoff_angstrom"] = None
    with pytest.raises(ConfigError, match=r"fit\.vacancy_cluster_terms: needs fit\.separate"):
        load_any(write_yaml(tmp_path / "f.yaml", doc))
