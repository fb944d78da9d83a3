"""``segsim barriers input.yaml``: the input file, the resumable record store and the loop.

Input (YAML, one top-level key ``barriers``)::

    barriers:
      calculators:            # kind -> settings (segsim.training.calculators); >= 1
        chgnet: {}
        sevennet: {model: 7net-0}
      paths: all              # or a list of names (segsim.barriers.paths.path_names())
      bulk_cells: 3           # periodic n^3 cell of the bulk paths (>= 2)
      nc_edge: 4              # B sites per edge of the NC of the surface paths (>= 3)
      vacuum_angstrom: 8.0    # vacuum around the NC
      nc_freeze_beyond_angstrom: null  # or a distance >= 7: surface paths hold the NC fixed
                              # beyond it from the hop (segsim.barriers.paths)
      tilt_degrees: null      # or [antiphase, inphase]: a-a-c+ tilted bulk (even bulk_cells)
      seed_bands_from: null   # or a calculator: start each band from its finished band
      neb: {n_images: 5, fmax_ev_per_angstrom: 0.05, max_steps: 400, optimizer: FIRE,
            pre_relax_fmax_ev_per_angstrom: null, max_step_angstrom: null,
            abort_above_ev: null}  # the shipped inputs: 0.05, 0.05, 5.0 (staged, guarded)
      output: barriers        # folder, relative to the input file's folder
      check:                  # optional: `segsim barriers --check` re-evaluates bands
        calculator: cp2k      # the check calculator's kind
        settings: {}          # its settings
        sources: [chgnet]     # whose bands are checked
        paths: [bulk_pb_open_0cd, bulk_cd_open_0cd]
        images: [is, ci, fs]  # which images of each band, in this order (i3: image 3)
      table:                  # optional: what `segsim barriers --table` writes
        output: ../potentials/barriers.yaml   # relative to the input file's folder
        kmc:                  # KMC parameters that are no committee value of a path
          e_exp_cd_ev: {value: 0.98, source: "..."}
        include: [reactions.yaml]             # YAML files whose sections are copied
        checks_from: [barriers_pbe_cell2.yaml]  # other inputs whose checks are summarised
        records_from: [barriers_tilted.yaml]    # other inputs whose barriers are shown
        physical_geometry:    # optional: the input whose barriers are the physical ones
          input: barriers_tilted.yaml           # when the KMC keeps this input's (a
          why: "..."                            # difference per entry, and why)

Every finished path is one JSON line of ``<output>/records.jsonl`` (written whole, flushed
and fsynced, so a stopped run loses at most the path in progress) and its band, IS to FS, is
``<output>/bands/<calculator>/<path>.extxyz.gz``.  A record is reused when its key (path,
calculator provenance, lattice, cell sizes, band settings) matches: a rerun continues where
the last one stopped and never recomputes a finished path.  A *converged* band made under
another optimizer protocol (optimizer, step limits, staged relaxation; same images, springs
and end points, at least as tight a force) also stands (:func:`reusable_record`); a band that
did not converge is retried when the protocol changes.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any

import numpy as np

from segsim.barriers.neb import (
    NEBSettings,
    cubic_lattice_constant,
    run_path,
    tilted_lattice_constant,
)
from segsim.barriers.paths import build_endpoints, parse_path_name, path_names
from segsim.params.files import ConfigError, read_yaml

__all__ = [
    "BarrierConfig",
    "load_barrier_config",
    "read_records",
    "run_barriers",
    "run_checks",
    "run_reactions",
    "write_barrier_table",
]

_TOP_KEYS = (
    "calculators", "paths", "bulk_cells", "nc_edge", "vacuum_angstrom", "neb", "output", "table",
    "check", "tilt_degrees", "seed_bands_from", "nc_freeze_beyond_angstrom",
)  # fmt: skip
_CHECK_KEYS = ("calculator", "settings", "sources", "paths", "images")
_TABLE_KEYS = (
    "output", "kmc", "include", "checks_from", "records_from", "physical_geometry",
)  # fmt: skip


@dataclass(frozen=True)
class BarrierConfig:
    """A parsed ``segsim barriers`` input.

    Attributes
    ----------
    source
        The input file.
    calculators
        ``{kind: settings}``.
    paths
        Path names, in order.
    bulk_cells, nc_edge, vacuum_angstrom
        Cell sizes (see the module docstring).
    nc_freeze_beyond_angstrom
        Surface paths: atoms farther than this from the hop are frozen (None: none).
    neb
        Band settings.
    output
        Output folder (absolute).
    table
        ``{"output": Path | None, "kmc": {...}, "include": [Path, ...],
        "checks_from": [Path, ...]}``.
    check
        ``{"calculator": kind, "settings": {...}, "sources": [...], "paths": [...]}`` or None.
    """

    source: str
    calculators: dict[str, dict[str, Any]]
    paths: tuple[str, ...]
    bulk_cells: int
    nc_edge: int
    vacuum_angstrom: float
    neb: NEBSettings
    output: Path
    table: dict[str, Any]
    check: dict[str, Any] | None = None
    tilt_degrees: tuple[float, float] | None = None
    seed_bands_from: str | None = None
    nc_freeze_beyond_angstrom: float | None = None


def _int(src: str, key: str, value: Any, lo: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < lo:
        raise ConfigError(src, key, f"must be an integer >= {lo}, got {value!r}")
    return int(value)


def load_barrier_config(path: str | os.PathLike) -> BarrierConfig:
    """Read and check a ``segsim barriers`` input.

    Raises
    ------
    segsim.params.files.ConfigError
        One line naming the file, the key and what is allowed.
    """
    from segsim.training.calculators import CALCULATOR_KINDS, resolve_settings

    src = str(path)
    doc = read_yaml(path)
    if not isinstance(doc, dict) or set(doc) != {"barriers"}:
        raise ConfigError(src, "", "expected one top-level key 'barriers'")
    body = doc["barriers"]
    _check_keys(src, "barriers", body, _TOP_KEYS)
    calcs = body.get("calculators")
    if not isinstance(calcs, dict) or not calcs:
        raise ConfigError(
            src, "barriers.calculators",
            f"must map at least one calculator kind to its settings; allowed kinds: "
            f"{', '.join(sorted(CALCULATOR_KINDS))}",
        )  # fmt: skip
    calculators = {}
    for kind, settings in calcs.items():
        key = f"barriers.calculators.{kind}"
        if settings is not None and not isinstance(settings, dict):
            raise ConfigError(src, key, "settings must be a mapping (or empty)")
        try:
            calculators[str(kind)] = resolve_settings(str(kind), settings or {})
        except ValueError as exc:
            raise ConfigError(src, key, str(exc)) from None
    raw_paths = body.get("paths", "all")
    if raw_paths == "all":
        names = path_names()
    elif isinstance(raw_paths, list) and raw_paths:
        names = []
        for i, name in enumerate(raw_paths):
            try:
                names.append(parse_path_name(name).name)
            except ValueError as exc:
                raise ConfigError(src, f"barriers.paths[{i}]", str(exc)) from None
    else:
        raise ConfigError(src, "barriers.paths", "must be 'all' or a non-empty list of path names")
    vac = body.get("vacuum_angstrom", 8.0)
    if isinstance(vac, bool) or not isinstance(vac, int | float) or not np.isfinite(vac) or vac < 4:
        raise ConfigError(
            src, "barriers.vacuum_angstrom", f"must be a finite number >= 4, got {vac!r}"
        )
    freeze = body.get("nc_freeze_beyond_angstrom")
    if freeze is not None and (
        isinstance(freeze, bool)
        or not isinstance(freeze, int | float)
        or not np.isfinite(freeze)
        or freeze < 7
    ):
        raise ConfigError(
            src, "barriers.nc_freeze_beyond_angstrom",
            f"must be null or a finite distance >= 7 Angstrom (beyond one lattice constant), "
            f"got {freeze!r}",
        )  # fmt: skip
    neb_raw = body.get("neb") or {}
    _check_keys(src, "barriers.neb", neb_raw, [f.name for f in fields(NEBSettings)])
    try:
        neb = NEBSettings(**neb_raw)
    except (TypeError, ValueError) as exc:
        raise ConfigError(src, "barriers.neb", str(exc)) from None
    out = body.get("output", "barriers")
    if not isinstance(out, str) or not out:
        raise ConfigError(src, "barriers.output", "must be a folder name")
    base = Path(path).resolve().parent
    table = _table_section(src, body.get("table"), base)
    check = _check_section(src, body.get("check"), calculators, names)
    tilt = body.get("tilt_degrees")
    if tilt is not None:
        ok = (
            isinstance(tilt, list)
            and len(tilt) == 2
            and all(
                isinstance(t, int | float) and not isinstance(t, bool) and 0 <= t < 30 for t in tilt
            )
        )
        if not ok:
            raise ConfigError(
                src,
                "barriers.tilt_degrees",
                "must be null or [antiphase, inphase], each in [0, 30) degrees",
            )
        if body.get("bulk_cells", 3) % 2 or any(
            parse_path_name(n).location != "bulk" for n in names
        ):
            raise ConfigError(
                src, "barriers.tilt_degrees", "needs an even bulk_cells and bulk paths only"
            )
        tilt = (float(tilt[0]), float(tilt[1]))
    seed_from = body.get("seed_bands_from")
    if seed_from is not None and seed_from not in calculators:
        raise ConfigError(
            src, "barriers.seed_bands_from", f"must be null or one of: {', '.join(calculators)}"
        )
    return BarrierConfig(
        source=src,
        calculators=calculators,
        paths=tuple(names),
        bulk_cells=_int(src, "barriers.bulk_cells", body.get("bulk_cells", 3), 2),
        nc_edge=_int(src, "barriers.nc_edge", body.get("nc_edge", 4), 3),
        vacuum_angstrom=float(vac),
        neb=neb,
        output=(base / out).resolve(),
        table=table,
        check=check,
        tilt_degrees=tilt,
        seed_bands_from=seed_from,
        nc_freeze_beyond_angstrom=None if freeze is None else float(freeze),
    )


def _check_keys(src: str, where: str, raw: Any, allowed: Sequence[str]) -> None:
    """Raise a one-line :class:`ConfigError` unless ``raw`` is a mapping of ``allowed`` keys."""
    if not isinstance(raw, dict):
        raise ConfigError(src, where, "must be a mapping")
    for k in raw:
        if k not in allowed:
            raise ConfigError(src, f"{where}.{k}", f"unknown key; allowed: {', '.join(allowed)}")


def _check_section(
    src: str, raw: Any, calculators: dict[str, Any], paths: Sequence[str]
) -> dict[str, Any] | None:
    from segsim.training.calculators import resolve_settings

    if raw is None:
        return None
    _check_keys(src, "barriers.check", raw, _CHECK_KEYS)
    kind = raw.get("calculator")
    try:
        settings = resolve_settings(str(kind), raw.get("settings") or {})
    except ValueError as exc:
        raise ConfigError(src, "barriers.check.calculator", str(exc)) from None
    sources = raw.get("sources") or list(calculators)
    for i, s in enumerate(sources):
        if s not in calculators:
            raise ConfigError(
                src,
                f"barriers.check.sources[{i}]",
                f"not one of the calculators: {', '.join(calculators)}",
            )
    cpaths = raw.get("paths") or list(paths)
    for i, p in enumerate(cpaths):
        if p not in paths:
            raise ConfigError(
                src, f"barriers.check.paths[{i}]", f"not one of barriers.paths: {', '.join(paths)}"
            )
    from segsim.barriers.check import IMAGES, is_image_name

    images = raw.get("images") or list(IMAGES)
    if not isinstance(images, list) or not all(is_image_name(im) for im in images):
        raise ConfigError(
            src, "barriers.check.images",
            f"must be a list of: {', '.join(IMAGES)} or i<k> (an image by its band index)",
        )  # fmt: skip
    return {
        "calculator": str(kind),
        "settings": settings,
        "sources": list(sources),
        "paths": list(cpaths),
        "images": list(images),
    }


def run_checks(
    cfg: BarrierConfig, *, log: Callable[[str], None] | None = None
) -> list[dict[str, Any]]:
    """Re-evaluate the IS, climbing image and FS of the checked bands (:mod:`segsim.barriers.check`).

    Only bands that have a record are checked; lines go to ``<output>/checks.jsonl``.
    """
    from segsim.barriers.check import check_band, image_index
    from segsim.training.calculators import make_calculator

    if cfg.check is None:
        raise ConfigError(cfg.source, "barriers.check", "needed for --check")
    say = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
    store = cfg.output / "checks.jsonl"
    done = {r.get("key") for r in read_records(store)}
    records = read_records(cfg.output / "records.jsonl")
    kind = cfg.check["calculator"]
    images = tuple(cfg.check["images"])
    calc = None
    for source in cfg.check["sources"]:  # band by band: CP2K restarts from the last image
        for path in cfg.check["paths"]:
            rec = reusable_record(cfg, source, path, records)  # the band the table uses
            if rec is None:
                say(f"check: no {source} band of {path} yet, skipped")
                continue
            prefix = f"{kind}|{source}|{path}"
            for im in images:  # before any calculator starts: a bad index is an input error
                try:
                    image_index(rec, im)
                except ValueError as exc:
                    raise ConfigError(cfg.source, "barriers.check.images", str(exc)) from None
            if all(f"{prefix}|{im}" in done for im in images):
                continue
            if calc is None:
                calc, _ = make_calculator(kind, cfg.check["settings"])
            check_band(rec, cfg.output, calc, done=done, key_prefix=prefix,
                       append=lambda line: _append(store, line), log=say,
                       images=images)  # fmt: skip
    return read_records(store)


def _table_section(src: str, raw: Any, base: Path) -> dict[str, Any]:
    if raw is None:
        return {"output": None, "kmc": {}, "include": [], "checks_from": [], "records_from": [],
                "physical_geometry": None}  # fmt: skip
    _check_keys(src, "barriers.table", raw, _TABLE_KEYS)
    out = raw.get("output")
    if out is not None and (not isinstance(out, str) or not out):
        raise ConfigError(src, "barriers.table.output", "must be a file name")
    kmc = raw.get("kmc") or {}
    if not isinstance(kmc, dict):
        raise ConfigError(src, "barriers.table.kmc", "must be a mapping")
    for key, entry in kmc.items():
        value = entry.get("value") if isinstance(entry, dict) else None
        if isinstance(value, bool) or not isinstance(value, int | float) or not np.isfinite(value):
            raise ConfigError(
                src, f"barriers.table.kmc.{key}.value", "must be a finite number (eV)"
            )
        if not isinstance(entry.get("source"), str):
            raise ConfigError(
                src, f"barriers.table.kmc.{key}.source", "must say where the value comes from"
            )
    inc = raw.get("include") or []
    if not isinstance(inc, list) or not all(isinstance(x, str) for x in inc):
        raise ConfigError(src, "barriers.table.include", "must be a list of YAML file names")
    phys = raw.get("physical_geometry")
    if phys is not None:
        key = "barriers.table.physical_geometry"
        if not isinstance(phys, dict) or set(phys) != {"input", "why"}:
            raise ConfigError(src, key, "must be a mapping with exactly `input` and `why`")
        if not isinstance(phys["input"], str) or not phys["input"]:
            raise ConfigError(src, f"{key}.input", "must be a barriers input file name")
        if not isinstance(phys["why"], str) or not phys["why"].strip():
            raise ConfigError(src, f"{key}.why", "must say why the KMC's barriers differ")
        phys = {"input": (base / phys["input"]).resolve(), "why": " ".join(phys["why"].split())}
    return {
        "physical_geometry": phys,
        "output": (base / out).resolve() if out else None,
        "kmc": kmc,
        "include": [(base / x).resolve() for x in inc],
        "checks_from": [(base / x).resolve() for x in _names(src, "checks_from", raw)],
        "records_from": [(base / x).resolve() for x in _names(src, "records_from", raw)],
    }


def reaction_key(kind: str, settings: dict[str, Any], cfg: BarrierConfig) -> str:
    """Return the key of a calculator's removal-energy record."""
    blob = json.dumps(
        {"kind": kind, "settings": settings, "nc_edge": cfg.nc_edge,
         "vacuum_angstrom": cfg.vacuum_angstrom, "neb": asdict(cfg.neb)},
        sort_keys=True,
    )  # fmt: skip
    return f"{kind}|removal|{hashlib.sha256(blob.encode()).hexdigest()[:12]}"


