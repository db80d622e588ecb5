"""When each operation happens: the driver's schedule (reference §7.3).

A run has 2·N operations (N creates, N deletes) at a target aggregate rate.
Their times are offsets from the start: steady (one every 1/rate) or an
approximate Poisson process (exponential gaps, truncated at 1000 mean gaps).
Threads take operations in a staggered stride: thread k (0-based) of T owns
schedule entries k, k+T, k+2T, …; once the regular strides run out, the last
N mod T operations of each thread are spread evenly (the original's "short
stride").
"""

from __future__ import annotations

import random


class ScheduleError(ValueError):
    pass


def offsets(distribution: str, rate: float, total: int, rng: random.Random) -> list[float]:
    if rate <= 0:
        raise ScheduleError("--rate must be positive")
    period = 1.0 / rate
    out: list[float] = []
    t = 0.0
    if distribution == "steady":
        for i in range(total):
            out.append(i * period)
        return out
    if distribution == "poisson":
        for _ in range(total):
            out.append(t)
            t += period * min(rng.expovariate(1.0), 1000.0)
        return out
    raise ScheduleError(f"--ops-distribution {distribution!r}: use steady or poisson")


def slot_index(op: int, thread: int, threads: int, total_creates: int) -> int:
    """The schedule entry of a thread's op-th operation (reference §7.3 striding)."""
    regular = 2 * (total_creates // threads)
    short = total_creates % threads
    if op < regular:
        return op * threads + thread
    return regular * threads + (op - regular) * max(short, 1) + thread


def creates_of_thread(total: int, threads: int, k: int) -> int:
    """NAs thread k (0-based) creates: floor((N + T − 1 − k) / T)."""
    return (total + threads - 1 - k) // threads
