"""The end of a chaos run: once the faults are healed, the system must settle into a correct state.

"Correct" is what `kos verify` checks (kos.verify.check.violations: addresses, subnets, readiness, and the
nodes' fabrics when their endpoint is given) plus the issue's stronger demand that every attachment present
is ready (`NetworkAttachment.is_ready`: addressed, implemented, no errors) unless it is being deleted.
Recovery takes time after the last fault (controllers resync, agents restart), so the state is polled until
it is correct or `within` seconds of the clock pass; the violations of the last poll are the answer.
"""

from __future__ import annotations

import ssl

from kos.api.types import NetworkAttachment
from kos.client.rest import Client, ClientConfig
from kos.util.clock import REAL_CLOCK, Clock
from kos.verify.check import violations

__all__ = ["final_violations", "unready"]


def unready(nas: list[NetworkAttachment]) -> list[str]:
    """One line per attachment that is not ready and not being deleted."""
    return [f"ready: NA {na.metadata.namespace}/{na.metadata.name} is not ready at the end of the run"
            for na in nas if not na.is_ready() and na.metadata.deletion_timestamp is None]  # fmt: skip


async def final_violations(
    server: str | ClientConfig,
    *,
    nodes_endpoint: str | None = None,
    nodes_ssl: ssl.SSLContext | None = None,
    within: float = 60.0,
    interval: float = 1.0,
    clock: Clock = REAL_CLOCK,
) -> list[str]:
    """`kos verify`'s violations and the unready attachments of the system `server` serves (a URL, or a
    ClientConfig: from a kubeconfig listing several apiservers it fails over), polled every `interval`
    seconds of `clock` until there are none or `within` seconds pass; [] when the system is correct.
    Raises what the client raises (StatusError, ServiceUnavailable) when no apiserver answers at the end."""
    deadline = clock.monotonic() + within
    while True:
        report = await violations(server, nodes_endpoint, require_ready=True, nodes_ssl=nodes_ssl)
        async with Client(server, user_agent="kos-chaos") as client:
            nas, _ = await client.list(NetworkAttachment)
        found = report.violations + unready(nas)
        if not found or clock.monotonic() >= deadline:
            return found
        await clock.sleep(interval)
