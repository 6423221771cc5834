"""``adsformer features``: the feature job (local or Spark engine) writing a feature store for streaming."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from adsformer.cli.common import friendly_errors, needs, output_dir
from adsformer.console import console, kv_table


def features_cmd(
    data: Annotated[Path, typer.Option("--data", help="Canonical dataset directory.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Feature store directory (written atomically).")],
    engine: Annotated[
        str, typer.Option(help="Sequence engine: local | spark (needs the spark extra).")
    ] = "local",
    row_group_rows: Annotated[int, typer.Option(help="Impressions per Parquet row group.")] = 65_536,
    config: Annotated[
        Path | None,
        typer.Option(
            "--config",
            help="YAML data config, or a run config (its data section).",
            exists=True,
            dir_okay=False,
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
    from adsformer.config import ConfigError
    from adsformer.experiments.feature_job import data_config, run_feature_job

    with friendly_errors(), output_dir(out, overwrite):
        if engine not in ("local", "spark"):
            raise ConfigError(f"--engine must be local or spark, got {engine!r}")
        if engine == "spark":
            needs("features --engine spark", "spark")
        summary = run_feature_job(
            data, data_config(config, set_), out, engine=engine, row_group_rows=row_group_rows
        )
    console.print(kv_table("feature store", summary))
    console.print(f"wrote [bold]{out}[/]")
