#!/usr/bin/env python3
"""Probe etcd's JSON gateway for what kos's etcd store relies on: hasleader, deadlines, compaction errors, watch end.

    .venv/bin/python bench/etcd_gateway_guarantees.py

Why: an EtcdStore transport over the gateway (bench/etcd_binding.py's `kos-http` column, docs/dependencies.md
"The etcd binding") must keep the store's guarantees, which the gRPC path gets from gRPC metadata and status
codes. This starts a local 3-member etcd (kos.testing.etcd, in clear: the gateway's mapping does not depend on
TLS) and prints, for each question, the gateway's HTTP status, body and the seconds it took:

* a compare-and-swap `Txn`, and a `Range` at a compacted revision (the error's gRPC code);
* a watch from a compacted revision (how its cancellation reads, and whether the stream then ends);
* `Grpc-Timeout` (grpc-gateway's deadline header) on a healthy member;
* after SIGKILL of two members: a `Range` and a `Txn` with `Grpc-Metadata-hasleader: true` on the survivor, a
  `Range` without it (bounded by `Grpc-Timeout: 2S`), and a watch opened with hasleader before the kill (when,
  and with what, it ends).

Short (about 15 s); not a test (it asserts nothing), a record of the gateway's behaviour on this etcd version.
"""

from __future__ import annotations

import base64
import json
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from kos.testing.etcd import EtcdProcess  # noqa: E402

_HASLEADER = ("Grpc-Metadata-hasleader", "true")


def _post(port: int, path: str, body: object, *headers: tuple[str, str]) -> tuple[int | None, bytes, float]:
    """(HTTP status or None, the first 300 bytes of the answer, seconds) of one POST."""
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=json.dumps(body).encode(), method="POST")
    for k, v in headers:
        req.add_header(k, v)
    t0 = time.monotonic()
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, r.read()[:300], round(time.monotonic() - t0, 3)
    except urllib.error.HTTPError as e:
        return e.code, e.read()[:300], round(time.monotonic() - t0, 3)
    except OSError as e:
        return None, repr(e).encode(), round(time.monotonic() - t0, 3)


def _watch(
    port: int, body: object, out: list[tuple[float, bytes]], *headers: tuple[str, str], timeout: float = 15
) -> None:
    """Read a gateway watch's lines into `out` as (seconds since opened, line) until it ends or stays silent for
    `timeout` s (a socket timeout)."""
    req = urllib.request.Request(f"http://127.0.0.1:{port}/v3/watch", data=json.dumps(body).encode(), method="POST")
    for k, v in headers:
        req.add_header(k, v)
    t0 = time.monotonic()
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            for line in r:
                out.append((round(time.monotonic() - t0, 2), line[:200]))
        out.append((round(time.monotonic() - t0, 2), b"<stream ended>"))
    except OSError as e:
        out.append((round(time.monotonic() - t0, 2), repr(e).encode()))


def main() -> None:
    k = base64.b64encode(b"/probe/k").decode()
    with tempfile.TemporaryDirectory(prefix="kos-gw-probe-") as tmp, EtcdProcess.cluster(Path(tmp), 3) as etcd:
        ports = [p for _, p in etcd.endpoints]
        cas = {
            "compare": [{"key": k, "target": "MOD", "result": "EQUAL", "mod_revision": 0}],
            "success": [{"request_put": {"key": k, "value": k}}],
        }
        print("Txn (compare-and-swap):", _post(ports[0], "/v3/kv/txn", cas))
        print("Compaction:", _post(ports[0], "/v3/kv/compaction", {"revision": 2}))
        print("Range at a compacted revision:", _post(ports[0], "/v3/kv/range", {"key": k, "revision": 1}))
        lines: list[tuple[float, bytes]] = []
        _watch(ports[0], {"create_request": {"key": k, "start_revision": 1}}, lines, timeout=3)
        print("watch from a compacted revision (read until 3 s of silence):", lines)
        print("Grpc-Timeout: 1n:", _post(ports[0], "/v3/kv/range", {"key": k}, ("Grpc-Timeout", "1n")))
        lead = etcd.leader()
        survivor = next(i for i in range(3) if i != lead)
        port = ports[survivor]
        watched: list[tuple[float, bytes]] = []
        reader = threading.Thread(target=_watch, args=(port, {"create_request": {"key": k}}, watched, _HASLEADER))
        reader.start()
        time.sleep(1)  # the watch is open (a record, not a test: no event to wait for)
        for i in range(3):
            if i != survivor:
                etcd.kill(i)
        print(f"killed every member but m{survivor} at +1 s")
        time.sleep(3)  # past the election timeout (1 s): the survivor knows it has no leader
        print("Range, hasleader:", _post(port, "/v3/kv/range", {"key": k}, _HASLEADER))
        print("Txn, hasleader:", _post(port, "/v3/kv/txn", cas, _HASLEADER))
        print("Range, no hasleader, Grpc-Timeout 2S:", _post(port, "/v3/kv/range", {"key": k}, ("Grpc-Timeout", "2S")))
        reader.join(timeout=15)
        print("watch opened with hasleader (seconds since opened):", watched)


if __name__ == "__main__":
    main()
