"""Real Open vSwitch data plane: three simulated hosts, one real `kos agent --fabric ovs` each, real packets.

Layout (`kos.testing.ovs.Lab`): each host is a network namespace with its own
ovsdb-server and ovs-vswitchd (userspace `netdev` datapath: no kernel module
needed), joined by a data underlay (VXLAN between the hosts' `br-phy`) and a
management network. The apiserver and the controller manager run in the root
namespace on the management network; each agent runs *inside* its host's
network namespace (only the network namespace, via nsenter, so the namespaces
TestByPing makes are visible everywhere), as on a real node: it reaches the
apiserver over the network, programs its host's OVS through the host's unix
sockets, and its post-create commands find the new interfaces where OVS put them.

The NAs' post-create command is the packaged TestByPing (half test: move the
interface into its own namespace, MTU 1450, address, route); the test then
proves connectivity, isolation, a TCP transfer (which catches MTU mistakes),
clean deletion, a SIGKILL+restart without losing a packet gap over a second,
and a driver run with ping tests across the three hosts.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from kos.agent import execs
from kos.api import names
from kos.api.meta import ObjectMeta
from kos.api.types import NetworkAttachment, NetworkAttachmentSpec, Subnet, SubnetSpec
from kos.client.rest import Client
from kos.fabric import flows
from kos.testing import ovs as ovslab
from kos.testing.process import APIServerProcess, KosProcess, free_port

pytestmark = pytest.mark.system

HOSTS = ["host-a", "host-b", "host-c"]
NS = "ovs"
SUBNETS = {"blue": (0x101, "10.81.0.0/24"), "red": (0x102, "10.82.0.0/24"), "green": (0x103, "10.83.0.0/24"),
           "solo": (0x104, "10.84.0.7/32")}  # fmt: skip
SCRIPTS = execs.test_script_dir()
TEST_BY_PING, REMOVE_NETNS = str(SCRIPTS / "TestByPing"), str(SCRIPTS / "RemoveNetNS")
METRICS_PORT = 9294

TCP_SERVER = """
import socket, sys
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); s.bind((sys.argv[1], 5001)); s.listen(1)
s.settimeout(15); c, _ = s.accept(); c.settimeout(15); n = 0
while True:
    b = c.recv(65536)
    if not b: break
    n += len(b)
c.sendall(str(n).encode()); c.close()
"""
TCP_CLIENT = """
import socket, sys, time
for _ in range(50):
    try:
        s = socket.create_connection((sys.argv[1], 5001), timeout=5); break
    except ConnectionRefusedError:
        time.sleep(0.05)
