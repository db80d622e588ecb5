#!/usr/bin/env python3
"""Benchmark etcd client bindings on this machine: CPU per call and per watch event, in clear and over mutual TLS.

    .venv/bin/python bench/etcd_binding.py [--calls 2000] [--puts 600] [--events 1000] [--tls-only | --clear-only]

Why: the apiserver on etcd spends most of its extra CPU in the gRPC binding's per-call machinery
(docs/performance.md, issue 13), so the binding is chosen by measurement (docs/dependencies.md).

Each binding runs in its own child process (so one binding's threads never bill the other), on uvloop,
against a fresh local etcd member (kos.testing.etcd.EtcdProcess; with TLS, mutual TLS, the member's serving
certificate also a client one as `kos certs init --peer` makes it, which the gateway's watch needs). Reported per
binding, as process CPU time (every thread of the client process) divided by the operations, beside etcd's own
CPU time over the same span (/proc/<pid>/stat: the JSON gateway moves work into etcd) and the wall time:

* `Range` (limit 1, keys only: the shape of `current_revision`) with 1 and with 16 calls in flight;
* `Txn` puts (a create's shape: compare create_revision == 0, put) with 1 and 16 in flight;
* watch events delivered: a separate writer process puts `--events` keys one at a time (etcd's fsync paces
  them, so most watch responses carry one event, the apiserver's sparse case); the watcher's CPU from the
  first to the last event, per event.

Bindings: `grpc.aio` (grpcio's asyncio API with aetcd's stubs: the store's binding before issue 13),
`grpclib` (pure asyncio on h2, no threads; aetcd's protobuf messages with explicit request/reply types), and
etcd's JSON gateway through aiohttp (`gateway`) or through kos's own HTTPPool and msgspec (`kos-http`); see
BINDINGS. Every binding's replies are checked first (a compare-and-swap both ways, a `Range` that finds it).
grpclib is not a kos dependency (it was measured and not chosen: docs/dependencies.md); `.venv/bin/pip install
grpclib` before running this, or its column shows "failed".
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

import msgspec  # noqa: E402
from aetcd import rpc  # noqa: E402

from kos.testing.etcd import EtcdProcess  # noqa: E402
from kos.util import calibration  # noqa: E402

_HASLEADER = (("hasleader", "true"),)
BINDINGS = ["grpc.aio", "grpc.future", "grpclib", "grpc.aio/asyncio", "gateway", "kos-http"]
"""What to compare (--bindings): `grpc.aio` on uvloop, `grpc.future` (grpcio's synchronous channel: each
call's `future()` completed on grpc's own thread and handed to the loop with `call_soon_threadsafe`; a watch
read by a thread of its own), `grpclib`, `grpc.aio/asyncio` (on the stock event loop),
`gateway` (etcd's JSON gateway through aiohttp and protobuf's JSON mapping), `kos-http` (the same gateway
through the store's own transport, kos.storage.etcd_gateway: kos's HTTPPool and msgspec); `NAME+VAR=VALUE`
runs NAME with that environment variable set (e.g. `grpc.aio+GRPC_EXPERIMENTS=-event_engine_client`)."""


class _GrpcAio:
    def __init__(self, host: str, port: int, tls: dict[str, str] | None) -> None:
        target = f"{host}:{port}"
        if tls is None:
            self.channel = rpc.insecure_channel(target)
        else:
            import grpc

            creds = grpc.ssl_channel_credentials(
                root_certificates=Path(tls["cacert"]).read_bytes(),
                private_key=Path(tls["key"]).read_bytes(),
                certificate_chain=Path(tls["cert"]).read_bytes(),
            )
            self.channel = rpc.secure_channel(target, creds)
        self.kv = rpc.KVStub(self.channel)
        self.watch_stub = rpc.WatchStub(self.channel)

    async def range(self, req: Any) -> Any:
        return await self.kv.Range(req, timeout=3.0, metadata=_HASLEADER)

    async def txn(self, req: Any) -> Any:
        return await self.kv.Txn(req, timeout=3.0, metadata=_HASLEADER)

    async def watch(self, req: Any) -> AsyncIterator[Any]:
        call = self.watch_stub.Watch(metadata=_HASLEADER)
        await call.write(req)
        while True:
            resp = await call.read()
            if not isinstance(resp, rpc.WatchResponse):
                return
            yield resp

    async def close(self) -> None:
        await self.channel.close()


class _GrpcFuture:
    def __init__(self, host: str, port: int, tls: dict[str, str] | None) -> None:
        import grpc

        target = f"{host}:{port}"
        if tls is None:
            self.channel = grpc.insecure_channel(target)
        else:
            creds = grpc.ssl_channel_credentials(
                root_certificates=Path(tls["cacert"]).read_bytes(),
                private_key=Path(tls["key"]).read_bytes(),
                certificate_chain=Path(tls["cert"]).read_bytes(),
            )
            self.channel = grpc.secure_channel(target, creds)
        self._range = self.channel.unary_unary(
            "/etcdserverpb.KV/Range",
            request_serializer=rpc.RangeRequest.SerializeToString,
            response_deserializer=rpc.RangeResponse.FromString,
        )
        self._txn = self.channel.unary_unary(
            "/etcdserverpb.KV/Txn",
            request_serializer=rpc.TxnRequest.SerializeToString,
            response_deserializer=rpc.TxnResponse.FromString,
        )
        self._watch = self.channel.stream_stream(
            "/etcdserverpb.Watch/Watch",
            request_serializer=rpc.WatchRequest.SerializeToString,
            response_deserializer=rpc.WatchResponse.FromString,
        )

    @staticmethod
    def _settle(af: asyncio.Future[Any], f: Any) -> None:
        if af.done():
            return
        e = f.exception()
        if e is not None:
            af.set_exception(e)
        else:
            af.set_result(f.result())

    def _wait(self, f: Any) -> asyncio.Future[Any]:
        loop = asyncio.get_running_loop()
        af = loop.create_future()
        f.add_done_callback(lambda g: loop.call_soon_threadsafe(self._settle, af, g))
        return af

    async def range(self, req: Any) -> Any:
        return await self._wait(self._range.future(req, timeout=3.0, metadata=_HASLEADER))

    async def txn(self, req: Any) -> Any:
        return await self._wait(self._txn.future(req, timeout=3.0, metadata=_HASLEADER))

    async def watch(self, req: Any) -> AsyncIterator[Any]:
        import queue
        import threading

        loop = asyncio.get_running_loop()
        out: asyncio.Queue[Any] = asyncio.Queue()
        requests: queue.Queue[Any] = queue.Queue()
        requests.put(req)

        def sent() -> Any:
            while (r := requests.get()) is not None:
                yield r

        call = self._watch(sent(), metadata=_HASLEADER)

        def reader() -> None:
            try:
                for resp in call:
                    loop.call_soon_threadsafe(out.put_nowait, resp)
            except Exception:  # the stream ended (cancelled at close)
                pass
            loop.call_soon_threadsafe(out.put_nowait, None)

        threading.Thread(target=reader, daemon=True).start()
        try:
            while (resp := await out.get()) is not None:
                yield resp
        finally:
            requests.put(None)
            call.cancel()

    async def close(self) -> None:
        self.channel.close()


class _Grpclib:
    def __init__(self, host: str, port: int, tls: dict[str, str] | None) -> None:
        from grpclib.client import Channel, StreamStreamMethod, UnaryUnaryMethod

        ctx: ssl.SSLContext | None = None
        if tls is not None:
            ctx = ssl.create_default_context(cafile=tls["cacert"])
            ctx.load_cert_chain(tls["cert"], tls["key"])
            ctx.set_alpn_protocols(["h2"])
        self.channel = Channel(host, port, ssl=ctx)
        self._range = UnaryUnaryMethod(self.channel, "/etcdserverpb.KV/Range", rpc.RangeRequest, rpc.RangeResponse)
        self._txn = UnaryUnaryMethod(self.channel, "/etcdserverpb.KV/Txn", rpc.TxnRequest, rpc.TxnResponse)
        self._watch = StreamStreamMethod(self.channel, "/etcdserverpb.Watch/Watch", rpc.WatchRequest, rpc.WatchResponse)

    async def range(self, req: Any) -> Any:
        return await self._range(req, timeout=3.0, metadata=_HASLEADER)

    async def txn(self, req: Any) -> Any:
        return await self._txn(req, timeout=3.0, metadata=_HASLEADER)

    async def watch(self, req: Any) -> AsyncIterator[Any]:
        async with self._watch.open(metadata=_HASLEADER) as stream:
            await stream.send_message(req)
            while True:
                resp = await stream.recv_message()
                if resp is None:
                    return
                yield resp

    async def close(self) -> None:
        self.channel.close()


class _Gateway:
    """etcd's HTTP/JSON gateway (grpc-gateway on the client port) through aiohttp: JSON in, JSON out."""

    def __init__(self, host: str, port: int, tls: dict[str, str] | None) -> None:
        import aiohttp
        from google.protobuf import json_format

        self._fmt = json_format
        self._dec = msgspec.json.Decoder()
        ctx: ssl.SSLContext | bool = False
        if tls is not None:
            ctx = ssl.create_default_context(cafile=tls["cacert"])
            ctx.load_cert_chain(tls["cert"], tls["key"])
        self.base = f"{'https' if tls else 'http'}://{host}:{port}"
        self.session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=ctx, limit=64))
        self.headers = {"Grpc-Metadata-hasleader": "true", "Content-Type": "application/json"}

    async def _post(self, path: str, req: Any, reply: Any) -> Any:
        body = self._fmt.MessageToJson(req).encode()
        async with self.session.post(self.base + path, data=body, headers=self.headers) as resp:
            data = await resp.read()
        return self._fmt.Parse(data, reply(), ignore_unknown_fields=True)

    async def range(self, req: Any) -> Any:
        return await self._post("/v3/kv/range", req, rpc.RangeResponse)

    async def txn(self, req: Any) -> Any:
        return await self._post("/v3/kv/txn", req, rpc.TxnResponse)

    async def watch(self, req: Any) -> AsyncIterator[Any]:
        body = self._fmt.MessageToJson(req).encode()
        async with self.session.post(self.base + "/v3/watch", data=body, headers=self.headers) as resp:
            async for line in resp.content:
                data = self._dec.decode(line)
                if "result" not in data:
                    raise RuntimeError(f"gateway watch failed: {data}")
                yield self._fmt.ParseDict(data["result"], rpc.WatchResponse(), ignore_unknown_fields=True)

    async def close(self) -> None:
        await self.session.close()


