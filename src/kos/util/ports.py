"""Free TCP ports on this machine, for processes kos starts itself (`kos up`'s children, etcd members, tests).

A port is free when it could be bound a moment ago; another process may still take it before the child
binds it, which a supervised child survives by being restarted (kos up) and a test by failing loudly.
"""

from __future__ import annotations

import socket


def free_port(host: str = "127.0.0.1") -> int:
    """One port `host` could bind just now."""
    return free_ports(1, host)[0]


def free_ports(n: int, host: str = "127.0.0.1") -> list[int]:
    """`n` distinct ports `host` could bind just now (all held at once while they are chosen)."""
    socks: list[socket.socket] = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind((host, 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()
