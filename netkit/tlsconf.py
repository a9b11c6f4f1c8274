"""SSL contexts from certificate files, shared by every server and client that speaks TLS.

Defaults follow Mozilla's "intermediate" profile: TLS 1.2 minimum, ECDHE with
AES-GCM or ChaCha20 for TLS 1.2, OpenSSL's TLS 1.3 suites, no compression,
no renegotiation. Clients verify certificates and host names unless told
otherwise. `FileWatch` polls modification times so that certificates can be
replaced on disk and picked up without a restart (polling needs no inotify
and sees atomic renames, which is how certbot and friends replace files).
"""

from __future__ import annotations

import logging
import os
import ssl
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, TypeVar

import anyio

from .config import Duration
from .errors import ConfigError

log = logging.getLogger("netkit.tls")
T = TypeVar("T")

#: TLS 1.2 suites with forward secrecy and AEAD only (Mozilla intermediate, 2024).
MODERN_CIPHERS = "ECDHE+AESGCM:ECDHE+CHACHA20"
_VERSIONS = {"1.2": ssl.TLSVersion.TLSv1_2, "1.3": ssl.TLSVersion.TLSv1_3}


def _harden(ctx: ssl.SSLContext, min_version: str, ciphers: str, alpn: Iterable[str]) -> None:
    ctx.minimum_version = _VERSIONS[min_version]
    ctx.set_ciphers(ciphers)
    ctx.options |= ssl.OP_NO_COMPRESSION | ssl.OP_NO_RENEGOTIATION
    alpn = list(alpn)
    if alpn:
        ctx.set_alpn_protocols(alpn)


def _require(what: str, **paths: Path | None) -> None:
    # OpenSSL's own error for a missing file names no file; ours names file and key
    missing = [f"{what}: {name}: {path}: file not found" for name, path in paths.items()
               if path is not None and not path.is_file()]
    if missing:
        raise ConfigError(missing)


def _load_chain(ctx: ssl.SSLContext, cert: Path, key: Path | None, what: str) -> None:
    _require(what, cert=cert, key=key)
    try:
        ctx.load_cert_chain(cert, key)
    except (ssl.SSLError, OSError) as exc:
        raise ConfigError([f"{what}: cannot load certificate {cert} with key {key}: "
                           f"{getattr(exc, 'reason', None) or exc}"]) from None


def _load_ca(ctx: ssl.SSLContext, ca: Path, what: str) -> None:
    _require(what, ca=ca)
    try:
        ctx.load_verify_locations(cafile=ca)
    except (ssl.SSLError, OSError) as exc:
        raise ConfigError([f"{what}: cannot load CA bundle {ca}: "
                           f"{getattr(exc, 'reason', None) or exc}"]) from None


def server_context(cert: Path | None, key: Path | None, *, client_ca: Path | None = None,
                   alpn: Iterable[str] = (), min_version: str = "1.2",
                   ciphers: str = MODERN_CIPHERS, what: str = "tls") -> ssl.SSLContext:
    """A server context; with `client_ca`, clients must present a certificate it signed."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    _harden(ctx, min_version, ciphers, alpn)
    ctx.options |= ssl.OP_CIPHER_SERVER_PREFERENCE
    if cert is not None:
        _load_chain(ctx, cert, key, what)
    if client_ca is not None:
        _load_ca(ctx, client_ca, what)
        ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


def client_context(*, ca: Path | None = None, cert: Path | None = None, key: Path | None = None,
                   alpn: Iterable[str] = (), min_version: str = "1.2",
                   ciphers: str = MODERN_CIPHERS, what: str = "tls") -> ssl.SSLContext:
    """A verifying client context: `ca` or the system store; optional client certificate."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # CERT_REQUIRED and check_hostname on
    _harden(ctx, min_version, ciphers, alpn)
    if ca is not None:
        _load_ca(ctx, ca, what)
    else:
        ctx.load_default_certs(ssl.Purpose.SERVER_AUTH)
    if cert is not None:
        _load_chain(ctx, cert, key, what)
    return ctx


def name_matches(pattern: str, name: str) -> bool:
    """Exact match, or ``*.example.com`` matching exactly one more label (RFC 6125 6.4.3)."""
    pattern, name = pattern.lower().rstrip("."), name.lower().rstrip(".")
    if pattern.startswith("*."):
        head, _, rest = name.partition(".")
        return bool(head) and rest == pattern[2:]
    return pattern == name


