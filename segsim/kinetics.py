"""The KMC event catalogue and rate law (physics only; selection lives in the kernels).

Events (MODEL.md section 3; the per-site slot layout is in :mod:`segsim.kernels.kmc`):

1. **Vacancy hop** V <-> neighbouring Pb/Cd, both inside the crystal.  Kinetically resolved
   barrier ``Ea = E_KRA(M) + dE/2`` clipped to ``Ea >= max(0, dE)``, which keeps detailed
   balance exactly: forward/backward rate ratio ``exp(-dE/kT)``.
2. **Expulsion** of a surface cation M into solution through an unpassivated surface AX
   channel, leaving a vacancy: rate ``nu exp(-Ea/kT) (1 - theta**k)``, k = number of outside
   neighbours, ``Ea = max(0, E_exp(M) + alpha (dE_rm(site) - dE_rm_ref(M)))``.  ``dE_rm`` is
   the CE energy change of M -> V at the site, ``dE_rm_ref(M)`` the same for M alone on the
   centre of a face of a pure CsPbBr3 NC (:func:`removal_reference_ev`).  Irreversible.
3. **Surface exchange**: recession, a V with an outside neighbour becomes outside (O), and
   its reverse, regrowth, an O site of the synthesised cube with an outside neighbour
   becomes V.  With ``dOmega = dE_rec - (2 - k) mu_CsBr`` the grand-canonical energy change
   of the recession (``dE_rec`` the CE's V -> O energy change, ``k`` the site's outside
   neighbours, the same in both states) the barriers are
   ``Ea_rec = max(E_rec + alpha_rec dOmega, dOmega, 0)`` and ``Ea_regrow = Ea_rec - dOmega``:
   the forward/backward ratio is ``exp(-dOmega / kT)`` exactly, so the vacancy population
   and the crystal's outline follow the model's grand-canonical energy
   ``E_CE - N_CsBr mu_CsBr`` (detailed balance; ``docs/model.md``).  Why ``mu_CsBr``: the
   atomistic structure behind an occupation (:mod:`segsim.atomistic`) gains ``2 - k`` CsBr
   units when a vacancy with ``k`` outside neighbours recedes (checked for every k from 1
   to 5 on rough surfaces), so a CE fitted to total energies carries that many CsBr
   energies in ``dE_rec``; the CsBr goes to (or comes from) the solution at
   ``mu_CsBr = mu_CsBr(rock salt) + delta_mu_csbr_ev``.  ``mu_CsBr(rock salt)`` is the value
   ``segsim train`` stores in the four-species CEs it fits
   (:attr:`ClusterExpansionModel.mu_csbr_ev`; 0 for other models), ``delta_mu_csbr_ev``
   (<= 0) the solution's undersaturation.  The term ``-(2 - k) mu_CsBr`` is a sum of
   site and nearest-neighbour pair counts, so ``dOmega`` is the difference of a state
   function and detailed balance holds around every cycle of events.  For a three-species
   CE (V and O both X, MODEL.md section 2) ``dE_rec = 0``.  Regrowth is limited to the
   synthesised cube (``Lattice.in_nc``): the crystal may heal what it lost but never
   grows beyond its synthesised outline, so no site outside it is ever occupied; the
   ``regrowth`` switch off makes the recession irreversible (MODEL.md's original event).
4. **RP relaxation** (and its reverse): a cation site of an RP zone that is on the surface or
   has a non-RP crystal neighbour switches RP <-> perovskite, ``Ea = E_RP_a - shift + dE/2``
   clipped to ``Ea >= max(0, dE)``, ``shift`` > 0 only on surface-adjacent sites during a
   ligand-exchange treatment (:mod:`segsim.rp`, :mod:`segsim.kernels.rp`).

Passivation enters only through the quasi-equilibrium coverage ``theta`` of the ligand
(:mod:`segsim.params.ligands`): ligand adsorption/desorption is much faster than any cation
event, so it is eliminated as a fast variable instead of being simulated event by event.

Parameters are read from ``potentials/kinetics.yaml`` (each default with its source) and can
be overridden per input file (``kinetics:`` section).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np

from segsim import species
from segsim.config import KineticsParams, SimulationConfig
from segsim.kernels import kmc as _k
from segsim.rp import RPEnergetics
from segsim.units import beta_per_ev

__all__ = [
    "KineticsParams",
    "load_defaults",
    "parameter_vector",
    "recession_mu_csbr_ev",
    "removal_reference_ev",
    "treatment_parameter_vectors",
]


def load_defaults(path: str | Path | None = None) -> KineticsParams:
    """Read the default rate parameters (``potentials/kinetics.yaml`` unless ``path``).

    Raises
    ------
    segsim.config.ConfigError
        One line naming the file and key if the file is unreadable or a value is invalid.
    """
    from segsim.config import DEFAULT_KINETICS, load_kinetics_defaults

    return KineticsParams(**load_kinetics_defaults(path if path is not None else DEFAULT_KINETICS))


def _is_calibration(source: Any) -> bool:
    """Whether a ``source`` text says "calibration" before its first full stop or colon."""
    return "calibration" in re.split(r"[.:]", str(source or ""))[0]


def calibration_of(path: str | Path | None = None) -> tuple[Path | None, tuple[str, ...]]:
    """Return the model a kinetics defaults file was calibrated with and its calibrated keys.

    The model is the first word of ``calibrated_with.model`` (``potentials/kinetics.yaml``
    unless ``path``), a path relative to the repository root such as
    ``potentials/provisional.ce`` (None if the file names none); the keys are the parameters
    whose ``source`` says "calibration" before its first full stop or colon.  The same model
    holds for the calibrated values of ``potentials/rp.yaml`` and ``potentials/ligands.yaml``,
    which are fitted together with these (:func:`inherited_calibration`).
    """
    from segsim.params.files import DEFAULT_KINETICS, POTENTIALS_DIR, read_yaml

    data = read_yaml(path if path is not None else DEFAULT_KINETICS)
    data = data if isinstance(data, dict) else {}
    block = data.get("calibrated_with")
    model = block.get("model") if isinstance(block, dict) else None
    params = data.get("parameters")
    keys = tuple(
        k
        for k, v in (params.items() if isinstance(params, dict) else ())
        if isinstance(v, dict) and _is_calibration(v.get("source"))
    )
    if not isinstance(model, str) or not model.split():
        return None, keys
    return (POTENTIALS_DIR.parent / model.split()[0]).resolve(), keys


def inherited_calibration(rp: RPEnergetics | None = None, ligands: Any = None) -> list[str]:
    """Return the calibrated RP and ligand values of the shipped files that a run keeps.

    Parameters
    ----------
    rp
        The run's RP energetics; None: the shipped ``potentials/rp.yaml`` values.
    ligands
        The run's ligands (:class:`segsim.params.ligands.Ligand`); None: every ligand of the
        shipped library (an ensemble over all treatments).

    Returns
    -------
    list of str
        Dotted names such as ``rp.e_rp_a_ev`` and ``ligands.ddabr.theta``: the values whose
        ``source`` in ``rp.yaml`` / ``ligands.yaml`` says "calibration" and that the run
        uses unchanged.  A ligand's ``rp_barrier_shift_ev`` counts only for a treatment
        (``treatment_duration_s`` > 0).
    """
    from segsim.params.files import DEFAULT_RP, read_yaml
    from segsim.params.ligands import load_library
    from segsim.params.rp import load_rp_defaults

    shipped_rp = load_rp_defaults()[0]
    run_rp = shipped_rp if rp is None else rp
    doc = read_yaml(DEFAULT_RP)
    energetics = doc.get("energetics", {}) if isinstance(doc, dict) else {}
    kept = [
        f"rp.{k}"
        for k, v in energetics.items()
        if isinstance(v, dict)
        and _is_calibration(v.get("source"))
        and getattr(run_rp, k, None) == getattr(shipped_rp, k, None)
    ]
    library = load_library()
    for lig in library.values() if ligands is None else ligands:
        ref = library.get(lig.name)
        if ref is None or not _is_calibration(ref.source):
            continue
        if lig.theta == ref.theta:
            kept.append(f"ligands.{lig.name}.theta")
        if ref.treatment_duration_s > 0 and lig.rp_barrier_shift_ev == ref.rp_barrier_shift_ev:
            kept.append(f"ligands.{lig.name}.rp_barrier_shift_ev")
    return kept


def calibration_warning(
    model_path: str | Path,
    params: KineticsParams | None = None,
    defaults_path: str | Path | None = None,
    *,
    rp: RPEnergetics | None = None,
    ligands: Any = None,
) -> str | None:
    """Return a one-line warning if a KMC run takes calibrated values made for another model.

    The calibrated parameters of ``potentials/kinetics.yaml`` (expulsion, hop and recession
    barriers), ``rp.yaml`` (RP barrier) and ``ligands.yaml`` (coverages, RP shifts) were
    chosen together for the site-to-site energy scale of one model; with another one the same
    values can dissolve the NC, or keep Cd that should leave.  None when the model is that
    file (or a byte-identical copy), when the run sets every calibrated value to something
    else (``params``: its kinetics, the defaults if None; ``rp`` and ``ligands`` as in
    :func:`inherited_calibration`), or when the defaults file names no model.
    """
    calibrated, keys = calibration_of(defaults_path)
    model = Path(model_path).resolve()
    if calibrated is None or model == calibrated:
        return None
    if calibrated.is_file() and model.is_file() and model.read_bytes() == calibrated.read_bytes():
        return None
    defaults = load_defaults(defaults_path)
    run = defaults if params is None else params
    kept = [k for k in keys if getattr(run, k) == getattr(defaults, k)]
    inherited = inherited_calibration(rp, ligands)
    n_ligand = sum(k.startswith("ligands.") for k in inherited)
    if n_ligand > 2:  # an ensemble over the library: name the file, not every entry
        inherited = [k for k in inherited if not k.startswith("ligands.")]
        inherited.append(f"{n_ligand} ligand coverages and RP shifts of ligands.yaml")
    kept += inherited
    if not kept:
        return None
    return (
        f"warning: {', '.join(kept)} are calibrated for {calibrated.name}, not for "
        f"{model.name}; the Cd loss and RP relaxation of this run are uncalibrated (set them "
        "in the input's kinetics, rp and passivation sections)"
    )


def recession_mu_csbr_ev(tables: Any) -> float:
    """Return the CsBr chemical potential (eV per unit) the recession rule uses for ``tables``.

    The ``mu_csbr_ev`` of a four-species CE fitted by ``segsim train`` (compiled into the
    tables' metadata by :meth:`ClusterExpansionModel.compile`); 0.0 for any other model,
    i.e. no grand-canonical correction.
    """
    from segsim.models.cluster_expansion import MU_CSBR_KEY

    value = getattr(tables, "metadata", {}).get(MU_CSBR_KEY)
    return 0.0 if value is None else float(value)


def removal_reference_ev(tables: Any, lattice: Any) -> tuple[float, float, float]:
    """Return ``(dE_rm_ref(Pb), dE_rm_ref(Cd), dE_rec_ref)`` in eV for this model.

    The reference site is the centre of the ``-z`` face of a pure CsPbBr3 NC of this
    lattice's size.  ``dE_rm_ref(M)``: the energy change of removing M there (M -> V; for
    Cd a single Cd substituted there); ``dE_rec_ref``: the energy change of the recession
    (V -> O) of a single vacancy there.  Computed once per run from the same compiled tables,
    so the expulsion barrier of that site is exactly ``E_exp(M)``.  ``dE_rec_ref`` no longer
    enters a rate (the surface exchange uses the absolute ``dOmega``, ``docs/model.md``); it
    is stored with the run's metadata as the face's recession energy.
    """
    occ = lattice.empty_occupations()
    n = lattice.n_edge
    c0 = lattice.pad + n // 2
    site = int(lattice.site_index(np.array([c0]), np.array([c0]), np.array([lattice.pad]))[0])
    if not lattice.in_nc[site] or lattice.n_outside_nn[site] != 1:
        raise ValueError("the lattice has no face-centre site (NC too small or periodic)")
    ref_pb = tables.flip_energy_change(occ, site, species.VAC)
    occ[site] = species.VAC
    ref_rec = tables.flip_energy_change(occ, site, species.OUT)
    occ[site] = species.CD
    ref_cd = tables.flip_energy_change(occ, site, species.VAC)
    return float(ref_pb), float(ref_cd), float(ref_rec)


def parameter_vector(
    params: KineticsParams,
    *,
    temperature_k: float,
    theta: float,
    removal_ref_ev: tuple[float, float, float] = (0.0, 0.0, 0.0),
    rp: RPEnergetics | None = None,
    rp_shift_ev: float = 0.0,
    recession_mu_csbr_ev: float = 0.0,
) -> np.ndarray:
    """Pack the parameters into the ``float64`` vector ``kp`` the compiled kernels read.

    Parameters
    ----------
    params
        Rate parameters and switches.
    temperature_k
        Temperature in K.
    theta
        Passivated fraction of surface AX sites (0..1) of the ligand shell.
    removal_ref_ev
        ``(dE_rm_ref(Pb), dE_rm_ref(Cd), dE_rec_ref)`` in eV (:func:`removal_reference_ev`).
    rp
        RP energetics and switching barrier; ``None`` switches the RP term and the RP
        events off.
    rp_shift_ev
        Lowering of the RP switching barrier of surface-adjacent sites (eV) while a
        ligand-exchange treatment acts; 0 otherwise.
    recession_mu_csbr_ev
        CsBr chemical potential of rock-salt CsBr in the CE's energy reference (eV per CsBr
        unit, :func:`recession_mu_csbr_ev`); the kernel's ``mu_CsBr`` is this plus
        ``params.delta_mu_csbr_ev``.
    """
    if not 0.0 <= theta <= 1.0:
        raise ValueError(f"theta must be in [0, 1], got {theta}")
    kp = np.zeros(_k.N_KP, dtype=np.float64)
    kp[_k.KP_BETA] = beta_per_ev(temperature_k)
    kp[_k.KP_NU] = params.attempt_frequency_per_s
    kp[_k.KP_EKRA + species.PB] = params.e_kra_pb_ev
    kp[_k.KP_EKRA + species.CD] = params.e_kra_cd_ev
    kp[_k.KP_DKRA : _k.KP_DKRA + 4] = (
        params.de_kra_pb_1cd_ev, params.de_kra_pb_2cd_ev,
        params.de_kra_cd_1cd_ev, params.de_kra_cd_2cd_ev,
    )  # fmt: skip
    kp[_k.KP_EEXP + species.PB] = params.e_exp_pb_ev
    kp[_k.KP_EEXP + species.CD] = params.e_exp_cd_ev
    kp[_k.KP_ALPHA] = params.bep_alpha
    kp[_k.KP_REF + species.PB] = removal_ref_ev[0]
    kp[_k.KP_REF + species.CD] = removal_ref_ev[1]
    kp[_k.KP_EREC] = params.e_rec_ev
    kp[_k.KP_REC_REF] = removal_ref_ev[2]
    kp[_k.KP_ALPHA_REC] = params.bep_alpha_recession
    kp[_k.KP_MU_REC] = recession_mu_csbr_ev + params.delta_mu_csbr_ev
    kp[_k.KP_REGROW_ON] = float(params.regrowth)
    kp[_k.KP_THETA] = theta
    kp[_k.KP_HOP_ON] = float(params.hop)
    kp[_k.KP_EXPEL_ON] = float(params.expulsion)
    kp[_k.KP_RECEDE_ON] = float(params.recession)
    if rp is not None:
        kp[_k.KP_RP_ON] = 1.0
        kp[_k.KP_EPS_RP] = rp.eps_rp_ev
        kp[_k.KP_ETA_RP] = rp.eta_ev
        kp[_k.KP_J_RP] = rp.j_rp_ev
        kp[_k.KP_ERPA] = rp.e_rp_a_ev
        kp[_k.KP_ERPA_SHIFT] = rp_shift_ev
    elif rp_shift_ev:
        raise ValueError("rp_shift_ev needs the RP term (rp)")
    return kp


def treatment_parameter_vectors(
    cfg: SimulationConfig, tables: Any, lattice: Any, phase: np.ndarray
) -> tuple[np.ndarray, np.ndarray, float]:
    """Return ``(kp during the treatment, kp of the aging, end of the treatment in s)``.

    The RP term is on only if the NC has an RP zone.  The ligand-exchange treatment lowers
    the RP switching barrier of surface-adjacent sites by ``rp_barrier_shift_ev`` for the
    first ``treatment_duration_s`` of the run; without a treatment both vectors are equal
    and the treatment ends at 0.
    """
    from segsim.rp import zone_mask

    ligand = cfg.passivation.ligand
    ref = removal_reference_ev(tables, lattice)
    rp = cfg.rp if zone_mask(phase).any() else None
    common = {
        "temperature_k": cfg.run.temperature_k,
        "theta": ligand.theta,
        "removal_ref_ev": ref,
        "rp": rp,
        "recession_mu_csbr_ev": recession_mu_csbr_ev(tables),
    }
    kp = parameter_vector(cfg.kinetics.params, **common)
    shift = float(ligand.rp_barrier_shift_ev) if rp is not None else 0.0
    t_treat = float(ligand.treatment_duration_s) if shift > 0 else 0.0
    kp_treat = (
        parameter_vector(cfg.kinetics.params, **common, rp_shift_ev=shift) if t_treat > 0 else kp
    )
    return kp_treat, kp, t_treat
