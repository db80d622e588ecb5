"""Label and field selectors: Kubernetes syntax, parsed once, matched many times.

Label selectors support `k`, `!k`, `k=v`, `k==v`, `k!=v`, `k in (a,b)`, `k notin (a,b)`.
Field selectors support `f=v`, `f==v` and `f!=v` with `\\,`, `\\=` and `\\\\` escapes;
`status.ipv4!=` (empty value) means "has an address", as the agent relies on.
Parse errors raise `SelectorError` with a message that says what is wrong.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping

from kos.api import names


class SelectorError(ValueError):
    pass


# --- labels -------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class LabelRequirement:
    key: str
    op: str  # "=", "!=", "in", "notin", "exists", "!"
    values: tuple[str, ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        op = self.op
        if op == "exists":
            return self.key in labels
        if op == "!":
            return self.key not in labels
        if op in ("=", "in"):
            return self.key in labels and labels[self.key] in self.values
        # "!=" and "notin" match objects without the label, as in Kubernetes
        return self.key not in labels or labels[self.key] not in self.values


@dataclasses.dataclass(frozen=True, slots=True)
class LabelSelector:
    requirements: tuple[LabelRequirement, ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        return all(r.matches(labels) for r in self.requirements)

    @property
    def empty(self) -> bool:
        return not self.requirements

    def __str__(self) -> str:
        out = []
        for r in self.requirements:
            if r.op == "exists":
                out.append(r.key)
            elif r.op == "!":
                out.append("!" + r.key)
            elif r.op in ("in", "notin"):
                out.append(f"{r.key} {r.op} ({','.join(r.values)})")
            else:
                out.append(f"{r.key}{r.op}{r.values[0]}")
        return ",".join(out)


# Whitespace is Kubernetes' (space, tab, CR, LF: k8s.io/apimachinery/pkg/labels/selector.go isWhitespace), not
# Unicode's, so `app=web\u00a0` is the invalid value `web\u00a0` as it is for kube-apiserver.
_LABEL_TOKEN = re.compile(r"[ \t\r\n]*(!=|==|=|\(|\)|,|!|[^ \t\r\n!=(),]+)")
_WHITESPACE = re.compile(r"[ \t\r\n]+")


def parse_label_selector(text: str) -> LabelSelector:
    """Parse a label selector (`app=web,tier in (a,b),!legacy`); SelectorError says what is wrong.

    Tokens must cover the whole text but for whitespace: anything the token pattern does not
    match is an error, never skipped.
    """
    tokens = [m.group(1) for m in _LABEL_TOKEN.finditer(text)]
    if "".join(tokens) != _WHITESPACE.sub("", text):
        raise SelectorError(f"unable to parse requirement: invalid label selector {text!r}")
    reqs: list[LabelRequirement] = []
    i = 0
    while i < len(tokens):
        req, i = _label_requirement(text, tokens, i)
        reqs.append(req)
        tok = _at(tokens, i)
        if tok is not None:
            if tok != ",":
                raise SelectorError(f"invalid label selector {text!r}: expected ',' but found {tok!r}")
            i += 1
            if _at(tokens, i) is None:
                raise SelectorError(f"invalid label selector {text!r}: trailing ','")
    return LabelSelector(tuple(reqs))


def _at(tokens: list[str], i: int) -> str | None:
    return tokens[i] if i < len(tokens) else None


def _label_requirement(text: str, tokens: list[str], i: int) -> tuple[LabelRequirement, int]:
    """The requirement starting at token `i`, and the index of the token after it."""
    negate = False
    if tokens[i] == "!":
        negate = True
        i += 1
    key = _at(tokens, i)
    if key is None or key in {"!=", "==", "=", "(", ")", ",", "!"}:
        raise SelectorError(f"invalid label selector {text!r}: expected a label key at position {i}")
    _check_key(key)
    i += 1
    op_tok = _at(tokens, i)
    if negate:
        if op_tok not in (None, ","):
            raise SelectorError(f"invalid label selector {text!r}: '!{key}' cannot be followed by {op_tok!r}")
        return LabelRequirement(key, "!"), i
    if op_tok in (None, ","):
        return LabelRequirement(key, "exists"), i
    if op_tok in ("=", "==", "!="):
        i += 1
        val = _at(tokens, i)
        if val is None or val == ",":
            val = ""
        else:
            if val in {"!=", "==", "=", "(", ")", "!"}:
                raise SelectorError(f"invalid label selector {text!r}: unexpected {val!r} after {key}{op_tok}")
            i += 1
        _check_value(val)
        return LabelRequirement(key, "!=" if op_tok == "!=" else "=", (val,)), i
    if op_tok in ("in", "notin"):
        values, i = _label_values(text, tokens, i + 1, f"{key} {op_tok}")
        return LabelRequirement(key, op_tok, values), i
    raise SelectorError(f"invalid label selector {text!r}: unknown operator {op_tok!r} after {key!r}")


def _label_values(text: str, tokens: list[str], i: int, what: str) -> tuple[tuple[str, ...], int]:
    """The set `(a,b)` starting at token `i` after `what` (`key in`), and the index of the token after it."""
    if _at(tokens, i) != "(":
        raise SelectorError(f"invalid label selector {text!r}: expected '(' after '{what}'")
    i += 1
    values: list[str] = []
    while True:
        tok = _at(tokens, i)
        if tok is None:
            raise SelectorError(f"invalid label selector {text!r}: missing ')'")
        if tok == ")":
            i += 1
            break
        if tok == ",":
            i += 1
            continue
        _check_value(tok)
        values.append(tok)
        i += 1
    if not values:
        raise SelectorError(f"invalid label selector {text!r}: '{what} ()' needs at least one value")
    return tuple(values), i


def _check_key(key: str) -> None:
    """A label key is a qualified name (k8s.io/apimachinery/pkg/labels/selector.go validateLabelKey)."""
    problems = names.qualified_name_problems(key)
    if problems:
        raise SelectorError(
            f"invalid label key {_short(key)}: must be a qualified name such as 'app' or 'example.com/app': "
            + "; ".join(problems)
        )


def _short(text: str, limit: int = 100) -> str:
    """`text` quoted for a message, cut short: the selector may be as long as a request line."""
    return repr(text) if len(text) <= limit else repr(text[:limit]) + f"... ({len(text)} characters)"


def _check_value(value: str) -> None:
    if not names.is_label_value(value):
        raise SelectorError(
            f"invalid label value {_short(value)}: must be 63 characters or less, begin and end with an alphanumeric"
            " character and contain only alphanumerics, '-', '_' or '.'"
        )


# --- fields -------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class FieldRequirement:
    field: str
    op: str  # "=" or "!="
    value: str

    def matches(self, fields: Mapping[str, str]) -> bool:
        return (fields.get(self.field, "") == self.value) == (self.op == "=")


@dataclasses.dataclass(frozen=True, slots=True)
class FieldSelector:
    requirements: tuple[FieldRequirement, ...] = ()

    def matches(self, fields: Mapping[str, str]) -> bool:
        for r in self.requirements:
            if (fields.get(r.field, "") == r.value) != (r.op == "="):
                return False
        return True

    @property
    def empty(self) -> bool:
        return not self.requirements

    def equalities(self) -> dict[str, str]:
        return {r.field: r.value for r in self.requirements if r.op == "="}

    def __str__(self) -> str:
        return ",".join(f"{r.field}{r.op}{_escape(r.value)}" for r in self.requirements)


def _escape(v: str) -> str:
    return v.replace("\\", "\\\\").replace(",", "\\,").replace("=", "\\=")


def _split_unescaped(text: str, sep: str) -> list[str]:
    parts, cur, i = [], [], 0
    while i < len(text):
        ch = text[i]
        if ch == "\\" and i + 1 < len(text):
            cur.append(text[i : i + 2])
            i += 2
            continue
        if ch == sep:
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
        i += 1
    parts.append("".join(cur))
    return parts


def _unescape(v: str, whole: str) -> str:
    out, i = [], 0
    while i < len(v):
        ch = v[i]
        if ch == "\\":
            if i + 1 >= len(v) or v[i + 1] not in "\\,=":
                raise SelectorError(f"invalid field selector {whole!r}: invalid escape sequence in {v!r}")
            out.append(v[i + 1])
            i += 2
            continue
        if ch in ",=":
            raise SelectorError(f"invalid field selector {whole!r}: unescaped {ch!r} in value {v!r}")
        out.append(ch)
        i += 1
    return "".join(out)


def parse_field_selector(text: str) -> FieldSelector:
    if not text.strip():
        return FieldSelector()
    reqs = []
    for term in _split_unescaped(text, ","):
        if not term:
            raise SelectorError(f"invalid field selector {text!r}: empty requirement")
        for op in ("!=", "==", "="):
            idx = _find_unescaped(term, op)
            if idx >= 0:
                name, value = term[:idx].strip(), term[idx + len(op) :]
                if not name:
                    raise SelectorError(f"invalid field selector {text!r}: missing field name in {term!r}")
                reqs.append(FieldRequirement(name, "!=" if op == "!=" else "=", _unescape(value, text)))
                break
        else:
            raise SelectorError(f"invalid field selector {text!r}: {term!r} has no operator (use =, == or !=)")
    return FieldSelector(tuple(reqs))


def _find_unescaped(term: str, op: str) -> int:
    i = 0
    while i < len(term):
        if term[i] == "\\":
            i += 2
            continue
        if term.startswith(op, i):
            return i
        i += 1
    return -1
