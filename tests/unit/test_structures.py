"""Tests of the training-set structure generation (segsim.training.structures)."""

import json
from collections import Counter

import numpy as np
import pytest
from ase import Atoms

from segsim import atomistic, species
from segsim.lattice import build_cube
from segsim.training import configurations
from segsim.training import structures as st

A = 5.87


@pytest.fixture(scope="module")
def default_set():
    return st.build_training_set()


@pytest.fixture(scope="module")
def by_name(default_set):
    return {s.name: s for s in default_set}


def _same(s1, s2):
    assert s1.name == s2.name
    assert s1.kind == s2.kind
    assert np.array_equal(s1.atoms.numbers, s2.atoms.numbers)
    assert np.allclose(s1.atoms.positions, s2.atoms.positions)
    assert (s1.occupations is None) == (s2.occupations is None)
    if s1.occupations is not None:
        assert np.array_equal(s1.occupations, s2.occupations)
    assert json.dumps(s1.tags, sort_keys=True) == json.dumps(s2.tags, sort_keys=True)


def test_default_set_composition(default_set):
    kinds = Counter(s.kind for s in default_set)
    assert kinds == {"nc": 37, "nc_vacancy": 12 + 2 + 2 + 3, "bulk": 9, "nc_rp": 6, "ref_csbr": 2}
    names = [s.name for s in default_set]
    assert len(set(names)) == len(names)
    assert max(len(s.atoms) for s in default_set) <= 800


def test_deterministic_and_independent_of_other_structures(by_name):
    kw = {"nc_edges": (3,), "bulk_sizes": (2,), "rp_edges": (4,), "rp_positions": ("middle",)}
    small = st.build_training_set(**kw)
    again = st.build_training_set(**kw)
    assert [s.name for s in small] == [s.name for s in again]
    for s1, s2 in zip(small, again, strict=True):
        _same(s1, s2)
    # A structure does not depend on which other structures are built.
    for s in small:
        _same(s, by_name[s.name])


def test_seed_changes_random_structures(by_name):
    other = {s.name: s for s in st.build_training_set(nc_edges=(4,), rp_edges=(), seed=7)}
    name = "nc4_x0.25_uniform_0"
    assert not np.array_equal(other[name].occupations, by_name[name].occupations)
    pure = "nc4_x0_pure"
    assert np.array_equal(other[pure].occupations, by_name[pure].occupations)


def test_neutral_sane_distances_and_json_tags(default_set):
    for s in default_set:
        assert atomistic.charge(s.atoms) == 0, s.name
        assert st.minimum_distance_angstrom(s.atoms) > 2.5, s.name
        json.dumps(s.tags)
        counts = atomistic.formula_counts(s.atoms)
        n_b = counts["Pb"] + counts["Cd"]
        if n_b:
            assert s.x_cd == pytest.approx(counts["Cd"] / n_b), s.name


def test_nc_occupations_match_atoms(default_set):
    for s in default_set:
        if s.kind not in ("nc", "nc_vacancy"):
            continue
        assert s.on_ce_lattice
        assert not np.any(s.atoms.pbc)
        occ, n = s.occupations, s.n_edge
        n_cd = int((occ == species.CD).sum())
        assert n_cd == round(s.tags["x_nominal"] * n**3) == s.tags["n_cd"], s.name
        sym = np.array(s.atoms.get_chemical_symbols())
        assert int((sym == "Cd").sum()) == n_cd
        b_site = s.atoms.get_array("b_site")
        is_b = b_site >= 0
        assert np.array_equal(np.sort(b_site[is_b]), np.flatnonzero(occ <= species.CD))
        assert np.all((occ[b_site[is_b]] == species.CD) == (sym[is_b] == "Cd"))
        # Occupations leave the padding outside.
        assert np.all(occ[~s.lattice.in_nc] == species.OUT)
        ce = s.ce_structure(A)
        assert Counter(ce.get_chemical_symbols())["Cd"] == n_cd


