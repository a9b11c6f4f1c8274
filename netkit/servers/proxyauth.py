"""Users from an htpasswd-style file (`user:hash` lines): the proxy's
Proxy-Authorization: Basic, and the SMTP relay's AUTH PLAIN/LOGIN.

Hashes are bcrypt (`$2y$`, `$2b$`, `$2a$`, as `htpasswd -B` writes) or SHA-256-crypt
(`$5$`, `htpasswd -2`); checked with libpass (the maintained passlib) and bcrypt.
Anything else (plaintext, MD5-crypt, crypt(3) DES) is refused when the file is read:
a proxy password file is a file worth stealing. A check costs tens of milliseconds
(bcrypt's point), so it runs in a worker thread, and a verified pair is remembered
(as a SHA-256 of the header, never the password) for `remember` seconds.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import time
from pathlib import Path

import anyio.to_thread

from ..errors import ConfigError

_SCHEMES = (("$2y$", "bcrypt"), ("$2b$", "bcrypt"), ("$2a$", "bcrypt"), ("$5$", "sha256"))


class Credentials:
    def __init__(self, path: Path, *, remember: float = 300.0) -> None:
        self.path = path
        self.remember = remember
        self.users: dict[str, tuple[str, str]] = {}  # user -> (scheme, hash)
        self._verified: dict[bytes, float] = {}
        problems = []
        try:
            text = path.read_text()
        except OSError as exc:
            raise ConfigError([f"proxy.auth_file: cannot read {path}: {exc.strerror}"]) from None
        for n, line in enumerate(text.splitlines(), 1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            user, sep, hashed = line.partition(":")
            scheme = next((s for prefix, s in _SCHEMES if hashed.startswith(prefix)), None)
            if not sep or not user:
                problems.append(f"proxy.auth_file: {path}:{n}: not a user:hash line")
            elif scheme is None:
                problems.append(f"proxy.auth_file: {path}:{n}: user {user!r} has no bcrypt or "
                                "SHA-256-crypt hash (plaintext and older schemes are refused)")
            else:
                self.users[user] = (scheme, hashed)
        if problems:
            raise ConfigError(problems)
        if not self.users:
            raise ConfigError([f"proxy.auth_file: {path} has no users"])

    def known(self, header: bytes | None, now: float) -> bool:
        """The header's credentials were verified within `remember` seconds."""
        if not header:
            return False
        when = self._verified.get(hashlib.sha256(header).digest())
        return when is not None and now - when < self.remember

    async def check(self, header: bytes | None) -> bool:
        """`Proxy-Authorization: Basic ...` names a user of the file with the right
        password (verified in a worker thread)."""
        if not header or header[:6].lower() != b"basic ":
            return False
        try:
            user, _, password = base64.b64decode(header[6:].strip(), validate=True) \
                .decode("utf-8").partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return False
        entry = self.users.get(user)
        if entry is None:
            return False
        ok = await anyio.to_thread.run_sync(_verify, entry, password)
        if ok:
            if len(self._verified) > 10_000:
                self._verified.clear()
            self._verified[hashlib.sha256(header).digest()] = time.monotonic()
        return ok


def verify_password(credentials: Credentials, user: str, password: str) -> bool:
    """A user and password against the file (blocking: bcrypt takes tens of ms), with
    the same memory of recent successes as the header checks."""
    key = f"{user}:{password}".encode()
    if credentials.known(key, time.monotonic()):
        return True
    entry = credentials.users.get(user)
    if entry is None or not _verify(entry, password):
        return False
    credentials._verified[hashlib.sha256(key).digest()] = time.monotonic()
    return True


def _verify(entry: tuple[str, str], password: str) -> bool:
    from passlib.hash import bcrypt, sha256_crypt
    scheme, hashed = entry
    try:
        return (bcrypt if scheme == "bcrypt" else sha256_crypt).verify(password, hashed)
    except ValueError:  # a malformed hash: no password matches it
        return False
