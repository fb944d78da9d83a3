"""``segsim reproduce``: the published aging experiment on an ensemble of nanocrystals.

Protocol (Imran et al., Chem. Mater. 2021; ``potentials/aging_targets.yaml``), for every NC
of the ensemble and every one of the six treatments:

1. **Synthesis** (:func:`segsim.synthesis.synthesise`): a cube of edge drawn from
   N(12.1 nm, 1.4 nm), x = 0.25 random Cd; with probability 0.63 one RP zone bordering the
   surface; canonical MC of the Cd arrangement at 343 K with the RP term; quench.
2. **Treatment**: the ligand exchange (2 min) lowers the RP switching barrier of
   surface-adjacent sites while it lasts (``ligands.yaml``); pristine has none.
3. **Aging**: KMC at 298 K for 14 days with the ligand's coverage theta.

The ensemble is *paired*: NC ``i`` has the same edge, Cd arrangement and RP zone under every
treatment (one synthesis batch split six ways, as in the experiment), because its seed comes
from ``SeedSequence(seed).spawn(n_ncs)[i]`` and does not depend on the treatment or on the MPI
rank that runs it.

Output folder::

    reproduce.json          the options (a re-run with other options needs --force)
    ncs/<treatment>_nc<i>.h5   one ordinary segsim result file per NC and treatment
    ensemble.h5             master file: external links /ncs/<treatment>/nc<i> to those
                            files, and the table as datasets under /table
    table.csv, pl_vs_days.png

"Day 0" is the state right after the treatment (the fresh NCs as measured after the exchange
and wash; at t = 0 for pristine).  Every NC file is written by exactly one rank and carries
its own checkpoint, so a stopped ``reproduce`` resumes with the same command: complete files
are read, stopped ones resumed, missing ones run.  This is finer than one file per rank and
lets every segsim tool (``info``, ``plot``, ``export``) open each NC directly.
"""

from __future__ import annotations

import csv
import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from segsim.params.files import POTENTIALS_DIR
from segsim.units import SECONDS_PER_DAY

#: The six treatments of the published study, in the paper's order.
TREATMENTS: tuple[str, ...] = ("pristine", "cs_oleate", "cs_phace", "olabr", "pheabr", "ddabr")
DEFAULT_TARGETS = POTENTIALS_DIR / "aging_targets.yaml"
#: Planck constant times c, in eV nm (PL energies are averaged in eV).
HC_EV_NM = 1239.841984

TABLE_COLUMNS: tuple[str, ...] = (
    "treatment",
    "day",
    "pl_model_nm",
    "pl_published_nm",
    "pl_diff_nm",
    "x_cd",
    "x_cd_std",
    "edge_nm",
    "envelope_edge_nm",
    "envelope_edge_nm_sem",
    "occupied_envelope_edge_nm",
    "occupied_envelope_edge_nm_sem",
    "interior_vacancy_fraction",
    "interior_vacancy_fraction_sem",
    "rp_nc_fraction",
    "a_rp_angstrom",
    "a_pv_angstrom",
    "cubic_fraction",
    "cs_ratio_surface",
    "n_ncs",
)


class ReproduceError(ValueError):
    """Bad options or an output folder made with other options (one line)."""


class Unfinished(RuntimeError):
    """The walltime ran out before every NC run finished (all have checkpoints)."""


@dataclass(frozen=True)
class ReproduceOptions:
    """Options of one ``segsim reproduce`` (units in the names)."""

    # 3 NCs x 6 treatments (15 runs, PEABr shared with OlABr); with the fitted CE and the
    # third calibration a 14-day run of a 12 nm NC is 2e5-5e6 events (studies/kinetics_scan);
    # the CLI default (segsim.cli) repeats this value.
    n_ncs: int = 3
    seed: int = 2021
    duration_days: float = 14.0
    frame_interval_days: float = 0.25
    treatments: tuple[str, ...] = TREATMENTS
    model: str = str(POTENTIALS_DIR / "fitted.ce")
    params: str | None = None  # a `segsim calibrate` parameter file
    edge_mean_nm: float = 12.1
    edge_std_nm: float = 1.4
    x_cd: float = 0.25
    temperature_k: float = 298.0

    def check(self) -> None:
        """Raise :class:`ReproduceError` (one line) for impossible values."""
        if self.n_ncs < 1:
            raise ReproduceError(f"--n-ncs must be >= 1 (got {self.n_ncs})")
        if self.seed < 0:
            raise ReproduceError(f"--seed must be >= 0 (got {self.seed})")
        if not self.duration_days > 0 or not self.frame_interval_days > 0:
            raise ReproduceError("--days and --frame-days must be > 0")
        if not self.edge_mean_nm > 0 or self.edge_std_nm < 0:
            raise ReproduceError("--edge-mean-nm must be > 0 and --edge-std-nm >= 0")
        if not self.treatments:
            raise ReproduceError("--treatments: give at least one")
        bad = [t for t in self.treatments if t not in TREATMENTS]
        if bad:
            raise ReproduceError(f"--treatments: unknown {bad[0]!r}; allowed: {list(TREATMENTS)}")
        if not Path(self.model).is_file():
            raise ReproduceError(f"--model: file not found: {self.model}")
        if self.params is not None and not Path(self.params).is_file():
            raise ReproduceError(f"--params: file not found: {self.params}")


