"""The ``segsim`` command line: subcommands and exit codes.

Exit codes: 0 success, 2 user error (bad input, bad file, bad option), 130 interrupted
(checkpoint written; resume with ``segsim run --resume FILE``), 1 internal error.
User errors print one line ``segsim: error: ...`` on stderr and never a traceback.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from segsim import __version__
from segsim.units import SECONDS_PER_DAY

EXIT_OK, EXIT_INTERNAL, EXIT_USER, EXIT_INTERRUPTED = 0, 1, 2, 130


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(EXIT_USER, f"segsim: error: {message} (see {self.prog} --help)\n")


def _fail(message: str) -> int:
    sys.stderr.write(f"segsim: error: {message}\n")
    return EXIT_USER


def _warn_if_uncalibrated(
    model: Any, params: Any = None, defaults: Any = None, *, rp: Any = None, ligands: Any = None
) -> None:
    """Print :func:`segsim.kinetics.calibration_warning` for a KMC model, if there is one."""
    from segsim.kinetics import calibration_warning

    warning = calibration_warning(model, params, defaults, rp=rp, ligands=ligands)
    if warning:
        sys.stderr.write(f"segsim: {warning}\n")


# --------------------------------------------------------------------------- commands
def cmd_validate(args: argparse.Namespace) -> int:
    """Validate input files without running them."""
    from segsim.config import TrainConfig, load_any

    for path in args.inputs:
        cfg = load_any(path)
        if isinstance(cfg, TrainConfig):
            print(f"{path}: ok (train, {cfg.calculator.kind}, database {cfg.database.name})")
        else:
            print(f"{path}: ok ({cfg.run.kind}, {cfg.system.edge_nm} nm, x = {cfg.system.x_cd})")
    return EXIT_OK


def cmd_run(args: argparse.Namespace) -> int:
    """Run a simulation from a YAML input, or resume one from its result file."""
    from segsim import driver
    from segsim.config import load

    if len(args.input) > 1:  # a sweep: spread over the MPI ranks, restartable
        from segsim.sweep import SweepError, run_many

        if args.resume:
            return _fail("--resume takes no input files (re-run a sweep to continue it)")
        try:
            res = run_many(args.input, args.output or ".", force=args.force, quiet=args.quiet,
                           walltime_s=args.walltime)  # fmt: skip
        except SweepError as exc:
            return _fail(str(exc))
        unfinished = [r for r in res or [] if r["status"].startswith(("stopped", "not started"))]
        return EXIT_INTERRUPTED if unfinished else EXIT_OK
    args.input = args.input[0] if args.input else None
    if args.resume:
        if args.input is not None:
            return _fail("give either an input file or --resume FILE, not both")
        out = Path(args.resume)
        cfg = driver.resume_config(out)
    else:
        if args.input is None:
            return _fail("an input file is required (or --resume FILE)")
        cfg = load(args.input)
        out = Path(args.output) if args.output else Path(Path(args.input).stem + ".h5")
        if out.exists() and not args.force:
            return _fail(f"{out} exists; use --force to overwrite or --resume {out} to continue")
        if not out.parent.exists():
            return _fail(f"output directory {out.parent} does not exist")
    progress = False if args.quiet else None
    if cfg.run.kind == "kmc":
        if not args.quiet:
            _warn_if_uncalibrated(
                cfg.model.path,
                cfg.kinetics.params,
                cfg.kinetics.defaults,
                rp=cfg.rp,
                ligands=[cfg.passivation.ligand],
            )
        ks = driver.run_kmc(
            cfg, out, resume=bool(args.resume), progress=progress, walltime_s=args.walltime
        )
        if not args.quiet:
            c = ks.counts
            print(
                f"{ks.path}: {ks.time_s / SECONDS_PER_DAY:.3f} days, {ks.n_events} events in "
                f"{ks.wall_s:.1f} s ({ks.n_events / max(ks.wall_s, 1e-9):.3g} events/s)\n"
                f"x {ks.x_cd_start:.4f} -> {ks.x_cd:.4f}, PL peak {ks.pl_peak_start_nm:.1f} -> "
                f"{ks.pl_peak_nm:.1f} nm, edge {ks.edge_nm:.2f} nm; expelled Cd "
                f"{c['expel_cd']}, Pb {c['expel_pb']}; hops Cd {c['hop_cd']}, Pb {c['hop_pb']}; "
                f"receded sites {c['recede']}"
            )
        return EXIT_OK
    summary = driver.run_canonical(
        cfg, out, resume=bool(args.resume), progress=progress, walltime_s=args.walltime
    )
    if not args.quiet:
        prof = " ".join(f"{v:.3f}" for v in summary.x_profile)
        print(
            f"{summary.path}: {summary.step} steps in {summary.wall_s:.1f} s, "
            f"acceptance {summary.acceptance:.3f}, E = {summary.energy_ev:.6f} eV\n"
            f"Cd fraction by depth (surface -> core): {prof}"
        )
    return EXIT_OK


def cmd_reproduce(args: argparse.Namespace) -> int:
    """Run the published six-treatment aging experiment on an NC ensemble."""
    from segsim.reproduce import TREATMENTS, ReproduceError, Unfinished, reproduce

    treatments = (
        tuple(t for t in args.treatments.split(",") if t) if args.treatments else TREATMENTS
    )
    try:
        opts = _ensemble_options(args, treatments)
        if opts.params is None and not args.quiet:
            from segsim.params.ligands import load_library

            library = load_library()
            _warn_if_uncalibrated(
                opts.model, ligands=[library[t] for t in treatments if t in library]
            )
        if args.threads < 1:
            raise ReproduceError(f"--threads must be >= 1 (got {args.threads})")
        reproduce(opts, args.output, force=args.force, quiet=args.quiet, walltime_s=args.walltime,
                  threads=args.threads)  # fmt: skip
    except ReproduceError as exc:
        return _fail(str(exc))
    except Unfinished as exc:
        sys.stderr.write(f"segsim: {exc}\n")
        return EXIT_INTERRUPTED
    return EXIT_OK


def _ensemble_options(args: argparse.Namespace, treatments: tuple[str, ...]) -> Any:
    """Return the ensemble options shared by ``reproduce`` and ``calibrate``."""
    from segsim.reproduce import ReproduceOptions

    return ReproduceOptions(
        n_ncs=args.n_ncs,
        seed=args.seed,
        duration_days=args.days,
        frame_interval_days=args.frame_days,
        treatments=treatments,
        model=str(Path(args.model).resolve()),
        params=str(Path(args.params).resolve()) if getattr(args, "params", None) else None,
        edge_mean_nm=args.edge_mean_nm,
        edge_std_nm=args.edge_std_nm,
    )


def cmd_calibrate(args: argparse.Namespace) -> int:
    """Fit kinetic defaults and ligand coverages to the published aging targets."""
    from segsim.calibrate import CalibrateError, CalibrateOptions, calibrate
    from segsim.reproduce import TREATMENTS, ReproduceError

    treatments = (
        tuple(t for t in args.treatments.split(",") if t) if args.treatments else TREATMENTS
    )
    try:
        opts = CalibrateOptions(
            ensemble=_ensemble_options(args, treatments),
            n_iter=args.iterations,
            targets=args.targets,
            cache=args.cache,
        )
        doc = calibrate(opts, args.output, quiet=args.quiet)
    except (CalibrateError, ReproduceError) as exc:
        return _fail(str(exc))
    from segsim import parallel

    if not args.quiet and parallel.world().is_root:
        print(f"wrote {args.output} ({doc['calibration']['wall_s']} s); use it with "
              f"`segsim reproduce --params {args.output}`")  # fmt: skip
    return EXIT_OK


def cmd_sweep(args: argparse.Namespace) -> int:
    """Write a grid of KMC inputs (ligand x temperature x composition) from a base input."""
    from segsim.sweep import SweepError, write_grid

    def floats(text: str | None, opt: str) -> list[float]:
        try:
            return [float(v) for v in text.split(",") if v] if text else []
        except ValueError:
            raise SweepError(f"{opt}: comma-separated numbers expected (got {text!r})") from None

    try:
        paths = write_grid(
            args.base,
            args.output,
            ligands=[v for v in (args.ligands or "").split(",") if v],
            temperatures_k=floats(args.temperatures, "--temperatures"),
            x_cds=floats(args.x_cd, "--x-cd"),
        )
    except SweepError as exc:
        return _fail(str(exc))
    print(f"wrote {len(paths)} inputs to {args.output}; run them with\n"
          f"  mpiexec -n <ranks> segsim run {args.output}/*.yaml -o {args.output}")  # fmt: skip
    return EXIT_OK


def _profile(values: Sequence[float]) -> str:
    """Return a depth profile as text (surface layer first)."""
    return " ".join(f"{v:.3f}" for v in values)


def _fill_hollowness(s: dict[str, Any], path: str) -> None:
    """Add the interior-vacancy and envelope values to the first and last frame of ``s`` (KMC).

    Files written before these observables existed lack them in ``/trace``; for such a file
    they are recomputed from the snapshot stored at the same frame
    (:func:`segsim.invariants.recomputed_frames`), else they stay missing.  Sets
    ``s["hollowness_source"][label]`` to ``"trace"``, ``"snapshot"`` or ``"n/a"``.
    """
    from segsim.invariants import recomputed_frames
    from segsim.io.hdf5 import ResultFileError

    if not s["n_frames"]:
        return
    frames = {"first": 0, "last": s["n_frames"] - 1}
    old = [label for label in frames if "interior_vacancy_fraction" not in s[label]]
    recomputed: dict[int, dict[str, Any]] = {}
    if old and s["n_snapshots"]:
        try:
            recomputed = recomputed_frames(path)
        except ResultFileError:
            recomputed = {}
    source = {}
    for label, k in frames.items():
        if label not in old:
            source[label] = "trace"
        elif k in recomputed:
            s[label].update(
                {n: v.tolist() if hasattr(v, "tolist") else v for n, v in recomputed[k].items()}
            )
            source[label] = "snapshot"
        else:
            source[label] = "n/a"
    s["hollowness_source"] = source


def _hollowness_lines(fr: dict[str, Any], source: str) -> list[str]:
    """Return the ``segsim info`` lines on interior vacancies and envelope edges (KMC)."""
    if source == "n/a":
        why = "not in this file's trace; no snapshot at this frame"
        return [f"        interior vacancies, envelope edge: n/a ({why})"]
    note = " [recomputed from the snapshot]" if source == "snapshot" else ""
    counts = (
        f"        vacancies: {fr['n_vac_interior']} interior (no O neighbour), "
        f"{fr['n_vac_surface']} surface; interior vacancy fraction "
        f"{fr['interior_vacancy_fraction']:.4f} of the B sites{note}"
    )
    by_depth = _profile(fr["interior_vacancy_fraction_by_depth"])
    envelope = (
        f"        envelope edge {fr['envelope_edge_nm']:.2f} nm, of the occupied sites "
        f"{fr['occupied_envelope_edge_nm']:.2f} nm (edge_nm {fr['edge_nm']:.2f} nm: "
        f"cube root of the occupied sites)"
    )
    return [
        counts,
        f"        interior vacancy fraction by depth (surface -> core): {by_depth}",
        envelope,
    ]


def cmd_info(args: argparse.Namespace) -> int:
    """Summarise a result file.

    Besides the trace's first and last frame it prints, for KMC files, the interior
    vacancies and envelope edges; for files written before those were traced they are
    recomputed from the snapshot of the same frame, or reported as n/a
    (:func:`_fill_hollowness`).
    """
    from segsim.io.hdf5 import summarize

    s = summarize(args.file)
    kmc = s["run_kind"] == "kmc"
    if kmc:
        _fill_hollowness(s, args.file)
    if args.json:
        print(json.dumps(s, indent=2, default=str))
        return EXIT_OK
    lat = s["lattice"]
    print(
        f"{s['file']}: segsim {s['segsim_version']} (schema {s['schema_version']}), "
        f"created {s['created']}"
    )
    print(f"  run: {s['run_kind']}, model: {s['model_source']}")
    print(
        f"  NC: {lat.get('n_edge')}^3 B sites, a = {lat.get('a_angstrom')} A, "
        f"grid {lat.get('shape')}"
    )
    print(
        f"  frames: {s['n_frames']}, snapshots: {s['n_snapshots']}, "
        f"checkpoint at step {s['checkpoint_step']} ({'complete' if s['complete'] else 'incomplete'})"
    )
    for label in ("first", "last") if s["n_frames"] else ():
        fr = s[label]
        if kmc:
            print(
                f"  {label:5s} t = {fr['time_s'] / SECONDS_PER_DAY:.3f} d ({fr['step']} events): "
                f"x = {fr['x_cd']:.4f}, PL {fr['pl_peak_nm']:.1f} nm, edge {fr['edge_nm']:.2f} nm, "
                f"Cd out {fr['cd_expelled']}, Pb out {fr['pb_expelled']}"
            )
        else:
            print(
                f"  {label:5s} step {fr['step']}: E = {fr['energy_ev']:.6f} eV, "
                f"acceptance {fr['acceptance']:.3f}"
            )
        print(
            f"        Cd fraction by depth (surface -> core): {_profile(fr['cd_fraction_by_depth'])}"
        )
        if kmc and "rp_fraction" in fr:
            domain = "an RP domain" if fr["has_rp"] else "no RP domain"
            x_rp = "-" if fr["x_rp"] != fr["x_rp"] else f"{fr['x_rp']:.3f}"
            print(
                f"        RP: {100 * fr['rp_fraction']:.2f} % of cation sites ({domain}), "
                f"x inside RP {x_rp}, outside {fr['x_pv']:.3f}"
            )
        if kmc:
            print("\n".join(_hollowness_lines(fr, s["hollowness_source"][label])))
    return EXIT_OK


def cmd_bench(args: argparse.Namespace) -> int:
    """Run a benchmark and print its figures."""
    from segsim import bench

    if not Path(args.model).is_file():
        return _fail(f"--model: file not found: {args.model} (give a cluster-expansion .ce file)")
    if args.what == "mc":
        result = bench.bench_mc(model_path=args.model, quick=args.quick)
        text = bench.format_bench
    elif args.what == "kmc":
        from segsim.params.files import POTENTIALS_DIR

        inputs = POTENTIALS_DIR.parent / "inputs"
        result = bench.bench_kmc(
            model_path=args.model,
            edges_nm=(6.0, 12.0) if args.quick else bench.KMC_EDGES_NM,
            n_events=20_000 if args.quick else 400_000,
            with_clease=not args.quick,
            plain_ces=(POTENTIALS_DIR / "provisional.ce", POTENTIALS_DIR / "fitted.ce"),
            aging_inputs=(inputs / "aging_pristine.yaml", inputs / "aging_ddabr.yaml"),
            aging_days=bench.AGING_QUICK_DAYS if args.quick else None,
        )
        text = bench.format_bench_kmc
    else:  # pragma: no cover - argparse restricts choices
        return _fail(f"unknown benchmark {args.what!r}")
    print(json.dumps(result) if args.json else text(result))
    return EXIT_OK


def _group_line(summary: Any) -> str:
    """One line: same-crystal difference CV against the 'all arrangements equal' baseline."""
    cv, base = summary.group_cv_mev_per_nc, summary.group_baseline_mev_per_nc
    if not (math.isfinite(cv) and math.isfinite(base)):
        return ""
    verdict = "better" if cv < base else "no better"
    return (
        f"same-crystal differences: CV {cv:.1f} meV per NC against {base:.1f} for "
        f"'all arrangements equal' ({verdict})\n"
    )


def cmd_train(args: argparse.Namespace) -> int:
    """Fit the cluster expansion: structures, reference energies (cached), fit, report."""
    from segsim.config import load_train
    from segsim.training.pipeline import train

    cfg = load_train(args.input)
    if args.jobs is not None:  # not part of the provenance: the energies do not depend on it
        if args.jobs < 1:
            return _fail(f"--jobs must be a positive integer (got {args.jobs})")
        cfg = dataclasses.replace(
            cfg, calculator=dataclasses.replace(cfg.calculator, jobs=args.jobs)
        )
    try:
        summary = train(cfg, progress=not args.quiet, cached_only=args.cached_only)
    except FileNotFoundError as exc:
        return _fail(f"{args.input}: {exc}")
    missing = f", {summary.n_missing} not yet computed" if summary.n_missing else ""
    print(
        f"{summary.n_structures} structures ({summary.n_computed} computed now{missing}), "
        f"CV RMSE {summary.cv_rmse_mev_per_site:.2f} meV per B site\n"
        f"{_group_line(summary)}"
        f"{summary.checks_text}\n"
        + "".join(f"{line}\n" for line in summary.mc_validation_lines)
        + f"wrote {summary.ce_path} and {summary.report_path}"
    )
    return EXIT_OK


def cmd_barriers(args: argparse.Namespace) -> int:
    """Climbing-image NEB of the KMC's paths (resumable), or write the barrier table."""
    from segsim.barriers.runner import load_barrier_config, run_barriers, write_barrier_table

    cfg = load_barrier_config(args.input)
    if args.table:
        out = write_barrier_table(cfg, f"segsim barriers {args.input} --table")
        print(f"wrote {out}")
        return EXIT_OK
    only_c = args.calculator.split(",") if args.calculator else None
    only_p = args.paths.split(",") if args.paths else None
    for name, given, allowed in (("--calculator", only_c, cfg.calculators),
                                 ("--paths", only_p, cfg.paths)):  # fmt: skip
        bad = sorted(set(given or ()) - set(allowed))
        if bad:
            return _fail(f"{name} {bad[0]!r} is not in {args.input}; allowed: {', '.join(allowed)}")
    if args.threads is not None:
        if args.threads < 1:
            return _fail(f"--threads must be a positive integer (got {args.threads})")
        from segsim.training.calculators import limit_torch_threads

        limit_torch_threads(args.threads)
    from segsim.training.calculators import MissingDependencyError

    log = (lambda _m: None) if args.quiet else None
    try:
        if args.check:
            from segsim.barriers.check import summarise_checks
            from segsim.barriers.runner import run_checks

            for key, c in summarise_checks(run_checks(cfg, log=log)).items():
                split = (
                    "no FS yet"
                    if c["e_split_ev"] is None
                    else f"split {c['e_split_ev']:+.3f} (source {c['source_e_split_ev']:+.3f})"
                )
                print(
                    f"{key}: E_fwd {c['e_forward_ev']:.3f} eV "
                    f"(source {c['source_e_forward_ev']:.3f}), {split}"
                )
            return EXIT_OK
        if args.reactions:
            from segsim.barriers.runner import run_reactions

            for r in run_reactions(cfg, only_calculators=only_c, log=log):
                sites = ", ".join(
                    f"{w} Pb {v['pb']:+.3f} Cd {v['cd']:+.3f}" for w, v in r["sites"].items()
                )
                print(f"{r['calculator']:10s} removal dE (eV): {sites}")
            return EXIT_OK
        records = run_barriers(cfg, only_calculators=only_c, only_paths=only_p, log=log)
    except (MissingDependencyError, FileNotFoundError) as exc:
        return _fail(f"{args.input}: {exc}")
    print(f"{'calculator':10s} {'path':22s} {'E_KRA':>7s} {'E_fwd':>7s} {'split':>7s} conv")
    for r in records:
        print(
            f"{r['calculator']:10s} {r['path']:22s} {r['e_kra_ev']:7.3f} {r['e_forward_ev']:7.3f} "
            f"{r['e_split_ev']:7.3f} {'yes' if r['band_converged'] else 'NO'}"
        )
    print(f"records in {cfg.output / 'records.jsonl'}")
    return EXIT_OK


