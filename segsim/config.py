"""YAML input files -> frozen, validated configuration objects.

This is the only module that reads YAML.  Every problem with an input file raises
:class:`ConfigError`, whose message is one line naming the file, the key and what is allowed;
the CLI prints it and exits with code 2.  Nothing here builds lattices, imports numba, h5py,
icet or mpi4py, or creates files.

Units are in the key names: ``_nm``, ``_angstrom``, ``_k`` (kelvin), ``_steps``.  Relative
paths (``model.path``) are resolved against the directory of the YAML file.

Input layout (``segsim run``)::

    system:
      edge_nm: 12.0                # NC edge length, nm (n = round(edge / a) B sites per edge)
      x_cd: 0.25                   # Cd fraction on B sites, [0, 1]
      lattice_constant_angstrom: 5.87   # optional; default: the model's lattice constant
      pad_sites: null              # optional; outside layers around the NC (default reach + 1)
    model:
      kind: cluster_expansion      # registry: segsim.models.MODEL_KINDS
      path: ../potentials/fitted.ce
    run:
      kind: canonical_mc           # registry: RUN_KINDS
      temperature_k: 343.0
      n_steps: 4000000             # trial swaps
      seed: 2021                   # seeds numpy.random.SeedSequence
    output:
      trace_interval_steps: 100000
      snapshot_interval_steps: 1000000   # 0 = no occupation snapshots
      checkpoint_interval_steps: 1000000

Kinetic Monte Carlo (``run.kind: kmc``) replaces ``run`` and ``output`` and adds two
optional sections::

    system:
      ...
      vacancy_fraction: 0.0        # optional: initial internal B vacancies (fraction of NC sites)
    run:
      kind: kmc
      temperature_k: 298.0
      duration_days: 14.0          # simulated time; or duration_s
      seed: 2021
    kinetics:                      # optional: overrides of potentials/kinetics.yaml
      defaults: ../potentials/kinetics.yaml   # optional; the shipped file by default
      e_kra_cd_ev: 0.70            # any of segsim.config.KINETIC_PARAMETERS
      expulsion: true              # event switches: hop, expulsion, recession
    passivation:
      ligand: ddabr                # a name in the ligand library, or a mapping
                                   # {name, theta, ...} defining a ligand
      library: ../potentials/ligands.yaml     # optional; the shipped library by default
    output:
      frame_interval_days: 0.1     # or frame_interval_s: simulated time between frames
      snapshot_every_frames: 10    # occupation snapshot every N frames (0 = none)
      checkpoint_every_frames: 1   # checkpoint every N frames (always at the end)

Where a key exists in two units (``duration_days`` / ``duration_s``) give exactly one.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from segsim.params import ligands as _ligands
from segsim.params.files import (
    DEFAULT_KINETICS,
    DEFAULT_LIGANDS,
    POTENTIALS_DIR,
    ConfigError,
    read_yaml,
)
from segsim.params.rp import RPEnergetics, load_rp_defaults
from segsim.units import SECONDS_PER_DAY

#: Model kinds known to :func:`segsim.models.load_model` (kept here as names only).
MODEL_KINDS: tuple[str, ...] = ("cluster_expansion",)

#: Run kinds: what ``segsim run`` can do.
RUN_KINDS: tuple[str, ...] = ("canonical_mc", "kmc")

#: Numeric KMC rate parameters (keys of ``potentials/kinetics.yaml`` and of ``kinetics:``).
KINETIC_PARAMETERS: tuple[str, ...] = (
    "attempt_frequency_per_s",
    "e_kra_pb_ev",
    "e_kra_cd_ev",
    "de_kra_pb_1cd_ev",
    "de_kra_pb_2cd_ev",
    "de_kra_cd_1cd_ev",
    "de_kra_cd_2cd_ev",
    "e_exp_pb_ev",
    "e_exp_cd_ev",
    "bep_alpha",
    "e_rec_ev",
    "bep_alpha_recession",
    "delta_mu_csbr_ev",
)
#: KMC event switches (``kinetics:`` keys).
KINETIC_SWITCHES: tuple[str, ...] = ("hop", "expulsion", "recession", "regrowth")


@dataclass(frozen=True)
class SystemConfig:
    """The nanocrystal."""

    edge_nm: float  # NC edge length in nm
    x_cd: float  # Cd fraction on B sites, in [0, 1]
    lattice_constant_angstrom: float | None = None  # None: the model's lattice constant
    pad_sites: int | None = None  # outside layers around the NC; None: model reach + 1
    vacancy_fraction: float = 0.0  # initial internal B vacancies, fraction of NC sites


@dataclass(frozen=True)
class ModelConfig:
    """The energy model."""

    kind: str  # one of MODEL_KINDS
    path: Path  # absolute path of the model file


@dataclass(frozen=True)
class RunConfig:
    """What to run."""

    kind: str  # one of RUN_KINDS
    temperature_k: float  # K
    n_steps: int  # trial steps in total
    seed: int  # seed of numpy.random.SeedSequence


@dataclass(frozen=True)
class KMCRunConfig:
    """A kinetic Monte Carlo run."""

    kind: str  # "kmc"
    temperature_k: float  # K
    duration_s: float  # simulated time, s
    seed: int  # seed of numpy.random.SeedSequence


@dataclass(frozen=True)
class KineticsParams:
    """Rate parameters (eV, 1/s) and event switches of the lattice KMC.

    Attributes
    ----------
    attempt_frequency_per_s
        Attempt frequency ``nu`` of every event (1/s).
    e_kra_pb_ev, e_kra_cd_ev
        Kinetically resolved hop barriers of Pb and Cd into a neighbouring vacancy (eV), with
        no Cd on the two sites of the hop's axis next to the path.
    de_kra_pb_1cd_ev, de_kra_pb_2cd_ev, de_kra_cd_1cd_ev, de_kra_cd_2cd_ev
        Change of that KRA (eV) with 1 or 2 Cd on those sites (beyond the vacancy, behind the
        cation; :mod:`segsim.kernels.kmc`); 0 = the KRA does not depend on the environment.
    e_exp_pb_ev, e_exp_cd_ev
        Expulsion barriers of Pb and Cd from the reference surface site (eV).
    bep_alpha
        Bronsted-Evans-Polanyi share of the removal-energy difference in the expulsion
        barrier (dimensionless, ~0.5).
    e_rec_ev
        Intrinsic barrier of the surface exchange V <-> O (recession and regrowth) at zero
        driving force (eV).
    bep_alpha_recession
        Bronsted-Evans-Polanyi share of the grand-canonical recession energy ``dOmega``
        (V -> O) in the recession barrier (dimensionless, in [0, 1]); the regrowth barrier is
        the recession barrier minus ``dOmega``, so detailed balance holds for any share.
    delta_mu_csbr_ev
        CsBr chemical potential of the solution relative to rock-salt CsBr (eV per CsBr unit,
        <= 0; 0: a CsBr-saturated solution).  Added to the CE's ``mu_CsBr``.
    hop, expulsion, recession, regrowth
        Event switches (switch expulsion, recession and regrowth off for a closed system;
        regrowth off makes the recession irreversible).
    """

    attempt_frequency_per_s: float
    e_kra_pb_ev: float
    e_kra_cd_ev: float
    e_exp_pb_ev: float
    e_exp_cd_ev: float
    bep_alpha: float
    e_rec_ev: float
    bep_alpha_recession: float = 0.5
    delta_mu_csbr_ev: float = 0.0
    de_kra_pb_1cd_ev: float = 0.0
    de_kra_pb_2cd_ev: float = 0.0
    de_kra_cd_1cd_ev: float = 0.0
    de_kra_cd_2cd_ev: float = 0.0
    hop: bool = True
    expulsion: bool = True
    recession: bool = True
    regrowth: bool = True

    def replace(self, **changes: Any) -> KineticsParams:
        """Return a copy with some fields changed."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """Return the parameters as plain data."""
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class KineticsConfig:
    """KMC rate parameters after merging the defaults file and the input's overrides."""

    defaults: Path  # the defaults file used
    params: KineticsParams

    def flat(self) -> dict[str, Any]:
        """Return the ``kinetics:`` section as written in a resolved input."""
        return {"defaults": str(self.defaults), **self.params.to_dict()}