@dataclass(frozen=True)
class Task:
    """One NC under one treatment."""

    treatment: str
    nc: int
    edge_nm: float
    seed: int
    path: str


@dataclass
class NCResult:
    """Per-NC values at the report days (lists indexed like ``days``)."""

    treatment: str
    nc: int
    edge0_nm: float
    days: list[float]
    pl_nm: list[float]
    x_cd: list[float]
    edge_nm: list[float]
    has_rp: list[float]
    a_rp: list[float]
    a_pv: list[float]
    cubic: list[float]
    cs_ratio: list[float] = field(default_factory=list)
    envelope_edge: list[float] = field(default_factory=list)
    occupied_envelope_edge: list[float] = field(default_factory=list)
    interior_vac: list[float] = field(default_factory=list)
    events: int = 0
    wall_s: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)


# ------------------------------------------------------------------------------ inputs
def load_targets(path: str | Path | None = None) -> dict[str, Any]:
    """Read the published aging targets (``potentials/aging_targets.yaml``)."""
    import yaml

    return yaml.safe_load(Path(path or DEFAULT_TARGETS).read_text())


def load_params(path: str | Path | None) -> dict[str, Any]:
    """Read a parameter file of ``segsim calibrate`` (``kinetics``, ``ligands``, ``rp``)."""
    if path is None:
        return {}
    import yaml

    doc = yaml.safe_load(Path(path).read_text()) or {}
    unknown = sorted(set(doc) - {"kinetics", "ligands", "rp", "calibration"})
    if unknown:
        raise ReproduceError(
            f"{path}: {unknown[0]}: unknown section; allowed: calibration, kinetics, ligands, rp"
        )
    return doc


def make_tasks(opts: ReproduceOptions, out_dir: Path) -> list[Task]:
    """Return the task list (the same on every rank): treatments x NCs, NC-major seeds."""
    children = np.random.SeedSequence(opts.seed).spawn(opts.n_ncs)
    per_nc = []
    for child in children:
        rng = np.random.default_rng(child)
        edge = float(max(rng.normal(opts.edge_mean_nm, opts.edge_std_nm), 2.0))
        per_nc.append((edge, int(child.generate_state(1, dtype=np.uint32)[0])))
    return [
        Task(t, i, edge, seed, str(out_dir / "ncs" / f"{t}_nc{i}.h5"))
        for i, (edge, seed) in enumerate(per_nc)
        for t in opts.treatments
    ]


def _ligand_spec(treatment: str, params: dict[str, Any]) -> str | dict[str, Any]:
    """Return the input's ligand entry: the library name, or ``{base, ...overrides}``."""
    over = (params.get("ligands") or {}).get(treatment)
    return {"base": treatment, **over} if over else treatment


def treatment_ligand(treatment: str, params: dict[str, Any]) -> Any:
    """Return the :class:`segsim.params.ligands.Ligand` a treatment runs with under ``params``.

    The library ligand with the parameter file's overrides (a ``segsim calibrate`` file's
    ``ligands`` section) on top, resolved as ``segsim run`` resolves the task's input.
    """
    from segsim.params.ligands import load_library, resolve_ligand

    spec = _ligand_spec(treatment, params)
    return resolve_ligand(spec, load_library(), source="reproduce", key="ligand")


