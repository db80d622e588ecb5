"""grpc core failing an operation on a call (its connection broke under it) is a broken transport, not etcd's answer.

`make test` caught it: a watch stream opened on a member killed a moment before failed its first write with
StatusCode.INTERNAL "Internal error from Core" (grpc's ExecuteBatchError), which the store took for etcd refusing
the watch and ended it. It is now retried on the next member like UNAVAILABLE — and, for a write, ambiguous.
"""

from __future__ import annotations

from aetcd import rpc

from kos.storage.etcd import _not_sent, _retryable


def test_a_core_failure_is_retried_and_a_write_it_carried_is_ambiguous() -> None:
    core = rpc.AioRpcError(rpc.StatusCode.INTERNAL, None, None, details="Internal error from Core")
    assert _retryable(core) and not _not_sent(core)


def test_an_internal_error_from_etcd_itself_is_not_retried() -> None:
    etcd = rpc.AioRpcError(rpc.StatusCode.INTERNAL, None, None, details="etcdserver: corrupt cluster")
    assert not _retryable(etcd)
