"""The API docs work without internet: /docs (Swagger UI) and /redoc load their scripts and styles from
the app itself, never from a CDN."""

from __future__ import annotations

import re
import shutil
import socket
import subprocess
import threading
import time
import warnings
from pathlib import Path

import pytest

from adsformer.serving.app import DOCS_ASSETS, create_app

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # starlette's note on httpx
    from fastapi.testclient import TestClient

ASSET = re.compile(r"""(?:src|href)\s*=\s*['"]([^'"]+)['"]""")
CONTENT = {".js": "javascript", ".css": "text/css", ".png": "image/png"}


@pytest.fixture
def app(make_settings, make_service):
    return create_app(make_settings(), service=make_service())


def _assets(page: str) -> list[str]:
    """The URLs of the scripts, styles and icons a docs page loads."""
    return [u for u in ASSET.findall(page) if Path(u.split("?")[0]).suffix in CONTENT]


@pytest.mark.parametrize(
    ("page", "expected"), [("/docs", {".js", ".css", ".png"}), ("/redoc", {".js", ".png"})]
)
def test_docs_pages_load_every_asset_from_the_app(app, page, expected):
    with TestClient(app) as client:
        res = client.get(page)
        assert res.status_code == 200 and "text/html" in res.headers["content-type"]
        assert "/openapi.json" in res.text
        urls = _assets(res.text)
        assert {Path(u).suffix for u in urls} == expected, urls
        for url in urls:
            assert url.startswith(f"{DOCS_ASSETS}/"), f"{page} loads {url} from outside the app"
            asset = client.get(url)
            assert asset.status_code == 200, url
            assert CONTENT[Path(url).suffix] in asset.headers["content-type"], url
            assert len(asset.content) > 1000, url  # the real bundle, not an empty stub
        assert "cdn" not in res.text.lower() and "fonts.googleapis" not in res.text


def test_docs_assets_are_not_in_the_api_spec(app):
    with TestClient(app) as client:
        paths = set(client.get("/openapi.json").json()["paths"])
    assert paths == {"/events", "/rank", "/healthz", "/metrics"}


def _browser() -> str | None:
    names = ("chromium", "chromium-browser", "google-chrome", "chrome-headless-shell")
    return next((path for name in names if (path := shutil.which(name))), None)


@pytest.mark.skipif(_browser() is None, reason="no headless Chromium on PATH")
def test_docs_render_in_a_headless_browser(app, tmp_path):
    import uvicorn
    from PIL import Image

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 20
        while not server.started and time.monotonic() < deadline:
            time.sleep(0.05)
        shot = tmp_path / "docs.png"
        cmd = [str(_browser()), "--headless", "--no-sandbox", "--disable-gpu", f"--screenshot={shot}"]
        cmd += ["--window-size=1200,900", "--virtual-time-budget=10000", f"http://127.0.0.1:{port}/docs"]
        subprocess.run(cmd, capture_output=True, timeout=120, check=False)
        assert shot.exists()
        colours = Image.open(shot).convert("RGB").getcolors(maxcolors=1 << 16)
        assert colours is None or len(colours) > 50  # the rendered UI, not a blank page
    finally:
        server.should_exit = True
        thread.join(timeout=10)
