"""Request paths and query strings, decoded strictly: what a client sent is what a handler sees, or a 4xx.

The HTTP layer hands the *raw* request target to the routes, and every path and
query is decoded here, once, as kube-apiserver (Go's net/url) decodes it in the
cases that matter:

- a path is split into segments on `/` **before** percent-decoding, so `%2F`
  cannot make a new segment and `%00`, `%0A` stay inside the one they are in
  (Go decodes first and routes the result; kos refuses a decoded `/` in a
  namespace or name instead, see `resourcepath.parse_path`);
- an invalid percent-escape (`%zz`, a lone `%`) is 400 BadRequest, as Go's
  `url.ParseRequestURI` refuses it in a path. In a query Go silently drops the
  pair (`url.ParseQuery`); kos refuses it, because a dropped `labelSelector`
  would turn a DELETE of a selection into a DELETE of everything;
- decoded bytes must be UTF-8 and the raw target ASCII (RFC 3986), else 400;
- in a query `+` is a space, as is `%20`; in a path `+` is itself;
- a parameter given twice keeps every value in order; single-valued parameters
  read the first, as Go's `Convert_Slice_string_To_*` conversions do.
"""

from __future__ import annotations

import json
import urllib.parse

from multidict import MultiDict, MultiDictProxy

from kos.api.errors import BadRequest

_HEX = frozenset("0123456789abcdefABCDEF")
_EMPTY: MultiDictProxy[str] = MultiDictProxy(MultiDict())


def _ascii(raw: str | bytes, what: str) -> str:
    text = raw.decode("latin-1") if isinstance(raw, bytes) else raw
    if not text.isascii():
        raise BadRequest(f"the request {what} must be ASCII: percent-encode other characters")
    return text


def unquote(raw: str, what: str) -> str:
    """Percent-decode one ASCII component strictly: invalid escapes and non-UTF-8 results are 400."""
    i = raw.find("%")
    if i < 0:
        return raw
    while i >= 0:
        if i + 3 > len(raw) or raw[i + 1] not in _HEX or raw[i + 2] not in _HEX:
            raise BadRequest(f"invalid URL escape {raw[i : i + 3]!r} in the request {what}")
        i = raw.find("%", i + 3)
    try:
        return urllib.parse.unquote(raw, errors="strict")
    except UnicodeDecodeError:
        raise BadRequest(f"the request {what} does not decode to UTF-8 text") from None


def path_segments(raw: str | bytes) -> list[str]:
    """The decoded segments of a raw (still percent-encoded) path, split on `/` before decoding."""
    text = _ascii(raw, "path")
    if "%" not in text:  # the usual path
        return text.split("/")
    return [unquote(p, "path") for p in text.split("/")]


def parse_query(raw: str | bytes) -> MultiDictProxy[str]:
    """A raw query string (without `?`) as a read-only multidict, decoded strictly (`+` is a space)."""
    if not raw:
        return _EMPTY
    out: MultiDict[str] = MultiDict()
    for pair in _ascii(raw, "query").split("&"):
        if not pair:
            continue  # `a=1&&b=2`: Go skips empty pairs too
        key, _, value = pair.partition("=")
        out.add(unquote(key.replace("+", " "), "query"), unquote(value.replace("+", " "), "query"))
    return MultiDictProxy(out)


def segment_name(value: str, what: str) -> str:
    """`value` (a decoded namespace or name) if it can stand as one path segment, else 400 BadRequest.

    kube-apiserver's rule and words (k8s.io/apimachinery/pkg/api/validation/path IsValidPathSegmentName,
    as store.go NamespaceKeyFunc reports it): not '.' or '..', no '/' and no '%'.
    """
    if "/" not in value and "%" not in value and value not in (".", ".."):
        return value  # the usual case, without building anything
    problems = [f"may not be '{value}'"] if value in (".", "..") else []
    problems += [f"may not contain '{c}'" for c in "/%" if c in value]
    if problems:
        raise BadRequest(f"{what} parameter invalid: {json.dumps(value)}: {'; '.join(problems)}")
    return value
