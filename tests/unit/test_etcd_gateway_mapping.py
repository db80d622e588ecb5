"""The etcd gateway transport's mappings (kos.storage.etcd_gateway), which the contract suite cannot isolate:
protobuf requests into the gateway's JSON, its error answers into gRPC statuses the store's retry rules read,
its event type names into etcd's numbers, and the storage URL's `transport` key."""

from __future__ import annotations

import grpc
import msgspec
import pytest
from aetcd import rpc

from kos.http.clientresponse import ConnectionFailed
from kos.storage.etcd import _not_sent, _retryable
from kos.storage.etcd_gateway import WatchEvent, _connection_error, _status, to_json
from kos.storage.url import StoreURLError, open_store


def test_a_compare_and_swap_txn_becomes_the_gateways_json() -> None:
    req = rpc.TxnRequest(
        compare=[rpc.Compare(key=b"/k", target=rpc.Compare.CREATE, result=rpc.Compare.EQUAL, create_revision=0)],
        success=[rpc.RequestOp(request_put=rpc.PutRequest(key=b"/k", value=b"\x00v"))],
        failure=[rpc.RequestOp(request_range=rpc.RangeRequest(key=b"/k"))],
    )
    doc = msgspec.json.decode(msgspec.json.encode(to_json(req)))
    # result EQUAL is enum 0, protobuf's default, so it is left out (as protobuf's JSON mapping does); the oneof
    # create_revision is kept although 0, as it is set
    assert doc == {
        "compare": [{"target": "CREATE", "key": "L2s=", "create_revision": 0}],
        "success": [{"request_put": {"key": "L2s=", "value": "AHY="}}],
        "failure": [{"request_range": {"key": "L2s="}}],
    }


def test_gateway_errors_read_as_the_grpc_statuses_the_store_retries_on() -> None:
    no_leader = _status(503, b'{"error":"etcdserver: no leader","code":14,"message":"etcdserver: no leader"}')
    assert no_leader.code() == grpc.StatusCode.UNAVAILABLE
    assert _retryable(no_leader) and _not_sent(no_leader)  # refused before it reached raft: not ambiguous
    compacted = _status(400, b'{"code":11,"message":"etcdserver: mvcc: required revision has been compacted"}')
    assert compacted.code() == grpc.StatusCode.OUT_OF_RANGE and not _retryable(compacted)
    assert _status(502, b"<html>bad gateway</html>").code() == grpc.StatusCode.UNAVAILABLE


def test_connection_failures_keep_the_sent_or_not_distinction() -> None:
    refused = _connection_error(ConnectionFailed("cannot connect", retryable=True))
    broke = _connection_error(ConnectionFailed("connection closed by the server"))
    late = _connection_error(TimeoutError("no response within 3s"))
    assert _retryable(refused) and _not_sent(refused)
    assert _retryable(broke) and not _not_sent(broke)  # maybe applied: the store re-issues it as a CAS
    assert late.code() == grpc.StatusCode.DEADLINE_EXCEEDED and not _not_sent(late)


def test_event_types_become_etcds_numbers() -> None:
    dec = msgspec.json.Decoder(list[WatchEvent], strict=False)
    put, delete = dec.decode(b'[{"kv": {"mod_revision": "5"}}, {"type": "DELETE", "prev_kv": {"value": "AA=="}}]')
    assert (put.type, delete.type) == (0, rpc.Event.DELETE)
    assert put.kv.mod_revision == 5 and not put.HasField("prev_kv") and delete.HasField("prev_kv")


async def test_an_unknown_transport_is_a_clear_url_error() -> None:
    with pytest.raises(StoreURLError, match="transport must be 'grpc' or 'gateway'"):
        await open_store("etcd://127.0.0.1:2379?transport=http2")