def run_reactions(
    cfg: BarrierConfig,
    *,
    only_calculators: Iterable[str] | None = None,
    log: Callable[[str], None] | None = None,
) -> list[dict[str, Any]]:
    """Compute the removal reaction energies (:mod:`segsim.barriers.reactions`) per calculator.

    One record per calculator in ``<output>/reactions.jsonl`` (reused when its key matches);
    returns all records.
    """
    from segsim.barriers.reactions import removal_energies
    from segsim.training.calculators import calculator_provenance, make_calculator

    say = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
    store = cfg.output / "reactions.jsonl"
    done = {r.get("key") for r in read_records(store)}
    for kind, settings in cfg.calculators.items():
        if only_calculators is not None and kind not in set(only_calculators):
            continue
        key = reaction_key(kind, settings, cfg)
        if key in done:
            continue
        calc, _ = make_calculator(kind, settings)
        rec = removal_energies(
            calc, n_edge=cfg.nc_edge, vacuum_angstrom=cfg.vacuum_angstrom, settings=cfg.neb,
            log=lambda m, k=kind: say(f"[{k} removal] {m}"),
        )  # fmt: skip
        rec.update(key=key, calculator=kind, provenance=calculator_provenance(kind, settings))
        _append(store, rec)
    return read_records(store)


