"""The authenticators' parts without a server: the token file's CSV, the bearer scheme, the certificate
verdict cache, the front proxy's header reading, and repeated header values kept by kos.http."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.serialization import Encoding

from kos.api.errors import Unauthorized
from kos.apiserver.auth.authn import certs
from kos.apiserver.auth.authn.bearer import bearer_token
from kos.apiserver.auth.authn.cache import remember
from kos.apiserver.auth.authn.requestheader import RequestHeaderAuthenticator
from kos.apiserver.auth.authn.tokenfile import TokenFile, TokenFileError
from kos.apiserver.auth.authn.x509 import X509Authenticator
from kos.apiserver.auth.user import AUTHENTICATED, UserInfo, authenticated
from kos.http.limits import HTTPLimits
from kos.http.messages import Request
from kos.http.parser import RequestParser
from kos.pki.authority import issue_client, issue_server, new_ca

DER = Encoding.DER

# --- the token file -------------------------------------------------------------------------------


async def test_token_file_lines() -> None:
    text = 'tok1,alice,u1,"g1,g2"\r\n\n  \ntok2,bob,u2\n,nobody,u3\ntok3,carol,u4,g3,ignored\ntok2,bob2,u5,\n'
    with pytest.raises(TokenFileError, match=r"tf:3: .*at least 3 columns.*found 1"):
        TokenFile.parse(text, "tf")  # a line of spaces is one column, as in Go's csv
    tf = TokenFile.parse(text.replace("  \n", ""), "tf")
    assert len(tf) == 3
    assert await tf.authenticate_token("tok1") == UserInfo("alice", "u1", ("g1", "g2", AUTHENTICATED))
    assert await tf.authenticate_token("tok2") == UserInfo("bob2", "u5", (AUTHENTICATED,))  # the later line wins
    assert await tf.authenticate_token("tok3") == UserInfo("carol", "u4", ("g3", AUTHENTICATED))
    assert await tf.authenticate_token("") is None
    assert await tf.authenticate_token("tok") is None


def test_token_file_errors_name_the_line_and_never_the_token(tmp_path: Path) -> None:
    for text, line, what in [
        ("a,b,c\nsecret-token,user\n", 2, "at least 3 columns"),
        ("a,b,c\n\n\nsecret-token,,uid\n", 4, "empty user name"),
        ('a,b,c\nsecret-token,"user,uid\n', 2, "malformed CSV"),
    ]:
        path = tmp_path / "tokens.csv"
        path.write_text(text)
        with pytest.raises(TokenFileError) as e:
            TokenFile.load(path)
        assert f"{path}:{line}: " in str(e.value) and what in str(e.value), str(e.value)
        assert "secret-token" not in str(e.value)


def test_bearer_token_parsing() -> None:
    assert bearer_token(b"Bearer abc") == "abc"
    assert bearer_token(b"  bEaReR abc  ") == "abc"
    assert bearer_token(b"Bearer abc def") == "abc"
    assert bearer_token(b"Bearer  abc") is None  # the empty token between two spaces, as Kubernetes
    assert bearer_token(b"Bearer") is None
    assert bearer_token(b"Basic YTpi") is None
    assert bearer_token(b"Bearer \xff") is None


def test_authenticated_adds_the_group_once() -> None:
    assert authenticated("a", groups=["g", ""]).groups == ("g", AUTHENTICATED)
    assert authenticated("a", groups=[AUTHENTICATED, "g"]).groups == (AUTHENTICATED, "g")


def test_remember_is_bounded_oldest_first() -> None:
    table: dict[int, int] = {}
    for i in range(5):
        remember(table, i, i, 3)
    assert list(table) == [2, 3, 4]
    remember(table, 3, 30, 3)
    assert table == {2: 2, 3: 30, 4: 4}


# --- certificates ---------------------------------------------------------------------------------


def request(peer_cert: bytes | None = None, headers: Sequence[tuple[bytes, bytes]] = ()) -> Request:
    """A Request as the HTTP layer builds it (through the parser, which needs a running loop), with `peer_cert`."""
    got: list[Request] = []
    parser = RequestParser(HTTPLimits(), lambda r, _close: got.append(r), lambda: None)
    parser.peer_cert = peer_cert
    parser.feed(b"GET /apis HTTP/1.1\r\nHost: x\r\n" + b"".join(k + b": " + v + b"\r\n" for k, v in headers) + b"\r\n")
    return got[0]


async def test_a_certificate_is_judged_once(monkeypatch: pytest.MonkeyPatch) -> None:
    ca, other = new_ca("ca"), new_ca("other")
    auth = X509Authenticator([other.cert, ca.cert])  # a bundle: any of its certificates may be the issuer
    der = issue_client(ca, "alice", ["g"]).cert.public_bytes(DER)
    calls = []
    real = certs.parse
    monkeypatch.setattr(certs, "parse", lambda d: calls.append(d) or real(d))
    for _ in range(3):
        assert await auth.authenticate(request(der)) == UserInfo("alice", "", ("g", AUTHENTICATED))
    assert calls == [der]
    assert await auth.authenticate(request(None)) is None


async def test_certificates_the_x509_authenticator_refuses() -> None:
    ca = new_ca("ca")
    auth = X509Authenticator([ca.cert])
    server = issue_server(ca, "srv", ["localhost"], []).cert.public_bytes(DER)  # serverAuth only
    with pytest.raises(Unauthorized, match="extended key usage"):
        await auth.authenticate(request(server))
    foreign = issue_client(new_ca("ca"), "alice").cert.public_bytes(DER)  # same issuer name, another key
    with pytest.raises(Unauthorized, match="not issued by a client CA"):
        await auth.authenticate(request(foreign))
    with pytest.raises(Unauthorized, match="cannot be parsed"):
        await auth.authenticate(request(b"not a certificate"))


async def test_front_proxy_headers_and_who_may_send_them() -> None:
    proxy_ca = new_ca("front-proxy-ca")
    auth = RequestHeaderAuthenticator([proxy_ca.cert], ["aggregator"])
    proxy = issue_client(proxy_ca, "aggregator").cert.public_bytes(DER)
    headers = [(b"X-Remote-User", b"u"), (b"X-Remote-Group", b"a"), (b"X-Remote-Group", b""),
               (b"x-remote-group", b"b,c"), (b"X-Remote-Extra-A%2fb%zz", b"1"), (b"X-Remote-Extra-", b"x"),
               (b"X-Remote-User", b"second")]  # fmt: skip
    user = await auth.authenticate(request(proxy, headers))
    assert user == UserInfo("u", "", ("a", "b,c", AUTHENTICATED), {"a/b%zz": ("1",)})
    assert await auth.authenticate(request(proxy)) is None  # no user header: names nobody
    client = issue_client(new_ca("client-ca"), "mallory").cert.public_bytes(DER)
    assert await auth.authenticate(request(client, headers)) is None  # not a proxy: headers ignored
    assert await auth.authenticate(request(None, headers)) is None
    other = issue_client(proxy_ca, "other").cert.public_bytes(DER)
    with pytest.raises(Unauthorized, match="'other' is not in --requestheader-allowed-names"):
        await auth.authenticate(request(other, headers))


# --- kos.http: repeated header values -------------------------------------------------------------


async def test_repeated_header_values_are_kept_only_when_a_name_repeats() -> None:
    one = request(headers=[(b"X-A", b"1"), (b"X-B", b"2")])
    assert one.repeated is None
    assert one.header_values(b"x-a") == [b"1"] and one.header_values(b"x-c") == []
    many = request(headers=[(b"X-A", b"1"), (b"x-a", b"2"), (b"X-B", b"3"), (b"X-A", b"4")])
    assert many.headers[b"x-a"] == b"1"  # the first still counts for everyone else
    assert many.header_values(b"x-a") == [b"1", b"2", b"4"] and many.header_values(b"x-b") == [b"3"]
    assert many.repeated == {b"x-a": [b"1", b"2", b"4"]}


async def test_a_new_ca_bundle_forgets_every_verdict() -> None:
    old, new = new_ca("ca"), new_ca("ca-2")
    auth = X509Authenticator([old.cert])
    der = issue_client(old, "alice").cert.public_bytes(DER)
    assert await auth.authenticate(request(der)) == UserInfo("alice", "", (AUTHENTICATED,))
    auth.set_cas([new.cert])
    with pytest.raises(Unauthorized, match="not issued by a client CA"):
        await auth.authenticate(request(der))


async def test_a_certificate_is_refused_outside_its_validity_on_a_live_connection() -> None:
    """The handshake checked the dates when the connection began; a request after expiry is refused anyway."""
    ca = new_ca("ca")
    cert = issue_client(ca, "alice").cert
    now = [cert.not_valid_after_utc.timestamp() - 1]
    x509_auth = X509Authenticator([ca.cert], wall=lambda: now[0])
    proxy_auth = RequestHeaderAuthenticator([ca.cert], wall=lambda: now[0])
    req = request(cert.public_bytes(DER), [(b"X-Remote-User", b"bob")])
    assert await x509_auth.authenticate(req) == UserInfo("alice", "", (AUTHENTICATED,))
    assert await proxy_auth.authenticate(req) == UserInfo("bob", "", (AUTHENTICATED,))
    now[0] += 2
    with pytest.raises(Unauthorized, match="client certificate has expired"):
        await x509_auth.authenticate(req)
    with pytest.raises(Unauthorized, match="front-proxy certificate has expired"):
        await proxy_auth.authenticate(req)
    now[0] = cert.not_valid_before_utc.timestamp() - 1
    with pytest.raises(Unauthorized, match="not yet valid"):
        await x509_auth.authenticate(req)