def cmd_warmup(args: argparse.Namespace) -> int:
    """Compile and cache every kernel (run once before parallel jobs)."""
    import time

    from segsim.warmup import warm_up, warm_up_kmc

    t0 = time.perf_counter()
    warm_up()
    warm_up_kmc()
    print(f"kernels compiled and cached in {time.perf_counter() - t0:.1f} s")
    return EXIT_OK


def _missing_output_dir(output: str | None) -> str | None:
    """Return an error message if ``output`` lies in a directory that does not exist."""
    if output is not None and not Path(output).parent.is_dir():
        return f"-o: output directory {Path(output).parent} does not exist"
    return None


def cmd_export(args: argparse.Namespace) -> int:
    """Write the atomistic frames of a result file (extxyz or ASE trajectory)."""
    from segsim.viz.export import export_frames

    if msg := _missing_output_dir(args.output):
        return _fail(msg)

    out, n = export_frames(args.file, fmt=args.format, frames=args.frames, output=args.output)
    print(f"wrote {n} frames to {out}")
    return EXIT_OK


def cmd_plot(args: argparse.Namespace) -> int:
    """Plot one or several result files to a PNG."""
    from segsim.viz.plot import plot_files

    if msg := _missing_output_dir(args.output):
        return _fail(msg)

    out = plot_files(args.files, args.what, times=args.times, output=args.output)
    print(f"wrote {out}")
    return EXIT_OK


