"""Static bearer tokens from `--token-auth-file`, Kubernetes' CSV (k8s.io/apiserver
`plugin/pkg/authenticator/token/tokenfile`): one line per token, `token,user,uid[,"group1,group2"]`.

Read with the csv module: at least three columns (a line with fewer is an error naming its line number, at
start-up); blank lines are skipped, as are lines whose token is empty (with a warning); a repeated token's
last line wins (with a warning). Groups are the fourth column split on commas. Unlike Kubernetes, an empty
user name is an error rather than a user called "".

The table is keyed by the SHA-256 digest of each token: a lookup hashes the presented token and looks the
digest up, so neither the comparison's timing nor the table leaks token bytes. Tokens are never logged.
"""

from __future__ import annotations

import csv
import hashlib
import io
from collections.abc import Mapping
from pathlib import Path

from kos.apiserver.auth.user import UserInfo, authenticated
from kos.util.log import get_logger

log = get_logger(__name__)


class TokenFileError(ValueError):
    """A token file that cannot be used; the message names the file and line (never a token)."""


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
        """Read `path`. Raises `TokenFileError` (naming the line) for a malformed file, OSError if unreadable."""
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError as e:
            raise TokenFileError(f"token file {path}: not UTF-8 text: {e.reason}") from None
        return cls.parse(text, str(path))

    @classmethod
    def parse(cls, text: str, source: str = "token file") -> TokenFile:
        """The tokens of CSV `text`; `source` names it in errors. Raises `TokenFileError`."""
        users: dict[bytes, UserInfo] = {}
        reader = csv.reader(io.StringIO(text, newline=""), strict=True)
        try:
            for record in reader:
                line = reader.line_num
                if not record:
                    continue
                if len(record) < 3:
                    raise TokenFileError(f"{source}:{line}: a token line needs at least 3 columns "
                                         f"(token, user name, uid), found {len(record)}")  # fmt: skip
                token, name, uid = record[0], record[1], record[2]
                if not token:
                    log.warning("empty token in token file, line skipped", file=source, line=line)
                    continue
                if not name:
                    raise TokenFileError(f"{source}:{line}: empty user name")
                groups = record[3].split(",") if len(record) > 3 else []
                key = digest(token)
                if key in users:
                    log.warning("repeated token in token file: the later line wins", file=source, line=line)
                users[key] = authenticated(name, uid, groups)
        except csv.Error as e:
            raise TokenFileError(f"{source}:{reader.line_num}: malformed CSV: {e}") from None
        return cls(users)

    async def authenticate_token(self, token: str) -> UserInfo | None:
        """The token's user, or None if the file does not hold it."""
        return self._users.get(digest(token))
