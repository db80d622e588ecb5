"""Many simulated nodes in one process: the scale harness (`kos simnodes`).

Each node is a full connection agent — its own node name, host IP, local watch,
per-VNI watches and work queue — with the `sim` fabric. All agents share one
event loop, one HTTP connection pool and one simulated underlay, so a packet can
be traced from an attachment on one node to another. An HTTP endpoint serves
each node's fabric state and traces, for `kos verify` and `kos trace`.
"""

from __future__ import annotations

import asyncio
import ipaddress
from typing import Any

import msgspec
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Gauge, generate_latest

from kos.agent.connection_agent import AgentSettings, ConnectionAgent
from kos.agent.metrics import AgentMetricFamilies
from kos.client.rest import Client
from kos.fabric.sim import SimFabric, SimNetwork
from kos.util.log import get_logger

log = get_logger(__name__)

HOST_IP_BASE = int(ipaddress.IPv4Address("100.64.0.0"))


def host_ip(i: int) -> str:
    """The host IP string of simulated node i (from 100.64.0.0/10, which no guest uses)."""
    return str(ipaddress.IPv4Address(HOST_IP_BASE + i + 1))


class SimNodes:
    def __init__(
        self,
        server: str,
        count: int,
        *,
        prefix: str = "node-",
        latency: float = 0.0,
        workers: int = 2,
        allowed_programs: frozenset[str] = frozenset(),
        per_node_metrics: bool = False,
    ) -> None:
        self.registry = CollectorRegistry()
        families = AgentMetricFamilies(self.registry)
        # all the nodes' watches (a local one each, one per relevant VNI) share one multiplexed connection
        # the nodes' watches that see one change receive the same event line: decode it once, share the object
        self.client = Client(server, connections=0, user_agent="kos-simnodes", watch_mux=True, share_events=True)
        self.network = SimNetwork()
        self.agents: dict[str, ConnectionAgent] = {}
        for i in range(count):
            node = f"{prefix}{i}"
            fabric = SimFabric(self.network, node, host_ip(i), latency=latency)
            self.agents[node] = ConnectionAgent(
                self.client, fabric, AgentSettings(node, host_ip(i), allowed_programs, workers), families,
                metrics_node_label=None if per_node_metrics else "simnodes",
            )  # fmt: skip
        self._runner: web.AppRunner | None = None
        self.port = 0
        self.ready = asyncio.Event()
        Gauge(
            "kos_simnodes_watch_events_received",
            "Watch events (not bookmarks) received by all simulated nodes.",
            registry=self.registry,
        ).set_function(lambda: self.client.watch_events_received)
        Gauge(
            "kos_simnodes_list_objects_received",
            "Objects received in list responses by all simulated nodes.",
            registry=self.registry,
        ).set_function(lambda: self.client.list_objects_received)
        Gauge(
            "kos_simnodes_watches",
            "Open watches of all simulated nodes (local and per-VNI).",
            registry=self.registry,
        ).set_function(lambda: sum(1 + len(a.vns) for a in self.agents.values()))

    async def start(self, *, concurrency: int = 64) -> None:
        sem = asyncio.Semaphore(concurrency)

        async def start_one(agent: ConnectionAgent) -> None:
            async with sem:
                await agent.start()

        await asyncio.gather(*(start_one(a) for a in self.agents.values()))
        self.ready.set()
        log.info("simulated nodes running", nodes=len(self.agents))

    async def stop(self) -> None:
        await asyncio.gather(*(a.stop() for a in self.agents.values()), return_exceptions=True)
        if self._runner is not None:
            await self._runner.cleanup()
        await self.client.close()

    # --- HTTP --------------------------------------------------------------------------------

    async def serve(self, host: str, port: int) -> int:
        app = web.Application()
        app.router.add_get("/nodes", self._nodes)
        app.router.add_get("/nodes/{node}/fabric", self._fabric)
        app.router.add_get("/trace", self._trace)
        app.router.add_post("/traces", self._traces)
        app.router.add_get("/metrics", self._metrics)
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/readyz", self._readyz)
        self._runner = web.AppRunner(app, handle_signals=False, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port, reuse_address=True)
        await site.start()
        sockets = getattr(site._server, "sockets", None)
        self.port = sockets[0].getsockname()[1] if sockets else port
        return self.port

    async def _nodes(self, request: web.Request) -> web.StreamResponse:
        out = []
        for name, sw in self.network.switches.items():
            out.append({"node": name, "hostIP": sw.host_ip, "local": len(sw.local), "remote": len(sw.remote)})
        return _json(out)

    async def _fabric(self, request: web.Request) -> web.StreamResponse:
        sw = self.network.switches.get(request.match_info["node"])
        if sw is None:
            return _json({"error": f"no simulated node {request.match_info['node']!r}"}, status=404)
        state = sw.state()
        if request.query.get("flows"):
            state["dump"] = sw.dump_flows()
        return _json(state)

    async def _trace(self, request: web.Request) -> web.StreamResponse:
        q = request.query
        missing = [p for p in ("node", "interface", "ip") if not q.get(p)]
        if missing:
            return _json({"error": f"missing query parameters: {', '.join(missing)}"}, status=400)
        return _json(self.network.trace(q["node"], q["interface"], q["ip"]))

    async def _traces(self, request: web.Request) -> web.StreamResponse:
        """Many traces in one request: a JSON list of {node, interface, ip} → a list of results."""
        try:
            asks = msgspec.json.decode(await request.read())
            results = [self.network.trace(a["node"], a["interface"], a["ip"]) for a in asks]
        except (msgspec.DecodeError, KeyError, TypeError) as e:
            return _json({"error": f"expected a JSON list of {{node, interface, ip}}: {e}"}, status=400)
        return _json(results)

    async def _metrics(self, request: web.Request) -> web.StreamResponse:
        return web.Response(body=generate_latest(self.registry), headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def _healthz(self, request: web.Request) -> web.StreamResponse:
        return web.Response(text="ok")

    async def _readyz(self, request: web.Request) -> web.StreamResponse:
        if self.ready.is_set():
            return web.Response(text="ok")
        return web.Response(status=503, text="agents starting")


def _json(body: Any, status: int = 200) -> web.Response:
    return web.Response(body=msgspec.json.encode(body), status=status, content_type="application/json")
