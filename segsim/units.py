"""The single unit system of segsim: eV, K, Angstrom, seconds.

Every energy is in eV, every temperature in K, every length in Angstrom (except where a
name says ``_nm``), every time in seconds (except where a name says ``_days``).
"""

#: Boltzmann constant in eV/K (CODATA 2018, exact).
K_B_EV_PER_K: float = 8.617333262e-5

#: Angstrom per nanometre.
ANGSTROM_PER_NM: float = 10.0

#: Seconds per day.
SECONDS_PER_DAY: float = 86400.0

#: Units of the quantities written to HDF5 (stored as attributes of ``/metadata``).
UNITS: dict[str, str] = {
    "energy": "eV",
    "temperature": "K",
    "length": "Angstrom",
    "time": "s",
}


def beta_per_ev(temperature_k: float) -> float:
    """Return the inverse thermal energy 1/(k_B T) in 1/eV for a temperature in K."""
    if not temperature_k > 0.0:
        raise ValueError(f"temperature must be > 0 K, got {temperature_k}")
    return 1.0 / (K_B_EV_PER_K * temperature_k)
