"""Overload protection: a cap on the requests being served, as kube-apiserver's max-in-flight filter.

k8s.io/apiserver `pkg/server/filters/maxinflight.go`: read-only requests (GET, HEAD) and mutating ones are
counted apart, each against its own cap (`--max-requests-inflight`, default 400;
`--max-mutating-requests-inflight`, default 200; 0: no cap); long-running requests — watches, HTTP or
multiplexed — are not counted at all, since they are in flight for as long as they live. A request past the
cap is not served: it is answered at once with 429 `TooManyRequests` and `Retry-After: 1`, and counted in
`apiserver_dropped_requests_total{request_kind}`. As in Kubernetes, a member of `system:masters` is served
past the cap (on a secure server only: on an `--insecure` one every caller is such a member).

Unlike Kubernetes' filter, the probes (`/healthz`, `/livez`, `/readyz`, `/metrics`) are not counted: a busy
server is not a dead one, and a liveness probe answered 429 would get it restarted. The counts are plain
integers on one event loop: admitting a request is an integer comparison and an increment.
"""

from __future__ import annotations

import sys

from kos.api.errors import too_many_requests
from kos.apiserver.auth.user import SYSTEM_MASTERS, UNSECURED, UserInfo
from kos.apiserver.encoding import error_reply
from kos.apiserver.metrics import APIServerMetrics
from kos.http.messages import Reply

READ_ONLY_METHODS = frozenset({"GET", "HEAD"})
"""Requests counted against the read-only cap; every other method is mutating (Kubernetes: get, list, watch)."""

TOO_MANY = error_reply(too_many_requests("Too many requests, please try again later.", retry_after=1))
"""The answer past the cap: 429, a `Status` (reason TooManyRequests, details.retryAfterSeconds 1) and
`Retry-After: 1`, as kube-apiserver's `tooManyRequests`."""


def _cap(limit: int) -> int:
    return limit if limit > 0 else sys.maxsize


READ_ONLY, MUTATING = 0, 1
"""Indexes of `InFlight.counts` and `InFlight.caps`: `int(method not in READ_ONLY_METHODS)`."""


class InFlight:
    """The counts and caps, each a two-item list indexed by `READ_ONLY` or `MUTATING`, so that admitting a
    request is `counts[k] >= caps[k]` then `counts[k] += 1` (and `-= 1` when its answer is ready).

    `max_reads` and `max_writes` (>= 0; 0: no cap) are kube-apiserver's two flags.
    """

    __slots__ = ("_dropped", "caps", "counts")

    def __init__(self, max_reads: int, max_writes: int, metrics: APIServerMetrics) -> None:
        self.caps = [_cap(max_reads), _cap(max_writes)]
        self.counts = [0, 0]
        self._dropped = [metrics.dropped.labels("readOnly"), metrics.dropped.labels("mutating")]

    def refuse(self, user: UserInfo, kind: int) -> Reply | None:
        """The answer to a request of `kind` past its cap (counted as dropped), or None if `user` is served
        anyway: a member of `system:masters` on a secure server."""
        if user is not UNSECURED and SYSTEM_MASTERS in user.groups:
            return None
        self._dropped[kind].inc()
        return TOO_MANY
