"""Kubeconfigs, written and read as kubectl and client-go do (`k8s.io/client-go/tools/clientcmd`).

Writing (`kubeconfig`): one cluster (server URL, `certificate-authority-data`, and with several apiservers
the `SERVERS_EXTENSION` listing them), one user
(`client-certificate-data`, `client-key-data`: base64 of the PEM), one context joining them, and
`current-context` set to it.

Reading (`load_kubeconfig`): any kubeconfig kubectl reads with the fields kos can honour — the current (or a
named) context's cluster (`server`, `certificate-authority[-data]`, `insecure-skip-tls-verify`) and user
(`client-certificate[-data]`, `client-key[-data]`, `token`, `tokenFile`), and the context's namespace. Relative
file paths are resolved against the kubeconfig's directory (clientcmd's `ResolveLocalPaths`). A `tokenFile` is
read at load (missing or empty: an error) and then re-read every minute by `KubeConfig.headers` (kos.pki.bearer:
Kubernetes rotates ServiceAccount tokens). Several apiservers
of one cluster (issue 13) are listed in the cluster's extension `SERVERS_EXTENSION` —
`extensions: [{name: kos.example.com/servers, extension: {servers: [URL, ...]}}]`, every URL sharing the
cluster's CA and the user's credentials; kubectl ignores it (clientcmd keeps unknown extensions) and uses
`server`, which kos tries first, then the others in their order. Credentials kos
cannot use (exec plugins, auth providers, basic auth) and settings it would silently ignore are errors rather
than a quietly weaker connection. It lives in kos.pki, below both the client and the apiserver, so the
apiserver's delegated authentication (`--authentication-kubeconfig`) reads the same files the same way.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import os
import ssl
import urllib.parse
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from kos.pki.authority import Identity, user_of
from kos.pki.bearer import AUTHORIZATION, BearerHeaders, TokenSource
from kos.pki.reload import ClientCertificateFiles, load_pem_pair
from kos.util.clock import REAL_CLOCK, Clock

__all__ = ["CLUSTER_NAME", "SERVERS_EXTENSION", "KubeConfig", "KubeConfigError", "kubeconfig", "load_kubeconfig"]

CLUSTER_NAME = "kos"
SERVERS_EXTENSION = "kos.example.com/servers"
"""The name of a cluster's extension listing every apiserver URL (`{servers: [URL, ...]}`)."""
_DUMPER = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
"""libyaml's dumper when PyYAML has it: 0.1 ms a kubeconfig against 1.2 ms in pure Python (bench/pki.py)."""
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
"""libyaml's safe loader when PyYAML has it (no arbitrary objects either way)."""
UNSUPPORTED_USER_FIELDS = ("exec", "auth-provider", "username", "password", "as", "as-groups", "as-user-extra")
"""User settings kos does not implement: an error, never a silently different identity."""
UNSUPPORTED_CLUSTER_FIELDS = ("proxy-url", "tls-server-name")
"""Cluster settings kos does not implement: an error, never a silently different connection."""


def kubeconfig(
    server: str, ca_pem: bytes, identity: Identity, user: str, *, servers: tuple[str, ...] | list[str] = ()
) -> bytes:
    """The kubeconfig YAML (bytes) for `identity` (whose user name is `user`) at `server`, trusting `ca_pem`;
    with `servers` (several apiservers, `server` among them or not), the `SERVERS_EXTENSION` listing them."""
    credentials = {"client-certificate-data": _b64(identity.cert_pem()), "client-key-data": _b64(identity.key_pem())}
    return _document(server, ca_pem, user, credentials, servers)


def token_kubeconfig(
    server: str, ca_pem: bytes, user: str, token: str, *, servers: tuple[str, ...] | list[str] = ()
) -> bytes:
    """The kubeconfig YAML (bytes) for `user` calling `server` with a bearer `token`, trusting `ca_pem`."""
    return _document(server, ca_pem, user, {"token": token}, servers)