@dataclass(frozen=True)
class PassivationConfig:
    """The ligand shell: a resolved :class:`segsim.params.ligands.Ligand` and its library."""

    ligand: Any  # segsim.params.ligands.Ligand
    library: Path


@dataclass(frozen=True)
class KMCOutputConfig:
    """What a KMC run writes and how often (in simulated time)."""

    frame_interval_s: float
    snapshot_every_frames: int = 0  # 0: no snapshots
    checkpoint_every_frames: int = 1


@dataclass(frozen=True)
class OutputConfig:
    """What to write and how often (in steps)."""

    trace_interval_steps: int
    snapshot_interval_steps: int = 0  # 0: no snapshots
    checkpoint_interval_steps: int = 0  # 0: only at the end


@dataclass(frozen=True)
class SynthesisConfig:
    """How the NC is made before the KMC starts (issue 5 protocol, :mod:`segsim.rp`).

    Random Cd, then (with probability ``rp_probability``) one RP zone under a random face,
    then canonical MC of the Cd arrangement at ``temperature_k`` for ``mc_sweeps`` trial
    swaps per cation site with the RP term present, then a quench to the run temperature.
    """

    rp_probability: float
    rp_thickness_layers: int
    rp_width_fraction: float
    temperature_k: float
    mc_sweeps: int


@dataclass(frozen=True)
class SimulationConfig:
    """A whole validated input file."""

    system: SystemConfig
    model: ModelConfig
    run: RunConfig | KMCRunConfig
    output: OutputConfig | KMCOutputConfig
    kinetics: KineticsConfig | None = None  # KMC only
    passivation: PassivationConfig | None = None  # KMC only
    source: str = "<dict>"  # the file it came from
    rp: Any = None  # KMC only: segsim.rp.RPEnergetics
    synthesis: SynthesisConfig | None = None  # KMC only: None = random Cd, no RP domains

    def to_dict(self) -> dict[str, Any]:
        """Return the resolved configuration as plain YAML-able data."""
        out: dict[str, Any] = {}
        for f in ("system", "model", "run", "output", "kinetics", "passivation", "rp", "synthesis"):
            obj = getattr(self, f)
            if obj is None:
                continue
            sec = obj.flat() if isinstance(obj, KineticsConfig) else dataclasses.asdict(obj)
            out[f] = {k: (str(v) if isinstance(v, Path) else v) for k, v in sec.items()}
        return out

    def to_yaml(self) -> str:
        """Return the resolved configuration as YAML text (stored in result files)."""
        return yaml.safe_dump(self.to_dict(), sort_keys=False)


# --------------------------------------------------------------------------- validation
_Check = Callable[[Any], str | None]


def _positive(v: Any) -> str | None:
    return None if v > 0 else f"must be > 0 (got {v})"


def _non_negative(v: Any) -> str | None:
    return None if v >= 0 else f"must be >= 0 (got {v})"


def _tilt_angle(v: Any) -> str | None:
    return None if 0.0 <= v < 30.0 else f"must be in [0, 30) degrees (got {v})"


def _non_positive(v: Any) -> str | None:
    return None if -math.inf < v <= 0 else f"must be finite and <= 0 (got {v})"


def _unit_interval(v: Any) -> str | None:
    return None if 0.0 <= v <= 1.0 else f"must be in [0, 1] (got {v})"


def _one_of(options: tuple[str, ...]) -> _Check:
    def check(v: Any) -> str | None:
        return None if v in options else f"must be one of {list(options)} (got {v!r})"

    return check


@dataclass(frozen=True)
class _Field:
    type: type
    required: bool = True
    default: Any = None
    check: _Check | None = None
    nullable: bool = False
    item: Any = None  # for list fields: element type (float, int, str) or a nested _Field


def _list_of(
    item: Any, *, required: bool = True, default: Any = None, check: _Check | None = None
) -> _Field:
    """Return a list field whose elements are ``item`` (a type or a nested list field)."""
    return _Field(list, required, default, check, item=item)


