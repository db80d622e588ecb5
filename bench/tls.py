#!/usr/bin/env python3
"""What security costs: secure ÷ plain for apiserver creates/s, watch deliveries/s and the small-network holding rate.

    .venv/bin/python bench/tls.py [--rounds 5] [--seconds 5] [--events 20000] [--throughput-rounds 1]
                                  [--no-throughput] [--quick] [--json out.json]

Issue 12 puts TLS on every connection and authentication and authorization on every request; its target
is that each of these three figures keeps at least 0.8 of its plain value. One run, one machine, plain and
secure interleaved round by round (plain, secure, plain, secure, ...) so both see the same machine state.

* plain: HTTP, the insecure gate (`--insecure`: nobody is authenticated, nothing is judged).
* secure: HTTPS (TLS 1.2+, the apiserver's certificate from a kos.pki CA made for the run, verified by the
  client), every client with a client certificate of that CA, authenticated (x509: CN = user, O = groups)
  and authorized by the built-in policy — when this tree has them: the first line printed says which
  ("TLS only" until the authentication of issue 12 is in).

1. Creates: an apiserver (memory store) in its own process on core 0 (bench/apiserver.py's FANOUT_SERVER
   with one object, i.e. `running_apiserver(ssl=..., gate=...)`); a load generator on core 1 POSTs
   NetworkAttachments over `--connections` keep-alive connections of kos's own HTTP pool
   (kos.http.clientpool.HTTPPool, `ssl=` the client's context; wrk cannot present client certificates) as
   user `kos:bench` in `kos:users`. Connections are opened (TLS handshakes done) before the clock starts.
   Reported: creates/s and the server's CPU µs per create; every answer checked to be 201 and the
   stored count checked.
2. Watch deliveries: bench/apiserver.py's fan-out (`bench_fanout`: its FANOUT_SERVER changes NAs in its store,
   1,000 watches select a VNI each by field selector, 10 matching each event), measured two ways, both over
   TLS connections with client certificates when secure:
   * HTTP watches: one watch per connection (`fanout_client`), as kubectl and the client-go clients watch;
     every delivery is a TLS record of its own.
   * multiplexed: the same 1,000 watches (the same selectors and resourceVersion, as watch frames) over the
     watch multiplexer (/apis/network.example.com/v1alpha1/watchmux, kos.apiserver.watchmux), `--mux-watches`
     (100) per WebSocket, i.e. 10 connections, as kos's agents watch: what one connection is sent in one loop
     turn leaves in one message. A lean aiohttp WebSocket client (`mux_client`) speaks the frame protocol and
     counts the events of every record; an ERROR event or an ended watch fails the run.
   Both: deliveries/s end to end (the first change written until the last expected delivery received, every
   one required); the server's CPU µs per event read from /proc over that same span (so what the server
   still writes after its own drain check counts); the load generator's (this process's) CPU µs per event.
3. Holding rate: bench/throughput.py's search for the small-network shape (`--shape small`), plain and with
   `--tls` (real `kos apiserver`, controller manager, `kos simnodes --count 100` and `kos driver`
   processes, each with a kubeconfig of its own role). Needs the secure flags of issue 12 in this tree;
   skipped (and said so) when they are missing. One search takes minutes: `--throughput-rounds` (default 1).

Printed: the CPU calibration line, every round, then per figure the medians and secure/plain. The machine
is shared with other work while this runs: compare the ratio, not the absolute figures, and rerun on a
quiet machine for docs/performance.md.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import inspect
import json
import os
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH.parent / "src"))
sys.path.insert(0, str(BENCH))

import apiserver as api_bench  # noqa: E402
import throughput  # noqa: E402
from kos.api.types import API_VERSION  # noqa: E402
from kos.pki import directory  # noqa: E402
from kos.pki.authority import issue_client  # noqa: E402
from kos.util import calibration  # noqa: E402

USER, GROUP = "kos:bench", "kos:users"
MODES = ("plain", "secure")

LOADGEN = r"""
import asyncio, json, os, ssl, sys, time, uvloop
from kos.http.clientpool import HTTPPool
URL, PATH, SECONDS, CONNS, PID = sys.argv[1], sys.argv[2], float(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
TLS = sys.argv[6:9]
TICK = os.sysconf("SC_CLK_TCK")

def cpu(pid):
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK

def body(w, i):
    return (b'{"apiVersion":"network.example.com/v1alpha1","kind":"NetworkAttachment","metadata":{"name":"c-%d-%d",'
            b'"labels":{"app":"bench"}},"spec":{"node":"node-%d","subnet":"subnet-a"}}' % (w, i, i % 100))

async def main():
    ctx = None
    if TLS:
        ctx = ssl.create_default_context(cafile=TLS[0])
        ctx.load_cert_chain(TLS[1], TLS[2])
    pool = HTTPPool(URL, limit=CONNS, ssl=ctx)
    head = {"Content-Type": "application/json"}

    async def create(w, i):
        r = await pool.request("POST", PATH, body=body(w, i), headers=head)
        if r.status != 201:
            raise SystemExit(f"a create was answered {r.status}: {r.body[:300]!r}")

    await asyncio.gather(*(create(w, 0) for w in range(CONNS)))  # every connection open, handshakes done
    n = 0
    cpu0, t0, own0 = cpu(PID), time.perf_counter(), time.process_time()
    stop = t0 + SECONDS

    async def worker(w):
        nonlocal n
        i = 1
        while time.perf_counter() < stop:
            await create(w, i)
            i += 1
            n += 1

    await asyncio.gather(*(worker(w) for w in range(CONNS)))
    elapsed, server_cpu, client_cpu = time.perf_counter() - t0, cpu(PID) - cpu0, time.process_time() - own0
    listed = json.loads((await pool.request("GET", PATH, query={"limit": "1"})).body)
    stored = len(listed["items"]) + int(listed["metadata"].get("remainingItemCount", 0))
    await pool.close()
    print(json.dumps({"creates": n, "seconds": elapsed, "server_cpu_s": server_cpu, "client_cpu_s": client_cpu,
                      "stored": stored}))

uvloop.run(main())
"""


# --- the PKI and what each side is given -------------------------------------------------------------------


def make_pki(pki: Path) -> Path:
    """A CA, the apiserver's certificate for 127.0.0.1 (kos certs init's files) and the bench user's."""
    made = directory.init(pki, ["127.0.0.1", "localhost"], force=True)
    directory.write(pki, "bench", issue_client(made[directory.CA], USER, [GROUP]), force=True)
    return pki


