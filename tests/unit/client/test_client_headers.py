"""Default headers (a kubeconfig's bearer token) are encoded once into the pool's request template; a call's
own header of the same name replaces it; `Client.with_headers` makes clients of other identities on one
shared transport whose calls (and plain-HTTP watches) carry their own headers; nothing sendable is unchecked."""

from __future__ import annotations

import pytest

from kos.api.meta import ObjectMeta
from kos.api.types import NetworkAttachment, NetworkAttachmentSpec
from kos.client.config import ClientConfig
from kos.client.rest import Client
from kos.http.clientpool import HTTPPool
from kos.testing.transport import MockTransport, Request, Response, Stream, json_response, list_body

TOKEN = {"Authorization": "Bearer shared"}


def test_default_headers_are_in_the_template_once() -> None:
    pool = HTTPPool("http://127.0.0.1:1", headers=TOKEN)
    plain = pool._encode("GET", "/x", None, None, None)
    assert plain.count(b"Authorization: Bearer shared\r\n") == 1
    body = pool._encode("POST", "/x", None, b"{}", {"Content-Type": "application/json"})
    assert body.count(b"Authorization: Bearer shared\r\n") == 1 and b"Content-Type: application/json\r\n" in body
    own = pool._encode("GET", "/x", None, None, {"Authorization": "Bearer node-1"})
    assert b"Bearer shared" not in own and own.count(b"Authorization: Bearer node-1\r\n") == 1
    assert pool._encode("GET", "/x", None, None, None) == plain  # the template itself is unchanged


@pytest.mark.parametrize("headers", [{"Authorization": "Bearer a\r\nX-Remote-User: admin"}, {"X\nY": "1"},
                                     {"Authorization": "Bearer é€"}, {"": "x"}])  # fmt: skip
def test_headers_that_would_break_the_head_are_refused(headers: dict[str, str]) -> None:
    with pytest.raises(ValueError, match="cannot be sent"):
        HTTPPool("http://127.0.0.1:1", headers=headers)
    with pytest.raises(ValueError, match="cannot be sent"):
        Client("http://x", transport=MockTransport(lambda r: json_response({}))).with_headers(headers)
    with pytest.raises(ValueError, match="cannot be sent"):
        ClientConfig("http://x", None, headers)


def na(name: str = "a") -> NetworkAttachment:
    return NetworkAttachment(
        metadata=ObjectMeta(name=name, namespace="ns"), spec=NetworkAttachmentSpec(node="n", subnet="s")
    )


def answer(req: Request) -> Response | Stream:
    if req.is_watch:
        return Stream()
    if req.method == "GET" and req.path.endswith("networkattachments"):
        return list_body([na("a"), na("b")], "5")
    return json_response(na())


async def test_identities_share_the_transport_each_with_its_own_headers() -> None:
    mock = MockTransport(answer)
    shared = Client("http://x", transport=mock)
    node = shared.with_headers({"Authorization": "Bearer node-0"})
    assert node.transport is mock
    await shared.get(NetworkAttachment, "ns", "a")
    await node.get(NetworkAttachment, "ns", "a")
    await node.create(na())
    await node.patch(NetworkAttachment, "ns", "a", {"metadata": {}})
    await node.list(NetworkAttachment, "ns")
    await shared.list(NetworkAttachment, "ns")
    async for _ in node.watch(NetworkAttachment, "ns"):
        pass
    assert [r.headers for r in mock.requests] == [
        {},
        {"Authorization": "Bearer node-0"},
        {"Authorization": "Bearer node-0", "Content-Type": "application/json"},
        {"Authorization": "Bearer node-0", "Content-Type": "application/merge-patch+json"},
        {"Authorization": "Bearer node-0"},
        {},
        {"Authorization": "Bearer node-0"},
    ]
    assert shared.list_objects_received == node.list_objects_received == 4  # counted together
    await node.close()
    assert not mock.closed
    await shared.close()
    assert mock.closed


def test_secrets_stay_out_of_the_config_repr() -> None:
    assert "shared" not in repr(ClientConfig("http://x", None, TOKEN))


def test_a_url_alone_is_verified_against_the_system_cas() -> None:
    cfg = ClientConfig.for_server("https://kos.example.com:6443/")
    assert cfg.server == "https://kos.example.com:6443" and cfg.ssl is not None and cfg.ssl.check_hostname
    assert ClientConfig.for_server("http://127.0.0.1:8080").ssl is None
