"""Kubernetes' static token file (`--token-auth-file`): `token,user,uid,"group1,group2"`, one identity a line.

Read as kube-apiserver reads it (`k8s.io/apiserver/pkg/authentication/token/tokenfile`), and as kos's
apiserver does (`kos.apiserver.auth.authn.tokenfile`, which keeps only the tokens' digests): CSV, nothing
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

__all__ = ["TokenFileError", "TokenRecord", "new_token", "read_token_file", "token_file_text", "tokens_by_user"]


class TokenFileError(Exception):
    """The token file cannot be read or a record is malformed; the message names the file (never a token)."""


@dataclasses.dataclass(frozen=True, slots=True)
class TokenRecord:
    """One line: the token (kept out of `repr`), the user name, the user's UID and groups."""

    token: str = dataclasses.field(repr=False)
    user: str
    uid: str
    groups: tuple[str, ...] = ()


def read_token_file(path: str | os.PathLike[str]) -> list[TokenRecord]:
    """The records of the token file at `path`, in file order, empty tokens skipped and duplicates resolved
    (the later wins). Raises TokenFileError (naming the line) if it cannot be read, is not CSV, or a record
    has fewer than three columns or no user name."""
    where = Path(path)
    try:
        text = where.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise TokenFileError(f"cannot read the token file {where}: {e}") from None
    records: dict[str, TokenRecord] = {}
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    try:
        for row in reader:
            if not row:
                continue
            if len(row) < 3:
                raise TokenFileError(
                    f"{where}:{reader.line_num}: a token line needs at least 3 columns (token, user name, uid), "
                    f"found {len(row)}"
                )
            if not row[0]:
                continue
            if not row[1]:
                raise TokenFileError(f"{where}:{reader.line_num}: empty user name")
            groups = tuple(row[3].split(",")) if len(row) >= 4 else ()
            records.pop(row[0], None)
            records[row[0]] = TokenRecord(row[0], row[1], row[2], groups)
    except csv.Error as e:
        raise TokenFileError(f"{where}:{reader.line_num}: malformed CSV: {e}") from None
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
