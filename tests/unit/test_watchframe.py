"""The one watch-line framing: what `frame` writes, `LineSplitter` and `split` read back, however it is cut."""

from __future__ import annotations

import random

import msgspec
import pytest

from kos.api import watchframe
from kos.http.lines import LineSplitter


def test_frame_and_decode_round_trip() -> None:
    line = watchframe.frame("ADDED", b'{"metadata":{"name":"a"}}')
    assert line == b'{"type":"ADDED","object":{"metadata":{"name":"a"}}}\n'
    ev = watchframe.decode(line[:-1])
    assert ev.type == "ADDED" and bytes(ev.object) == b'{"metadata":{"name":"a"}}'
    with pytest.raises(msgspec.DecodeError):
        watchframe.decode(b'{"type":"ADDED","object":')


def test_any_cut_of_a_stream_gives_the_same_lines() -> None:
    lines = [watchframe.frame("MODIFIED", b'{"n":%d}' % i)[:-1] for i in range(50)]
    body = b"".join(ln + b"\n" + (b"\n" if i % 7 == 0 else b"") for i, ln in enumerate(lines))  # blank keep-alives
    rng = random.Random(11)
    for _ in range(200):
        cuts = sorted(rng.sample(range(1, len(body)), rng.randint(0, 40)))
        splitter = LineSplitter()
        got = [ln for a, b in zip([0, *cuts], [*cuts, len(body)], strict=True) for ln in splitter.feed(body[a:b])]
        assert got == lines
        assert splitter.tail == b""
    assert watchframe.split(body) == lines


def test_an_incomplete_last_line_waits_for_the_next_chunk() -> None:
    s = LineSplitter()
    assert s.feed(b'{"type":"A') == []
    assert s.feed(b'DDED"}\n{"ty') == [b'{"type":"ADDED"}']
    assert s.tail == b'{"ty'
