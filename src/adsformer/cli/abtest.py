"""``adsformer abtest``: the closed-loop online A/B test on the simulator (:mod:`adsformer.experiments.abtest`)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer

from adsformer.cli.common import friendly_errors, needs, output_dir
from adsformer.console import ProgressBar, console, log, records_table


@contextmanager
def _progress() -> Iterator[Callable[[str, int, int], None]]:
    """Progress of the ad requests on stderr: a rich bar on a terminal, else timestamped lines."""
    from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeRemainingColumn

    columns = (
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]}"),
        TimeRemainingColumn(),
    )
    with ProgressBar(*columns) as bar:
        task = bar.add_task("abtest: ad requests", total=None, rate="")
        start = time.perf_counter()

        def update(_stage: str, done: int, total: int) -> None:
            rate = done / max(time.perf_counter() - start, 1e-9)
            bar.update(task, completed=done, total=total, rate=f"{rate:,.0f} requests/s")

        yield update


def abtest_cmd(
    data: Annotated[
        Path, typer.Option("--data", help="Simulated dataset directory (adsformer prepare simulate).")
    ],
    arm: Annotated[
        list[str],
        typer.Option(
            "--arm",
            help="NAME=RUN_DIR[,PCCVR_RUN] (a CTR run, optionally a PCCVR run) or NAME=random (random "
            "scores); repeat for each arm, the first is the control.",
        ),
    ],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output directory (written atomically).")],
    url: Annotated[
        list[str] | None,
        typer.Option(
            "--url",
            help="NAME=http://HOST:PORT: serve arm NAME by a running adsformer serve over HTTP instead of in "
            "process (start it with ADSFORMER_EVENT_MAX_FUTURE_S=1000000).",
        ),
    ] = None,
    api_key: Annotated[
        str | None,
        typer.Option("--api-key", envvar="ADSFORMER_API_KEY", help="X-API-Key for POST /events (--url)."),
    ] = None,
    users: Annotated[
        int | None, typer.Option("--users", help="At most this many users (a stable sample).")
    ] = None,
    requests: Annotated[
        int | None, typer.Option("--requests", help="Stop after this many ad requests (in time order).")
    ] = None,
    candidates: Annotated[
        int, typer.Option("--candidates", help="Candidates retrieved and scored per request.")
    ] = 200,
    seed: Annotated[int, typer.Option("--seed", help="Seed of clicks, purchases and the bootstrap.")] = 0,
    bootstrap: Annotated[int, typer.Option("--bootstrap", help="Bootstrap resamples of users.")] = 1000,
    workers: Annotated[
        int,
        typer.Option("--workers", help="Arms run at once in separate processes (0: one per arm, <= CPUs)."),
    ] = 0,
    salt: Annotated[str, typer.Option("--salt", help="Salt of the user hash that assigns arms.")] = (
        "adsformer-abtest"
    ),
    overwrite: Annotated[
        bool,
        typer.Option(
            "--overwrite", help="Write into --out even when it holds files adsformer did not write."
        ),
    ] = False,
) -> None:
    """Closed-loop online A/B test: simulated users act, send their events to the ranking service, are shown
    its ads and click and buy by the simulator's ground truth; per-arm CTR, conversion, revenue, ROAS, GMS,
    CPC and lifts against the first arm with 95% intervals -> abtest.json, abtest.md, a plot."""
    needs("abtest", "serve")
    from adsformer.experiments.abtest import (
        LABELS,
        METRICS,
        AbtestConfig,
        check_arms,
        default_workers,
        parse_arm,
        run_abtest,
        with_urls,
    )

    with friendly_errors(), output_dir(out, overwrite):
        arms = with_urls([parse_arm(a) for a in arm], url or [])
        check_arms(arms)
        if not data.is_dir():
            raise NotADirectoryError(f"{data}: not a dataset directory")
        cfg = AbtestConfig(
            seed=seed,
            users=users,
            requests=requests,
            candidates=candidates,
            salt=salt,
            bootstrap=bootstrap,
            workers=workers if workers > 0 else default_workers(len(arms)),
            api_key=api_key,
        )
        log(
            f"abtest: {len(arms)} arms ({', '.join(f'{a.name}: {a.kind}' for a in arms)}) on {data}; "
            f"{cfg.workers} worker(s)"
        )
        with _progress() as progress:
            result = run_abtest(data, arms, out, cfg, progress=progress)
    s = result.summary
    rows = [
        {
            "arm": a["name"],
            "users": a["users"],
            "requests": a["requests"],
            "impressions": a["impressions"],
            "CTR": a["ctr"] if a["ctr"] is not None else "n/a",
            "conv. rate": a["conversion_rate"] if a["conversion_rate"] is not None else "n/a",
            "revenue": a["revenue"],
            "ROAS": a["roas"] if a["roas"] is not None else "n/a",
            "GMS": a["gms"],
            "CPC": a["cpc"] if a["cpc"] is not None else "n/a",
        }
        for a in s["arms"]
    ]
    console.print(records_table("online A/B test", rows))
    lifts = []
    for a in s["arms"][1:]:
        row: dict[str, object] = {f"lift vs {s['control']}": a["name"]}
        for m in METRICS:
            e = a["lift"][m]
            if e["lift"] is None:
                row[LABELS[m]] = "n/a"
                continue
            lo, hi = e["ci"]
            ci = f" [{lo:+.1f}, {hi:+.1f}]" if lo is not None and hi is not None else ""
            row[LABELS[m]] = f"{e['lift']:+.2f}%{ci}" + ("" if e["significant"] else " n.s.")
        lifts.append(row)
    console.print(records_table("lifts (95% bootstrap intervals over users)", lifts))
    t = s["timing"]
    console.print(
        f"{s['setup']['requests']:,} ad requests in {t['replay_s']:.1f} s ({t['requests_per_s']:,.0f}/s, "
        f"{t['workers']} worker(s)); total {t['total_s']:.1f} s"
    )
    console.print(f"wrote [bold]{out}[/] (abtest.json, abtest.md, {s['plot']}, impressions.parquet)")
