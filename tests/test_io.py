"""Atomic writes that never destroy what adsformer did not write (issue 18): ownership markers, the
--overwrite merge, stale temporaries of killed runs, file modes that follow the umask."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from adsformer.errors import OutputError
from adsformer.io import (
    HOST,
    MARKER,
    allow_overwrite,
    atomic_dir,
    atomic_file,
    check_output_dir,
    read_marker,
    write_json,
)


def _write(dest: Path, **files: str) -> None:
    with atomic_dir(dest) as tmp:
        for name, text in files.items():
            (tmp / name).write_text(text)


def test_own_directory_is_replaced_whole_and_marked(tmp_path):
    out = tmp_path / "runs" / "r1"
    _write(out, a="1", b="2")
    assert read_marker(out) == {"a", "b"}
    assert read_marker(tmp_path / "runs") == {"r1"}  # parents adsformer created are marked too
    _write(out, a="3")
    assert sorted(p.name for p in out.iterdir()) == [MARKER, "a"]  # b was adsformer's: gone with the old run
    write_json(out / "metrics.json", {"x": 1})  # files written later into the run join its marker
    assert read_marker(out) == {"a", "metrics.json"}
    _write(out, a="4")
    assert not (out / "metrics.json").exists()  # the old run's metrics do not survive into the new one


def test_foreign_directory_is_refused_before_anything_runs(tmp_path):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    ran = []
    with (
        pytest.raises(
            OutputError, match=r"mine: is not empty and was not written by adsformer \(notes.txt\)"
        ),
        atomic_dir(out),
    ):
        ran.append(1)
    assert not ran and (out / "notes.txt").read_text() == "keep me"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine"]  # no temporaries left


def test_user_file_added_to_a_run_is_kept_and_refused(tmp_path):
    out = tmp_path / "run"
    _write(out, a="1")
    (out / "notes.txt").write_text("mine")
    with pytest.raises(OutputError, match=r"run: holds files adsformer did not write \(notes.txt\)"):
        check_output_dir(out)
    with allow_overwrite():
        _write(out, a="2", b="3")
    assert (out / "notes.txt").read_text() == "mine" and (out / "a").read_text() == "2"
    assert read_marker(out) == {"a", "b"}


def test_overwrite_merges_and_never_removes_other_files(tmp_path):
    out = tmp_path / "shared"
    (out / "sub").mkdir(parents=True)
    (out / "sub" / "x").write_text("x")
    (out / "a").write_text("theirs")
    (out / "keep.txt").write_text("k")
    with allow_overwrite():
        _write(out, a="ours", b="ours")
    assert (out / "a").read_text() == "ours" and (out / "b").read_text() == "ours"
    assert (out / "keep.txt").read_text() == "k" and (out / "sub" / "x").read_text() == "x"
    with allow_overwrite():
        _write(out, c="ours")  # adsformer's earlier a and b go; the user's files stay
    assert sorted(p.name for p in out.iterdir()) == [MARKER, "c", "keep.txt", "sub"]


def test_empty_directory_and_file_in_the_way(tmp_path):
    (tmp_path / "empty").mkdir()
    _write(tmp_path / "empty", a="1")
    assert (tmp_path / "empty" / "a").exists()
    (tmp_path / "f").write_text("x")
    with pytest.raises(OutputError, match="exists and is not a directory"):
        _write(tmp_path / "f", a="1")
    (tmp_path / "d").mkdir()
    with pytest.raises(OutputError, match="is a directory; choose a file path"), atomic_file(tmp_path / "d"):
        pass


def test_stale_temporaries_of_killed_runs_are_removed_on_the_next_write(tmp_path):
    dead = 2**22 + 12345  # above the default pid_max: no such process
    stale = tmp_path / f".run.tmp-{HOST}-{dead}-abcd1234"
    stale.mkdir()
    (stale / "model.pt").write_text("half")
    (tmp_path / f".run.old-{HOST}-{dead}-abcd1234").mkdir()
    (tmp_path / f".report.html.tmp-{HOST}-{dead}-abcd1234").write_text("half")
    legacy = tmp_path / ".run.tmp-k2j3h4g5"  # an older version's name (no pid): removed once old
    legacy.mkdir()
    os.utime(legacy, (time.time() - 7200,) * 2)
    kept = [
        tmp_path / f".run.tmp-{HOST}-{os.getpid()}-live1234",  # a live writer
        tmp_path / ".run.tmp-zzzzzzzz",  # legacy but fresh
        tmp_path / ".run.tmp-deadbeef-99999-abcd1234",  # another host's writer
    ]
    for k in kept:
        k.mkdir()
    _write(tmp_path / "run", a="1")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["run", *(k.name for k in kept)])


def test_outputs_follow_the_umask(tmp_path):
    old = os.umask(0o027)
    try:
        _write(tmp_path / "run", a="1")
        write_json(tmp_path / "run" / "m.json", {})
        with atomic_file(tmp_path / "report.html") as tmp:
            tmp.write_text("<html>")
    finally:
        os.umask(old)
    assert (tmp_path / "run").stat().st_mode & 0o777 == 0o750
    for path in ("run/a", "run/m.json", f"run/{MARKER}", "report.html"):
        assert (tmp_path / path).stat().st_mode & 0o777 == 0o640, path
    old = os.umask(0o002)
    try:
        _write(tmp_path / "team", a="1")
    finally:
        os.umask(old)
    assert (tmp_path / "team").stat().st_mode & 0o777 == 0o775
    assert (tmp_path / "team" / "a").stat().st_mode & 0o777 == 0o664


def test_failed_write_keeps_the_previous_version_and_leaves_no_temporaries(tmp_path):
    _write(tmp_path / "run", a="1")
    with pytest.raises(RuntimeError), atomic_dir(tmp_path / "run") as tmp:
        (tmp / "a").write_text("2")
        raise RuntimeError("killed")
    assert (tmp_path / "run" / "a").read_text() == "1"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]


def test_marker_is_plain_json(tmp_path):
    _write(tmp_path / "run", a="1")
    body = json.loads((tmp_path / "run" / MARKER).read_text())
    assert body["written_by"] == "adsformer" and body["entries"] == ["a"]
