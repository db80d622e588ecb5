"""Delegated authorization: ask a Kubernetes API with a SubjectAccessReview, and remember its answers.

What an extension apiserver behind kube-apiserver does (k8s.io/apiserver `pkg/authorization/authorizerfactory`
delegating authorizer over `plugin/pkg/authorizer/webhook`): POST an `authorization.k8s.io/v1`
SubjectAccessReview naming the user (name, uid, groups, extra) and either `resourceAttributes` (namespace,
verb, group, version, resource, subresource, name) or `nonResourceAttributes` (path, verb) to
`<server>/apis/authorization.k8s.io/v1/subjectaccessreviews`; `status.allowed` is ALLOW, `status.denied` is
DENY, anything else NO_OPINION. Answers are cached by the review they answer, allowed ones for
`allowed_ttl`, the others for `denied_ttl` (both 10 s by default, Kubernetes'
`--authorization-webhook-cache-{authorized,unauthorized}-ttl`), at most `max_entries` of each (least recently
used first out). A webhook that cannot be reached, times out (10 s) or answers with an error has no opinion,
with the failure as the reason (a denial unless another authorizer allows), and that is not cached.
"""

from __future__ import annotations

import collections
from typing import Any

import aiohttp
import msgspec

from kos.apiserver.auth.attributes import Attributes
from kos.apiserver.auth.authn.webhook import WebhookEndpoint
from kos.apiserver.auth.gate import Decision
from kos.util.clock import REAL_CLOCK, Clock
from kos.util.log import get_logger

log = get_logger(__name__)

SAR_PATH = "/apis/authorization.k8s.io/v1/subjectaccessreviews"
TIMEOUT = 10.0
"""Seconds one review may take (k8s.io/apiserver's delegating authorizer: 10 s)."""
MAX_ENTRIES = 10_000


class _SARStatus(msgspec.Struct):
    allowed: bool = False
    denied: bool = False
    reason: str = ""
    evaluationError: str = ""  # noqa: N815 (the wire name)


class _SAR(msgspec.Struct):
    status: _SARStatus = msgspec.field(default_factory=_SARStatus)


_DECODE = msgspec.json.Decoder(_SAR)


def review(attrs: Attributes) -> bytes:
    """The SubjectAccessReview (JSON) asking about `attrs`; also the cache key of its answer."""
    user = attrs.user
    spec: dict[str, Any] = {"user": user.name, "groups": list(user.groups)}
    if user.uid:
        spec["uid"] = user.uid
    if user.extra:
        spec["extra"] = {k: list(v) for k, v in sorted(user.extra.items())}
    if attrs.resource_request:
        spec["resourceAttributes"] = {
            "namespace": attrs.namespace, "verb": attrs.verb, "group": attrs.api_group,
            "version": attrs.api_version, "resource": attrs.resource, "subresource": attrs.subresource,
            "name": attrs.name,
        }  # fmt: skip
    else:
        spec["nonResourceAttributes"] = {"path": attrs.path, "verb": attrs.verb}
    body = {"apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview", "spec": spec}
    return msgspec.json.encode(body)


class _ExpiringCache:
    """At most `size` answers, each for `ttl` seconds of `clock`'s monotonic time; least recently used out first."""

    def __init__(self, ttl: float, size: int, clock: Clock) -> None:
        self.ttl, self.size, self.clock = ttl, size, clock
        self.entries: collections.OrderedDict[bytes, tuple[float, Decision, str]] = collections.OrderedDict()

    def get(self, key: bytes) -> tuple[Decision, str] | None:
        hit = self.entries.get(key)
        if hit is None:
            return None
        if hit[0] <= self.clock.monotonic():
            del self.entries[key]
            return None
        self.entries.move_to_end(key)
        return hit[1], hit[2]

    def put(self, key: bytes, decision: Decision, reason: str) -> None:
        if self.ttl <= 0:
            return
        self.entries[key] = (self.clock.monotonic() + self.ttl, decision, reason)
        self.entries.move_to_end(key)
        while len(self.entries) > self.size:
            self.entries.popitem(last=False)


class SubjectAccessReviewer:
    """The delegated authorizer (see the module docstring): `authorize(attrs)` → (decision, reason).

    `endpoint` is where and how to reach the Kubernetes API (`authn.webhook.WebhookEndpoint`: server, TLS
    context, headers). `reviews` counts the reviews actually sent (cache misses). `aclose()` releases the
    HTTP session.
    """

    def __init__(
        self,
        endpoint: WebhookEndpoint,
        *,
        clock: Clock = REAL_CLOCK,
        allowed_ttl: float = 10.0,
        denied_ttl: float = 10.0,
        timeout: float = TIMEOUT,
        max_entries: int = MAX_ENTRIES,
    ) -> None:
        self.endpoint = endpoint
        self.url = endpoint.server.rstrip("/") + SAR_PATH
        self.timeout = timeout
        self.allowed = _ExpiringCache(allowed_ttl, max_entries, clock)
        self.denied = _ExpiringCache(denied_ttl, max_entries, clock)
        self.reviews = 0
        self._session: aiohttp.ClientSession | None = None

    async def authorize(self, attrs: Attributes) -> tuple[Decision, str]:
        key = review(attrs)
        hit = self.allowed.get(key) or self.denied.get(key)
        if hit is not None:
            return hit
        try:
            status = await self._ask(key)
        except (aiohttp.ClientError, TimeoutError, OSError, msgspec.DecodeError, msgspec.ValidationError) as e:
            log.info("the SubjectAccessReview webhook failed", url=self.url, error=repr(e))
            return Decision.NO_OPINION, f"the authorization webhook failed: {type(e).__name__}: {e}"
        reason = status.reason or status.evaluationError
        if status.allowed:
            self.allowed.put(key, Decision.ALLOW, reason)
            return Decision.ALLOW, reason
        decision = Decision.DENY if status.denied else Decision.NO_OPINION
        self.denied.put(key, decision, reason)
        return decision, reason

    async def _ask(self, body: bytes) -> _SARStatus:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(ssl=self.endpoint.ssl if self.endpoint.ssl is not None else True),
                timeout=aiohttp.ClientTimeout(total=self.timeout),
            )
        headers = {**self.endpoint.headers, "Content-Type": "application/json", "Accept": "application/json"}
        self.reviews += 1
        async with self._session.post(self.url, data=body, headers=headers) as resp:
            data = await resp.read()
            if resp.status not in (200, 201):
                raise aiohttp.ClientResponseError(resp.request_info, (), status=resp.status,
                                                  message=data[:200].decode(errors="replace"))  # fmt: skip
        return _DECODE.decode(data).status

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