s.settimeout(15); s.sendall(b"x" * int(sys.argv[2])); s.shutdown(socket.SHUT_WR); print(s.recv(100).decode())
"""


class Cluster:
    """The lab, an apiserver and a controller manager in the root namespace, and an agent in each host."""

    def __init__(self, lab: ovslab.Lab, logs: Path) -> None:
        self.lab = lab
        self.logs = logs
        self.server: APIServerProcess | None = None
        self.cm: KosProcess | None = None
        self.agents: dict[str, KosProcess] = {}
        self.starts = 0

    def start(self) -> None:
        self.server = APIServerProcess("memory://", self.logs / "apiserver.log", host=self.lab.mgmt_ip,
                                       extra=["--log-level", "warning"]).wait_ready()  # fmt: skip
        port = free_port()
        self.cm = KosProcess(["controller-manager", "--server", self.server.url, "--metrics-listen",
                              f"127.0.0.1:{port}", "--insecure", "--log-level", "warning"], self.logs / "cm.log")  # fmt: skip
        self.cm.wait_http(f"http://127.0.0.1:{port}/healthz")
        for h in self.lab.hosts:
            self.start_agent(h.name)

    @property
    def url(self) -> str:
        assert self.server is not None
        return self.server.url

    def start_agent(self, name: str) -> KosProcess:
        h = self.lab.host(name)
        self.starts += 1
        p = KosProcess(
            ["agent", "--server", self.url, "--node", h.name, "--host-ip", h.ip, "--fabric", "ovs",
             "--ovs-datapath", "netdev", "--ovsdb", h.ovsdb, "--ovs-rundir", str(h.dir),
             "--allowed-programs", f"{TEST_BY_PING},{REMOVE_NETNS}", "--metrics-listen", f"{h.mgmt_ip}:{METRICS_PORT}",
             "--insecure", "--lock-file", str(h.dir / "agent.lock"), "--log-level", "info"],
            self.logs / f"agent-{h.name}-{self.starts}.log", prefix=h.exec(),
        )  # fmt: skip
        self.agents[name] = p
        wait_started(p, f"http://{h.mgmt_ip}:{METRICS_PORT}/healthz")
        return p

    def stop(self) -> None:
        for p in [*self.agents.values(), self.cm, self.server]:
            if p is not None:
                p.stop()


def wait_started(p: KosProcess, url: str, timeout: float = 30) -> None:
    """The agent serves /healthz at once and says "ok" when it has listed and reconciled its fabric."""
    import urllib.request

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if p.proc.poll() is not None:
            raise RuntimeError(f"agent exited with {p.proc.returncode}:\n{p.log_tail()}")
        try:
            with urllib.request.urlopen(url, timeout=1) as r:
                if r.read() == b"ok":
                    return
        except OSError:
            pass
        time.sleep(0.05)
    raise RuntimeError(f"agent not started in {timeout}s:\n{p.log_tail()}")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    why = ovslab.missing()
    if why:
        print(f"OVS datapath tests skipped: {why}")
        pytest.skip(f"OVS datapath tests: {why}")
    lab = ovslab.Lab(Path(tempfile.mkdtemp(prefix="kos-ovs-")), HOSTS)
    c = Cluster(lab, tmp_path_factory.mktemp("ovs-logs"))
    try:
        lab.start()
        c.start()
        yield c
    finally:
        c.stop()
        lab.stop()


# --- helpers -------------------------------------------------------------------------------------


def guest(c: Cluster, na: str) -> str:
    """The namespace TestByPing moves an NA's interface into (with the lab's prefix, so teardown finds it)."""
    return f"{c.lab.prefix}-g-{na}"


def na(c: Cluster, name: str, node: str, subnet: str) -> NetworkAttachment:
    ns = guest(c, name)
    return NetworkAttachment(
        metadata=ObjectMeta(name=name, namespace=NS),
        spec=NetworkAttachmentSpec(node=node, subnet=subnet,
                                   post_create_exec=(TEST_BY_PING, "${ifname}", ns, "${ipv4}/24"),
                                   post_delete_exec=(REMOVE_NETNS, ns)),
    )  # fmt: skip


async def ready(client: Client, names: list[str], timeout: float = 30) -> dict[str, NetworkAttachment]:
    """Wait until the NAs are ready and their post-create command succeeded."""
    deadline = time.monotonic() + timeout
    while True:
        nas = {n.metadata.name: n for n in (await client.list(NetworkAttachment, namespace=NS))[0]}
        pending = [n for n in names if n not in nas or not nas[n].is_ready()
                   or nas[n].status.post_create_exec_report is None]  # fmt: skip
        if not pending:
            for n in names:
                rep = nas[n].status.post_create_exec_report
                assert rep is not None and rep.exit_status == 0, f"{n}: TestByPing failed: {rep}"
            return nas
        if time.monotonic() > deadline:
            raise AssertionError(
                f"not ready in {timeout}s: {[(n, nas[n].status if n in nas else None) for n in pending]}"
            )
        await asyncio.sleep(0.1)


async def sh(*cmd: str, timeout: float = 30) -> tuple[int, str]:
    p = await asyncio.create_subprocess_exec(*cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        out, _ = await asyncio.wait_for(p.communicate(), timeout)
    except TimeoutError:
        p.kill()
        out, _ = await p.communicate()
    return p.returncode if p.returncode is not None else -1, out.decode(errors="replace")


async def pings(src_ns: str, ip: str, tries: int = 5) -> bool:
    for _ in range(tries):
        rc, _ = await sh("ip", "netns", "exec", src_ns, "ping", "-c", "1", "-W", "1", ip)
        if rc == 0:
            return True
    return False


async def unreachable(src_ns: str, ip: str) -> bool:
    rc, _ = await sh("ip", "netns", "exec", src_ns, "ping", "-c", "2", "-W", "1", ip)
    return rc != 0


async def metric(h: ovslab.Host, name: str, *labels: str) -> float:
    """The sum of a metric's samples on a host's agent that carry all of `labels` (e.g. `op="CreateLocalIfc"`)."""
    async with aiohttp.ClientSession() as s, s.get(f"http://{h.mgmt_ip}:{METRICS_PORT}/metrics") as r:
        text = await r.text()
    return sum(float(ln.rsplit(" ", 1)[1]) for ln in text.splitlines()
               if ln.startswith(name + "{") and all(x in ln for x in labels))  # fmt: skip


async def subnets(client: Client, *names: str) -> None:
    for name in names:
        vni, cidr = SUBNETS[name]
        await client.create(Subnet(metadata=ObjectMeta(name=name, namespace=NS), spec=SubnetSpec(vni=vni, ipv4=cidr)))


def cookies(h: ovslab.Host) -> set[int]:
    return {int(ln.split("cookie=")[1].split(",")[0], 16) for ln in h.flows() if "cookie=" in ln}


# --- tests ---------------------------------------------------------------------------------------


async def test_connectivity_isolation_tcp_and_delete(cluster: Cluster) -> None:
    c = cluster
    async with Client(c.url) as client:
        await subnets(client, "blue", "red")
        placement = {"a1": ("host-a", "blue"), "a2": ("host-a", "blue"), "b1": ("host-b", "blue"),
                     "c1": ("host-c", "blue"), "b2": ("host-b", "red"), "c2": ("host-c", "red")}  # fmt: skip
        for name, (node, subnet) in placement.items():
            await client.create(na(c, name, node, subnet))
        nas = await ready(client, list(placement))
        ip = {n: a.status.ipv4 for n, a in nas.items()}
        g = {n: guest(c, n) for n in placement}

        # same VNI: across hosts both ways, within a host; the other VNI too
        checks = [("a1", "b1"), ("b1", "a1"), ("a1", "c1"), ("c1", "b1"), ("a1", "a2"), ("a2", "a1"), ("b2", "c2"),
                  ("c2", "b2")]  # fmt: skip
        ok = await asyncio.gather(*(pings(g[s], ip[d]) for s, d in checks))
        assert all(ok), [chk for chk, good in zip(checks, ok, strict=True) if not good]
        # no reachability across VNIs, on one host or across hosts
        iso = [("b2", "b1"), ("c2", "a1"), ("a1", "c2"), ("b1", "b2")]
        blocked = await asyncio.gather(*(unreachable(g[s], ip[d]) for s, d in iso))
        assert all(blocked), [chk for chk, good in zip(iso, blocked, strict=True) if not good]

        # a 4 MiB TCP transfer across hosts (fails with a guest MTU that leaves no room for VXLAN)
        size = 4 * 1024 * 1024
        server = asyncio.create_task(sh("ip", "netns", "exec", g["c1"], sys.executable, "-c", TCP_SERVER, ip["c1"]))
        rc, out = await sh("ip", "netns", "exec", g["a1"], sys.executable, "-c", TCP_CLIENT, ip["c1"], str(size))
        _, sout = await server
        assert rc == 0 and out.strip() == str(size), (out, sout)

        # delete an NA: its port, its flows here and elsewhere, and its guest namespace go
        a = c.lab.host("host-a")
        a2 = nas["a2"].status
        local_c = flows.cookie(flows.COOKIE_LOCAL, a2.mac_address)
        remote_c = flows.cookie(flows.COOKIE_REMOTE, a2.mac_address)
        assert a2.ifc_name in a.ports() and local_c in cookies(a)
        assert all(remote_c in cookies(c.lab.host(h)) for h in ("host-b", "host-c"))
        await client.delete(NetworkAttachment, NS, "a2")
        deadline = time.monotonic() + 15
        while True:
            left = []
            if a2.ifc_name in a.ports():
                left.append("port")
            if local_c in cookies(a):
                left.append("local flows")
            left += [f"remote flows on {h}" for h in ("host-b", "host-c") if remote_c in cookies(c.lab.host(h))]
            if g["a2"] in ovslab.run("ip", "netns", "list"):
                left.append("guest netns (RemoveNetNS)")
            if not left:
                break
            assert time.monotonic() < deadline, f"after deleting a2, still there: {left}"
            await asyncio.sleep(0.1)
        assert await pings(g["a1"], ip["b1"]), "the others still work"


async def test_agent_sigkill_restart_keeps_traffic_and_converges(cluster: Cluster) -> None:
    c = cluster
    a = c.lab.host("host-a")
    async with Client(c.url) as client:
        await subnets(client, "green")
        for name, node in (("ga1", "host-a"), ("ga2", "host-a"), ("gb1", "host-b"), ("gb2", "host-b")):
            await client.create(na(c, name, node, "green"))
        nas = await ready(client, ["ga1", "ga2", "gb1", "gb2"])
        ip = {n: x.status.ipv4 for n, x in nas.items()}
        ga1_ifc = nas["ga1"].status.ifc_name
        ga2_cookie = flows.cookie(flows.COOKIE_LOCAL, nas["ga2"].status.mac_address)
        gb2_cookie = flows.cookie(flows.COOKIE_REMOTE, nas["gb2"].status.mac_address)
        ofport_before = a.vsctl("get", "interface", ga1_ifc, "ofport").strip()
        assert await pings(guest(c, "ga1"), ip["gb1"])
        flows_before = set(a.flows())
        assert gb2_cookie in cookies(a)

        ping = await asyncio.create_subprocess_exec(
            "ip", "netns", "exec", guest(c, "ga1"), "ping", "-D", "-i", "0.05", "-W", "1", ip["gb1"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        )  # fmt: skip
        try:
            await asyncio.sleep(0.5)
            t_kill = time.time()
            c.agents["host-a"].kill()  # SIGKILL: the switch keeps its state, the agent forgets everything
            # while it is down: a local NA on its node, and a remote one it must learn about; a remote it must forget
            await client.create(na(c, "ga3", "host-a", "green"))
            await client.create(na(c, "gc3", "host-c", "green"))
            await client.delete(NetworkAttachment, NS, "gb2")
            # and damage to repair: a lost flow of a live interface, a stale flow, a port vswitchd could not set up
            a.ofctl("del-flows", a.mgmt_socket, f"cookie={ga2_cookie:#x}/-1,table=0")
            stale = flows.cookie(flows.COOKIE_LOCAL, "aa:bb:cc:dd:ee:ff")
            a.ofctl(
                "add-flow",
                a.mgmt_socket,
                f"cookie={stale:#x},table=1,priority=100,dl_dst=aa:bb:cc:dd:ee:ff,actions=drop",
            )
            a.vsctl("add-port", "kos", "kosbroken0", "--", "set", "interface", "kosbroken0", "type=system",
                    "external_ids:kos-vni=259", "external_ids:kos-guest-ip=10.83.0.250",
                    "external_ids:kos-guest-mac=06:53:00:fa:01:03")  # fmt: skip
            await ready(client, ["gc3"])
            await asyncio.to_thread(c.start_agent, "host-a")
            t_restarted = time.time()
            nas = await ready(client, ["ga3"])
            ip.update({n: x.status.ipv4 for n, x in nas.items()})
            await asyncio.sleep(1.0)
        finally:
            ping.send_signal(signal.SIGINT)
            out, _ = await ping.communicate()
        replies = [float(ln[1 : ln.index("]")]) for ln in out.decode().splitlines()
                   if ln.startswith("[") and "bytes from" in ln]  # fmt: skip
        assert replies and replies[0] < t_kill and replies[-1] > t_restarted, (t_kill, t_restarted, replies[:3])
        gaps = [y - x for x, y in itertools.pairwise(replies)]
        assert max(gaps) < 1.0, f"traffic stopped for {max(gaps):.2f}s across the agent's restart"

        # repaired and cleaned: the lost flow is back, the stale flow, the broken port and the orphan remote are gone
        have = cookies(a)
        assert any(f"cookie={ga2_cookie:#x}," in ln and "in_port=" in ln for ln in a.flows())
        assert stale not in have and gb2_cookie not in have
        assert "kosbroken0" not in a.ports()
        # nothing live was rebuilt: same port number, every earlier flow still there, one new local interface only
        assert a.vsctl("get", "interface", ga1_ifc, "ofport").strip() == ofport_before
        assert {f for f in flows_before if f"cookie={gb2_cookie:#x}," not in f} <= set(a.flows())
        creates = await metric(a, "kos_agent_fabric_latency_seconds_count", 'op="CreateLocalIfc"', 'err="ok"')
        assert creates == 1, "only the NA made while the agent was down was created"
        # and it converged: the NA made while it was down works, and so does the remote one made meanwhile
        assert await pings(guest(c, "ga3"), ip["gb1"])
        assert await pings(guest(c, "ga3"), ip["gc3"])
        assert await pings(guest(c, "gc3"), ip["ga1"])
        assert await pings(guest(c, "ga2"), ip["gb1"])


async def test_a_port_vswitchd_cannot_set_up_is_reported_in_the_status(cluster: Cluster) -> None:
    c = cluster
    a = c.lab.host("host-a")
    vni, only_ip = SUBNETS["solo"][0], "10.84.0.7"  # a /32: the NA's address, hence its interface name, is known
    ifname = names.interface_name(vni, only_ip)
    ovslab.run("ip", "-n", a.netns, "link", "add", ifname, "type", "veth", "peer", "name", "blocker0")
    try:
        async with Client(c.url) as client:
            await subnets(client, "solo")
            await client.create(NetworkAttachment(metadata=ObjectMeta(name="blocked", namespace=NS),
                                                  spec=NetworkAttachmentSpec(node="host-a", subnet="solo")))  # fmt: skip
            deadline = time.monotonic() + 15
            while True:
                st = (await client.get(NetworkAttachment, NS, "blocked")).status
                if st.errors.host:
                    break
                assert time.monotonic() < deadline, st
                await asyncio.sleep(0.1)
            assert st.ipv4 == only_ip and not st.ifc_name
            assert len(st.errors.host) == 1 and f"could not set up port {ifname}" in st.errors.host[0], st.errors.host
            assert ifname not in a.ports(), "the port vswitchd could not use was rolled back"
            await client.delete(NetworkAttachment, NS, "blocked")
    finally:
        ovslab.run("ip", "-n", a.netns, "link", "del", ifname, check=False)


async def test_driver_run_with_ping_tests_over_three_hosts(cluster: Cluster) -> None:
    c = cluster
    out = c.logs / "driver"
    # 4 ops/s: a full test pings the VN's latest tested NA, which the schedule may delete one op later; 250 ms
    # leaves the ping (create → ready → TestByPing ≈ 100 ms) ample time (the original driver has the same race)
    p = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "kos", "driver", "--server", c.url, "--nodes", ",".join(HOSTS), "--round-robin",
        "--test-fraction", "1", "--ping-count", "3", "--test-script-dir", str(SCRIPTS), "--num-nets", "2",
        "--top-net-size", "4", "--num-attachments", "8", "--rate", "4", "--threads", "2", "--wait-after-delete", "3s",
        "--base-address", "172.28.0.0", "--runid", f"{c.lab.prefix}-drv", "--seed", "3", "--output", str(out),
        "--progress", "none", "--log-level", "warning",
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )  # fmt: skip
    text, _ = await asyncio.wait_for(p.communicate(), 120)
    printed = text.decode(errors="replace")
    print(printed)
    assert p.returncode == 0, printed
    summary = json.loads((out / "summary.json").read_text())
    tests = summary["tests"]
    assert tests["full"] >= 4 and tests["full_passed"] == tests["full"], tests
    assert tests["half_passed"] == tests["half"] and not tests["failed_names"], tests
    assert summary["never_ready"] == 0 and summary["ready"] == 8
    assert "ping tests:" in printed and "failed:" not in printed
    # the tested-latency histograms (original names) counted every test
    scraped = (out / "driver.metrics").read_text()

    def count(metric: str) -> float:
        return sum(float(line.rsplit(" ", 1)[1]) for line in scraped.splitlines()
                   if line.startswith(f"kos_driver_{metric}_count"))  # fmt: skip

    assert count("attachment_create_to_tested_latency_seconds") == tests["full"]
    assert count("attachment_ready_to_tested_latency_seconds") == tests["full"]
    assert count("attachment_create_to_half_tested_latency_seconds") == tests["half"]
    # the cool-down deleted every NA, and RemoveNetNS every guest namespace of the run
    deadline = time.monotonic() + 10
    while f"{c.lab.prefix}-drv-" in ovslab.run("ip", "netns", "list"):
        assert time.monotonic() < deadline, ovslab.run("ip", "netns", "list")
        await asyncio.sleep(0.1)
