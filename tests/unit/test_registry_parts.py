"""The registry's split-out rules without a store: deletion (kos.apiserver.deletion) and paging tokens
(kos.apiserver.paging)."""

from __future__ import annotations

import base64
import datetime

import msgspec
import pytest

from kos.api import errors, resources
from kos.api.errors import BadRequest, Conflict
from kos.api.meta import ObjectMeta
from kos.api.types import Subnet, SubnetSpec
from kos.apiserver import deletion, paging
from kos.apiserver.cache import Entry, ResourceCache
from kos.apiserver.deletion import DeleteRequest

NOW = datetime.datetime(2026, 1, 2, 3, 4, 5, 678_000, tzinfo=datetime.UTC)


def _entry(name: str, rev: int) -> Entry:
    cache = ResourceCache(resources.SUBNETS, history=10)
    obj = Subnet(metadata=ObjectMeta(name=name, namespace="ns", uid=f"uid-{name}"),
                 spec=SubnetSpec(vni=1, ipv4="10.0.0.0/24"))  # fmt: skip
    return cache.entry_for(obj, rev)


# --- deletion --------------------------------------------------------------------------------


def test_preconditions_name_what_differs() -> None:
    old = _entry("a", 7)
    deletion.check_preconditions("subnets", "a", old, DeleteRequest())
    deletion.check_preconditions("subnets", "a", old, DeleteRequest(uid="uid-a", resource_version="7"))
    with pytest.raises(Conflict) as e:
        deletion.check_preconditions("subnets", "a", old, DeleteRequest(uid="other"))
    assert e.value.message.endswith("Precondition failed: UID in precondition: other, UID in object meta: uid-a")
    assert errors.is_precondition_failed(e.value)
    with pytest.raises(Conflict) as e:
        deletion.check_preconditions("subnets", "a", old, DeleteRequest(resource_version="6"))
    assert e.value.message.endswith(
        "Precondition failed: ResourceVersion in precondition: 6, ResourceVersion in object meta: 7"
    )
    assert errors.is_precondition_failed(e.value)


@pytest.mark.parametrize(
    ("current", "policy", "hold", "want"),
    [
        ((), "Background", "", ()),
        ((), "Orphan", "", ("orphan",)),
        ((), "Foreground", "", ("foregroundDeletion",)),
        (("x",), "Foreground", "", ("x", "foregroundDeletion")),
        (("orphan",), "Orphan", "", ("orphan",)),  # not twice
        ((), "Background", "hold/it", ("hold/it",)),
        (("hold/it",), "Orphan", "hold/it", ("hold/it", "orphan")),
    ],
)
def test_finalizers_of_a_delete(current: tuple[str, ...], policy: str, hold: str, want: tuple[str, ...]) -> None:
    assert deletion.finalizers_for(current, policy, hold) == want


def test_the_deletion_mark_keeps_an_earlier_timestamp_and_drops_microseconds() -> None:
    marked = deletion.marked_deleting(_entry("a", 7).obj, ("orphan",), NOW)
    meta = marked.metadata
    assert meta.deletion_timestamp == NOW.replace(microsecond=0) and meta.deletion_grace_period_seconds == 0
    assert meta.finalizers == ("orphan",) and meta.resource_version == ""
    again = deletion.marked_deleting(marked, ("orphan", "more"), NOW + datetime.timedelta(hours=1))
    assert again.metadata.deletion_timestamp == NOW.replace(microsecond=0)


# --- paging ----------------------------------------------------------------------------------


def test_a_page_ends_with_a_token_naming_its_revision_and_last_key() -> None:
    entries = [_entry(n, 3) for n in ("a", "b", "c")]
    first = paging.page(entries, 9, 2)
    assert [e.key for e in first.entries] == ["ns/a", "ns/b"] and first.remaining == 1 and first.revision == 9
    assert paging.decode_continue(first.continue_token) == (9, "ns/b")
    whole = paging.page(entries, 9, 0)
    assert len(whole.entries) == 3 and whole.continue_token == "" and whole.remaining is None
    assert paging.page(entries, 9, 3).continue_token == ""


def _token(doc: object) -> str:
    return base64.urlsafe_b64encode(msgspec.json.encode(doc)).decode()


@pytest.mark.parametrize(
    "token",
    [
        "not base64 !",
        _token({"v": "meta.k8s.io/v1", "rv": 0, "start": "x"}),
        _token({"v": "meta.k8s.io/v1", "rv": -2, "start": "x"}),
        _token({"v": "meta.k8s.io/v1", "rv": 1 << 63, "start": "x"}),
        _token({"v": "v2", "rv": 5, "start": "x"}),
        _token({"v": "meta.k8s.io/v1", "rv": 5, "start": "x", "extra": 1}),
        _token([1, 2]),
        "A" * 5000,
    ],
)
def test_a_token_not_made_here_is_400(token: str) -> None:
    with pytest.raises(BadRequest):
        paging.decode_continue(token)


def test_the_token_of_an_expired_continue_goes_on_from_the_latest_state() -> None:
    token = paging.encode_continue(paging.CONTINUE_AT_LATEST, "ns/b")
    assert paging.decode_continue(token) == (paging.CONTINUE_AT_LATEST, "ns/b")
