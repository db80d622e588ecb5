"""Failover over several apiservers: one `Transport` that sends each call to the current server and moves on.

Several apiservers in front of one store serve the same objects (issue 13); a client given all their URLs
(`--server URL1,URL2`, or a kubeconfig's `kos.example.com/servers` extension: kos.pki.kubeconfig) keeps
working when one goes away. `FailoverTransport` holds one inner transport per server (an `HTTPPool`, or a
`WatchMux` around one) and a *current* server that every call and watch goes to. A server is left when:

- no connection can be made (refused, unreachable, TLS failure), a connection breaks, or a call times
  out: `ConnectionFailed` / `TimeoutError` — a dead, partitioned or silent replica (kos.http.clientkeepalive
  bounds how long silence lasts);
- it answers 503 (a replica shutting down, or one that cannot reach the store): the answer is returned as
  it is — `kos.client.rest.Client` honours its `Retry-After` — and the next call goes elsewhere.

The call itself is sent again to the next server only when that cannot apply it twice, as client-go's
`IsRetryableError`/`request.go` rules: a GET or HEAD (safe), or any call whose failure was
`ConnectionFailed.retryable` (the connection was refused: no request was written). A write that may have
reached a server (a connection reset after sending, a timeout) is not repeated: its `ConnectionFailed`
or `TimeoutError` is raised (the Client makes it a `ServiceUnavailable`) and the caller decides, knowing
the write may or may not have happened.

A *hung* server — a stopped process, a wedged event loop — is the case neither of those catches: its kernel
still accepts connections and answers TCP keepalive, so a call already written to it waits out its whole
timeout (10–60 s). So a call not answered within `probe_after` seconds (1.5) makes the transport ask that
server's `/livez` (anonymous, answered by the server's event loop itself); one probe per server at a time,
shared by every waiting call, its failure remembered for `probe_timeout`. A server that answers anything
within `probe_timeout` (2 s) is alive and its slow call goes on waiting; one that does not is hung: every call
waiting on it ends with `ConnectionFailed` (not retryable: it was sent), GETs are sent again to the next
server, writes reach the caller as "may have been applied", and the current server moves on — within
`probe_after` + `probe_timeout` = 3.5 s of the call. This is the role of client-go's HTTP/2 health check
(`ReadIdleTimeout` then a PING bounded by `PingTimeout`), over HTTP/1.1 and tightened to issue 13's 5 s.
A plain-HTTP watch is probed the same way whenever it has been quiet for `probe_after` (a quiet watch on a
live server stays open; every watch and call of the transport shares one probe per server, and a server that
answered within half of `probe_after` is not asked again), and ends with `ConnectionFailed` when its server
is hung, so the reflector resumes elsewhere; multiplexed watches are left to the multiplexer's WebSocket ping.
With one server there is nowhere to go, and no probe.

Before each retry the transport waits a full-jitter exponential backoff on the injected clock — uniform
in [0, min(`cap`, `base` × 2^(failures−1))] with `failures` the consecutive failures seen (reset by any
answer) — so the clients of a lost replica spread over the survivors instead of arriving at once (the
"thundering herd"; AWS's "Exponential Backoff And Jitter", client-go's `wait.Jitter`). Concurrent calls
that fail on the same server move the current server on once, not once each.

Watches are not resumed here: a watch whose server breaks or refuses it before its first event moves to
the next server (retried there when nothing reached the first); one that breaks later ends with
`ConnectionFailed` after moving the current server on, and the reflector above
(kos.client.reflector) watches again from its last resourceVersion — on the next server, which serves
it from its own watch cache with no relist while that revision is in history.
"""

from __future__ import annotations

import asyncio
import math
import random
from collections.abc import AsyncGenerator, Coroutine, Mapping, Sequence
from typing import Any, TypeVar

from kos.client.transport import Transport
from kos.client.watchmux import WatchMux
from kos.http.clientresponse import ConnectionFailed, Response, StreamRefused
from kos.util.clock import REAL_CLOCK, Clock
from kos.util.log import get_logger

__all__ = ["BACKOFF_BASE", "BACKOFF_CAP", "PROBE_AFTER", "PROBE_TIMEOUT", "SAFE_METHODS", "FailoverTransport"]

log = get_logger(__name__)

T = TypeVar("T")

