"""fastText-style text vectors of listings (paper section 3.2 and appendix A.6, SPEC section 3).

One document per listing: the normalized tokens of its ``title``, then its ``tags``, then its
``taxonomy_id`` path (split on ``/``, ``.``, ``>`` and spaces). :func:`normalize` lower-cases, removes
apostrophes and in-word hyphens (``women's`` -> ``womens``, ``t-shirt`` -> ``tshirt``), turns every other
punctuation mark into a space, splits digits from letters (``10ml`` -> ``10 ml``), masks number tokens as
``<num>`` and drops a small built-in list of English stop-words. Taxonomy parts are ids, not quantities:
their numbers are kept (``4756105`` stays a token) and stop-words dropped.

Tokens seen fewer than ``min_count`` times in the whole corpus are dropped before training unless they are
in the ``keep`` list (the paper keeps rare tokens that occur in recent ad interactions). gensim's
``FastText(sg=1)`` (skip-gram with character n-grams ``min_n..max_n``, negative sampling) learns a ``dim``-d
vector per token; a listing's vector is the mean of its remaining tokens' vectors. A listing left with no
token falls back, in order, to the mean of the subword (character n-gram) vectors of its dropped rare
tokens, then to the subword vector of its raw lower-cased title string, then to zeros (no title at all); the
table's settings count each case.

The text of a listing is catalog data, not behaviour, so every listing is read (there is no time split).
Note that with ``taxonomy=true`` (the paper's setting) the taxonomy path is part of the text, so the
quality report's taxonomy coherence is partly by construction; ``--set taxonomy=false`` measures how well
titles and tags alone group listings.
"""

from __future__ import annotations

import re
import zlib
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import polars as pl
from pydantic import with_config

from adsformer.config import KNOWN_KEYS_ONLY, ConfigError, to_dict
from adsformer.representations.table import RepresentationTable, TableError

NUM = "<num>"

#: a small English stop-word list: articles, pronouns, prepositions, conjunctions, auxiliaries (lower case,
#: apostrophes removed as :func:`normalize` removes them)
_STOPWORD_TEXT = """
    a about above after again against all am an and any are as at be been before being below between both
    but by can could did do does doing down during each few for from further had has have having he her here
    hers herself him himself his how i if in into is it its itself just me more most my myself no nor not of
    off on once only or other our ours ourselves out over own same she should so some such than that the
    their theirs them themselves then there these they this those through to too under until up very was we
    were what when where which while who whom why will with would you your yours yourself yourselves
    dont doesnt didnt isnt arent wasnt werent wont cant im ive youre youve theyre weve
"""
STOPWORDS = frozenset(_STOPWORD_TEXT.split())

_JOINERS = re.compile(r"(?<=\w)['’`\-‐‑](?=\w)")  # apostrophes / hyphens inside a word: removed
_TOKENS = re.compile(r"\d+(?:[.,]\d+)*|[^\W\d_]+")  # numbers (1.5, 1,000) or runs of letters; the rest splits
_TAXONOMY_SEP = re.compile(r"[/.>\s]+")


