"""Simulated hosts with a real Open vSwitch on one machine: `kos demo --fabric ovs`, the OVS tests, `bench/ovs.py`.

The recipe of ovs-datapath.md, measured on a machine without the kernel module:
each host is a network namespace running its own ovsdb-server and ovs-vswitchd
(userspace `netdev` datapath, `OVS_RUNDIR` pointing at the host's directory, so
its `kos.mgmt` socket is there). Two Linux bridges in the root namespace join the
hosts:

    data  the underlay that carries VXLAN. Each host's end of it sits in an OVS
          bridge `br-phy` and the host's IP is on `br-phy` — with the netdev
          datapath the tunnel endpoint must be an OVS bridge. br-phy's MAC is
          pinned and every host gets static tunnel neighbours (`tnl/neigh/set`),
          so the first packet to a peer is not lost to vswitchd's own ARP (~1 s);
    mgmt  the control network: the root namespace has an address on it, so an
          apiserver here and agents inside the hosts reach each other without
          their TCP crossing OVS.

Needs root, Open vSwitch (`openvswitch-switch`), iproute2 and util-linux's
`nsenter`. Everything made carries the lab's prefix, and `stop()` removes it all
(daemons by pidfile, any other process whose command line names the working
directory, every namespace with the prefix — including guests made by
TestByPing — the bridges, the veths and the working directory), also after a
failure; `start()` does the same first, so a lab with a fixed prefix and
working directory (`kos demo --fabric ovs`) clears what a killed run left.

It lives here, not in kos.testing, because `kos demo --fabric ovs` builds one;
kos.testing.ovs re-exports it for the tests.
"""

from __future__ import annotations

import contextlib
import dataclasses
import ipaddress
import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

SCHEMA = Path("/usr/share/openvswitch/vswitch.ovsschema")
PROGRAMS = ("ovsdb-tool", "ovsdb-server", "ovs-vswitchd", "ovs-vsctl", "ovs-ofctl", "ovs-appctl", "ip", "ping",
            "nsenter")  # fmt: skip
DAEMONS = ("ovs-vswitchd", "ovsdb-server")


def missing() -> str:
    """Why an OVS lab cannot run here ("" if it can)."""
    if os.geteuid() != 0:
        return "needs root (network namespaces, taps, OVS daemons)"
    lacking = [p for p in PROGRAMS if shutil.which(p) is None]
    if lacking:
        return f"missing {', '.join(lacking)} (apt-get install openvswitch-switch iproute2 iputils-ping)"
    if not SCHEMA.exists():
        return f"missing {SCHEMA} (openvswitch-common)"
    if not os.path.exists("/dev/net/tun"):
        return "missing /dev/net/tun (the netdev datapath makes its ports as taps)"
    return ""


def run(*cmd: str, check: bool = True, timeout: float = 30, input: str | None = None) -> str:
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False, input=input)
    if check and p.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({p.returncode}): {p.stderr.strip() or p.stdout.strip()}")
    return p.stdout


def free_subnets(count: int) -> list[ipaddress.IPv4Network]:
    """/24s in 192.168.240–254 that no address or route of this machine touches."""
    used = []
    for word in run("ip", "-4", "route", "show", "table", "all").split():
        with contextlib.suppress(ValueError):
            used.append(ipaddress.ip_network(word, strict=False))
    out = []
    for third in range(254, 239, -1):
        net = ipaddress.IPv4Network(f"192.168.{third}.0/24")
        if not any(net.overlaps(u) for u in used if u.prefixlen > 0):
            out.append(net)
        if len(out) == count:
            return out
    raise RuntimeError("no free 192.168.x.0/24 for the lab's networks")