def task_input(task: Task, opts: ReproduceOptions, params: dict[str, Any]) -> dict[str, Any]:
    """Return the ``segsim run`` input (as a dict) of one task."""
    ligand = _ligand_spec(task.treatment, params)
    doc: dict[str, Any] = {
        "system": {"edge_nm": task.edge_nm, "x_cd": opts.x_cd, "vacancy_fraction": 0.0},
        "model": {"kind": "cluster_expansion", "path": str(opts.model)},
        "run": {
            "kind": "kmc",
            "temperature_k": opts.temperature_k,
            "duration_days": opts.duration_days,
            "seed": task.seed,
        },
        "passivation": {"ligand": ligand},
        "synthesis": {},
        "output": {
            "frame_interval_days": opts.frame_interval_days,
            "snapshot_every_frames": max(1, round(2.0 / opts.frame_interval_days)),
            "checkpoint_every_frames": 4,
        },
    }
    if params.get("kinetics"):
        doc["kinetics"] = dict(params["kinetics"])
    if params.get("rp"):
        doc["rp"] = dict(params["rp"])
    return doc


def physics_key(task: Task, opts: ReproduceOptions, params: dict[str, Any]) -> str:
    """Return what decides the trajectory of ``task``: its input with the ligand's name dropped.

    Two tasks with equal keys (the same NC under two treatments whose parameters theta,
    ``rp_barrier_shift_ev`` and ``treatment_duration_s`` agree, e.g. OlABr and PEABr in the
    shipped library) produce identical trajectories: the ligand's name enters no rate and no
    random number.
    """
    doc = task_input(task, opts, params)
    doc["passivation"]["ligand"] = treatment_ligand(task.treatment, params).physics
    return json.dumps(doc, sort_keys=True)


def shared_tasks(tasks: list[Task], opts: ReproduceOptions, params: dict[str, Any]) -> dict:
    """Return ``{k: j}``: task ``k`` has the same physics as the earlier task ``j``."""
    first: dict[str, int] = {}
    out: dict[int, int] = {}
    for k, task in enumerate(tasks):
        j = first.setdefault(physics_key(task, opts, params), k)
        if j != k:
            out[k] = j
    return out


def _copy_result(src: Task, dst: Task, opts: ReproduceOptions, params: dict[str, Any]) -> None:
    """Write ``dst.path`` as the result of ``src`` relabelled to ``dst``'s treatment.

    The trajectory, snapshots and checkpoint are those of ``src`` (identical physics, see
    :func:`physics_key`); the stored input and the ligand name are ``dst``'s own, and the
    attribute ``same_physics_as`` names the file it was copied from.
    """
    import shutil

    import h5py

    from segsim import config

    cfg = config.from_dict(task_input(dst, opts, params), source=f"{dst.treatment}/nc{dst.nc}")

    def w(p: Path) -> None:
        shutil.copyfile(src.path, p)
        with h5py.File(p, "a") as f:
            meta = f["metadata"]
            del meta["config"]
            meta.create_dataset("config", data=cfg.to_yaml(), dtype=h5py.string_dtype())
            meta.attrs["ligand"] = cfg.passivation.ligand.name
            meta.attrs["same_physics_as"] = Path(src.path).name

    _atomic_write(Path(dst.path), w)


# ------------------------------------------------------------------------------- running
def _report_days(opts: ReproduceOptions, targets: dict[str, Any]) -> list[float]:
    days = [float(d) for d in targets.get("report_days", [0, 1, 2, 4, 6, 10, 14])]
    return [d for d in days if d <= opts.duration_days + 1e-9]