@pytest.mark.parametrize("n", [3, 4, 5])
def test_published_configurations(by_name, n):
    base = f"nc{n}_x0.25"
    for suffix in ("uniform_0", "uniform_1", "uniform_2", "surface", "core"):
        assert by_name[f"{base}_{suffix}"].tags["published"]
    lat = by_name[f"{base}_surface"].lattice
    f0 = [
        configurations.cd_fraction_by_depth(lat, by_name[f"{base}_{a}"].occupations)[0]
        for a in ("surface", "profile_t-0.33", "profile_t+0.33", "core")
    ]
    assert f0[0] > f0[-1]
    assert all(f0[i] >= f0[i + 1] for i in range(3)), f0
    ts = [by_name[f"{base}_profile_t{t}"].tags["profile_t"] for t in ("-0.33", "+0.33")]
    assert ts == pytest.approx([-1 / 3, 1 / 3])


def test_vacancies(default_set):
    vac = [s for s in default_set if s.kind == "nc_vacancy"]
    assert {s.tags["vacancy_location"] for s in vac} == {"interior", "surface"}
    for s in vac:
        lat, occ, n = s.lattice, s.occupations, s.n_edge
        v = np.flatnonzero(occ == species.VAC)
        assert v.tolist() == s.tags["vacancy_sites"]
        assert 1 <= v.size <= 2
        assert np.all(lat.in_nc[v])
        if s.tags.get("vacancy_series") == "depth":
            assert v.size == 1
            assert s.name.endswith(f"depth{lat.depth[v[0]]}")
            assert not np.any(occ == species.CD)
        if s.tags["vacancy_location"] == "interior":
            assert np.all(lat.depth[v] >= 1)
        else:
            assert np.all(lat.n_outside_nn[v] == 1)
        c = atomistic.formula_counts(s.atoms)
        assert c["Pb"] + c["Cd"] == n**3 - v.size
        assert c["Br"] == 3 * n**3 + 3 * n**2 - 2 * v.size
        assert c["Cs"] == n**3 + 3 * n**2


def test_bulk_cells(by_name, default_set):
    bulk = [s for s in default_set if s.kind == "bulk"]
    for s in bulk:
        assert np.all(s.atoms.pbc)
        assert len(s.atoms) == 40
        assert np.allclose(s.atoms.cell.array, np.eye(3) * 2 * A)
        assert s.n_edge == 2
    vegard = {s.name for s in bulk if s.tags["vegard"]}
    assert {
        "bulk2_x0_random_0",
        "bulk2_x0.125_random_0",
        "bulk2_pair-body",
        "bulk2_x0.5_rocksalt",
        "bulk2_x1_random_0",
    } <= vegard
    assert not {"bulk2_pair-nn", "bulk2_pair-face"} & vegard
    # The three two-Cd arrangements are all there is at x = 1/4: no random duplicate.
    assert not any(s.name.startswith("bulk2_x0.25_random") for s in bulk)
    pairs = {}
    for label in ("nn", "face", "body"):
        occ = by_name[f"bulk2_pair-{label}"].occupations
        cd = np.flatnonzero(occ == species.CD)
        assert cd.size == 2
        lat = by_name[f"bulk2_pair-{label}"].lattice
        pairs[label] = int(np.abs(lat.coords[cd[0]] - lat.coords[cd[1]]).sum())
    assert pairs == {"nn": 1, "face": 2, "body": 3}


def _b_positions(atoms):
    b_site = atoms.get_array("b_site")
    order = np.argsort(np.where(b_site >= 0, b_site, np.iinfo(np.int64).max))
    keep = order[: int((b_site >= 0).sum())]
    return b_site[keep], atoms.positions[keep]


