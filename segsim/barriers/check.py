"""Single-point checks of computed bands with another calculator (e.g. CP2K PBE).

A band computed with calculator ``source`` (a record of :mod:`segsim.barriers.runner`) is
re-evaluated at its initial state (``is``), climbing image (``ci``) and final state (``fs``)
with the check calculator, on exactly the same geometries.  The check's barrier
``E(ci) - E(is)`` against the source's then measures the source calculator's error at those
geometries (not the error of its geometries, which would need a band relaxed with the check
calculator).  Each line also keeps the check calculator's largest atomic force at that
geometry (``fmax_ev_per_angstrom``; free with CP2K, which returns forces with the energy):
near zero at the end points when the source's minima are the check calculator's minima too.
One JSON line per (check calculator, source, path, image) in
``<output>/checks.jsonl``; a rerun skips the ones already there, so a long CP2K series can be
stopped and resumed.
"""

from __future__ import annotations

import gzip
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["IMAGES", "check_band", "read_band", "summarise_checks"]

#: Images a check evaluates: initial state, climbing image, final state.  A check may also
#: name any image by its index along the band (``"i0"`` .. ``"i6"`` for 5 inner images): the
#: check calculator's profile along the source's path (:func:`image_index`).
IMAGES: tuple[str, ...] = ("is", "ci", "fs")


def is_image_name(name: object) -> bool:
    """Return True for ``"is"``, ``"ci"``, ``"fs"`` or ``"i<k>"`` (an image by band index)."""
    if not isinstance(name, str):
        return False
    return name in IMAGES or (name.startswith("i") and name[1:].isdigit())


def read_band(path: str | Path) -> list[Any]:
    """Return the images of a band file (``.extxyz.gz``), IS to FS."""
    from ase.io import read

    with gzip.open(path, "rt") as fh:
        return list(read(fh, index=":", format="extxyz"))


def _named_indices(record: dict[str, Any]) -> dict[str, int]:
    """Return the band index of each of :data:`IMAGES` in ``record``'s band."""
    n = len(record["band_energies_ev"])
    return {"is": 0, "ci": int(record["climbing_image"]), "fs": n - 1}


def image_index(record: dict[str, Any], image: str) -> int:
    """Return the band index of ``image`` (:data:`IMAGES` or ``"i<k>"``) in ``record``'s band.

    Raises
    ------
    ValueError
        For an index outside the band.
    """
    n = len(record["band_energies_ev"])
    if image in IMAGES:
        return _named_indices(record)[image]
    k = int(image[1:])
    if not 0 <= k < n:
        raise ValueError(f"image {image!r}: the band of {record['path']} has images i0..i{n - 1}")
    return k


def check_band(
    record: dict[str, Any],
    band_folder: Path,
    calc: Any,
    *,
    done: set[str],
    key_prefix: str,
    append: Callable[[dict[str, Any]], None],
    log: Callable[[str], None] | None = None,
    images: tuple[str, ...] = IMAGES,
) -> None:
    """Evaluate the IS, CI and FS of one record's band with ``calc``; append one line each.

    Parameters
    ----------
    record
        A record of :mod:`segsim.barriers.runner`.
    band_folder
        The runner's output folder (the record's ``band_file`` is relative to it).
    calc
        The check calculator.
    done
        Keys already computed (skipped).
    key_prefix
        ``"<check>|<source>|<path>"``; the image name is appended.
    append
        Stores one line.
    log
        Progress lines.
    images
        Which of :data:`IMAGES` to evaluate, in this order.
    """
    say = log or (lambda _m: None)
    band = read_band(band_folder / record["band_file"])
    done = set(done)
    named = {i: name for name, i in _named_indices(record).items()}
    for asked in images:
        i = image_index(record, asked)
        image = named.get(i, f"i{i}")  # one key per geometry: "i0" is the IS
        key = f"{key_prefix}|{image}"
        if key in done:
            continue
        atoms = band[i].copy()
        atoms.calc = calc
        t0 = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            energy = float(atoms.get_potential_energy())
            forces = np.asarray(atoms.get_forces(), dtype=float)
        if not np.isfinite(energy) or not np.all(np.isfinite(forces)):
            raise ValueError(f"{key}: the check calculator returned a non-finite energy or force")
        line = {
            "key": key,
            "path": record["path"],
            "source": record["calculator"],
            "image": image,
            "band_index": i,
            "n_atoms": len(atoms),
            "energy_ev": energy,
            "source_energy_ev": float(record["band_energies_ev"][i]),
            "fmax_ev_per_angstrom": float(np.sqrt((forces**2).sum(axis=1)).max()),
            "seconds": time.perf_counter() - t0,
        }
        append(line)
        done.add(key)
        say(
            f"{key}: {energy:.4f} eV, fmax {line['fmax_ev_per_angstrom']:.3f} eV/A "
            f"({line['seconds']:.0f} s)"
        )


def summarise_checks(lines: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Return ``{"<check>|<source>|<path>": {barriers and reaction energies}}`` (eV).

    For every band with at least its IS and climbing image: ``e_forward_ev`` (``E(ci) -
    E(is)``) and, with its FS, ``e_split_ev`` (``E(fs) - E(is)``; None without it) of the
    check calculator and of the source on the same geometries, and their differences; and
    ``fmax_ev_per_angstrom``, the check calculator's largest force per image (``{"is": ...}``;
    lines written before forces were kept have none), and ``profile_ev``: every evaluated image
    by band index, ``[index, E - E(is) of the check, of the source]``.
    """
    by: dict[str, dict[str, dict[str, Any]]] = {}
    for line in lines:
        prefix = line["key"].rsplit("|", 1)[0]
        by.setdefault(prefix, {})[line["image"]] = line
    out = {}
    for prefix, imgs in sorted(by.items()):
        if not {"is", "ci"} <= set(imgs):
            continue
        e = {k: v["energy_ev"] for k, v in imgs.items()}
        s = {k: v["source_energy_ev"] for k, v in imgs.items()}
        has_fs = "fs" in imgs
        out[prefix] = {
            "path": imgs["is"]["path"],
            "source": imgs["is"]["source"],
            "n_atoms": imgs["is"]["n_atoms"],
            "e_forward_ev": round(e["ci"] - e["is"], 4),
            "source_e_forward_ev": round(s["ci"] - s["is"], 4),
            "e_split_ev": round(e["fs"] - e["is"], 4) if has_fs else None,
            "source_e_split_ev": round(s["fs"] - s["is"], 4) if has_fs else None,
            "forward_difference_ev": round((e["ci"] - e["is"]) - (s["ci"] - s["is"]), 4),
        }
        by_index = {int(v["band_index"]): v for v in imgs.values()}
        if any(k not in IMAGES for k in imgs):  # one key per geometry: more than IS, CI, FS
            out[prefix]["profile_ev"] = [
                [i, round(v["energy_ev"] - e["is"], 4), round(v["source_energy_ev"] - s["is"], 4)]
                for i, v in sorted(by_index.items())
            ]
        fmax = {
            k: round(v["fmax_ev_per_angstrom"], 4)
            for k, v in imgs.items()
            if "fmax_ev_per_angstrom" in v
        }
        if fmax:
            out[prefix]["fmax_ev_per_angstrom"] = fmax
    return out
