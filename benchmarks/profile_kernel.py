"""Where the KMC chunk kernel spends its time, by source line (docs/performance.md).

Usage (Linux with ``perf``; a result file with a checkpoint)::

    SEGSIM_NUMBA_CACHE=0 NUMBA_DEBUGINFO=1 \\
        python benchmarks/profile_kernel.py INPUT.yaml RESULT.h5 [events] [--direct]

numba's JIT code has no symbols that ``perf`` can resolve, so this script compiles the
kernel with debug information, writes its object code (``kernel.o``), samples its own
process with ``perf record`` while the kernel runs ``events`` events from the checkpoint,
and maps each sample's offset inside the compiled chunk function to the source line that
``objdump -l`` gives for it.  numba's debug information names the kernel's file for every
line, also for helpers inlined from other modules (``energy.py``, ``select.py``, ``rp.py``):
read a line number that makes no sense in ``kmc.py`` in those files.  The prologues of
inlined functions show up on their decorator lines, loads of the packed arguments on the
``KMCArrays`` field lines.
"""

from __future__ import annotations

import bisect
import collections
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from segsim import config, driver
from segsim.engine import KMCEngine, KMCState
from segsim.io import hdf5
from segsim.kernels import kmc as K
from segsim.kinetics import treatment_parameter_vectors
from segsim.rng import state_from_json


def main(input_path: str, result_path: str, n_events: int, factorised: bool) -> None:
    cfg = config.load(input_path)
    _, lattice, tables = driver.build_system(cfg)
    arrays, attrs = hdf5.read_checkpoint(result_path)
    _, kp, _ = treatment_parameter_vectors(cfg, tables, lattice, arrays["phase"])

    def engine() -> KMCEngine:
        state = KMCState.from_checkpoint(arrays, attrs)
        rng = np.random.default_rng()
        rng.bit_generator.state = state_from_json(attrs["rng_state"])
        return KMCEngine(tables, lattice, state, rng, kp, factorised=factorised)

    engine().advance(np.inf, max_events=1000)  # compile
    outer = K._run_kmc_chunk_rp if kp[K.KP_RP_ON] > 0 else K._run_kmc_chunk_pv
    inner = next(
        c.cell_contents for c in outer.py_func.__closure__ if hasattr(c.cell_contents, "overloads")
    )
    cres = next(iter(inner.overloads.values()))
    start = cres.library.get_pointer_to_function(cres.fndesc.llvm_func_name)
    work = Path(tempfile.mkdtemp(prefix="segsim_profile_"))
    (work / "kernel.o").write_bytes(cres.library._get_compiled_object())
    perf = subprocess.Popen(
        [
            "perf",
            "record",
            "-q",
            "-F",
            "2000",
            "-o",
            str(work / "perf.data"),
            "-p",
            str(os.getpid()),
        ]
    )
    time.sleep(1.0)
    eng = engine()
    t0 = time.thread_time()
    n, _ = eng.advance(np.inf, max_events=n_events)
    print(f"{n / (time.thread_time() - t0):.3e} events/s (CPU), factorised={factorised}")
    perf.send_signal(2)
    perf.wait()
    ips = subprocess.run(
        ["perf", "script", "-i", str(work / "perf.data"), "-F", "ip"],
        capture_output=True, text=True, check=True,
    ).stdout.split()  # fmt: skip
    dis = subprocess.run(
        ["objdump", "-d", "-l", "--no-show-raw-insn", str(work / "kernel.o")],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    offsets, where, cur = [], [], None
    for line in dis.splitlines():
        m = re.match(r"^(/\S+):(\d+)", line)
        if m:
            cur = f"{Path(m.group(1)).name}:{m.group(2)}"
            continue
        m = re.match(r"^\s+([0-9a-f]+):\s", line)
        if m and cur is not None:
            offsets.append(int(m.group(1), 16))
            where.append(cur)
    counts: collections.Counter[str] = collections.Counter()
    for ip in ips:
        off = int(ip, 16) - start
        k = bisect.bisect_right(offsets, off) - 1
        if off >= 0 and k >= 0 and off - offsets[k] < 64:
            counts[where[k]] += 1
    total = sum(counts.values())
    print(f"{total} of {len(ips)} samples in the chunk kernel; top source lines:")
    for loc, c in counts.most_common(30):
        print(f"{100 * c / total:5.1f} %  {loc}")


if __name__ == "__main__":
    args = [a for a in sys.argv[1:] if a != "--direct"]
    main(args[0], args[1], int(args[2]) if len(args) > 2 else 600_000, "--direct" not in sys.argv)
