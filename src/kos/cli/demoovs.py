"""`kos demo --fabric ovs [--hosts N]`: the main job on a real datapath, on one machine (root).

N simulated hosts (kos.fabric.ovs.lab: network namespaces joined by an underlay, each with its own
ovsdb-server and ovs-vswitchd on the userspace datapath), kos up's apiserver and controller manager
(kos.cli.cluster, no simulated nodes) on the lab's management network, and one real `kos agent --fabric ovs`
per host, run inside its host's network namespace as a supervised child of the cluster. Then the driver with
ping tests (`--test-fraction`: a new NA's guest pings an earlier NA of its virtual network across the VXLAN
underlay), the summary, the report (with the tested-latency histograms) and `kos verify`, as `kos demo`.

Secure as `kos demo`: HTTPS everywhere; each agent has its own identity, a client certificate for
`system:node:<host>` in `system:nodes` (so the apiserver's node authorizer holds it to its own node, as a
kubelet's), in its own kubeconfig, and a serving certificate for its metrics listener.

Everything lives under WORKDIR and carries PREFIX (namespaces, bridges, veths, guest namespaces: the run ID
starts with it), and is torn down at exit, also on Ctrl-C or SIGTERM. A run that was SIGKILLed leaves it all
running; the next run first removes what it recognises: the processes cluster.json names, every process
whose command line names WORKDIR, and every namespace and link with PREFIX.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import fcntl
import ipaddress
import json
import os
import signal
import ssl
import sys
import time
import urllib.request
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

from rich.console import Console

from kos.agent import execs
from kos.apiserver.auth.user import NODE_USER_PREFIX, NODES_GROUP
from kos.cli.cluster import Child, Cluster, ClusterSettings
from kos.cli.common import UsageError
from kos.cli.driver import drive
from kos.driver.run import DriverError, DriverSettings
from kos.fabric.interface import FabricError
from kos.fabric.ovs import lab as ovslab
from kos.fabric.ovs.observe import observe
from kos.pki import directory
from kos.pki.authority import issue_client, issue_server
from kos.pki.kubeconfig import kubeconfig
from kos.util.clock import Clock
from kos.util.clusterfile import FILE_NAME
from kos.verify.check import FabricStates

PREFIX = "kosdemo"
"""What every namespace, bridge and veth of the demo's lab is named with (and the driver's run ID)."""
WORKDIR = Path("/run/kos-demo-ovs")
"""The lab's hosts' directories and the cluster's state (`cluster/`); fixed, so a re-run finds leftovers."""
STATE = "cluster"
LOCK = Path("/run/kos-demo-ovs.lock")
"""Held (flock) while a demo runs: a second one at once would tear the first one's lab down."""
MAX_HOSTS = 200
"""Hosts a lab can have: their addresses are .1, .2, … of its data and management /24s (.254 is the root's)."""
AGENT_METRICS_PORT = 9294
AGENT_START_TIMEOUT = 60.0
"""Seconds each agent has to list and reconcile its switch (`/healthz` says "ok")."""
POLL_INTERVAL = 0.1


@dataclasses.dataclass(frozen=True, slots=True)
class OVSDemo:
    """What the OVS demo runs with (from kos.cli.demo's settings)."""

    hosts: int
    num_attachments: int
    rate: float
    num_nets: int
    top_net_size: int
    threads: int
    seed: int
    test_fraction: float
    output: Path
    progress: str
    insecure: bool
    monitoring: bool
    log_level: str = "warning"


def host_names(count: int) -> list[str]:
    return [f"host-{i}" for i in range(count)]


def clear_leftovers(workdir: Path = WORKDIR) -> list[str]:
    """Stop what a killed earlier run left: the processes its cluster.json lists (if they still name `workdir`
    or the apiserver's URL: not a pid reused since) and every process whose command line names `workdir` (the
    OVS daemons, the agents). What it stopped; never raises. The namespaces, bridges and veths go with the
    lab's own start()."""
    stopped, killed = [], set()
    try:
        doc = json.loads((workdir / STATE / FILE_NAME).read_text())
        components = [c for c in doc.get("components", []) if isinstance(c, dict)]
    except (OSError, ValueError, AttributeError):
        components = []
    needles = [str(workdir).encode()] + [str(c["url"]).encode() for c in components if c.get("url")]
    for c in components:
        pid = c.get("pid")
        if not isinstance(pid, int):
            continue
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if any(n in cmdline for n in needles):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            killed.add(pid)
            stopped.append(f"{c.get('name')} (pid {pid})")
    left = [p for p in ovslab.processes_naming(workdir) if p not in killed]
    if left:
        stopped += [f"pid {p}" for p in left]
        ovslab.kill_processes_naming(workdir)
    if ovslab.netns_with_prefix(f"{PREFIX}-") or ovslab.links_with_prefix(PREFIX):
        stopped.append(f"namespaces and links named {PREFIX}*")
    return stopped


