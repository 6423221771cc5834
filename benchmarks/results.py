"""Regenerate the ablation tables of ``docs/results.md`` on real data and on the simulator.

    python benchmarks/results.py --shared ../shared/data [--seeds 3] [--only trivago-ctr,taobao-ctr,...]
    python benchmarks/results.py --shared ../shared/data --suite comparison [--seeds 3] [--set threads=1]
    python benchmarks/results.py --suite comparison --render-only --work DIR   # tables from finished runs

For each experiment it prepares the dataset (``adsformer prepare ...``), learns skip-gram listing vectors from
the sessions before the test period (``adsformer represent skipgram``, ADPM component 2), runs
``adsformer ablate --suite paper --set tables=...`` with the given seeds, and writes the tables between the ``<!-- results:begin -->`` / ``<!-- results:end -->``
markers of ``docs/results.md`` (the commentary around them is kept). Each experiment's ``ablation.json`` stays
in ``--work`` (default ``bench_out/results``). Long: tens of minutes on 2 cores; run it in the background.
"""

from __future__ import annotations

import argparse
import json
import re
import time
from pathlib import Path

from adsformer.data.adapters import ADAPTERS
from adsformer.experiments.ablation import COMPARISON_ROWS as COMPARISON_ROW_SPECS
from adsformer.experiments.ablation import PAPER_SUITE, PEER_ROWS, run_ablation
from adsformer.experiments.ablation_result import AblationResult, ablation_markdown
from adsformer.representations.skipgram import SkipGramConfig, represent_skipgram
from adsformer.run.config import load_experiment
from adsformer.simulator import SimulatorConfig, simulate

#: Rows left out per experiment (named in the generated section)
SKIP_ROWS: dict[str, tuple[str, ...]] = {}

#: name -> (source, path inside --shared or simulator scale, task, --set overrides)
EXPERIMENTS: dict[str, tuple[str, str, str, list[str]]] = {
    # trivago has no "view": its item-image interactions are the closest (the most frequent listing action)
    "trivago-ctr": (
        "trivago",
        "trivago/trivago_val_100k.parquet",
        "ctr",
        [
            "epochs=1",
            "batch_size=1024",
            "encoder_pair=listing:interaction_image",
            "model.bst.pair=listing:interaction_image",
            "model.lastk.pair=listing:interaction_image",
        ],
    ),
    "taobao-ctr": (
        "taobao-userbehavior",
        "taobao_userbehavior/UserBehavior.csv",
        "ctr",
        ["epochs=1", "batch_size=1024"],
    ),
    "taobao-pccvr": (
        "taobao-userbehavior",
        "taobao_userbehavior/UserBehavior.csv",
        "pccvr",
        ["epochs=2", "batch_size=512"],
    ),
    # every row of the suite at 3 seeds: CTR at the demo scale (at medium scale one seed of every row takes
    # about half an hour on 2 cores), PCCVR at medium scale (14k training purchases; 1.4k at demo scale)
    "simulator-ctr": ("simulate", "demo", "ctr", ["epochs=3"]),
    "simulator-pccvr": ("simulate", "medium", "pccvr", ["epochs=2", "batch_size=512"]),
}
#: The paper's rows, then the default adSformer, the touch signals alone, the no-learning rules and the peers
SUITE_ROWS = (*PAPER_SUITE, *COMPARISON_ROW_SPECS, *PEER_ROWS)
BEGIN, END = "<!-- results:begin -->", "<!-- results:end -->"

#: ``--suite comparison``: the default adSformer (ADPM with the target-aware touch signals),
#: the touch signals alone, the two no-learning rules and FuxiCTR's DIN and TransAct (when installed), with
#: the library's defaults (pairs auto, batch size auto, early stopping) and epochs capped at 3.
COMPARISON: dict[str, tuple[str, str, str]] = {
    "trivago-ctr": ("trivago", "trivago/trivago_val_100k.parquet", "ctr"),
    "taobao-ctr": ("taobao-userbehavior", "taobao_userbehavior/UserBehavior.csv", "ctr"),
    "taobao-pccvr": ("taobao-userbehavior", "taobao_userbehavior/UserBehavior.csv", "pccvr"),
    "sim-demo-ctr": ("simulate", "demo", "ctr"),
    "sim-demo-pccvr": ("simulate", "demo", "pccvr"),
}
COMPARISON_ROWS = ("adSformer", "[Touch]", "rule-touch", "rule-touch+position", "DIN", "TransAct")
COMPARISON_SETS = ["epochs=3"]
CBEGIN, CEND = "<!-- comparison:begin -->", "<!-- comparison:end -->"


