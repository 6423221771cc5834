"""The fashion catalog adapter: labels, titles, images, skipped rows, catalog-only validation."""

import polars as pl
import pytest
from PIL import Image

from adsformer.data.adapters import AdapterError, prepare_fashion
from adsformer.data.validate import read_listings, validate_dataset

HEADER = "id,gender,masterCategory,subCategory,articleType,baseColour,season,year,usage"


def _folder(tmp_path, rows, titles):
    src = tmp_path / "fashion"
    (src / "images").mkdir(parents=True)
    (src / "styles.csv").write_text("\n".join([HEADER, *rows]) + "\n")
    (src / "styles_text.csv").write_text("\n".join(["productDisplayName", *titles]) + "\n")
    Image.new("RGB", (8, 8), (200, 10, 10)).save(src / "images" / "1.jpg")
    return src


def test_catalog_with_labels_titles_images_and_skipped_rows(tmp_path):
    rows = [
        "1,Men,Apparel,Topwear,Shirts,Navy Blue,Fall,2011,Casual",
        "2,Women,Accessories,Watches,Watches,Silver,Winter,2016,",
        "3,Men,Apparel",  # malformed
        "1,Men,Apparel,Topwear,Shirts,Red,Fall,2011,Casual",  # duplicate id
    ]
    titles = ["Turtle Check Men Navy Blue Shirt", '"Titan Women 3.5"" Silver Watch"', "x", "y"]
    res = prepare_fashion(_folder(tmp_path, rows, titles), tmp_path / "out")
    lst = read_listings(tmp_path / "out").sort("listing_id")
    assert lst["listing_id"].to_list() == ["1", "2"]
    assert lst["taxonomy_id"].to_list() == ["Apparel/Topwear/Shirts", "Accessories/Watches/Watches"]
    assert lst["title"].to_list() == ["Turtle Check Men Navy Blue Shirt", 'Titan Women 3.5" Silver Watch']
    assert lst["c_color"].to_list() == ["Navy Blue", "Silver"]
    assert lst["tags"].to_list() == [["Men", "Fall", "Casual"], ["Women", "Winter"]]
    assert lst["image_path"].to_list() == ["images/1.jpg", None]
    assert (tmp_path / "out" / "images" / "1.jpg").exists()
    assert [(s.line, s.reason) for s in res.skipped_lines] == [
        (4, "expected 9 fields, found 3"),
        (5, "duplicate id (the first row is kept)"),
    ]
    assert validate_dataset(tmp_path / "out").ok  # catalog-only: empty events and impressions are fine


def test_title_count_mismatch_is_refused_and_nothing_written(tmp_path):
    src = _folder(tmp_path, ["1,Men,Apparel,Topwear,Shirts,Navy Blue,Fall,2011,Casual"], ["a", "b"])
    with pytest.raises(AdapterError, match="2 titles but 1 rows"):
        prepare_fashion(src, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_real_fashion_catalog(shared_data, tmp_path):
    res = prepare_fashion(shared_data / "fashion", tmp_path / "out", images=False)
    lst = pl.read_parquet(tmp_path / "out" / "listings.parquet")
    assert lst.height == res.dataset.listings.height > 40_000
    assert lst["c_article_type"].n_unique() > 100 and lst["title"].null_count() == 0


def test_training_on_a_catalog_is_a_clear_error(tmp_path):
    from typer.testing import CliRunner

    from adsformer.cli import app

    rows = ["1,Men,Apparel,Topwear,Shirts,Navy Blue,Fall,2011,Casual"]
    prepare_fashion(_folder(tmp_path, rows, ["a shirt"]), tmp_path / "out")
    res = CliRunner().invoke(app, ["train", "--data", str(tmp_path / "out"), "--out", str(tmp_path / "run")])
    assert res.exit_code != 0 and "is a catalog" in res.output and not (tmp_path / "run").exists()
