import json

import numpy as np
import polars as pl
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from adsformer.cli import app
from adsformer.config import ConfigError, apply_overrides, parse_overrides
from adsformer.representations.table import RepresentationTable, TableError
from adsformer.representations.visual import (
    Augmentation,
    Backbone,
    BalancedTaskSampler,
    ImageLoader,
    VisualConfig,
    augment,
    encode_task,
    extract_features,
    masked_multitask_loss,
    represent_visual,
    resolve_tasks,
)

COLORS = {"red": (220, 30, 30), "blue": (30, 60, 220), "green": (30, 180, 60)}

# tiny and fast: 32 px images, no fine-tuning unless a test asks for it
FAST = VisualConfig(
    image_size=32, heads_epochs=2, finetune_epochs=0, batch_size=16, min_class_count=2, threads=1
)


def _catalog(tmp_path, n=24, with_taxonomy=True):
    """A catalog-only dataset: squares and discs of three colours on white, 32x32 PNG; one listing without
    an image."""
    (tmp_path / "images").mkdir(parents=True)
    rng = np.random.default_rng(0)
    rows = []
    yy, xx = np.mgrid[:32, :32]
    for i in range(n):
        color = list(COLORS)[i % 3]
        shape = "square" if (i // 3) % 2 == 0 else "disc"
        img = np.full((32, 32, 3), 255, np.uint8)
        cx, cy = rng.integers(12, 20, 2)
        mask = (
            (abs(xx - cx) < 8) & (abs(yy - cy) < 8)
            if shape == "square"
            else (xx - cx) ** 2 + (yy - cy) ** 2 < 64
        )
        img[mask] = COLORS[color]
        Image.fromarray(img).save(tmp_path / "images" / f"l{i}.png")
        rows.append((f"l{i}", f"images/l{i}.png", color, shape, f"shapes.{shape}"))
    rows.append(("nopic", None, "red", "square", "shapes.square"))
    frame = pl.DataFrame(
        rows, schema=["listing_id", "image_path", "c_color", "c_shape", "taxonomy_id"], orient="row"
    )
    if not with_taxonomy:
        frame = frame.drop("taxonomy_id")
    frame.write_parquet(tmp_path / "listings.parquet")
    return tmp_path


# --- sampler and masked loss ---------------------------------------------------------------------------


def test_sampler_gives_each_task_its_share_of_every_batch():
    pools = [np.arange(0, 10), np.arange(100, 1000), np.arange(5000, 5003)]  # very unequal sizes
    s = BalancedTaskSampler(pools, batch_size=32, seed=0)
    counts = np.zeros(3)
    for _ in range(300):
        rows, task = s.sample()
        assert rows.shape == task.shape == (32,)
        share = np.bincount(task, minlength=3)
        assert share.min() >= 32 // 3 and share.max() <= 32 // 3 + 1
        for t in range(3):  # every row was drawn from its own task's pool
            assert np.isin(rows[task == t], pools[t]).all()
        counts += share
    assert np.allclose(counts / counts.sum(), 1 / 3, atol=0.01)
    assert s.steps_per_epoch == int(np.ceil((10 + 900 + 3) / 32))
    # rows are drawn with replacement within a pool: the 3-row pool is reused, and all its rows appear
    rows, task = BalancedTaskSampler([np.arange(3), np.arange(3, 6)], 40, seed=1).sample()
    assert set(rows[task == 0]) == {0, 1, 2}


def test_sampler_rejects_bad_input():
    with pytest.raises(ValueError, match="no examples"):
        BalancedTaskSampler([np.arange(3), np.array([], np.int64)], 8)
    with pytest.raises(ValueError, match="smaller than the number of tasks"):
        BalancedTaskSampler([np.arange(3)] * 4, 3)


def test_masked_loss_uses_only_the_drawn_tasks_head():
    torch.manual_seed(0)
    heads = torch.nn.ModuleList([torch.nn.Linear(8, 3), torch.nn.Linear(8, 5)])
    z = torch.randn(6, 8)
    # a batch drawn for task 0 only: head 1 gets no gradient (it is not even evaluated)
    loss = masked_multitask_loss(heads, z, torch.tensor([0, 1, 2, 0, 1, 2]), torch.zeros(6, dtype=torch.long))
    loss.backward()
    assert heads[0].weight.grad is not None and heads[0].weight.grad.abs().sum() > 0
    assert heads[1].weight.grad is None or heads[1].weight.grad.abs().sum() == 0

    # a mixed batch: head 1's gradient comes from its own examples only (label 4 is out of head 0's range)
    heads.zero_grad(set_to_none=True)
    task = torch.tensor([0, 0, 0, 1, 1, 1])
    labels = torch.tensor([0, 1, 2, 4, 3, 4])
    loss = masked_multitask_loss(heads, z, labels, task)
    expected = (
        torch.nn.functional.cross_entropy(heads[0](z[:3]), labels[:3], reduction="sum")
        + torch.nn.functional.cross_entropy(heads[1](z[3:]), labels[3:], reduction="sum")
    ) / 6
    assert torch.allclose(loss, expected)
    loss.backward()
    g1 = heads[1].weight.grad.clone()
    heads.zero_grad(set_to_none=True)
    z2 = z.clone()
    z2[:3] = torch.randn(3, 8) * 100  # change only task 0's examples
    masked_multitask_loss(heads, z2, labels, task).backward()
    assert torch.allclose(heads[1].weight.grad, g1)


# --- augmentation ----------------------------------------------------------------------------------------


def test_augmentation_keeps_shapes_and_range_and_is_identity_when_off():
    x = torch.rand(4, 3, 32, 32)
    g = torch.Generator().manual_seed(0)
    y = augment(x, Augmentation(rotate_deg=15, translate=0.1, zoom=0.2, contrast=0.3), g)
    assert y.shape == x.shape and y.min() >= 0 and y.max() <= 1 and not torch.equal(x, y)
    assert augment(x, Augmentation(), g) is x
    assert VisualConfig(augment=False).augmentation == Augmentation()
    assert not VisualConfig(rotate_deg=0, translate=0, zoom=0, contrast=0).augmentation.active
    # a contrast-only jitter keeps each image's mean (before clipping): geometry untouched
    c = augment(torch.full((2, 3, 8, 8), 0.5), Augmentation(contrast=0.5), g)
    assert torch.allclose(c, torch.full_like(c, 0.5))


def test_micro_batches_give_the_same_features_and_cache_the_trunk(tmp_path):
    data = _catalog(tmp_path, n=6)
    loader = ImageLoader([data / "images" / f"l{i}.png" for i in range(6)], 32)
    backbone = Backbone(32, unfreeze_blocks=2)
    runs = []
    for micro in (1, 4, 16):
        cfg = VisualConfig(image_size=32, batch_size=4, micro_batch=micro)
        runs.append(
            extract_features(
                backbone,
                loader,
                np.arange(6),
                cfg,
                augmented=False,
                keep_trunk=True,
                generator=torch.Generator(),
                describe="test",
                progress=False,
            )
        )
    for pooled, trunk, ok in runs:
        assert pooled.shape == (6, 1280) and ok.all() and trunk is not None and trunk.dtype == np.float16
        assert np.allclose(pooled, runs[0][0], atol=1e-4)
    with torch.no_grad():  # the tail over the cached trunk gives the pooled features back
        again = backbone.tail(torch.from_numpy(runs[0][1].astype(np.float32))).numpy()
    assert np.allclose(again, runs[0][0], atol=2e-2)


# --- labels, settings ------------------------------------------------------------------------------------


def test_rare_classes_are_dropped_from_their_head_and_auto_tasks():
    train = np.array([True] * 6 + [False] * 2)
    tl = encode_task("c_color", ["a", "a", "a", "b", "b", None, "a", "c"], train, min_count=2)
    assert tl.classes == ["a", "b"]
    assert tl.codes.tolist() == [0, 0, 0, 1, 1, -1, 0, -1]  # None and the held-out unseen class: no label
    tl = encode_task("c_color", ["a", "a", "a", "b", "c", "c", "a", "c"], train, min_count=3)
    assert tl.classes == ["a"] and tl.dropped_classes == 2 and tl.dropped_examples == 3
    fashion = pl.DataFrame({"listing_id": ["x"], "c_color": ["r"], "c_gender": ["m"], "taxonomy_id": ["t"]})
    assert resolve_tasks(VisualConfig(), fashion) == (["c_color", "c_gender"], True)
    market = pl.DataFrame({"listing_id": ["x"], "c_color": ["r"], "taxonomy_id": ["t"]})
    assert resolve_tasks(VisualConfig(), market) == (["taxonomy_id", "c_color"], True)
    with pytest.raises(TableError, match=r"c_material.*label columns there"):
        resolve_tasks(VisualConfig(tasks=("c_material",)), market)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"dim": 0}, "dim=0: must be >= 1"),
        ({"image_size": 16}, "image_size=16: must be in 32..1024"),
        ({"unfreeze_blocks": 17}, "unfreeze_blocks=17: must be in 0..16"),
        ({"val_fraction": 1.0}, r"val_fraction=1.0: must be in \[0, 0.9\)"),
        ({"rotate_deg": -5}, "rotate_deg=-5.0: must be in"),
        ({"tasks": "auto,c_color"}, "give either auto or a list"),
        ({"tasks": "c_color,c_color"}, "named twice"),
        ({"lr": 0}, "lr=0.0: must be > 0"),
        ({"max_images": 1}, "max_images=1: must be >= 2"),
    ],
)
def test_bad_settings_are_rejected_with_a_clear_message(overrides, message):
    with pytest.raises(ConfigError, match=message):
        apply_overrides(VisualConfig(), overrides, short_keys={})