class _KosHttp:
    """etcd's JSON gateway through the store's own gateway transport (kos.storage.etcd_gateway: kos's HTTPPool,
    pooled keep-alive HTTP/1.1 with TLS and a client certificate, requests from protobuf messages, replies decoded
    by msgspec): what `etcd://…?transport=gateway` runs, measured the same way as the gRPC bindings."""

    def __init__(self, host: str, port: int, tls: dict[str, str] | None) -> None:
        from kos.storage.etcd_gateway import GatewayEndpoint

        ctx: ssl.SSLContext | None = None
        if tls is not None:
            ctx = ssl.create_default_context(cafile=tls["cacert"])
            ctx.load_cert_chain(tls["cert"], tls["key"])
        self.ep = GatewayEndpoint(host, port, ctx)

    async def range(self, req: Any) -> Any:
        return await self.ep.kv.Range(req, timeout=3.0)

    async def txn(self, req: Any) -> Any:
        return await self.ep.kv.Txn(req, timeout=3.0)

    async def watch(self, req: Any) -> AsyncIterator[Any]:
        call = self.ep.watch.Watch()
        await call.write(req)
        try:
            while (resp := await call.read()) is not None:
                yield resp
        finally:
            call.cancel()

    async def close(self) -> None:
        await self.ep.close()


