"""The controller manager: shared informers, the subnet validator and IPAM, and their metrics endpoint.

One process runs both controllers (reference §4.8), sharing one client and one
Subnet informer. Informers watch all namespaces. Prometheus metrics and a health
check are served on `--metrics-listen`. With leader election (`Settings.leader_election`,
`kos.controllers.leaderelection`) the controllers run only while this process holds
the Lease; when leadership is lost they stop and `lost` is set (the command then
exits, as kube-controller-manager does, for its supervisor to restart it as a
candidate). Correctness never depends on it: two active managers stay safe.
"""

from __future__ import annotations

import asyncio
import dataclasses
import random
import ssl

from prometheus_client import CollectorRegistry

from kos.api.types import IPLock, NetworkAttachment, Subnet
from kos.client.controller import Controller
from kos.client.informer import Informer
from kos.client.queuemetrics import QueueMetricFamilies
from kos.client.ratelimit import ExponentialBackoff
from kos.client.rest import Client, ClientConfig
from kos.client.workqueue import WorkQueue
from kos.controllers.ipam import IPAM
from kos.controllers.leaderelection import LeaderElectionConfig, LeaderElector, LeaderMetrics
from kos.controllers.metrics import IPAMMetrics, SubnetValidatorMetrics
from kos.controllers.subnet_validator import SubnetValidator
from kos.http.probes import serve_probes
from kos.http.server import HTTPServer
from kos.http.tls import ReloadingContext
from kos.util.clock import REAL_CLOCK, Clock
from kos.util.log import get_logger

log = get_logger(__name__)

CONTROLLERS = ("subnet-validator", "ipam")


@dataclasses.dataclass(frozen=True, slots=True)
class Settings:
    server: str
    """The apiserver's URL, used when `client` is not given."""
    controllers: tuple[str, ...] = CONTROLLERS
    ipam_workers: int = 32
    validator_workers: int = 4
    qps: float = 0.0
    burst: int = 0
    metrics_host: str = "127.0.0.1"
    metrics_port: int = 9295
    seed: int | None = None
    watch_mux: bool = True
    metrics_ssl: ssl.SSLContext | ReloadingContext | None = None
    """TLS of the metrics listener (kos.cli.serving makes it); None: plain HTTP."""
    client: ClientConfig | None = None
    """Where and as whom to connect (`--kubeconfig`); None: `server`, no credentials."""
    leader_election: LeaderElectionConfig | None = None
    """Run the controllers only while holding this Lease; None: run them at once (no election)."""


class ControllerManager:
    """`start()` serves metrics and starts the controllers (at once, or once elected); `lost` is set when
    leadership is lost; `stop()` stops the controllers and releases the Lease."""

    def __init__(self, settings: Settings, *, clock: Clock = REAL_CLOCK) -> None:
        self.settings = settings
        self.clock = clock
        self.lost = asyncio.Event()
        self.elector: LeaderElector | None = None
        self._campaign: asyncio.Task[None] | None = None
        self.registry = CollectorRegistry()
        self.client = Client(settings.client or settings.server, qps=settings.qps, burst=settings.burst,
                             user_agent="kos-controller-manager", watch_mux=settings.watch_mux)  # fmt: skip
        self.controllers: list[Controller] = []
        self.queues = QueueMetricFamilies(self.registry)
        self._probes: HTTPServer | None = None
        self.metrics_port = settings.metrics_port
        s = settings
        subnets: Informer[Subnet] = Informer(self.client, Subnet, name="subnets")
        if "subnet-validator" in s.controllers:
            q: WorkQueue[str] = WorkQueue("sv", rate_limiter=ExponentialBackoff(), metrics=self.queues.for_queue("sv"))
            self.validator = SubnetValidator(self.client, subnets, q, SubnetValidatorMetrics(self.registry),
                                             workers=s.validator_workers)  # fmt: skip
            self.controllers.append(self.validator)
        if "ipam" in s.controllers:
            q2: WorkQueue[str] = WorkQueue("ipam", rate_limiter=ExponentialBackoff(),
                                           metrics=self.queues.for_queue("ipam"))  # fmt: skip
            self.ipam = IPAM(
                self.client, subnets, Informer(self.client, NetworkAttachment, name="networkattachments"),
                Informer(self.client, IPLock, name="iplocks"), q2, IPAMMetrics(self.registry),
                workers=s.ipam_workers, rng=random.Random(s.seed) if s.seed is not None else None,
            )  # fmt: skip
            self.controllers.append(self.ipam)
        for c in self.controllers:
            self.queues.watch(c.queue)

    async def start(self) -> None:
        await self._serve_metrics()
        config = self.settings.leader_election
        if config is None:
            await self._start_controllers()
            return
        self.elector = LeaderElector(self.client, config, on_started_leading=self._start_controllers,
                                     on_stopped_leading=self._stop_controllers, metrics=LeaderMetrics(self.registry),
                                     clock=self.clock)  # fmt: skip
        self._campaign = asyncio.get_running_loop().create_task(self._campaign_until_lost(), name="kos-leader-election")

    async def _campaign_until_lost(self) -> None:
        """Run the election; `lost` is set when leadership is lost, or when the campaign itself failed (say, the
        controllers could not start), so the command exits rather than idling without controllers."""
        assert self.elector is not None
        try:
            await self.elector.run()
        except Exception as e:  # any failure ends this candidacy; the supervisor restarts the process
            log.error("leader election failed", error=repr(e))
            self.lost.set()
            return
        if self.elector.lost:
            self.lost.set()

    async def _start_controllers(self) -> None:
        log.info("starting controllers", controllers=",".join(self.settings.controllers))
        for c in self.controllers:
            await c.start()

    async def _stop_controllers(self) -> None:
        log.info("stopping controllers")
        for c in self.controllers:
            await c.stop()

    async def stop(self) -> None:
        if self.elector is not None and self._campaign is not None:
            self.elector.stop()  # stops the controllers if leading, then releases the Lease
            await self._campaign
        else:
            await self._stop_controllers()
        if self._probes is not None:
            await self._probes.stop(1.0)
        await self.client.close()

    async def _serve_metrics(self) -> None:
        s = self.settings
        self._probes = await serve_probes(s.metrics_host, s.metrics_port, self.registry, ssl=s.metrics_ssl)
        self.metrics_port = self._probes.port
        log.info("serving metrics", host=s.metrics_host, port=self.metrics_port, scheme=self._probes.scheme)