def client_context(pki: Path) -> ssl.SSLContext:
    """Trusts the run's CA and presents the bench user's certificate."""
    ctx = ssl.create_default_context(cafile=str(pki / "ca.crt"))
    ctx.load_cert_chain(pki / "bench.crt", pki / "bench.key")
    return ctx


def server_context(pki: Path) -> ssl.SSLContext:
    """The apiserver's TLS as `kos apiserver --tls-cert-file --tls-private-key-file --client-ca-file` makes it
    (kos.http.tls.server_context where this tree has it): TLS 1.2+, client certificates of the CA asked for."""
    try:
        from kos.http import tls
    except ImportError:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.load_cert_chain(pki / "apiserver.crt", pki / "apiserver.key")
        ctx.load_verify_locations(pki / "ca.crt")
        ctx.verify_mode = ssl.CERT_OPTIONAL  # as kube-apiserver: anonymous may still reach /healthz
        return ctx
    return tls.server_context(tls.ServingFiles(pki / "apiserver.crt", pki / "apiserver.key", (pki / "ca.crt",)))


def secure_gate(pki: Path) -> tuple[Any, str]:
    """The secure gate — x509 authentication against the CA (kos.apiserver.auth.config.build_gate), the built-in
    authorization and the node restriction (kos.apiserver.auth.authz.build) — and what it holds; (None, why)
    when this tree has no authentication yet."""
    from kos.apiserver.auth import config
    from kos.testing.apiserver import running_apiserver

    build = getattr(config, "build_gate", None)
    if build is None or "gate" not in inspect.signature(running_apiserver).parameters:
        return None, "TLS only (HTTPS, client certificates verified; no authentication in this tree)"
    settings = config.AuthSettings(client_ca_file=pki / "ca.crt")
    try:
        from kos.apiserver.auth.authz import build as authz
    except ImportError:
        return build(settings), "HTTPS + x509 client-certificate authentication (no authorization in this tree)"
    gate = build(settings, authorizer=authz.build_authorizer(settings), admission=authz.build_admission())
    return gate, "HTTPS + x509 client-certificate authentication + built-in authorization + node restriction"


def server_options(mode: str, pki: str) -> dict[str, Any]:
    """`running_apiserver` keywords for `mode` (called in the server's process by bench/apiserver.py)."""
    if mode == "plain":
        return {}
    opts: dict[str, Any] = {"ssl": server_context(Path(pki))}
    gate, _ = secure_gate(Path(pki))
    if gate is not None:
        opts["gate"] = gate
    return opts


