"""The workload driver: creates and deletes NetworkAttachments on a schedule and times every stage (reference §7).

Set-up: a plan of power-law virtual networks (`distribution.py`), one or two
subnets each, created in the run's namespace and waited for until validated.
Then T workers ("threads") each own a share of the slots and follow the
schedule (`schedule.py`): warm-up fills every slot, cruise pairs each create with
a delete of an older NA, cool-down only deletes. An informer watches the run's
NAs and records, per NA, when it was addressed, ready, broken or tested. Every
stage is measured from the moment just before the create call (client time,
as the original does) and, for the stages the server stamps, from the server's
write times too. The run directory gets the summary, the histograms, CSVs and
(`report.py`) an HTML report with plots.
"""

from __future__ import annotations

import asyncio
import csv
import dataclasses
import logging
import math
import random
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest

from kos.api import names
from kos.api.errors import NotFound, StatusError
from kos.api.meta import ObjectMeta
from kos.api.types import (
    SECTION_ADDRESS,
    SECTION_EXEC_REPORT,
    SECTION_IMPL,
    SECTION_SPEC,
    NetworkAttachment,
    NetworkAttachmentSpec,
    Subnet,
    SubnetSpec,
)
from kos.client.informer import Informer
from kos.client.rest import Client
from kos.driver import distribution, schedule
from kos.driver.metrics import DriverMetrics

log = logging.getLogger(__name__)

RUN_ID = re.compile(r"[-a-zA-Z0-9!@#$%^&()+=][-a-zA-Z0-9!@#$%^&()+=.]{0,99}")
"""The original driver's run-id rule, bounded; used with `fullmatch` (`$` would accept a final newline)."""
MAX_NODES = 1_000_000
TEST_BY_PING = "TestByPing"
REMOVE_NETNS = "RemoveNetNS"


class DriverError(Exception):
    """A problem with the driver's settings or set-up: one clear line."""


def parse_nodes(spec: str) -> list[str]:
    """`a,b,c` or `PREFIX:COUNT` (e.g. `node-:100` → node-0 … node-99)."""
    spec = spec.strip()
    if not spec:
        return []
    if ":" in spec and "," not in spec:
        prefix, _, count = spec.rpartition(":")
        if not (count.isascii() and count.isdigit() and len(count) <= 7 and 1 <= int(count) <= MAX_NODES):
            raise DriverError(f"--nodes {spec!r}: the count after ':' must be an integer from 1 to {MAX_NODES}")
        nodes = [f"{prefix}{i}" for i in range(int(count))]
        checked = [nodes[0], nodes[-1]]  # the rest differ only in their digits
    else:
        nodes = checked = [n.strip() for n in spec.split(",") if n.strip()]
    for n in checked:
        problems = names.dns1123_subdomain_problems(n)
        if problems:
            raise DriverError(f"--nodes {spec!r}: {n!r} is not a valid node name: {problems[0]}")
    return nodes


def generated_run_id(rng: random.Random) -> str:
    return time.strftime("%m%d-%H%M-") + f"{rng.randrange(10000):04d}"


@dataclasses.dataclass(frozen=True)
class DriverSettings:
    server: str
    nodes: tuple[str, ...] = ()
    num_nets: int = 10
    top_net_size: int = 100
    exponent: float = 1.0
    bias: int = 0
    base_address: str = "172.24.0.0"
    single_network: bool = False
    subnet_size_factor: float = 1.0
    estimate: bool = False
    round_robin: bool = False
    only_node: str = ""
    num_attachments: int = 450
    threads: int = 1
    rate: float = 10.0
    ops_distribution: str = "steady"
    wait_after_create: float = 0.0
    wait_after_delete: float = 15.0
    test_fraction: float = 0.0
    ping_count: int = 10
    pending_wait: float = 60.0
    stop_on_ping_fail: bool = True
    stop_on_break: bool = True
    test_script_dir: str = "/usr/local/kos/bin"
    dump_ops_times: bool = True
    keep_population: bool = False
    """Skip the cool-down: leave the last population in place (for checking a full system afterwards)."""
    run_id: str = ""
    seed: int | None = None
    output: Path | None = None
    progress: str = "auto"
    """"bar" (a progress bar), "lines" (a line every few seconds), "none", or "auto" (bar on a terminal)."""


