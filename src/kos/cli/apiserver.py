"""`kos apiserver --storage URL --listen HOST:PORT (--tls-cert-file F --tls-private-key-file F | --insecure)`.

The API server serves HTTPS, with authentication and authorization (`kos.cli.authflags`), unless told
`--insecure`: plain HTTP where every caller may do everything, for benchmarks and tests. Without either it
does not start (one line, exit 2): an apiserver open to anyone by default is how clusters get taken over.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import sys
from pathlib import Path

from kos.apiserver.auth.authn.webhook import WebhookEndpoint
from kos.apiserver.auth.authz.build import build_admission, build_authorizer
from kos.apiserver.auth.config import AuthSettings, build_gate, reload_client_cas
from kos.apiserver.auth.gate import Gate
from kos.apiserver.server import APIServer, Settings
from kos.cli import authflags
from kos.cli.common import UsageError, add_logging_flags, run_until_signalled
from kos.cli.settings import at_least, existing_file, host_port, number_at_least, positive
from kos.http.tls import ReloadingContext, ServingFiles
from kos.pki.kubeconfig import KubeConfigError, load_kubeconfig
from kos.storage.interface import StoreError
from kos.storage.url import StoreURLError
from kos.util.clock import REAL_CLOCK, Clock
from kos.util.log import get_logger

log = get_logger(__name__)


_BOUNDS: tuple[tuple[str, type, int, str], ...] = (
    # (Settings field, type, least value (ints; floats must be positive), help): one flag each,
    # `--max-header-line-bytes` and so on
    ("max_header_line_bytes", int, 256, "longest request line or header line (431 past it)"),
    ("max_headers", int, 8, "most header fields in a request (431)"),
    ("header_timeout", float, 0, "seconds a request head may take from its first byte"),
    ("idle_timeout", float, 0, "seconds a connection may idle or a client not read its answers"),
    ("max_pipelined_requests", int, 1, "requests read ahead of their answers on one connection"),
    ("max_watches_per_connection", int, 1, "watches on one multiplexed connection (429 past it)"),
    ("max_watches_per_client", int, 1, "watches from one client address, HTTP and multiplexed (429 past it)"),
    ("max_watchmux_connections_per_client", int, 1,
     "watch multiplexer connections from one client address (429 past it)"),
    ("watchmux_max_bytes", int, 1 << 20,
     "output queued for one multiplexed connection before its slowest watches are ended"),
    ("shutdown_timeout", float, 0, "seconds shutdown waits for calls in flight and for watch clients to take their end"),
    ("max_requests_inflight", int, 0, "read-only calls served at once; more are answered 429 (0: no cap)"),
    ("max_mutating_requests_inflight", int, 0, "mutating calls served at once; more are answered 429 (0: no cap)"),
)  # fmt: skip

NO_TLS = ("serve HTTPS with --tls-cert-file and --tls-private-key-file, "
          "or plain HTTP without authentication with --insecure")  # fmt: skip
"""The one line `kos apiserver` exits 2 with when told neither."""


NO_AUTHENTICATION = ("warning: no way to authenticate is configured (--client-ca-file, --token-auth-file, "
                     "--requestheader-client-ca-file, --authentication-kubeconfig): every request but /healthz, "
                     "/livez, /readyz and /version will be refused (401)")  # fmt: skip
"""The one line a secure `kos apiserver` warns with when it can authenticate no one."""


def authenticates_no_one(auth: AuthSettings) -> bool:
    """Whether `auth` names no authenticator: a secure server would then answer 401 to every resource call."""
    return all(f is None for f in (auth.client_ca_file, auth.token_auth_file, auth.requestheader_client_ca_file,
                                   auth.authentication_kubeconfig))  # fmt: skip


@dataclasses.dataclass(frozen=True, slots=True)
class ServeSettings:
    """What `kos apiserver` runs with: the server's settings, its TLS files (None: `--insecure`, plain HTTP
    and no authentication) and its authentication and authorization settings."""

    server: Settings
    tls: ServingFiles | None
    auth: AuthSettings


STORAGE_SCHEMES = ("memory", "sqlite", "etcd")


def storage_url(value: str) -> str:
    """A storage URL of a known scheme; the rest is checked when the store opens (kos.storage.url)."""
    scheme, sep, _ = value.partition("://")
    if not sep or scheme not in STORAGE_SCHEMES:
        raise argparse.ArgumentTypeError(f"{value!r}: use memory://, sqlite:///path or etcd://host:port")
    return value


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--storage",
        type=storage_url,
        default="memory://",
        help="memory://, sqlite:///path/state.db (durable) or etcd://host:port[,host:port...][/prefix]",
    )
    p.add_argument("--listen", type=host_port, default=("127.0.0.1", 8080), help="HOST:PORT to serve on")
    p.add_argument(
        "--watch-cache-size",
        type=at_least(100),
        default=50_000,
        help="events of history kept per kind for resuming watches",
    )
    p.add_argument("--max-request-bytes", type=at_least(4096), default=1 << 20, help="largest request body accepted")
    p.add_argument(
        "--check-subnets-conflicts",
        default=True,
        action=argparse.BooleanOptionalAction,
        help="reject creating a Subnet that conflicts with an existing one",
    )
    p.add_argument("--bookmark-interval", type=positive, default=10.0, help="seconds between watch bookmarks")
    p.add_argument("--shutdown-delay-duration", type=number_at_least(0), default=0.0,
                   help="seconds a stopping server keeps serving with /readyz false before it stops accepting")  # fmt: skip
    # bounds on what one client can make the server hold (docs/operations.md); in `p` itself, not an argument
    # group, whose flags would not read KOS_<FLAG>
    d = Settings()
    for name, kind, least, text in _BOUNDS:
        check = positive if kind is float else at_least(least)
        p.add_argument("--" + name.replace("_", "-"), type=check, default=getattr(d, name), help=text)
    p.add_argument(
        "--tls-cert-file",
        type=existing_file,
        default=None,
        help="the serving certificate (PEM, with its intermediates); reloaded when it changes",
    )
    p.add_argument(
        "--tls-private-key-file",
        type=existing_file,
        default=None,
        help="the serving certificate's private key (PEM); reloaded when it changes",
    )
    p.add_argument(
        "--insecure",
        action="store_true",
        help="serve plain HTTP with no authentication or authorization (benchmarks and tests)",
    )
    authflags.add_arguments(p)
    add_logging_flags(p)  # fmt: skip


def settings_from(args: argparse.Namespace) -> ServeSettings:
    """The settings; `UsageError` when neither TLS files nor `--insecure` are given, when only one of the
    two TLS files is, or when `--insecure` comes with TLS or authentication flags."""
    auth = authflags.settings_from(args)
    cert, key = args.tls_cert_file, args.tls_private_key_file
    if args.insecure:
        tls = (("--tls-cert-file", cert), ("--tls-private-key-file", key))
        given = [flag for flag, value in tls if value is not None] + _auth_flags_given(auth)
        if given:
            raise UsageError(f"--insecure serves plain HTTP without authentication: it cannot take {', '.join(given)}")
        return ServeSettings(_server_settings(args), None, auth)
    if cert is None and key is None:
        raise UsageError(NO_TLS)
    if cert is None or key is None:
        raise UsageError("--tls-cert-file and --tls-private-key-file go together: give both")
    return ServeSettings(_server_settings(args), ServingFiles(cert, key, tuple(auth.client_ca_files())), auth)


def _auth_flags_given(auth: AuthSettings) -> list[str]:
    """The authentication and authorization flags whose value is not their default."""
    default = AuthSettings()
    return ["--" + f.name.replace("_", "-") for f in dataclasses.fields(auth)
            if getattr(auth, f.name) != getattr(default, f.name)]  # fmt: skip


def _server_settings(args: argparse.Namespace) -> Settings:
    host, port = args.listen
    return Settings(
        storage=args.storage,
        host=host,
        port=port,
        watch_cache_size=args.watch_cache_size,
        max_request_bytes=args.max_request_bytes,
        check_subnet_conflicts=args.check_subnets_conflicts,
        bookmark_interval=args.bookmark_interval,
        shutdown_delay=args.shutdown_delay_duration,
        **{name: getattr(args, name) for name, *_ in _BOUNDS},
    )


def run(settings: ServeSettings) -> int:
    async def main(stop: asyncio.Event) -> int:
        tls, gate = None, None
        if settings.tls is not None:
            try:
                tls = ReloadingContext(settings.tls, clock=REAL_CLOCK)
            except (OSError, ValueError) as e:
                raise UsageError(f"the TLS files do not load: {e}") from None
            gate = secure_gate(settings.auth)
            tls.on_reload.append(lambda: reload_client_cas(gate, settings.auth))
            if authenticates_no_one(settings.auth):
                print(f"kos apiserver: {NO_AUTHENTICATION}", file=sys.stderr, flush=True)
        server = APIServer(settings.server, ssl=tls, gate=gate)
        try:
            await server.start()
        except (StoreURLError, StoreError, OSError) as e:
            raise UsageError(str(e)) from None
        print(f"kos apiserver ready at {server.url}", flush=True)
        await stop.wait()
        log.info("shutting down")
        await server.stop()
        if gate is not None:
            await gate.aclose()
        return 0

    return run_until_signalled(main, component="apiserver")


def secure_gate(auth: AuthSettings) -> Gate:
    """Authentication (`build_gate`), the built-in roles (`build_authorizer`) and the node restriction
    (`build_admission`) from the flags. Raises UsageError naming a file that does not load."""
    try:
        token_review = webhook_endpoint(auth.authentication_kubeconfig)
        sar = webhook_endpoint(auth.authorization_kubeconfig)
        return build_gate(auth, REAL_CLOCK, authorizer=build_authorizer(auth, REAL_CLOCK, webhook=sar),
                          admission=build_admission(), token_review=token_review)  # fmt: skip
    except (OSError, ValueError, KubeConfigError) as e:
        raise UsageError(f"the authentication files do not load: {e}") from None


def webhook_endpoint(kubeconfig: Path | None, clock: Clock = REAL_CLOCK) -> WebhookEndpoint | None:
    """Where a kubeconfig (`--authentication-kubeconfig`, `--authorization-kubeconfig`) points: its server, TLS
    context and credentials — a `tokenFile` token (a projected ServiceAccount token, rotated by the kubelet)
    re-read once a minute on `clock` (kos.pki.bearer). Raises KubeConfigError."""
    if kubeconfig is None:
        return None
    cfg = load_kubeconfig(kubeconfig)
    return WebhookEndpoint(cfg.server, cfg.ssl_context(), cfg.headers(clock))