def _document(
    server: str, ca_pem: bytes, user: str, credentials: dict[str, str], servers: tuple[str, ...] | list[str]
) -> bytes:
    context = f"{user}@{CLUSTER_NAME}"
    cluster: dict[str, object] = {"server": server, "certificate-authority-data": _b64(ca_pem)}
    if servers:
        cluster["extensions"] = [{"name": SERVERS_EXTENSION, "extension": {"servers": list(servers)}}]
    doc = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": CLUSTER_NAME, "cluster": cluster}],
        "users": [{"name": user, "user": credentials}],
        "contexts": [{"name": context, "context": {"cluster": CLUSTER_NAME, "user": user}}],
        "current-context": context,
        "preferences": {},
    }
    return yaml.dump(doc, Dumper=_DUMPER, sort_keys=False).encode()


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


class KubeConfigError(Exception):
    """A kubeconfig that cannot be used: unreadable, malformed, or missing a piece. The message names the file."""


@dataclasses.dataclass(frozen=True, slots=True)
class KubeConfig:
    """One context of a kubeconfig, resolved: where the server is, how to trust it, who the client is.

    Secrets (the token, a key's PEM) are kept out of `repr` so that logging a `KubeConfig` leaks nothing (and
    the long PEM of certificates, to keep it one short line).
    File fields are absolute paths; `*_pem` fields hold what the kubeconfig gave inline (`*-data`).
    """

    path: Path
    context: str
    cluster: str
    user: str
    server: str
    namespace: str = "default"
    ca_pem: bytes | None = dataclasses.field(default=None, repr=False)
    """The CA bundle to verify the server against (from `certificate-authority[-data]`); None: the system's."""
    insecure_skip_tls_verify: bool = False
    client_cert_pem: bytes | None = dataclasses.field(default=None, repr=False)
    client_cert_file: Path | None = None
    client_key_pem: bytes | None = dataclasses.field(default=None, repr=False)
    client_key_file: Path | None = None
    token: str = dataclasses.field(default="", repr=False)
    """The bearer token: the inline `token`, else what `tokenFile` held when the kubeconfig was read."""
    token_file: Path | None = None
    """The `tokenFile` the token is re-read from (`headers`); None with an inline token (which wins)."""
    servers: tuple[str, ...] = ()
    """Every apiserver URL: `server`, then the others of `SERVERS_EXTENSION`; empty without the extension."""

    @property
    def has_client_certificate(self) -> bool:
        return self.client_cert_pem is not None or self.client_cert_file is not None

    def client_certificate_user(self) -> tuple[str, list[str]] | None:
        """(user, groups) the client certificate names (CN, every O), or None without one."""
        pem = self.client_cert_pem
        if pem is None and self.client_cert_file is not None:
            pem = _read(self.path, self.client_cert_file, "client-certificate")
        if pem is None:
            return None
        try:
            return user_of(x509.load_pem_x509_certificate(pem))
        except ValueError as e:
            raise KubeConfigError(
                f"{self.path}: the client certificate of user {self.user!r} is not PEM: {e}"
            ) from None

    def headers(self, clock: Clock = REAL_CLOCK) -> Mapping[str, str]:
        """Headers every request carries: `Authorization: Bearer <token>` when the user has a token, else none.

        A token from `tokenFile` is re-read from the file once a minute on `clock` (`kos.pki.bearer`, as
        client-go does: Kubernetes rotates ServiceAccount tokens), so the mapping answers the current token at
        each read; an inline `token` is fixed."""
        if self.token_file is not None:
            return BearerHeaders(TokenSource(self.token, self.token_file, clock=clock))
        return {AUTHORIZATION: f"Bearer {self.token}"} if self.token else {}

    def ssl_context(self) -> ssl.SSLContext | None:
        """The TLS context for an https:// server (None for http://): TLS >= 1.2; the server verified against
        the CA given (else the system's) with its host name checked, unless `insecure-skip-tls-verify`; the
        client certificate and key loaded when given.

        Python's `load_cert_chain` reads files only: inline `*-data` is written to a private temporary file
        (mode 0600) that is removed as soon as it is loaded. Raises KubeConfigError for a CA, certificate or key
        that does not load.
        """
        if not self.server.startswith("https://"):
            return None
        try:
            ctx = ssl.create_default_context(cadata=self.ca_pem.decode("ascii") if self.ca_pem else None)
        except (ssl.SSLError, UnicodeDecodeError, ValueError) as e:
            raise KubeConfigError(
                f"{self.path}: the certificate authority of cluster {self.cluster!r} does not load: {e}"
            ) from None
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        if self.insecure_skip_tls_verify:
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        if self.has_client_certificate:
            self._load_client_certificate(ctx)
        return ctx

    def certificate_reloader(self, ctx: ssl.SSLContext) -> ClientCertificateFiles | None:
        """What reloads the client certificate and key into `ctx` (made by `ssl_context`) when their files
        change (`kos.pki.reload`), or None when the kubeconfig gives them inline or not at all."""
        if self.client_cert_file is None or self.client_key_file is None:
            return None
        return ClientCertificateFiles(ctx, self.client_cert_file, self.client_key_file)

    def _load_client_certificate(self, ctx: ssl.SSLContext) -> None:
        try:
            if self.client_cert_pem is None and self.client_key_pem is None:
                ctx.load_cert_chain(str(self.client_cert_file), str(self.client_key_file))
                return
            cert = self.client_cert_pem or _read(self.path, self.client_cert_file, "client-certificate")
            key = self.client_key_pem or _read(self.path, self.client_key_file, "client-key")
            load_pem_pair(ctx, cert, key)
        except (ssl.SSLError, OSError) as e:
            raise KubeConfigError(
                f"{self.path}: the client certificate and key of user {self.user!r} do not load: {self._why_not(e)}"
            ) from None

    def _why_not(self, e: Exception) -> str:
        """Which of the client certificate and key does not load, and why (OpenSSL's "PEM lib" names neither)."""
        try:
            cert = self.client_cert_pem or _read(self.path, self.client_cert_file, "client-certificate")
            key = self.client_key_pem or _read(self.path, self.client_key_file, "client-key")
        except KubeConfigError as unreadable:
            return str(unreadable)
        try:
            public = x509.load_pem_x509_certificate(cert).public_key()
        except ValueError:
            return "the client certificate is not a PEM certificate"
        try:
            private = serialization.load_pem_private_key(key, password=None)
        except (ValueError, TypeError):
            return "the client key is not a PEM private key without a passphrase"
        if private.public_key() != public:
            return "the client key is not the private key of the client certificate"
        return str(e)


