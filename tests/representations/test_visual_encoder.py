"""encoder.pt beside a visual table: new images embed exactly as the table's listings did."""

import io
import shutil

import numpy as np
import polars as pl
import pytest
from PIL import Image

from adsformer.representations.table import RepresentationTable, TableError
from adsformer.representations.visual import ImageEncoder, VisualConfig, represent_visual

COLORS = [(220, 30, 30), (30, 60, 220), (30, 180, 60)]


def _catalog(root, n=18):
    (root / "images").mkdir(parents=True)
    rows = []
    for i in range(n):
        img = np.full((32, 32, 3), 255, np.uint8)
        img[8 + i % 4 : 24, 8:24] = COLORS[i % 3]
        Image.fromarray(img).save(root / "images" / f"l{i}.png")
        rows.append((f"l{i}", f"images/l{i}.png", f"c{i % 3}", f"tax.{i % 2}"))
    pl.DataFrame(
        rows, schema=["listing_id", "image_path", "c_color", "taxonomy_id"], orient="row"
    ).write_parquet(root / "listings.parquet")
    return root


@pytest.mark.parametrize("finetune_epochs", [0, 1])
def test_encoder_reproduces_the_table_vectors(tmp_path, finetune_epochs):
    data = _catalog(tmp_path / "data")
    cfg = VisualConfig(
        image_size=32,
        heads_epochs=2,
        finetune_epochs=finetune_epochs,
        finetune_max_images=16,
        batch_size=8,
        min_class_count=2,
        threads=1,
        neighbour_queries=0,
    )
    represent_visual(data, tmp_path / "t", cfg, progress=False)
    table = RepresentationTable.load(tmp_path / "t")
    encoder = ImageEncoder.load(tmp_path / "t")
    paths = [data / "images" / f"{lid}.png" for lid in table.ids]
    vectors, ok = encoder.encode(paths)
    assert ok.all() and vectors.shape == table.vectors.shape
    # after fine-tuning the table's vectors come from float16-cached trunk activations: 1e-4 apart
    np.testing.assert_allclose(vectors, table.vectors, atol=2e-5 if finetune_epochs == 0 else 1e-3)
    assert (vectors * table.vectors).sum(axis=1).min() > 0.9999
    # the same image as bytes, and an undecodable one
    raw = (data / "images" / f"{table.ids[0]}.png").read_bytes()
    v, ok = encoder.encode([raw, b"not an image", tmp_path / "missing.png"])
    assert ok.tolist() == [True, False, False]
    np.testing.assert_allclose(v[0], vectors[0], atol=1e-6)
    assert not v[1:].any()
    buf = io.BytesIO()
    Image.open(io.BytesIO(raw)).convert("RGB").save(buf, format="JPEG", quality=95)  # re-encoded: still close
    assert float(encoder.encode([buf.getvalue()])[0][0] @ table.vectors[0]) > 0.95


def test_a_table_without_encoder_still_loads_and_says_how_to_get_one(tmp_path):
    data = _catalog(tmp_path / "data", n=12)
    cfg = VisualConfig(
        image_size=32, heads_epochs=1, batch_size=8, min_class_count=2, threads=1, neighbour_queries=0
    )
    represent_visual(data, tmp_path / "t", cfg, progress=False)
    old = tmp_path / "old"
    shutil.copytree(tmp_path / "t", old)
    (old / "encoder.pt").unlink()  # as written before search by image existed
    assert len(RepresentationTable.load(old).ids) == 12
    with pytest.raises(TableError, match=r"no encoder\.pt.*represent visual"):
        ImageEncoder.load(old)