def _names(src: str, key: str, raw: dict[str, Any]) -> list[str]:
    value = raw.get(key) or []
    if not isinstance(value, list) or not all(isinstance(x, str) for x in value):
        raise ConfigError(src, f"barriers.table.{key}", "must be a list of file names")
    return value


def _checks_section(cfg: BarrierConfig) -> dict[str, Any]:
    """Summaries of this input's checks and of the inputs in ``table.checks_from``."""
    from segsim.barriers.check import summarise_checks

    out: dict[str, Any] = {}
    for other in [None, *cfg.table["checks_from"]]:
        c = cfg if other is None else load_barrier_config(other)
        lines = read_records(c.output / "checks.jsonl")
        if not lines:
            continue
        records = {
            (r["calculator"], r["path"]): r for r in read_records(c.output / "records.jsonl")
        }
        bands = summarise_checks(lines)
        for summary in bands.values():
            rec = records.get((summary["source"], summary["path"]), {})
            summary["source_band_converged"] = rec.get("band_converged")
            summary["bulk_cells"] = rec.get("bulk_cells")
        out[Path(c.source).name] = {
            "settings": c.check["settings"] if c.check else None,
            "bands": bands,
        }
    return out


def _other_inputs_section(cfg: BarrierConfig) -> dict[str, Any]:
    """Return the barriers of the inputs in ``table.records_from`` (per path, calculator)."""
    from segsim.barriers.table import path_committees

    out: dict[str, Any] = {}
    for other in cfg.table["records_from"]:
        c = load_barrier_config(other)
        records = read_records(c.output / "records.jsonl")
        if not records:
            continue
        out[Path(c.source).name] = {
            "bulk_cells": c.bulk_cells,
            "tilt_degrees": list(c.tilt_degrees) if c.tilt_degrees else None,
            "neb": asdict(c.neb),
            "paths": path_committees(records),
        }
    return out


