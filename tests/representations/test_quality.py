import numpy as np
import polars as pl
import pytest

from adsformer.representations.quality import _pair_auc, quality_report
from adsformer.representations.table import RepresentationTable


def _listings(n, taxa):
    return pl.DataFrame(
        {"listing_id": [f"l{i}" for i in range(n)], "taxonomy_id": [f"t{i % taxa}" for i in range(n)]}
    )


def test_clustered_vectors_separate_and_random_vectors_do_not():
    n, taxa, d = 400, 4, 8
    rng = np.random.default_rng(0)
    centres = np.eye(d, dtype=np.float32)[:taxa] * 5
    tax = np.arange(n) % taxa
    clustered = centres[tax] + rng.normal(size=(n, d)).astype(np.float32) * 0.5
    ids = [f"l{i}" for i in range(n)]
    good = quality_report(RepresentationTable("c", "test", ids, clustered), _listings(n, taxa), pairs=5000)
    assert good["separation_auc"] > 0.99
    assert good["neighbours"]["same_taxonomy_share"] > 0.99
    assert good["neighbours"]["chance"] == pytest.approx(99 / 399 * 1.0, abs=1e-6)  # 4 equal taxonomies
    noise = rng.normal(size=(n, d)).astype(np.float32)
    bad = quality_report(RepresentationTable("r", "test", ids, noise), _listings(n, taxa), pairs=5000)
    assert abs(bad["separation_auc"] - 0.5) < 0.03
    assert abs(bad["neighbours"]["same_taxonomy_share"] - bad["neighbours"]["chance"]) < 0.05
    assert len(good["examples"]) == 5 and len(good["examples"][0]["neighbours"]) == 5


def test_pair_auc_counts_ties_as_half():
    assert _pair_auc(np.array([1.0, 2.0]), np.array([0.0, 0.0])) == 1.0
    assert _pair_auc(np.array([1.0]), np.array([1.0])) == 0.5
    assert _pair_auc(np.array([0.0]), np.array([1.0, 2.0])) == 0.0