@with_config(KNOWN_KEYS_ONLY)
@dataclass(frozen=True)
class TextConfig:
    """Settings of ``adsformer represent text``."""

    KIND: ClassVar[str] = "text"

    dim: int = 128  # 128 or 256 in the paper (appendix table 15)
    window: int = 5
    negative: int = 5  # negative samples per positive
    epochs: int = 5
    lr: float = 0.05  # gensim ``alpha`` (fastText's -lr), decaying linearly to ~0
    min_n: int = 3  # character n-grams of lengths min_n..max_n
    max_n: int = 6
    # down-sampling threshold of frequent tokens (fastText's -t, 1e-4 there, tuned for web-scale text; 1e-3
    # spreads the vectors of a catalog's small corpus better); 0 = off
    sample: float = 1e-3
    bucket: int = 2_000_000  # hash buckets for character n-grams (fastText's default; memory ~ bucket * dim)
    min_count: int = 3  # tokens seen fewer times in the corpus are dropped ...
    keep: tuple[str, ...] = ()  # ... unless listed here (normalized like the text)
    stopwords: bool = True  # drop the built-in English stop-words
    mask_numbers: bool = True  # number tokens -> "<num>"
    tags: bool = True  # tokens of the listing's tags are part of its document
    taxonomy: bool = True  # tokens of the listing's taxonomy path are part of its document
    seed: int = 0
    workers: int = 1  # gensim threads; 1 is reproducible for a given seed, more is faster
    name: str = "text"

    def __post_init__(self) -> None:
        for key in ("dim", "window", "negative", "epochs", "min_n", "bucket", "min_count", "workers"):
            value = getattr(self, key)
            if value < 1:
                raise ConfigError(f"text setting {key}={value}: must be >= 1")
        if self.max_n < self.min_n:
            raise ConfigError(
                f"text setting max_n={self.max_n}: must be >= min_n={self.min_n} (character n-gram lengths)"
            )
        if not 0 <= self.sample < 1:
            raise ConfigError(f"text setting sample={self.sample}: must be in [0, 1) (0 turns it off)")
        if not 0 < self.lr <= 1:
            raise ConfigError(f"text setting lr={self.lr}: must be in (0, 1]")
        if not self.name.strip():
            raise ConfigError(f"text setting name={self.name!r}: give the table a non-empty name")


def normalize(text: str | None, *, mask_numbers: bool = True, stopwords: bool = True) -> list[str]:
    """Lower-case ``text`` and split it into word tokens: punctuation removed, numbers masked as ``<num>``,
    stop-words dropped (each step can be turned off)."""
    if not text:
        return []
    tokens = _TOKENS.findall(_JOINERS.sub("", text.lower()))
    if mask_numbers:
        tokens = [NUM if t[0].isdigit() else t for t in tokens]
    if stopwords:
        tokens = [t for t in tokens if t not in STOPWORDS]
    return tokens


def taxonomy_tokens(taxonomy_id: str | None, *, stopwords: bool = True) -> list[str]:
    """Tokens of a taxonomy path such as ``Apparel/Topwear/Shirts`` or ``home.rugs``; numbers are kept."""
    if not taxonomy_id:
        return []
    out: list[str] = []
    for part in _TAXONOMY_SEP.split(taxonomy_id):
        out.extend(normalize(part, mask_numbers=False, stopwords=stopwords))
    return out


@dataclass(frozen=True)
class Corpus:
    documents: list[list[str]]  # one per listing, rare tokens removed
    raw: list[list[str]]  # one per listing, before rare tokens were removed
    n_tokens: int  # before filtering
    n_dropped: int  # token occurrences dropped as rare
    vocabulary: int  # distinct tokens kept
    distinct_dropped: int  # distinct tokens dropped as rare
    kept_by_list: int  # distinct rare tokens kept because they are in the keep-list


def build_corpus(listings: pl.DataFrame, cfg: TextConfig) -> Corpus:
    """The per-listing documents: normalized title, tags and taxonomy tokens, rare tokens dropped."""
    if "title" not in listings.columns:
        raise TableError(
            f"the listings have no 'title' column (columns: {', '.join(listings.columns)}): "
            "nothing to learn text vectors from"
        )
    titles = listings["title"].to_list()
    tags = listings["tags"].to_list() if cfg.tags and "tags" in listings.columns else [None] * listings.height
    taxa = (
        listings["taxonomy_id"].to_list()
        if cfg.taxonomy and "taxonomy_id" in listings.columns
        else [None] * listings.height
    )
    flags = {"mask_numbers": cfg.mask_numbers, "stopwords": cfg.stopwords}
    raw: list[list[str]] = []
    for title, tag_list, tax in zip(titles, tags, taxa, strict=True):
        doc = normalize(title, **flags)
        for tag in tag_list or ():
            doc.extend(normalize(tag, **flags))
        doc.extend(taxonomy_tokens(tax, stopwords=cfg.stopwords))
        raw.append(doc)
    counts = Counter(t for doc in raw for t in doc)
    keep = {t for k in cfg.keep for t in normalize(k, mask_numbers=cfg.mask_numbers, stopwords=False)}
    rare = {t for t, c in counts.items() if c < cfg.min_count}
    kept_by_list = rare & keep
    rare -= keep
    documents = [[t for t in doc if t not in rare] for doc in raw] if rare else [list(d) for d in raw]
    return Corpus(
        documents=documents,
        raw=raw,
        n_tokens=sum(counts.values()),
        n_dropped=sum(counts[t] for t in rare),
        vocabulary=len(counts) - len(rare),
        distinct_dropped=len(rare),
        kept_by_list=len(kept_by_list),
    )