_SCHEMA: dict[str, dict[str, _Field]] = {
    "system": {
        "edge_nm": _Field(float, check=_positive),
        "x_cd": _Field(float, check=_unit_interval),
        "lattice_constant_angstrom": _Field(float, False, None, _positive, nullable=True),
        "pad_sites": _Field(int, False, None, _positive, nullable=True),
        "vacancy_fraction": _Field(float, False, 0.0, _unit_interval),
    },
    "model": {
        "kind": _Field(str, check=_one_of(MODEL_KINDS)),
        "path": _Field(str),
    },
    "run": {
        "kind": _Field(str, check=_one_of(RUN_KINDS)),
        "temperature_k": _Field(float, check=_positive),
        "n_steps": _Field(int, check=_non_negative),
        "seed": _Field(int, check=_non_negative),
    },
    "output": {
        "trace_interval_steps": _Field(int, check=_positive),
        "snapshot_interval_steps": _Field(int, False, 0, _non_negative),
        "checkpoint_interval_steps": _Field(int, False, 0, _non_negative),
    },
}

_TYPE_NAMES = {
    float: "a number",
    int: "an integer",
    str: "a string",
    dict: "a mapping",
    bool: "true or false",
}

#: Sections and keys of a KMC input that differ from the canonical-MC layout.
_KMC_SCHEMA: dict[str, dict[str, _Field]] = {
    "system": _SCHEMA["system"],
    "model": _SCHEMA["model"],
    "run": {
        "kind": _Field(str, check=_one_of(RUN_KINDS)),
        "temperature_k": _Field(float, check=_positive),
        "duration_days": _Field(float, False, None, _positive, nullable=True),
        "duration_s": _Field(float, False, None, _positive, nullable=True),
        "seed": _Field(int, check=_non_negative),
    },
    "kinetics": {
        "defaults": _Field(str, False, None, nullable=True),
        "attempt_frequency_per_s": _Field(float, False, None, _positive, nullable=True),
        "e_kra_pb_ev": _Field(float, False, None, _non_negative, nullable=True),
        "e_kra_cd_ev": _Field(float, False, None, _non_negative, nullable=True),
        "de_kra_pb_1cd_ev": _Field(float, False, None, nullable=True),
        "de_kra_pb_2cd_ev": _Field(float, False, None, nullable=True),
        "de_kra_cd_1cd_ev": _Field(float, False, None, nullable=True),
        "de_kra_cd_2cd_ev": _Field(float, False, None, nullable=True),
        "e_exp_pb_ev": _Field(float, False, None, _non_negative, nullable=True),
        "e_exp_cd_ev": _Field(float, False, None, _non_negative, nullable=True),
        "bep_alpha": _Field(float, False, None, _unit_interval, nullable=True),
        "e_rec_ev": _Field(float, False, None, _non_negative, nullable=True),
        "bep_alpha_recession": _Field(float, False, None, _unit_interval, nullable=True),
        "delta_mu_csbr_ev": _Field(float, False, None, _non_positive, nullable=True),
        "hop": _Field(bool, False, None, nullable=True),
        "expulsion": _Field(bool, False, None, nullable=True),
        "recession": _Field(bool, False, None, nullable=True),
        "regrowth": _Field(bool, False, None, nullable=True),
    },
    "passivation": {
        "ligand": _Field(object),
        "library": _Field(str, False, None, nullable=True),
    },
    "rp": {
        "defaults": _Field(str, False, None, nullable=True),
        "eps_rp_ev": _Field(float, False, None, nullable=True),
        "eta_ev": _Field(float, False, None, nullable=True),
        "j_rp_ev": _Field(float, False, None, nullable=True),
        "e_rp_a_ev": _Field(float, False, None, _non_negative, nullable=True),
    },
    "synthesis": {
        "rp_probability": _Field(float, False, None, _unit_interval, nullable=True),
        "rp_thickness_layers": _Field(int, False, None, _positive, nullable=True),
        "rp_width_fraction": _Field(
            float,
            False,
            None,
            lambda v: None if 0 < v <= 1 else f"must be in (0, 1] (got {v})",
            nullable=True,
        ),
        "temperature_k": _Field(float, False, None, _positive, nullable=True),
        "mc_sweeps": _Field(int, False, None, _non_negative, nullable=True),
    },
    "output": {
        "frame_interval_days": _Field(float, False, None, _positive, nullable=True),
        "frame_interval_s": _Field(float, False, None, _positive, nullable=True),
        "snapshot_every_frames": _Field(int, False, 0, _non_negative),
        "checkpoint_every_frames": _Field(int, False, 1, _positive),
    },
}


def _coerce(value: Any, ftype: type, source: str, key: str, item: Any = None) -> Any:
    if ftype is list:
        if not isinstance(value, list | tuple) or not value:
            raise ConfigError(source, key, f"must be a non-empty list (got {value!r})")
        if isinstance(item, _Field):
            return tuple(
                _coerce(v, item.type, source, f"{key}[{i}]", item.item) for i, v in enumerate(value)
            )
        return tuple(_coerce(v, item, source, f"{key}[{i}]") for i, v in enumerate(value))
    if ftype is object:
        return value
    if ftype is bool:
        if not isinstance(value, bool):
            raise ConfigError(source, key, f"must be true or false (got {value!r})")
        return value
    if ftype is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(source, key, f"must be a number (got {value!r})")
        if not math.isfinite(value):  # inf and nan are bad input everywhere
            raise ConfigError(source, key, f"must be a finite number (got {value!r})")
        return float(value)
    if ftype is int:
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer():
                return int(value)
            raise ConfigError(source, key, f"must be an integer (got {value!r})")
        return value
    if not isinstance(value, ftype):
        raise ConfigError(source, key, f"must be {_TYPE_NAMES[ftype]} (got {value!r})")
    return dict(value) if ftype is dict else value


