"""Many simulated nodes in one process: the scale harness (`kos simnodes`).

Each node is a full connection agent — its own node name, host IP, local watch,
per-VNI watches and work queue — with the `sim` fabric. All agents share one
event loop, one HTTP connection pool and one simulated underlay, so a packet can
be traced from an attachment on one node to another. An HTTP endpoint serves
each node's fabric state and traces, for `kos verify` and `kos trace`.

Identities: the shared connections (the pool, the multiplexed watches) are the process's own (`server`, a
`ClientConfig` from `--kubeconfig`); with `node_tokens` each node's calls carry its own bearer token
(`Client.with_headers`), so the apiserver sees `system:node:<name>` and its node restriction applies to
every write a node makes, at no cost in connections.
"""

from __future__ import annotations

import asyncio
import ipaddress
import ssl
import urllib.parse
from collections.abc import Mapping
from typing import Any

import msgspec
from prometheus_client import CollectorRegistry, Gauge

from kos.agent.connection_agent import AgentSettings, ConnectionAgent
from kos.agent.metrics import AgentMetricFamilies
from kos.client.rest import Client, ClientConfig
from kos.fabric.sim import SimFabric, SimNetwork
from kos.http.messages import Reply, Request, Response
from kos.http.probes import serve_probes
from kos.http.server import HTTPServer
from kos.http.tls import ReloadingContext
from kos.util.log import get_logger

log = get_logger(__name__)

HOST_IP_BASE = int(ipaddress.IPv4Address("100.64.0.0"))


def host_ip(i: int) -> str:
    """The host IP string of simulated node i (from 100.64.0.0/10, which no guest uses)."""
    return str(ipaddress.IPv4Address(HOST_IP_BASE + i + 1))


class SimNodes:
    def __init__(
        self,
        server: str | ClientConfig,
        count: int,
        *,
        prefix: str = "node-",
        latency: float = 0.0,
        workers: int = 2,
        allowed_programs: frozenset[str] = frozenset(),
        per_node_metrics: bool = False,
        node_tokens: Mapping[str, str] | None = None,
    ) -> None:
        """`count` nodes `<prefix>0` ...; `node_tokens` (node name → bearer token), if given, must hold every node:
        KeyError names the first without one."""
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
            client = self.client
            if node_tokens is not None:
                client = client.with_headers({"Authorization": f"Bearer {node_tokens[node]}"})
            self.agents[node] = ConnectionAgent(
                client, fabric, AgentSettings(node, host_ip(i), allowed_programs, workers), families,
                metrics_node_label=None if per_node_metrics else "simnodes",
            )  # fmt: skip
        self._probes: HTTPServer | None = None
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
        if self._probes is not None:
            await self._probes.stop(1.0)
        await self.client.close()

    # --- HTTP --------------------------------------------------------------------------------

    async def serve(self, host: str, port: int, *, ssl: ssl.SSLContext | ReloadingContext | None = None) -> int:
        """Serve the nodes endpoint on `host:port` (0: any; returns the port), over TLS with `ssl`. OSError if the
        address cannot be bound."""
        routes = {"/nodes": self._nodes, "/nodes/": self._fabric, "/trace": self._trace, "/traces": self._traces}
        self._probes = await serve_probes(host, port, self.registry, routes=routes, ssl=ssl,
                                          readyz=lambda: None if self.ready.is_set() else "agents starting")  # fmt: skip
        self.port = self._probes.port
        return self.port

    async def _nodes(self, request: Request) -> Response:
        out = []
        for name, sw in self.network.switches.items():
            out.append({"node": name, "hostIP": sw.host_ip, "local": len(sw.local), "remote": len(sw.remote)})
        return _json(out)

    async def _fabric(self, request: Request) -> Response:
        node, _, rest = request.path[len("/nodes/") :].partition("/")
        if rest != "fabric":
            return _json({"error": f"no such path: {request.path}"}, status=404)
        sw = self.network.switches.get(urllib.parse.unquote(node))
        if sw is None:
            return _json({"error": f"no simulated node {node!r}"}, status=404)
        state = sw.state()
        if _query(request).get("flows"):
            state["dump"] = sw.dump_flows()
        return _json(state)

    async def _trace(self, request: Request) -> Response:
        q = _query(request)
        missing = [p for p in ("node", "interface", "ip") if not q.get(p)]
        if missing:
            return _json({"error": f"missing query parameters: {', '.join(missing)}"}, status=400)
        return _json(self.network.trace(q["node"], q["interface"], q["ip"]))

    async def _traces(self, request: Request) -> Response:
        """Many traces in one request: a JSON list of {node, interface, ip} → a list of results."""
        if request.method != "POST":
            return _json({"error": "POST a JSON list of {node, interface, ip}"}, status=405)
        try:
            asks = msgspec.json.decode(request.body)
            results = [self.network.trace(a["node"], a["interface"], a["ip"]) for a in asks]
        except (msgspec.DecodeError, KeyError, TypeError) as e:
            return _json({"error": f"expected a JSON list of {{node, interface, ip}}: {e}"}, status=400)
        return _json(results)


def _query(request: Request) -> dict[str, str]:
    """The query's parameters (the first value of each)."""
    return {k: v[0] for k, v in urllib.parse.parse_qs(request.query).items()}


def _json(body: Any, status: int = 200) -> Reply:
    return Reply(status, msgspec.json.encode(body))
