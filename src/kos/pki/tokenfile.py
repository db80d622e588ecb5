"""Kubernetes' static token file (`--token-auth-file`): `token,user,uid,"group1,group2"`, one identity a line.

Read as kube-apiserver reads it (`k8s.io/apiserver/pkg/authentication/token/tokenfile`): CSV with leading
spaces trimmed, at least three columns (token, user name, user ID), an optional fourth of comma-separated
groups; a record with an empty token is skipped; a later record with the same token replaces the earlier one.
The same file serves both sides: the apiserver authenticates the tokens, and `kos simnodes --node-tokens`
finds each simulated node's token by its user name (`system:node:<name>`).
"""

from __future__ import annotations

import csv
import dataclasses
import io
import os
from pathlib import Path

__all__ = ["TokenFileError", "TokenRecord", "read_token_file", "tokens_by_user"]


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
    (the later wins). Raises TokenFileError if it cannot be read, is not CSV, or a record has fewer than three
    columns."""
    where = Path(path)
    try:
        text = where.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise TokenFileError(f"cannot read the token file {where}: {e}") from None
    records: dict[str, TokenRecord] = {}
    try:
        for n, row in enumerate(csv.reader(io.StringIO(text), skipinitialspace=True, strict=True), 1):
            if not row:
                continue
            if len(row) < 3:
                raise TokenFileError(
                    f"token file {where}, record {n}: at least 3 columns (token, user name, user ID) needed, "
                    f"found {len(row)}"
                )
            if not row[0]:
                continue
            groups = tuple(row[3].split(",")) if len(row) >= 4 else ()
            records.pop(row[0], None)
            records[row[0]] = TokenRecord(row[0], row[1], row[2], groups)
    except csv.Error as e:
        raise TokenFileError(f"token file {where} is not CSV: {e}") from None
    return list(records.values())


def tokens_by_user(records: list[TokenRecord]) -> dict[str, str]:
    """User name → token (the last record of a user wins)."""
    return {r.user: r.token for r in records}
