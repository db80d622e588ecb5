"""The OVS fabric: one node's Open vSwitch bridge `kos`, programmed in process (ARCHITECTURE §7, reference §6.3).

idl.py        the `ovs` IDL driven by the event loop: its replica, waits on it, transactions with retry
ovsdb.py      bridges and ports through OVSDB in this process (over idl.py)
ofctl.py      flows through `ovs-ofctl --bundle add-flows` (one process per batch, atomic)
batch.py      coalescing of concurrent calls into batches (used for flows and for ports)
dump.py       reading `dump-flows` back: flows grouped by cookie
reconcile.py  what a restart must repair or remove, as pure functions of what the switch holds
fabric.py     OVSFabric, the Fabric protocol over the above
"""

DEFAULT_OVSDB = "unix:/var/run/openvswitch/db.sock"
DEFAULT_RUNDIR = "/var/run/openvswitch"
DATAPATHS = ("system", "netdev")
"""`system`: the kernel datapath (production); `netdev`: the userspace datapath (no kernel module; CI)."""