@dataclasses.dataclass(slots=True)
class Record:
    """One NA's life, as the driver saw it."""

    name: str
    vni: int
    subnet: str
    node: str
    thread: int
    t_create: float = 0.0
    """Wall time just before the create call."""
    create_latency: float = math.nan
    addressed: float = math.nan
    ready: float = math.nan
    broken: float = math.nan
    tested: float = math.nan
    test_exit: int | None = None
    full_test: bool = False
    contention: bool = False
    deleted: float = math.nan
    server_spec: float = math.nan
    server_address: float = math.nan
    server_impl: float = math.nan
    server_exec: float = math.nan
    failed: bool = False
    ipv4: str = ""
    closed: bool = False


@dataclasses.dataclass(slots=True)
class Slot:
    net: distribution.NetworkPlan
    index: int
    next_index: int
    current: Record | None = None
    creates: int = 0


class Domain:
    """A VN's connectivity domain for ping tests: the latest NA that passed its test, and those still pending."""

    def __init__(self) -> None:
        self.latest: Record | None = None
        self.pending: set[str] = set()
        self.changed = asyncio.Event()

    def tested(self, r: Record, ok: bool) -> None:
        self.pending.discard(r.name)
        if ok:
            self.latest = r
        elif self.latest is r:
            self.latest = None
        self.changed.set()

    def closed(self, r: Record) -> None:
        self.pending.discard(r.name)
        if self.latest is r:
            self.latest = None
        self.changed.set()


