"""Bearer-token access to the web ports: every path but /health and /metrics.

The worker's port serves Faust's table views (`/table/...`), `/health/detailed` and `/stores/`:
album data and error texts. Each needs `Authorization: Bearer <WEB_AUTH_TOKEN>` and answers 401
without it; `/health` (a load balancer's probe) and `/metrics` (Prometheus) stay open and carry
no album data. With WEB_AUTH_TOKEN unset the worker makes a token at its first start and keeps
it in DATA_DIR/web-token (mode 0600); the stage processes it starts share DATA_DIR, so they
read the same token, and so can an operator (`make run` prints curl lines with it).
"""

from __future__ import annotations

import hmac
import logging
import os
import secrets
from pathlib import Path

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from streams.settings import Settings, settings

log = logging.getLogger(__name__)

#: paths anyone may read: liveness for probes, metrics for Prometheus (no album data in either)
PUBLIC_PATHS = frozenset({"/health", "/metrics"})

TOKEN_FILE = "web-token"


def token_path(config: Settings = settings) -> Path:
    return config.data_dir / TOKEN_FILE


def web_token(config: Settings = settings) -> str:
    """WEB_AUTH_TOKEN, else the token kept in DATA_DIR/web-token (made there once, 0600)."""
    if config.web_auth_token:
        return config.web_auth_token.get()
    path = token_path(config)
    path.parent.mkdir(parents=True, exist_ok=True)
    token = secrets.token_urlsafe(32)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        kept = path.read_text().strip()
        if kept:
            return kept
        # an empty file (a crash between create and write): make it again
        path.unlink(missing_ok=True)
        return web_token(config)
    with os.fdopen(fd, "w") as out:
        out.write(token + "\n")
    log.warning("web: WEB_AUTH_TOKEN is unset; made a token, kept in %s (mode 0600)", path)
    return token


def authorized(header: str | None, token: str) -> bool:
    """Whether an Authorization header carries `token` (compared in constant time)."""
    if not header or not token:
        return False
    scheme, _, given = header.partition(" ")
    if scheme.lower() != "bearer":
        return False
    return hmac.compare_digest(given.strip().encode(), token.encode())


def auth_headers(config: Settings = settings) -> dict[str, str]:
    """Headers of a request to another of our web ports (the worker asking its children)."""
    return {"Authorization": f"Bearer {web_token(config)}"}


def middleware(token: str) -> Middleware:
    """An aiohttp middleware answering 401 to a request for a non-public path without the
    token."""

    @web.middleware
    async def require_token(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path in PUBLIC_PATHS or authorized(request.headers.get("Authorization"), token):
            return await handler(request)
        return web.json_response(
            {"error": "unauthorized: send Authorization: Bearer <WEB_AUTH_TOKEN>"},
            status=401,
            headers={"WWW-Authenticate": 'Bearer realm="album-pipeline"'},
        )

    return require_token


def protect(app: web.Application, config: Settings = settings) -> None:
    """Require the token on every non-public path of `app` (before it starts)."""
    app.middlewares.append(middleware(web_token(config)))