def run_task(
    task: Task,
    opts: ReproduceOptions,
    params: dict[str, Any],
    days: list[float],
    log: Any,
    walltime_s: float | None = None,
) -> NCResult | None:
    """Run (or resume, or just read) one NC; return its values at the report days.

    Returns None if ``walltime_s`` (s, counted by the caller) ran out before or during the
    run; the NC then has a checkpoint (or nothing yet) and the next ``reproduce`` continues.
    """
    from segsim import config, driver
    from segsim.io import hdf5

    path = Path(task.path)
    t0 = time.perf_counter()
    ck = hdf5.read_checkpoint(path) if path.exists() else None
    if ck is not None and bool(ck[1].get("complete")):
        status = "read"
    else:
        if walltime_s is not None and walltime_s <= 0:
            return None
        cfg = config.from_dict(
            task_input(task, opts, params), source=f"{task.treatment}/nc{task.nc}"
        )
        try:
            driver.run_kmc(cfg, path, resume=ck is not None, progress=False, walltime_s=walltime_s)
        except driver.Interrupted:
            if log is not None:
                log(
                    f"{task.treatment:>9} nc{task.nc}: stopped with a checkpoint (signal or walltime)"
                )
            return None
        status = "resumed" if ck is not None else "ran"
    res = summarise(path, task, days)
    res.wall_s = time.perf_counter() - t0
    if log is not None:
        log(
            f"{task.treatment:>9} nc{task.nc} ({task.edge_nm:.1f} nm): {status}, "
            f"x {res.x_cd[0]:.3f} -> {res.x_cd[-1]:.3f}, PL {res.pl_nm[0]:.1f} -> "
            f"{res.pl_nm[-1]:.1f} nm, {res.events} events, {res.wall_s:.1f} s"
        )
    return res


def summarise(path: Path, task: Task, days: list[float]) -> NCResult:
    """Read one NC file and pick the frames at the report days (day 0 = after treatment)."""
    import h5py

    from segsim.io import hdf5

    tr = hdf5.read_trace(path)
    with h5py.File(path, "r") as f:
        t0 = float(f["metadata"].attrs.get("treatment_end_s", 0.0))
    t = tr["time_s"]
    idx = []
    for d in days:
        target = t0 if d == 0 else d * SECONDS_PER_DAY
        k = int(np.argmin(np.abs(t - target)))
        if abs(t[k] - target) > 1e-6 * max(1.0, target):
            raise ReproduceError(f"{path}: no frame at day {d} (frame interval must divide it)")
        idx.append(k)

    def pick(name: str) -> list[float]:
        if name not in tr:  # a file written before the observable existed
            return [math.nan] * len(idx)
        return [float(tr[name][k]) for k in idx]

    return NCResult(
        treatment=task.treatment,
        nc=task.nc,
        edge0_nm=task.edge_nm,
        days=list(days),
        pl_nm=pick("pl_peak_nm"),
        x_cd=pick("x_cd"),
        edge_nm=pick("edge_nm"),
        has_rp=pick("has_rp"),
        a_rp=pick("a_rp_angstrom"),
        a_pv=pick("a_pv_angstrom"),
        cubic=pick("is_cubic"),
        cs_ratio=pick("cs_ratio_surface"),
        envelope_edge=pick("envelope_edge_nm"),
        occupied_envelope_edge=pick("occupied_envelope_edge_nm"),
        interior_vac=pick("interior_vacancy_fraction"),
        events=int(tr["step"][-1]),
    )


# ---------------------------------------------------------------------------- the table
def _nanmean(v: list[float]) -> float:
    a = np.asarray(v, dtype=float)
    a = a[np.isfinite(a)]
    return float(a.mean()) if a.size else math.nan


def _sem(v: list[float]) -> float:
    """Return the standard error of the mean, ``std(ddof=1) / sqrt(n)``, of the finite values.

    NaN (``math.nan``) with fewer than two finite values (one NC, or files written before
    the observable existed).
    """
    a = np.asarray(v, dtype=float)
    a = a[np.isfinite(a)]
    return float(a.std(ddof=1) / math.sqrt(a.size)) if a.size > 1 else math.nan


def _spread(v: list[float]) -> float:
    """Sample standard deviation between NCs (ddof 1); NaN for a single NC."""
    a = np.asarray(v, dtype=float)
    return float(a.std(ddof=1)) if a.size > 1 else math.nan


def _mean_and_sem(name: str, values: list[float]) -> dict[str, float]:
    """Return ``{name: ensemble mean, name_sem: its standard error}`` over the finite values."""
    return {name: _nanmean(values), f"{name}_sem": _sem(values)}


