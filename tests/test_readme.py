"""The README and the docs are run as written.

* The README's "Your own data" walkthrough: every fenced block marked ``<!-- walkthrough -->`` runs, in
  order, in an empty directory (``<!-- walkthrough: FILE -->``: the block is that file;
  ``<!-- walkthrough: background -->``: started, and the next block runs once it answers ``/healthz``), and
  what the prose says of the results holds.
* Every ``adsformer ...`` line in a code block of README.md and docs/*.md names a real command and only its
  options.
* Every relative link and image of those pages points at a file that exists (and a heading, for ``#anchor``).
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from typer.main import get_command

from adsformer.cli import app

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
PAGES = [README, *sorted((ROOT / "docs").glob("*.md"))]
#: the venv's bin: ``python`` and ``adsformer`` as the walkthrough's reader has them (an active environment)
BIN = Path(sys.executable).parent
#: the port the walkthrough's service listens on and its curl lines call; the test takes a free one instead
README_PORT = "8000"

STEP = re.compile(
    r"<!-- walkthrough(?::\s*(?P<how>[^>]*?))?\s*-->\s*\n```(?P<lang>\w+)\n(?P<code>.*?)^```", re.S | re.M
)
FENCE = re.compile(r"^```(?P<lang>\w*)\n(?P<code>.*?)^```", re.S | re.M)
LINK = re.compile(r"!?\[[^\]]*\]\((?P<target>[^)\s]+)\)")


@dataclass(frozen=True)
class Step:
    """One marked block of the walkthrough: ``how`` is "" (run it), "background" or a file name."""

    how: str
    lang: str
    code: str


def walkthrough(text: str) -> list[Step]:
    """The marked blocks of ``text``, in order."""
    return [Step((m["how"] or "").strip(), m["lang"], m["code"]) for m in STEP.finditer(text)]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _on_port(code: str, port: int) -> str:
    """``code`` with the README's port replaced by ``port`` (another test or service may hold 8000)."""
    return code.replace(f"localhost:{README_PORT}", f"localhost:{port}").replace(
        f"--port {README_PORT}", f"--port {port}"
    )