def _stable_hash(text: str) -> int:
    """gensim seeds each word's initial vector with ``hashfxn(word + seed)``; Python's ``hash`` of a string
    changes between processes, so a fixed function keeps a seeded run reproducible."""
    return zlib.crc32(text.encode())


def train_text(listings: pl.DataFrame, cfg: TextConfig) -> RepresentationTable:
    """Train fastText skip-gram vectors on the listings' text; one mean-pooled vector per listing."""
    from gensim.models import FastText

    if listings.height == 0:
        raise TableError("there are no listings: nothing to learn text vectors from")
    corpus = build_corpus(listings, cfg)
    sentences = [doc for doc in corpus.documents if doc]
    if not sentences:
        raise TableError(
            f"no listing has a token seen at least min_count={cfg.min_count} times "
            f"({corpus.n_tokens:,} tokens in all): nothing to learn text vectors from"
        )
    model = FastText(
        sentences=sentences,
        sg=1,
        hs=0,
        negative=cfg.negative,
        vector_size=cfg.dim,
        window=cfg.window,
        alpha=cfg.lr,
        min_n=cfg.min_n,
        max_n=cfg.max_n,
        bucket=cfg.bucket,
        sample=cfg.sample,
        min_count=1,  # rare tokens were dropped above, honouring the keep-list
        epochs=cfg.epochs,
        workers=cfg.workers,
        seed=cfg.seed,
        hashfxn=_stable_hash,
    )
    wv = model.wv
    vectors = np.zeros((listings.height, cfg.dim), np.float32)
    titles = listings["title"].to_list()
    fallback = {"rare_subwords": 0, "raw_title": 0, "zero": 0}
    for i, (doc, raw) in enumerate(zip(corpus.documents, corpus.raw, strict=True)):
        if doc:
            vectors[i] = wv.vectors[[wv.key_to_index[t] for t in doc]].mean(0)
        elif raw:  # every token was rare: their character n-grams still have vectors
            vectors[i] = np.mean([wv.get_vector(t) for t in raw], axis=0)
            fallback["rare_subwords"] += 1
        elif titles[i] and titles[i].strip():  # only stop-words / punctuation: the raw string's n-grams
            vectors[i] = wv.get_vector(titles[i].strip().lower())
            fallback["raw_title"] += 1
        else:
            fallback["zero"] += 1
    settings = {
        **to_dict(cfg),
        "algorithm": "gensim FastText sg=1 hs=0 negative sampling, character n-grams; listing = mean of tokens",
        "documents": listings.height,
        "sentences": len(sentences),
        "vocabulary": corpus.vocabulary,
        "tokens": corpus.n_tokens,
        "tokens_dropped": corpus.n_dropped,
        "distinct_tokens_dropped": corpus.distinct_dropped,
        "rare_tokens_kept_by_list": corpus.kept_by_list,
        "listings_from_rare_subwords": fallback["rare_subwords"],
        "listings_from_raw_title": fallback["raw_title"],
        "listings_zero": fallback["zero"],
    }
    ids = [str(i) for i in listings["listing_id"].to_list()]
    return RepresentationTable(cfg.name, "text", ids, vectors, settings)


def represent_text(data_dir: Path, out: Path, cfg: TextConfig) -> dict[str, Any]:
    """``adsformer represent text``: train on the listings of ``data_dir`` (a dataset or a catalog), write the
    table and its quality report."""
    from adsformer.data.validate import read_listings
    from adsformer.representations.quality import save_with_report

    listings = read_listings(data_dir)
    table = train_text(listings, cfg)
    report = save_with_report(table, listings, out)
    return {**report, "settings": table.settings}
