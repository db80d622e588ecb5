"""Structured logs (kos.util.log): both formats keep every field, text quotes what needs it, exceptions are kept."""

from __future__ import annotations

import json
import logging
import signal
import subprocess
import sys
from collections.abc import Iterator

import pytest

from kos.util.log import JSONFormatter, TextFormatter, get_logger, setup, text_value


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        record.created, record.msecs = 0.0, 0.0  # a fixed time, so whole lines can be compared
        self.records.append(record)


@pytest.fixture
def records() -> Iterator[list[logging.LogRecord]]:
    handler = _Records()
    logger = logging.getLogger("kos.test")
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    yield handler.records
    logger.removeHandler(handler)
    logger.setLevel(logging.NOTSET)


HEAD = "ts=1970-01-01T00:00:00.000Z level=info component=c logger=kos.test"


def test_text_keeps_every_field_and_quotes_only_what_needs_it(records: list[logging.LogRecord]) -> None:
    get_logger("kos.test").info("watch opened", resource="nas", rv=12, ratio=0.5, ok=True, none=None,
                                spaced="a b", quoted='say "hi"', eq="a=b", empty="", line="a\nb", path="C:\\x")  # fmt: skip
    assert TextFormatter("c").format(records[0]) == (
        HEAD + ' msg="watch opened" resource=nas rv=12 ratio=0.5 ok=true none=null spaced="a b"'
        ' quoted="say \\"hi\\"" eq="a=b" empty="" line="a\\nb" path="C:\\\\x"'
    )


def test_json_keeps_every_field_with_its_type(records: list[logging.LogRecord]) -> None:
    get_logger("kos.test").info("watch opened", resource="nas", rv=12, ok=False, none=None, items=[1, "a"],
                                obj=ValueError("bad"))  # fmt: skip
    assert json.loads(JSONFormatter("c").format(records[0])) == {
        "ts": "1970-01-01T00:00:00.000Z", "level": "info", "component": "c", "logger": "kos.test",
        "msg": "watch opened", "resource": "nas", "rv": 12, "ok": False, "none": None, "items": [1, "a"],
        "obj": "bad",
    }  # fmt: skip


def test_fields_named_like_the_head_are_kept_beside_it(records: list[logging.LogRecord]) -> None:
    get_logger("kos.test").info("m", msg="mine", level=3, name="n")
    line = json.loads(JSONFormatter("c").format(records[0]))
    assert (line["msg"], line["msg_"], line["level"], line["level_"], line["name"]) == ("m", "mine", "info", 3, "n")


def test_standard_library_calls_keep_their_arguments_and_extra_fields(records: list[logging.LogRecord]) -> None:
    logging.getLogger("kos.test").info("%d watches", 3, extra={"node": "n-1"})
    assert TextFormatter("c").format(records[0]) == HEAD + ' msg="3 watches" node=n-1'
    assert json.loads(JSONFormatter("c").format(records[0]))["node"] == "n-1"


def test_exceptions_are_kept_on_one_line_and_in_json(records: list[logging.LogRecord]) -> None:
    try:
        raise KeyError("gone")
    except KeyError:
        get_logger("kos.test").exception("lookup failed", key="k")
    text = TextFormatter("c").format(records[0])
    assert "\n" not in text and text.startswith(HEAD.replace("info", "error") + ' msg="lookup failed" key=k exc="')
    assert "KeyError: 'gone'" in json.loads(text.split(" exc=", 1)[1])
    doc = json.loads(JSONFormatter("c").format(records[0]))
    assert doc["exc"].startswith("Traceback") and doc["exc"].endswith("KeyError: 'gone'") and doc["key"] == "k"


def test_a_disabled_level_renders_nothing(records: list[logging.LogRecord]) -> None:
    rendered = []

    class Costly:
        def __str__(self) -> str:
            rendered.append(1)
            return "costly"

    logging.getLogger("kos.test").setLevel(logging.INFO)
    get_logger("kos.test").debug("quiet", value=Costly())
    assert not records and not rendered
    get_logger("kos.test").info("loud", value=Costly())
    assert TextFormatter("c").format(records[0]).endswith("msg=loud value=costly") and rendered


def test_records_name_the_caller(records: list[logging.LogRecord]) -> None:
    get_logger("kos.test").warning("here")
    assert records[0].funcName == "test_records_name_the_caller" and records[0].filename == "test_log.py"


@pytest.mark.parametrize(("value", "text"), [("plain", "plain"), ("", '""'), ("a b", '"a b"'), ("a=b", '"a=b"'),
                                             ('a"b', '"a\\"b"'), ("tab\t", '"tab\\t"'), ("é", "é"), (7, "7")])  # fmt: skip
def test_text_values(value: object, text: str) -> None:
    assert text_value(value) == text


def test_setup_chooses_the_format() -> None:
    root = logging.getLogger()
    saved, level = root.handlers[:], root.level
    try:
        setup("warning", "json", "apiserver")
        assert isinstance(root.handlers[0].formatter, JSONFormatter) and root.level == logging.WARNING
        setup("debug", "text", "agent")
        formatter = root.handlers[0].formatter
        assert isinstance(formatter, TextFormatter) and formatter.component == "agent"
    finally:
        root.handlers[:] = saved
        root.setLevel(level)


@pytest.mark.parametrize("fmt", ["json", "text"])
def test_a_process_logs_in_the_chosen_format(fmt: str) -> None:
    """`--log-format` reaches the process: the apiserver's shutdown record, parsed back."""
    proc = subprocess.Popen([sys.executable, "-m", "kos", "apiserver", "--listen", "127.0.0.1:0", "--log-format", fmt,
                             "--insecure"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    try:
        assert proc.stdout is not None and "ready" in proc.stdout.readline()
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    lines = [ln for ln in err.splitlines() if "shutting down" in ln]
    assert len(lines) == 1, err
    if fmt == "json":
        record = json.loads(lines[0])
        assert (record["msg"], record["component"], record["logger"]) == (
            "shutting down",
            "apiserver",
            "kos.cli.apiserver",
        )
    else:
        assert ' component=apiserver logger=kos.cli.apiserver msg="shutting down"' in lines[0]
        assert lines[0].startswith("ts=") and " level=info " in lines[0]
