"""A kubeconfig's bearer token, re-read from its `tokenFile` as Kubernetes rotates it.

Kubernetes rotates projected ServiceAccount tokens: the kubelet rewrites the file at 80 % of the token's
lifetime (an hour by default), and the old token stops working when it expires. A client that read the file
once, at start, is refused from then on — an aggregated apiserver's delegated TokenReview and
SubjectAccessReview with it, and so the whole aggregated API. client-go never holds a `tokenFile` token for
good: `k8s.io/client-go/transport` (`NewCachedFileTokenSource`, a `cachingTokenSource` over a file token
source) re-reads the file when the token it holds is older than a minute, and when a read fails it keeps the
last good token and logs the error. `TokenSource` does the same, on the injected clock (kos.util.clock); an
inline `token` stays fixed. A failed or empty read is retried a minute later rather than on every request
(client-go retries at once), so a vanished file costs one read and one warning a minute, not one per call.

`BearerHeaders` is the mapping `{"Authorization": "Bearer <token>"}` over a source: every read of it asks the
source, so whatever builds a request from it sends the current token — kos.http.clientpool re-encodes its
request-head template when `version()` (the token) changes (it is a kos.http.clientheaders
`RotatingHeaders`, a protocol: kos.pki and kos.http do not import each other), the webhook clients
(kos.apiserver.auth) build their headers per review. The hot path pays one monotonic-clock read and a comparison; the file is read at most once a
minute. It lives in kos.pki, below both the client and the apiserver, beside the kubeconfig reader.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from pathlib import Path

from kos.util.clock import REAL_CLOCK, Clock
from kos.util.log import get_logger

__all__ = ["AUTHORIZATION", "MAX_AGE", "BearerHeaders", "TokenSource"]

log = get_logger(__name__)

MAX_AGE = 60.0
"""Seconds a token read from a file is used before the file is read again (client-go's cached file token
source: one minute)."""
AUTHORIZATION = "Authorization"


class TokenSource:
    """The current bearer token: `token` as given, re-read from `path` (when given) once it is `max_age`
    seconds old on `clock`'s monotonic time. A read that fails, or finds the file empty or holding characters
    a header cannot carry, keeps the last good token and logs a warning (never the token)."""

    __slots__ = ("_due", "_monotonic", "_token", "max_age", "path")

    def __init__(
        self, token: str, path: Path | None = None, *, clock: Clock = REAL_CLOCK, max_age: float = MAX_AGE
    ) -> None:
        self.path = path
        self.max_age = max_age
        self._token = token
        self._monotonic = clock.monotonic
        self._due = self._monotonic() + max_age if path is not None else math.inf
        """Monotonic time at or after which `token()` reads the file again (never without a file)."""

    def token(self) -> str:
        """The token to send now (one clock read; the file is read only when the token is `max_age` old)."""
        if self._monotonic() >= self._due:
            self._refresh()
        return self._token

    def _refresh(self) -> None:
        assert self.path is not None
        self._due = self._monotonic() + self.max_age
        try:
            text = self.path.read_bytes().decode("utf-8", "replace").strip()
        except OSError as e:
            log.warning("the token file cannot be read: the last token is kept", file=str(self.path),
                        error=e.strerror or type(e).__name__)  # fmt: skip
            return
        if not text or not text.isprintable():
            why = "empty" if not text else "holds characters a header cannot carry"
            log.warning(f"the token file is {why}: the last token is kept", file=str(self.path))
            return
        self._token = text


class BearerHeaders(Mapping[str, str]):
    """`{"Authorization": "Bearer <token>"}` with the token `source` gives at each read (module docstring)."""

    __slots__ = ("source",)

    def __init__(self, source: TokenSource) -> None:
        self.source = source

    def __getitem__(self, key: str) -> str:
        if key != AUTHORIZATION:
            raise KeyError(key)
        return f"Bearer {self.source.token()}"

    def __iter__(self) -> Iterator[str]:
        return iter((AUTHORIZATION,))

    def __len__(self) -> int:
        return 1

    def version(self) -> str:
        """The current token: the same object until the file is re-read (kos.http.clientheaders.RotatingHeaders)."""
        return self.source.token()

    def __repr__(self) -> str:
        return f"BearerHeaders(path={self.source.path})"  # never the token