class _ProtoRequests:
    """The requests of the measurements as aetcd's protobuf messages (every binding takes these)."""

    @staticmethod
    def range(key: bytes) -> Any:
        return rpc.RangeRequest(key=key, limit=1, keys_only=True)

    @staticmethod
    def create(k: bytes, value: bytes) -> Any:
        return rpc.TxnRequest(
            compare=[rpc.Compare(key=k, target=rpc.Compare.CREATE, result=rpc.Compare.EQUAL, create_revision=0)],
            success=[rpc.RequestOp(request_put=rpc.PutRequest(key=k, value=value))],
            failure=[rpc.RequestOp(request_range=rpc.RangeRequest(key=k))],
        )

    @staticmethod
    def watch(key: bytes, end: bytes) -> Any:
        return rpc.WatchRequest(create_request=rpc.WatchCreateRequest(key=key, range_end=end, prev_kv=True))


def _binding(name: str, host: str, port: int, tls: dict[str, str] | None) -> Any:
    if name == "kos-http":
        return _KosHttp(host, port, tls)
    if name == "grpc.future":
        return _GrpcFuture(host, port, tls)
    if name.startswith("grpc.aio"):
        return _GrpcAio(host, port, tls)
    return _Gateway(host, port, tls) if name == "gateway" else _Grpclib(host, port, tls)


def _etcd_ticks(pid: int) -> int:
    """etcd's CPU so far (utime + stime of every thread, clock ticks) from /proc/<pid>/stat; 0 without a pid."""
    if not pid:
        return 0
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # fields 14 and 15 of proc(5), counted after the command's ")"


_TICK = 1e6 / os.sysconf("SC_CLK_TCK")  # µs per clock tick


