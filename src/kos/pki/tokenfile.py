"""Kubernetes' static token file (`--token-auth-file`): `token,user,uid,"group1,group2"`, one identity a line.

Read as kube-apiserver reads it (`k8s.io/apiserver/pkg/authentication/token/tokenfile`), here for both sides
(the apiserver's `kos.apiserver.auth.authn.tokenfile` keeps only the tokens' digests): CSV, nothing
trimmed, at least three columns (token, user name, user ID), an optional fourth of comma-separated groups;
blank lines and records with an empty token are skipped; a later record with the same token replaces the
earlier one; an empty user name is an error.
The same file serves both sides: the apiserver authenticates the tokens, and `kos simnodes --node-tokens`
finds each simulated node's token by its user name (`system:node:<name>`).
"""

from __future__ import annotations

import csv
import dataclasses
import io
import os
import secrets
from collections.abc import Iterable
from pathlib import Path

from kos.util.log import get_logger

log = get_logger(__name__)

__all__ = [
    "TokenFileError",
    "TokenRecord",
    "new_token",
    "parse_token_file",
    "read_token_file",
    "token_file_text",
    "tokens_by_user",
]


class TokenFileError(ValueError):
    """The token file cannot be read or a record is malformed; the message names the file (never a token)."""


@dataclasses.dataclass(frozen=True, slots=True)
class TokenRecord:
    """One line: the token (kept out of `repr`), the user name, the user's UID and groups."""

    token: str = dataclasses.field(repr=False)
    user: str
    uid: str
    groups: tuple[str, ...] = ()


def read_token_file(path: str | os.PathLike[str]) -> list[TokenRecord]:
    """The records of the token file at `path` (see `parse_token_file`). Raises TokenFileError if it cannot be
    read (naming the file) or as `parse_token_file`."""
    where = Path(path)
    try:
        text = where.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise TokenFileError(f"cannot read the token file {where}: {e}") from None
    return parse_token_file(text, str(where))


def parse_token_file(text: str, source: str = "token file") -> list[TokenRecord]:
    """The records of token-file `text`, in file order, empty tokens skipped (with a warning) and duplicates
    resolved (the later wins); `source` names it in errors. Raises TokenFileError (naming `source` and the line,
    never a token) if it is not CSV, or a record has fewer than three columns or no user name."""
    records: dict[str, TokenRecord] = {}
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    try:
        for row in reader:
            if not row:
                continue
            line = reader.line_num
            if len(row) < 3:
                raise TokenFileError(f"{source}:{line}: a token line needs at least 3 columns "
                                     f"(token, user name, uid), found {len(row)}")  # fmt: skip
            if not row[0]:
                log.warning("empty token in token file, line skipped", file=source, line=line)
                continue
            if not row[1]:
                raise TokenFileError(f"{source}:{line}: empty user name")
            groups = tuple(g for g in row[3].split(",") if g) if len(row) >= 4 else ()
            if records.pop(row[0], None) is not None:
                log.warning("repeated token in token file: the later line wins", file=source, line=line)
            records[row[0]] = TokenRecord(row[0], row[1], row[2], groups)
    except csv.Error as e:
        raise TokenFileError(f"{source}:{reader.line_num}: malformed CSV: {e}") from None
    return list(records.values())


def tokens_by_user(records: list[TokenRecord]) -> dict[str, str]:
    """User name → token (the last record of a user wins)."""
    return {r.user: r.token for r in records}


def new_token() -> str:
    """A fresh bearer token: 32 random bytes (256 bits, `secrets`), URL-safe base64 — 43 characters no CSV
    field, header or shell needs to quote."""
    return secrets.token_urlsafe(32)


def token_file_text(records: Iterable[TokenRecord]) -> str:
    """The token file holding `records` (`read_token_file` reads it back as they are): one CSV line each,
    `token,user,uid` and, with groups, a fourth field of them comma-joined (quoted). Write it with mode 0600
    (`kos.pki.directory.write_private`): it holds secrets. Raises ValueError for an empty token or user name,
    or a field with a line break."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    for r in records:
        fields = [r.token, r.user, r.uid, *([",".join(r.groups)] if r.groups else [])]
        if not r.token or not r.user or any("\n" in f or "\r" in f for f in fields):
            raise ValueError(f"a token line for user {r.user!r} needs a token and a user name, and no line breaks")
        writer.writerow(fields)
    return out.getvalue()
