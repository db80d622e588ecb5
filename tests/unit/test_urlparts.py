"""Strict decoding of request paths and query strings (kos.apiserver.urlparts)."""

from __future__ import annotations

import pytest

from kos.api.errors import BadRequest
from kos.apiserver import urlparts


@pytest.mark.parametrize(
    ("raw", "segments"),
    [("namespaces/a/subnets", ["namespaces", "a", "subnets"]),
     ("namespaces//subnets", ["namespaces", "", "subnets"]),
     ("namespaces/a%2Fb/subnets", ["namespaces", "a/b", "subnets"]),  # %2F stays inside its segment
     ("x%00y/%0A/%25", ["x\x00y", "\n", "%"]),
     ("a+b/%E2%98%83", ["a+b", "\u2603"]),  # '+' is itself in a path
     (b"subnets/s", ["subnets", "s"])],
)  # fmt: skip
def test_path_segments(raw: str | bytes, segments: list[str]) -> None:
    assert urlparts.path_segments(raw) == segments


@pytest.mark.parametrize(
    ("raw", "fragment"),
    [("a/%zz", "invalid URL escape '%zz'"), ("a/%f", "'%f'"), ("a%", "'%'"), ("%ff", "UTF-8"), ("%C3", "UTF-8"),
     ("caf\u00e9", "ASCII"), (b"caf\xc3\xa9", "ASCII")],
)  # fmt: skip
def test_path_errors(raw: str | bytes, fragment: str) -> None:
    with pytest.raises(BadRequest) as e:
        urlparts.path_segments(raw)
    assert fragment in e.value.message


def test_query_decoding() -> None:
    q = urlparts.parse_query("a=b+c&a=%20d&&x&y=%E2%98%83&=v&k=1=2")
    assert q.getall("a") == ["b c", " d"] and q.get("a") == "b c"  # repeated: first counts, all kept
    assert q.get("x") == "" and q.get("y") == "\u2603" and q.get("") == "v" and q.get("k") == "1=2"
    assert len(urlparts.parse_query("")) == 0


@pytest.mark.parametrize("raw", ["limit=%zz", "labelSelector=app%3Da%zz", "x=%ff", "q=\u00e9", "%zz=1"])
def test_query_errors(raw: str) -> None:
    with pytest.raises(BadRequest):
        urlparts.parse_query(raw)


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        (".", "may not be '.'"),
        ("..", "may not be '..'"),
        ("a/b", "may not contain '/'"),
        ("a%b", "may not contain '%'"),
    ],
)
def test_segment_names(value: str, fragment: str) -> None:
    with pytest.raises(BadRequest) as e:
        urlparts.segment_name(value, "Name")
    assert e.value.message.startswith("Name parameter invalid") and fragment in e.value.message
    assert urlparts.segment_name("bug06\n", "Namespace") == "bug06\n"  # looked up as it is (and holds nothing)
