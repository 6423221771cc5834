"""``adsformer ... --help`` for every command: nothing lost to markup, nothing cut at a narrow terminal,
an example that parses, every default shown, commands in workflow order."""

from __future__ import annotations

import re
import shlex
from typing import Any

import pytest
from typer.main import get_command
from typer.testing import CliRunner

from adsformer.cli import app
from adsformer.cli.help import EXAMPLES, ORDER

runner = CliRunner()


def _tree() -> dict[str, Any]:
    """Every command and group by its path (``""`` the root, ``"prepare simulate"``, ...)."""
    root = get_command(app)
    found: dict[str, Any] = {"": root}

    def walk(cmd: Any, path: str) -> None:
        for name, sub in getattr(cmd, "commands", {}).items():
            found[f"{path} {name}".strip()] = sub
            walk(sub, f"{path} {name}".strip())

    walk(root, "")
    return found


TREE = _tree()
LEAVES = sorted(p for p, c in TREE.items() if p and not hasattr(c, "commands"))


def _is_option(param: object) -> bool:
    """An option (not an argument); typer carries its own copy of click, so no isinstance."""
    return getattr(param, "param_type_name", "") == "option"


def _shows_default(param: object) -> bool:
    """Options whose default the help must show: all but --help and plain on/off switches."""
    if not _is_option(param) or param.required or param.name == "help":  # type: ignore[attr-defined]
        return False
    return not (param.is_flag and param.default is False and not param.secondary_opts)  # type: ignore[attr-defined]


def _help(path: str, width: int = 80) -> str:
    res = runner.invoke(app, [*path.split(), "--help"], terminal_width=width, env={"COLUMNS": str(width)})
    assert res.exit_code == 0, res.output
    return res.output


def _flat(text: str) -> str:
    """Whitespace and line wrapping undone (a word wrapped at its hyphen joined again)."""
    return " ".join(re.sub(r"-\n\s*", "-", text).split())


@pytest.mark.parametrize("path", sorted(TREE))
def test_help_keeps_every_word_and_option_name(path):
    out = _help(path, width=60)
    flat = _flat(out)
    assert "``" not in out, "RST double backticks in the help"
    assert "…" not in out, "something cut to fit"
    cmd = TREE[path]
    assert _flat(cmd.help or "").split(". ")[0] in flat
    for param in cmd.params:
        for name in [*param.opts, *getattr(param, "secondary_opts", [])]:
            if name.startswith("-"):
                assert name in out, f"{name} cut or missing"
        text = getattr(param, "help", None)
        if text:  # every word of the option's help, none read as markup (e.g. "[spark]")
            assert _flat(text) in flat, f"{param.name}: {text!r} not shown whole"


@pytest.mark.parametrize("path", LEAVES)
def test_every_command_has_an_example_that_parses(path):
    assert path in EXAMPLES, f"no example for adsformer {path}"
    out = _help(path, width=200)
    assert "Example:" in out
    for line in EXAMPLES[path]:
        assert line in out
        words = shlex.split(line, comments=True)
        assert words[0] == "adsformer" and " ".join(words[1 : 1 + len(path.split())]) == path, line
        args = words[1 + len(path.split()) :]
        TREE[path].make_context(path, args)  # a bad option, a missing required one or a bad value raises


@pytest.mark.parametrize("path", LEAVES)
def test_every_default_is_shown(path):
    out = _flat(_help(path, width=200))
    shown = [p for p in TREE[path].params if _shows_default(p)]
    for param in shown:
        assert param.show_default is not False, f"{path} {param.opts[0]}: default hidden"
        assert param.default is not None or isinstance(param.show_default, str), (
            f"{path} {param.opts[0]}: no value and no words for its default"
        )
    assert len(re.findall(r"\[(?:env var: [^;\]]+; )?default: ", out)) == len(shown)


def test_commands_are_listed_in_workflow_order():
    out = _help("", width=100)
    listed = [
        line.split()[0]
        for line in out.split("Commands:")[1].splitlines()
        if line.startswith("  ") and line[2] != " "
    ]
    assert listed == [c for c in ORDER if c in TREE[""].commands]
    assert set(listed) == set(TREE[""].commands)


def test_features_help_keeps_the_extra_name():
    assert "[spark]" in _help("features") or "spark extra" in _flat(_help("features"))


@pytest.mark.parametrize(
    ("comma", "brackets"),
    [
        (["tables=a,b"], ["tables=[a,b]"]),
        (["model.ranker.deep=128,64"], ["model.ranker.deep=[128,64]"]),
        (["pairs=listing:view,shop:view"], ["pairs=[listing:view, shop:view]"]),
    ],
)
def test_set_takes_comma_separated_lists_and_brackets_alike(comma, brackets):
    from adsformer.run.config import load_experiment

    assert load_experiment(None, comma) == load_experiment(None, brackets)


def test_tables_print_booleans_as_yes_no_and_headers_whole():
    from rich.console import Console

    from adsformer.console import fmt, kv_table, records_table
    from adsformer.experiments.demo import _shown

    assert (fmt(True), fmt(False), fmt(3), fmt(0.5)) == ("yes", "no", "3", "0.5000")
    rec = {"task": "ctr", "n_test": 680, "test_positives": 55, "roc_auc": 0.7, "pr_auc": 0.2, "ece": 0.01}
    rec |= {"ece_before_platt": 0.03, "roc_auc_lift_pct": 22.52, "pr_auc_lift_pct": 65.5}
    rows = _shown([{**rec, "model": "baseline"}, {**rec, "model": "adsformer"}])
    headers = ("test rows", "test positives", "ROC-AUC", "ECE before Platt", "ROC-AUC lift", "PR-AUC lift")
    for width in (160, 80):  # wide: every header on one line; narrow: wrapped at its spaces, never cut
        console = Console(width=width, record=True)
        console.print(kv_table("test metrics", {"calibrated": True}))
        console.print(records_table("test split", rows))
        out = console.export_text()
        assert "calibrated │ yes" in out and "…" not in out
        assert "+22.52%" in out and "+65.50%" in out and "—" in out  # no lift of the baseline on itself
        for header in headers:
            assert (header in out) if width == 160 else all(word in out for word in header.split()), header
