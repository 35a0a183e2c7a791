"""One line for a person when a service cannot be used: Redis down, a password refused, TLS that
does not match the server. The command names the URL (password masked) and what to check, and
exits ``EXIT_UNAVAILABLE``; a traceback would only bury the cause."""

from __future__ import annotations

import ssl
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from posequeue.errors import EXIT_UNAVAILABLE

__all__ = ["EXIT_UNAVAILABLE", "is_redis_outage", "masked", "redis_problem"]

_SECRET_PARAMS = {"password", "pass", "secret", "token"}


def masked(url: str) -> str:
    """``url`` with its password (in the authority or the query) replaced by ``***``."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparsable URL>"
    netloc = parts.netloc
    if parts.password is not None:
        user, _, host = netloc.rpartition("@")
        name = user.split(":", 1)[0]
        netloc = f"{name}:***@{host}"
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        query = urlencode([(k, "***" if k.lower() in _SECRET_PARAMS else v) for k, v in pairs], safe="*")
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def _is_tls(exc: BaseException) -> bool:
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, ssl.SSLError) or "ssl" in str(seen).lower():
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def redis_problem(exc: BaseException, url: str, setting: str = "POSEQUEUE_BROKER_URL") -> str:
    """What went wrong talking to the Redis at ``url`` (set by ``setting``) and what to check."""
    import redis

    where = f"Redis at {masked(url)}"
    detail = str(exc).strip() or type(exc).__name__
    if isinstance(exc, redis.AuthenticationError) or "NOAUTH" in detail or "WRONGPASS" in detail:
        return (
            f"{where} refused the credentials ({detail}): check the user and password in "
            f"{setting} (redis://USER:PASSWORD@host:port/db)"
        )
    if _is_tls(exc) or (isinstance(exc, redis.RedisError) and "SSL" in detail):
        return (
            f"TLS with {where} failed ({detail}): check that the scheme matches the server "
            f"(rediss:// for TLS, redis:// without) and the ssl_* options in {setting} "
            "(ssl_cert_reqs=required|optional|none, ssl_ca_certs=/path/to/ca.pem)"
        )
    if isinstance(exc, redis.TimeoutError):
        return f"{where} did not answer in time ({detail}): check that it runs and is not overloaded"
    if isinstance(exc, redis.ConnectionError):
        return (
            f"cannot reach {where} ({detail}): check {setting} and that Redis runs and accepts "
            "connections from this host"
        )
    return f"{where} answered with an error ({detail}): check {setting}"


def is_redis_outage(exc: BaseException) -> bool:
    """Errors that mean Redis (or kombu's connection to it) cannot be used, not a bug of ours."""
    import redis
    from kombu.exceptions import OperationalError

    if isinstance(exc, redis.ConnectionError | redis.TimeoutError | OperationalError):
        return True  # AuthenticationError is a ConnectionError; kombu wraps what it meets
    return isinstance(exc, redis.RedisError) and _is_tls(exc)  # e.g. a bad ssl_cert_reqs value
