"""TCP keepalive on every client connection: a silent apiserver (no RST, packets dropped) noticed in ≤ 5 s.

A peer that vanishes without closing — a host that lost power, a network partition, a firewall that
drops rather than rejects — leaves a TCP connection that looks open forever: a watch waits for events
that never come, a pooled connection is reused into the void. Linux's keepalive, tuned far below its
two-hour default, probes an idle connection after `IDLE` s, every `INTERVAL` s, and gives up after
`COUNT` unanswered probes (IDLE + COUNT × INTERVAL = 4 s); `TCP_USER_TIMEOUT` bounds the time data
sent may stay unacknowledged (a request written into a dead path) to `USER_TIMEOUT_MS`. The broken
connection then fails its call or watch with `ConnectionFailed`, and `kos.client.failover` moves on.
This is what client-go gets from Go's dialer (`KeepAlive: 30s`) and the kube-apiserver's HTTP/2
health checks (`ReadIdleTimeout`), tightened to the 5 s bound of issue 13.

The probes are the kernel's: no packet goes out while data flows, and a connection costs five
`setsockopt` calls once, when it is made (pooled connections live for many calls).
"""

from __future__ import annotations

import socket
from typing import Any, Protocol

__all__ = ["COUNT", "IDLE", "INTERVAL", "USER_TIMEOUT_MS", "keep_alive"]

IDLE = 2
"""Seconds a connection is idle before the first probe (TCP_KEEPIDLE)."""
INTERVAL = 1
"""Seconds between probes (TCP_KEEPINTVL)."""
COUNT = 2
"""Unanswered probes after which the connection is dropped (TCP_KEEPCNT)."""
USER_TIMEOUT_MS = 5000
"""Milliseconds written data may stay unacknowledged before the connection is dropped (TCP_USER_TIMEOUT)."""

_OPTIONS = [
    (socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1),
    *(
        (socket.IPPROTO_TCP, opt, value)
        for name, value in (
            ("TCP_KEEPIDLE", IDLE),
            ("TCP_KEEPINTVL", INTERVAL),
            ("TCP_KEEPCNT", COUNT),
            ("TCP_USER_TIMEOUT", USER_TIMEOUT_MS),
        )
        if (opt := getattr(socket, name, None)) is not None  # Linux names them all; elsewhere what exists
    ),
]


class _HasSocket(Protocol):
    def get_extra_info(self, name: str, default: Any = None) -> Any: ...


def keep_alive(transport: _HasSocket) -> None:
    """Turn on the keepalive above on the TCP socket of `transport` (an asyncio or uvloop transport, plain or
    TLS, or aiohttp's WebSocket: anything with `get_extra_info("socket")`).

    A transport without a TCP socket (a Unix socket, a test's fake) is left alone; an option the
    platform refuses is skipped (OSError), so this never fails a connection.
    """
    sock = transport.get_extra_info("socket")
    if sock is None or sock.family not in (socket.AF_INET, socket.AF_INET6):
        return
    for level, opt, value in _OPTIONS:
        try:
            sock.setsockopt(level, opt, value)
        except OSError:
            pass