def _section(
    data: Mapping[str, Any],
    name: str,
    source: str,
    schema_table: Mapping[str, Mapping[str, _Field]] | None = None,
) -> dict[str, Any]:
    schema = (schema_table or _SCHEMA)[name]
    raw = data.get(name)
    if raw is None:
        raise ConfigError(source, name, f"missing section; it needs keys {sorted(schema)}")
    if not isinstance(raw, Mapping):
        raise ConfigError(source, name, f"must be a mapping with keys {sorted(schema)}")
    unknown = sorted(set(raw) - set(schema))
    if unknown:
        raise ConfigError(
            source, f"{name}.{unknown[0]}", f"unknown key; allowed keys: {sorted(schema)}"
        )
    out: dict[str, Any] = {}
    for key, field in schema.items():
        dotted = f"{name}.{key}"
        if key not in raw:
            if field.required:
                raise ConfigError(source, dotted, "missing required key")
            out[key] = field.default
            continue
        value = raw[key]
        if value is None and field.nullable:
            out[key] = None
            continue
        value = _coerce(value, field.type, source, dotted, field.item)
        if field.check is not None:
            problem = field.check(value)
            if problem:
                raise ConfigError(source, dotted, problem)
        out[key] = value
    return out


def from_dict(
    data: Any, *, source: str = "<dict>", base_dir: Path | None = None
) -> SimulationConfig:
    """Validate a parsed input and return the frozen configuration.

    Parameters
    ----------
    data
        The parsed YAML document.
    source
        Name used in error messages.
    base_dir
        Directory that relative paths are resolved against (default: current directory).
    """
    if not isinstance(data, Mapping):
        raise ConfigError(source, "", f"must be a YAML mapping with sections {sorted(_SCHEMA)}")
    run_raw = data.get("run")
    if isinstance(run_raw, Mapping) and run_raw.get("kind") == "kmc":
        return _kmc_from_dict(data, source, base_dir)
    unknown = sorted(set(data) - set(_SCHEMA))
    if unknown:
        hint = " (kinetics/passivation need run.kind: kmc)" if unknown[0] in _KMC_SCHEMA else ""
        raise ConfigError(source, unknown[0], f"unknown section; allowed: {sorted(_SCHEMA)}{hint}")
    system = _section(data, "system", source)
    model = _section(data, "model", source)
    run = _section(data, "run", source)
    output = _section(data, "output", source)

    model_path = _model_path(model, source, base_dir)
    for key in ("snapshot_interval_steps", "checkpoint_interval_steps"):
        v = output[key]
        if v and v % output["trace_interval_steps"]:
            raise ConfigError(
                source,
                f"output.{key}",
                f"must be 0 or a multiple of output.trace_interval_steps "
                f"({output['trace_interval_steps']}); got {v}",
            )
    return SimulationConfig(
        system=SystemConfig(**system),
        model=ModelConfig(kind=model["kind"], path=model_path),
        run=RunConfig(**run),
        output=OutputConfig(**output),
        source=source,
    )


def _resolve_path(p: str, base_dir: Path | None) -> Path:
    q = Path(p).expanduser()
    if not q.is_absolute():
        q = (base_dir if base_dir is not None else Path.cwd()) / q
    return q.resolve()


def _model_path(model: Mapping[str, Any], source: str, base_dir: Path | None) -> Path:
    path = _resolve_path(model["path"], base_dir)
    if not path.is_file():
        raise ConfigError(source, "model.path", f"file not found: {path}")
    return path


def _in_seconds(sec: Mapping[str, Any], name: str, stem: str, source: str) -> float:
    """Return ``<stem>_s`` or ``<stem>_days`` (exactly one given) in seconds."""
    days, secs = sec[f"{stem}_days"], sec[f"{stem}_s"]
    if (days is None) == (secs is None):
        raise ConfigError(
            source, f"{name}.{stem}_days", f"give exactly one of {stem}_days and {stem}_s"
        )
    return float(secs) if secs is not None else float(days) * SECONDS_PER_DAY


def _table_value(src: str, key: str, table: Any, folder: Path) -> float:
    """Return ``kmc.<key>.value`` of the barrier table ``folder / table`` (a finite number)."""
    dotted = f"parameters.{key}.table"
    if not isinstance(table, str) or not table:
        raise ConfigError(src, dotted, "must name the barrier table file (e.g. barriers.yaml)")
    tpath = folder / table
    doc = read_yaml(tpath)
    entry = (doc.get("kmc") or {}).get(key) if isinstance(doc, Mapping) else None
    value = entry.get("value") if isinstance(entry, Mapping) else None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ConfigError(
            str(tpath), f"kmc.{key}.value", f"missing or not a finite number (read by {src})"
        )
    return float(value)


def load_kinetics_defaults(path: str | Path) -> dict[str, float]:
    """Read a kinetics defaults file (``potentials/kinetics.yaml`` layout).

    The file has a ``parameters`` mapping whose entries are numbers or mappings with a
    ``value`` (and free-form ``source``/``note`` text), or a ``table`` naming the barrier table
    (``barriers.yaml``, relative to the file) whose ``kmc.<name>.value`` is the value
    (computed barriers, issue 27).  Returns ``{name: value}`` for every
    name in :data:`KINETIC_PARAMETERS`; a parameter with a default in :class:`KineticsParams`
    (``bep_alpha_recession``, ``delta_mu_csbr_ev``, added later) may be missing and then
    takes that default.
    """
    src = str(path)
    data = read_yaml(path)
    params = data.get("parameters") if isinstance(data, Mapping) else None
    if not isinstance(params, Mapping):
        raise ConfigError(
            src, "parameters", f"missing mapping with keys {list(KINETIC_PARAMETERS)}"
        )
    unknown = sorted(set(params) - set(KINETIC_PARAMETERS))
    if unknown:
        raise ConfigError(
            src, f"parameters.{unknown[0]}", f"unknown key; allowed: {list(KINETIC_PARAMETERS)}"
        )
    out: dict[str, float] = {}
    optional = {
        f.name: f.default
        for f in dataclasses.fields(KineticsParams)
        if f.default is not dataclasses.MISSING and f.name in KINETIC_PARAMETERS
    }
    for key in KINETIC_PARAMETERS:
        if key not in params and key in optional:  # added later: older files may omit it
            out[key] = float(optional[key])
            continue
        entry = params.get(key)
        if isinstance(entry, Mapping) and "table" in entry:
            out[key] = _table_value(src, key, entry["table"], Path(path).parent)
            dotted = f"parameters.{key}.table"
        else:
            value = entry.get("value") if isinstance(entry, Mapping) else entry
            dotted = f"parameters.{key}" + (".value" if isinstance(entry, Mapping) else "")
            out[key] = _coerce(value, float, src, dotted)
        check = _KMC_SCHEMA["kinetics"][key].check
        problem = check(out[key]) if check else None
        if problem:
            raise ConfigError(src, dotted, problem)
    return out