@dataclasses.dataclass(slots=True)
class Host:
    """One simulated node: a namespace with its own OVS."""

    name: str
    """The node name (`host-a`)."""
    netns: str
    index: int
    ip: str
    """The underlay address (on br-phy): the agent's --host-ip."""
    mgmt_ip: str
    phy_mac: str
    dir: Path

    @property
    def ovsdb(self) -> str:
        return f"unix:{self.dir}/db.sock"

    @property
    def mgmt_socket(self) -> str:
        return f"unix:{self.dir}/kos.mgmt"

    def vsctl(self, *args: str, check: bool = True) -> str:
        return run("ovs-vsctl", f"--db={self.ovsdb}", "--timeout=10", *args, check=check)

    def ofctl(self, *args: str, check: bool = True, input: str | None = None) -> str:
        return run("ovs-ofctl", "-O", "OpenFlow13", *args, check=check, input=input)

    def appctl(self, *args: str, check: bool = True) -> str:
        return run("ovs-appctl", "-t", f"{self.dir}/ovs-vswitchd.ctl", *args, check=check)

    def flows(self) -> list[str]:
        return [ln.strip() for ln in self.ofctl("--no-stats", "--no-names", "dump-flows", self.mgmt_socket).splitlines()
                if "actions=" in ln]  # fmt: skip

    def ports(self) -> list[str]:
        return self.vsctl("list-ports", "kos").split()

    def exec(self, *cmd: str) -> list[str]:
        """A command line that runs `cmd` in this host's network namespace only (not its mount namespace)."""
        return ["nsenter", f"--net=/run/netns/{self.netns}", "--", *cmd]


class Lab:
    """Hosts joined by a data (underlay) and a management network; `with Lab(...) as lab:` tears it all down."""

    def __init__(self, workdir: Path, names: list[str], *, prefix: str | None = None) -> None:
        self.prefix = prefix or f"kt{os.getpid() % 100000}"
        self.workdir = workdir
        self.data_br, self.mgmt_br = f"{self.prefix}data", f"{self.prefix}mgmt"
        self.data_net, self.mgmt_net = free_subnets(2)
        self.mgmt_ip = str(self.mgmt_net.network_address + 254)
        """The root namespace's address on the management network (where an apiserver listens)."""
        self.hosts = [
            Host(name, f"{self.prefix}-{name}", i, str(self.data_net.network_address + 1 + i),
                 str(self.mgmt_net.network_address + 1 + i), f"02:fe:00:00:00:{i + 1:02x}", workdir / name)
            for i, name in enumerate(names)
        ]  # fmt: skip

    def __enter__(self) -> Lab:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()

    def host(self, name: str) -> Host:
        return next(h for h in self.hosts if h.name == name)

    def start(self) -> None:
        self.stop()  # leftovers of an earlier run with this prefix
        for br, addr in ((self.data_br, None), (self.mgmt_br, f"{self.mgmt_ip}/24")):
            run("ip", "link", "add", br, "type", "bridge")
            if addr:
                run("ip", "addr", "add", addr, "dev", br)
            run("ip", "link", "set", br, "up")
        for h in self.hosts:
            self._start_host(h)
        for h in self.hosts:  # static tunnel neighbours: no first-packet loss to vswitchd's own ARP
            for peer in self.hosts:
                if peer is not h:
                    h.appctl("tnl/neigh/set", "br-phy", peer.ip, peer.phy_mac)

    def _start_host(self, h: Host) -> None:
        h.dir.mkdir(parents=True, exist_ok=True)
        run("ip", "netns", "add", h.netns)
        ns = ("ip", "-n", h.netns)
        run(*ns, "link", "set", "lo", "up")
        for kind, br in (("d", self.data_br), ("m", self.mgmt_br)):
            outer, inner = f"{self.prefix}{kind}{h.index}", "ul0" if kind == "d" else "mg0"
            run("ip", "link", "add", outer, "type", "veth", "peer", "name", inner, "netns", h.netns)
            run("ip", "link", "set", outer, "master", br, "up")
            run(*ns, "link", "set", inner, "up")
        run(*ns, "addr", "add", f"{h.mgmt_ip}/24", "dev", "mg0")
        d = h.dir
        run("ovsdb-tool", "create", f"{d}/conf.db", str(SCHEMA))
        run("ip", "netns", "exec", h.netns, "ovsdb-server", f"{d}/conf.db", f"--remote=punix:{d}/db.sock",
            f"--pidfile={d}/ovsdb-server.pid", f"--unixctl={d}/ovsdb-server.ctl",
            f"--log-file={d}/ovsdb-server.log", "-vconsole:off", "--detach")  # fmt: skip
        h.vsctl("--no-wait", "init")
        run("ip", "netns", "exec", h.netns, "env", f"OVS_RUNDIR={d}", "ovs-vswitchd", f"unix:{d}/db.sock",
            f"--pidfile={d}/ovs-vswitchd.pid", f"--unixctl={d}/ovs-vswitchd.ctl",
            f"--log-file={d}/ovs-vswitchd.log", "-vconsole:off", "--detach")  # fmt: skip
        h.vsctl("add-br", "br-phy", "--", "set", "bridge", "br-phy", "datapath_type=netdev",
                f"other-config:hwaddr={h.phy_mac}", "--", "add-port", "br-phy", "ul0")  # fmt: skip
        run(*ns, "addr", "add", f"{h.ip}/24", "dev", "br-phy")
        run(*ns, "link", "set", "br-phy", "up")

    def stop(self) -> None:
        """Remove everything with this lab's prefix; never raises."""
        for h in self.hosts:
            for daemon in DAEMONS:
                _kill_pidfile(h.dir / f"{daemon}.pid")
        kill_processes_naming(self.workdir)
        for name in netns_with_prefix(f"{self.prefix}-"):
            run("ip", "netns", "del", name, check=False)
        for br in (self.data_br, self.mgmt_br):
            run("ip", "link", "del", br, check=False)
        veth = re.compile(re.escape(self.prefix) + r"[dm][0-9]+")
        for link in links_with_prefix(self.prefix):  # the hosts' veth ends, also those of a run with more hosts
            if veth.fullmatch(link):
                run("ip", "link", "del", link, check=False)
        shutil.rmtree(self.workdir, ignore_errors=True)


