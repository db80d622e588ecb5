"""Static bearer tokens from `--token-auth-file`, Kubernetes' CSV (k8s.io/apiserver
`plugin/pkg/authenticator/token/tokenfile`): one line per token, `token,user,uid[,"group1,group2"]`.

Read by `kos.pki.tokenfile` (the one reader, shared with `kos simnodes --node-tokens`): at least three
columns (a line with fewer is an error naming its line number, at start-up); blank lines are skipped, as are
lines whose token is empty (with a warning); a repeated token's last line wins (with a warning). Groups are
the fourth column split on commas. Unlike Kubernetes, an empty user name is an error rather than a user
called "".

The table is keyed by the SHA-256 digest of each token: a lookup hashes the presented token and looks the
digest up, so neither the comparison's timing nor the table leaks token bytes. Tokens are never logged.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from pathlib import Path

from kos.apiserver.auth.user import UserInfo, authenticated
from kos.pki.tokenfile import TokenFileError, TokenRecord, parse_token_file, read_token_file

__all__ = ["TokenFile", "TokenFileError", "digest"]


def digest(token: str) -> bytes:
    """The key a token is looked up by: SHA-256 of its UTF-8 bytes."""
    return hashlib.sha256(token.encode()).digest()


class TokenFile:
    """The users of a token file's tokens (see the module docstring)."""

    __slots__ = ("_users",)

    def __init__(self, users: Mapping[bytes, UserInfo]) -> None:
        self._users = dict(users)
        """`digest(token)` → user."""

    def __len__(self) -> int:
        return len(self._users)

    @classmethod
    def load(cls, path: Path) -> TokenFile:
        """Read `path` (`kos.pki.tokenfile`). Raises `TokenFileError` naming the file and line."""
        return cls.of(read_token_file(path))

    @classmethod
    def parse(cls, text: str, source: str = "token file") -> TokenFile:
        """The tokens of CSV `text`; `source` names it in errors. Raises `TokenFileError`."""
        return cls.of(parse_token_file(text, source))

    @classmethod
    def of(cls, records: list[TokenRecord]) -> TokenFile:
        return cls({digest(r.token): authenticated(r.user, r.uid, r.groups) for r in records})

    def knows(self, token: str) -> bool:
        """Whether the file holds `token` (synchronous: `UnionAuthenticator.refusal_before_body` asks)."""
        return digest(token) in self._users

    async def authenticate_token(self, token: str) -> UserInfo | None:
        """The token's user, or None if the file does not hold it."""
        return self._users.get(digest(token))
