"""What ``adsformer [COMMAND] --help`` shows beyond each command's own text.

* Plain text: no help is read as markup, so ``[spark]`` stays ``[spark]``, and option names are never cut
  to fit a narrow terminal (the rich panels did both).
* One example per command, after its options (:data:`EXAMPLES`; every example parses: the tests check).
* Every default: an option whose default is computed rather than a value says what it is
  (:data:`DEFAULTS`).
* The commands in the order of the workflow (:data:`ORDER`), not the order they were registered.
"""

from __future__ import annotations

from typing import Any

#: ``adsformer --help`` lists the commands in this order (the workflow: data, representations, training and
#: evaluation, studies, retrieval and serving); a command not listed comes after, by name
ORDER = (
    "demo",
    "prepare",
    "validate",
    "stats",
    "sequences",
    "features",
    "represent",
    "config",
    "train",
    "evaluate",
    "predict",
    "export",
    "report",
    "ablate",
    "ablate-merge",
    "tune",
    "daily",
    "position",
    "index",
    "retrieve",
    "serve",
    "serve-demo",
    "abtest",
)

#: One example per command (path as typed after ``adsformer``). List values of ``--set`` are comma-separated
#: (``tables=a,b``): no brackets, so nothing for a shell to expand.
EXAMPLES: dict[str, tuple[str, ...]] = {
    "demo": ("adsformer demo --scale tiny --out demo_out",),
    "prepare simulate": ("adsformer prepare simulate --scale tiny --seed 1 --out data",),
    "prepare taobao-userbehavior": (
        "adsformer prepare taobao-userbehavior UserBehavior.csv --out taobao --negatives 4",
    ),
    "prepare trivago": ("adsformer prepare trivago train.csv --out trivago",),
    "prepare movielens": ("adsformer prepare movielens ml-100k --out movielens --click-threshold 4",),
    "prepare fashion": ("adsformer prepare fashion fashion-dataset --out fashion --no-images",),
    "validate": ("adsformer validate data",),
    "stats reengagement": ("adsformer stats reengagement data --window 3600 --out reengagement.json",),
    "sequences": ("adsformer sequences --data data --set window_s=1800 --set max_len=20",),
    "features": ("adsformer features --data data --out features  # then: adsformer train --data features",),
    "represent skipgram": ("adsformer represent skipgram --data data --out tables/skipgram --set dim=64",),
    "represent text": ("adsformer represent text --data data --out tables/text --set keep=color,material",),
    "represent air": (
        "adsformer represent air --data data --out tables/air --set tables=tables/text,tables/visual",
    ),
    "represent visual": ("adsformer represent visual --data data --out tables/visual",),
    "config show": ("adsformer config show --config ctr_test --set epochs=3",),
    "train": (
        "adsformer train --data data --out runs/ctr --task ctr --set epochs=3 --set tables=tables/skipgram",
    ),
    "evaluate": ("adsformer evaluate runs/ctr --data data",),
    "predict": ("adsformer predict runs/ctr --data data --out predictions.parquet",),
    "export": ("adsformer export runs/ctr --out model.pt",),
    "report": ("adsformer report runs/ctr runs/pccvr ablation --out report.html",),
    "ablate": (
        "adsformer ablate --data data --out ablation --suite pretrained --set tables=tables/skipgram,tables/air",
    ),
    "ablate-merge": ("adsformer ablate-merge --out ablation ablation-seed0 ablation-seed1 ablation-seed2",),
    "tune": ("adsformer tune --data data --out tune --config ctr_test --trials 12 --set epochs=3 --final",),
    "daily": ("adsformer daily --data data --out daily --days 3 --task ctr",),
    "position": ("adsformer position --data data --out position --seeds 2",),
    "index build": (
        "adsformer index build --data data --out index --tables tables/skipgram,tables/text --run runs/ctr",
    ),
    "index info": ("adsformer index info index",),
    "retrieve": ("adsformer retrieve index --query 'blue wool scarf' --k 10",),
    "serve": (
        "adsformer serve --run runs/ctr --pccvr-run runs/pccvr --catalog data --api-key SECRET "
        "--redis-url redis://127.0.0.1:6379/0",
    ),
    "serve-demo": ("adsformer serve-demo --run runs/ctr --pccvr-run runs/pccvr --data data --users 3",),
    "abtest": (
        "adsformer abtest --data data --arm base=runs/ctr-baseline --arm ads=runs/ctr-ads,runs/pccvr-ads --out ab",
    ),
}

#: What an option whose default is not a plain value does when it is not given (by option name; a
#: ``COMMAND OPTION`` key applies to that command only)
DEFAULTS: dict[str, str] = {
    "--task": "the config's, else ctr",
    "--model": "the config's, else adsformer",
    "config show --kind": "the file's kind, else run",
    "--config": "none: the built-in settings",
    "--set": "none",
    "--only": "every row",
    "--tables": "none",
    "ablate --tables": "the config's tables",
    "--batch-size": "the run's eval batch size",
    "--index": "none: match the catalog",
    "--pccvr-run": "none: PCCVR factor 1",
    "--catalog": "the index's listings",
    "--redis-url": "none: the in-process store",
    "serve --api-key": "one random key, printed at start",
    "abtest --api-key": "none",
    "--feature-log": "none: not logged",
    "--cache-ttl": "5 s",
    "--images": "per scale",
    "index build --run": "none: smoothed click history",
    "--query": "none",
    "--listing": "none",
    "--image": "none",
    "--source": "every source",
    "--exhausted": "none",
    "--url": "none: every arm in process",
    "--users": "every user",
    "--requests": "every request",
    "--action": "none",
    "stats reengagement --out": "none: printed only",
    "--trials": "the config's tune.trials",
    "--log-to": "none: the run directory only",
    "evaluate --data": "the run's own data, recorded when it trained",
}


def summary(text: str) -> str:
    """The first sentence of a command's help (its first paragraph when that has no full stop)."""
    first = " ".join(text.strip().split("\n\n")[0].split())
    end = first.find(". ")
    return first if end < 0 else first[: end + 1]


def example_text(command: str) -> str:
    """The epilog of ``command``: its example, kept as typed (``\\b`` stops the paragraph being rewrapped)."""
    return "Example:\n\n\b\n" + "\n".join(f"  {line}" for line in EXAMPLES[command])


def default_text(command: str, option: str) -> str | None:
    """What ``option`` of ``command`` does when not given, when that is not a plain value."""
    return DEFAULTS.get(f"{command} {option}", DEFAULTS.get(option))


def polish(command: Any, path: str = "") -> None:
    """Set up the help of ``command`` (a click command or group) and everything under it: plain text,
    its example, every default. Commands without an example keep none."""
    command.rich_markup_mode = None  # typer: plain click help (no markup, no cut option names)
    if command.help and not command.short_help:  # the command lists show it whole (wrapped), not cut
        command.short_help = summary(command.help)
    if path in EXAMPLES:
        command.epilog = example_text(path)
    for param in getattr(command, "params", []):
        opts = [o for o in getattr(param, "opts", []) if o.startswith("--")]
        if not opts or param.required or param.name == "help":
            continue
        said = default_text(path, opts[0])
        if param.default is None and said:
            param.show_default = said
    for name, sub in getattr(command, "commands", {}).items():
        polish(sub, f"{path} {name}".strip())


def ordered(names: list[str]) -> list[str]:
    """Command names in :data:`ORDER` (unlisted ones after, by name)."""
    rank = {name: i for i, name in enumerate(ORDER)}
    return sorted(names, key=lambda n: (rank.get(n, len(ORDER)), n))
