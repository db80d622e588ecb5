"""The machine's CPU calibration, printed by every benchmark (bench/) so figures from different machines compare.

It is the same fixed loop as `../shared/tools/calibrate`: seconds for a 10-million-iteration pure-Python
loop, median of 5. Machines differ by up to 3x, and so do interpreters (a PGO/LTO build runs it faster),
so the line names the interpreter too.
"""

from __future__ import annotations

import platform
import statistics
import sys
import time


def _once() -> float:
    t = time.perf_counter()
    s = 0
    for i in range(10_000_000):
        s += i
    return time.perf_counter() - t


def calibration_seconds() -> float:
    """Median seconds of five runs of the fixed loop on this interpreter."""
    return statistics.median(_once() for _ in range(5))


def print_calibration() -> float:
    """Print the calibration line (with the interpreter) and return the seconds."""
    seconds = calibration_seconds()
    print(
        f"calibration: 10M-iteration Python loop {seconds:.2f} s (median of 5) on "
        f"{platform.python_implementation()} {platform.python_version()} ({sys.executable})",
        flush=True,
    )
    return seconds
