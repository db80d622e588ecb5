"""Authorizers asked in turn (k8s.io/apiserver `pkg/authorization/union`): the first ALLOW or DENY wins.

An authorizer with no opinion passes the request on; when none has one, the union has none either, and the
gate denies (Kubernetes' `NoOpinion` from every authorizer is a 403). The reasons of those that passed are
kept, joined by "; ", for the 403's message.
"""

from __future__ import annotations

from collections.abc import Sequence

from kos.apiserver.auth.attributes import Attributes
from kos.apiserver.auth.gate import Authorizer, Decision


class Union:
    """`authorize(attrs)` → (decision, reason) of the first of `authorizers` with an opinion."""

    __slots__ = ("authorizers",)

    def __init__(self, authorizers: Sequence[Authorizer]) -> None:
        self.authorizers = tuple(authorizers)

    async def authorize(self, attrs: Attributes) -> tuple[Decision, str]:
        reasons: list[str] = []
        for a in self.authorizers:
            decision, reason = await a.authorize(attrs)
            if decision is not Decision.NO_OPINION:
                return decision, reason
            if reason:
                reasons.append(reason)
        return Decision.NO_OPINION, "; ".join(reasons)

    async def aclose(self) -> None:
        """Release what the authorizers hold (the webhook's HTTP session)."""
        for a in self.authorizers:
            close = getattr(a, "aclose", None)
            if close is not None:
                await close()