def test_cli_rejects_bad_settings_and_missing_columns(tmp_path):
    data = _catalog(tmp_path / "data", n=6)
    r = CliRunner().invoke(
        app,
        ["represent", "visual", "--data", str(data), "--out", str(tmp_path / "t"), "--set", "batch_size=1"],
    )
    assert r.exit_code == 1 and "batch_size=1: must be >= 2" in r.output
    r = CliRunner().invoke(
        app,
        ["represent", "visual", "--data", str(data), "--out", str(tmp_path / "t"), "--set", "tasks=c_size"],
    )
    assert r.exit_code == 1 and "c_size" in r.output and not (tmp_path / "t").exists()


# --- end to end ------------------------------------------------------------------------------------------


def test_vectors_are_unit_norm_for_every_listing_with_an_image(tmp_path):
    data = _catalog(tmp_path / "data", n=24, with_taxonomy=False)
    cfg = apply_overrides(
        FAST, parse_overrides(["tasks=c_color,c_shape", "finetune_epochs=1"]), short_keys={}
    )
    cfg = apply_overrides(cfg, {"finetune_max_images": 16, "unfreeze_blocks": 1, "feature_views": 2}, {})
    report = represent_visual(data, tmp_path / "t", cfg, progress=False)
    table = RepresentationTable.load(tmp_path / "t")
    assert table.kind == "visual" and table.vectors.shape == (24, 256)
    assert sorted(table.ids) == sorted(f"l{i}" for i in range(24))  # "nopic" has no image: no vector
    assert np.allclose(np.linalg.norm(table.vectors, axis=1), 1.0, atol=1e-5)
    heads = {h["task"]: h for h in report["heads"]["heads"]}
    assert set(heads) == {"c_color", "c_shape"} and heads["c_color"]["classes"] == 3
    assert len(report["heads"]["phases"]["finetune"]["loss"]) == 1
    assert report["n"] == 24  # no taxonomy_id: quality measured by the first task