# --- 1. creates --------------------------------------------------------------------------------------------


def creates(mode: str, pki: Path, seconds: float, conns: int) -> dict[str, Any]:
    port = api_bench.free_port()
    server = subprocess.Popen([*api_bench.pin(0), sys.executable, "-c", api_bench.FANOUT_SERVER, str(port), "1", "1",
                               __file__, mode, str(pki)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)  # fmt: skip
    try:
        assert server.stdout is not None
        server.stdout.readline()  # serving
        scheme = "https" if mode == "secure" else "http"
        tls = [str(pki / f) for f in ("ca.crt", "bench.crt", "bench.key")] if mode == "secure" else []
        out = subprocess.run([*api_bench.pin(1), sys.executable, "-c", LOADGEN, f"{scheme}://127.0.0.1:{port}",
                              api_bench.NA_PATH.format(ns="bench"), str(seconds), str(conns), str(server.pid), *tls],
                             capture_output=True, text=True, check=True).stdout  # fmt: skip
        r = json.loads(out)
        if not r["creates"] + conns <= r["stored"] <= r["creates"] + 2 * conns + 1:  # + warm-up, + the fanout one
            raise RuntimeError(f"{r['creates']} creates answered 201 but {r['stored']} objects are stored")
        return {
            "creates_per_s": r["creates"] / r["seconds"],
            "server_cpu_us": r["server_cpu_s"] / r["creates"] * 1e6,
            "client_cpu_us": r["client_cpu_s"] / r["creates"] * 1e6,
        }
    finally:
        if server.stdin:
            server.stdin.close()
        server.wait(30)


# --- 2. watch deliveries -----------------------------------------------------------------------------------


def deliveries(mode: str, pki: Path, watchers: int, vnis: int, events: int, tmp: Path, mux: int = 0) -> dict[str, Any]:
    """bench/apiserver.py's fan-out: one HTTP watch per connection, or (`mux`) `mux` watches per multiplexed one."""
    ctx = client_context(pki) if mode == "secure" else None
    client = functools.partial(mux_client, per_connection=mux) if mux else api_bench.fanout_client
    r = api_bench.bench_fanout(watchers, vnis, events, True, tmp, server_options=[__file__, mode, str(pki)], ssl=ctx,
                               client=client)  # fmt: skip
    return {"deliveries_per_s": r["deliveries_per_s"], "server_cpu_us": r["server_cpu_us_per_event_end_to_end"],
            "server_cpu_us_own": r["server_cpu_us_per_event"], "client_cpu_us": r["client_cpu_us_per_event"]}  # fmt: skip


async def mux_client(port: int, rv: str, paths: list[str], server: subprocess.Popen[str], events: int, expected: int,
                     context: ssl.SSLContext | None, *, per_connection: int) -> dict[str, float]:  # fmt: skip
    """`api_bench.fanout_client` over the watch multiplexer: the same watches (each HTTP watch path's query made
    a watch frame), `per_connection` of them on each WebSocket to /apis/.../watchmux (wss:// with the client
    certificate when `context`), every event counted and every expected one required; any ERROR event or end record
    (a watch the server ended) fails the run."""
    import aiohttp

    loop = asyncio.get_running_loop()
    total = 0
    done = asyncio.Event()
    failure: list[str] = []
    url = f"{'wss' if context else 'ws'}://127.0.0.1:{port}/apis/{API_VERSION}/watchmux"

    def count(data: bytes) -> None:  # records `<id> <n>\n<n bytes>` (kos.apiserver.watchmux)
        nonlocal total
        pos, end = 0, len(data)
        while pos < end:
            nl = data.index(b"\n", pos)
            wid, _, size_s = data[pos:nl].partition(b" ")
            size = int(size_s)
            body = data[nl + 1 : nl + 1 + size]
            pos = nl + 1 + size
            if not size or b'{"type":"ERROR"' in body:
                failure.append(f"watch {wid.decode()} ended or failed: {body[:300]!r}")
                done.set()
                return
            total += body.count(b'{"type":"')
        if total >= expected:
            done.set()

    async def read(ws: aiohttp.ClientWebSocketResponse) -> None:
        async for msg in ws:
            if msg.type == aiohttp.WSMsgType.BINARY:
                count(msg.data)
        if not done.is_set():
            failure.append(f"a watch connection closed ({ws.close_code})")
            done.set()

    session = aiohttp.ClientSession()
    readers = []
    try:
        for c in range(0, len(paths), per_connection):
            ws = await session.ws_connect(url, ssl=context if context else True, max_msg_size=0, compress=0)
            for i, path in enumerate(paths[c : c + per_connection], start=c):
                base, _, query = path.partition("?")
                frame: dict[str, Any] = {k: v for k, v in urllib.parse.parse_qsl(query) if k != "watch"}
                parts = base.split("/")  # /apis/<group>/<version>/namespaces/<ns>/<resource>
                frame |= {"op": "watch", "id": i, "resource": parts[-1], "namespace": parts[-2]}
                await ws.send_str(json.dumps(frame))
            readers.append(asyncio.create_task(read(ws)))
        await asyncio.sleep(1.0)  # all watches registered
        if failure:
            raise RuntimeError(failure[0])
        assert server.stdin is not None and server.stdout is not None
        t0, own0, server0 = time.perf_counter(), time.process_time(), api_bench.process_cpu(server.pid)
        server.stdin.write(json.dumps({"events": events}) + "\n")
        server.stdin.flush()
        await asyncio.wait_for(done.wait(), 300)
        elapsed, own = time.perf_counter() - t0, time.process_time() - own0
        server_cpu = api_bench.process_cpu(server.pid) - server0
        stats = json.loads(await loop.run_in_executor(None, server.stdout.readline))
    finally:
        for r in readers:
            r.cancel()
        await asyncio.gather(*readers, return_exceptions=True)
        await session.close()
    if failure:
        raise RuntimeError(failure[0])
    if total != expected:
        raise RuntimeError(f"received {total} events, expected {expected}")
    return {"deliveries": total, "seconds": elapsed, "deliveries_per_s": total / elapsed,
            "server_cpu_us_per_event": stats["cpu_s"] / events * 1e6, "client_cpu_us_per_event": own / events * 1e6,
            "server_cpu_us_per_event_end_to_end": server_cpu / events * 1e6}  # fmt: skip


# --- 3. holding rate ---------------------------------------------------------------------------------------


def holding(mode: str, tmp: Path, seconds: float, start: float) -> dict[str, Any]:
    tls = throughput.SecureCluster(tmp / f"pki-throughput-{os.getpid()}") if mode == "secure" else None
    r = throughput.search("small", start, seconds, tmp, "memory://", 16, "strict", tls=tls)
    return {"holding_rate": r["best_rate"], "creations_per_s": r["best_creations_per_s"]}


def throughput_ready() -> str:
    """ "" when this tree can run the secure cluster, else what it lacks."""
    missing = [f"apiserver {f}" for f in ("--tls-cert-file", "--client-ca-file")
               if not throughput._has_flag("apiserver", f)]  # fmt: skip
    missing += [f"{c} --kubeconfig" for c in ("controller-manager", "simnodes", "driver")
                if not throughput._has_flag(c, "--kubeconfig")]  # fmt: skip
    return ", ".join(missing)


# --- the run -----------------------------------------------------------------------------------------------


def summarize(name: str, unit: str, key: str, runs: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    med = {m: statistics.median(r[key] for r in runs[m]) for m in MODES}
    out: dict[str, Any] = {m: {"median": med[m], "runs": runs[m]} for m in MODES}
    out["ratio"] = med["secure"] / med["plain"] if med["plain"] else 0.0
    cpu = ""
    if all("server_cpu_us" in r for m in MODES for r in runs[m]):
        c = {m: statistics.median(r["server_cpu_us"] for r in runs[m]) for m in MODES}
        out["server_cpu_us"] = c
        cpu = f"; server CPU {c['plain']:.1f} → {c['secure']:.1f} µs ({c['secure'] / c['plain']:.2f}x)"
    if all("client_cpu_us" in r for m in MODES for r in runs[m]):
        c = {m: statistics.median(r["client_cpu_us"] for r in runs[m]) for m in MODES}
        out["client_cpu_us"] = c
        cpu += f"; load generator CPU {c['plain']:.1f} → {c['secure']:.1f} µs"
    print(f"  {name:24s} plain {med['plain']:9.0f} {unit}, secure {med['secure']:9.0f} {unit}: "
          f"secure/plain {out['ratio']:.2f} {'(>= 0.8)' if out['ratio'] >= 0.8 else '(BELOW 0.8)'}{cpu}",
          flush=True)  # fmt: skip
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=5,
                    help="rounds of creates and deliveries (plain and secure each; 0: only the holding rate)")  # fmt: skip
    ap.add_argument("--seconds", type=float, default=5.0, help="duration of each create run")
    ap.add_argument("--connections", type=int, default=32)
    ap.add_argument("--events", type=int, default=20_000, help="events per delivery run")
    ap.add_argument("--watchers", type=int, default=1000)
    ap.add_argument("--mux-watches", type=int, default=100, help="watches per multiplexed connection")
    ap.add_argument("--throughput-rounds", type=int, default=1, help="holding-rate searches (plain and secure each)")
    ap.add_argument("--throughput-seconds", type=float, default=15.0, help="cruise length of each trial")
    ap.add_argument("--throughput-start", type=float, default=200.0, help="first rate tried (ops/s)")
    ap.add_argument("--no-throughput", action="store_true", help="skip the holding rate")
    ap.add_argument("--quick", action="store_true", help="one short round of creates and deliveries, no search")
    ap.add_argument("--json", type=Path, help="write the figures here")
    args = ap.parse_args()
    calibration.print_calibration()
    if args.quick:
        args.rounds, args.seconds, args.events, args.no_throughput = 1, 2.0, 2000, True
    api_bench.resource.setrlimit(api_bench.resource.RLIMIT_NOFILE,
                                 (hard := api_bench.resource.getrlimit(api_bench.resource.RLIMIT_NOFILE)[1], hard))  # fmt: skip
    results: dict[str, Any] = {"machine": {"cpus": os.cpu_count()}}
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        pki = make_pki(tmp / "pki")
        results["secure"] = secure_gate(pki)[1]
        print(f"secure = {results['secure']}", flush=True)
        runs: dict[str, dict[str, list[dict[str, Any]]]] = {
            k: {m: [] for m in MODES} for k in ("creates", "deliveries", "deliveries_mux")
        }
        vnis = max(1, args.watchers // 10)
        per = args.mux_watches
        conns = -(-args.watchers // per)
        for i in range(args.rounds):
            for m in MODES:
                c = creates(m, pki, args.seconds, args.connections)
                runs["creates"][m].append(c)
                w = deliveries(m, pki, args.watchers, vnis, args.events, tmp)
                runs["deliveries"][m].append(w)
                x = deliveries(m, pki, args.watchers, vnis, args.events, tmp, mux=per)
                runs["deliveries_mux"][m].append(x)
                print(f"  round {i + 1} {m:6s}: {c['creates_per_s']:7.0f} creates/s ({c['server_cpu_us']:6.1f} µs "
                      f"server CPU, {c['client_cpu_us']:6.1f} µs load generator CPU each)\n"
                      f"{'':18s}HTTP watches {w['deliveries_per_s']:7.0f} deliveries/s ({w['server_cpu_us']:6.1f} µs "
                      f"server CPU, {w['client_cpu_us']:6.1f} µs load generator CPU per event)\n"
                      f"{'':18s}multiplexed  {x['deliveries_per_s']:7.0f} deliveries/s ({x['server_cpu_us']:6.1f} µs "
                      f"server CPU, {x['client_cpu_us']:6.1f} µs load generator CPU per event)", flush=True)  # fmt: skip
        if args.rounds:
            print(f"== medians of {args.rounds} rounds ({args.connections} connections for creates; {args.watchers} "
                  f"watches with 10 matching each event, as HTTP watches (one per connection, as kubectl and "
                  f"client-go watch) and multiplexed ({conns} watchmux WebSockets of {per} watches, as kos's "
                  "agents watch))")  # fmt: skip
            results["creates"] = summarize("apiserver creates", "/s", "creates_per_s", runs["creates"])
            results["deliveries"] = summarize("deliveries, HTTP watches", "/s", "deliveries_per_s", runs["deliveries"])
            results["deliveries_mux"] = summarize("deliveries, multiplexed", "/s", "deliveries_per_s",
                                                  runs["deliveries_mux"])  # fmt: skip
        lacking = "" if args.no_throughput else throughput_ready()
        if lacking:
            print(f"== holding rate skipped: this tree lacks {lacking}", flush=True)
        elif not args.no_throughput:
            hold: dict[str, list[dict[str, Any]]] = {m: [] for m in MODES}
            for i in range(args.throughput_rounds):
                for m in MODES:
                    print(f"== holding rate, round {i + 1}, {m}", flush=True)
                    hold[m].append(holding(m, tmp, args.throughput_seconds, args.throughput_start))
            print(f"== holding rate, small networks (medians of {args.throughput_rounds})")
            results["holding"] = summarize("holding rate", "ops/s", "holding_rate", hold)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