def _kmc_from_dict(data: Mapping[str, Any], source: str, base_dir: Path | None) -> SimulationConfig:
    required = ("system", "model", "run", "output")
    unknown = sorted(set(data) - set(_KMC_SCHEMA))
    if unknown:
        raise ConfigError(source, unknown[0], f"unknown section; allowed: {sorted(_KMC_SCHEMA)}")
    sec = {
        name: _section(data, name, source, _KMC_SCHEMA)
        for name in _KMC_SCHEMA
        if name in required or data.get(name) is not None
    }
    run, out = sec["run"], sec["output"]
    model_path = _model_path(sec["model"], source, base_dir)

    kin = sec.get("kinetics") or dict.fromkeys(_KMC_SCHEMA["kinetics"])
    defaults_path = (
        _resolve_path(kin["defaults"], base_dir) if kin["defaults"] else DEFAULT_KINETICS
    )
    values: dict[str, Any] = dict(load_kinetics_defaults(defaults_path))
    for key in (*KINETIC_PARAMETERS, *KINETIC_SWITCHES):
        if kin[key] is not None:
            values[key] = kin[key]

    pas = sec.get("passivation") or {"ligand": "pristine", "library": None}
    library_path = _resolve_path(pas["library"], base_dir) if pas["library"] else DEFAULT_LIGANDS
    library = _ligands.load_library(library_path)
    ligand = _ligands.resolve_ligand(
        pas["ligand"], library, source=source, key="passivation.ligand"
    )
    rp, synthesis = _rp_and_synthesis(sec.get("rp"), sec.get("synthesis"), base_dir)

    return SimulationConfig(
        system=SystemConfig(**sec["system"]),
        model=ModelConfig(kind=sec["model"]["kind"], path=model_path),
        run=KMCRunConfig(
            kind="kmc",
            temperature_k=run["temperature_k"],
            duration_s=_in_seconds(run, "run", "duration", source),
            seed=run["seed"],
        ),
        output=KMCOutputConfig(
            frame_interval_s=_in_seconds(out, "output", "frame_interval", source),
            snapshot_every_frames=out["snapshot_every_frames"],
            checkpoint_every_frames=out["checkpoint_every_frames"],
        ),
        kinetics=KineticsConfig(defaults=defaults_path, params=KineticsParams(**values)),
        passivation=PassivationConfig(ligand=ligand, library=library_path),
        source=source,
        rp=rp,
        synthesis=synthesis,
    )


def _rp_and_synthesis(
    rp_sec: Mapping[str, Any] | None, syn_sec: Mapping[str, Any] | None, base_dir: Path | None
) -> tuple[Any, SynthesisConfig | None]:
    """Merge ``potentials/rp.yaml`` (or ``rp.defaults``) with the input's overrides."""
    rp_sec = rp_sec or {}
    path = _resolve_path(rp_sec["defaults"], base_dir) if rp_sec.get("defaults") else None
    energetics, seeding, syn = load_rp_defaults(path)
    fields = {k: getattr(energetics, k) for k in RPEnergetics.__dataclass_fields__}
    fields.update({k: rp_sec[k] for k in fields if rp_sec.get(k) is not None})
    rp = RPEnergetics(**fields)
    if syn_sec is None:
        return rp, None

    def pick(key: str, default: Any) -> Any:
        return syn_sec[key] if syn_sec.get(key) is not None else default

    return rp, SynthesisConfig(
        rp_probability=pick("rp_probability", seeding.probability),
        rp_thickness_layers=pick("rp_thickness_layers", seeding.thickness_layers),
        rp_width_fraction=pick("rp_width_fraction", seeding.width_fraction),
        temperature_k=pick("temperature_k", syn["temperature_k"]),
        mc_sweeps=pick("mc_sweeps", syn["mc_sweeps"]),
    )


# --------------------------------------------------------------------------- training inputs
#: Reference calculators known to :mod:`segsim.training.calculators` (names only).
CALCULATOR_KINDS: tuple[str, ...] = ("chgnet", "cp2k", "standin")
OPTIMIZERS: tuple[str, ...] = ("FIRE", "BFGS")
#: Start geometries of the reference relaxation (segsim.training.reference.STARTS).
RELAX_STARTS: tuple[str, ...] = ("ideal", "tilted", "tilted_anneal", "untilted")
RELAX_AGGREGATES: tuple[str, ...] = ("min", "mean")
FIT_METHODS: tuple[str, ...] = ("least-squares", "ardr", "lasso", "bayesian-ridge", "rfe")


@dataclass(frozen=True)
class StructuresConfig:
    """Which reference structures to generate (see :mod:`segsim.training.structures`)."""

    nc_edges: tuple[int, ...]  # B sites per NC edge
    compositions: tuple[float, ...]  # extra uniform compositions x
    n_random: int  # random (uniform) arrangements per NC at x = 0.25
    n_profiles: int  # intermediate layer profiles per NC
    vacancy_structures: int  # NCs with internal B vacancies
    vacancy_pairs: bool  # divacancies, edge and corner vacancies of pure NCs (n >= 4)
    bulk_sizes: tuple[int, ...]  # periodic bulk cells (B sites per edge)
    bulk_compositions: tuple[float, ...]
    rp_edges: tuple[int, ...]  # NCs with a Ruddlesden-Popper fault
    seed: int
    a_angstrom: float  # lattice constant of the unrelaxed structures and of the CE
    vacuum_angstrom: float  # vacuum around NCs
    pad_sites: int  # outside layers of the CE grid around each NC
    surface_pit_edges: tuple[int, ...] = ()  # NCs with receded surface sites (pits, n >= 4)


