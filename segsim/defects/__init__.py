"""Defect chemistry and thermodynamics of the B-site vacancy of CsPbBr3 (issue 26).

The lattice model (``shared/design/MODEL.md``) has one vacancy species V (an empty B site
inside the crystal) and the outside O.  Its atomistic meaning (:mod:`segsim.atomistic`) is
stated once here, with the formulas that turn reference energies into formation free energies
and equilibrium fractions; :mod:`segsim.defects.chemistry` holds the definitions,
:mod:`segsim.defects.thermodynamics` the formulas.

Defect chemistry
----------------
* **Expulsion** of a B cation M (Pb or Cd) removes a neutral MBr2 unit: the site becomes V and
  keeps its Cs and, in the bulk convention (a formula unit CsMBr3 per B site), one of its three
  Br.  In Kroeger-Vink notation the vacancy is the neutral complex ``V_M'' + 2 V_Br*``
  (a "PbBr2 partial Schottky" defect): the two Br vacancies compensate the B vacancy's charge.
  :func:`segsim.atomistic.terminate` removes the z trans pair of Br of an isolated interior V.
* **Recession** V -> O makes the site part of the outside; the charge-balanced termination
  of the surface around it changes, and the structure exchanges ``2 - k`` CsBr units with
  the solution (``k`` outside neighbours: a face site takes one up, an edge site none, a
  corner gives one away; ``docs/model.md``).  The number is read from the two structures,
  :func:`segsim.defects.chemistry.exchanged_units`.
* **Chemical potentials** (eV per formula unit): ``mu_CsBr`` and ``mu_PbBr2`` with
  ``mu_CsBr + mu_PbBr2 = e_bulk(CsPbBr3)`` where the perovskite is stable.  The CsBr-rich limit
  puts ``mu_CsBr`` at bulk CsBr (``mu_PbBr2 = e_bulk - mu_CsBr``), the PbBr2-rich limit puts
  ``mu_PbBr2`` at bulk PbBr2 (orthorhombic, PbCl2 type).

Formation free energy of one vacancy (positions relaxed, no vibrational or configurational
entropy except the orientation factor stated with the fraction):

``G_f = E(defect cell) - E(host) + n_MBr2 mu_MBr2 + n_CsBr mu_CsBr``,

with ``n_*`` the units the defect cell lacks.  Equilibrium fraction per B site:
``c_eq = g exp(-G_f / k_B T)``, ``g`` the number of distinct atomistic states of one V
(1 in the lattice model; 3 for the three orientations of the trans Br pair).
"""

from __future__ import annotations

from segsim.defects.chemistry import (
    CSBR,
    PBBR2,
    UNITS,
    ChemicalPotentials,
    exchanged_units,
    formula_counts,
)
from segsim.defects.thermodynamics import (
    BOLTZMANN_EV_PER_K,
    TRANS_PAIR_ORIENTATIONS,
    combine,
    equilibrium_fraction,
    fraction_interval,
    mean_sem,
    recession_energy_ev,
    vacancy_formation_energy_ev,
)

__all__ = [
    "BOLTZMANN_EV_PER_K",
    "CSBR",
    "PBBR2",
    "TRANS_PAIR_ORIENTATIONS",
    "UNITS",
    "ChemicalPotentials",
    "combine",
    "equilibrium_fraction",
    "exchanged_units",
    "formula_counts",
    "fraction_interval",
    "mean_sem",
    "recession_energy_ev",
    "vacancy_formation_energy_ev",
]
