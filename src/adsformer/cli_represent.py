"""``adsformer represent KIND``: learn a listing representation table (ADPM component 2, retrieval)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from adsformer.config import apply_overrides, parse_overrides
from adsformer.console import console, kv_table

represent_app = typer.Typer(
    help="Learn listing representation tables (written atomically with a quality report).",
    no_args_is_help=True,
)

DataOpt = Annotated[Path, typer.Option("--data", help="Canonical dataset directory.")]
OutOpt = Annotated[Path, typer.Option("--out", "-o", help="Table directory (written atomically).")]
SetOpt = Annotated[
    list[str] | None, typer.Option("--set", help="Override a setting: key=value (repeatable).")
]


def _print_report(report: dict[str, Any], out: Path) -> None:
    nn = report.get("neighbours", {})
    console.print(
        kv_table(
            f"{report['kind']} table",
            {
                "listings": report["n"],
                "dim": report["dim"],
                "cosine same taxonomy": report.get("cosine_same_taxonomy"),
                "cosine different taxonomy": report.get("cosine_different_taxonomy"),
                "separation AUC": report.get("separation_auc"),
                f"top-{nn.get('k')} neighbours same taxonomy": nn.get("same_taxonomy_share"),
                "  (chance)": nn.get("chance"),
            },
        )
    )
    console.print(f"wrote [bold]{out}[/] (vectors.parquet, table.json, quality.json, similarity.png)")


@represent_app.command("skipgram")
def skipgram_cmd(data: DataOpt, out: OutOpt, set_: SetOpt = None) -> None:
    """Skip-gram listing vectors from browsing sessions (d=64, window 5, hierarchical softmax, purchase
    sessions up-sampled 5:1). Reads only events before the test period unless --set until=all."""
    from adsformer.cli import _friendly_errors
    from adsformer.representations.skipgram import SkipGramConfig, represent_skipgram

    with _friendly_errors():
        cfg = apply_overrides(SkipGramConfig(), parse_overrides(set_), short_keys={})
        report = represent_skipgram(data, out, cfg)
    s = report["settings"]
    console.print(
        f"{s['sessions']:,} sessions ({s['purchase_sessions']:,} with a purchase), "
        f"{s['sentences']:,} sentences after up-sampling, events before ts {s['cutoff_ts']}"
    )
    _print_report(report, out)