def _wait_healthy(proc: subprocess.Popen[str], port: int, timeout_s: float = 120.0) -> None:
    """Return once ``GET /healthz`` answers 200; fail with the server's output if it exits or never does."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"the service exited with {proc.returncode}:\n{proc.communicate()[0]}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as res:
                if res.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.3)
    pytest.fail(f"the service did not answer /healthz within {timeout_s:.0f} s")


def _json_objects(text: str) -> list[dict[str, Any]]:
    """Every JSON object printed on its own line of ``text``."""
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


def test_the_walkthrough_goes_from_tables_to_a_served_ranking():
    steps = walkthrough(README.read_text())
    assert [s.how for s in steps if s.how.endswith(".py")] == ["write_data.py"]
    commands = "\n".join(s.code for s in steps if s.lang == "bash")
    expected = ["python write_data.py", "adsformer validate", "adsformer train", "adsformer evaluate"]
    expected += ["adsformer report", "adsformer serve", "curl"]
    found = [commands.find(word) for word in expected]
    assert -1 not in found and found == sorted(found), dict(zip(expected, found, strict=True))
    assert [s.how for s in steps if s.how and not s.how.endswith(".py")] == ["background"]
    assert f"--port {README_PORT}" in commands and f"localhost:{README_PORT}" in commands


@pytest.mark.slow
def test_the_walkthrough_runs_as_written(tmp_path):
    pytest.importorskip("fastapi", reason="the walkthrough serves: the serve extra")
    if shutil.which("curl") is None:
        pytest.skip("the walkthrough calls the service with curl")
    port = _free_port()
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    env |= {"OMP_NUM_THREADS": "1", "MPLBACKEND": "Agg", "NO_COLOR": "1"}  # tests share the cores
    outputs: list[str] = []
    server: subprocess.Popen[str] | None = None
    try:
        for step in walkthrough(README.read_text()):
            code = _on_port(step.code, port)
            if step.how.endswith(".py"):
                (tmp_path / step.how).write_text(code)
            elif step.how == "background":
                server = subprocess.Popen(
                    ["bash", "-c", code], cwd=tmp_path, env=env, text=True, start_new_session=True,
                    stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                )  # fmt: skip
                _wait_healthy(server, port)
            else:
                res = subprocess.run(
                    ["bash", "-e", "-o", "pipefail", "-c", code],
                    cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600,
                )  # fmt: skip
                assert res.returncode == 0, f"{code}\nstdout:\n{res.stdout}\nstderr:\n{res.stderr}"
                outputs.append(res.stdout)
    finally:
        if server is not None and server.poll() is None:
            os.killpg(server.pid, signal.SIGTERM)
            server.wait(timeout=30)

    assert "my_data: valid" in outputs[0]
    auc = {
        run: json.loads((tmp_path / "runs" / run / "metrics.json").read_text())["roc_auc"]
        for run in ("baseline", "ctr")
    }
    # the prose: "about 0.78 against the baseline's 0.51"
    assert auc["ctr"] > 0.7 and auc["baseline"] < 0.6, auc
    html = (tmp_path / "report.html").read_text()
    assert "<html" in html.lower() and len(html) > 10_000
    stored, ranked = _json_objects(outputs[-1])
    assert stored["stored"] == 1
    # the prose: l7, just viewed, comes first, with a far higher p_ctr than the others
    ads = ranked["ads"]
    assert len(ads) == 3 and ranked["personalized"] and ranked["history_events"] >= 1
    assert ads[0]["listing_id"] == "l7" and ads[0]["p_ctr"] > 2 * ads[1]["p_ctr"], ads


def _command_tree() -> dict[str, Any]:
    """Every command and group of the CLI by its path (``"prepare simulate"``, ...)."""
    found: dict[str, Any] = {}

    def walk(cmd: Any, path: str) -> None:
        for name, sub in getattr(cmd, "commands", {}).items():
            found[f"{path} {name}".strip()] = sub
            walk(sub, f"{path} {name}".strip())

    walk(get_command(app), "")
    return found


def _command_lines(page: Path) -> Iterator[tuple[str, list[str]]]:
    """Each ``adsformer`` command line of ``page``'s code blocks (continuations joined), as words after
    ``adsformer`` (or ``-m adsformer.cli``)."""
    for block in FENCE.finditer(page.read_text()):
        for line in block["code"].replace("\\\n", " ").splitlines():
            words = shlex.split(line, comments=True) if line.count("'") % 2 == 0 else line.split()
            for i, word in enumerate(words):
                if word in ("adsformer", "adsformer.cli") and (i == 0 or words[i - 1] in ("-m", "&&", ";")):
                    yield line, words[i + 1 :]
                    break


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_every_command_line_in_the_docs_names_a_real_command_and_its_options(page):
    tree = _command_tree()
    for line, words in _command_lines(page):
        path = ""
        for word in words:
            if f"{path} {word}".strip() not in tree:
                break
            path = f"{path} {word}".strip()
        assert path and not hasattr(tree[path], "commands"), f"{page.name}: no such command: {line}"
        known = {opt for param in tree[path].params for opt in [*param.opts, *param.secondary_opts]}
        named = {m[0] for w in words if (m := re.match(r"--[a-z][a-z0-9-]*", w.lstrip("[(")))}
        assert named <= known | {"--help"}, f"{page.name}: adsformer {path} has no {named - known}: {line}"


def _anchors(page: Path) -> set[str]:
    """The anchors of ``page``'s headings, as GitHub derives them."""
    heads = re.findall(r"^#+\s+(.*)$", FENCE.sub("", page.read_text()), re.M)
    return {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-") for h in heads}


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_every_relative_link_and_figure_exists(page):
    for m in LINK.finditer(FENCE.sub("", page.read_text())):
        target = m["target"]
        if re.match(r"[a-z]+:", target):
            continue
        file, _, anchor = target.partition("#")
        dest = (page.parent / file).resolve() if file else page
        assert dest.exists(), f"{page.name}: {target} does not exist"
        if anchor and dest.suffix == ".md":
            assert anchor in _anchors(dest), f"{page.name}: no heading for #{anchor} in {dest.name}"
