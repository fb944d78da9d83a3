"""A small H5MD 1.1 validator written from the specification, not from segsim's writer.

Specification: H5MD 1.1.0, https://www.nongnu.org/h5md/h5md.html (sections "H5MD root
level", "H5MD metadata", "Time-dependent data", "Time-independent data", "Particles group",
"Simulation box").  Checked here:

* the root holds the mandatory ``h5md`` group;
* ``h5md`` has the attribute ``version``: Integer, rank 1, size 2; the subgroup ``author``
  with the attribute ``name`` (fixed-length string, scalar; optional ``email`` likewise)
  and the subgroup ``creator`` with ``name`` and ``version`` (fixed-length strings, scalar);
* every subgroup of ``particles`` contains a ``box`` group with the attributes ``dimension``
  (Integer, scalar) and ``boundary`` (fixed-length strings, rank 1, size D, each ``periodic``
  or ``none``); ``edges`` must be present unless all boundaries are ``none``; as a
  time-independent element it is Float/Integer of shape [D] or [D][D];
* every other element of a particles subgroup is either a dataset (time-independent: the
  particle index is the first dimension) or a group with ``step`` and ``value`` (and optional
  ``time``): explicit storage has ``step`` Integer[variable] in monotonically increasing
  (non-decreasing) order, ``time`` Float/Integer of the same length, increasing, and
  ``value`` with first dimension equal to it; fixed storage has scalar ``step`` (and
  ``time``); the particle index is the second dimension of ``value``;
* ``position`` is Float or Integer with last dimension D; ``species`` is Integer or
  Enumeration; all elements of a subgroup agree on the number of particles N.
"""

from __future__ import annotations

import h5py
import numpy as np


def _is_fixed_string_attr(obj: h5py.HLObject, name: str, *, scalar: bool) -> bool:
    aid = obj.attrs.get_id(name)
    tid = aid.get_type()
    if not isinstance(tid, h5py.h5t.TypeStringID) or tid.is_variable_str():
        return False
    return (aid.shape == ()) if scalar else (len(aid.shape) == 1)


def _is_integer(dtype: np.dtype) -> bool:
    return np.issubdtype(dtype, np.integer) or h5py.check_enum_dtype(dtype) is not None


def _is_number(dtype: np.dtype) -> bool:
    return _is_integer(dtype) or np.issubdtype(dtype, np.floating)


def _element(grp: h5py.Group, name: str, errors: list[str]) -> tuple[int | None, tuple]:
    """Check one element; return (number of samples or None, shape of one sample)."""
    obj = grp[name]
    where = obj.name
    if isinstance(obj, h5py.Dataset):
        if not _is_number(obj.dtype):
            errors.append(f"{where}: not Integer/Float/Enumeration")
        return None, obj.shape
    for req in ("step", "value"):
        if req not in obj:
            errors.append(f"{where}: time-dependent element without '{req}'")
            return None, ()
    step, value = obj["step"], obj["value"]
    if not np.issubdtype(step.dtype, np.integer):
        errors.append(f"{where}/step: not Integer")
    if step.shape == ():  # fixed step and time storage
        if "time" in obj and obj["time"].shape != ():
            errors.append(f"{where}/time: must be scalar with a scalar step")
        return value.shape[0], value.shape[1:]
    if len(step.shape) != 1:
        errors.append(f"{where}/step: must be rank 1")
    s = step[()]
    if np.any(np.diff(s) < 0):
        errors.append(f"{where}/step: not in increasing order")
    if value.shape[0] != s.shape[0]:
        errors.append(f"{where}/value: {value.shape[0]} samples but {s.shape[0]} steps")
    if "time" in obj:
        t = obj["time"]
        if not _is_number(t.dtype) or t.shape != step.shape:
            errors.append(f"{where}/time: must be Float/Integer shaped like step")
        elif np.any(np.diff(t[()]) < 0):
            errors.append(f"{where}/time: not in increasing order")
    return value.shape[0], value.shape[1:]


def validate_h5md(f: h5py.File) -> list[str]:
    """Return the violations of the H5MD 1.1 rules listed in the module docstring."""
    errors: list[str] = []
    if "h5md" not in f or not isinstance(f["h5md"], h5py.Group):
        return ["/h5md: missing (the only mandatory root group)"]
    meta = f["h5md"]
    if "version" not in meta.attrs:
        errors.append("/h5md: no 'version' attribute")
    else:
        v = np.asarray(meta.attrs["version"])
        if not np.issubdtype(v.dtype, np.integer) or v.shape != (2,):
            errors.append("/h5md version: must be Integer[2]")
    for sub, attrs in (("author", ("name",)), ("creator", ("name", "version"))):
        if sub not in meta:
            errors.append(f"/h5md/{sub}: missing")
            continue
        for a in attrs:
            if a not in meta[sub].attrs:
                errors.append(f"/h5md/{sub}: no '{a}' attribute")
            elif not _is_fixed_string_attr(meta[sub], a, scalar=True):
                errors.append(f"/h5md/{sub} {a}: not a fixed-length scalar string")
        email = sub == "author" and "email" in meta[sub].attrs
        if email and not _is_fixed_string_attr(meta[sub], "email", scalar=True):
            errors.append("/h5md/author email: not a fixed-length scalar string")
    for gname, grp in f.get("particles", {}).items():
        where = f"/particles/{gname}"
        if "box" not in grp:
            errors.append(f"{where}: no 'box' group")
            continue
        box = grp["box"]
        dim = box.attrs.get("dimension")
        if dim is None or np.ndim(dim) != 0 or not np.issubdtype(np.asarray(dim).dtype, np.integer):
            errors.append(f"{where}/box: 'dimension' must be a scalar Integer")
            continue
        d = int(dim)
        if "boundary" not in box.attrs or not _is_fixed_string_attr(box, "boundary", scalar=False):
            errors.append(f"{where}/box: 'boundary' must be fixed-length strings")
            continue
        boundary = [b.decode() if isinstance(b, bytes) else str(b) for b in box.attrs["boundary"]]
        if len(boundary) != d or not set(boundary) <= {"periodic", "none"}:
            errors.append(f"{where}/box: boundary {boundary} is not {d} x periodic/none")
        if "edges" in box:
            _, shape = _element(box, "edges", errors)
            if shape not in ((d,), (d, d)):
                errors.append(f"{where}/box/edges: shape {shape} is neither [D] nor [D][D]")
        elif any(b == "periodic" for b in boundary):
            errors.append(f"{where}/box: periodic boundary without 'edges'")
        n_particles = set()
        for name in grp:
            if name == "box":
                continue
            _, shape = _element(grp, name, errors)
            if not shape:
                errors.append(f"{where}/{name}: no particle dimension")
                continue
            n_particles.add(shape[0])
            dtype = (
                grp[name].dtype if isinstance(grp[name], h5py.Dataset) else grp[name]["value"].dtype
            )
            if name == "position" and (shape[-1] != d or not _is_number(dtype)):
                errors.append(f"{where}/position: last dimension must be D = {d}")
            if name == "species" and not _is_integer(dtype):
                errors.append(f"{where}/species: must be Integer or Enumeration")
        if len(n_particles) > 1:
            errors.append(f"{where}: elements disagree on the number of particles {n_particles}")
    return errors
