"""``segsim calibrate``: fit kinetic defaults and ligand coverages to the aging targets.

What is fitted, to what, and why in this order (each target constrains its own parameter,
so the fit is a sequence of one-dimensional bounded searches, not one joint optimisation):

1. ``rp.e_rp_a_ev`` (RP switching barrier, bounds 0.9-1.4 eV) <- "RP domains in pristine NCs
   are gone after 6 days": the largest barrier for which no pristine NC of the calibration
   ensemble has an RP domain left at day 6 (bisection).  A larger barrier keeps RP longer.
   The upper bound is tried first: if RP is gone by day 6 even there (RP domains vanish with
   the Cd and the surface they border, not only by switching), the target does not
   constrain the barrier, which keeps its default, and the report says so.
1b. ``ligands.<exchange>.rp_barrier_shift_ev`` (how much a ligand exchange lowers the RP
   barrier while it lasts, bounds 0-0.45 eV) <- "no RP domain after the DDABr exchange"
   (``rp_nc_fraction_fresh: 0`` of ddabr): the smallest shift for which no DDABr NC has an
   RP domain at day 0 (bisection; only the 2-min exchange is simulated).  The seed data say
   every exchange speeds up the RP -> perovskite transition but give its size for DDABr
   only, so all exchange treatments get the fitted value (an assumption, reported).
2. ``kinetics.e_exp_cd_ev`` (Cd expulsion barrier, bounds 0.85-1.20 eV) <- the pristine PL
   peak at day 14 (~510 nm), with theta(pristine) held at its library value: pristine's
   14-day PL constrains only the product (1 - theta) exp(-E_exp(Cd)/kT), so one of the two
   must be fixed; the barrier is the global one (shared by all ligands).
3. ``ligands.<name>.theta`` for each exchange treatment (bounds 0-0.9999) <- that treatment's
   PL at day 14.  Given the global barriers, a ligand's theta is the only parameter its PL
   trace depends on.

Objective of the searches 2-3: the squared miss of the 14-day PL *shift*,
``((PL14 - PL0)_model - (PL14 - PL_fresh)_published)^2`` in nm^2 for the treatment concerned,
the model values being ensemble PL peaks (mean in eV) of ``n_ncs`` NCs.  The shift, not the
absolute peak, is fitted because the fresh peak (476-485 nm measured, 476 nm in the model at
x = 0.25) is set by the composition and the optics table, not by any kinetic parameter.  Every
evaluation uses the same NCs (common random numbers: seeds from ``SeedSequence(seed)``), so the
objective is a deterministic function of the parameters and the fit is reproducible with the
seed.  Golden-section search on ``log10(1 - theta)`` resp. the barrier, ``n_iter`` steps; when
the target lies outside what the model can reach, the search ends at a bound and the report
says so (the fitted value is then the closest the model gets, not a match).

Plateaus (:func:`plateau_edge`).  A target beyond the model's reach leaves a flat objective:
e.g. every E_exp(Cd) below ~1 eV empties a pristine NC by day 14, and the PL then sits at
the optics table's ceiling (507 nm at x = 0), so the misses differ only by the ensemble's
noise (~0.3 nm).  Its minimum is then an accident of that noise, and the low end of the
range it picks can put the next targets out of reach (a low E_exp leaves no coverage that
keeps DDABr's Cd in).  So when the evaluations within ``PLATEAU_TOL_NM`` of the best miss
reach one bound and not the other, the fit takes the plateau's inner edge (the evaluated
value farthest from that bound), the least extreme value the data allow: for a target
beyond reach on the Cd-loss side (pristine, the carboxylates) the slowest Cd loss that
still reaches the ceiling, for DDABr's zero shift the lowest coverage that keeps its PL
within the tolerance.  The report gives the plateau (``plateau``) and the first evaluated
value outside it (``plateau_limit``), so the edge's resolution is visible.

Physically plausible ranges: barriers as above (computed halide-perovskite migration and
dissolution barriers, MODEL.md), nu stays at its default (1e12-1e13 1/s, not fitted).
"""

from __future__ import annotations

import hashlib
import math
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from segsim.reproduce import (
    HC_EV_NM,
    ReproduceOptions,
    load_params,
    load_targets,
    make_tasks,
    run_task,
    treatment_ligand,
)