def cmd_stem(args: argparse.Namespace) -> int:
    """Write a HAADF-STEM-like image of a snapshot and the column spacing per region."""
    from segsim.viz.stem import write_stem

    if msg := _missing_output_dir(args.output):
        return _fail(msg)

    png, csv, rows = write_stem(args.file, args.frame, args.axis, args.output)
    for r in rows:
        print(
            f"{r['region']:8s} {r['n_columns']:6d} columns, x = {r['x_cd']:.4f}, "
            f"mean column distance {r['column_distance_angstrom']:.4f} A"
        )
    print(f"wrote {png} and {csv}")
    return EXIT_OK


def cmd_xrd(args: argparse.Namespace) -> int:
    """Write the powder X-ray pattern (Debye equation) of a snapshot."""
    from segsim.viz.xrd import snapshot_pattern, write_xrd

    if msg := _missing_output_dir(args.output):
        return _fail(msg)

    pattern = snapshot_pattern(args.file, args.frame)
    out = Path(args.output) if args.output else Path(f"{Path(args.file).stem}_xrd.png")
    png, csv = write_xrd(pattern, out, csv=args.csv)
    print(f"wrote {png}" + (f" and {csv}" if csv else ""))
    return EXIT_OK


def _times(text: str) -> list[float]:
    """Parse ``--times``: comma-separated numbers (days for KMC files, steps for MC files)."""
    try:
        return [float(t) for t in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated numbers (days for KMC, steps for MC), got {text!r}"
        ) from None


