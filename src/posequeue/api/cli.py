"""``posequeue api``: serve the HTTP API and the web page with uvicorn."""

from __future__ import annotations

import argparse
import sys

from posequeue.errors import EXIT_REFUSED

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8000


def add_command(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "api",
        help="serve the HTTP API (/v1, OpenAPI at /docs) and the web page",
        description="Serve the HTTP API and the web page. Tokens come from POSEQUEUE_API_TOKENS "
        "(comma-separated) or POSEQUEUE_API_TOKEN_FILE; without any the API is open and may only "
        "listen on a loopback address. Callbacks are signed with POSEQUEUE_CALLBACK_SECRET.",
    )
    p.add_argument("--host", default=DEFAULT_HOST, help=f"address to listen on (default {DEFAULT_HOST})")
    p.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port (default {DEFAULT_PORT})")
    p.add_argument("--loglevel", default="info", help="uvicorn's log level (default info)")
    p.set_defaults(run=cmd_api)


def cmd_api(args: argparse.Namespace) -> int:
    from posequeue.config.settings import get_settings
    from posequeue.fleet.cli import is_loopback

    try:
        import uvicorn

        from posequeue.api.app import create_app
        from posequeue.api.auth import TokenFileError, Tokens
    except ImportError as exc:
        print(f"error: the API is not installed ({exc.name}); pip install 'posequeue[api]'", file=sys.stderr)
        return EXIT_REFUSED
    settings = get_settings()
    try:
        tokens = Tokens.from_settings(settings)
    except TokenFileError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_REFUSED
    if not tokens.enabled and not is_loopback(args.host):
        print(
            f"error: refusing to serve the API on {args.host or 'every interface'} without tokens: "
            "set POSEQUEUE_API_TOKENS (comma-separated) or POSEQUEUE_API_TOKEN_FILE, or listen on "
            "127.0.0.1",
            file=sys.stderr,
        )
        return EXIT_REFUSED
    if not tokens.enabled:
        print("warning: no API tokens set: anyone on this host can use the API", file=sys.stderr)
    uvicorn.run(create_app(settings, tokens), host=args.host, port=args.port, log_level=args.loglevel)
    return 0