def load_kubeconfig(path: str | os.PathLike[str], *, context: str | None = None) -> KubeConfig:
    """The current context of the kubeconfig at `path` (or the context named `context`), resolved.

    Raises KubeConfigError, naming the file and what is wrong, when the file cannot be read or parsed, the
    context, its cluster or its user is missing, the cluster has no server, a field has the wrong type or bad
    base64, a file it names cannot be read, both a file and its inline data are given (clientcmd's
    validation refuses them too), a certificate comes without its key, or a setting kos does not implement
    is used (`UNSUPPORTED_USER_FIELDS`, `UNSUPPORTED_CLUSTER_FIELDS`).
    """
    where = Path(path).absolute()
    try:
        doc = yaml.load(where.read_bytes(), Loader=_LOADER)
    except OSError as e:
        raise KubeConfigError(f"cannot read the kubeconfig {where}: {e.strerror or e}") from None
    except yaml.YAMLError as e:
        raise KubeConfigError(f"{where} is not a YAML kubeconfig: {_yaml_problem(e)}") from None
    if not isinstance(doc, dict):
        raise KubeConfigError(f"{where} is not a kubeconfig (a YAML mapping with clusters, users and contexts)")
    r = _Reader(where, doc)
    name = context or r.text(doc, "current-context", "the kubeconfig")
    if not name:
        raise KubeConfigError(f"{where}: no current-context is set and no context was named")
    ctx = r.named("contexts", "context", name)
    cluster_name = r.text(ctx, "cluster", f"context {name!r}")
    user_name = r.text(ctx, "user", f"context {name!r}")
    if not cluster_name:
        raise KubeConfigError(f"{where}: context {name!r} names no cluster")
    cluster = r.named("clusters", "cluster", cluster_name)
    user = r.named("users", "user", user_name) if user_name else {}
    return KubeConfig(
        where, name, cluster_name, user_name, namespace=r.text(ctx, "namespace", f"context {name!r}") or "default",
        **r.cluster(cluster_name, cluster), **r.user(user_name, user),
    )  # fmt: skip


