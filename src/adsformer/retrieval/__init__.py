"""Candidate retrieval (paper appendix A.1, A.5.2, A.5.3, A.6; SPEC section 4): up to ~600 in-budget
candidates for the ranker from a query text, a listing or an image.

Sources: ``lexical`` (sharded tantivy BM25 over titles, tags and taxonomy, x offline static pCTR x pCCVR,
+ a taxonomy-match boost), ``two_tower`` (faiss IVF over a query / listing two-tower model's listing
vectors), and one faiss IVF source per representation table (``air`` for listing-to-listing, ``visual``
for visually similar listings and search by image, ``text``, ``skipgram``). Live budgets are one bitmap
that every source filters on inside the search (:class:`~adsformer.retrieval.budget.BudgetState`);
sources are merged by reciprocal-rank fusion (:mod:`~adsformer.retrieval.hybrid`).

``adsformer index build`` writes an index directory (:func:`build_index`); :meth:`Retriever.load` opens
it for queries (the serving layer's entry point).
"""

from adsformer.retrieval.budget import BudgetState
from adsformer.retrieval.build import build_index
from adsformer.retrieval.config import IndexConfig, RetrievalError
from adsformer.retrieval.hybrid import Candidate
from adsformer.retrieval.retriever import Retriever

__all__ = ["BudgetState", "Candidate", "IndexConfig", "RetrievalError", "Retriever", "build_index"]
