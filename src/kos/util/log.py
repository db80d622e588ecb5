"""Structured logs: a message plus `key=value` fields, written as logfmt text (default) or one JSON object per line.

Kubernetes logs this way (klog's `InfoS("msg", "key", value)`, Antrea mandates it): the message says what
happened, in words that do not change, and the values travel as fields that a reader can filter on.

    from kos.util.log import get_logger
    log = get_logger(__name__)
    log.info("watch opened", resource="networkattachments", rv=1234)
    log.warning("etcd endpoint failed", endpoint=ep, err=e, next=other)
    log.exception("OVSDB client failed", remote=remote)      # adds the traceback

Text (`--log-format text`): one line per record, values quoted (JSON string escapes) when they contain a
space, a quote, `=`, a control character or are empty:

    ts=2026-12-06T08:50:00.123Z level=info component=apiserver logger=kos.x msg="watch opened" resource=nas rv=1234

JSON (`--log-format json`): the same keys, every field kept with its JSON type where it has one (numbers,
booleans, null, lists, dicts; anything else as its `str`). A field named like a standard key (`ts`,
`level`, `component`, `logger`, `msg`, `exc`) gets a `_` appended rather than hiding it. Fields passed the
standard-library way (`logging.getLogger(...).info(msg, extra={...})`) are kept too.

Cost: a call below the logger's level returns after one cached level check (and Python's building of the
keyword dict); fields are rendered only when a record is written. printf-style arguments still work
(`log.info("x %s", y)`), so a module can switch to `get_logger` before its calls are converted.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Mapping
from typing import Any

FIELDS = "kv"
"""The LogRecord attribute that carries a structured call's fields."""

_STANDARD = frozenset(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message", "asctime", FIELDS}
_HEAD = ("ts", "level", "component", "logger", "msg", "exc")
_NEEDS_QUOTES = frozenset(' "=\\') | frozenset(chr(c) for c in range(32)) | {"\x7f"}


class Logger:
    """A thin structured front to a `logging.Logger`: `log.info(msg, key=value, ...)`."""

    __slots__ = ("logger",)

    def __init__(self, logger: logging.Logger) -> None:
        self.logger = logger

    def _emit(self, level: int, msg: str, args: tuple[object, ...], exc_info: Any, fields: dict[str, object]) -> None:
        self.logger._log(level, msg, args, exc_info=exc_info, extra={FIELDS: fields} if fields else None,
                         stacklevel=3)  # fmt: skip

    def debug(self, msg: str, /, *args: object, exc_info: Any = None, **fields: object) -> None:
        if self.logger.isEnabledFor(logging.DEBUG):
            self._emit(logging.DEBUG, msg, args, exc_info, fields)

    def info(self, msg: str, /, *args: object, exc_info: Any = None, **fields: object) -> None:
        if self.logger.isEnabledFor(logging.INFO):
            self._emit(logging.INFO, msg, args, exc_info, fields)

    def warning(self, msg: str, /, *args: object, exc_info: Any = None, **fields: object) -> None:
        if self.logger.isEnabledFor(logging.WARNING):
            self._emit(logging.WARNING, msg, args, exc_info, fields)

    def error(self, msg: str, /, *args: object, exc_info: Any = None, **fields: object) -> None:
        if self.logger.isEnabledFor(logging.ERROR):
            self._emit(logging.ERROR, msg, args, exc_info, fields)

    def exception(self, msg: str, /, *args: object, **fields: object) -> None:
        """`error` with the exception being handled (its traceback goes in the `exc` key)."""
        if self.logger.isEnabledFor(logging.ERROR):
            self._emit(logging.ERROR, msg, args, True, fields)

    def is_enabled_for(self, level: int) -> bool:
        """Whether a record at `level` would be written: guard building costly fields with it."""
        return self.logger.isEnabledFor(level)


def get_logger(name: str) -> Logger:
    """The structured logger for module `name` (pass `__name__`)."""
    return Logger(logging.getLogger(name))


def fields_of(record: logging.LogRecord) -> dict[str, object]:
    """A record's fields: those of a structured call, then any set the standard-library way (`extra=`)."""
    own: Mapping[str, object] = getattr(record, FIELDS, None) or {}
    extra = {k: v for k, v in record.__dict__.items() if k not in _STANDARD and not k.startswith("_")}
    return {**own, **extra} if extra else dict(own)


def _timestamp(record: logging.LogRecord) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z"


def _key(key: str, taken: Mapping[str, object]) -> str:
    while key in _HEAD or key in taken:
        key += "_"
    return key


class _Structured(logging.Formatter):
    def __init__(self, component: str) -> None:
        super().__init__()
        self.component = component

    def head(self, record: logging.LogRecord) -> dict[str, object]:
        return {"ts": _timestamp(record), "level": record.levelname.lower(), "component": self.component,
                "logger": record.name, "msg": record.getMessage()}  # fmt: skip

    def items(self, record: logging.LogRecord) -> dict[str, object]:
        out = self.head(record)
        for k, v in fields_of(record).items():
            out[_key(k, out)] = v
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        elif record.exc_text:
            out["exc"] = record.exc_text
        if record.stack_info:
            out["stack"] = self.formatStack(record.stack_info)
        return out


class TextFormatter(_Structured):
    """logfmt: `key=value` pairs on one line, values quoted when needed (see the module docstring)."""

    def format(self, record: logging.LogRecord) -> str:
        return " ".join(f"{k}={text_value(v)}" for k, v in self.items(record).items())


class JSONFormatter(_Structured):
    """One JSON object per line, every field kept."""

    def format(self, record: logging.LogRecord) -> str:
        return json.dumps(self.items(record), default=str, ensure_ascii=False)


def text_value(value: object) -> str:
    """A value as logfmt text: `true`/`false`/`null` for those, else its `str`, quoted when it needs it."""
    if value is True or value is False:
        return "true" if value else "false"
    if value is None:
        return "null"
    s = value if isinstance(value, str) else str(value)
    if not s or not _NEEDS_QUOTES.isdisjoint(s):
        return json.dumps(s, ensure_ascii=False)
    return s


def setup(level: str = "info", fmt: str = "text", component: str = "kos") -> None:
    """Send every record to standard error as `fmt` ("text" or "json"), at `level` and above."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JSONFormatter(component) if fmt == "json" else TextFormatter(component))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
