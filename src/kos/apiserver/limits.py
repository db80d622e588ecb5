"""Bounds on what one client can make the apiserver hold beyond one connection: watches and multiplexers.

Every watch costs memory and a timer until it ends; a client that opens watches
without end must meet a bound and get a prompt 429. The bounds of a single HTTP
connection (header sizes and times, pipelining, bodies) are the HTTP layer's:
`kos.http.limits.HTTPLimits`.
"""

from __future__ import annotations

from kos.api import errors


class ClientQuota:
    """How many of one thing (watches, multiplexed connections) each client may hold at once.

    A client is its address (there is no authenticated identity yet). A refused acquisition is 429
    with Retry-After.
    """

    def __init__(self, per_client: int, what: str, advice: str) -> None:
        self.per_client = per_client
        self.what = what
        self.advice = advice
        self._open: dict[str, int] = {}

    def acquire(self, client: str) -> None:
        n = self._open.get(client, 0)
        if n >= self.per_client:
            raise errors.too_many_requests(
                f"too many {self.what} open from {client}: the limit is {self.per_client} per client; {self.advice}",
                retry_after=5,
            )
        self._open[client] = n + 1

    def release(self, client: str) -> None:
        n = self._open.get(client, 0) - 1
        if n > 0:
            self._open[client] = n
        else:
            self._open.pop(client, None)

    def count(self, client: str) -> int:
        return self._open.get(client, 0)


def watch_quota(per_client: int) -> ClientQuota:
    """Open watches per client, HTTP and multiplexed: one client on a connection of its own per watch is
    bounded by file descriptors; on the watch multiplexer nothing else bounds it, so both count here."""
    return ClientQuota(per_client, "watches", "end some watches or multiplex fewer selectors")


def watchmux_quota(per_client: int) -> ClientQuota:
    """Multiplexed connections per client: each may hold its own selectors and queued output (bounded per
    connection), so the number of them bounds what one client can make the server hold."""
    return ClientQuota(per_client, "watch multiplexer connections", "multiplex more watches on fewer connections")
