"""The `logger` fabric: records and logs every call, programs nothing.

For running agents where no switch exists (and for watching what an agent
does). It keeps the (VNI, IP) guarantee the other fabrics give; its lists
return what it holds, so they are empty after a restart.
"""

from __future__ import annotations

from kos.fabric.interface import LocalNetIfc, Pairs, RemoteNetIfc
from kos.util.log import get_logger

log = get_logger(__name__)


class LoggerFabric:
    name = "logger"

    def __init__(self, node: str = "") -> None:
        self.node = node
        self.local: dict[str, LocalNetIfc] = {}
        self.remote: dict[str, RemoteNetIfc] = {}
        self.pairs = Pairs()

    async def create_local_ifc(self, ifc: LocalNetIfc) -> None:
        self.pairs.take(ifc.vni, ifc.guest_ip)
        self.local[ifc.name] = ifc
        log.info("create local interface", node=self.node, interface=ifc.name, vni=ifc.vni,
                 mac=ifc.guest_mac, ip=ifc.guest_ip)  # fmt: skip

    async def delete_local_ifc(self, ifc: LocalNetIfc) -> None:
        if self.local.pop(ifc.name, None) is not None:
            self.pairs.release(ifc.vni, ifc.guest_ip)
        log.info("delete local interface", node=self.node, interface=ifc.name)

    async def create_remote_ifc(self, ifc: RemoteNetIfc) -> None:
        self.pairs.take(ifc.vni, ifc.guest_ip)
        self.remote[ifc.guest_mac] = ifc
        log.info("create remote interface", node=self.node, vni=ifc.vni, mac=ifc.guest_mac, ip=ifc.guest_ip,
                 host=ifc.host_ip)  # fmt: skip

    async def delete_remote_ifc(self, ifc: RemoteNetIfc) -> None:
        if self.remote.pop(ifc.guest_mac, None) is not None:
            self.pairs.release(ifc.vni, ifc.guest_ip)
        log.info("delete remote interface", node=self.node, mac=ifc.guest_mac)

    async def list_local_ifcs(self) -> list[LocalNetIfc]:
        return list(self.local.values())

    async def list_remote_ifcs(self) -> list[RemoteNetIfc]:
        return list(self.remote.values())

    async def close(self) -> None:
        pass