def netns_with_prefix(prefix: str) -> list[str]:
    """Network namespaces whose name starts with `prefix` (`ip netns list`)."""
    out = []
    for line in run("ip", "netns", "list", check=False).splitlines():
        words = line.split()
        if words and words[0].startswith(prefix):
            out.append(words[0])
    return out


def links_with_prefix(prefix: str) -> list[str]:
    """Links of the root network namespace whose name starts with `prefix` (`ip -o link show`)."""
    out = []
    for line in run("ip", "-o", "link", "show", check=False).splitlines():
        parts = line.split(":", 2)
        if len(parts) == 3:
            name = parts[1].strip().split("@")[0]
            if name.startswith(prefix):
                out.append(name)
    return out


def processes_naming(path: Path) -> list[int]:
    """Pids of the processes (not this one) whose command line names `path` or a file under it."""
    names = re.compile(rb"(?:^|[=:])" + re.escape(str(path).encode()) + rb"(?:/|$)")
    out = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if any(names.search(a) for a in argv):
            out.append(int(entry.name))
    return out


def kill_processes_naming(path: Path) -> None:
    """SIGTERM, then SIGKILL, every process whose command line names `path` (what a killed run left running)."""
    for pid in processes_naming(path):
        _kill(pid)


def _kill_pidfile(path: Path) -> None:
    try:
        pid = int(path.read_text().strip())
    except (OSError, ValueError):
        return
    _kill(pid)


def _kill(pid: int) -> None:
    for sig in (signal.SIGTERM, signal.SIGKILL):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline:
            if not _alive(pid):
                return
            time.sleep(0.02)


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"  # a zombie has exited; its parent reaps it
    except OSError:
        return False