def _frames(text: str) -> slice | list[int]:
    from segsim.viz.export import frame_selection

    try:
        return frame_selection(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected all, N, A:B[:C] or N,M,... (snapshot indices), got {text!r}"
        ) from None


def default_model_path() -> Path:
    """Return the shipped default energy model (``potentials/`` next to the sources)."""
    from segsim.params.files import POTENTIALS_DIR

    return POTENTIALS_DIR / "fitted.ce"


#: Subcommand table: name -> (handler, one-line help).
COMMANDS: dict[str, tuple[Callable[[argparse.Namespace], int], str]] = {
    "run": (cmd_run, "run a simulation from a YAML input (or --resume a result file)"),
    "reproduce": (cmd_reproduce, "the published 14-day aging of six treatments, on an NC ensemble"),
    "sweep": (cmd_sweep, "write a grid of inputs: ligand x temperature x composition"),
    "calibrate": (cmd_calibrate, "fit kinetic defaults and ligand coverages to the aging targets"),
    "validate": (cmd_validate, "check YAML inputs without running them"),
    "info": (cmd_info, "summarise a result file"),
    "bench": (cmd_bench, "benchmarks (speed ratios against reference codes)"),
    "train": (cmd_train, "fit the cluster expansion to reference energies (to paths.output_dir)"),
    "barriers": (cmd_barriers, "NEB barriers of the KMC's paths (resumable); --table writes them"),
    "warmup": (cmd_warmup, "compile and cache the numba kernels (before parallel jobs)"),
    "export": (cmd_export, "write atomistic frames of a result file for OVITO / ase gui"),
    "plot": (cmd_plot, "plot result files: x(t), PL, depth profiles, slices, histograms"),
    "stem": (cmd_stem, "HAADF-STEM-like image of a snapshot and column spacing per region"),
    "xrd": (cmd_xrd, "powder X-ray pattern (Debye equation, Cu K-alpha1) of a snapshot"),
}


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser."""
    p = _Parser(prog="segsim", description="Cation segregation in CsCd_xPb_(1-x)Br3 nanocrystals.")
    p.add_argument("--version", action="version", version=f"segsim {__version__}")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)
    for name, (_, help_) in COMMANDS.items():
        sp = sub.add_parser(name, help=help_, description=help_)
        if name == "run":
            sp.add_argument(
                "input", nargs="*", help="YAML input file(s); several = a sweep over MPI ranks"
            )
            sp.add_argument(
                "-o",
                "--output",
                help="result file (default: <input stem>.h5); with several inputs a folder",
            )
            sp.add_argument("--resume", metavar="FILE", help="continue a stopped run")
            sp.add_argument("--force", action="store_true", help="overwrite an existing output")
            sp.add_argument("-q", "--quiet", action="store_true", help="no progress or summary")
            sp.add_argument(
                "--walltime",
                type=float,
                metavar="SECONDS",
                help="stop cleanly with a checkpoint after this much wall time",
            )
        elif name == "sweep":
            sp.add_argument("base", help="base KMC input (YAML)")
            sp.add_argument("-o", "--output", required=True, help="folder for the inputs")
            sp.add_argument("--ligands", help="comma-separated ligand names")
            sp.add_argument("--temperatures", help="comma-separated temperatures (K)")
            sp.add_argument("--x-cd", help="comma-separated Cd fractions")
        elif name in ("reproduce", "calibrate"):
            # = ReproduceOptions.n_ncs and segsim.calibrate.CALIBRATE_N_NCS (the parser
            # imports no numpy)
            n_default = 3 if name == "reproduce" else 16
            sp.add_argument("-n", "--n-ncs", type=int, default=n_default,
                            help=f"NCs per treatment ({n_default})")  # fmt: skip
            sp.add_argument("--seed", type=int, default=2021, help="ensemble seed (2021)")
            sp.add_argument("--days", type=float, default=14.0, help="aging time (14 days)")
            sp.add_argument(
                "--frame-days", type=float, default=0.25, help="frame interval (0.25 days)"
            )
            sp.add_argument(
                "--treatments", help="comma-separated subset (default: all six treatments)"
            )
            sp.add_argument(
                "--model",
                default=str(default_model_path()),
                help="cluster-expansion file (default: the shipped model)",
            )
            sp.add_argument(
                "--edge-mean-nm", type=float, default=12.1, help="mean NC edge (12.1 nm, TEM)"
            )
            sp.add_argument(
                "--edge-std-nm", type=float, default=1.4, help="edge standard deviation (1.4 nm)"
            )
            sp.add_argument("-q", "--quiet", action="store_true", help="only errors")
            if name == "reproduce":
                sp.add_argument("-o", "--output", default="reproduce", help="output folder")
                sp.add_argument("--params", help="parameter file written by `segsim calibrate`")
                sp.add_argument("--force", action="store_true", help="start over in the folder")
                sp.add_argument(
                    "--threads",
                    type=int,
                    default=1,
                    help="NC runs at once in each process (thread pool, largest NC first; 1)",
                )
                sp.add_argument(
                    "--walltime",
                    type=float,
                    metavar="SECONDS",
                    help="stop cleanly with checkpoints after this much wall time",
                )
            else:
                sp.add_argument(
                    "-o", "--output", default="calibrated.yaml", help="parameter file to write"
                )
                sp.add_argument(
                    "--iterations", type=int, default=8, help="evaluations per 1-D search (8)"
                )
                sp.add_argument("--targets", help="targets file (potentials/aging_targets.yaml)")
                sp.add_argument(
                    "--cache",
                    metavar="FILE",
                    help="JSON file of finished evaluations: a stopped calibration rerun "
                    "with it skips them (same results)",
                )
        elif name == "train":
            sp.add_argument("input", help="training YAML (e.g. inputs/train.yaml)")
            sp.add_argument("-q", "--quiet", action="store_true", help="no per-structure lines")
            sp.add_argument(
                "--cached-only",
                action="store_true",
                help="compute nothing: fit the structures already in the database",
            )
            sp.add_argument(
                "--jobs",
                type=int,
                help="relaxation worker processes (overrides calculator.jobs; e.g. the cores "
                "of a cluster node)",
            )
        elif name == "barriers":
            sp.add_argument("input", help="barriers YAML (e.g. studies/barriers/barriers.yaml)")
            sp.add_argument("--calculator", help="comma-separated subset of the calculators")
            sp.add_argument("--paths", help="comma-separated subset of the paths")
            sp.add_argument("--threads", type=int, help="torch threads of this process")
            sp.add_argument(
                "--table", action="store_true", help="write the table from the records, run nothing"
            )
            sp.add_argument(
                "--check",
                action="store_true",
                help="single points of the check calculator (barriers.check) on computed bands",
            )
            sp.add_argument(
                "--reactions",
                action="store_true",
                help="the removal reaction energies (face, edge, corner; Pb and Cd) instead of paths",
            )
            sp.add_argument("-q", "--quiet", action="store_true", help="no per-path lines")
        elif name == "validate":
            sp.add_argument("inputs", nargs="+", help="YAML input files")
        elif name == "info":
            sp.add_argument("file", help="result file (.h5)")
            sp.add_argument("--json", action="store_true", help="machine-readable output")
        elif name == "bench":
            sp.add_argument("what", choices=["mc", "kmc"], help="which benchmark")
            sp.add_argument("--json", action="store_true", help="print one JSON object")
            sp.add_argument("--quick", action="store_true", help="short run (smoke test)")
            sp.add_argument(
                "--model",
                default=str(default_model_path()),
                help="cluster-expansion file (default: the shipped model)",
            )
        elif name in _VIZ_ARGUMENTS:
            _VIZ_ARGUMENTS[name](sp)
    return p


def _export_arguments(sp: argparse.ArgumentParser) -> None:
    from segsim.viz import EXPORT_FORMATS

    sp.add_argument("file", help="result file (.h5)")
    sp.add_argument("--format", required=True, choices=sorted(EXPORT_FORMATS), help="output format")
    sp.add_argument(
        "--frames",
        type=_frames,
        default="all",
        help="snapshots: all (default), N, A:B[:C] or N,M,... (0-based, negative from the end)",
    )
    sp.add_argument("-o", "--output", help="output file (default: <file stem>.<format>)")


def _plot_arguments(sp: argparse.ArgumentParser) -> None:
    from segsim.viz import PLOT_KINDS

    sp.add_argument("files", nargs="+", help="result files (.h5), overlaid")
    sp.add_argument("--what", required=True, choices=PLOT_KINDS, help="what to plot")
    sp.add_argument(
        "--times",
        type=_times,
        help="comma-separated times: days for KMC files, MC steps for MC files "
        "(depth, slice, histogram; default first and last, or last)",
    )
    sp.add_argument("-o", "--output", help="PNG file (default: <first file stem>_<what>.png)")


def _snapshot_arguments(sp: argparse.ArgumentParser, *, with_axis: bool) -> None:
    sp.add_argument("file", help="result file (.h5)")
    sp.add_argument(
        "--frame", type=int, default=-1, help="snapshot index (0-based; default -1, the last)"
    )
    if with_axis:
        from segsim.viz import BEAM_AXES

        sp.add_argument("--axis", default="001", choices=list(BEAM_AXES), help="beam direction")
        sp.add_argument(
            "-o", "--output", help="PNG file (default: <file stem>_stem_<axis>.png; CSV beside it)"
        )
    else:
        sp.add_argument("-o", "--output", help="PNG file (default: <file stem>_xrd.png)")
        sp.add_argument("--csv", action="store_true", help="also write 2theta, intensity as CSV")


#: Argument builders of the picture subcommands.
_VIZ_ARGUMENTS: dict[str, Callable[[argparse.ArgumentParser], None]] = {
    "export": _export_arguments,
    "plot": _plot_arguments,
    "stem": lambda sp: _snapshot_arguments(sp, with_axis=True),
    "xrd": lambda sp: _snapshot_arguments(sp, with_axis=False),
}


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``segsim`` command; returns the exit code."""
    from segsim.config import ConfigError

    args = build_parser().parse_args(argv)
    handler = COMMANDS[args.command][0]
    from segsim import stopflag

    stopflag.clear()  # a stop request belongs to the command that received it
    try:
        return handler(args)
    except ConfigError as exc:
        return _fail(str(exc))
    except Exception as exc:
        from segsim.driver import Interrupted, UserError
        from segsim.io.hdf5 import ResultFileError

        if isinstance(exc, UserError | ResultFileError):
            return _fail(str(exc))
        if isinstance(exc, Interrupted):
            sys.stderr.write(f"segsim: {exc}\n")
            return EXIT_INTERRUPTED
        raise