@dataclass(frozen=True)
class CalculatorConfig:
    """Reference calculator and relaxation criteria."""

    kind: str  # one of CALCULATOR_KINDS
    settings: dict[str, Any]  # passed to the calculator factory
    optimizer: str  # one of OPTIMIZERS
    fmax_ev_per_angstrom: float  # converged when every force is below this
    max_steps: int  # optimizer steps per structure
    rattle_angstrom: float = 0.0  # random displacement before relaxing (0: ideal start)
    n_starts: int = 1  # rattled starts per structure; the lowest energy is kept
    aggregate: str = "min"  # one of RELAX_AGGREGATES: lowest or mean energy of the starts
    jobs: int = 1  # starts relaxed at once in worker processes (not part of the provenance)
    start: str = "ideal"  # one of RELAX_STARTS: ideal positions, or the a-a-c+ tilt first
    # a-a-c+ tilt angles about x and y / about z (start: tilted); None: the CHGNet bulk
    # angles of segsim.training.tilt.CHGNET_BULK_TILT_DEGREES
    tilt_antiphase_degrees: float | None = None
    tilt_inphase_degrees: float | None = None
    # MD anneal before the optimizer (start: tilted_anneal); None: the RelaxSettings defaults
    anneal_kelvin: float | None = None
    anneal_femtoseconds: float | None = None


@dataclass(frozen=True)
class FitConfig:
    """Cluster-expansion fit (icet + trainstation)."""

    cutoff_candidates: tuple[tuple[float, ...], ...]  # Angstrom, per order (pairs first)
    fit_methods: tuple[str, ...]
    n_splits: int  # k-fold cross-validation
    seed: int
    difference_weight: float = 0.0  # weight of same-crystal difference rows (0 = off)
    separate_vacancy: bool = False  # four-species CE (Pb, Cd, V, X) instead of (Pb, Cd, X)
    # pair interactions of the vacancy vanish beyond this distance (Angstrom; needs
    # separate_vacancy); None: unconstrained
    vacancy_pair_cutoff_angstrom: float | None = None
    # the species (Cd, V, X) whose pair interaction with the vacancy that cutoff removes
    vacancy_pair_partners: tuple[str, ...] = ("Cd", "V", "X")
    # structure-name pattern (fnmatch) -> factor >= 0 on that structure's fit row (first
    # matching pattern decides; 0: not fitted, still cross-validated and reported)
    structure_weights: dict[str, float] = dataclasses.field(default_factory=dict)
    # many-body vacancy terms ("V-V-V", "V-V-X", "V-V-V-V"): the only interactions the
    # clusters of three or more sites carry (segsim.training.fit.vacancy_cluster_constraints;
    # needs separate_vacancy and a triplet cutoff); None: many-body terms unconstrained
    vacancy_cluster_terms: tuple[str, ...] | None = None
    # energy noise of one reference structure (eV per NC / per periodic cell) that no CE can
    # fit; both set: rows weighted by N_B / sqrt(sem^2 + noise^2) (GLS); None: per B site
    noise_nc_ev: float | None = None
    noise_bulk_ev: float | None = None
    check_edge_nm: float = 12.0  # extrapolation check: MC of one NC of this edge (nm)
    check_steps: int = 4_000_000  # its trial swaps (0: no check)
    # MC validation (segsim.training.mc_validation): cells such as "bulk4", "nc6",
    # "bulk4_x0.5" whose CE-MC result the reference calculator checks; empty: off
    mc_validation: tuple[str, ...] = ()
    mc_validation_x: float = 0.25  # their Cd fraction where the entry gives none
    mc_validation_sweeps: int = 2000  # MC trial swaps per cation site
    mc_validation_temperature_k: float = 343.0  # MC temperature (K)
    # MC training rounds: before the final fit, this many times fit, run the MC of the
    # mc_validation cells and add both arrangements to the training set (0: off)
    mc_rounds: int = 0

    @property
    def structure_noise_ev(self) -> tuple[float, float] | None:
        """``(noise_nc_ev, noise_bulk_ev)`` for the fit's noise weights, or None (off)."""
        if self.noise_nc_ev is None or self.noise_bulk_ev is None:
            return None
        return (self.noise_nc_ev, self.noise_bulk_ev)


@dataclass(frozen=True)
class TrainConfig:
    """A whole validated ``segsim train`` input."""

    structures: StructuresConfig
    calculator: CalculatorConfig
    fit: FitConfig
    database: Path  # ASE database of reference results (created if missing)
    output_dir: Path  # where the .ce, parameters and report go
    source: str = "<dict>"


#: A validation cell entry: ``bulk4`` / ``nc6`` (the default Cd fraction) or ``bulk4_x0.5``.
CELL_PATTERN = re.compile(r"(bulk|nc)(\d+)(?:_x(\d*\.?\d+))?")


def parse_cell(entry: str, default_x: float) -> tuple[str, int, float]:
    """Return ``(kind, n, x_cd)`` of a validation cell entry (:data:`CELL_PATTERN`).

    Raises
    ------
    ValueError
        One line saying what is allowed, if ``entry`` is not ``bulk<n>`` / ``nc<n>`` with
        ``n >= 2``, optionally followed by ``_x<fraction in [0, 1]>``.
    """
    m = CELL_PATTERN.fullmatch(str(entry))
    x = float(m.group(3)) if m is not None and m.group(3) else float(default_x)
    if m is None or int(m.group(2)) < 2 or not 0.0 <= x <= 1.0:
        raise ValueError(
            f"entries must be 'bulk<n>' or 'nc<n>' with n >= 2, optionally '_x<Cd fraction>' "
            f"(e.g. bulk4_x0.5; got {entry!r})"
        )
    return m.group(1), int(m.group(2)), x


def _validation_cells(cells: Any) -> str | None:
    """Check MC validation cells (``bulk4``, ``nc6``, ``bulk4_x0.5``; no repeats)."""
    try:
        for c in cells:
            parse_cell(c, 0.25)
    except ValueError as exc:
        return str(exc)
    if len(set(cells)) != len(cells):
        return "entries must be distinct"
    return None


