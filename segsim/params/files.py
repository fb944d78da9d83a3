"""Where the shipped data files live, the one YAML reader and the one input error.

The shipped data (energy models, kinetics, ligands, optics, RP parameters) sits in the
repository's top-level ``potentials/`` folder.  A wheel (or a non-editable ``pip install .``)
carries a copy of it inside the package as ``segsim/potentials`` (package data, mapped in
``pyproject.toml``); a clone or an editable install reads the repository's folder directly.
:data:`POTENTIALS_DIR` is whichever of the two exists, the installed copy first.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

__all__ = [
    "DEFAULT_KINETICS",
    "DEFAULT_LIGANDS",
    "DEFAULT_RP",
    "POTENTIALS_DIR",
    "ConfigError",
    "potentials_dir",
    "read_yaml",
]


def potentials_dir() -> Path:
    """Return the folder of the shipped data files.

    Returns
    -------
    pathlib.Path
        ``<package>/potentials`` in an installed wheel, else the repository's ``potentials/``
        (a clone or an editable install).

    Raises
    ------
    FileNotFoundError
        If neither exists (a broken install); the message names both places looked at.
    """
    package = Path(__file__).resolve().parent.parent
    for candidate in (package / "potentials", package.parent / "potentials"):
        if (candidate / "kinetics.yaml").is_file():
            return candidate
    raise FileNotFoundError(
        f"segsim's data files are missing: looked in {package / 'potentials'} (installed "
        f"package) and {package.parent / 'potentials'} (repository clone)"
    )


#: The shipped data files (see :func:`potentials_dir`).
POTENTIALS_DIR: Path = potentials_dir()
#: The shipped kinetics (rate parameters and their calibration record).
DEFAULT_KINETICS: Path = POTENTIALS_DIR / "kinetics.yaml"
#: The shipped ligand library.
DEFAULT_LIGANDS: Path = POTENTIALS_DIR / "ligands.yaml"
#: The shipped Ruddlesden-Popper parameters.
DEFAULT_RP: Path = POTENTIALS_DIR / "rp.yaml"


class ConfigError(ValueError):
    """An input file is unreadable or invalid.

    Parameters
    ----------
    source
        The file (or ``<dict>``) being read.
    key
        Dotted key path of the offending entry (``""`` for the whole file).
    message
        What is wrong and what is allowed.
    """

    def __init__(self, source: str, key: str, message: str) -> None:
        self.source = source
        self.key = key
        self.message = message
        where = f"{source}: {key}" if key else source
        super().__init__(f"{where}: {message}")


def read_yaml(path: str | Path) -> Any:
    """Read a YAML file; any problem becomes a one-line :class:`ConfigError`.

    Parameters
    ----------
    path
        The file.

    Returns
    -------
    Any
        The parsed document (``None`` for an empty file).
    """
    p = Path(path)
    source = str(path)
    try:
        text = p.read_text()
    except FileNotFoundError:
        raise ConfigError(source, "", "file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(source, "", f"cannot read file ({exc.__class__.__name__})") from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or "invalid YAML"
        raise ConfigError(source, "", f"not valid YAML{where}: {problem}") from None
