"""Post-create and post-delete commands: allow-listed, expanded, run without blocking, reported.

An NA may ask its node's agent to run a command after its interface is created
(`spec.postCreateExec`, e.g. to move it into a network namespace and configure
it) and after it is deleted (`spec.postDeleteExec`). argv[0] must be one of the
agent's `--allowed-programs`; only argv[1:] is expanded, and only the tokens
`${ifname}`, `${ipv4}` and `${mac}` (reference §5.9). The report (exit status,
times at one-second precision, output) goes into the NA's status.
"""

from __future__ import annotations

import asyncio
import datetime
import time
from pathlib import Path

from kos.api.types import ExecReport

EXIT_START_FAILED = -2
MAX_OUTPUT = 64 * 1024


def test_script_dir() -> Path:
    """Where the packaged ping-test scripts are (reference §7.7): `kos agent --print-test-script-dir` prints it."""
    return Path(__file__).resolve().parent / "scripts"


def not_allowed(what: str, argv: tuple[str, ...] | list[str]) -> str:
    return f"{what} specifies non-allowed path {argv[0]}"


def expand(argv: tuple[str, ...] | list[str], *, ifname: str, ipv4: str, mac: str) -> list[str]:
    out = [argv[0]]
    for a in argv[1:]:
        out.append(a.replace("${ifname}", ifname).replace("${ipv4}", ipv4).replace("${mac}", mac))
    return out


def lg_complaints(stdout: str, stderr: str) -> int:
    """floor(log2(occurrences of "Invalid")), -1 for none (a signal of old-iproute2 trouble; reference §5.9)."""
    n = stdout.count("Invalid") + stderr.count("Invalid")
    return -1 if n == 0 else n.bit_length() - 1


async def run(argv: list[str], *, timeout: float = 300.0) -> tuple[ExecReport, float]:
    """Run `argv`; its report and its duration in seconds. Never raises for the command's own failures."""
    start = datetime.datetime.now(datetime.UTC).replace(microsecond=0)
    t0 = time.monotonic()
    try:
        proc = await asyncio.create_subprocess_exec(
            *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, stdin=asyncio.subprocess.DEVNULL
        )
    except OSError as e:
        stop = datetime.datetime.now(datetime.UTC).replace(microsecond=0)
        return ExecReport(command=tuple(argv), exit_status=EXIT_START_FAILED, start_time=start, stop_time=stop,
                          std_err=f"could not start: {e}"), time.monotonic() - t0  # fmt: skip
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout)
    except TimeoutError:
        proc.kill()
        out, err = await proc.communicate()
        err += f"\nkilled after {timeout:.0f}s".encode()
    stop = datetime.datetime.now(datetime.UTC).replace(microsecond=0)
    rc = proc.returncode if proc.returncode is not None else EXIT_START_FAILED
    return ExecReport(
        command=tuple(argv),
        exit_status=rc,
        start_time=start,
        stop_time=stop,
        std_out=out[:MAX_OUTPUT].decode(errors="replace"),
        std_err=err[:MAX_OUTPUT].decode(errors="replace"),
    ), time.monotonic() - t0
