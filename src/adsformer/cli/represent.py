"""``adsformer represent KIND``: learn a listing representation table (ADPM component 2, retrieval)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer

from adsformer.cli.common import DataOpt, SettingsFileOpt, friendly_errors, needs, output_dir
from adsformer.config import load_config
from adsformer.console import console, kv_table, records_table
from adsformer.extras import Extra

represent_app = typer.Typer(
    help="Learn listing representation tables (written atomically with a quality report).",
    no_args_is_help=True,
)

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


#: A learner: (data, out, settings) -> the table's report (as ``represent_*`` return it)
Learner = Callable[[Path, Path, Any], dict[str, Any]]
#: What a kind prints once its table is written: (report, out)
Show = Callable[[dict[str, Any], Path], None]
#: A kind of table: imports and returns its settings class and its learner
Kind = Callable[[], tuple[type, Learner]]


def table_command(kind: str, show: Show, *extras: Extra) -> Callable[[Kind], Kind]:
    """Register ``adsformer represent KIND``. The decorated function imports and returns the table's
    settings class and learner; its docstring is the command's help. Every kind takes the same options
    (``--data``, ``--out``, ``--config``, ``--set``, ``--overwrite``) and needs ``extras``; ``show`` prints
    what it wrote."""

    def register(learner: Kind) -> Kind:
        def command(
            data: DataOpt,
            out: OutOpt,
            config: SettingsFileOpt = None,
            set_: SetOpt = None,
            overwrite: OverwriteOpt = False,
        ) -> None:
            if extras:
                needs(f"represent {kind}", *extras)
            settings, learn = learner()
            with friendly_errors(), output_dir(out, overwrite):
                report = learn(data, out, load_config(settings, config, set_))
            show(report, out)

        command.__doc__ = learner.__doc__
        represent_app.command(kind)(command)
        return learner

    return register


def _show_skipgram(report: dict[str, Any], out: Path) -> None:
    s = report["settings"]
    console.print(
        f"{s['sessions']:,} sessions ({s['purchase_sessions']:,} with a purchase), "
        f"{s['sentences']:,} sentences after up-sampling, events before ts {s['cutoff_ts']}"
    )
    _print_report(report, out)


@table_command("skipgram", _show_skipgram, "represent")
def _skipgram() -> tuple[type, Learner]:
    """Skip-gram listing vectors from browsing sessions (d=64, window 5, hierarchical softmax, purchase
    sessions up-sampled 5:1). Reads only events before the test period unless --set until=all."""
    from adsformer.representations.skipgram import SkipGramConfig, represent_skipgram

    return SkipGramConfig, represent_skipgram


def _show_text(report: dict[str, Any], out: Path) -> None:
    s = report["settings"]
    console.print(
        f"{s['documents']:,} listings, {s['tokens']:,} tokens, vocabulary {s['vocabulary']:,} "
        f"({s['distinct_tokens_dropped']:,} rare tokens dropped: {s['tokens_dropped']:,} occurrences; "
        f"{s['rare_tokens_kept_by_list']:,} kept by the keep-list); listings with no token left: "
        f"{s['listings_from_rare_subwords']:,} from rare-token subwords, {s['listings_from_raw_title']:,} "
        f"from the raw title, {s['listings_zero']:,} zero"
    )
    _print_report(report, out)


@table_command("text", _show_text, "represent")
def _text() -> tuple[type, Learner]:
    """fastText-style text vectors of listings (d=128, skip-gram with character n-grams 3..6, lr 0.05,
    window 5, 5 negatives, 5 epochs) over normalized titles, tags and taxonomy paths; a listing is the mean
    of its tokens. Works on a dataset or a catalog; tokens seen < min_count times are dropped unless in keep."""
    from adsformer.representations.text import TextConfig, represent_text

    return TextConfig, represent_text


def _show_air(report: dict[str, Any], out: Path) -> None:
    r = report["retrieval"]
    console.print(
        f"{r['listings']:,} listings, {r['train_pairs']:,} training pairs, {r['eval_pairs']:,} held-out pairs"
    )
    console.print(
        records_table("recall of held-out pairs", [{"vectors": k, **v} for k, v in r["recall"].items()])
    )
    _print_report(report, out)


@table_command("air", _show_air)
def _air() -> tuple[type, Learner]:
    """AIR listing vectors (d=256): one shared tower over content tables (--set tables=TEXT,VISUAL) and
    numeric attributes, trained on co-viewed / co-clicked pairs before the test period with an in-batch
    softmax over cosine / temperature. Prints recall@k of held-out pairs for AIR and for each input alone."""
    from adsformer.representations.air import AIRConfig, represent_air

    return AIRConfig, represent_air


def _show_visual(report: dict[str, Any], out: Path) -> None:
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


@table_command("visual", _show_visual, "vision")
def _visual() -> tuple[type, Learner]:
    """Multitask visual listing vectors: ImageNet EfficientNet-Lite0, a 256-d layer and one head per label
    column (tasks=auto: article type, color, subcategory, gender where present, else taxonomy and color),
    trained with a task-balanced sampler on cached backbone features (--set finetune_epochs=1 then also
    fine-tunes the last blocks on augmented images). About 25 ms an image at 224 px on one CPU thread
    (--set image_size=128 is ~4x faster). Also writes heads.json (held-out accuracy per head) and
    neighbours.png."""
    from adsformer.representations.visual import VisualConfig, represent_visual

    def learn(data: Path, out: Path, cfg: Any) -> dict[str, Any]:
        return represent_visual(data, out, cfg, say=lambda m: console.print(f"[yellow]note:[/] {m}"))

    return VisualConfig, learn