def write_barrier_table(cfg: BarrierConfig, command: str) -> Path:
    """Write the table of ``cfg.table`` from the records (computes nothing).

    Raises
    ------
    segsim.params.files.ConfigError
        Without ``table.output``, without records, or with an unreadable include.
    """
    from segsim.barriers.table import build_table, write_table

    if cfg.table["output"] is None:
        raise ConfigError(cfg.source, "barriers.table.output", "needed to write the table")
    records = read_records(cfg.output / "records.jsonl")
    if not records:
        raise ConfigError(
            cfg.source, "barriers.output", f"no records in {cfg.output}: run the paths first"
        )
    extra: dict[str, Any] = {}
    reactions = read_records(cfg.output / "reactions.jsonl")
    if reactions:
        extra["removal_reaction_energies"] = {
            "definition": (
                "dE_rm(M, s) = E(NC, V on s) + mu_MBr2 - E(NC, M on s), eV; no transition state "
                "in vacuum (segsim/barriers/reactions.py)"
            ),
            "by_calculator": {
                str(r["calculator"]): {
                    "sites": r["sites"], "mu_ev": r["mu_ev"], "n_edge": r["n_edge"],
                    "a_angstrom": r["a_angstrom"],
                }
                for r in reactions
            },
        }  # fmt: skip
    checks = _checks_section(cfg)
    if checks:
        extra["checks"] = {
            "definition": (
                "single points of the check calculator on the source's band (IS, climbing "
                "image, FS); e_forward = E(ci) - E(is) (segsim/barriers/check.py)"
            ),
            "by_input": checks,
        }
    others = _other_inputs_section(cfg)
    if others:
        extra["other_inputs"] = {
            "definition": (
                "barriers of other inputs (other cells, tilts, protocols): shown with their "
                "provenance, not used by the KMC unless a kmc entry says so"
            ),
            "by_input": others,
        }
    for inc in cfg.table["include"]:
        doc = read_yaml(inc)
        if not isinstance(doc, dict):
            raise ConfigError(str(inc), "", "must be a mapping of sections")
        extra.update(doc)
    physical = None
    if cfg.table["physical_geometry"] is not None:
        phys = cfg.table["physical_geometry"]
        other = load_barrier_config(phys["input"])
        physical = {
            "input": Path(other.source).name,
            "records": read_records(other.output / "records.jsonl"),
            "why": phys["why"],
        }
        if not physical["records"]:
            raise ConfigError(
                cfg.source, "barriers.table.physical_geometry.input",
                f"no records in {other.output}: run that input's paths first",
            )  # fmt: skip
    table = build_table(
        records, source=command, kmc_choices=cfg.table["kmc"], extra=extra, physical=physical
    )
    return write_table(table, cfg.table["output"])