class SNISelector:
    """Picks the certificate by the name the client asked for (SNI).

    Installed as the default context's sni_callback; the chosen name is kept on the
    SSLObject as ``sni`` so the connection can route on it after the handshake. With
    no default certificate, a name that matches no route gets an unrecognized_name alert.
    """

    def __init__(self, default: ssl.SSLContext, routes: list[tuple[str, ssl.SSLContext]],
                 has_default_cert: bool) -> None:
        self.default = default
        self.routes = routes
        self.has_default_cert = has_default_cert
        if routes or not has_default_cert:
            default.sni_callback = self._select

    def lookup(self, name: str | None) -> ssl.SSLContext | None:
        if name:
            for pattern, ctx in self.routes:
                if name_matches(pattern, name):
                    return ctx
        return None

    def _select(self, obj: ssl.SSLObject, name: str | None, _ctx: ssl.SSLContext) -> int | None:
        obj.sni = name  # type: ignore[attr-defined]
        target = self.lookup(name)
        if target is None:
            return None if self.has_default_cert else ssl.ALERT_DESCRIPTION_UNRECOGNIZED_NAME
        if target is not self.default:
            obj.context = target
        return None


class FileWatch:
    """Remembers files' (mtime, size, inode) and says when any of them changed."""

    def __init__(self, paths: Iterable[Path | None]) -> None:
        self.paths = sorted({p for p in paths if p is not None})
        self._seen = self._stat()

    def _stat(self) -> list[tuple[int, int, int] | None]:
        out: list[tuple[int, int, int] | None] = []
        for p in self.paths:
            try:
                st = os.stat(p)
                out.append((st.st_mtime_ns, st.st_size, st.st_ino))
            except OSError:
                out.append(None)
        return out

    def changed(self) -> bool:
        now = self._stat()
        if now != self._seen:
            self._seen = now
            return True
        return False


def rebuild_if_changed(label: str, watch: FileWatch, build: Callable[[], T]) -> T | None:
    """The rule every TLS listener follows when its files change on disk: build anew for
    new connections (open ones keep theirs); a build that fails keeps the old one and
    says why. Returns the new value, or None when nothing changed or the build failed."""
    if not watch.changed():
        return None
    try:
        value = build()
    except ConfigError as exc:
        log.error("%s: certificate files changed but cannot be loaded, keeping the old "
                  "ones: %s", label, "; ".join(exc.problems))
        return None
    log.info("%s: certificate files changed: reloaded for new connections", label)
    return value


@dataclass(frozen=True, slots=True, kw_only=True)
class ListenerTLS:
    """``[NAME.tls]``: TLS on a server's listeners, the same table for every server."""

    cert: Path
    """PEM certificate chain (`netkit cert` makes a development one)."""
    key: Path
    """PEM private key for `cert`."""
    client_ca: Path | None = None
    """Require client certificates signed by this CA bundle (mTLS)."""
    min_version: Literal["1.2", "1.3"] = "1.2"
    """Lowest TLS version allowed."""
    ciphers: str = MODERN_CIPHERS
    """TLS 1.2 cipher suites (OpenSSL syntax); TLS 1.3 uses OpenSSL's defaults."""
    alpn: tuple[str, ...] = ()
    """ALPN protocols accepted, in preference order."""
    watch_interval: Duration = Duration(2)
    """Seconds between checks of the files for changes; 0 turns it off."""


class ListenerContext:
    """The live SSL context of a `ListenerTLS`: what a `StreamServer` asks for each new
    connection, rebuilt when the files change or the config is reloaded."""

    def __init__(self, config: ListenerTLS, label: str) -> None:
        self.label = label
        self.config = config
        self.context = self._build(config)
        self.watch = FileWatch(self._files(config))

    def _build(self, config: ListenerTLS) -> ssl.SSLContext:
        return server_context(config.cert, config.key, client_ca=config.client_ca,
                              alpn=config.alpn, min_version=config.min_version,
                              ciphers=config.ciphers, what=f"{self.label}.tls")

    @staticmethod
    def _files(config: ListenerTLS) -> list[Path | None]:
        return [config.cert, config.key, config.client_ca]

    def get(self) -> ssl.SSLContext:
        return self.context

    def replace(self, config: ListenerTLS) -> None:
        """SIGHUP: build from the new config (ConfigError changes nothing), then swap."""
        context = self._build(config)
        self.config, self.context = config, context
        self.watch = FileWatch(self._files(config))

    async def watch_files(self) -> None:
        """Poll the files every `watch_interval` (run it in the server's task group)."""
        while self.config.watch_interval > 0:
            await anyio.sleep(self.config.watch_interval)
            context = rebuild_if_changed(self.label, self.watch,
                                         lambda: self._build(self.config))
            if context is not None:
                self.context = context