def prepare(source: str, where: str, shared: Path, data_dir: Path) -> Path:
    if (data_dir / "dataset.json").exists():
        return data_dir
    if source == "simulate":
        simulate(SimulatorConfig.preset(where).with_overrides(images=False), data_dir)
    else:
        ADAPTERS[source](shared / where, data_dir)
    return data_dir


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shared", type=Path, default=Path("../shared/data"), help="the public datasets folder")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--only", default="", help="comma-separated experiment names (default: all)")
    ap.add_argument("--work", type=Path, default=Path("bench_out/results"))
    ap.add_argument("--doc", type=Path, default=Path("docs/results.md"))
    ap.add_argument("--set", dest="sets", action="append", default=[], help="extra overrides, e.g. threads=1")
    ap.add_argument("--suite", choices=("paper", "comparison"), default="paper")
    ap.add_argument("--render-only", action="store_true", help="only rewrite the doc from --work")
    args = ap.parse_args()
    if args.suite == "comparison":
        if not args.render_only:
            run_comparison(args)
        write_comparison(args.work, args.doc)
        return
    if args.render_only:
        write_doc(args.work, args.doc)
        return
    names = [n for n in args.only.split(",") if n] or list(EXPERIMENTS)
    for name in names:
        source, where, task, sets = EXPERIMENTS[name]
        data = prepare(source, where, args.shared, args.work / "data" / f"{source}-{where.split('/')[-1]}")
        table = data.parent.parent / "tables" / f"{data.name}-skipgram"
        if not (table / "vectors.parquet").exists():
            q = represent_skipgram(data, table, SkipGramConfig())
            print(f"{name}: skipgram {q['n']} listings, separation AUC {q['separation_auc']:.3f}", flush=True)
        cfg = load_experiment(None, [*sets, *args.sets, f"tables={table}"], extra={"task": task})
        start = time.perf_counter()
        rows = tuple(r.name for r in SUITE_ROWS if r.name not in SKIP_ROWS.get(name, ()))
        run_ablation(data, cfg, "paper", args.seeds, args.work / name, only=rows)
        print(f"{name}: {time.perf_counter() - start:.0f} s", flush=True)
    write_doc(args.work, args.doc)


def run_comparison(args: argparse.Namespace) -> None:
    names = [n for n in args.only.split(",") if n] or list(COMPARISON)
    for name in names:
        source, where, task = COMPARISON[name]
        data = prepare(source, where, args.shared, args.work / "data" / f"{source}-{where.split('/')[-1]}")
        cfg = load_experiment(None, [*COMPARISON_SETS, *args.sets], extra={"task": task})
        start = time.perf_counter()
        run_ablation(data, cfg, "paper", args.seeds, args.work / name, only=COMPARISON_ROWS)
        print(f"{name}: {time.perf_counter() - start:.0f} s", flush=True)


def write_comparison(work: Path, doc: Path) -> None:
    blocks = []
    for name in COMPARISON:
        path = work / name / "ablation.json"
        if path.exists():
            result = json.loads(path.read_text())
            body = ablation_markdown(AblationResult.from_dict(result)).split("\n", 2)[2]
            train = result.get("config", {}).get("train", {})
            ran = {row["name"] for row in result["rows"]}
            missing = [r for r in COMPARISON_ROWS if r not in ran]
            note = f" Not run this time: {', '.join(missing)}." if missing else ""
            blocks.append(
                f"### {name}\n\nAt most {train.get('epochs', '?')} epochs (early stopping, patience "
                f"{train.get('patience', '?')}); {result['seeds']} seeds.{note}\n\n{body}"
            )
    text = doc.read_text() if doc.exists() else f"# Results\n\n{CBEGIN}\n{CEND}\n"
    generated = f"{CBEGIN}\n\n" + "\n".join(blocks) + f"\n{CEND}"
    doc.write_text(
        re.sub(re.escape(CBEGIN) + ".*?" + re.escape(CEND), lambda _m: generated, text, flags=re.S)
    )
    print(f"wrote {doc}")


def write_doc(work: Path, doc: Path) -> None:
    """Rewrite the sections of the experiments that have an ``ablation.json`` in ``work``; the other
    experiments' sections between the markers are kept as they are (their runs may live elsewhere)."""
    text = doc.read_text() if doc.exists() else f"# Results\n\n{BEGIN}\n{END}\n"
    block = re.search(re.escape(BEGIN) + "(.*?)" + re.escape(END), text, flags=re.S)
    kept = _sections(block.group(1) if block else "")
    for name in EXPERIMENTS:
        path = work / name / "ablation.json"
        if not path.exists():
            continue
        result = json.loads(path.read_text())
        source, where, _task, sets = EXPERIMENTS[name]
        scale = f"{where} scale, " if source == "simulate" else ""
        skipped = f"\n\nNot run here: {', '.join(SKIP_ROWS[name])}." if name in SKIP_ROWS else ""
        kept[name] = (
            f"### {name}\n\n{scale}{result['seeds']} seeds, `--set {' --set '.join(sets)} --set "
            f"tables=<skipgram table>`{skipped}\n\n"
            + ablation_markdown(AblationResult.from_dict(result)).split("\n", 2)[2]
        )
    blocks = [kept[name] for name in EXPERIMENTS if name in kept]
    generated = f"{BEGIN}\n\n" + "\n".join(blocks) + f"\n{END}"
    doc.write_text(re.sub(re.escape(BEGIN) + ".*?" + re.escape(END), lambda _m: generated, text, flags=re.S))
    print(f"wrote {doc}")


def _sections(block: str) -> dict[str, str]:
    """The ``### name`` sections of a generated block, by name (each with its trailing blank line)."""
    parts = re.split(r"(?m)^(?=### )", block.strip("\n"))
    out = {}
    for part in parts:
        if part.startswith("### "):
            name = part.split("\n", 1)[0][4:].strip()
            out[name] = part.rstrip("\n") + "\n"
    return out


if __name__ == "__main__":
    main()
