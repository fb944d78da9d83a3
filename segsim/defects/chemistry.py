"""Definitions: the units a B vacancy exchanges with its reservoirs, and chemical potentials.

See :mod:`segsim.defects` for the defect chemistry these names stand for.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

#: The neutral unit that expulsion of a B cation removes (M = Pb; Cd enters as CdBr2).
PBBR2 = "PbBr2"
#: The neutral unit that recession V -> O removes.
CSBR = "CsBr"
#: The exchanged units, in the order :func:`exchanged_units` reports them.
UNITS: tuple[str, ...] = (PBBR2, CSBR)


def formula_counts(symbols: Iterable[str]) -> dict[str, int]:
    """Return ``{element: count}`` for Cs, Pb, Cd and Br (zeros included).

    Parameters
    ----------
    symbols
        Chemical symbols (e.g. ``atoms.get_chemical_symbols()``).

    Raises
    ------
    ValueError
        For an element other than Cs, Pb, Cd, Br.
    """
    c = Counter(symbols)
    unknown = sorted(set(c) - {"Cs", "Pb", "Cd", "Br"})
    if unknown:
        raise ValueError(f"unexpected elements {unknown}")
    return {el: int(c.get(el, 0)) for el in ("Cs", "Pb", "Cd", "Br")}


def exchanged_units(host: Mapping[str, int], defect: Mapping[str, int]) -> dict[str, int]:
    """Return how many MBr2 and CsBr units ``defect`` lacks relative to ``host``.

    ``n_MBr2 = dPb + dCd`` and ``n_CsBr = dCs`` (``d = host - defect``), and the Br count
    must match, ``dBr = 2 n_MBr2 + n_CsBr``: the difference is a sum of neutral units.
    Negative counts mean the defect structure has more of that unit.  Cd is counted as M
    (key :data:`PBBR2`), which is exact for pure CsPbBr3 and for Cd-free differences.

    Parameters
    ----------
    host, defect
        Element counts (:func:`formula_counts`).

    Raises
    ------
    ValueError
        If the difference is not a combination of neutral MBr2 and CsBr units.
    """
    d = {el: int(host.get(el, 0)) - int(defect.get(el, 0)) for el in ("Cs", "Pb", "Cd", "Br")}
    n_m = d["Pb"] + d["Cd"]
    n_csbr = d["Cs"]
    if d["Br"] != 2 * n_m + n_csbr:
        raise ValueError(
            f"composition difference {d} is not n MBr2 + m CsBr (Br {d['Br']} != "
            f"2*{n_m} + {n_csbr})"
        )
    return {PBBR2: n_m, CSBR: n_csbr}


@dataclass(frozen=True)
class ChemicalPotentials:
    """Chemical potentials of CsBr and PbBr2 at one point of the stability range (eV/unit).

    Attributes
    ----------
    mu_csbr_ev
        Chemical potential of CsBr, eV per CsBr.
    mu_pbbr2_ev
        Chemical potential of PbBr2, eV per PbBr2.
    label
        Name of the condition (``"CsBr-rich"``, ``"PbBr2-rich"``).
    """

    mu_csbr_ev: float
    mu_pbbr2_ev: float
    label: str = ""

    @classmethod
    def csbr_rich(cls, e_bulk_ev: float, mu_csbr_bulk_ev: float) -> ChemicalPotentials:
        """CsBr-rich limit: ``mu_CsBr`` = bulk CsBr, ``mu_PbBr2 = e_bulk - mu_CsBr``.

        Parameters
        ----------
        e_bulk_ev
            Energy of bulk CsPbBr3 per formula unit, eV.
        mu_csbr_bulk_ev
            Energy of bulk CsBr per formula unit, eV.
        """
        return cls(float(mu_csbr_bulk_ev), float(e_bulk_ev - mu_csbr_bulk_ev), "CsBr-rich")

    @classmethod
    def pbbr2_rich(cls, e_bulk_ev: float, mu_pbbr2_bulk_ev: float) -> ChemicalPotentials:
        """PbBr2-rich limit: ``mu_PbBr2`` = bulk PbBr2, ``mu_CsBr = e_bulk - mu_PbBr2``.

        Parameters
        ----------
        e_bulk_ev
            Energy of bulk CsPbBr3 per formula unit, eV.
        mu_pbbr2_bulk_ev
            Energy of bulk PbBr2 per formula unit, eV.
        """
        return cls(float(e_bulk_ev - mu_pbbr2_bulk_ev), float(mu_pbbr2_bulk_ev), "PbBr2-rich")

    def of(self, unit: str) -> float:
        """Return the chemical potential (eV) of :data:`PBBR2` or :data:`CSBR`."""
        if unit == PBBR2:
            return self.mu_pbbr2_ev
        if unit == CSBR:
            return self.mu_csbr_ev
        raise KeyError(unit)

    def reservoir_energy_ev(self, units: Mapping[str, int]) -> float:
        """Return ``sum_u n_u mu_u`` (eV) for the unit counts of :func:`exchanged_units`."""
        return float(sum(n * self.of(u) for u, n in units.items()))


def perovskite_formation_energy_ev(
    e_bulk_ev: float, mu_csbr_bulk_ev: float, mu_pbbr2_bulk_ev: float
) -> float:
    """Return ``e_bulk - mu_CsBr(bulk) - mu_PbBr2(bulk)`` (eV per formula unit).

    Negative where CsPbBr3 is stable against CsBr + PbBr2.  ``mu_PbBr2`` of the CsBr-rich limit
    is ``mu_PbBr2(bulk)`` plus this, so the formation energy of an MBr2 vacancy is lower by
    ``|dH|`` under CsBr-rich than under PbBr2-rich conditions:
    ``G_f(CsBr-rich) = G_f(PbBr2-rich) + dH``.
    """
    return float(e_bulk_ev - mu_csbr_bulk_ev - mu_pbbr2_bulk_ev)