class Driver:
    def __init__(self, s: DriverSettings) -> None:
        if s.num_attachments < 1 or s.threads < 1:
            raise DriverError("--num-attachments and --threads must be at least 1")
        if s.run_id and not RUN_ID.fullmatch(s.run_id):
            raise DriverError(f"--runid {s.run_id!r} must match {RUN_ID.pattern}")
        if not 0 <= s.test_fraction <= 1:
            raise DriverError("--test-fraction must be between 0 and 1")
        self.s = s
        self.rng = random.Random(s.seed)
        self.run_id = s.run_id or generated_run_id(random.Random())
        self.namespace = re.sub(r"[^a-z0-9-]", "-", self.run_id.lower()).strip("-")[:63] or "kos-driver"
        self.output = s.output or Path(self.run_id)
        self.plan = distribution.plan(
            num_nets=s.num_nets, top_net_size=s.top_net_size, exponent=s.exponent, bias=s.bias,
            base_address=s.base_address, single_network=s.single_network,
            subnet_size_factor=s.subnet_size_factor, rng=self.rng,
        )  # fmt: skip
        if not s.estimate:
            if not s.nodes and not s.only_node:
                raise DriverError("name the candidate nodes with --nodes (a,b,c or PREFIX:COUNT) or --only-node")
            if s.only_node and s.nodes and s.only_node not in s.nodes:
                raise DriverError(f"--only-node {s.only_node!r} is not one of --nodes")
            if s.wait_after_create and s.num_attachments > self.plan.num_slots:
                raise DriverError(
                    f"--wait-after-create needs --num-attachments <= the {self.plan.num_slots} slots of the plan"
                )
        self.registry = CollectorRegistry()
        self.metrics = DriverMetrics(self.registry, self.run_id)
        self.records: list[Record] = []
        self.by_name: dict[str, Record] = {}
        self.domains: dict[int, Domain] = {n.vni: Domain() for n in self.plan.networks}
        self.subnet_counters: dict[int, int] = {n.vni: 0 for n in self.plan.networks}
        self.ops_done = 0
        self.late_ops = 0
        self.total_delay = 0.0
        self.extra_delay = 0.0
        self.stopped: str = ""
        self.creates = 0
        self.deletes = 0
        self.failed_creates = 0
        self.t0 = 0.0
        self.t_end = 0.0
        self.netns_counter = 0

    # --- files -------------------------------------------------------------------------------

    def write_plan_files(self) -> None:
        self.output.mkdir(parents=True, exist_ok=True)
        with open(self.output / "size-distribution.csv", "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["I", "size"])
            w.writerows(self.plan.size_rows())
        with open(self.output / "size-distribution-outline.csv", "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["I", "size"])
            w.writerows(self.plan.outline_rows())

    def write_schedule(self, offsets: list[float]) -> None:
        with open(self.output / "attachments-ops-times.csv", "w", newline="") as f:
            f.write(f"distribution: {self.s.ops_distribution}, rate: {self.s.rate}\n")
            w = csv.writer(f)
            w.writerow(["op", "thd", "dt from start (secs)"])
            for i, t in enumerate(offsets):
                w.writerow([i + 1, i % self.s.threads + 1, f"{t:.6f}"])

    # --- set-up ------------------------------------------------------------------------------

    async def create_subnets(self, client: Client) -> None:
        labels = {"app": "attachment-tput-driver", "runid": self.run_id}
        for n in self.plan.networks:
            for sp in n.subnets:
                try:
                    await client.create(Subnet(metadata=ObjectMeta(name=sp.name, namespace=self.namespace,
                                                                   labels=labels),
                                               spec=SubnetSpec(vni=n.vni, ipv4=sp.cidr)))  # fmt: skip
                except StatusError as e:
                    raise DriverError(f"creating subnet {sp.name} ({sp.cidr}, VNI {n.vni}) failed: {e}") from e
        want = sum(len(n.subnets) for n in self.plan.networks)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            subnets, _ = await client.list(Subnet, self.namespace, label_selector=f"runid={self.run_id}")
            bad = [s for s in subnets if s.status.errors]
            if bad:
                raise DriverError(f"subnet {bad[0].metadata.name} failed validation: {'; '.join(bad[0].status.errors)}")
            if sum(1 for s in subnets if s.status.validated) == want:
                return
            await asyncio.sleep(0.05)
        raise DriverError("the subnets were not validated within 60 s: is the controller manager running?")

    # --- observation -------------------------------------------------------------------------

    def observe(self, na: NetworkAttachment) -> None:
        r = self.by_name.get(na.metadata.name)
        if r is None or r.closed:
            return  # not ours, or a tardy notification about an NA whose slot moved on
        now = time.time()
        st = na.status
        ext = na.extended_metadata
        if math.isnan(r.server_spec):
            t = ext.write_time(SECTION_SPEC)
            r.server_spec = t.timestamp() if t else math.nan
        if st.ipv4 and math.isnan(r.addressed):
            r.addressed = now
            r.ipv4 = st.ipv4
            r.contention = st.address_contention
            t = ext.write_time(SECTION_ADDRESS)
            r.server_address = t.timestamp() if t else math.nan
        if na.is_ready() and math.isnan(r.ready):
            r.ready = now
            t = ext.write_time(SECTION_IMPL)
            r.server_impl = t.timestamp() if t else math.nan
        if not na.is_ready() and math.isnan(r.broken) and math.isnan(r.ready):
            ipam = [e for e in st.errors.ipam if "run out of IPs" not in e]
            if ipam or st.errors.host:
                r.broken = now
                self.domains[r.vni].closed(r)
                if self.s.stop_on_break:
                    self.stopped = f"{r.name} broke: {'; '.join([*ipam, *st.errors.host])}"
        rep = st.post_create_exec_report
        if rep is not None and not math.isnan(r.ready) and math.isnan(r.tested):
            r.tested = now
            r.test_exit = rep.exit_status
            t = ext.write_time(SECTION_EXEC_REPORT)
            r.server_exec = t.timestamp() if t else math.nan
            self.domains[r.vni].tested(r, rep.exit_status == 0)
            if rep.exit_status != 0 and self.s.stop_on_ping_fail:
                self.stopped = f"{r.name}'s test exited {rep.exit_status}: {rep.std_err.strip()[-200:]}"

    def close(self, r: Record) -> None:
        """A slot's NA is deleted (or the run ends): record its histograms."""
        if r.closed:
            return
        r.closed = True
        m, rid = self.metrics, self.run_id
        if r.failed:
            return
        if not math.isnan(r.addressed):
            d = r.addressed - r.t_create
            m.create_to_addressed.labels(rid).observe(d)
            if not r.contention:
                m.create_to_addressed_easy.labels(rid).observe(d)
        if not math.isnan(r.ready):
            d = r.ready - r.t_create
            m.create_to_ready.labels(rid).observe(d)
            if not r.contention:
                m.create_to_ready_easy.labels(rid).observe(d)
        if not math.isnan(r.broken):
            m.create_to_broken.labels(rid).observe(r.broken - r.t_create)
        if not math.isnan(r.tested) and not math.isnan(r.ready):
            if r.full_test:
                m.create_to_tested.labels(rid).observe(r.tested - r.t_create)
                m.ready_to_tested.labels(rid).observe(r.tested - r.ready)
            else:
                m.create_to_half_tested.labels(rid).observe(r.tested - r.t_create)
                m.ready_to_half_tested.labels(rid).observe(r.tested - r.ready)
            m.test_count.labels(rid, str(r.test_exit), "-1", str(r.full_test).lower()).inc()
        if math.isnan(r.addressed):
            log.info("NA %s never got an address", r.name)
        elif math.isnan(r.ready):
            log.info("NA %s never became ready", r.name)
        self.domains[r.vni].closed(r)

    # --- operations --------------------------------------------------------------------------

    def _node(self, thread: int, creates: int) -> str:
        s = self.s
        if s.only_node:
            return s.only_node
        if s.round_robin:
            return s.nodes[(thread + s.threads * creates) % len(s.nodes)]
        return self.rng.choice(s.nodes)

    async def _tests(self, r: Record) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """Post-create/post-delete commands for a ping test (reference §7.4), or none."""
        s = self.s
        if s.test_fraction <= 0:
            return (), ()
        dom = self.domains[r.vni]
        peer = dom.latest
        if peer is None and dom.pending:
            waited = time.monotonic()
            deadline = waited + s.pending_wait
            while dom.latest is None and dom.pending and time.monotonic() < deadline:
                dom.changed.clear()
                try:
                    await asyncio.wait_for(dom.changed.wait(), max(0.0, deadline - time.monotonic()))
                except TimeoutError:
                    break
            self.extra_delay += time.monotonic() - waited  # waiting shifts everyone's schedule, as in the original
            peer = dom.latest
        self.netns_counter += 1
        netns = f"{self.run_id}-{self.netns_counter}"
        sub_prefix = next(sp.cidr.split("/")[1] for n in self.plan.networks for sp in n.subnets if sp.name == r.subnet)
        script = f"{s.test_script_dir}/{TEST_BY_PING}"
        create: tuple[str, ...]
        if peer is not None and peer.ipv4 and self.rng.random() < s.test_fraction:
            r.full_test = True
            create = (script, "${ifname}", netns, f"${{ipv4}}/{sub_prefix}", peer.ipv4, str(s.ping_count), peer.name)
        else:
            create = (script, "${ifname}", netns, f"${{ipv4}}/{sub_prefix}")
        dom.pending.add(r.name)
        return create, (f"{s.test_script_dir}/{REMOVE_NETNS}", netns)

    async def create(self, client: Client, slot: Slot, thread: int, creates: int) -> None:
        net = slot.net
        if len(net.subnets) > 1:
            self.subnet_counters[net.vni] += 1
            sub = net.subnets[self.subnet_counters[net.vni] % 2]
        else:
            sub = net.subnets[0]
        digits = 1 + int(math.log10(max(1, self.s.num_attachments)))
        name = f"{net.vni:06x}-{slot.next_index:0{digits}d}"
        r = Record(name=name, vni=net.vni, subnet=sub.name, node=self._node(thread, creates), thread=thread)
        pce, pde = await self._tests(r)
        self.records.append(r)
        self.by_name[name] = r
        slot.current = r
        na = NetworkAttachment(
            metadata=ObjectMeta(
                name=name, namespace=self.namespace,
                labels={"app": "attachment-tput-driver", "runid": self.run_id},
                annotations={"slot": str(slot.index), "precise/createTimestamp": time.strftime("%Y-%m-%d %H:%M:%S")},
            ),
            spec=NetworkAttachmentSpec(node=r.node, subnet=sub.name, post_create_exec=pce, post_delete_exec=pde),
        )  # fmt: skip
        r.t_create = time.time()
        t0 = time.perf_counter()
        try:
            await client.create(na)
        except StatusError as e:
            r.failed = True
            r.closed = True
            slot.current = None
            self.failed_creates += 1
            self.metrics.failed_creates.labels(self.run_id).inc()
            log.warning("create of %s failed: %s", name, e)
            return
        r.create_latency = time.perf_counter() - t0
        self.metrics.create.labels(self.run_id).observe(r.create_latency)
        self.metrics.successful_creates.labels(self.run_id).inc()
        self.creates += 1

    async def delete(self, client: Client, slot: Slot) -> None:
        r = slot.current
        if r is None:
            return  # its create failed: the delete is skipped, the schedule is not shifted
        slot.current = None
        slot.next_index += slot.net.size
        self.close(r)
        backoff = 0.1
        t0 = time.perf_counter()
        while True:
            try:
                await client.delete(NetworkAttachment, self.namespace, r.name)
                break
            except NotFound:
                break
            except StatusError as e:
                if self.stopped:
                    self.metrics.failed_deletes.labels(self.run_id).inc()
                    return
                log.info("delete of %s failed (%s); retrying in %.1fs", r.name, e, backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
        r.deleted = time.time()
        self.metrics.delete.labels(self.run_id).observe(time.perf_counter() - t0)
        self.metrics.successful_deletes.labels(self.run_id).inc()
        self.deletes += 1

    async def thread_loop(self, client: Client, k: int, owned: list[Slot], offsets: list[float]) -> None:
        s = self.s
        planned = schedule.creates_of_thread(s.num_attachments, s.threads, k)
        per_thread = 2 * planned
        creates = deletes = 0
        shock = s.wait_after_create > 0
        while deletes < planned:
            if shock and creates >= min(planned, len(owned)):
                return
            if s.keep_population and creates >= planned:
                return
            idx = schedule.slot_index(creates + deletes, k, s.threads, per_thread, s.num_attachments)
            target = self.t0 + offsets[min(idx, len(offsets) - 1)] + self.extra_delay
            now = time.monotonic()
            if target > now:
                await asyncio.sleep(target - now)
            else:
                self.late_ops += 1
                self.total_delay += now - target
            if self.stopped:
                return
            if creates < deletes + len(owned) and creates < planned:
                await self.create(client, owned[creates % len(owned)], k, creates)
                creates += 1
            else:
                await self.delete(client, owned[deletes % len(owned)])
                deletes += 1
            self.ops_done += 1

    # --- the run -----------------------------------------------------------------------------

    async def run(self, on_progress: Callable[[Driver], None] | None = None) -> dict[str, Any]:
        s = self.s
        self.write_plan_files()
        if s.estimate:
            return {"run_id": self.run_id, "estimate": True, "num_slots": self.plan.num_slots,
                    "avg_peers": self.plan.avg_peers, "break_point": self.plan.break_point}  # fmt: skip
        offsets = schedule.offsets(s.ops_distribution, s.rate, 2 * s.num_attachments, self.rng)
        if s.dump_ops_times:
            self.write_schedule(offsets)
        async with Client(s.server, user_agent=f"kos-driver/{self.run_id}", watch_mux=True) as client:
            await self.create_subnets(client)
            slots = [Slot(n, i, i + 1) for n in self.plan.networks for i in range(n.size)]
            self.rng.shuffle(slots)
            self.rng.shuffle(slots)
            threads = min(s.threads, len(slots))
            if threads != s.threads:
                self.s = s = dataclasses.replace(s, threads=threads)
            informer: Informer[NetworkAttachment] = Informer(
                client, NetworkAttachment, namespace=self.namespace, label_selector=f"runid={self.run_id}",
            )  # fmt: skip
            informer.add_handlers(self.observe, lambda old, new: self.observe(new))
            informer.start()
            await informer.wait_synced(30)
            log.warning("run %s: %d networks, %d slots, avgPeers %.2f, breakPoint %d, %d NAs at %.1f ops/s",
                        self.run_id, len(self.plan.networks), self.plan.num_slots, self.plan.avg_peers,
                        self.plan.break_point, s.num_attachments, s.rate)  # fmt: skip
            self.t0 = time.monotonic()
            self.wall_t0 = time.time()
            workers = [
                asyncio.create_task(self.thread_loop(client, k, slots[k::threads], offsets)) for k in range(threads)
            ]
            progress = asyncio.create_task(self._progress(on_progress)) if on_progress else None
            await asyncio.gather(*workers)
            if s.wait_after_create:
                await asyncio.sleep(s.wait_after_create)
            else:
                await self._settle(s.wait_after_delete)
            self.t_end = time.monotonic()
            for r in self.records:
                self.close(r)
            if progress is not None:
                progress.cancel()
            await informer.stop()
        (self.output / "driver.metrics").write_bytes(generate_latest(self.registry))
        return self.summary()

    async def _settle(self, seconds: float) -> None:
        """Wait for straggling notifications: up to `seconds`, less once every open NA is ready or broken."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if all(r.closed or not math.isnan(r.ready) or not math.isnan(r.broken) for r in self.records):
                await asyncio.sleep(min(0.2, max(0.0, deadline - time.monotonic())))
                return
            await asyncio.sleep(0.05)

    async def _progress(self, cb: Callable[[Driver], None]) -> None:
        while True:
            cb(self)
            await asyncio.sleep(0.25)

    # --- results -----------------------------------------------------------------------------

    def summary(self) -> dict[str, Any]:
        done = [r for r in self.records if not r.failed]
        elapsed = max(1e-9, (self.t_end or time.monotonic()) - self.t0)

        def stats(values: list[float]) -> dict[str, float | None]:
            v = sorted(x for x in values if not math.isnan(x))
            if not v:
                return {"p50": None, "p90": None, "p99": None, "max": None, "count": 0}
            return {"p50": _q(v, 0.5), "p90": _q(v, 0.9), "p99": _q(v, 0.99), "max": v[-1], "count": len(v)}

        never_ready = [r.name for r in done if math.isnan(r.ready)]
        return {
            "run_id": self.run_id,
            "namespace": self.namespace,
            "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in dataclasses.asdict(self.s).items()},
            "plan": {
                "networks": len(self.plan.networks),
                "slots": self.plan.num_slots,
                "avg_peers": self.plan.avg_peers,
                "break_point": self.plan.break_point,
            },
            "created": self.creates,
            "deleted": self.deletes,
            "ready": len(done) - len(never_ready),
            "never_ready": len(never_ready),
            "never_ready_names": never_ready[:50],
            "broken": sum(1 for r in done if not math.isnan(r.broken)),
            "failed_creates": self.failed_creates,
            "elapsed_seconds": elapsed,
            "achieved_rate": (self.creates + self.deletes) / elapsed,
            "achieved_create_rate": self.creates / elapsed,
            "target_rate": self.s.rate,
            "late_ops": self.late_ops,
            "late_ops_percent": 100.0 * self.late_ops / max(1, self.ops_done),
            "total_delay_ms": self.total_delay * 1000,
            "stopped": self.stopped,
            "latency_seconds": {
                "create": stats([r.create_latency for r in done]),
                "create_to_addressed": stats([r.addressed - r.t_create for r in done]),
                "create_to_ready": stats([r.ready - r.t_create for r in done]),
                "addressed_to_implemented": stats([r.server_impl - r.server_address for r in done]),
                "server_create_to_addressed": stats([r.server_address - r.server_spec for r in done]),
                "server_create_to_ready": stats([r.server_impl - r.server_spec for r in done]),
            },
            "tests": self.test_summary(),
        }

    def test_summary(self) -> dict[str, Any]:
        """The ping tests' outcomes (`--test-fraction`): full tests pinged a peer, half tests only set the guest up."""
        out: dict[str, Any] = {}
        for kind, full in (("full", True), ("half", False)):
            tested = [r for r in self.records if not r.failed and not math.isnan(r.tested) and r.full_test == full]
            out[kind] = len(tested)
            out[f"{kind}_passed"] = sum(1 for r in tested if r.test_exit == 0)
        failed = [r for r in self.records if not math.isnan(r.tested) and r.test_exit != 0]
        out["failed_names"] = [f"{r.name} (exit {r.test_exit})" for r in failed][:50]
        out["untested_ready"] = (
            sum(1 for r in self.records if not math.isnan(r.ready) and math.isnan(r.tested))
            if self.s.test_fraction > 0
            else 0
        )
        return out


def _q(sorted_values: list[float], q: float) -> float:
    """The q-quantile by the nearest-rank method."""
    i = max(0, min(len(sorted_values) - 1, math.ceil(q * len(sorted_values)) - 1))
    return sorted_values[i]
