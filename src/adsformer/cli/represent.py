"""``adsformer represent KIND``: learn a listing representation table (ADPM component 2, retrieval)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from adsformer.cli.common import SettingsFileOpt, friendly_errors, needs, output_dir
from adsformer.config import load_config
from adsformer.console import console, kv_table, records_table

represent_app = typer.Typer(
    help="Learn listing representation tables (written atomically with a quality report).",
    no_args_is_help=True,
)

DataOpt = Annotated[Path, typer.Option("--data", help="Canonical dataset directory.")]
OutOpt = Annotated[Path, typer.Option("--out", "-o", help="Table directory (written atomically).")]
SetOpt = Annotated[
    list[str] | None, typer.Option("--set", help="Override a setting: key=value (repeatable).")
]
OverwriteOpt = Annotated[
    bool,
    typer.Option("--overwrite", help="Write into --out even when it holds files adsformer did not write."),
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
def skipgram_cmd(
    data: DataOpt,
    out: OutOpt,
    config: SettingsFileOpt = None,
    set_: SetOpt = None,
    overwrite: OverwriteOpt = False,
) -> None:
    """Skip-gram listing vectors from browsing sessions (d=64, window 5, hierarchical softmax, purchase
    sessions up-sampled 5:1). Reads only events before the test period unless --set until=all."""
    needs("represent skipgram", "represent")
    from adsformer.representations.skipgram import SkipGramConfig, represent_skipgram

    with friendly_errors(), output_dir(out, overwrite):
        cfg = load_config(SkipGramConfig, config, set_)
        report = represent_skipgram(data, out, cfg)
    s = report["settings"]
    console.print(
        f"{s['sessions']:,} sessions ({s['purchase_sessions']:,} with a purchase), "
        f"{s['sentences']:,} sentences after up-sampling, events before ts {s['cutoff_ts']}"
    )
    _print_report(report, out)


@represent_app.command("text")
def text_cmd(
    data: DataOpt,
    out: OutOpt,
    config: SettingsFileOpt = None,
    set_: SetOpt = None,
    overwrite: OverwriteOpt = False,
) -> None:
    """fastText-style text vectors of listings (d=128, skip-gram with character n-grams 3..6, lr 0.05,
    window 5, 5 negatives, 5 epochs) over normalized titles, tags and taxonomy paths; a listing is the mean
    of its tokens. Works on a dataset or a catalog; tokens seen < min_count times are dropped unless in keep."""
    needs("represent text", "represent")
    from adsformer.representations.text import TextConfig, represent_text

    with friendly_errors(), output_dir(out, overwrite):
        cfg = load_config(TextConfig, config, set_)
        report = represent_text(data, out, cfg)
    s = report["settings"]
    console.print(
        f"{s['documents']:,} listings, {s['tokens']:,} tokens, vocabulary {s['vocabulary']:,} "
        f"({s['distinct_tokens_dropped']:,} rare tokens dropped: {s['tokens_dropped']:,} occurrences; "
        f"{s['rare_tokens_kept_by_list']:,} kept by the keep-list); listings with no token left: "
        f"{s['listings_from_rare_subwords']:,} from rare-token subwords, {s['listings_from_raw_title']:,} "
        f"from the raw title, {s['listings_zero']:,} zero"
    )
    _print_report(report, out)


@represent_app.command("air")
def air_cmd(
    data: DataOpt,
    out: OutOpt,
    config: SettingsFileOpt = None,
    set_: SetOpt = None,
    overwrite: OverwriteOpt = False,
) -> None:
    """AIR listing vectors (d=256): one shared tower over content tables (--set tables=TEXT,VISUAL) and
    numeric attributes, trained on co-viewed / co-clicked pairs before the test period with an in-batch
    softmax over cosine / temperature. Prints recall@k of held-out pairs for AIR and for each input alone."""
    from adsformer.representations.air import AIRConfig, represent_air

    with friendly_errors(), output_dir(out, overwrite):
        cfg = load_config(AIRConfig, config, set_)
        report = represent_air(data, out, cfg)
    r = report["retrieval"]
    console.print(
        f"{r['listings']:,} listings, {r['train_pairs']:,} training pairs, {r['eval_pairs']:,} held-out pairs"
    )
    console.print(
        records_table("recall of held-out pairs", [{"vectors": k, **v} for k, v in r["recall"].items()])
    )
    _print_report(report, out)


@represent_app.command("visual")
def visual_cmd(
    data: DataOpt,
    out: OutOpt,
    config: SettingsFileOpt = None,
    set_: SetOpt = None,
    overwrite: OverwriteOpt = False,
) -> None:
    """Multitask visual listing vectors: ImageNet EfficientNet-Lite0, a 256-d layer and one head per label
    column (tasks=auto: article type, color, subcategory, gender where present, else taxonomy and color),
    trained with a task-balanced sampler on cached backbone features (--set finetune_epochs=1 then also
    fine-tunes the last blocks on augmented images). About 25 ms an image at 224 px on one CPU thread
    (--set image_size=128 is ~4x faster). Also writes heads.json (held-out accuracy per head) and
    neighbours.png."""
    needs("represent visual", "vision")
    from adsformer.console import records_table
    from adsformer.representations.visual import VisualConfig, represent_visual

    with friendly_errors(), output_dir(out, overwrite):
        cfg = load_config(VisualConfig, config, set_)
        report = represent_visual(data, out, cfg, say=lambda m: console.print(f"[yellow]note:[/] {m}"))
    s, h = report["settings"], report["heads"]
    console.print(
        f"{s['images']:,} images ({s['train_images']:,} train, {s['val_images']:,} held out), "
        f"{s['unreadable_images']:,} unreadable; seconds: "
        + ", ".join(f"{k.removesuffix('_s')} {v:,.1f}" for k, v in s["seconds"].items())
    )
    console.print(
        records_table(
            "held-out accuracy per head",
            [
                {
                    "task": x["task"],
                    "classes": x["classes"],
                    "train": x["train"],
                    "val": x["val"],
                    "accuracy": x["val_accuracy"],
                    "after heads only": x["val_accuracy_after_heads"],
                    "majority baseline": x["majority_accuracy"],
                }
                for x in h["heads"]
            ],
        )
    )
    _print_report(report, out)
    console.print(f"and [bold]{out}[/]/heads.json, neighbours.png")