def _vacancy_partners(partners: Any) -> str | None:
    """Check ``fit.vacancy_pair_partners``: distinct species among Cd, V, X."""
    allowed = ("Cd", "V", "X")
    bad = [p for p in partners if p not in allowed]
    if bad:
        return f"entries must be among {list(allowed)} (got {bad[0]!r})"
    if len(set(partners)) != len(partners):
        return "entries must be distinct"
    return None


#: Species of a many-body vacancy term (``fit.vacancy_cluster_terms``,
#: :func:`segsim.training.fit.vacancy_cluster_constraints`); Pb is the reference.
VACANCY_CLUSTER_SPECIES: tuple[str, str, str] = ("Cd", "V", "X")


def parse_cluster_term(term: str) -> tuple[str, ...]:
    """Return the sorted species of a many-body vacancy term such as ``"V-V-X"``.

    Parameters
    ----------
    term
        Species joined by ``-``, each among :data:`VACANCY_CLUSTER_SPECIES`, at least three
        of them and at least one ``V`` (the order does not matter).

    Returns
    -------
    tuple of str
        The species, sorted (``("V", "V", "X")``).

    Raises
    ------
    ValueError
        If the term is not of that form.
    """
    parts = tuple(p.strip() for p in str(term).split("-"))
    bad = [p for p in parts if p not in VACANCY_CLUSTER_SPECIES]
    if bad:
        raise ValueError(
            f"vacancy cluster term {term!r}: species must be among {VACANCY_CLUSTER_SPECIES} "
            f"(Pb is the reference; got {bad[0]!r})"
        )
    if len(parts) < 3:
        raise ValueError(f"vacancy cluster term {term!r}: needs three or more sites")
    if "V" not in parts:
        raise ValueError(f"vacancy cluster term {term!r}: needs a vacancy V")
    return tuple(sorted(parts))


def _vacancy_cluster_terms(terms: Any) -> str | None:
    """Check ``fit.vacancy_cluster_terms``: distinct terms such as ``V-V-V``."""
    try:
        parsed = [parse_cluster_term(t) for t in terms]
    except ValueError as exc:
        return str(exc)
    if len(set(parsed)) != len(parsed):
        return "entries must be distinct (the order of the species does not matter)"
    return None


def _structure_weights(weights: Any) -> str | None:
    """Check ``fit.structure_weights``: structure-name patterns -> numbers >= 0."""
    for pattern, w in weights.items():
        if not isinstance(pattern, str) or not pattern:
            return f"keys must be structure-name patterns (strings; got {pattern!r})"
        if isinstance(w, bool) or not isinstance(w, int | float) or not 0.0 <= w < math.inf:
            return f"the factor of {pattern!r} must be a number >= 0 (got {w!r})"
    return None


_TRAIN_SCHEMA: dict[str, dict[str, _Field]] = {
    "structures": {
        "nc_edges": _list_of(int, check=lambda v: None if min(v) >= 2 else "must be >= 2"),
        "compositions": _list_of(
            float, check=lambda v: _unit_interval(min(v)) or _unit_interval(max(v))
        ),
        "n_random": _Field(int, False, 3, _non_negative),
        "n_profiles": _Field(int, False, 2, _non_negative),
        "vacancy_structures": _Field(int, False, 4, _non_negative),
        "vacancy_pairs": _Field(bool, False, False),
        "bulk_sizes": _list_of(int, required=False, default=(2,)),
        "bulk_compositions": _list_of(float, required=False, default=(0.0, 0.125, 0.25, 0.5, 1.0)),
        "rp_edges": _list_of(int, required=False, default=(4,)),
        "surface_pit_edges": _list_of(
            int,
            required=False,
            default=(),
            check=lambda v: next((f"must be >= 4 (got {n})" for n in v if n < 4), None),
        ),
        "seed": _Field(int, False, 2021, _non_negative),
        "a_angstrom": _Field(float, False, 5.87, _positive),
        "vacuum_angstrom": _Field(float, False, 8.0, _positive),
        "pad_sites": _Field(int, False, 3, _positive),
    },
    "calculator": {
        "kind": _Field(str, check=_one_of(CALCULATOR_KINDS)),
        "settings": _Field(dict, False, None, nullable=True),
        "optimizer": _Field(str, False, "FIRE", _one_of(OPTIMIZERS)),
        "fmax_ev_per_angstrom": _Field(float, False, 0.01, _positive),
        "max_steps": _Field(int, False, 1000, _non_negative),
        "rattle_angstrom": _Field(float, False, 0.0, _non_negative),
        "n_starts": _Field(int, False, 1, _positive),
        "aggregate": _Field(str, False, "min", _one_of(RELAX_AGGREGATES)),
        "jobs": _Field(int, False, 1, _positive),
        "start": _Field(str, False, "ideal", _one_of(RELAX_STARTS)),
        "tilt_antiphase_degrees": _Field(float, False, None, _tilt_angle, nullable=True),
        "tilt_inphase_degrees": _Field(float, False, None, _tilt_angle, nullable=True),
        "anneal_kelvin": _Field(float, False, None, _non_negative, nullable=True),
        "anneal_femtoseconds": _Field(float, False, None, _non_negative, nullable=True),
    },
    "fit": {
        "cutoff_candidates": _list_of(_list_of(float)),
        "fit_methods": _list_of(
            str,
            check=lambda v: next(
                (
                    f"must be among {list(FIT_METHODS)} (got {m!r})"
                    for m in v
                    if m not in FIT_METHODS
                ),
                None,
            ),
        ),
        "n_splits": _Field(int, False, 10, lambda v: None if v >= 2 else "must be >= 2"),
        "seed": _Field(int, False, 2021, _non_negative),
        "difference_weight": _Field(float, False, 0.0, _non_negative),
        "separate_vacancy": _Field(bool, False, False),
        "vacancy_pair_cutoff_angstrom": _Field(float, False, None, _positive, nullable=True),
        "vacancy_pair_partners": _list_of(
            str, required=False, default=("Cd", "V", "X"), check=_vacancy_partners
        ),
        "structure_weights": _Field(dict, False, None, _structure_weights, nullable=True),
        "vacancy_cluster_terms": _Field(
            list, False, None, _vacancy_cluster_terms, nullable=True, item=str
        ),
        "noise_nc_ev": _Field(float, False, None, _positive, nullable=True),
        "noise_bulk_ev": _Field(float, False, None, _positive, nullable=True),
        "check_edge_nm": _Field(float, False, 12.0, _positive),
        "check_steps": _Field(int, False, 4_000_000, _non_negative),
        "mc_validation": _list_of(str, required=False, default=(), check=_validation_cells),
        "mc_validation_x": _Field(float, False, 0.25, _unit_interval),
        "mc_validation_sweeps": _Field(int, False, 2000, _non_negative),
        "mc_validation_temperature_k": _Field(float, False, 343.0, _positive),
        "mc_rounds": _Field(int, False, 0, _non_negative),
    },
    "paths": {
        "database": _Field(str),
        "output_dir": _Field(str),
    },
}