def test_cli_writes_the_table_its_reports_heads_and_neighbours(tmp_path):
    data = _catalog(tmp_path / "data", n=30)
    out = tmp_path / "table"
    args = ["represent", "visual", "--data", str(data), "--out", str(out)]
    args += [f"--set={k}={v}" for k, v in [("image_size", 32), ("heads_epochs", 3), ("finetune_epochs", 0)]]
    args += ["--set", "min_class_count=2", "--set", "batch_size=16", "--set", "threads=1"]
    args += ["--set", "tasks=c_color,c_shape", "--set", "neighbour_queries=3"]
    r = CliRunner().invoke(app, args)
    assert r.exit_code == 0, r.output
    for name in (
        "vectors.parquet",
        "table.json",
        "quality.json",
        "similarity.png",
        "heads.json",
        "neighbours.png",
    ):
        assert (out / name).exists(), name
    heads = json.loads((out / "heads.json").read_text())
    assert [h["task"] for h in heads["heads"]] == ["c_color", "c_shape"]
    assert heads["val_images"] == 3 and heads["train_images"] == 27
    for h in heads["heads"]:
        assert 0 <= h["val_accuracy"] <= 1 and 0 <= h["majority_accuracy"] <= 1
    assert "held-out accuracy" in r.output and "c_color" in r.output
    meta = json.loads((out / "table.json").read_text())
    assert meta["kind"] == "visual" and meta["dim"] == 256 and meta["settings"]["images"] == 30
    with Image.open(out / "neighbours.png") as im:
        assert im.size[0] > 300 and im.size[1] > 200
