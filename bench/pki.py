"""What minting client identities costs: N node identities (ECDSA P-256 key + certificate signed by the CA),
alone and as ready kubeconfigs, and an RSA-2048 key for comparison.

Why: issue 12 item 7 gives each of `kos up`'s simulated nodes its own identity (`system:node:<name>` in
`system:nodes`) unless that is too slow at start-up, when a token file would do. Median of 3 runs, with the
CPU calibration.

    .venv/bin/python bench/pki.py [N]      (default 1000)
"""

from __future__ import annotations

import statistics
import sys
import time

from cryptography.hazmat.primitives.asymmetric import rsa

from kos.pki.authority import issue_client, new_ca
from kos.pki.kubeconfig import kubeconfig
from kos.util import calibration


def _timed(n: int, with_kubeconfig: bool) -> float:
    ca = new_ca("bench-ca")
    ca_pem = ca.cert_pem()
    t = time.perf_counter()
    for i in range(n):
        user = f"system:node:node-{i}"
        identity = issue_client(ca, user, ["system:nodes"])
        if with_kubeconfig:
            kubeconfig("https://127.0.0.1:6443", ca_pem, identity, user)
    return time.perf_counter() - t


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
    calibration.print_calibration()
    for label, with_kubeconfig in (("identities (key + certificate)", False), ("identities as kubeconfigs", True)):
        seconds = statistics.median(_timed(n, with_kubeconfig) for _ in range(3))
        print(f"{n} {label}: {seconds:.3f} s ({seconds / n * 1e3:.3f} ms each)", flush=True)
    t = time.perf_counter()
    for _ in range(10):
        rsa.generate_private_key(public_exponent=65537, key_size=2048)
    print(f"an RSA-2048 key alone, for comparison: {(time.perf_counter() - t) / 10 * 1e3:.1f} ms", flush=True)


if __name__ == "__main__":
    main()