def agent_identities(cluster: Cluster, lab: ovslab.Lab) -> dict[str, tuple[Path, Path, Path]]:
    """host → (kubeconfig, serving certificate, serving key): a `system:node:<host>` client certificate and a
    serving certificate for the host's management address, signed by the cluster CA, in the state directory.
    {} with an insecure cluster."""
    ids = cluster.identities
    if ids is None:
        return {}
    ca = directory.load(ids.pki, directory.CA)
    out = {}
    for h in lab.hosts:
        client = issue_client(ca, NODE_USER_PREFIX + h.name, [NODES_GROUP])
        path = cluster.s.state_dir / f"agent-{h.name}.kubeconfig"
        directory.write_private(path, kubeconfig(cluster.server, ids.ca_pem, client, NODE_USER_PREFIX + h.name),
                                force=True)  # fmt: skip
        serving = f"agent-{h.name}-serving"
        directory.write(ids.pki, serving, issue_server(ca, f"kos-agent-{h.name}", [], [ipaddress.ip_address(h.mgmt_ip)]),
                        force=True)  # fmt: skip
        out[h.name] = (path, *directory.paths(ids.pki, serving))
    return out


def add_agents(cluster: Cluster, lab: ovslab.Lab, log_level: str) -> list[Child]:
    """One `kos agent --fabric ovs` per host, each in its host's network namespace, as children of `cluster`."""
    scripts = execs.test_script_dir()
    ids = agent_identities(cluster, lab)
    scheme = "http" if cluster.identities is None else "https"
    agents = []
    for h in lab.hosts:
        if h.name in ids:
            kc, crt, key = ids[h.name]
            auth = ["--kubeconfig", str(kc), "--tls-cert-file", str(crt), "--tls-private-key-file", str(key)]
        else:
            auth = ["--server", cluster.server, "--insecure"]
        url = f"{scheme}://{h.mgmt_ip}:{AGENT_METRICS_PORT}"
        child = Child(
            f"agent-{h.name}",
            ["agent", *auth, "--node", h.name, "--host-ip", h.ip, "--fabric", "ovs", "--ovs-datapath", "netdev",
             "--ovsdb", h.ovsdb, "--ovs-rundir", str(h.dir),
             "--allowed-programs", f"{scripts / 'TestByPing'},{scripts / 'RemoveNetNS'}",
             "--metrics-listen", f"{h.mgmt_ip}:{AGENT_METRICS_PORT}", "--lock-file", str(h.dir / "agent.lock"),
             "--log-level", log_level],
            f"{url}/healthz", cluster.s.state_dir / "logs" / f"agent-{h.name}.log", role="agent",
            metrics_url=f"{url}/metrics", ready_ssl=cluster.nodes_ssl, clock=cluster.clock,
            program=tuple(h.exec(sys.executable, "-m", "kos")),
        )  # fmt: skip
        cluster.children.append(child)
        agents.append(child)
    return agents


async def agents_started(agents: list[Child], context: ssl.SSLContext | None, clock: Clock) -> None:
    """Wait until every agent has listed and reconciled its switch (its /healthz says "ok"); RuntimeError
    naming the first that has not within AGENT_START_TIMEOUT."""
    deadline = clock.monotonic() + AGENT_START_TIMEOUT
    for a in agents:
        while not await asyncio.to_thread(_says_ok, a.ready_url, context):
            if clock.monotonic() > deadline:
                raise RuntimeError(f"{a.name} did not start within {AGENT_START_TIMEOUT:.0f}s:\n{a.tail()}")
            await clock.sleep(POLL_INTERVAL)


def _says_ok(url: str, context: ssl.SSLContext | None) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2, context=context) as r:
            return bool(r.read() == b"ok")
    except OSError:
        return False


async def fabric_states(lab: ovslab.Lab) -> dict[str, dict[str, Any]]:
    """Every host's switch as kos.verify reads a node's fabric (kos.fabric.ovs.observe: nothing changed)."""

    async def one(h: ovslab.Host) -> tuple[str, dict[str, Any]]:
        try:
            seen = await observe(h.ovsdb, str(h.dir))
        except FabricError as e:
            return h.name, {"problems": [f"cannot read its switch: {e}"]}
        return h.name, {
            "local": [{"vni": i.vni, "guest_ip": i.guest_ip, "name": i.name} for i in seen.local],
            "remote": [{"vni": r.vni, "guest_ip": r.guest_ip, "host_ip": r.host_ip} for r in seen.remote],
            "problems": seen.differences,
        }

    return dict(await asyncio.gather(*(one(h) for h in lab.hosts)))


async def _start(cluster: Cluster, agents: list[Child], clock: Clock) -> None:
    await cluster.start()
    await agents_started(agents, cluster.nodes_ssl, clock)