def record_key(kind: str, settings: dict[str, Any], path: str, cfg: BarrierConfig) -> str:
    """Return the key of one path's record: everything its numbers depend on."""
    spec = parse_path_name(path)
    size = {"bulk_cells": cfg.bulk_cells} if spec.location == "bulk" else {
        "nc_edge": cfg.nc_edge, "vacuum_angstrom": cfg.vacuum_angstrom}  # fmt: skip
    if cfg.tilt_degrees is not None:
        size["tilt_degrees"] = list(cfg.tilt_degrees)
    if spec.location == "nc" and cfg.nc_freeze_beyond_angstrom is not None:
        size["freeze_beyond_angstrom"] = cfg.nc_freeze_beyond_angstrom
    neb = {k: v for k, v in asdict(cfg.neb).items() if not (k in _PROTOCOL_FIELDS and v is None)}
    blob = json.dumps(
        {"kind": kind, "settings": settings, "path": path, "size": size, "neb": neb},
        sort_keys=True,
    )
    return f"{kind}|{path}|{hashlib.sha256(blob.encode()).hexdigest()[:12]}"


# How a band is driven to its saddle, not which saddle: a converged band made with other values
# of these is reused (NEBSettings fields; the staged ones are left out of keys while None).
_PROTOCOL_FIELDS = (
    "optimizer", "max_steps", "pre_relax_fmax_ev_per_angstrom", "max_step_angstrom",
    "abort_above_ev",
)  # fmt: skip


