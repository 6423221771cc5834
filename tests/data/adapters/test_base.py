"""Shared adapter pieces: exact line reading and skipped-line reports."""

from __future__ import annotations

import pytest

from adsformer.data.adapters.base import AdapterError, SkippedLine, read_lines


def test_read_lines_keeps_exact_line_numbers(tmp_path):
    path = tmp_path / "f.txt"
    path.write_bytes(b"\xef\xbb\xbfa,b\r\n\n\xff\xfe,x\n\xef\xbf\xbd ok\nlast")
    df = read_lines(path)
    assert df["line_no"].to_list() == [1, 2, 3, 4, 5]
    assert df["text"].to_list() == ["a,b", "", "\ufffd\ufffd,x", "\ufffd ok", "last"]  # BOM and \r removed
    assert df["bad_encoding"].to_list() == [False, False, True, False, False]

    latin = read_lines(path, encoding="latin-1")
    assert latin["text"][2] == "ÿþ,x" and not latin["bad_encoding"].any()

    path.write_bytes(b"one\ntwo\n")
    assert read_lines(path)["text"].to_list() == ["one", "two"]  # a final newline ends a line, adds none
    path.write_bytes(b"")
    assert read_lines(path).height == 0


def test_read_lines_errors(tmp_path):
    with pytest.raises(AdapterError, match="cannot read"):
        read_lines(tmp_path / "missing.txt")
    with pytest.raises(AdapterError, match="unknown text encoding"):
        (tmp_path / "x").write_bytes(b"\xff")
        read_lines(tmp_path / "x", encoding="no-such-codec")


def test_skipped_line_text_is_truncated():
    s = SkippedLine(file="f.csv", line=3, reason="too long", text="x" * 500)
    assert len(s.text) == 200 and s.text.endswith("...")
    assert str(s).startswith("f.csv, line 3: too long: 'xxx")
    assert issubclass(AdapterError, ValueError)