class _Reader:
    """Typed access to one parsed kubeconfig, every error naming the file."""

    def __init__(self, path: Path, doc: dict[Any, Any]) -> None:
        self.path, self.doc = path, doc

    def fail(self, problem: str) -> KubeConfigError:
        return KubeConfigError(f"{self.path}: {problem}")

    def text(self, m: dict[Any, Any], key: str, what: str) -> str:
        v = m.get(key)
        if v is None:
            return ""
        if not isinstance(v, str):
            raise self.fail(f"{key} of {what} is not a string")
        return v

    def named(self, section: str, kind: str, name: str) -> dict[Any, Any]:
        """The `kind` mapping of the entry called `name` in the list `section`."""
        entries = self.doc.get(section) or []
        if not isinstance(entries, list):
            raise self.fail(f"{section} is not a list")
        for e in entries:
            if isinstance(e, dict) and e.get("name") == name:
                body = e.get(kind)
                if not isinstance(body, dict):
                    raise self.fail(f"{kind} {name!r} has no {kind} mapping")
                return body
        raise self.fail(f"no {kind} named {name!r} in {section}")

    def file(self, m: dict[Any, Any], key: str, what: str) -> Path | None:
        """An absolute path: relative ones are relative to the kubeconfig's directory."""
        v = self.text(m, key, what)
        return (self.path.parent / v) if v else None

    def data(self, m: dict[Any, Any], key: str, what: str) -> bytes | None:
        v = self.text(m, key, what)
        if not v:
            return None
        try:
            return base64.b64decode(v, validate=True)
        except (binascii.Error, ValueError):
            raise self.fail(f"{key} of {what} is not base64") from None

    def one_of(self, m: dict[Any, Any], key: str, what: str) -> tuple[bytes | None, Path | None]:
        """(`key-data`, `key` as a path): at most one of them given."""
        data, file = self.data(m, f"{key}-data", what), self.file(m, key, what)
        if data is not None and file is not None:
            raise self.fail(f"{what} gives both {key} and {key}-data: give one")
        return data, file

    def cluster(self, name: str, c: dict[Any, Any]) -> dict[str, Any]:
        what = f"cluster {name!r}"
        self.unsupported(c, UNSUPPORTED_CLUSTER_FIELDS, what)
        server = self.text(c, "server", what)
        if not server.startswith(("http://", "https://")):
            raise self.fail(f"{what} has no http:// or https:// server" + (f" ({server!r})" if server else ""))
        ca, ca_file = self.one_of(c, "certificate-authority", what)
        if ca_file is not None:
            ca = _read(self.path, ca_file, f"certificate-authority of {what}")
        insecure = c.get("insecure-skip-tls-verify", False)
        if not isinstance(insecure, bool):
            raise self.fail(f"insecure-skip-tls-verify of {what} is not true or false")
        if (
            insecure and ca is not None
        ):  # client-go: "specifying a root certificates file with the insecure flag is not allowed"
            raise self.fail(f"{what} gives a certificate authority and insecure-skip-tls-verify: give one")
        server = server.rstrip("/")
        servers = self.servers(c, server, what)
        return {"server": server, "servers": servers, "ca_pem": ca,
                "insecure_skip_tls_verify": insecure}  # fmt: skip

    def servers(self, c: dict[Any, Any], server: str, what: str) -> tuple[str, ...]:
        """`server`, then the other URLs of the cluster's `SERVERS_EXTENSION` (each once); () without it."""
        exts = c.get("extensions") or []
        if not isinstance(exts, list):
            raise self.fail(f"extensions of {what} is not a list")
        for e in exts:
            if not isinstance(e, dict) or e.get("name") != SERVERS_EXTENSION:
                continue
            body = e.get("extension")
            urls = body.get("servers") if isinstance(body, dict) else None
            if not isinstance(urls, list) or not urls:
                raise self.fail(f"extension {SERVERS_EXTENSION} of {what} has no list of servers")
            out: list[str] = []
            for u in urls:
                if not isinstance(u, str) or not _is_url(u):
                    raise self.fail(f"extension {SERVERS_EXTENSION} of {what}: {u!r} is not an http:// or https:// URL")
                out.append(u.rstrip("/"))
            if len({u.startswith("https://") for u in [server, *out]}) > 1:
                raise self.fail(f"extension {SERVERS_EXTENSION} of {what} mixes http:// and https:// servers")
            return (server, *(u for u in dict.fromkeys(out) if u != server))
        return ()

    def user(self, name: str, u: dict[Any, Any]) -> dict[str, Any]:
        what = f"user {name!r}"
        self.unsupported(u, UNSUPPORTED_USER_FIELDS, what)
        cert, cert_file = self.one_of(u, "client-certificate", what)
        key, key_file = self.one_of(u, "client-key", what)
        if (cert is None and cert_file is None) != (key is None and key_file is None):
            raise self.fail(f"{what} gives a client certificate without its key, or a key without its certificate")
        for f, field in ((cert_file, "client-certificate"), (key_file, "client-key")):
            if f is not None and not f.is_file():
                raise self.fail(f"{field} of {what}: {f} is not a readable file")
        token, token_file = self.text(u, "token", what), self.file(u, "tokenFile", what)
        if not token and token_file is not None:  # clientcmd: an inline token wins over tokenFile
            token = _read(self.path, token_file, f"tokenFile of {what}").decode("utf-8", "replace").strip()
            if not token:
                raise self.fail(f"tokenFile of {what}: {token_file} is empty")
        else:
            token_file = None  # the inline token is the one used, for good
        if token and not token.isprintable():
            raise self.fail(f"the token of {what} holds characters a header cannot carry")
        return {"client_cert_pem": cert, "client_cert_file": cert_file, "client_key_pem": key,
                "client_key_file": key_file, "token": token, "token_file": token_file}  # fmt: skip

    def unsupported(self, m: dict[Any, Any], fields: tuple[str, ...], what: str) -> None:
        used = [f for f in fields if m.get(f) not in (None, "", [], {})]
        if used:
            raise self.fail(f"{what} uses {', '.join(used)}, which kos does not support")


def _is_url(value: str) -> bool:
    """An http:// or https:// URL with a host (and a valid port, if any)."""
    try:
        u = urllib.parse.urlsplit(value)
        u.port  # noqa: B018 - raises ValueError for a bad port
    except ValueError:
        return False
    return u.scheme in ("http", "https") and bool(u.hostname)


def _yaml_problem(e: yaml.YAMLError) -> str:
    """A YAML error on one line: the problem and where (PyYAML's own message spans several lines)."""
    problem = getattr(e, "problem", None) or str(e)
    mark = getattr(e, "problem_mark", None)
    where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
    return " ".join(f"{problem}{where}".split())


def _read(kubeconfig: Path, path: Path | None, what: str) -> bytes:
    assert path is not None
    try:
        return path.read_bytes()
    except OSError as e:
        raise KubeConfigError(f"{kubeconfig}: {what}: cannot read {path}: {e.strerror or e}") from None