GOLDEN = (math.sqrt(5.0) - 1.0) / 2.0


class CalibrateError(ValueError):
    """Bad options (one line)."""


#: NCs per treatment of a calibration by default: the shipped calibration used 16 (the RP
#: targets are fractions of NCs, and 3 NCs can only give 0, 1/3, 2/3 or 1).
CALIBRATE_N_NCS: int = 16


@dataclass(frozen=True)
class CalibrateOptions:
    """Options of ``segsim calibrate`` (see :class:`segsim.reproduce.ReproduceOptions`)."""

    ensemble: ReproduceOptions
    n_iter: int = 8
    targets: str | None = None  # default potentials/aging_targets.yaml
    cache: str | None = None  # JSON file of finished evaluations: a rerun skips them
    fit_rp: bool = True
    fit_rp_shift: bool = True
    fit_e_exp: bool = True


def _pl14(opts: ReproduceOptions, params: dict[str, Any], treatment: str, workdir: Path) -> dict:
    """Run the ensemble of one treatment with ``params``; return PL and RP at the report days."""
    from segsim import parallel

    o = replace(opts, treatments=(treatment,), params=None)
    params = _merged(load_params(opts.params), params)
    days = [0.0, 6.0, opts.duration_days] if opts.duration_days > 6 else [0.0, opts.duration_days]
    tag = hashlib.sha1(repr(sorted(_flat(params).items())).encode()).hexdigest()[:12]
    tasks = make_tasks(o, workdir / f"eval_{tag}")
    (workdir / f"eval_{tag}" / "ncs").mkdir(parents=True, exist_ok=True)
    w = parallel.world()
    res = parallel.run_tasks(w, tasks, lambda t: run_task(t, o, params, days, None))
    res = w.bcast(res)
    pl = HC_EV_NM / np.mean([HC_EV_NM / r.pl_nm[-1] for r in res])
    return {
        "pl14_nm": float(pl),
        "pl0_nm": float(HC_EV_NM / np.mean([HC_EV_NM / r.pl_nm[0] for r in res])),
        "rp_day6": float(np.mean([r.has_rp[1] for r in res])) if len(days) == 3 else math.nan,
        "rp_day0": float(np.mean([r.has_rp[0] for r in res])),
        "x14": float(np.mean([r.x_cd[-1] for r in res])),
    }


def _merged(base: dict[str, Any], fitted: dict[str, Any]) -> dict[str, Any]:
    """Return the parameter file ``base`` (``--params``) with the fitted values on top."""
    out = {k: dict(v or {}) for k, v in base.items() if k != "calibration"}
    for sec, d in fitted.items():
        if sec == "ligands":
            lig = dict(out.get("ligands") or {})
            for name, over in (d or {}).items():
                lig[name] = {**(lig.get(name) or {}), **over}
            out["ligands"] = lig
        else:
            out[sec] = {**(out.get(sec) or {}), **(d or {})}
    return out