def reusable_record(
    cfg: BarrierConfig, kind: str, path: str, records: Sequence[dict[str, Any]]
) -> dict[str, Any] | None:
    """Return the last record of ``records`` that stands for (``kind``, ``path``) under ``cfg``.

    A record stands when it was made with the same calculator settings, path and cell, and
    either with the same band settings (a rerun would repeat it) or, when its band converged,
    with the same images, springs and end-point relaxation, converged at least as tightly: the
    optimizer protocol (``_PROTOCOL_FIELDS``) is how the saddle was reached, not what it is.
    A band that did not converge is therefore retried under another protocol, and a
    converged one is never recomputed because the protocol changed.
    """
    key = record_key(kind, cfg.calculators[kind], path, cfg)
    current = asdict(cfg.neb)
    found = None
    for r in records:
        if r.get("calculator") != kind or r.get("path") != path:
            continue
        if r.get("key") == key:
            found = r
            continue
        try:
            made_with = NEBSettings(**r.get("settings", {}))
        except (TypeError, ValueError):
            continue
        same_physics = record_key(kind, cfg.calculators[kind], path, replace(cfg, neb=made_with))
        if r.get("key") != same_physics or not r.get("band_converged"):
            continue
        theirs = asdict(made_with)
        if (
            all(
                theirs[f] == current[f]
                for f in current
                if f not in _PROTOCOL_FIELDS and f != "fmax_ev_per_angstrom"
            )
            and theirs["fmax_ev_per_angstrom"] <= current["fmax_ev_per_angstrom"]
        ):
            found = r
    return found


