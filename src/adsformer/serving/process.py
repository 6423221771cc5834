"""Process-wide settings of a serving process (``adsformer serve``, each of its workers, and the app that
``uvicorn --factory adsformer.serving.app:app_from_env`` builds): :func:`prepare_process` before loading,
:func:`~adsformer.serving.memory.freeze_loaded_objects` after."""

from __future__ import annotations

from adsformer.serving.memory import keep_freed_memory
from adsformer.serving.settings import ServingSettings


def prepare_process(settings: ServingSettings) -> None:
    """Torch's intra-op threads (``torch_threads``; 0 leaves torch's own: N workers of one thread each use
    N cores without oversubscribing them) and malloc keeping freed memory (no page faults per request)."""
    import torch

    if settings.torch_threads > 0:
        torch.set_num_threads(settings.torch_threads)
    keep_freed_memory()
