"""kos.pki.bearer: a kubeconfig's `tokenFile` token is re-read once it is a minute old on the injected clock
(client-go's cached file token source; Kubernetes rotates ServiceAccount tokens), not before; a read that
fails or finds the file empty keeps the last good token and logs a warning; an inline token is fixed; the
HTTP pool's request head carries the token of the moment."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest
import yaml

from kos.http.clientpool import HTTPPool
from kos.pki.bearer import MAX_AGE, BearerHeaders, TokenSource
from kos.pki.kubeconfig import load_kubeconfig
from kos.testing.clock import FakeClock
from kos.util.log import fields_of


def kubeconfig_with(path: Path, user: dict[str, Any]) -> Path:
    doc = {"apiVersion": "v1", "kind": "Config", "current-context": "c",
           "clusters": [{"name": "k", "cluster": {"server": "http://127.0.0.1:1"}}],
           "users": [{"name": "u", "user": user}],
           "contexts": [{"name": "c", "context": {"cluster": "k", "user": "u"}}]}  # fmt: skip
    path.write_text(yaml.safe_dump(doc))
    return path


async def test_a_rewritten_token_file_is_used_after_a_minute_and_not_before(tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("first\n")
    clock = FakeClock()
    headers = load_kubeconfig(kubeconfig_with(tmp_path / "kc", {"tokenFile": "token"})).headers(clock)
    assert headers == {"Authorization": "Bearer first"}
    token.write_text("second\n")
    await clock.advance(MAX_AGE - 1)
    assert headers["Authorization"] == "Bearer first"  # not re-read before the minute is up
    await clock.advance(1)
    assert headers["Authorization"] == "Bearer second"
    token.write_text("third")
    await clock.advance(MAX_AGE / 2)
    assert headers["Authorization"] == "Bearer second"  # the minute counts from the last read
    await clock.advance(MAX_AGE / 2)
    assert headers["Authorization"] == "Bearer third"


@pytest.mark.parametrize("break_it", ["remove", "empty"])
async def test_a_vanished_or_empty_file_keeps_the_last_token_and_warns(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, break_it: str
) -> None:
    token = tmp_path / "token"
    token.write_text("good")
    clock = FakeClock()
    source = TokenSource("good", token, clock=clock)
    if break_it == "remove":
        token.unlink()
    else:
        token.write_text("  \n")
    caplog.set_level(logging.WARNING)
    await clock.advance(MAX_AGE)
    assert source.token() == "good"
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING and "token file" in r.getMessage()]
    assert len(warnings) == 1 and fields_of(warnings[0])["file"] == str(token)
    assert all("good" not in f"{r.getMessage()} {fields_of(r)}" for r in caplog.records)  # never the token
    assert source.token() == "good" and len(caplog.records) == len(warnings)  # no new read within the minute
    token.write_text("better")
    await clock.advance(MAX_AGE)
    assert source.token() == "better"  # the file back: the next read takes it


async def test_an_inline_token_stays_fixed_even_beside_a_token_file(tmp_path: Path) -> None:
    (tmp_path / "token").write_text("from-file")
    kc = load_kubeconfig(kubeconfig_with(tmp_path / "kc", {"token": "inline", "tokenFile": "token"}))
    assert kc.token_file is None
    headers = kc.headers(FakeClock())
    assert not isinstance(headers, BearerHeaders) and headers == {"Authorization": "Bearer inline"}


async def test_the_pool_request_head_carries_the_current_token(tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("first")
    clock = FakeClock()
    pool = HTTPPool("http://127.0.0.1:1", headers=BearerHeaders(TokenSource("first", token, clock=clock)))
    assert b"Authorization: Bearer first\r\n" in pool._encode("GET", "/x", None, None, None)
    token.write_text("second")
    assert b"Bearer first" in pool._encode("GET", "/x", None, None, None)
    await clock.advance(MAX_AGE)
    head = pool._encode("GET", "/x", None, None, None)
    assert b"Authorization: Bearer second\r\n" in head and b"first" not in head
    # a call's own identity still replaces the default one (Client.with_headers)
    other = pool._encode("GET", "/x", None, None, {"Authorization": "Bearer other"})
    assert b"Bearer other" in other and b"Bearer second" not in other
