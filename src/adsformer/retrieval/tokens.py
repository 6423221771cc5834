"""The tokens retrieval matches on: queries and listing fields normalized as the text vectors normalize them
(:func:`adsformer.representations.text.normalize`: lower case, punctuation split, numbers as ``<num>``,
English stop-words dropped), so query and listing tokens always agree."""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

from adsformer.representations.text import normalize, taxonomy_tokens


def query_tokens(text: str | None) -> list[str]:
    """Normalized tokens of a query, duplicates removed (order kept)."""
    return list(dict.fromkeys(normalize(text)))


@dataclass(frozen=True)
class ListingText:
    """Per-listing token lists, in the listings' row order."""

    title: list[list[str]]
    tags: list[list[str]]
    taxonomy: list[list[str]]  # tokens of the taxonomy path
    taxonomy_id: list[str | None]


def listing_text(listings: pl.DataFrame) -> ListingText:
    """Tokens of each listing's title, tags and taxonomy path (empty where a column is absent or null)."""
    n = listings.height
    titles = listings["title"].to_list() if "title" in listings.columns else [None] * n
    tags = listings["tags"].to_list() if "tags" in listings.columns else [None] * n
    taxa = (
        listings["taxonomy_id"].cast(pl.String).to_list() if "taxonomy_id" in listings.columns else [None] * n
    )
    return ListingText(
        title=[normalize(t) for t in titles],
        tags=[[tok for tag in (ts or ()) for tok in normalize(tag)] for ts in tags],
        taxonomy=[taxonomy_tokens(t) for t in taxa],
        taxonomy_id=taxa,
    )
