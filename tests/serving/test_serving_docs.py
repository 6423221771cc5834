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
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
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


# headless, as root too (no sandbox), in a container's small /dev/shm; no host but loopback resolves
CHROMIUM = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--hide-scrollbars"]
CHROMIUM += ["--no-first-run", "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1"]


def _browser() -> str | None:
    names = ("chromium", "chromium-browser", "google-chrome", "chrome-headless-shell")
    return next((path for name in names if (path := shutil.which(name))), None)


@contextmanager
def _serving(app) -> Iterator[str]:
    """``app`` served by uvicorn on a free loopback port; yields its base URL."""
    import uvicorn

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
        assert server.started, "uvicorn did not start"
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def _render(browser: str, url: str, shot: Path) -> str:
    """Load ``url`` in headless Chromium, screenshot it to ``shot``; return the DOM after its scripts ran.
    Every host name but 127.0.0.1 fails to resolve, so a page that needs a CDN does not render."""
    cmd = [browser, *CHROMIUM, f"--user-data-dir={shot.parent / 'profile'}", "--window-size=1280,1400"]
    cmd += ["--virtual-time-budget=10000", f"--screenshot={shot}", "--dump-dom", url]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0 and shot.exists(), proc.stderr[-3000:]
    return proc.stdout


@pytest.mark.skipif(_browser() is None, reason="no headless Chromium on PATH")
@pytest.mark.parametrize("page", ["/docs", "/redoc"])
def test_docs_render_in_a_headless_browser(app, tmp_path, page):
    from PIL import Image

    operations = [op["operationId"] for ops in app.openapi()["paths"].values() for op in ops.values()]
    shot = tmp_path / "docs.png"
    with _serving(app) as base:
        html = httpx.get(base + page, timeout=10).text
        dom = _render(str(_browser()), base + page, shot)
    # the page names no operation: only its scripts, run from the app's own assets, list them
    assert not [op for op in operations if op in html]
    assert [op for op in operations if op not in dom] == [], dom[-2000:]
    colours = Image.open(shot).convert("RGB").getcolors(maxcolors=1 << 16)
    assert colours is None or len(colours) > 50  # the rendered UI, not a blank page
