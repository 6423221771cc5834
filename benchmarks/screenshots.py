"""Screenshots of the HTML report and of the ranking service's API docs, taken by headless Chromium.

    python benchmarks/screenshots.py                        # demo_out/ when it exists, else a tiny run
    python benchmarks/screenshots.py --demo demo_out --out docs/img

1. The report: ``adsformer report DEMO`` of a finished demo output (``bash scripts/demo``). Without one, a
   tiny simulated dataset, its baseline and adSformer trained with ``--config ctr_test``, evaluated and
   reported, in a temporary directory.
2. The API docs: ``adsformer serve`` of that output's runs on 127.0.0.1, and its ``/docs`` (Swagger UI: the
   operations and schemas).

The browser resolves no host name but 127.0.0.1, so the docs page renders only from what the service itself
serves (no CDN, no internet). Writes ``report.png`` and ``api-docs.png`` into ``--out``: 1280 px wide, cut
at a blank band (the report near ``--report-height``, the docs where the page ends), 256 colours, each
written atomically. Needs Chromium on PATH (Debian: ``apt-get install chromium``).
"""

from __future__ import annotations

import argparse
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
from PIL import Image

from adsformer.io import atomic_file

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "chrome-headless-shell")
WIDTH = 1280
# headless, as root too (no sandbox), in a container's small /dev/shm; no host but loopback resolves
CHROMIUM = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--hide-scrollbars"]
CHROMIUM += ["--no-first-run", "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1"]


@dataclass(frozen=True)
class Demo:
    """What the screenshots need from a finished pipeline: the report's inputs and what to serve."""

    report_inputs: tuple[Path, ...]
    ctr_run: Path
    pccvr_run: Path | None
    catalog: Path


def find_browser() -> str:
    """The first Chromium on PATH."""
    found = next((path for name in BROWSERS if (path := shutil.which(name))), None)
    if found is None:
        raise SystemExit(f"no Chromium on PATH (looked for {', '.join(BROWSERS)}): apt-get install chromium")
    return found


def capture(browser: str, url: str, shot: Path, height: int, profile: Path) -> str:
    """Load ``url`` in a ``WIDTH`` x ``height`` headless window, save the screenshot to ``shot``; return the
    rendered DOM. Every host name but 127.0.0.1 fails to resolve."""
    cmd = [browser, *CHROMIUM, f"--user-data-dir={profile}", f"--window-size={WIDTH},{height}"]
    cmd += ["--virtual-time-budget=15000", f"--screenshot={shot}", "--dump-dom", url]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=180, check=False)
    if not shot.exists():
        raise SystemExit(f"{browser} took no screenshot of {url}:\n{proc.stderr[-2000:]}")
    return proc.stdout


def cut_at_blank_band(img: Image.Image, max_height: int, band: int = 40, margin: int = 16) -> Image.Image:
    """``img`` cut inside the lowest run of at least ``band`` blank rows (one colour, the page's) that
    starts above ``max_height``, ``margin`` rows below where the content ends; ``img`` itself if none."""
    rgb = img.convert("RGB")
    background = rgb.getpixel((0, 0))
    blank = [_row_is(rgb, y, background) for y in range(min(max_height + band, rgb.height))]
    y = len(blank) - 1
    while y >= band:
        run = 0
        while y - run >= 0 and blank[y - run]:
            run += 1
        start = y - run + 1
        if run >= band and start < max_height:
            return rgb.crop((0, 0, rgb.width, min(start + margin, rgb.height)))
        y -= max(run, 1)
    return rgb


def _row_is(img: Image.Image, y: int, colour: object) -> bool:
    """Whether row ``y`` of ``img`` is all ``colour``."""
    colours = img.crop((0, y, img.width, y + 1)).getcolors(maxcolors=1)
    return colours is not None and colours[0][1] == colour


