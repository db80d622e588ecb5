"""A JSON patch operation on a location that does not exist is told apart by type, not by message text.

Each case is 422 Invalid; the reason is "the path does not exist" exactly when a location the
operation reads, removes or replaces is absent (or the parent of one it adds at), whatever wording
jsonpatch/jsonpointer would have used — and never for other failures whose wording happens to look
alike ("can't remove the whole document").
"""

from __future__ import annotations

import copy
from typing import Any

import pytest

from kos.api.errors import Invalid
from kos.apiserver import patch

MISSING = "the path does not exist"
DOC: dict[str, Any] = {"a": [1, 2], "m": {"b": 1}, "s": "text"}


def _why(op: dict[str, Any]) -> str:
    patch.check_json_patch([op])
    with pytest.raises(Invalid) as e:
        patch.apply_json_patch(copy.deepcopy(DOC), patch.json_patch_ops([op]), "Subnet", "s", max_copy_bytes=1 << 20)
    return e.value.message.rsplit("): ", 1)[-1]


@pytest.mark.parametrize(
    "op",
    [
        {"op": "remove", "path": "/a/9"},
        {"op": "remove", "path": "/a/-"},
        {"op": "remove", "path": "/m/zz"},
        {"op": "remove", "path": "/a/9/x"},
        {"op": "replace", "path": "/m/zz", "value": 1},
        {"op": "replace", "path": "/a/-", "value": 1},
        {"op": "add", "path": "/zz/x", "value": 1},
        {"op": "add", "path": "/a/3", "value": 1},
        {"op": "add", "path": "/a/-/x", "value": 1},
        {"op": "move", "from": "/zz", "path": "/b"},
        {"op": "move", "from": "/m/b", "path": "/q/r"},
        {"op": "copy", "from": "/a/3", "path": "/b"},
    ],
)
def test_an_absent_location_is_reported_as_such(op: dict[str, Any]) -> None:
    assert _why(op) == MISSING


@pytest.mark.parametrize(
    ("op", "why"),
    [
        ({"op": "remove", "path": ""}, "can't remove the whole document"),
        ({"op": "add", "path": "/a/01", "value": 1}, "'01' is not a valid sequence index"),
        ({"op": "add", "path": "/s/x", "value": 1}, "Cannot apply token 'x' to non-container type"),
        ({"op": "move", "from": "/m", "path": "/m/b/c"}, "Cannot move values into their own children"),
        ({"op": "test", "path": "/zz", "value": 1}, "the value there is not 1"),
    ],
)
def test_other_failures_keep_their_own_reason(op: dict[str, Any], why: str) -> None:
    assert why in _why(op) and _why(op) != MISSING


def test_a_valid_append_and_a_replace_of_an_existing_member_apply() -> None:
    ops = [{"op": "add", "path": "/a/2", "value": 3}, {"op": "replace", "path": "/m/b", "value": 2}]
    patch.check_json_patch(ops)
    out = patch.apply_json_patch(copy.deepcopy(DOC), patch.json_patch_ops(ops), "Subnet", "s", max_copy_bytes=1 << 20)
    assert out == {"a": [1, 2, 3], "m": {"b": 2}, "s": "text"}