async def _timed(n: int, inflight: int, op: Any, pid: int) -> tuple[float, float, float]:
    """(client CPU µs per op, wall µs per op, etcd CPU µs per op) for `n` calls of `op(i)`, `inflight` in flight."""

    async def worker(w: int) -> None:
        for i in range(w, n, inflight):
            await op(i)

    e0, c0, t0 = _etcd_ticks(pid), time.process_time(), time.perf_counter()
    await asyncio.gather(*(worker(w) for w in range(inflight)))
    cpu, wall = (time.process_time() - c0) / n * 1e6, (time.perf_counter() - t0) / n * 1e6
    return cpu, wall, (_etcd_ticks(pid) - e0) * _TICK / n


async def _child(args: argparse.Namespace) -> dict[str, Any]:
    tls = json.loads(args.tls) if args.tls else None
    b = _binding(args.binding, "127.0.0.1", args.port, tls)
    mk: Any = _ProtoRequests
    out: dict[str, Any] = {"binding": args.binding, "tls": tls is not None}
    prefix = f"/bench/{args.binding}/{os.getpid()}/".encode()
    await b.range(mk.range(prefix))  # connect
    # the replies mean what they say, in every binding (a JSON mapping that decoded nothing would look cheap)
    first, again = await b.txn(mk.create(prefix + b"check", b"v")), await b.txn(mk.create(prefix + b"check", b"v"))
    got = await b.range(mk.range(prefix + b"check"))
    assert first.succeeded and not again.succeeded and got.header.revision == first.header.revision > 0, (first, got)
    assert [kv.key for kv in got.kvs] == [prefix + b"check"] and got.kvs[0].mod_revision == got.header.revision
    for inflight in (1, 16):
        await _timed(100, inflight, lambda i: b.range(mk.range(prefix)), 0)  # warm up
        out[f"range_{inflight}"] = await _timed(
            args.calls, inflight, lambda i: b.range(mk.range(prefix)), args.etcd_pid
        )

    def put(tag: str) -> Any:
        def op(i: int) -> Any:
            return b.txn(mk.create(prefix + f"{tag}/{i}".encode(), b"x" * 300))

        return op

    for inflight in (1, 16):
        out[f"txn_{inflight}"] = await _timed(args.puts, inflight, put(f"p{inflight}"), args.etcd_pid)

    # watch: a writer process puts `events` keys under wprefix one at a time
    wprefix = prefix + b"w/"
    end = wprefix[:-1] + bytes([wprefix[-1] + 1])
    try:
        out["watch"] = await _watched(b, args, mk.watch(wprefix, end), wprefix)
    except RuntimeError as e:  # a gateway watch that failed (over mutual TLS, with a server-only member certificate)
        print(e, file=sys.stderr)
    await b.close()
    return out


async def _watched(b: Any, args: argparse.Namespace, create: Any, wprefix: bytes) -> tuple[float, float, float]:
    """(CPU µs per watch event, events per watch response, etcd CPU µs per event) for `args.events` puts by a
    writer process (etcd's figure includes serving the writer's puts, the same for every binding)."""
    got = responses = first = 0
    c0 = 0.0
    e0 = 0
    writer: subprocess.Popen[bytes] | None = None
    async for resp in b.watch(create):
        if resp.created and writer is None:
            cmd = [sys.executable, __file__, "--writer", "--port", str(args.port), "--tls", args.tls or "",
                   "--events", str(args.events), "--prefix", wprefix.decode()]  # fmt: skip
            writer = subprocess.Popen(cmd)
            continue
        if not resp.events:
            continue
        if got == 0:
            c0 = time.process_time()
            e0 = _etcd_ticks(args.etcd_pid)
            first = len(resp.events)
        got += len(resp.events)
        responses += 1
        if got >= args.events:
            break
    cpu = time.process_time() - c0
    etcd = (_etcd_ticks(args.etcd_pid) - e0) * _TICK
    assert writer is not None
    writer.wait()
    # the first response's events are not billed (the clock started on it)
    n = max(got - first, 1)
    return cpu / n * 1e6, got / responses, etcd / n


async def _writer(args: argparse.Namespace) -> None:
    tls = json.loads(args.tls) if args.tls else None
    b = _GrpcAio("127.0.0.1", args.port, tls)
    for i in range(args.events):
        await b.txn(
            rpc.TxnRequest(
                success=[rpc.RequestOp(request_put=rpc.PutRequest(key=f"{args.prefix}{i}".encode(), value=b"y" * 300))]
            )
        )
    await b.close()


