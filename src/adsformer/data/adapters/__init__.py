"""Adapters that turn public datasets into the canonical dataset (SPEC sections 5 and 7).

Each adapter is ``prepare_<name>(path, out, *, <options>, progress=None) -> AdapterResult``; bad input raises
:class:`AdapterError`. ``ADAPTERS`` maps the ``adsformer prepare`` source names to them (``simulate`` lives
in :mod:`adsformer.simulator`).
"""

from __future__ import annotations

from collections.abc import Callable

from adsformer.data.adapters.base import AdapterError, AdapterResult, SkippedLine
from adsformer.data.adapters.fashion import prepare_fashion
from adsformer.data.adapters.movielens import prepare_movielens
from adsformer.data.adapters.taobao import prepare_taobao
from adsformer.data.adapters.trivago import prepare_trivago

ADAPTERS: dict[str, Callable[..., AdapterResult]] = {
    "taobao-userbehavior": prepare_taobao,
    "trivago": prepare_trivago,
    "movielens": prepare_movielens,
    "fashion": prepare_fashion,
}

__all__ = [
    "ADAPTERS",
    "AdapterError",
    "AdapterResult",
    "SkippedLine",
    "prepare_fashion",
    "prepare_movielens",
    "prepare_taobao",
    "prepare_trivago",
]
