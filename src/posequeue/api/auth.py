"""API tokens and signed result links.

Tokens come from ``POSEQUEUE_API_TOKENS`` (comma-separated) and ``POSEQUEUE_API_TOKEN_FILE`` (one
a line, ``#`` comments); only their SHA-256 digests are kept. A client sends
``Authorization: Bearer TOKEN``. With no token configured the API is open, which ``posequeue api``
allows on a loopback address only.

A ``<video>`` element or a download link cannot send a header, so job answers carry result links
signed for one job's one file and an hour (HMAC over the path and the expiry). Their key derives
from the token digests: every API process with the same tokens accepts them, and changing the
tokens revokes them.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from dataclasses import dataclass, field
from pathlib import Path

from fastapi import Request

from posequeue.api.errors import ApiError
from posequeue.config.settings import Settings

LINK_LIFETIME = 3600
_CHALLENGE = {"WWW-Authenticate": "Bearer"}


class TokenFileError(ValueError):
    """The token file named by POSEQUEUE_API_TOKEN_FILE cannot be read."""


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


@dataclass(frozen=True)
class Tokens:
    digests: frozenset[bytes] = field(default_factory=frozenset)

    @classmethod
    def from_settings(cls, settings: Settings) -> Tokens:
        tokens = [t.strip() for t in settings.api_tokens.split(",")]
        if settings.api_token_file:
            tokens += read_token_file(settings.api_token_file)
        return cls(frozenset(_digest(t) for t in tokens if t))

    @property
    def enabled(self) -> bool:
        return bool(self.digests)

    def valid(self, token: str) -> bool:
        presented = _digest(token)
        return any(hmac.compare_digest(presented, known) for known in self.digests)

    @property
    def _link_key(self) -> bytes:
        return hashlib.sha256(b"posequeue-result-links\0" + b"".join(sorted(self.digests))).digest()

    def _signature(self, path: str, expires: int) -> str:
        return hmac.new(self._link_key, f"{path}\n{expires}".encode(), hashlib.sha256).hexdigest()

    def sign(self, path: str, now: float | None = None) -> str:
        """``path`` with a query that lets a client without the token fetch it for an hour."""
        if not self.enabled:
            return path
        expires = int((time.time() if now is None else now) + LINK_LIFETIME)
        return f"{path}?expires={expires}&sig={self._signature(path, expires)}"

    def link_valid(self, path: str, expires: str | None, sig: str | None) -> bool:
        if not expires or not sig or not expires.isdigit() or int(expires) < time.time():
            return False
        return hmac.compare_digest(self._signature(path, int(expires)), sig)

    def check(self, request: Request) -> None:
        """Refuse the request (401) unless it carries a valid bearer token."""
        if not self.enabled:
            return
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        if not header:
            raise ApiError(
                401,
                "missing_token",
                "this endpoint needs a token: send 'Authorization: Bearer TOKEN'",
                _CHALLENGE,
            )
        if scheme.lower() != "bearer" or not token.strip():
            raise ApiError(401, "bad_token", "the Authorization header must be 'Bearer TOKEN'", _CHALLENGE)
        if not self.valid(token.strip()):
            raise ApiError(401, "bad_token", "the token is not one this server accepts", _CHALLENGE)


def read_token_file(path: Path) -> list[str]:
    try:
        lines = path.read_text().splitlines()
    except OSError as exc:
        raise TokenFileError(f"POSEQUEUE_API_TOKEN_FILE={path}: cannot read it ({exc.strerror})") from None
    return [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]