async def _unless_stopped(stop: asyncio.Event, aw: Awaitable[Any]) -> bool:
    """Await `aw` unless `stop` is set first (then cancel it): whether it finished (its exception is raised)."""
    task = asyncio.ensure_future(aw)
    waiter = asyncio.create_task(stop.wait())
    done, _ = await asyncio.wait({task, waiter}, return_when=asyncio.FIRST_COMPLETED)
    waiter.cancel()
    if task in done:
        task.result()
        return True
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError, Exception):
        await task
    return False


def driver_settings(s: OVSDemo, cluster: Cluster, lab: ovslab.Lab) -> DriverSettings:
    """The driver run: `s`'s workload placed round-robin over the hosts, with ping tests; the run ID (hence
    every guest namespace TestByPing makes) starts with PREFIX."""
    return DriverSettings(
        server=cluster.server, client=cluster.client_config(), nodes=tuple(h.name for h in lab.hosts),
        round_robin=True, num_nets=s.num_nets, top_net_size=s.top_net_size, num_attachments=s.num_attachments,
        rate=s.rate, threads=s.threads, test_fraction=s.test_fraction, ping_count=3,
        test_script_dir=str(execs.test_script_dir()), wait_after_delete=10.0, seed=s.seed, output=s.output,
        progress=s.progress, run_id=f"{PREFIX}-{time.strftime('%H%M%S')}", keep_population=True,
    )  # fmt: skip


After = Callable[[Cluster, dict[str, Any], Path | None, FabricStates], Awaitable[list[str]]]
"""What runs after the driver, with the cluster up (kos.cli.demo's plots and checks, given the run's summary,
its report and how to read every host's switch): the problems it found."""


async def run(s: OVSDemo, stop: asyncio.Event, console: Console, clock: Clock,
              after: After) -> tuple[dict[str, Any], Path | None, list[str]] | None:  # fmt: skip
    """Lab, cluster and agents up, the driver run, then `after(cluster, summary, path)` (kos.cli.demo's verify
    and clean-up: its problems); everything torn down at the end. None if interrupted (`stop`)."""
    why = ovslab.missing()
    if why:
        raise UsageError(f"--fabric ovs {why}")
    with _exclusive(LOCK):
        return await _run(s, stop, console, clock, after)


@contextlib.contextmanager
def _exclusive(path: Path) -> Iterator[None]:
    """Hold an exclusive flock on `path` (opened close-on-exec: no child keeps it after this process dies);
    UsageError if another process holds it."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise UsageError(f"another kos demo --fabric ovs is running (it holds {path})") from None
        yield
    finally:
        os.close(fd)


async def _run(s: OVSDemo, stop: asyncio.Event, console: Console, clock: Clock,
               after: After) -> tuple[dict[str, Any], Path | None, list[str]] | None:  # fmt: skip
    left = await asyncio.to_thread(clear_leftovers)
    if left:
        console.print(f"removing what an earlier run left: {', '.join(left)}")
    lab = ovslab.Lab(WORKDIR, host_names(s.hosts), prefix=PREFIX)
    cluster: Cluster | None = None
    try:
        console.print(f"starting {s.hosts} hosts (network namespaces, each with its own ovsdb-server and "
                      "ovs-vswitchd, userspace datapath) …")  # fmt: skip
        t0 = clock.monotonic()
        await asyncio.to_thread(lab.start)
        console.print(f"starting kos: apiserver (SQLite) on {lab.mgmt_ip}, controller manager, one kos agent "
                      "--fabric ovs per host …")  # fmt: skip
        cluster = Cluster(ClusterSettings(state_dir=WORKDIR / STATE, nodes=0, host=lab.mgmt_ip, insecure=s.insecure,
                                          monitoring=s.monitoring), clock=clock)  # fmt: skip
        agents = add_agents(cluster, lab, s.log_level)
        if stop.is_set() or not await _unless_stopped(stop, _start(cluster, agents, clock)):
            console.print("interrupted")
            return None
        console.print(f"up in {clock.monotonic() - t0:.1f}s; driving {s.num_attachments} attachments at "
                      f"{s.rate:g} operations/s with ping tests (--test-fraction {s.test_fraction:g}) …")  # fmt: skip
        task = asyncio.create_task(drive(driver_settings(s, cluster, lab), console))
        if not await _unless_stopped(stop, task):
            console.print("interrupted")
            return None
        summary, path = task.result()
        problems = await after(cluster, summary, path, lambda: fabric_states(lab))
        return summary, path, problems
    except (DriverError, RuntimeError, OSError) as e:
        raise UsageError(str(e)) from None
    finally:
        console.print("tearing down: agents, kos, the hosts' OVS, namespaces and links …")
        if cluster is not None:
            await cluster.stop()
        await asyncio.to_thread(lab.stop)
