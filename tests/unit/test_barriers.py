"""segsim barriers: path end points, a tiny NEB end to end, the table, and the KMC's barriers."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import yaml

from segsim import kinetics, species
from segsim.barriers.neb import NEBSettings, relax_positions, run_path
from segsim.barriers.paths import build_endpoints, parse_path_name, path_names
from segsim.barriers.runner import load_barrier_config, read_records
from segsim.barriers.table import build_table, committee, lattice_barriers
from segsim.cli import main
from segsim.config import ConfigError
from segsim.kernels import kmc as K
from segsim.params.files import DEFAULT_KINETICS, POTENTIALS_DIR
from segsim.training.calculators import make_calculator

A = 6.0


@pytest.fixture(scope="module")
def standin():
    return make_calculator("standin", {})[0]


# ------------------------------------------------------------------------------ paths
@pytest.mark.parametrize("name", path_names())
def test_every_path_has_consistent_end_points(name):
    """Same atoms in IS, FS, FS'; FS = IS with only M moved by the hop; neutral; Cd count."""
    spec = parse_path_name(name)
    ends = build_endpoints(spec, A, n_cells=3, n_edge=3)
    syms = sorted(ends.initial.get_chemical_symbols())
    assert syms == sorted(ends.final.get_chemical_symbols())
    assert syms == sorted(ends.canonical_final.get_chemical_symbols())
    charge = {"Cs": 1, "Pb": 2, "Cd": 2, "Br": -1}
    assert sum(charge[s] for s in syms) == 0
    d = ends.final.get_positions() - ends.initial.get_positions()
    if ends.initial.pbc.all():
        d -= np.round(d / A / 3) * A * 3  # wrapped coordinates
    moved = np.flatnonzero(np.linalg.norm(d, axis=1) > 1e-9)
    assert moved.tolist() == [ends.mover_index]
    assert np.allclose(d[ends.mover_index], ends.hop_vector_angstrom)
    assert math.isclose(np.linalg.norm(ends.hop_vector_angstrom), A)
    mover_symbol = ends.initial.get_chemical_symbols()[ends.mover_index]
    assert mover_symbol == {"pb": "Pb", "cd": "Cd"}[spec.mover]
    n_cd = syms.count("Cd") - (spec.mover == "cd")
    assert n_cd == spec.n_cd
    # the mover ends on the vacant B position: no other B atom there
    others = np.delete(ends.final.get_positions(), ends.mover_index, axis=0)
    gap = np.linalg.norm(others - ends.final.get_positions()[ends.mover_index], axis=1)
    if ends.initial.pbc.all():
        gap = np.linalg.norm(
            (others - ends.final.get_positions()[ends.mover_index] + 1.5 * A) % (3 * A) - 1.5 * A,
            axis=1,
        )
    assert gap.min() > 0.4 * A - 1e-9  # nearest neighbours of a B site are Br at a/2


def test_tilted_end_points_share_the_tilt():
    """With a tilt, IS and FS differ only by M's hop; FS' carries the same tilt pattern."""
    from segsim.training.tilt import glazer_tilt_displacements

    spec = parse_path_name("bulk_cd_open_1cd")
    flat = build_endpoints(spec, A, n_cells=4)
    tilted = build_endpoints(spec, A, n_cells=4, tilt_degrees=(9.0, 9.5))
    d = tilted.final.get_positions() - tilted.initial.get_positions()
    d -= np.round(d / (4 * A)) * 4 * A
    assert np.flatnonzero(np.linalg.norm(d, axis=1) > 1e-9).tolist() == [tilted.mover_index]
    shift = tilted.initial.get_positions() - flat.initial.get_positions()
    assert np.allclose(shift, glazer_tilt_displacements(flat.initial, 9.0, 9.5))
    assert np.abs(shift).max() > 0.3  # the Br moved
    with pytest.raises(ValueError, match="even"):
        build_endpoints(spec, A, n_cells=3, tilt_degrees=(9.0, 9.5))


def test_open_bulk_hop_crosses_the_vacant_bromide_site():
    """The open mechanism's straight path passes through an X site that holds no Br."""
    ends = build_endpoints(parse_path_name("bulk_pb_open_0cd"), A, n_cells=3)
    mid = ends.initial.get_positions()[ends.mover_index] + 0.5 * ends.hop_vector_angstrom
    br = ends.initial.get_positions()[np.array(ends.initial.get_chemical_symbols()) == "Br"]
    d = np.linalg.norm((br - mid + 1.5 * A) % (3 * A) - 1.5 * A, axis=1)
    assert d.min() > 0.6 * A
    closed = build_endpoints(parse_path_name("bulk_pb_closed_0cd"), A, n_cells=3)
    mid = closed.initial.get_positions()[closed.mover_index] + 0.5 * closed.hop_vector_angstrom
    br = closed.initial.get_positions()[np.array(closed.initial.get_chemical_symbols()) == "Br"]
    d = np.linalg.norm((br - mid + 1.5 * A) % (3 * A) - 1.5 * A, axis=1)
    assert d.min() < 1e-9  # the bridging Br sits on the straight path


@pytest.mark.parametrize("bad", ["bulk_pb_open_3cd", "bulk_zn_open_0cd", "nc_pb_vertex", "x"])
def test_unknown_path_names_are_refused(bad):
    with pytest.raises(ValueError, match="allowed"):
        parse_path_name(bad)


