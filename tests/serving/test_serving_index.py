"""The service over a real retrieval index (``adsformer.retrieval.Retriever``, ``--index``): candidates from
its sources, refused inputs answered with no ads, live budgets."""

from __future__ import annotations

import pytest

from adsformer.serving.outcome import RankQuery

retrieval = pytest.importorskip("adsformer.retrieval")


@pytest.fixture(scope="module")
def index_dir(sim_data, tmp_path_factory):
    from adsformer.retrieval.config import LexicalConfig

    cfg = retrieval.IndexConfig(lexical=LexicalConfig(shards=1), two_tower_enabled=False, eval_max_queries=10)
    out = tmp_path_factory.mktemp("index") / "index"
    retrieval.build_index(sim_data, out, cfg, progress=False)
    return out


@pytest.mark.slow
def test_ranking_over_the_retrieval_index(make_service, index_dir, catalog):
    service = make_service(index=index_dir)
    assert isinstance(service.retriever, retrieval.Retriever)
    query = catalog.listings["title"][3]
    out = service.rank(RankQuery(query=query, user_key="user:a", n=5, ts=10_000))
    assert out.candidates > 0 and len(out.ads) > 0 and {a.source for a in out.ads} <= {"lexical"}
    top = out.ads[0].listing_id
    service.retriever.set_budget(top, 0.0)  # live: gone from the next ranking
    again = service.rank(RankQuery(query=query, user_key="user:a", n=5, ts=10_000))
    assert top not in {a.listing_id for a in again.ads}
    # inputs the index refuses are no error: no candidates, and why
    refused = service.rank(RankQuery(listing_id="no-such-listing", user_key="user:a", n=5, ts=10_000))
    assert refused.ads == [] and "unknown listing id" in (refused.retrieval_note or "")
    page = catalog.ids[2]
    similar = service.rank(RankQuery(listing_id=page, n=5, ts=10_000))
    assert page not in {a.listing_id for a in similar.ads}