def _seed_band(cfg: BarrierConfig, kind: str, path: str) -> list[Any] | None:
    """Return the finished band of ``cfg.seed_bands_from`` for ``path`` (None if none)."""
    from segsim.barriers.check import read_band

    source = cfg.seed_bands_from
    if source is None or source == kind:
        return None
    rec = reusable_record(cfg, source, path, read_records(cfg.output / "records.jsonl"))
    if rec is None or not rec.get("band_converged"):
        return None
    return read_band(cfg.output / rec["band_file"])


def read_records(path: str | os.PathLike) -> list[dict[str, Any]]:
    """Return the records of a ``records.jsonl`` (a torn last line is ignored)."""
    p = Path(path)
    if not p.is_file():
        return []
    out = []
    for line in p.read_text().splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return out


def _append(path: Path, record: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as fh:
        fh.write(json.dumps(record, sort_keys=True) + "\n")
        fh.flush()
        os.fsync(fh.fileno())


def _write_band(path: Path, images: Sequence[Any]) -> None:
    from ase.io import write

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    with gzip.open(tmp, "wt") as fh:
        for im in images:
            write(fh, im, format="extxyz")
    os.replace(tmp, path)


def run_barriers(
    cfg: BarrierConfig,
    *,
    only_calculators: Iterable[str] | None = None,
    only_paths: Iterable[str] | None = None,
    log: Callable[[str], None] | None = None,
) -> list[dict[str, Any]]:
    """Run every (calculator, path) of ``cfg`` that has no record yet; return all records.

    Parameters
    ----------
    cfg
        The parsed input.
    only_calculators, only_paths
        Subsets (e.g. one calculator per process on a two-core machine).
    log
        Progress lines (default: stderr).
    """
    from segsim.training.calculators import calculator_provenance, make_calculator

    say = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
    store = cfg.output / "records.jsonl"
    records = read_records(store)
    kinds = [k for k in cfg.calculators if only_calculators is None or k in set(only_calculators)]
    paths = [p for p in cfg.paths if only_paths is None or p in set(only_paths)]
    for kind in kinds:
        settings = cfg.calculators[kind]
        todo = [p for p in paths if reusable_record(cfg, kind, p, records) is None]
        if not todo:
            continue
        calc, _ = make_calculator(kind, settings)
        a = cubic_lattice_constant(calc)
        say(f"{kind}: cubic CsPbBr3 a = {a:.4f} Angstrom; {len(todo)} path(s) to run")
        if cfg.tilt_degrees is not None:
            a = tilted_lattice_constant(calc, cfg.tilt_degrees, a)
            say(f"{kind}: a-a-c+ {cfg.tilt_degrees} tilted, pseudo-cubic a = {a:.4f} Angstrom")
        for i, name in enumerate(todo, 1):
            spec = parse_path_name(name)
            ends = build_endpoints(
                spec, a, n_cells=cfg.bulk_cells, n_edge=cfg.nc_edge,
                vacuum_angstrom=cfg.vacuum_angstrom, tilt_degrees=cfg.tilt_degrees,
                freeze_beyond_angstrom=(
                    cfg.nc_freeze_beyond_angstrom if spec.location == "nc" else None
                ),
            )  # fmt: skip
            seed = _seed_band(cfg, kind, name)
            say(f"[{kind} {i}/{len(todo)}] {name}: {len(ends.initial)} atoms"
                + (f", band seeded from {cfg.seed_bands_from}" if seed else ""))  # fmt: skip
            record, images = run_path(
                ends, calc, cfg.neb, log=lambda m, n=name: say(f"  {n}: {m}"), seed_band=seed
            )
            band = cfg.output / "bands" / kind / f"{name}.extxyz.gz"
            _write_band(band, images)
            record.update(
                key=record_key(kind, settings, name, cfg),
                calculator=kind,
                provenance=calculator_provenance(kind, settings),
                a_angstrom=a,
                bulk_cells=cfg.bulk_cells if spec.location == "bulk" else None,
                nc_edge=cfg.nc_edge if spec.location == "nc" else None,
                tilt_degrees=list(cfg.tilt_degrees) if cfg.tilt_degrees else None,
                band_file=str(band.relative_to(cfg.output)),
                finished=time.strftime("%Y-%m-%dT%H:%M:%S"),
            )
            _append(store, record)
    return read_records(store)