def ensemble_table(
    results: list[NCResult], targets: dict[str, Any], treatments: tuple[str, ...]
) -> list[dict[str, Any]]:
    """Return one row per treatment and report day (ensemble means, published values)."""
    rows = []
    pub_all = targets.get("treatments", {})
    for t in treatments:
        mine = [r for r in results if r.treatment == t]
        if not mine:
            continue
        pub = pub_all.get(t, {})
        days = mine[0].days
        last = max(days)
        for k, d in enumerate(days):
            e_pl = np.mean([HC_EV_NM / r.pl_nm[k] for r in mine])  # ensemble mean in eV
            pl = HC_EV_NM / e_pl
            published = pub.get("pl_fresh_nm") if d == 0 else None
            if d == last and d >= 14 - 1e-9:
                published = pub.get("pl_day14_nm")
            rows.append(
                {
                    "treatment": t,
                    "day": d,
                    "pl_model_nm": pl,
                    "pl_published_nm": math.nan if published is None else float(published),
                    "pl_diff_nm": math.nan if published is None else pl - float(published),
                    "x_cd": float(np.mean([r.x_cd[k] for r in mine])),
                    # spread between single NCs (what EDX on single NCs sees), n - 1
                    "x_cd_std": _spread([r.x_cd[k] for r in mine]),
                    "edge_nm": float(np.mean([r.edge_nm[k] for r in mine])),
                    **_mean_and_sem("envelope_edge_nm", [r.envelope_edge[k] for r in mine]),
                    **_mean_and_sem(
                        "occupied_envelope_edge_nm",
                        [r.occupied_envelope_edge[k] for r in mine],
                    ),
                    **_mean_and_sem("interior_vacancy_fraction", [r.interior_vac[k] for r in mine]),
                    "rp_nc_fraction": float(np.mean([r.has_rp[k] for r in mine])),
                    # only NCs with an RP domain (isolated flickers are not a region)
                    "a_rp_angstrom": _nanmean([r.a_rp[k] for r in mine if r.has_rp[k]]),
                    "a_pv_angstrom": _nanmean([r.a_pv[k] for r in mine]),
                    "cubic_fraction": float(np.mean([r.cubic[k] for r in mine])),
                    "cs_ratio_surface": _nanmean([r.cs_ratio[k] for r in mine]),
                    "n_ncs": len(mine),
                }
            )
    return rows


def _fmt(v: Any, spec: str) -> str:
    """Format ``v``; a NaN (no published value, no RP region) prints as a right-aligned '-'."""
    if isinstance(v, float) and not math.isfinite(v):
        width = int("".join(ch for ch in spec.split(".")[0] if ch.isdigit()) or 1)
        return "-".rjust(width)
    return format(v, spec)


def format_table(rows: list[dict[str, Any]]) -> str:
    """Return the table as terminal text, one block per treatment.

    Ensemble means only (the SEM columns are in ``table.csv`` and ``ensemble.h5``); ``env``
    is ``envelope_edge_nm`` and ``f_iV`` is ``interior_vacancy_fraction``.
    """
    head = (
        f"{'day':>4} {'PL model':>8} {'PL pub':>7} {'diff':>6} {'x':>6} {'sd(x)':>6} "
        f"{'edge':>6} {'env':>6} {'f_iV':>6} "
        f"{'f_RP':>5} {'a_RP':>6} {'a_pv':>6} {'cubic':>5} {'Cs/B':>5}"
    )
    units = (
        f"{'':>4} {'nm':>8} {'nm':>7} {'nm':>6} {'':>6} {'':>6} {'nm':>6} {'nm':>6} {'':>6} "
        f"{'':>5} {'A':>6} {'A':>6} {'':>5} {'srf':>5}"
    )
    out = []
    for t in dict.fromkeys(r["treatment"] for r in rows):
        mine = [r for r in rows if r["treatment"] == t]
        out.append(f"{t} ({mine[0]['n_ncs']} NCs)")
        out.append(head)
        out.append(units)
        for r in mine:
            out.append(
                f"{r['day']:>4g} {_fmt(r['pl_model_nm'], '8.1f')} "
                f"{_fmt(r['pl_published_nm'], '7.0f')} {_fmt(r['pl_diff_nm'], '+6.1f')} "
                f"{r['x_cd']:6.3f} {_fmt(r['x_cd_std'], '6.3f')} {r['edge_nm']:6.2f} "
                f"{_fmt(r['envelope_edge_nm'], '6.2f')} "
                f"{_fmt(r['interior_vacancy_fraction'], '6.3f')} "
                f"{r['rp_nc_fraction']:5.2f} "
                f"{_fmt(r['a_rp_angstrom'], '6.3f')} {_fmt(r['a_pv_angstrom'], '6.3f')} "
                f"{r['cubic_fraction']:5.2f} {_fmt(r['cs_ratio_surface'], '5.2f')}"
            )
        out.append("")
    return "\n".join(out)