def train_from_dict(
    data: Any, *, source: str = "<dict>", base_dir: Path | None = None
) -> TrainConfig:
    """Validate a parsed ``segsim train`` input and return the frozen configuration."""
    if not isinstance(data, Mapping):
        raise ConfigError(
            source, "", f"must be a YAML mapping with sections {sorted(_TRAIN_SCHEMA)}"
        )
    unknown = sorted(set(data) - set(_TRAIN_SCHEMA))
    if unknown:
        raise ConfigError(source, unknown[0], f"unknown section; allowed: {sorted(_TRAIN_SCHEMA)}")
    sec = {name: _section(data, name, source, _TRAIN_SCHEMA) for name in _TRAIN_SCHEMA}
    base = base_dir if base_dir is not None else Path.cwd()

    def resolve(p: str) -> Path:
        q = Path(p).expanduser()
        return (q if q.is_absolute() else base / q).resolve()

    noise = (sec["fit"]["noise_nc_ev"], sec["fit"]["noise_bulk_ev"])
    if (noise[0] is None) != (noise[1] is None):
        missing = "fit.noise_bulk_ev" if noise[1] is None else "fit.noise_nc_ev"
        raise ConfigError(source, missing, "must be set with the other noise (or neither)")
    if (
        sec["fit"]["vacancy_pair_cutoff_angstrom"] is not None
        and not sec["fit"]["separate_vacancy"]
    ):
        raise ConfigError(
            source,
            "fit.vacancy_pair_cutoff_angstrom",
            "needs fit.separate_vacancy: true (the vacancy a species of its own), or null",
        )
    if (
        tuple(sec["fit"]["vacancy_pair_partners"]) != ("Cd", "V", "X")
        and sec["fit"]["vacancy_pair_cutoff_angstrom"] is None
    ):
        raise ConfigError(
            source,
            "fit.vacancy_pair_partners",
            "needs fit.vacancy_pair_cutoff_angstrom (the distance beyond which they vanish)",
        )
    terms = sec["fit"]["vacancy_cluster_terms"]
    if terms is not None:
        if not sec["fit"]["separate_vacancy"]:
            raise ConfigError(
                source,
                "fit.vacancy_cluster_terms",
                "needs fit.separate_vacancy: true (the vacancy a species of its own), or null",
            )
        orders = {len(t.split("-")) for t in terms}
        for order in sorted(orders):
            if not any(len(c) >= order - 1 for c in sec["fit"]["cutoff_candidates"]):
                raise ConfigError(
                    source,
                    "fit.vacancy_cluster_terms",
                    f"a term of {order} sites needs a cutoff candidate with {order}-site "
                    f"clusters (a list of {order - 1} cutoffs: pairs, triplets, ...)",
                )
        sec["fit"]["vacancy_cluster_terms"] = tuple(str(t) for t in terms)
    sec["fit"]["structure_weights"] = {
        str(k): float(v) for k, v in (sec["fit"]["structure_weights"] or {}).items()
    }
    if sec["fit"]["mc_rounds"] and not sec["fit"]["mc_validation"]:
        raise ConfigError(source, "fit.mc_rounds", "needs the cells of fit.mc_validation")
    output_dir = resolve(sec["paths"]["output_dir"])
    if output_dir == POTENTIALS_DIR.resolve():
        raise ConfigError(
            source,
            "paths.output_dir",
            f"must not be the shipped data folder {POTENTIALS_DIR} (simulations read it); "
            "write to a folder of your own and copy a new model into potentials/ deliberately",
        )
    calc = dict(sec["calculator"])
    calc["settings"] = dict(calc["settings"] or {})
    return TrainConfig(
        structures=StructuresConfig(**sec["structures"]),
        calculator=CalculatorConfig(**calc),
        fit=FitConfig(**sec["fit"]),
        database=resolve(sec["paths"]["database"]),
        output_dir=output_dir,
        source=source,
    )


def load_train(path: str | Path) -> TrainConfig:
    """Read and validate a ``segsim train`` YAML input file."""
    data = read_yaml(path)
    return train_from_dict(data, source=str(path), base_dir=Path(path).resolve().parent)


def load_any(path: str | Path) -> SimulationConfig | TrainConfig:
    """Read an input of any kind (simulation or training), told apart by its sections."""
    data = read_yaml(path)
    base = Path(path).resolve().parent
    if isinstance(data, Mapping) and "fit" in data:
        return train_from_dict(data, source=str(path), base_dir=base)
    return from_dict(data, source=str(path), base_dir=base)


def load(path: str | Path) -> SimulationConfig:
    """Read and validate a YAML input file.

    Raises
    ------
    ConfigError
        If the file cannot be read or parsed, or any entry is invalid.
    """
    data = read_yaml(path)
    return from_dict(data, source=str(path), base_dir=Path(path).resolve().parent)


def loads_resolved(text: str, *, source: str) -> SimulationConfig:
    """Re-read a resolved configuration stored in a result file (absolute paths)."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError:
        raise ConfigError(
            source, "/metadata/config", "stored configuration is not valid YAML"
        ) from None
    return from_dict(data, source=source)