# ------------------------------------------------------------------------------ NEB
def test_climbing_image_matches_a_constrained_relaxation_at_the_midpoint(standin):
    """The slow twin: a symmetric hop's saddle is at the midpoint; fix M there, relax the rest.

    In a 2^3 cell the open hop is symmetric (IS and FS are mirror images), so the saddle lies
    on the mirror plane.  Relaxing every other atom with M held at the midpoint gives the
    saddle energy without any band; the climbing image must agree.
    """
    from ase.constraints import FixAtoms

    settings = NEBSettings(n_images=3, fmax_ev_per_angstrom=0.01, max_steps=600)
    ends = build_endpoints(parse_path_name("bulk_pb_open_0cd"), A, n_cells=2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        record, _images = run_path(ends, standin, settings)
    assert record["band_converged"]
    assert record["e_split_ev"] == pytest.approx(0.0, abs=1e-6)
    assert record["e_forward_ev"] == pytest.approx(record["e_backward_ev"], abs=1e-6)
    energies = np.array(record["band_energies_ev"])
    assert record["climbing_image"] == 2
    assert energies[2] == energies.max()
    assert record["e_forward_ev"] > 0.1
    # the climbing image holds M half-way (minimum image), not a lattice vector away
    assert record["mover_displacement_at_saddle_angstrom"] == pytest.approx(0.5 * A, abs=0.3)

    twin = ends.initial.copy()
    relax_positions(twin, standin, settings)  # the IS, relaxed
    e_is = twin.get_potential_energy()
    pos = twin.get_positions()
    pos[ends.mover_index] += 0.5 * ends.hop_vector_angstrom
    twin.set_positions(pos)
    twin.set_constraint(FixAtoms(indices=[ends.mover_index]))
    relax_positions(twin, standin, NEBSettings(relax_fmax_ev_per_angstrom=0.005))
    e_twin = twin.get_potential_energy() - e_is
    assert record["e_forward_ev"] == pytest.approx(e_twin, abs=0.02)
    # and the band is no shortcut: the unrelaxed straight path is higher
    straight = ends.initial.copy()
    pos = straight.get_positions()
    pos[ends.mover_index] += 0.5 * ends.hop_vector_angstrom
    straight.set_positions(pos)
    straight.calc = standin
    assert straight.get_potential_energy() - e_is > record["e_forward_ev"]


@pytest.mark.parametrize("name", ["nc_cd_face_sub", "nc_pb_face", "nc_cd_edge"])
def test_a_surface_path_freezes_exactly_the_far_field_in_both_end_states(name):
    """Frozen: every atom farther than the radius from the hop segment, nothing nearer; FS'
    (its own centred cluster) is moved into the IS's frame and each of its frozen atoms sits
    where an IS atom of the same element does."""
    radius = 8.0
    spec = parse_path_name(name)
    plain = build_endpoints(spec, A, n_edge=4)
    ends = build_endpoints(spec, A, n_edge=4, freeze_beyond_angstrom=radius)
    start = ends.initial.positions[ends.mover_index]
    seg = ends.hop_vector_angstrom
    t = np.clip((ends.initial.positions - start) @ seg / (seg @ seg), 0, 1)
    dist = np.linalg.norm(ends.initial.positions - start - t[:, None] * seg, axis=1)
    assert sorted(ends.frozen.tolist()) == np.flatnonzero(dist > radius).tolist()
    assert 0 < len(ends.initial) - ends.frozen.size < 120  # a local region moves
    j, i = ends.canonical_frozen.T
    assert np.allclose(ends.canonical_final.positions[j], ends.initial.positions[i], atol=1e-9)
    assert (ends.canonical_final.numbers[j] == ends.initial.numbers[i]).all()
    assert sorted(i.tolist()) == sorted(ends.frozen.tolist())
    # only a translation of FS': the same structure as without freezing
    shift = ends.canonical_final.positions - plain.canonical_final.positions
    assert np.allclose(shift, shift[0], atol=1e-9)
    assert ends.freeze_beyond_angstrom == radius
    assert plain.frozen.size == 0


def test_freezing_is_refused_where_it_means_nothing():
    with pytest.raises(ValueError, match="surface path"):
        build_endpoints(parse_path_name("bulk_pb_open_0cd"), A, freeze_beyond_angstrom=8.0)
    with pytest.raises(ValueError, match="lattice constant"):
        build_endpoints(parse_path_name("nc_pb_face"), A, n_edge=3, freeze_beyond_angstrom=3.0)


def test_a_frozen_far_field_stays_where_the_relaxed_is_has_it(standin):
    """The IS relaxes whole; FS, FS' and every image of the band hold the frozen atoms at
    the relaxed IS's positions; the record counts them; a radius beyond the NC freezes none
    and reproduces the free band exactly."""
    spec = parse_path_name("nc_cd_face_sub")
    settings = NEBSettings(n_images=3, fmax_ev_per_angstrom=0.05, max_steps=300)
    ends = build_endpoints(spec, A, n_edge=3, freeze_beyond_angstrom=7.0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rec, images = run_path(ends, standin, settings)
    assert rec["band_converged"]
    assert rec["frozen_atoms"] == ends.frozen.size > 0
    assert rec["freeze_beyond_angstrom"] == 7.0
    bias = rec["relax_fs_canonical"]["freeze_bias_ev"]
    assert bias >= -1e-6  # released from the constrained minimum: it can only go down
    assert bias == pytest.approx(
        rec["e_fs_canonical_ev"] - rec["relax_fs_canonical"]["released"]["energy_ev"]
    )
    ideal = ends.initial.positions[ends.frozen]
    relaxed = images[0].positions[ends.frozen]
    assert np.abs(relaxed - ideal).max() > 1e-3  # the far field relaxed with the IS
    for im in images[1:]:
        assert np.array_equal(im.positions[ends.frozen], relaxed)
    free = build_endpoints(spec, A, n_edge=3)
    huge = build_endpoints(spec, A, n_edge=3, freeze_beyond_angstrom=100.0)
    assert huge.frozen.size == 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        a, _ = run_path(free, standin, settings)
        b, _ = run_path(huge, standin, settings)
    assert a["band_energies_ev"] == b["band_energies_ev"]
    assert b["frozen_atoms"] == 0


def test_the_freezing_radius_is_part_of_a_surface_records_key_only(tmp_path):
    from dataclasses import replace

    from segsim.barriers.runner import record_key

    cfg = load_barrier_config(_write_input(tmp_path))
    frozen = replace(cfg, nc_freeze_beyond_angstrom=8.0)
    kind, settings = "standin", cfg.calculators["standin"]
    assert record_key(kind, settings, "bulk_pb_open_0cd", frozen) == record_key(
        kind, settings, "bulk_pb_open_0cd", cfg
    )
    assert record_key(kind, settings, "nc_pb_face", frozen) != record_key(
        kind, settings, "nc_pb_face", cfg
    )


def _write_input(tmp_path, **extra):
    body = {
        "calculators": {"standin": {}},
        "paths": ["bulk_pb_open_0cd", "bulk_cd_open_0cd"],
        "bulk_cells": 2,
        "nc_edge": 3,
        "neb": {"n_images": 3, "max_steps": 200, "fmax_ev_per_angstrom": 0.05},
        "output": "out",
        "table": {
            "output": "barriers.yaml",
            "kmc": {"e_rec_ev": {"value": 1.1, "source": "choice: no transition state"}},
        },
    }
    body.update(extra)
    p = tmp_path / "barriers_input.yaml"
    p.write_text(yaml.safe_dump({"barriers": body}))
    return p


def test_tiny_neb_end_to_end_resumes_and_writes_the_table(tmp_path, capsys):
    inp = _write_input(tmp_path)
    assert main(["barriers", str(inp), "-q"]) == 0
    records = read_records(tmp_path / "out" / "records.jsonl")
    assert [r["path"] for r in records] == ["bulk_pb_open_0cd", "bulk_cd_open_0cd"]
    for r in records:
        assert r["band_converged"]
        assert r["e_kra_ev"] > 0
        assert (tmp_path / "out" / r["band_file"]).is_file()
        assert r["provenance"]["kind"] == "standin"
    # a second run computes nothing: same records, nothing appended
    assert main(["barriers", str(inp), "-q"]) == 0
    assert read_records(tmp_path / "out" / "records.jsonl") == records
    assert main(["barriers", str(inp), "--table"]) == 0
    table = yaml.safe_load((tmp_path / "barriers.yaml").read_text())
    for mover in ("pb", "cd"):
        rec = next(r for r in records if r["path"] == f"bulk_{mover}_open_0cd")
        assert table["kmc"][f"e_kra_{mover}_ev"]["value"] == pytest.approx(
            rec["e_kra_ev"], abs=1e-3
        )
    assert table["kmc"]["e_rec_ev"]["value"] == 1.1
    assert "standin" in table["calculators"]
    # and a kinetics file can read its barriers from that table
    kin = yaml.safe_load(DEFAULT_KINETICS.read_text())
    for key, entry in kin["parameters"].items():
        if isinstance(entry, dict) and "table" in entry:
            kin["parameters"][key] = {"value": 1.3, "source": "estimate"}
    for key in ("e_kra_pb_ev", "e_kra_cd_ev", "e_rec_ev"):
        kin["parameters"][key] = {"table": "barriers.yaml", "source": "computed"}
    (tmp_path / "kinetics.yaml").write_text(yaml.safe_dump(kin))
    params = kinetics.load_defaults(tmp_path / "kinetics.yaml")
    assert params.e_kra_pb_ev == table["kmc"]["e_kra_pb_ev"]["value"]
    assert params.e_rec_ev == 1.1


def test_removal_reaction_energies_follow_their_definition(tmp_path, standin):
    inp = _write_input(tmp_path)
    assert main(["barriers", str(inp), "--reactions", "-q"]) == 0
    (rec,) = read_records(tmp_path / "out" / "reactions.jsonl")
    e = {k: v["energy_ev"] for k, v in rec["relaxations"].items()}
    mu = rec["mu_ev"]
    for where, v in rec["sites"].items():
        assert v["pb"] == pytest.approx(e[f"v_{where}"] + mu["pbbr2_csbr_rich"] - e["nc"], abs=1e-3)
        assert v["cd"] == pytest.approx(
            e[f"v_{where}"] + mu["cdbr2_bulk"] - e[f"cd_{where}"], abs=1e-3
        )
    assert set(rec["sites"]) == {"face", "edge", "corner"}


@pytest.mark.parametrize(
    ("edit", "key"),
    [
        ({"paths": ["bulk_pb_open_5cd"]}, "barriers.paths[0]"),
        ({"calculators": {"mace": {}}}, "barriers.calculators.mace"),
        ({"calculators": {"standin": {"bogus": 1}}}, "barriers.calculators.standin"),
        ({"vacuum_angstrom": float("nan")}, "barriers.vacuum_angstrom"),
        ({"neb": {"n_images": 0}}, "barriers.neb"),
        ({"neb": {"fmax_ev_per_angstrom": float("inf")}}, "barriers.neb"),
        ({"bulk_cells": 1}, "barriers.bulk_cells"),
        ({"colour": "red"}, "barriers.colour"),
        ({"tilt_degrees": [9.0, 40.0]}, "barriers.tilt_degrees"),
        ({"seed_bands_from": "mace"}, "barriers.seed_bands_from"),
        ({"tilt_degrees": [9.0, 9.5], "bulk_cells": 3}, "barriers.tilt_degrees"),
        ({"table": {"kmc": {"e_rec_ev": {"value": float("nan"), "source": "x"}}}}, "e_rec_ev"),
        ({"check": {"calculator": "standin", "images": ["ts"]}}, "barriers.check.images"),
        ({"neb": {"pre_relax_fmax_ev_per_angstrom": 0.01}}, "barriers.neb"),
        ({"nc_freeze_beyond_angstrom": 3.0}, "barriers.nc_freeze_beyond_angstrom"),
        ({"nc_freeze_beyond_angstrom": float("inf")}, "barriers.nc_freeze_beyond_angstrom"),
        ({"nc_freeze_beyond_angstrom": True}, "barriers.nc_freeze_beyond_angstrom"),
    ],
)
def test_bad_barrier_inputs_are_one_line_errors(tmp_path, capsys, edit, key):
    inp = _write_input(tmp_path, **edit)
    with pytest.raises(ConfigError, match=key.replace("[", r"\[").replace("]", r"\]")):
        load_barrier_config(inp)
    assert main(["barriers", str(inp)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0
    assert str(inp) in err
    assert not (tmp_path / "out").exists()


# ------------------------------------------------------------------------------ table
def _fake(calc, path, e_is, e_fs, e_can, e_sad):
    return {
        "calculator": calc, "path": path, "e_is_ev": e_is, "e_fs_ev": e_fs,
        "e_fs_canonical_ev": e_can, "e_saddle_ev": e_sad, "e_split_ev": e_fs - e_is,
        "e_kra_ev": e_sad - 0.5 * (e_is + e_can), "e_forward_ev": e_sad - e_is,
        "e_backward_ev": e_sad - e_fs, "de_lattice_ev": e_can - e_is, "band_converged": True,
    }  # fmt: skip


def test_table_flags_a_hop_that_ends_uphill():
    """A band whose elementary FS lies above its top image: the table gives by how much and
    the KRA measured from the FS; a band with its saddle above the FS gets neither."""
    recs = [
        _fake("a", "nc_pb_face_sub", 0.0, 0.65, 0.33, 0.61),  # FS 0.04 above the top image
        _fake("a", "nc_cd_face_sub", 0.0, 0.62, 0.19, 0.69),
    ]
    lat = lattice_barriers(recs)
    up = lat["nc_pb_face_sub"]["a"]
    assert up["fs_above_saddle_ev"] == pytest.approx(0.04)
    assert up["e_kra_via_fs_ev"] == pytest.approx(0.65 - 0.165)
    assert up["e_kra_lattice_ev"] == pytest.approx(0.61 - 0.165)  # the hop part, unchanged
    down = lat["nc_cd_face_sub"]["a"]
    assert down["fs_above_saddle_ev"] == 0.0
    assert "e_kra_via_fs_ev" not in down
    assert "e_kra_relaxed_band_ev" not in down  # no staged protocol, no relaxed band


def test_table_keeps_the_relaxed_band_of_a_band_whose_climb_failed():
    rec = dict(_fake("a", "nc_cd_face_sub", 0.0, 0.62, 0.19, 5.04), band_converged=False,
               band_aborted=True, relaxed_band_energies_ev=[0.0, 0.29, 0.69, 0.62])  # fmt: skip
    entry = lattice_barriers([rec])["nc_cd_face_sub"]["a"]
    assert entry["band_aborted"] is True
    assert entry["e_kra_relaxed_band_ev"] == pytest.approx(0.69 - 0.095)


def test_table_committee_and_arrangement_correction():
    recs = [
        _fake("a", "bulk_pb_open_0cd", 0.0, 0.1, 0.0, 1.2),  # split above: no correction
        _fake("b", "bulk_pb_open_0cd", 0.0, -0.2, 0.0, 1.0),  # split below: +0.2
        _fake("b", "bulk_pb_open_1cd", 0.0, -0.1, 0.2, 1.3),
        _fake("a", "bulk_pb_closed_0cd", 0.0, 0.5, 0.0, 2.0),
        _fake("b", "bulk_pb_closed_0cd", 0.0, 0.5, 0.0, 1.9),
    ]
    lat = lattice_barriers(recs)
    assert lat["bulk_pb_open_0cd"]["a"]["e_kra_lattice_ev"] == pytest.approx(1.2)
    assert lat["bulk_pb_open_0cd"]["b"]["e_kra_lattice_ev"] == pytest.approx(1.2)
    assert lat["bulk_pb_open_1cd"]["b"]["e_kra_lattice_ev"] == pytest.approx(1.2 + 0.2)
    table = build_table(recs, source="test")
    kra = table["kmc"]["e_kra_pb_ev"]
    assert kra["value"] == pytest.approx(1.2)
    assert kra["uncertainty_ev"] == pytest.approx(0.0)
    assert "bulk_pb_open_0cd" in kra["computed"]  # the lower mechanism
    assert committee([1.0, 1.4]) == {"mean": 1.2, "spread": 0.2, "n": 2}
    # an unconverged band does not vote, and a path without a converged band is never chosen
    broken = dict(_fake("a", "bulk_pb_open_2cd", 0.0, 0.0, 0.0, 10.0), band_converged=False)
    low = dict(_fake("a", "bulk_pb_closed_0cd", 0.0, 0.0, 0.0, 0.5), band_converged=False)
    t2 = build_table([*recs[:3], broken, low], source="test")
    assert t2["paths"]["bulk_pb_open_2cd"]["committee_e_kra_lattice_ev"] is None
    assert t2["kmc"]["e_kra_pb_ev"]["environment"]["2cd"] == "no converged band"
    assert "bulk_pb_open_0cd" in t2["kmc"]["e_kra_pb_ev"]["computed"]  # not the 0.5 eV one
    diverged = dict(_fake("c", "bulk_pb_open_0cd", 0.0, 0.0, 0.0, 0.3), band_converged=False)
    t3 = build_table([*recs, diverged], source="test")["kmc"]["e_kra_pb_ev"]
    assert set(t3["members"]) == {"a", "b"}
    assert t3["value"] == pytest.approx(1.2)
    with pytest.raises(ValueError, match="finite"):
        committee([1.0, float("nan")])


# ------------------------------------------------------------------------------ the KMC
def test_kmc_barriers_equal_the_shipped_table():
    """Every kinetics.yaml barrier that cites the table has the table's value, in the kernel."""
    table = yaml.safe_load((POTENTIALS_DIR / "barriers.yaml").read_text())
    kin = yaml.safe_load(DEFAULT_KINETICS.read_text())["parameters"]
    cited = {k for k, v in kin.items() if isinstance(v, dict) and "table" in v}
    assert {"e_kra_pb_ev", "e_kra_cd_ev", "e_exp_pb_ev", "e_exp_cd_ev", "e_rec_ev"} <= cited
    assert {f"de_kra_{m}_{n}cd_ev" for m in ("pb", "cd") for n in (1, 2)} <= cited
    params = kinetics.load_defaults()
    for key in cited:
        assert getattr(params, key) == table["kmc"][key]["value"], key
    # the computed KRA values are the committee of their path
    for mover in ("pb", "cd"):
        entry = table["kmc"][f"e_kra_{mover}_ev"]
        path = entry["computed"].split(":")[0].removeprefix("paths.")
        assert entry["value"] == table["paths"][path]["committee_e_kra_lattice_ev"]["mean"]
    kp = kinetics.parameter_vector(params, temperature_k=298.0, theta=0.0)
    assert kp[K.KP_EKRA] == params.e_kra_pb_ev
    assert kp[K.KP_EKRA + 1] == params.e_kra_cd_ev
    assert kp[K.KP_EEXP] == params.e_exp_pb_ev
    assert kp[K.KP_EEXP + 1] == params.e_exp_cd_ev
    assert kp[K.KP_EREC] == params.e_rec_ev
    for i, key in enumerate(("pb_1cd", "pb_2cd", "cd_1cd", "cd_2cd")):
        assert kp[K.KP_DKRA + i] == getattr(params, f"de_kra_{key}_ev")
        entry = table["kmc"][f"de_kra_{key}_ev"]
        if entry["members"]:  # computed: the committee of the per-calculator differences
            assert entry["value"] == pytest.approx(
                np.mean(list(entry["members"].values())), abs=1e-4
            )
        else:
            assert entry["value"] == 0.0


def test_kmc_hop_rate_in_pure_bulk_is_the_tables_barrier():
    """One V in periodic pure-Pb bulk: six hops with dE = 0, each nu exp(-E_KRA(Pb) / kT)."""
    from segsim.engine import KMCEngine, KMCState
    from segsim.lattice import build_periodic
    from segsim.models.cluster_expansion import ClusterExpansionModel

    params = kinetics.load_defaults()
    model = ClusterExpansionModel.from_file(POTENTIALS_DIR / "fitted.ce")
    lat = build_periodic(2 * int(np.ceil(model.reach)) + 4, 5.9)
    tables = model.compile(lat)
    occ = np.full(lat.n_sites, species.PB, dtype=species.OCC_DTYPE)
    occ[0] = species.VAC
    kp = kinetics.parameter_vector(params, temperature_k=298.0, theta=0.0)
    eng = KMCEngine(tables, lat, KMCState.initial(occ, tables), np.random.default_rng(0), kp)
    beta = 1.0 / (8.617333262e-5 * 298.0)
    expected = 6 * params.attempt_frequency_per_s * math.exp(-beta * params.e_kra_pb_ev)
    assert eng.total_rate_per_s == pytest.approx(expected, rel=1e-9)


def test_check_with_the_source_calculator_reproduces_the_band(tmp_path, capsys):
    """A check with the band's own calculator gives back the band's energies exactly."""
    from segsim.barriers.check import summarise_checks

    inp = _write_input(
        tmp_path, paths=["bulk_pb_open_0cd"],
        check={"calculator": "standin", "sources": ["standin"], "images": ["is", "ci"]},
    )  # fmt: skip
    assert main(["barriers", str(inp), "-q"]) == 0
    assert main(["barriers", str(inp), "--check", "-q"]) == 0
    # the IS and climbing image alone give the forward barrier, no split energy yet
    lines = read_records(tmp_path / "out" / "checks.jsonl")
    assert [x["image"] for x in lines] == ["is", "ci"]
    (partial,) = summarise_checks(lines).values()
    assert partial["e_split_ev"] is None
    assert partial["e_forward_ev"] > 0
    doc = yaml.safe_load(inp.read_text())
    doc["barriers"]["check"]["images"] = ["is", "ci", "fs"]
    inp.write_text(yaml.safe_dump(doc))
    assert main(["barriers", str(inp), "--check", "-q"]) == 0  # only the FS is new
    lines = read_records(tmp_path / "out" / "checks.jsonl")
    assert sorted(x["image"] for x in lines) == ["ci", "fs", "is"]
    for x in lines:
        assert x["energy_ev"] == pytest.approx(x["source_energy_ev"], abs=1e-8)
    (summary,) = summarise_checks(lines).values()
    assert summary["forward_difference_ev"] == pytest.approx(0.0, abs=1e-6)
    # the source's relaxed end points are minima of the same calculator; the saddle is not
    # held by forces alone (the band's force is projected), but the end points are
    fmax = summary["fmax_ev_per_angstrom"]
    assert set(fmax) == {"is", "ci", "fs"}
    assert fmax["is"] < 0.05
    assert fmax["fs"] < 0.05
    assert summary["e_forward_ev"] > 0
    # a rerun computes nothing
    assert main(["barriers", str(inp), "--check", "-q"]) == 0
    assert len(read_records(tmp_path / "out" / "checks.jsonl")) == 3
    # images by band index: the profile along the band; i0 is the IS (not computed again)
    doc["barriers"]["check"]["images"] = ["i0", "i1", "i2", "i3", "i4"]
    inp.write_text(yaml.safe_dump(doc))
    assert main(["barriers", str(inp), "--check", "-q"]) == 0
    lines = read_records(tmp_path / "out" / "checks.jsonl")
    (record,) = read_records(tmp_path / "out" / "records.jsonl")
    n_band = len(record["band_energies_ev"])
    assert len(lines) == n_band  # every geometry once, whatever it was asked as
    (summary,) = summarise_checks(lines).values()
    profile = summary["profile_ev"]
    assert [p[0] for p in profile] == list(range(n_band))
    e0 = record["band_energies_ev"][0]
    for i, check_e, source_e in profile:
        assert check_e == pytest.approx(source_e, abs=1e-4)
        assert source_e == pytest.approx(record["band_energies_ev"][i] - e0, abs=1e-4)
    doc["barriers"]["check"]["images"] = ["i99"]
    inp.write_text(yaml.safe_dump(doc))
    capsys.readouterr()
    assert main(["barriers", str(inp), "--check", "-q"]) != 0
    err = capsys.readouterr().err.strip()
    assert "barriers.check.images" in err
    assert "i0..i4" in err
    assert len(err.splitlines()) == 1


def test_a_seeded_band_reaches_the_same_saddle_in_fewer_steps(standin):
    """Starting from a finished band (another calculator's, here the same one) changes the
    start, not the saddle; a seed that does not fit the path is refused."""
    settings = NEBSettings(n_images=3, fmax_ev_per_angstrom=0.02, max_steps=400)
    ends = build_endpoints(parse_path_name("bulk_cd_open_0cd"), A, n_cells=2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        first, band = run_path(ends, standin, settings)
        again, _ = run_path(ends, standin, settings, seed_band=band)
    assert first["band_start"] == "idpp"
    assert again["band_start"] == "seed band"
    assert again["band_converged"]
    assert again["e_saddle_ev"] == pytest.approx(first["e_saddle_ev"], abs=0.01)
    assert again["band_steps"] < first["band_steps"]
    with pytest.raises(ValueError, match="does not match"):
        run_path(ends, standin, settings, seed_band=band[:-1])


def test_table_keeps_small_numbers_and_summarises_other_inputs_checks(tmp_path):
    """Settings such as eps_scf 1e-6 survive the table; checks of another input are included."""
    other = tmp_path / "other"
    other.mkdir()
    _write_input(other, paths=["bulk_pb_open_0cd"],
                 check={"calculator": "standin", "settings": {"cutoff_angstrom": 6.0}})  # fmt: skip
    inp_other = other / "barriers_input.yaml"
    assert main(["barriers", str(inp_other), "-q"]) == 0
    assert main(["barriers", str(inp_other), "--check", "-q"]) == 0
    inp = _write_input(tmp_path, paths=["bulk_pb_open_0cd"])
    doc = yaml.safe_load(inp.read_text())
    doc["barriers"]["table"]["checks_from"] = ["other/barriers_input.yaml"]
    doc["barriers"]["table"]["kmc"]["e_rec_ev"]["value"] = 1.0e-6
    inp.write_text(yaml.safe_dump(doc))
    assert main(["barriers", str(inp), "-q"]) == 0
    assert main(["barriers", str(inp), "--table"]) == 0
    table = yaml.safe_load((tmp_path / "barriers.yaml").read_text())
    assert table["kmc"]["e_rec_ev"]["value"] == 1.0e-6
    (band,) = table["checks"]["by_input"]["barriers_input.yaml"]["bands"].values()
    assert band["source_band_converged"] is True
    assert band["bulk_cells"] == 2
    assert band["e_forward_ev"] != band["source_e_forward_ev"]  # another cutoff, another energy


def test_staged_band_reaches_the_same_saddle_and_refuses_a_looser_pre_relaxation(standin):
    """The staged protocol (relax without climbing, then climb; small steps) changes how the
    band gets to its saddle, not which saddle; nonsense staging values are refused."""
    plain = NEBSettings(n_images=3, fmax_ev_per_angstrom=0.02, max_steps=400)
    staged = NEBSettings(
        n_images=3, fmax_ev_per_angstrom=0.02, max_steps=400,
        pre_relax_fmax_ev_per_angstrom=0.1, max_step_angstrom=0.05,
    )  # fmt: skip
    ends = build_endpoints(parse_path_name("bulk_cd_open_0cd"), A, n_cells=2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        first, _ = run_path(ends, standin, plain)
        second, _ = run_path(ends, standin, staged)
    assert second["band_converged"]
    assert second["settings"]["pre_relax_fmax_ev_per_angstrom"] == 0.1
    assert second["e_saddle_ev"] == pytest.approx(first["e_saddle_ev"], abs=0.01)
    # the climbing image sits at the top of the band, not a relaxed-band image beside it
    energies = np.array(second["band_energies_ev"])
    assert energies[second["climbing_image"]] == energies.max()
    # the relaxed band before the climb is kept (its ends are the relaxed end points)
    relaxed = np.array(second["relaxed_band_energies_ev"])
    assert relaxed.shape == energies.shape
    assert relaxed[0] == energies[0]
    assert relaxed[-1] == energies[-1]
    assert first["relaxed_band_energies_ev"] is None
    assert not second["band_aborted"]
    # a band whose image rises above abort_above_ev is stopped and marked, not run to the end
    guarded = NEBSettings(n_images=3, fmax_ev_per_angstrom=0.02, max_steps=400,
                          abort_above_ev=0.5 * second["e_forward_ev"])  # fmt: skip
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        stopped, _ = run_path(ends, standin, guarded)
    assert stopped["band_aborted"]
    assert not stopped["band_converged"]
    assert stopped["band_steps"] < 20
    for bad in (
        {"pre_relax_fmax_ev_per_angstrom": 0.01},  # looser than fmax is required
        {"max_step_angstrom": float("nan")},
        {"max_step_angstrom": -0.1},
        {"abort_above_ev": float("inf")},
    ):
        with pytest.raises(ValueError, match=r"pre_relax|max_step|abort_above"):
            NEBSettings(fmax_ev_per_angstrom=0.02, **bad)


def test_a_converged_band_stands_when_only_the_protocol_changes(tmp_path):
    """Reuse rule: a converged band is kept under another optimizer protocol; an unconverged
    one is retried; other images or a tighter force recompute; old keys stay valid."""
    from dataclasses import replace

    from segsim.barriers.runner import record_key, reusable_record

    inp = _write_input(tmp_path, paths=["bulk_cd_open_0cd"])
    assert main(["barriers", str(inp), "-q"]) == 0
    cfg = load_barrier_config(inp)
    records = read_records(tmp_path / "out" / "records.jsonl")
    (rec,) = records
    assert rec["band_converged"]
    # a record key made before the staged fields existed: the None fields are not in it
    assert record_key("standin", cfg.calculators["standin"], "bulk_cd_open_0cd", cfg) == rec["key"]
    staged = replace(cfg, neb=replace(cfg.neb, pre_relax_fmax_ev_per_angstrom=0.1,
                                      max_step_angstrom=0.1, max_steps=900))  # fmt: skip
    assert (
        record_key("standin", cfg.calculators["standin"], "bulk_cd_open_0cd", staged) != rec["key"]
    )
    assert reusable_record(staged, "standin", "bulk_cd_open_0cd", records) is rec
    unconverged = [dict(rec, band_converged=False)]
    assert reusable_record(staged, "standin", "bulk_cd_open_0cd", unconverged) is None
    assert reusable_record(cfg, "standin", "bulk_cd_open_0cd", unconverged) is not None
    for change in ({"n_images": 5}, {"fmax_ev_per_angstrom": 0.01}, {"spring_ev_per_angstrom2": 1}):
        other = replace(cfg, neb=replace(cfg.neb, **change))
        assert reusable_record(other, "standin", "bulk_cd_open_0cd", records) is None, change
    # and the command agrees: the staged input runs nothing new
    text = inp.read_text().replace("max_steps: 200", "max_steps: 900")
    inp.write_text(text)
    assert main(["barriers", str(inp), "-q"]) == 0
    assert read_records(tmp_path / "out" / "records.jsonl") == records


def test_the_shipped_converged_bands_stand_under_the_shipped_input():
    """The records of ``studies/barriers/data`` made before the staged protocol keep standing
    for the shipped input (so nothing computed is recomputed); its failed bands do not."""
    from segsim.barriers.runner import reusable_record

    cfg = load_barrier_config(POTENTIALS_DIR.parent / "studies" / "barriers" / "barriers.yaml")
    records = read_records(cfg.output / "records.jsonl")
    old = [r for r in records if r["settings"].get("pre_relax_fmax_ev_per_angstrom") is None]
    assert any(r["band_converged"] for r in old)
    assert any(not r["band_converged"] for r in old)
    for r in old:
        got = reusable_record(cfg, r["calculator"], r["path"], records)
        if r["band_converged"]:
            assert got is r
        else:
            assert got is None or NEBSettings(**got["settings"]) == cfg.neb


def test_table_shows_the_barriers_of_other_inputs(tmp_path):
    """``table.records_from``: another input's bands (e.g. tilted cells) appear in the table
    with their settings, and the KMC values stay this input's."""
    other = tmp_path / "other"
    other.mkdir()
    o_inp = _write_input(other, paths=["bulk_cd_open_0cd"])
    assert main(["barriers", str(o_inp), "-q"]) == 0
    inp = _write_input(tmp_path, paths=["bulk_cd_open_0cd"], neb={"n_images": 3, "max_steps": 200,
                       "fmax_ev_per_angstrom": 0.05, "spring_ev_per_angstrom2": 0.2})  # fmt: skip
    doc = yaml.safe_load(inp.read_text())
    doc["barriers"]["table"]["records_from"] = ["other/barriers_input.yaml"]
    inp.write_text(yaml.safe_dump(doc))
    assert main(["barriers", str(inp), "-q"]) == 0
    assert main(["barriers", str(inp), "--table"]) == 0
    table = yaml.safe_load((tmp_path / "barriers.yaml").read_text())
    (shown,) = table["other_inputs"]["by_input"].values()
    (o_rec,) = read_records(other / "out" / "records.jsonl")
    entry = shown["paths"]["bulk_cd_open_0cd"]
    assert entry["calculators"]["standin"]["e_kra_ev"] == pytest.approx(o_rec["e_kra_ev"], abs=1e-6)
    assert shown["neb"]["spring_ev_per_angstrom2"] == 0.1
    (rec,) = read_records(tmp_path / "out" / "records.jsonl")
    assert table["kmc"]["e_kra_cd_ev"]["value"] == pytest.approx(rec["e_kra_ev"], abs=1e-3)


def test_table_gives_each_kmc_barrier_its_physical_geometry_value_and_the_difference(tmp_path):
    """``table.physical_geometry``: when the KMC keeps this input's barriers, each hop entry
    also holds the physical geometry's value and the difference, and the table says why."""
    other = tmp_path / "other"
    other.mkdir()
    o_inp = _write_input(other, paths=["bulk_cd_open_0cd"],
                         calculators={"standin": {"cutoff_angstrom": 6.0}})  # fmt: skip
    assert main(["barriers", str(o_inp), "-q"]) == 0
    inp = _write_input(tmp_path)
    doc = yaml.safe_load(inp.read_text())
    doc["barriers"]["table"]["physical_geometry"] = {
        "input": "other/barriers_input.yaml", "why": "the KMC cannot run it yet",
    }  # fmt: skip
    inp.write_text(yaml.safe_dump(doc))
    assert main(["barriers", str(inp), "-q"]) == 0
    assert main(["barriers", str(inp), "--table"]) == 0
    table = yaml.safe_load((tmp_path / "barriers.yaml").read_text())
    assert table["physical_geometry"] == {
        "input": "barriers_input.yaml", "why": "the KMC cannot run it yet",
    }  # fmt: skip
    (o_rec,) = read_records(other / "out" / "records.jsonl")
    cd = table["kmc"]["e_kra_cd_ev"]
    phys = cd["physical_geometry"]
    assert phys["value"] == pytest.approx(o_rec["e_kra_ev"], abs=1e-3)
    assert phys["value"] != pytest.approx(cd["value"], abs=1e-3)  # another potential
    assert phys["kmc_minus_physical_ev"] == pytest.approx(cd["value"] - phys["value"], abs=2e-4)
    # the Pb hop was not computed in the other input: said so, no number
    assert table["kmc"]["e_kra_pb_ev"]["physical_geometry"]["value"] is None
    # the KMC's own value is unchanged by the comparison
    recs = {r["path"]: r for r in read_records(tmp_path / "out" / "records.jsonl")}
    assert cd["value"] == pytest.approx(recs["bulk_cd_open_0cd"]["e_kra_ev"], abs=1e-3)


@pytest.mark.parametrize(
    ("phys", "key"),
    [
        ({"input": "other.yaml"}, "barriers.table.physical_geometry"),
        ({"input": "", "why": "x"}, "barriers.table.physical_geometry.input"),
        ({"input": "other.yaml", "why": " "}, "barriers.table.physical_geometry.why"),
    ],
)
def test_physical_geometry_needs_an_input_and_a_reason(tmp_path, phys, key, capsys):
    inp = _write_input(tmp_path)
    doc = yaml.safe_load(inp.read_text())
    doc["barriers"]["table"]["physical_geometry"] = phys
    inp.write_text(yaml.safe_dump(doc))
    assert main(["barriers", str(inp), "--table"]) != 0
    err = capsys.readouterr().err
    assert key in err
    assert len(err.strip().splitlines()) == 1