def _atomic_write(path: Path, write: Any) -> None:
    tmp = path.with_name(path.name + ".part")
    write(tmp)
    tmp.replace(path)


def write_csv(rows: list[dict[str, Any]], path: Path) -> None:
    """Write the table (one row per treatment and day) as CSV."""

    def w(p: Path) -> None:
        with p.open("w", newline="") as fh:
            wr = csv.DictWriter(fh, fieldnames=TABLE_COLUMNS)
            wr.writeheader()
            for r in rows:
                wr.writerow({k: r[k] for k in TABLE_COLUMNS})

    _atomic_write(path, w)


def write_figure(rows: list[dict[str, Any]], targets: dict[str, Any], path: Path) -> None:
    """Plot the ensemble PL peak vs days per treatment with the published end points."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    colours = plt.get_cmap("tab10")
    for i, t in enumerate(dict.fromkeys(r["treatment"] for r in rows)):
        mine = [r for r in rows if r["treatment"] == t]
        c = colours(i)
        ax.plot([r["day"] for r in mine], [r["pl_model_nm"] for r in mine], "-o", color=c,
                ms=3, label=f"{t} (model)")  # fmt: skip
        pub = targets.get("treatments", {}).get(t, {})
        last = max(r["day"] for r in mine)
        ax.plot([0], [pub.get("pl_fresh_nm", math.nan)], "s", color=c, mfc="none", ms=8)
        if last >= 14 - 1e-9 and "pl_day14_nm" in pub:
            ax.plot([14], [pub["pl_day14_nm"]], "D" if pub.get("pl_day14_approx") else "s",
                    color=c, mfc="none", ms=8)  # fmt: skip
    ax.set_xlabel("aging time (days, 298 K)")
    ax.set_ylabel("PL peak (nm)")
    ax.set_title("CsCd$_{0.25}$Pb$_{0.75}$Br$_3$ NCs: model (lines) vs published (open)")
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()

    def w(p: Path) -> None:
        fig.savefig(p, dpi=120, format="png")

    _atomic_write(path, w)
    plt.close(fig)


def write_master(
    out_dir: Path, tasks: list[Task], rows: list[dict[str, Any]], opts: ReproduceOptions
) -> Path:
    """Write ``ensemble.h5``: external links to every NC file and the table."""
    import h5py

    path = out_dir / "ensemble.h5"

    def w(p: Path) -> None:
        with h5py.File(p, "w") as f:
            f.attrs["options"] = json.dumps(asdict(opts))
            grp = f.create_group("ncs")
            for task in tasks:
                g = grp.require_group(task.treatment)
                rel = Path(task.path).relative_to(out_dir)
                g[f"nc{task.nc}"] = h5py.ExternalLink(str(rel), "/")
            tab = f.create_group("table")
            for col in TABLE_COLUMNS:
                vals = [r[col] for r in rows]
                if col == "treatment":
                    tab[col] = np.array(vals, dtype=h5py.string_dtype())
                else:
                    tab[col] = np.asarray(vals, dtype=float)

    _atomic_write(path, w)
    return path


# ------------------------------------------------------------------------------ driver
def _claim(out_dir: Path, opts: ReproduceOptions, force: bool, w: Any) -> None:
    """Make ``out_dir`` this run's folder (rank 0 writes its options stamp; all ranks agree).

    Raises
    ------
    ReproduceError
        On every rank, if the folder holds a run with other options and not ``force``.
    """
    stamp = out_dir / "reproduce.json"
    if w.is_root:
        (out_dir / "ncs").mkdir(parents=True, exist_ok=True)
        new = json.dumps(asdict(opts), indent=1, sort_keys=True)
        if stamp.exists() and stamp.read_text() != new and not force:
            msg = f"{out_dir} holds a reproduce run with other options; use --force or another -o"
        else:
            stamp.write_text(new)
            msg = ""
    else:
        msg = None
    msg = w.bcast(msg)
    if msg:
        raise ReproduceError(msg)


def _gather(
    tasks: list[Task],
    ran: dict[int, NCResult | None],
    shared: dict[int, int],
    opts: ReproduceOptions,
    params: dict[str, Any],
    days: list[float],
) -> list[NCResult | None]:
    """Return the result of every task: those run, and the copies of identical ones.

    ``ran`` maps task index -> result of the tasks that ran (None: stopped at the wall time);
    ``shared`` maps a copied task -> the task it copies (:func:`shared_tasks`).
    """
    results: list[NCResult | None] = [ran.get(k) for k in range(len(tasks))]
    for k, j in shared.items():
        if results[j] is None:  # its source stopped at the walltime: reported as missing
            continue
        _copy_result(tasks[j], tasks[k], opts, params)  # cheap: always from the current run
        results[k] = summarise(Path(tasks[k].path), tasks[k], days)
    return results


def reproduce(
    opts: ReproduceOptions,
    out_dir: str | Path,
    *,
    force: bool = False,
    quiet: bool = False,
    walltime_s: float | None = None,
    share_identical: bool = True,
    threads: int = 1,
) -> list[dict[str, Any]] | None:
    """Run the whole protocol (over MPI ranks if launched with mpiexec).

    The NC runs are split over the ranks by expected cost (NC volume, largest first) and
    run on ``threads`` threads per rank (:func:`segsim.parallel.run_tasks`); the per-NC
    results are the same whatever the ranks and threads.

    With ``share_identical`` (default) a task whose physics equals an earlier one's
    (:func:`shared_tasks`; OlABr and PEABr in the shipped library) is not run again: its NC
    file is a relabelled copy of the other's (:func:`_copy_result`).  The table is the same
    either way; the option exists so that a test can check that.

    Returns the table rows on rank 0 and ``None`` on the other ranks.  With ``walltime_s``
    (s) every rank stops cleanly (checkpoints) when its time is up; :class:`Unfinished` is
    then raised on rank 0, and the same command continues the ensemble.
    """
    from segsim import parallel, stopflag

    opts.check()
    out_dir = Path(out_dir)
    w = parallel.world()
    params = load_params(opts.params)
    targets = load_targets()
    days = _report_days(opts, targets)
    _claim(out_dir, opts, force, w)
    tasks = make_tasks(opts, out_dir)
    if force and w.is_root:
        for task in tasks:
            Path(task.path).unlink(missing_ok=True)
    w.barrier()

    def log(line: str) -> None:
        if not quiet:
            prefix = f"[rank {w.rank}/{w.size}] " if w.size > 1 else ""
            print(prefix + line, flush=True)

    if w.is_root and not quiet:
        print(
            f"segsim reproduce: {opts.n_ncs} NCs x {len(opts.treatments)} treatments = "
            f"{len(tasks)} KMC runs of {opts.duration_days:g} days on {w.size} rank(s) x "
            f"{threads} thread(s) -> {out_dir}",
            flush=True,
        )
    t_start = time.perf_counter()

    def one(task: Task) -> NCResult | None:
        left = None if walltime_s is None else walltime_s - (time.perf_counter() - t_start)
        return run_task(task, opts, params, days, log, left)

    shared = shared_tasks(tasks, opts, params) if share_identical else {}
    if shared and w.is_root and not quiet:
        names = sorted({f"{tasks[k].treatment} = {tasks[j].treatment}" for k, j in shared.items()})
        print(
            f"same parameters, so identical trajectories ({', '.join(names)}): "
            f"{len(shared)} of {len(tasks)} runs are copies",
            flush=True,
        )
    own = [k for k in range(len(tasks)) if k not in shared]
    mine = [tasks[k] for k in own]
    cost = [t.edge_nm**3 for t in mine]  # events scale with the NC's sites; largest first
    ran = parallel.run_tasks(w, mine, one, threads=threads, cost=cost)
    if not w.is_root:
        return None
    assert ran is not None
    results = _gather(tasks, dict(zip(own, ran, strict=True)), shared, opts, params, days)
    missing = sum(r is None for r in results)
    if missing:
        raise Unfinished(
            f"stopped ({'signal' if stopflag.REQUESTED.is_set() else 'walltime'}) with "
            f"{missing} of {len(tasks)} NC runs unfinished; run the same "
            f"command again to continue"
        )
    rows = ensemble_table(results, targets, opts.treatments)
    write_csv(rows, out_dir / "table.csv")
    write_figure(rows, targets, out_dir / "pl_vs_days.png")
    write_master(out_dir, tasks, rows, opts)
    if not quiet:
        print(format_table(rows))
        print(
            f"wrote {out_dir / 'table.csv'}, {out_dir / 'pl_vs_days.png'}, {out_dir / 'ensemble.h5'}"
        )
    return rows