@pytest.mark.parametrize("position", ["middle", "surface"])
def test_rp_faults(by_name, position):
    n, a = 4, A
    faults = {v: by_name[f"nc{n}_rp-{position}_{v}"] for v in ("pb", "cd-in", "cd-out")}
    k = faults["pb"].tags["fault_level"]
    assert k == (n // 2 if position == "middle" else 1)
    comps = []
    for s in faults.values():
        assert not s.on_ce_lattice
        twin = by_name[s.tags["no_fault"]]
        assert twin.kind == "nc"
        # n^2 extra CsBr units, nothing else.
        cf, ct = atomistic.formula_counts(s.atoms), atomistic.formula_counts(twin.atoms)
        assert cf["Cs"] - ct["Cs"] == n**2 == s.tags["extra_csbr"]
        assert cf["Br"] - ct["Br"] == n**2
        assert (cf["Pb"], cf["Cd"]) == (ct["Pb"], ct["Cd"])
        assert len(s.atoms) == len(twin.atoms) + 2 * n**2
        comps.append((cf["Pb"], cf["Cd"]))
        # Same Cd sites as the twin: B atoms keep their grid site.
        sites_f, pos_f = _b_positions(s.atoms)
        sites_t, pos_t = _b_positions(twin.atoms)
        assert np.array_equal(sites_f, sites_t)
        sym_f = np.array(s.atoms.get_chemical_symbols())
        cd_f = set(s.atoms.get_array("b_site")[sym_f == "Cd"].tolist())
        assert cd_f == set(np.flatnonzero(twin.occupations == species.CD).tolist())
        # The upper block is shifted by (a/2, a/2, gap) relative to the lower block.
        plane = twin.lattice.coords[sites_t, 2] - twin.lattice.pad
        up = plane >= k
        d = pos_f - pos_t
        d_lower = d[~up][0]
        assert np.allclose(d[~up], d_lower)
        assert np.allclose(d[up] - d_lower, [a / 2, a / 2, st.RP_GAP_ANGSTROM])
        frac = np.mod(pos_f[up, :2] - pos_f[~up][0, :2] + 1e-6, a)
        assert np.allclose(frac, a / 2)
        # The inserted layer: rock salt on top of the lower block's AX layer.
        block = s.atoms.get_array("rp_block")
        new = block == 2
        assert np.all(np.isin(sym_f[new], ["Cs", "Br"]))
        z_new = s.atoms.positions[new, 2]
        assert np.allclose(z_new, z_new[0])
        z_b_lower = pos_f[~up & (plane == k - 1), 2]
        assert np.allclose(z_new - z_b_lower[0], a / 2 + st.RP_GAP_ANGSTROM)
        # RP region bookkeeping.
        region = s.tags["rp_region_b_sites"]
        assert len(region) == s.tags["n_rp_sites"] == 2 * n**2
        assert s.tags["n_cd_rp"] == len(cd_f & set(region))
    assert comps[1] == comps[2]  # Cd in vs out: same composition
    n_cd = round(0.25 * n**3)
    assert faults["cd-in"].tags["n_cd_rp"] == n_cd
    assert faults["cd-out"].tags["n_cd_rp"] == 0
    assert faults["pb"].tags["n_rp_interface_pairs"] == (2 if position == "middle" else 1) * n**2


def test_build_rp_fault_validates():
    lat = build_cube(3, A, 2)
    occ = lat.empty_occupations()
    with pytest.raises(ValueError, match="level"):
        st.build_rp_fault(lat, occ, 0)
    occ[np.flatnonzero(lat.in_nc)[0]] = species.VAC
    with pytest.raises(ValueError, match="as-built"):
        st.build_rp_fault(lat, occ, 1)


def test_csbr_references(by_name):
    rs, cscl = by_name["ref_csbr_rocksalt"], by_name["ref_csbr_cscl"]
    assert len(rs.atoms) == 8
    assert len(cscl.atoms) == 2
    for s in (rs, cscl):
        assert atomistic.charge(s.atoms) == 0
        assert s.tags["formula_units"] == len(s.atoms) // 2


def test_minimum_distance():
    pair = Atoms("Cs2", positions=[[0, 0, 0], [1.5, 0, 0]], cell=np.eye(3) * 20, pbc=False)
    assert st.minimum_distance_angstrom(pair) == pytest.approx(1.5)
    single = Atoms("Cs", positions=[[0, 0, 0]], cell=np.eye(3) * 2.0, pbc=True)
    assert st.minimum_distance_angstrom(single) == pytest.approx(2.0)
    far = Atoms("Cs2", positions=[[0, 0, 0], [9, 0, 0]], cell=np.eye(3) * 30, pbc=False)
    assert st.minimum_distance_angstrom(far) == np.inf


def test_vacancy_pairs_add_same_crystal_vacancy_positions():
    from segsim.training import fit

    kw = {
        "nc_edges": (3, 4), "compositions": (), "n_random": 0, "n_profiles": 0, "nc_end_members": (),
        "bulk_sizes": (), "rp_edges": (), "csbr": False,
    }  # fmt: skip
    plain = {s.name: s for s in st.build_training_set(**kw)}
    extra = {s.name: s for s in st.build_training_set(**kw, vacancy_pairs=True)}
    new = sorted(set(extra) - set(plain))
    # only n >= 4, every training variant once; the rest of the set is unchanged
    assert new == sorted(st.structure_name(4, v) for v in st.TRAINING_VARIANTS)
    for name, s in plain.items():
        assert np.array_equal(s.occupations, extra[name].occupations)
    # single vacancies join the depth series' crystal, divacancies form their own
    recs = [
        fit.TrainingRecord(
            name=n, kind=s.kind, energy_ev=0.0, occupations=np.asarray(s.occupations),
            shape=tuple(s.lattice.shape), x_cd=0.0, n_edge=s.n_edge,
        )
        for n, s in extra.items()
        if n.startswith("nc4_x0_")
    ]  # fmt: skip
    groups = dict(zip([r.name for r in recs], fit.same_crystal_groups(recs), strict=True))
    assert groups["nc4_x0_v1-edge"] == groups["nc4_x0_v1-corner"] == groups["nc4_x0_vac1-depth0"]
    pairs = {groups[st.structure_name(4, v)] for v in st.TRAINING_VARIANTS if v.startswith("v2")}
    assert len(pairs) == 1
    assert pairs.pop() not in (-1, groups["nc4_x0_v1-edge"])
    for name in new:
        c = atomistic.formula_counts(extra[name].atoms)
        n_v = 1 if "_v1-" in name else 2
        assert c["Pb"] == 4**3 - n_v
        assert c["Br"] == 3 * 4**3 + 3 * 4**2 - 2 * n_v


def test_surface_pits_add_receded_sites_kept_apart_by_their_atoms():
    from segsim.training import fit

    kw = {
        "nc_edges": (4,), "compositions": (), "n_random": 0, "n_profiles": 0, "nc_end_members": (),
        "vacancy_structures": 0, "bulk_sizes": (), "rp_edges": (), "csbr": False,
    }  # fmt: skip
    plain = {s.name for s in st.build_training_set(**kw)}
    extra = {s.name: s for s in st.build_training_set(**kw, surface_pit_edges=(4,))}
    pits = {n: s for n, s in extra.items() if n not in plain}
    suffixes = [*st.SURFACE_PITS, *st.SURFACE_VACANCIES]
    assert sorted(pits) == sorted(f"nc4_x0_{suffix}" for suffix in suffixes)
    lat = build_cube(4, 5.87, 3)
    full = atomistic.formula_counts(atomistic.to_atoms(lat, lat.empty_occupations()))
    for name, s in pits.items():
        occ = np.asarray(s.occupations)
        assert s.kind == "nc_pit"
        assert atomistic.charge(s.atoms) == 0
        receded = s.tags["receded_sites"]
        assert all(lat.in_nc[i] and occ[i] == species.OUT for i in receded)
        c = atomistic.formula_counts(s.atoms)
        assert c["Pb"] + c["Cd"] == 64 - len(receded) - len(s.tags["vacancy_sites"])
        assert c["Cd"] == ("_cd-" in name)
    # a receded face site takes one PbBr2 and leaves a CsBr more (2 - k, k = 1 outside
    # neighbour); an edge site 0, a corner site one CsBr less
    for suffix, d_csbr in (("pit1-face", 1), ("pit1-edge", 0), ("pit1-corner", -1)):
        c = atomistic.formula_counts(pits[f"nc4_x0_{suffix}"].atoms)
        assert c["Cs"] - full["Cs"] == d_csbr
        assert c["Br"] - full["Br"] == d_csbr - 2
    # groups: same species counts *and* atoms; face/edge/corner pits are different crystals
    recs = [
        fit.TrainingRecord(
            name=n, kind=s.kind, energy_ev=0.0, occupations=np.asarray(s.occupations),
            shape=tuple(s.lattice.shape), x_cd=0.0, n_edge=4, n_atoms=len(s.atoms),
        )
        for n, s in pits.items()
    ]  # fmt: skip
    g = dict(zip(pits, fit.same_crystal_groups(recs), strict=True))
    assert g["nc4_x0_pit1-face"] == g["nc4_x0_pit1-edge"] == g["nc4_x0_pit1-corner"] == -1
    assert g["nc4_x0_pit1-face_v-beside"] == g["nc4_x0_pit1-face_v-below"] >= 0
    assert g["nc4_x0_pit1-face_cd-beside"] == g["nc4_x0_pit1-face_cd-far"] >= 0
    assert g["nc4_x0_pit1-face_cd-below"] == g["nc4_x0_pit1-face_cd-far"]
    # without atom counts the three single pits would be one crystal
    blind = [fit.TrainingRecord(**{**r.__dict__, "n_atoms": 0}) for r in recs]
    g0 = dict(zip(pits, fit.same_crystal_groups(blind), strict=True))
    assert g0["nc4_x0_pit1-face"] == g0["nc4_x0_pit1-corner"] >= 0


def test_surface_vacancy_clusters_hold_the_pairs_their_names_promise():
    """``v2-d3-normal``: a face V and a depth-1 V at squared distance 3, and so on."""
    kw = {
        "nc_edges": (4,), "compositions": (), "n_random": 0, "n_profiles": 0, "nc_end_members": (),
        "vacancy_structures": 0, "bulk_sizes": (), "rp_edges": (), "csbr": False,
    }  # fmt: skip
    built = {s.name: s for s in st.build_training_set(**kw, surface_pit_edges=(4,))}
    lat = build_cube(4, 5.87, 3)
    coord = np.asarray(lat.coords, dtype=float)  # grid units

    def d2(i: int, j: int) -> int:
        return round(float(np.sum((coord[i] - coord[j]) ** 2)))

    # (vacancy depths, squared V-V distances) per structure
    expect = {
        "v2-d2-face": ([0, 0], {2}),
        "v2-d2-normal": ([0, 1], {2}),
        "v2-d3-normal": ([0, 1], {3}),
        "v2-d3-edge": ([0, 0], {3}),
        "v2-d4-face": ([0, 0], {4}),
        "v3-face-line": ([0, 0, 0], {1, 4}),
        "v3-face-l": ([0, 0, 0], {1, 2}),
        "v3-d3": ([0, 0, 1], {1, 2, 3}),
        "v4-face-square": ([0] * 4, {1, 2}),
    }
    assert set(expect) | {"pit1-face_v-d2", "pit1-face_v-d3", "v1-face_cd-d3"} == set(
        st.SURFACE_VACANCIES
    )
    for suffix, (depths, dists) in expect.items():
        s = built[f"nc4_x0_{suffix}"]
        v = list(s.tags["vacancy_sites"])
        occ = np.asarray(s.occupations)
        assert all(lat.in_nc[i] and occ[i] == species.VAC for i in v), suffix
        assert sorted(int(lat.depth[i]) for i in v) == depths, suffix
        assert {d2(i, j) for k, i in enumerate(v) for j in v[k + 1 :]} == dists, suffix
    # the receded site and the vacancy, the vacancy and the Cd
    for suffix, other, dist in (
        ("pit1-face_v-d2", species.OUT, 2),
        ("pit1-face_v-d3", species.OUT, 3),
        ("v1-face_cd-d3", species.CD, 3),
    ):
        s = built[f"nc4_x0_{suffix}"]
        occ = np.asarray(s.occupations)
        (v,) = s.tags["vacancy_sites"]
        (o,) = [i for i in np.flatnonzero(occ == other) if lat.in_nc[i]]
        assert d2(v, o) == dist, suffix
