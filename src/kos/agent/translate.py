"""The only place API objects become fabric calls: a NetworkAttachment's interface, local or remote."""

from __future__ import annotations

from kos.api import names
from kos.api.types import NetworkAttachment
from kos.fabric.interface import LocalNetIfc, RemoteNetIfc


def local_ifc(na: NetworkAttachment) -> LocalNetIfc:
    vni, ip = na.status.address_vni, na.status.ipv4
    return LocalNetIfc(names.interface_name(vni, ip), vni, names.mac_address(vni, ip), ip)


def remote_ifc(na: NetworkAttachment) -> RemoteNetIfc:
    vni, ip = na.status.address_vni, na.status.ipv4
    return RemoteNetIfc(vni, names.mac_address(vni, ip), ip, na.status.host_ip)


def local_owner_key(vni: int, ip: str) -> str:
    """The local informer's index value: `<VNI hex>/<IP>` (reference §5.2)."""
    return f"{vni:x}/{ip}"


def remote_owner_key(host_ip: str, ip: str) -> str:
    """A per-VNI informer's index value: `<host IP>/<IP>`."""
    return f"{host_ip}/{ip}"