def save_png(img: Image.Image, dest: Path) -> None:
    """``img`` as a 256-colour optimized PNG at ``dest``, atomically."""
    small = img.convert("RGB").quantize(colors=256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
    with atomic_file(dest) as tmp:
        small.save(tmp, format="PNG", optimize=True)
    print(f"wrote {dest} ({small.width}x{small.height}, {dest.stat().st_size / 1024:.0f} KiB)")


def adsformer(*args: str) -> None:
    """Run one ``adsformer`` command; stop with its output if it fails."""
    proc = subprocess.run([sys.executable, "-m", "adsformer.cli", *args], capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"adsformer {' '.join(args)} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")


def demo_output(demo: Path) -> Demo:
    """The runs and data of a finished ``adsformer demo --out DEMO``."""
    runs = demo / "runs"
    pccvr = runs / "pccvr-adsformer"
    return Demo((demo,), runs / "ctr-adsformer", pccvr if pccvr.is_dir() else None, demo / "data")


def tiny_pipeline(work: Path) -> Demo:
    """A tiny simulated dataset, its CTR baseline and adSformer (``ctr_test``), both evaluated."""
    data = work / "data"
    print("no demo output: training a tiny CTR baseline and adSformer (ctr_test) ...")
    adsformer("prepare", "simulate", "--scale", "tiny", "--out", str(data))
    runs = []
    for model in ("baseline", "adsformer"):
        run = work / "runs" / model
        adsformer(
            "train",
            "--data",
            str(data),
            "--task",
            "ctr",
            "--model",
            model,
            "--config",
            "ctr_test",
            "--out",
            str(run),
        )
        adsformer("evaluate", str(run))
        runs.append(run)
    return Demo(tuple(runs), runs[-1], None, data)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def serve(demo: Demo, port: int) -> subprocess.Popen[bytes]:
    """``adsformer serve`` of the demo's runs on 127.0.0.1:``port``, once it answers ``/healthz``."""
    cmd = [
        sys.executable,
        "-m",
        "adsformer.cli",
        "serve",
        "--run",
        str(demo.ctr_run),
        "--catalog",
        str(demo.catalog),
    ]
    cmd += ["--host", "127.0.0.1", "--port", str(port), "--api-key", secrets.token_hex(8)]
    if demo.pccvr_run is not None:
        cmd += ["--pccvr-run", str(demo.pccvr_run)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            out = proc.stdout.read().decode() if proc.stdout else ""
            raise SystemExit(f"adsformer serve exited:\n{out[-2000:]}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return proc
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    proc.terminate()
    raise SystemExit(f"adsformer serve did not answer on port {port} within 180 s")


def shoot_report(browser: str, demo: Demo, work: Path, height: int, dest: Path) -> None:
    """Render the report of ``demo`` and save its top, cut near ``height`` px, to ``dest``."""
    page = work / "report.html"
    adsformer("report", *map(str, demo.report_inputs), "--out", str(page), "--title", "adsformer report")
    dom = capture(browser, page.resolve().as_uri(), work / "report-shot.png", height, work / "profile")
    if "Test metrics" not in dom:
        raise SystemExit(f"the report did not render (no 'Test metrics' in {page})")
    save_png(cut_at_blank_band(Image.open(work / "report-shot.png"), height), dest)


def shoot_docs(browser: str, demo: Demo, work: Path, dest: Path) -> None:
    """Serve ``demo`` and save its whole ``/docs`` page to ``dest``."""
    port = free_port()
    server = serve(demo, port)
    try:
        height = 2400  # taller than the page: it is cut where it ends
        shot = work / "docs-shot.png"
        dom = capture(browser, f"http://127.0.0.1:{port}/docs", shot, height, work / "profile")
    finally:
        server.terminate()
        server.wait(timeout=30)
    if "opblock-summary-path" not in dom or "/rank" not in dom:
        raise SystemExit("Swagger UI did not render its operations at /docs")
    save_png(cut_at_blank_band(Image.open(shot), height), dest)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--demo", type=Path, default=Path("demo_out"), help="a finished demo output")
    ap.add_argument("--out", type=Path, default=Path("docs/img"))
    ap.add_argument("--report-height", type=int, default=1400, help="the report's screenshot, at most (px)")
    args = ap.parse_args()
    browser = find_browser()
    with tempfile.TemporaryDirectory(prefix="adsformer-shots-") as tmp:
        work = Path(tmp)
        demo = demo_output(args.demo) if (args.demo / "runs").is_dir() else tiny_pipeline(work)
        shoot_report(browser, demo, work, args.report_height, args.out / "report.png")
        shoot_docs(browser, demo, work, args.out / "api-docs.png")


if __name__ == "__main__":
    main()