BACKOFF_BASE = 0.2
"""Seconds: the bound of the first backoff after a failure (doubled per consecutive failure)."""
BACKOFF_CAP = 5.0
"""Seconds: the largest bound of a backoff."""
PROBE_AFTER = 1.5
"""Seconds a call waits for its answer before its server's liveness is probed (and again after each probe)."""
PROBE_TIMEOUT = 2.0
"""Seconds (real time: it bounds I/O) a liveness probe may take, connection included, before the server is hung."""
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
"""Methods sent again to the next server whatever happened to them (RFC 9110 §9.2.1 safe methods)."""


class FailoverTransport:
    """A `Transport` over `transports` (one per server, named by `servers` for logs and errors), in order.

    `clock` times the backoff and `probe_after`; `rng` draws its jitter (`random.Random(seed)` makes a run
    repeatable); `base`/`cap` bound it (seconds); `probe_after`/`probe_timeout` (seconds) govern the liveness
    probe of a server slow to answer (module docstring; `probe_after=None` turns it off). Raises ValueError
    without at least one transport, or when `servers` does not name each one.
    """

    def __init__(
        self,
        transports: Sequence[Transport],
        servers: Sequence[str],
        *,
        clock: Clock = REAL_CLOCK,
        rng: random.Random | None = None,
        base: float = BACKOFF_BASE,
        cap: float = BACKOFF_CAP,
        probe_after: float | None = PROBE_AFTER,
        probe_timeout: float = PROBE_TIMEOUT,
    ) -> None:
        if not transports or len(transports) != len(servers):
            raise ValueError("a FailoverTransport needs one transport per server, and at least one")
        self.transports = list(transports)
        self.servers = list(servers)
        self.clock = clock
        self.rng = rng or random.Random()
        self.base = base
        self.cap = cap
        self.current = 0
        """The index of the server calls go to now."""
        self.failures = 0
        """Consecutive failures (reset by any answer): the exponent of the next backoff."""
        self.failovers = 0
        """Times the current server was moved on (for tests and logs)."""
        self.probe_after = probe_after if len(self.transports) > 1 else None
        self.probe_timeout = probe_timeout
        self.hung = 0
        """Liveness probes that found their server hung (for tests and logs)."""
        self._probes: dict[int, asyncio.Future[bool]] = {}
        self._hung_at: dict[int, float] = {}
        self._alive_at: dict[int, float] = {}

    @property
    def server(self) -> str:
        """The URL of the current server."""
        return self.servers[self.current]

    def backoff(self) -> float:
        """The next wait in seconds: uniform in [0, min(cap, base × 2^(failures−1))] (full jitter)."""
        bound = min(self.cap, self.base * 2.0 ** max(self.failures - 1, 0))
        return self.rng.uniform(0.0, bound)

    def _failed(self, index: int, why: object) -> None:
        """Server `index` failed: count it, and move the current server on unless another call already did."""
        self.failures += 1
        if self.current == index:
            self.current = (index + 1) % len(self.transports)
            self.failovers += 1
            log.info("apiserver failed; moving to the next", failed=self.servers[index], next=self.server,
                     reason=str(why))  # fmt: skip

    async def request(
        self,
        method: str,
        path: str,
        *,
        query: Mapping[str, str] | None = None,
        body: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: float = 60.0,
    ) -> Response:
        """One call on the current server, retried on the next ones when safe (see the module docstring).

        Raises what the last server tried raised (ConnectionFailed, TimeoutError) when every server
        failed or the call may have been applied.
        """
        last = len(self.transports) - 1
        for attempt in range(len(self.transports)):
            i = self.current
            try:
                r = await self._answer(i, self.transports[i].request(
                    method, path, query=query, body=body, headers=headers, timeout=timeout
                ))  # fmt: skip
            except ConnectionFailed as e:
                self._failed(i, e)
                if attempt == last or not (e.retryable or method in SAFE_METHODS):
                    raise
            except TimeoutError as e:
                self._failed(i, e)
                if attempt == last or method not in SAFE_METHODS:
                    raise
            else:
                if r.status == 503:
                    self._failed(i, "503 Service Unavailable")
                else:
                    self.failures = 0
                return r
            await self.clock.sleep(self.backoff())
        raise AssertionError("unreachable")

    async def _answer(self, i: int, request: Coroutine[Any, Any, Response]) -> Response:
        """`request`'s response from server `i`, probing the server's liveness while it is slow to come.

        Raises what the request raises, or ConnectionFailed (not retryable) when the server is found hung."""
        if self.probe_after is None:
            return await request
        return await self._unless_hung(i, request, "the call may have been applied")

    async def _unless_hung(self, i: int, awaitable: Coroutine[Any, Any, T], consequence: str) -> T:
        """What `awaitable` gives, while server `i` answers liveness probes (one after each `probe_after` of
        waiting); ConnectionFailed (not retryable) naming `consequence` once the server is found hung."""
        after = self.probe_after or PROBE_AFTER
        call = asyncio.ensure_future(awaitable)
        try:
            while True:
                pause = asyncio.ensure_future(self.clock.sleep(after))
                try:
                    await asyncio.wait((call, pause), return_when=asyncio.FIRST_COMPLETED)
                finally:
                    pause.cancel()
                if call.done():
                    return call.result()
                alive = await self._alive(i)
                if call.done():  # answered (or failed by itself) while the probe ran
                    return call.result()
                if not alive:
                    raise ConnectionFailed(
                        f"{self.servers[i]} did not answer a liveness probe (GET /livez) within "
                        f"{self.probe_timeout:g}s: hung; {consequence}"
                    )
        finally:
            if not call.done():
                call.cancel()
            await asyncio.gather(call, return_exceptions=True)  # its outcome retrieved, whatever it was

    async def _alive(self, i: int) -> bool:
        """Whether server `i` answers `/livez`: one probe at a time per server, shared; a failure is
        remembered for `probe_timeout` seconds, so the calls stuck behind it end at once."""
        now = self.clock.monotonic()
        hung_at = self._hung_at.get(i)
        if hung_at is not None and now - hung_at < self.probe_timeout:
            return False
        if now - self._alive_at.get(i, -math.inf) < (self.probe_after or 0.0) / 2:
            return True  # answered a moment ago: idle watches do not each probe
        probe = self._probes.get(i)
        if probe is None:
            probe = self._probes[i] = asyncio.ensure_future(self._probe(i))
            probe.add_done_callback(lambda _: self._probes.pop(i, None))
        return await asyncio.shield(probe)

    async def _probe(self, i: int) -> bool:
        try:
            async with asyncio.timeout(self.probe_timeout):
                await self.transports[i].request("GET", "/livez", timeout=self.probe_timeout)
        except (ConnectionFailed, TimeoutError, OSError) as e:
            self.hung += 1
            self._hung_at[i] = self.clock.monotonic()
            log.warning("apiserver did not answer a liveness probe: hung", server=self.servers[i],
                        within_s=self.probe_timeout, error=str(e) or type(e).__name__)  # fmt: skip
            return False
        self._hung_at.pop(i, None)
        self._alive_at[i] = self.clock.monotonic()
        return True

    async def stream(
        self, path: str, *, query: Mapping[str, str] | None = None, headers: Mapping[str, str] | None = None
    ) -> AsyncGenerator[list[bytes], None]:
        """A watch on the current server; moved to the next one if refused (503) or unreachable before its
        first event (see the module docstring)."""
        last = len(self.transports) - 1
        for attempt in range(len(self.transports)):
            i = self.current
            inner = self.transports[i].stream(path, query=query, headers=headers)
            # a plain HTTP watch hears nothing from a hung server (its kernel answers keepalive); the watch
            # multiplexer pings its own WebSocket
            probing = self.probe_after is not None and not isinstance(self.transports[i], WatchMux)
            started = False
            try:
                while True:
                    try:
                        if probing:
                            lines = await self._unless_hung(i, anext(inner), "the watch ends")
                        else:
                            lines = await anext(inner)
                    except StopAsyncIteration:
                        return
                    if not started:
                        started = True
                        self.failures = 0
                    yield lines
            except ConnectionFailed as e:
                self._failed(i, e)
                if started or attempt == last or not e.retryable:
                    raise
            except StreamRefused as e:
                if e.response.status != 503:
                    raise
                self._failed(i, "503 Service Unavailable")
                if attempt == last:
                    raise
            finally:
                await inner.aclose()
            await self.clock.sleep(self.backoff())

    async def close(self) -> None:
        """Close every server's transport."""
        for t in self.transports:
            await t.close()

    def __repr__(self) -> str:
        return f"FailoverTransport({', '.join(self.servers)}; current {self.server})"