def _flat(params: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for sec, d in params.items():
        for k, v in (d or {}).items():
            if isinstance(v, dict):
                for kk, vv in v.items():
                    out[f"{sec}.{k}.{kk}"] = vv
            else:
                out[f"{sec}.{k}"] = v
    return out


def golden_section(f: Any, lo: float, hi: float, n_iter: int) -> tuple[float, float, list]:
    """Minimise ``f`` on ``[lo, hi]`` by golden-section search; return (x, f(x), history).

    The bounds themselves are evaluated too, so a monotonic objective ends at a bound.
    """
    hist: list[tuple[float, float]] = []

    def ev(x: float) -> float:
        y = float(f(x))
        hist.append((x, y))
        return y

    a, b = lo, hi
    c = b - GOLDEN * (b - a)
    d = a + GOLDEN * (b - a)
    fc, fd = ev(c), ev(d)
    for _ in range(max(0, n_iter - 2)):
        if fc <= fd:
            b, d, fd = d, c, fc
            c = b - GOLDEN * (b - a)
            fc = ev(c)
        else:
            a, c, fc = c, d, fd
            d = a + GOLDEN * (b - a)
            fd = ev(d)
    for x in (lo, hi):
        ev(x)
    x, y = min(hist, key=lambda p: p[1])
    return x, y, hist


#: Misses within this many nm of the best one count as the same (the ensemble's noise is
#: ~0.3 nm at the optics ceiling): the plateau of :func:`plateau_edge`.
PLATEAU_TOL_NM: float = 0.5


def plateau_edge(
    hist: list[tuple[float, float]], lo: float, hi: float, tol: float = PLATEAU_TOL_NM
) -> tuple[float, dict[str, Any] | None]:
    """Return the value to take from a search history of (x, squared miss in nm^2).

    The plateau is the set of evaluated x whose miss (nm) is within ``tol`` of the best.  If
    it holds exactly one of the bounds ``lo``/``hi``, the objective is flat up to that bound
    and the result is the plateau's inner edge (its x farthest from that bound), with a
    dict ``{"plateau": [x_min, x_max], "plateau_limit": x}`` (x: the nearest evaluated
    value beyond the edge, None if there is none).  Otherwise the argmin and None.
    """
    best = min(math.sqrt(y) for _, y in hist)
    xs = sorted({x for x, y in hist if math.sqrt(y) <= best + tol})
    x_best = min(hist, key=lambda p: p[1])[0]
    eps = 1e-9 * (hi - lo)
    at_lo, at_hi = abs(xs[0] - lo) <= eps, abs(xs[-1] - hi) <= eps
    if at_lo == at_hi:
        return x_best, None
    edge = xs[-1] if at_lo else xs[0]
    beyond = [x for x, _ in hist if (x > edge if at_lo else x < edge)]
    limit = (min(beyond) if at_lo else max(beyond)) if beyond else None
    return edge, {"plateau": [xs[0], xs[-1]], "plateau_limit": limit}


def calibrate(
    opts: CalibrateOptions, out_path: str | Path, *, quiet: bool = False
) -> dict[str, Any]:
    """Run the calibration; write the parameter file ``out_path`` (YAML) and return it."""
    import yaml

    from segsim.params.ligands import load_library

    ens = opts.ensemble
    ens.check()
    if opts.n_iter < 2:
        raise CalibrateError(f"--iterations must be >= 2 (got {opts.n_iter})")
    targets = load_targets(opts.targets)
    pub = targets["treatments"]
    library = load_library()
    t_start = time.perf_counter()
    params: dict[str, Any] = {"kinetics": {}, "rp": {}, "ligands": {}}
    report: dict[str, Any] = {}

    from segsim import parallel

    root = parallel.world().is_root

    def say(msg: str) -> None:
        if not quiet and root:  # every rank runs the searches; one prints them
            print(msg, flush=True)

    with tempfile.TemporaryDirectory(prefix="segsim-calibrate-") as tmp:
        cache = Path(opts.cache) if opts.cache else None
        search = _Search(ens, params, report, library, Path(tmp), opts.n_iter, say, cache)
        if opts.fit_rp and "pristine" in ens.treatments and ens.duration_days > 6:
            _fit_rp_barrier(search)
        if opts.fit_rp_shift and "ddabr" in ens.treatments:
            _fit_rp_shift(search)
        if opts.fit_e_exp and "pristine" in ens.treatments:
            _fit_e_exp(search, _shift(pub["pristine"]))
        _fit_thetas(search, pub)
    doc = {
        "calibration": {
            "targets": str(opts.targets or "potentials/aging_targets.yaml"),
            "ensemble": _portable(asdict(ens)),
            "objective": "((PL14 - PL0)_model - (PL14 - PL_fresh)_published)^2 per treatment, nm^2",
            "iterations": opts.n_iter,
            "wall_s": round(time.perf_counter() - t_start, 1),
            "status": _status(report),
            "fits": report,
        },
        **{k: v for k, v in _merged(load_params(ens.params), params).items() if v},
    }
    if root:
        out_path = Path(out_path)
        tmp_out = out_path.with_name(out_path.name + ".part")
        tmp_out.write_text(yaml.safe_dump(doc, sort_keys=False))
        tmp_out.replace(out_path)
    return doc


def _portable(ensemble: dict[str, Any]) -> dict[str, Any]:
    """Return the ensemble settings with files inside the repository relative to its root.

    The written calibration then names ``potentials/fitted.ce`` instead of the absolute
    path of the machine that ran it; files elsewhere keep their absolute paths.
    """
    from segsim.params.files import POTENTIALS_DIR

    root = POTENTIALS_DIR.parent.resolve()
    out = dict(ensemble)
    for key in ("model", "params"):
        value = out.get(key)
        if value:
            path = Path(value).resolve()
            if path.is_relative_to(root):
                out[key] = path.relative_to(root).as_posix()
    return out


#: Bounds of the RP barrier shift during a ligand exchange, eV.
RP_SHIFT_BOUNDS_EV: tuple[float, float] = (0.0, 0.45)
# The upper bound: with the default barrier (1.1 eV) a shift of 0.45 eV makes each RP site
# switch ~1e5 times per s during the 120-s exchange (events, and run time, grow as
# exp(shift / kT)); clearing RP within 120 s needs only a barrier of ~kT ln(nu 120 s) ~ 0.86 eV.


@dataclass
class _Search:
    """What every parameter search of :func:`calibrate` shares; ``params``/``report`` grow."""

    ens: ReproduceOptions  # the ensemble every evaluation runs
    params: dict[str, Any]  # parameters found so far: kinetics / rp / ligands
    report: dict[str, Any]  # one entry per fitted parameter
    library: dict[str, Any]  # the ligand library
    work: Path  # scratch folder of the evaluations
    n_iter: int  # iterations of each search
    say: Callable[[str], None]  # progress line (rank 0, unless quiet)
    cache: Path | None = None  # JSON file of finished evaluations (--cache)
    _digest: str | None = None  # defaults_digest(), computed once per calibration

    def evaluate(
        self, ens: ReproduceOptions, params: dict[str, Any], treatment: str
    ) -> dict[str, Any]:
        """Run one evaluation (:func:`_pl14`), or take it from the cache file if it is there.

        The key is everything the result depends on (:func:`evaluation_key`); every rank
        reads the cache, rank 0 writes it after each new evaluation (atomically).
        """
        if self.cache is None:
            return _pl14(ens, params, treatment, self.work)
        import json

        from segsim import parallel

        key = evaluation_key(ens, params, treatment)
        done = self._read_cache()
        if key in done:
            self.say(f"  ({treatment}: evaluation {key[:10]} from {self.cache.name})")
            return dict(done[key]["result"])
        t0 = time.perf_counter()
        res = _pl14(ens, params, treatment, self.work)
        if parallel.world().is_root:
            done = self._read_cache()
            done[DEFAULTS_KEY] = self._defaults()
            done[key] = {
                "treatment": treatment,
                "params": _flat(_merged(load_params(ens.params), params)),
                "wall_s": round(time.perf_counter() - t0, 1),
                "result": res,
            }
            tmp = self.cache.with_name(self.cache.name + ".part")
            tmp.write_text(json.dumps(done, indent=1, sort_keys=True))
            tmp.replace(self.cache)
        return res

    def _defaults(self) -> str:
        """Return :func:`defaults_digest` (read once: it parses four files)."""
        if self._digest is None:
            self._digest = defaults_digest()
        return self._digest

    def _read_cache(self) -> dict[str, Any]:
        """Read the cache file; refuse it if it was made with other default parameter values.

        The evaluation keys do not cover the values the evaluations take from
        ``potentials/`` (all that is not fitted: E_KRA, E_rec, the library's thetas, the
        optics table, ...), so the file records their digest (:func:`defaults_digest`) under
        :data:`DEFAULTS_KEY`.  A file without one (made before 2026-12-04) is taken as it is.
        """
        import json

        assert self.cache is not None
        done = json.loads(self.cache.read_text()) if self.cache.is_file() else {}
        made_with = done.get(DEFAULTS_KEY)
        if made_with is not None and made_with != self._defaults():
            raise CalibrateError(
                f"{self.cache}: {DEFAULTS_KEY}: the cache was made with other default "
                "parameter values (potentials/kinetics.yaml, rp.yaml, ligands.yaml, "
                "optics.yaml); delete it, choose another --cache, or restore those files"
            )
        return done


#: Key of the cache file's record of the default parameter values (:func:`defaults_digest`).
DEFAULTS_KEY = "_defaults_digest"


def defaults_digest() -> str:
    """Return a digest of every default parameter value an evaluation reads from potentials/.

    The values, not the files: the rate parameters (``kinetics.yaml``), the RP energetics,
    seeding and synthesis (``rp.yaml``), each ligand's theta, RP shift and exchange time
    (``ligands.yaml``) and the optics (``optics.yaml``); comments and ``source`` texts may
    change without changing it.
    """
    import json

    from segsim import kinetics, optics
    from segsim.params.ligands import load_library
    from segsim.params.rp import load_rp_defaults

    energetics, seeding, synthesis = load_rp_defaults()
    opt = optics.load_optics()
    values = {
        "kinetics": asdict(kinetics.load_defaults()),
        "rp": [asdict(energetics), asdict(seeding), synthesis],
        "ligands": {n: g.physics for n, g in load_library().items()},
        "optics": [
            opt.table.x.tolist(),
            opt.table.peak_nm.tolist(),
            opt.table.fwhm_nm.tolist(),
            dict(opt.radii_angstrom),
            opt.a0_angstrom,
            opt.cubic_min_tolerance_factor,
        ],
    }
    return hashlib.sha1(json.dumps(values, sort_keys=True, default=str).encode()).hexdigest()


def evaluation_key(ens: ReproduceOptions, params: dict[str, Any], treatment: str) -> str:
    """Return the cache key of one evaluation: a digest of all that decides its result.

    The ensemble (NC count, seed, days, frames, edge distribution, composition, temperature),
    the model file's bytes, the merged kinetics and RP parameters (``--params`` with the
    fitted values on top) and the treatment's ligand as it acts: theta, RP barrier shift and
    exchange duration, from the library unless the parameters set them.  Not the ligand's
    name, which enters no rate and no random number (:func:`segsim.reproduce.physics_key`):
    two treatments with equal values share their evaluations (e.g. the DDABr coverage search
    passes through values already evaluated for OlABr).  Not the code: delete a cache after
    changing the kinetics.  Not the default parameter values either: the cache file records
    those separately (:func:`defaults_digest`).
    """
    import json

    merged = _merged(load_params(ens.params), params)
    d = asdict(ens)
    d.pop("treatments", None)
    d.pop("params", None)
    d["model"] = hashlib.sha1(Path(ens.model).read_bytes()).hexdigest()
    d["kinetics"] = merged.get("kinetics") or {}
    d["rp"] = merged.get("rp") or {}
    d["ligand"] = treatment_ligand(treatment, merged).physics
    return hashlib.sha1(json.dumps(d, sort_keys=True, default=str).encode()).hexdigest()


def _fit_rp_barrier(search: _Search) -> None:
    """Bisect the RP switch barrier: the largest with no RP domain left in pristine at day 6.

    Sets ``params["rp"]["e_rp_a_ev"]`` when the ensemble constrains it and records the
    search in ``report["rp.e_rp_a_ev"]`` either way.
    """
    ens, params, report, say = search.ens, search.params, search.report, search.say
    n_iter = search.n_iter
    from segsim.params.rp import load_rp_defaults

    e_lo, e_hi = 0.9, 1.4
    top = search.evaluate(ens, {**params, "rp": {"e_rp_a_ev": e_hi}}, "pristine")
    any_rp = top["rp_day0"] > 0
    constrained = any_rp and top["rp_day6"] > 0
    for _ in range(n_iter if constrained else 0):
        mid = 0.5 * (e_lo + e_hi)
        r = search.evaluate(ens, {**params, "rp": {"e_rp_a_ev": mid}}, "pristine")
        if r["rp_day6"] > 0:
            e_hi = mid
        else:
            e_lo = mid
    default = load_rp_defaults()[0].e_rp_a_ev
    if constrained:
        params["rp"] = {"e_rp_a_ev": round(e_lo, 4)}
    report["rp.e_rp_a_ev"] = {
        "target": "no RP domain left in pristine NCs at day 6",
        "value": params["rp"]["e_rp_a_ev"] if constrained else default,
        "constrained": constrained,
        "default": default,
    }
    if constrained:
        say(f"rp.e_rp_a_ev = {e_lo:.3f} eV (the largest barrier with RP gone by day 6)")
    elif any_rp:
        report["rp.e_rp_a_ev"]["note"] = (
            f"RP gone by day 6 even at {e_hi} eV (the upper bound): not constrained"
        )
        say(f"rp.e_rp_a_ev: not constrained (RP gone by day 6 even at {e_hi} eV)")
    else:
        say("rp.e_rp_a_ev: not constrained (no NC of the ensemble has an RP domain)")


def _fit_e_exp(search: _Search, target: float) -> None:
    """Golden-section search of the Cd expulsion barrier on the pristine PL shift (nm)."""
    ens, params, report, say = search.ens, search.params, search.report, search.say
    n_iter = search.n_iter

    def f_exp(e: float) -> float:
        p = {**params, "kinetics": {**params["kinetics"], "e_exp_cd_ev": e}}
        r = search.evaluate(ens, p, "pristine")
        return (r["pl14_nm"] - r["pl0_nm"] - target) ** 2

    _, _, hist = golden_section(f_exp, 0.85, 1.20, n_iter)
    x, plateau = plateau_edge(hist, 0.85, 1.20)
    y = dict(hist)[x]
    params["kinetics"]["e_exp_cd_ev"] = round(x, 4)
    report["kinetics.e_exp_cd_ev"] = _entry(
        "pristine PL shift over 14 days", target, x, y, (0.85, 1.20), plateau=plateau
    )
    say(f"kinetics.e_exp_cd_ev = {x:.3f} eV, pristine PL-shift miss {math.sqrt(y):.1f} nm")


def _fit_thetas(search: _Search, pub: dict[str, Any]) -> None:
    """Golden-section search of each treated ligand's coverage on its PL shift (nm).

    The search runs on ``log10(1 - theta)`` in [-4, 0]; treatments with the same library
    parameters and target share one search.
    """
    ens, params, report, say = search.ens, search.params, search.report, search.say
    library, n_iter = search.library, search.n_iter
    fitted: dict[tuple, str] = {}  # (ligand parameters, target) -> treatment fitted
    for t in ens.treatments:
        if t == "pristine":
            continue
        target = _shift(pub[t])
        lib = library[t]
        same = (*lib.physics, target)
        if same in fitted:  # equal parameters and target: the same search, done once
            u = fitted[same]
            params["ligands"][t] = dict(params["ligands"][u])
            report[f"ligands.{t}.theta"] = {
                **report[f"ligands.{u}.theta"],
                "target": f"{t} PL shift over 14 days = {target:g} nm",
                "same_as": u,
            }
            say(f"ligands.{t}.theta = that of {u} (same parameters and target)")
            continue
        fitted[same] = t

        def f_theta(lg: float, t: str = t, target: float = target) -> float:
            lig = {**params["ligands"].get(t, {}), "theta": 1.0 - 10.0**lg}
            p = {**params, "ligands": {**params["ligands"], t: lig}}
            r = search.evaluate(ens, p, t)
            return (r["pl14_nm"] - r["pl0_nm"] - target) ** 2

        _, _, hist = golden_section(f_theta, -4.0, 0.0, n_iter)
        lg, plateau = plateau_edge(hist, -4.0, 0.0)
        y = dict(hist)[lg]
        theta = round(1.0 - 10.0**lg, 6)
        if plateau is not None:  # reported in theta, not in log10(1 - theta)
            plateau = {k: _theta_of(v) for k, v in plateau.items()}

        params["ligands"][t] = {**params["ligands"].get(t, {}), "theta": theta}
        report[f"ligands.{t}.theta"] = _entry(
            f"{t} PL shift over 14 days",
            target,
            theta,
            y,
            (0.0, 0.9999),
            prior=library[t].theta,
            searched=(lg, -4.0, 0.0),
            plateau=plateau,
        )  # fmt: skip  (at_bound is judged on log10(1 - theta), the searched variable)
        say(f"ligands.{t}.theta = {theta:.4f}, PL-shift miss {math.sqrt(y):.1f} nm")


def _theta_of(lg: Any) -> Any:
    """Return theta = 1 - 10**lg, rounded (lists element-wise, None kept, ascending)."""
    if lg is None:
        return None
    if isinstance(lg, list):
        return sorted(_theta_of(v) for v in lg)
    return round(1.0 - 10.0**lg, 6)


def _fit_rp_shift(search: _Search) -> None:
    """Fit the exchange RP barrier shift to "no RP after the DDABr exchange" (in place).

    Only day 0 matters, so each evaluation runs one frame interval of aging.  The fitted
    shift is set for every treatment with an exchange (``treatment_duration_s > 0``).
    """
    ens, params, report, say = search.ens, search.params, search.report, search.say
    library, n_iter = search.library, search.n_iter
    short = replace(ens, duration_days=ens.frame_interval_days)
    lo, hi = RP_SHIFT_BOUNDS_EV

    def rp0(shift: float) -> float:
        lig = {**params["ligands"].get("ddabr", {}), "rp_barrier_shift_ev": shift}
        p = {**params, "ligands": {**params["ligands"], "ddabr": lig}}
        return search.evaluate(short, p, "ddabr")["rp_day0"]

    entry: dict[str, Any] = {
        "target": "no RP domain in DDABr NCs right after the exchange",
        "bounds": [lo, hi],
        "default": library["ddabr"].rp_barrier_shift_ev,
        "applies_to": [n for n, g in library.items() if g.treatment_duration_s > 0],
    }
    if rp0(lo) == 0:  # no RP at day 0 even without a shift (or no NC has RP)
        entry.update(value=entry["default"], constrained=False)
        entry["note"] = "no DDABr NC has an RP domain at day 0 even without a shift"
        report["ligands.*.rp_barrier_shift_ev"] = entry
        say("rp_barrier_shift_ev: not constrained (no RP at day 0 even without a shift)")
        return
    top = hi
    for _ in range(n_iter):  # from the cheap side: a large shift means many RP switches
        mid = 0.5 * (lo + hi)
        if rp0(mid) > 0:
            lo = mid
        else:
            hi = mid
    reached = hi < top or rp0(top) == 0
    value = round(hi, 4)
    entry.update(value=value, constrained=True, reached=reached, at_bound=not reached)
    entry["bracket"] = [lo, hi]  # RP left at lo, none at hi (same NCs)
    report["ligands.*.rp_barrier_shift_ev"] = entry
    for name in entry["applies_to"]:
        params["ligands"][name] = {**params["ligands"].get(name, {}), "rp_barrier_shift_ev": value}
    say(
        f"rp_barrier_shift_ev = {value:.3f} eV (the smallest shift that clears RP in the DDABr "
        f"exchange{'' if reached else '; not reached at the bound'}), for all exchanges"
    )


def _status(report: dict[str, Any]) -> str:
    """One line: were the targets reached, and what that means for the values."""
    fits = [v for v in report.values() if "reached" in v]
    missed = [k for k, v in report.items() if "reached" in v and not v["reached"]]
    if not missed:
        return f"all {len(fits)} targets reached (PL shifts within 2 nm)"
    return (
        f"{len(missed)} of {len(fits)} targets not reached ({', '.join(missed)}): the "
        "model cannot reach them, so those values are the closest it gets (see each "
        "fit's miss and plateau), not physical estimates"
    )


def _shift(pub: dict[str, Any]) -> float:
    """Return the published PL shift over 14 days (nm)."""
    return float(pub["pl_day14_nm"]) - float(pub["pl_fresh_nm"])


def _entry(
    target_name: str,
    target: float,
    value: float,
    sq_miss: float,
    bounds: tuple[float, float],
    prior: float | None = None,
    searched: tuple[float, float, float] | None = None,
    plateau: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """One fit's report entry; ``searched`` = (x, lo, hi) in the search variable, if not ``value``.

    ``plateau``: what :func:`plateau_edge` reported (in the units of ``value``), if anything.
    """
    miss = math.sqrt(sq_miss)
    x, lo, hi = searched if searched is not None else (value, *bounds)
    at_bound = min(abs(x - lo), abs(x - hi)) < 1e-3 * (hi - lo)
    out = {
        "target": f"{target_name} = {target:g} nm",
        "value": float(value),
        "miss_nm": round(miss, 2),
        "bounds": list(bounds),
        "reached": bool(miss < 2.0),
        "at_bound": bool(at_bound),
    }
    if prior is not None:
        out["library_value"] = prior
    if plateau is not None:
        out.update(plateau)
        out["note"] = (
            "flat objective up to a bound: the value is the plateau's inner edge (misses "
            f"within {PLATEAU_TOL_NM} nm of the best), the least extreme value the data allow"
        )
    return out
