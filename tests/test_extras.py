"""The slim install: the core imports and trains without any extra, and a command that needs a missing
extra says which in one line."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

from adsformer import extras

#: What the core must never import: every extra's packages (their absence is simulated by a finder)
BLOCKED = sorted({p for packages in extras.PACKAGES.values() for p in packages} | {"fuxictr"})

BLOCKER = textwrap.dedent(
    f"""
    import importlib.machinery
    import sys

    class Hidden(importlib.machinery.PathFinder):
        # the path finder, blind to the extras' packages: to importers they are simply not installed
        @classmethod
        def find_spec(cls, name, path=None, target=None):
            if name.split(".")[0] in {BLOCKED!r}:
                return None
            return importlib.machinery.PathFinder.find_spec(name, path, target)

    sys.meta_path[:] = [Hidden if f is importlib.machinery.PathFinder else f for f in sys.meta_path]
    """
)


def _run_blocked(code: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "COLUMNS": "200"}
    return subprocess.run(
        [sys.executable, "-c", BLOCKER + textwrap.dedent(code)],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )


def test_core_imports_and_a_run_works_without_any_extra(tmp_path):
    code = f"""
    import importlib, pkgutil
    import adsformer
    core = ["adsformer.cli", "adsformer.report", "adsformer.experiments.runs", "adsformer.simulator"]
    for pkg in ("data", "models", "training", "adpm", "layers", "run"):
        mod = importlib.import_module(f"adsformer.{{pkg}}")
        core += [m.name for m in pkgutil.walk_packages(mod.__path__, f"adsformer.{{pkg}}.")]
    for name in core:
        if "spark" not in name:
            importlib.import_module(name)
    from adsformer.cli import app
    out = {str(tmp_path)!r}
    for args in (
        ["prepare", "simulate", "--scale", "tiny", "--no-images", "--out", out + "/data"],
        ["train", "--data", out + "/data", "--out", out + "/run", "--model", "baseline", "--set", "epochs=1"],
        ["evaluate", out + "/run", "--data", out + "/data"],
        ["report", out + "/run", "--out", out + "/report.html"],
    ):
        try:
            app(args, prog_name="adsformer")
        except SystemExit as exc:
            assert exc.code in (0, None), (args, exc.code)
    leaked = sorted(m for m in sys.modules if m.split(".")[0] in {BLOCKED!r})
    assert not leaked, leaked
    print("core ok")
    """
    proc = _run_blocked(code)
    assert proc.returncode == 0 and "core ok" in proc.stdout, proc.stderr[-3000:]
    assert (tmp_path / "report.html").stat().st_size > 10_000


@pytest.mark.parametrize(
    ("args", "line"),
    [
        (
            ["serve", "--run", "x"],
            "error: 'adsformer serve' needs the serve extra: pip install 'adsformer[serve]'",
        ),
        (
            ["index", "build", "--data", "x", "--out", "y"],
            "error: 'adsformer index build' needs the retrieval extra: pip install 'adsformer[retrieval]'",
        ),
        (
            ["demo", "--out", "y"],
            "error: 'adsformer demo' needs the serve and represent extras: pip install 'adsformer[serve,represent]'",
        ),
    ],
)
def test_a_command_without_its_extra_says_which_in_one_line(tmp_path, args, line):
    code = f"""
    import os
    os.chdir({str(tmp_path)!r})
    from adsformer.cli import app
    app({args!r}, prog_name="adsformer")
    """
    proc = _run_blocked(code)
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert proc.stderr.strip() == line
    assert not (tmp_path / "y").exists()  # refused before any work


def test_require_names_the_missing_extras(monkeypatch):
    monkeypatch.setattr(extras, "installed", lambda package: package not in ("faiss", "gensim"))
    extras.require("'adsformer serve'", "serve")  # all there: nothing raised
    with pytest.raises(extras.MissingExtraError) as err:
        extras.require("'adsformer demo'", "serve", "retrieval", "represent")
    assert str(err.value) == (
        "'adsformer demo' needs the retrieval and represent extras: pip install 'adsformer[retrieval,represent]'"
    )


def test_a_missing_package_is_traced_to_its_extra():
    exc = ModuleNotFoundError("No module named 'faiss.contrib'", name="faiss.contrib")
    found = extras.missing_extra(exc, "'adsformer retrieve'")
    assert isinstance(found, extras.MissingExtraError)
    assert str(found) == "'adsformer retrieve' needs the retrieval extra: pip install 'adsformer[retrieval]'"
    assert extras.missing_extra(ModuleNotFoundError("x", name="numpyy"), "x") is None
    assert extras.missing_extra(ValueError("faiss"), "x") is None
    assert extras.installed("numpy") and not extras.installed("no_such_package_here")
