"""``adsformer features``: the feature job (local or Spark engine) writing a feature store for streaming."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from adsformer.cli.common import data_config, friendly_errors, needs, output_dir
from adsformer.console import console, kv_table


def features_cmd(
    data: Annotated[Path, typer.Option("--data", help="Canonical dataset directory.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Feature store directory (written atomically).")],
    engine: Annotated[
        str, typer.Option(help="Sequence engine: local | spark (needs the spark extra).")
    ] = "local",
    row_group_rows: Annotated[int, typer.Option(help="Impressions per Parquet row group.")] = 65_536,
    config: Annotated[
        str | None,
        typer.Option(
            "--config",
            help="A data preset (data, data_test), a run preset or file (its data section), or a data YAML "
            "file, which may 'extends:' a preset.",
        ),
    ] = None,
    set_: Annotated[
        list[str] | None,
        typer.Option(
            "--set", help="Override a data config key: key=value (repeatable); lists comma-separated: a,b."
        ),
    ] = None,
    overwrite: Annotated[
        bool,
        typer.Option(
            "--overwrite", help="Write into --out even when it holds files adsformer did not write."
        ),
    ] = False,
) -> None:
    """Build every model input once and write a feature store; `adsformer train --data FEAT_DIR` streams it
    with bounded memory."""
    from adsformer.config import ENGINES, one_of
    from adsformer.experiments.feature_job import run_feature_job

    with friendly_errors(), output_dir(out, overwrite):
        chosen = one_of(ENGINES, engine, "--engine")
        if chosen == "spark":
            needs("features --engine spark", "spark")
        summary = run_feature_job(
            data, data_config(config, set_), out, engine=chosen, row_group_rows=row_group_rows
        )
    console.print(kv_table("feature store", summary))
    console.print(f"wrote [bold]{out}[/]")
