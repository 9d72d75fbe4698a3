"""The web ports' bearer token: made once and kept 0600 when WEB_AUTH_TOKEN is unset; every
path but /health and /metrics answers 401 without it."""

from __future__ import annotations

import stat
from pathlib import Path

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from streams import webauth
from streams.settings import Settings


def config(tmp_path: Path, **env: str) -> Settings:
    return Settings.from_env({"DATA_DIR": str(tmp_path / "data"), **env})


def test_a_token_is_made_once_kept_private_and_reused(tmp_path: Path) -> None:
    cfg = config(tmp_path)
    first = webauth.web_token(cfg)
    path = webauth.token_path(cfg)
    assert len(first) >= 32
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert webauth.web_token(cfg) == first  # the stage processes read the same one
    path.write_text("")  # a crash between create and write leaves an empty file
    remade = webauth.web_token(cfg)
    assert remade
    assert remade != first


def test_web_auth_token_wins_and_writes_nothing(tmp_path: Path) -> None:
    cfg = config(tmp_path, WEB_AUTH_TOKEN="s3cr3t-token")
    assert webauth.web_token(cfg) == "s3cr3t-token"
    assert not webauth.token_path(cfg).exists()
    assert "s3cr3t" not in repr(cfg.web_auth_token)


def test_authorized_wants_the_bearer_scheme_and_the_exact_token() -> None:
    assert webauth.authorized("Bearer abc", "abc")
    assert webauth.authorized("bearer abc", "abc")
    assert not webauth.authorized("Bearer abcd", "abc")
    assert not webauth.authorized("Basic abc", "abc")
    assert not webauth.authorized("abc", "abc")
    assert not webauth.authorized(None, "abc")
    assert not webauth.authorized("Bearer ", "")


async def test_only_health_and_metrics_are_open(tmp_path: Path) -> None:
    cfg = config(tmp_path, WEB_AUTH_TOKEN="tok")

    async def ok(request: web.Request) -> web.Response:
        return web.json_response({"path": request.path})

    app = web.Application()
    webauth.protect(app, cfg)
    for path in ("/health", "/metrics", "/health/detailed", "/stores/1/", "/table/album_state/1/"):
        app.router.add_get(path, ok)
    async with TestClient(TestServer(app)) as client:
        for path in ("/health", "/metrics"):
            assert (await client.get(path)).status == 200
        for path in ("/health/detailed", "/stores/1/", "/table/album_state/1/", "/nowhere"):
            refused = await client.get(path)
            assert refused.status == 401, path
            assert refused.headers["WWW-Authenticate"].startswith("Bearer")
            wrong = await client.get(path, headers={"Authorization": "Bearer nope"})
            assert wrong.status == 401
        good = await client.get("/stores/1/", headers=webauth.auth_headers(cfg))
        assert good.status == 200
        # a path that only looks public is not
        assert (await client.get("/health/../table/x", allow_redirects=False)).status == 401