def _run_child(
    binding: str, port: int, etcd_pid: int, tls: dict[str, str] | None, args: argparse.Namespace
) -> dict[str, Any]:
    binding, _, env_spec = binding.partition("+")
    env = dict(os.environ)
    if env_spec:
        var, _, value = env_spec.partition("=")
        env[var] = value
    cmd = [sys.executable, __file__, "--child", "--binding", binding, "--port", str(port), "--tls",
           json.dumps(tls) if tls else "", "--calls", str(args.calls), "--puts", str(args.puts),
           "--events", str(args.events), "--etcd-pid", str(etcd_pid)]  # fmt: skip
    res = subprocess.run(cmd, check=False, capture_output=True, text=True, env=env)
    if res.returncode != 0:
        print(f"{binding}{' over TLS' if tls else ''} failed: {res.stderr.strip().splitlines()[-1]}", flush=True)
        return {}
    return dict(json.loads(res.stdout.strip().splitlines()[-1]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--calls", type=int, default=2000, help="Range calls per measurement")
    ap.add_argument("--puts", type=int, default=600, help="Txn puts per measurement")
    ap.add_argument("--events", type=int, default=1000, help="watch events per measurement")
    ap.add_argument("--repeats", type=int, default=3, help="runs per binding (medians are reported)")
    ap.add_argument("--bindings", default=",".join(BINDINGS), help="comma-separated bindings to compare")
    ap.add_argument("--tls-only", action="store_true")
    ap.add_argument("--clear-only", action="store_true")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--writer", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--binding", default="grpc.aio", help=argparse.SUPPRESS)
    ap.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    ap.add_argument("--tls", default="", help=argparse.SUPPRESS)
    ap.add_argument("--prefix", default="", help=argparse.SUPPRESS)
    ap.add_argument("--etcd-pid", type=int, default=0, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child or args.writer:
        import uvloop

        if args.writer:
            uvloop.run(_writer(args))
        elif args.binding.endswith("/asyncio"):
            print(json.dumps(asyncio.run(_child(args))))
        else:
            print(json.dumps(uvloop.run(_child(args))))
        return
    BINDINGS[:] = args.bindings.split(",")
    calibration.print_calibration()
    print(f"load average before: {os.getloadavg()[0]:.2f}", flush=True)
    modes = [m for m in (False, True) if not (m and args.clear_only) and not (not m and args.tls_only)]
    with tempfile.TemporaryDirectory(prefix="kos-bench-etcd-") as tmp:
        for use_tls in modes:
            with EtcdProcess.start(Path(tmp) / ("tls" if use_tls else "clear"), tls=use_tls, peer=use_tls) as etcd:
                port = etcd.endpoints[0][1]
                tls = None
                if etcd.tls is not None:
                    tls = {"cacert": str(etcd.tls.cacert), "cert": str(etcd.tls.cert), "key": str(etcd.tls.key)}
                results: dict[str, list[dict[str, Any]]] = {b: [] for b in BINDINGS}
                for _ in range(args.repeats):
                    for name in BINDINGS:  # interleaved, so noise hits both alike
                        results[name].append(_run_child(name, port, etcd.pids()[0], tls, args))
                _report("mutual TLS" if use_tls else "in clear", results)
    print(f"load average after: {os.getloadavg()[0]:.2f}", flush=True)


def _report(mode: str, results: dict[str, list[dict[str, Any]]]) -> None:
    n = len(results[BINDINGS[0]])
    print(f"\n== etcd, {mode}: medians of {n}, per operation: client CPU µs (all threads), etcd's CPU µs (/proc),")
    print(
        "   and in brackets wall µs (for the watch: events per watch response; its etcd CPU includes the writer's puts)"
    )
    print(f"{'':24}" + "".join(f"{b:>26}" for b in BINDINGS))
    print(f"{'':24}" + "".join(f"{'client   etcd   (wall)':>26}" for _ in BINDINGS))
    rows = [("Range, 1 in flight", "range_1"), ("Range, 16 in flight", "range_16"), ("Txn put, 1 in flight", "txn_1"),
            ("Txn put, 16 in flight", "txn_16"), ("watch event", "watch")]  # fmt: skip
    for label, key in rows:
        cells = []
        for b in BINDINGS:
            runs = [r[key] for r in results[b] if key in r]
            if not runs:
                cells.append(f"{'failed':>26}")
                continue
            cpu = statistics.median(x[0] for x in runs)
            extra = statistics.median(x[1] for x in runs)
            etcd = statistics.median(x[2] for x in runs)
            wall = f"({extra:>6.1f})" if key == "watch" else f"({extra:>6.0f})"
            cells.append(f"{cpu:>9.0f} {etcd:>6.0f} {wall}")
        print(f"{label:24}" + "".join(cells))


if __name__ == "__main__":
    main()
