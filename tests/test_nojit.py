"""The kernels also run, and agree with their twins, as plain Python (NUMBA_DISABLE_JIT=1).

This covers the kernel source lines themselves (numba-compiled code is invisible to coverage)
and catches code that only works because numba silently wraps or casts.  The default suite runs
the fast kernel tests this way; ``-m slow`` runs every kernel test with the JIT off.
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
KERNEL_TESTS = [
    "tests/unit/test_energy_kernel.py",
    "tests/unit/test_metropolis.py",
    "tests/unit/test_kmc.py",
    "tests/unit/test_xrd.py",
]


def _run_nojit(*extra):
    env = {**os.environ, "NUMBA_DISABLE_JIT": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *KERNEL_TESTS, *extra],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert " passed" in proc.stdout


def test_fast_kernel_tests_pass_without_jit():
    _run_nojit(
        "-k",
        "not boltzmann and not drift and not flat and not canonical_distribution"
        " and not diffusion and not conservation and not peak",
    )


@pytest.mark.slow
def test_all_kernel_tests_pass_without_jit():
    _run_nojit("-m", "")
