"""kos.pki.tokenfile: Kubernetes' token file written and read back, repeated tokens, what cannot be written."""

from __future__ import annotations

from pathlib import Path

import pytest

from kos.pki.tokenfile import TokenRecord, new_token, read_token_file, token_file_text, tokens_by_user


def test_a_written_token_file_reads_back(tmp_path: Path) -> None:
    records = [
        TokenRecord(new_token(), "system:node:node-0", "node-0", ("system:nodes",)),
        TokenRecord(new_token(), "kos:admin", "admin", ("system:masters", "kos:users")),
        TokenRecord(new_token(), "plain", "p"),
    ]
    text = token_file_text(records)
    assert '"system:masters,kos:users"' in text and text.count("\n") == 3
    (tmp_path / "tokens.csv").write_text(text)
    assert read_token_file(tmp_path / "tokens.csv") == records
    assert tokens_by_user(records)["system:node:node-0"] == records[0].token
    assert len({new_token() for _ in range(100)}) == 100 and len(records[0].token) == 43
    assert records[0].token not in repr(records[0])


def test_a_repeated_token_keeps_the_last_line(tmp_path: Path) -> None:
    (tmp_path / "t").write_text("a,u1,1\nb,u2,2\na,u3,3\n")
    assert [(r.token, r.user) for r in read_token_file(tmp_path / "t")] == [("b", "u2"), ("a", "u3")]


@pytest.mark.parametrize("bad", [TokenRecord("", "u", "1"), TokenRecord("t", "", "1"), TokenRecord("t", "u\nv", "1")])
def test_what_cannot_be_read_back_is_not_written(bad: TokenRecord) -> None:
    with pytest.raises(ValueError, match="needs a token and a user name"):
        token_file_text([bad])
