"""What `kos up`'s security costs at start-up: seconds from `kos up` to "kos is up", secure vs --insecure, with
100 and 1,000 simulated nodes (each its own identity when secure: a bearer token in the node token file).

Why: issue 12 item 7 — `kos up` is secure by default and gives every simulated node its own identity; this
measures what that costs where it is paid (start-up: the PKI, the token file, TLS handshakes, every node's
first list and watch over TLS, authenticated) against today's plain HTTP. Each run starts from a fresh state
directory (the PKI is made, not reused) and is stopped with SIGINT once up. The identities alone
(`kos.cli.clusterpki.prepare`, in this process) are timed too.

    .venv/bin/python bench/up_start.py [--nodes 100,1000] [--runs 3]

Median of `--runs` runs per case, with the CPU calibration. Runs alternate secure and insecure so that a
machine's drift hits both.
"""

from __future__ import annotations

import argparse
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from kos.cli import clusterpki
from kos.cli.up import UP_LINE
from kos.testing.process import free_port
from kos.util import calibration


def start_seconds(nodes: int, insecure: bool, tmp: Path) -> float:
    """Seconds from starting `kos up` to its "kos is up" message (RuntimeError if it exits first)."""
    args = [sys.executable, "-m", "kos", "up", "--nodes", str(nodes), "--state-dir", str(tmp / "state"),
            "--listen", f"127.0.0.1:{free_port()}", *(["--insecure"] if insecure else [])]  # fmt: skip
    t = time.perf_counter()
    up = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        assert up.stdout is not None
        lines = []
        for line in up.stdout:
            lines.append(line)
            if UP_LINE in line:
                return time.perf_counter() - t
        raise RuntimeError(f"kos up exited with {up.wait()}:\n{''.join(lines[-20:])}")
    finally:
        up.send_signal(signal.SIGINT)
        try:
            up.wait(60)
        except subprocess.TimeoutExpired:
            up.kill()
            up.wait()
        if up.stdout is not None:
            up.stdout.close()


def identities_seconds(nodes: int) -> float:
    """Seconds `clusterpki.prepare` takes in a fresh state directory (CA, certificates, kubeconfigs, tokens)."""
    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        clusterpki.prepare(Path(tmp), "https://127.0.0.1:8080", ["127.0.0.1"], [f"node-{i}" for i in range(nodes)])
        return time.perf_counter() - t


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--nodes", default="100,1000", help="comma-separated simulated node counts")
    p.add_argument("--runs", type=int, default=3, help="runs per case (the median is reported)")
    a = p.parse_args()
    calibration.print_calibration()
    for nodes in (int(n) for n in a.nodes.split(",")):
        ident = statistics.median(identities_seconds(nodes) for _ in range(5))
        print(f"{nodes} nodes: identities (PKI, kubeconfigs, token file) {ident * 1e3:.1f} ms", flush=True)
        times: dict[bool, list[float]] = {False: [], True: []}
        for _ in range(a.runs):
            for insecure in (False, True):
                with tempfile.TemporaryDirectory(prefix="kos-bench-up-") as tmp:
                    times[insecure].append(start_seconds(nodes, insecure, Path(tmp)))
        secure, plain = statistics.median(times[False]), statistics.median(times[True])
        print(f"{nodes} nodes: kos up {secure:.2f} s secure, {plain:.2f} s --insecure (x{secure / plain:.2f}); "
              f"runs secure {', '.join(f'{t:.2f}' for t in times[False])}; "
              f"insecure {', '.join(f'{t:.2f}' for t in times[True])}", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
