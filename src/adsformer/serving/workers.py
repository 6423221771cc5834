"""Several serving processes behind one port: ``adsformer serve --workers N``.

One Python process ranks on about one core: the GIL serializes the request handling, the feature building
and the event loop, however many threads wait. ``--workers N`` runs N processes on one listening socket
(uvicorn's supervisor: it starts them, restarts one that dies, and stops them all on Ctrl-C / SIGTERM);
each loads the runs once, sets its own torch threads (``torch_threads``, 1 by default: N workers of one
thread each use N cores without oversubscribing them) and freezes what it loaded out of the garbage
collector's reach (:func:`~adsformer.serving.memory.freeze_loaded_objects`).

What the workers share: the online store, which must therefore be Redis (:func:`check_workers` refuses
the in-process store, which each process would keep to itself), and the metrics (every worker writes its
values to files in one directory, ``/metrics`` sums them: :mod:`adsformer.serving.metrics`). What each
keeps to itself: its score cache (keyed by the user's version stamp, so never stale across workers) and
its feature-log files (named by process id). The settings reach the workers as JSON in
:data:`SETTINGS_ENV`; without configured API keys the parent makes the one random key all of them accept.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager

from fastapi import FastAPI

from adsformer.errors import UserError
from adsformer.serving.app import create_app
from adsformer.serving.memory import freeze_loaded_objects
from adsformer.serving.metrics import MULTIPROC_ENV, multiprocess_dir
from adsformer.serving.process import prepare_process
from adsformer.serving.settings import ServingSettings

#: The environment variable that carries the settings (JSON) from ``adsformer serve`` to its workers
SETTINGS_ENV = "ADSFORMER_SERVE_WORKER_SETTINGS"

#: What uvicorn imports in each worker (a factory: called once per worker process)
WORKER_APP = "adsformer.serving.workers:worker_app"


def check_workers(workers: int, settings: ServingSettings) -> None:
    """Refuse (one line) more than one worker without a shared store, or fewer than one."""
    if workers < 1:
        raise UserError(f"--workers {workers}: give 1 or more server processes")
    if workers > 1 and not settings.redis_url:
        raise UserError(
            f"--workers {workers} needs --redis-url: the in-process online store cannot be shared between "
            "processes (events posted to one worker would be missing from the others' rankings); start "
            "redis-server and pass --redis-url redis://HOST:PORT/DB, or serve with --workers 1"
        )


def worker_app() -> FastAPI:
    """The app of one worker process (uvicorn calls this factory in each worker): the settings from
    :data:`SETTINGS_ENV`, the runs loaded, the loaded objects frozen."""
    raw = os.environ.get(SETTINGS_ENV)
    if raw is None:
        raise RuntimeError(f"{SETTINGS_ENV} is not set: start the workers with adsformer serve --workers N")
    settings = ServingSettings.model_validate_json(raw)
    prepare_process(settings)
    app = create_app(settings)
    freeze_loaded_objects()
    return app


@contextmanager
def _environment(values: Mapping[str, str]) -> Iterator[None]:
    """``values`` in ``os.environ`` for the block (the workers inherit them), the old ones restored."""
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def run_workers(settings: ServingSettings, *, workers: int, host: str, port: int) -> None:
    """Serve ``settings`` with ``workers`` processes on ``host:port`` until stopped (blocks). The metrics
    directory is a fresh temporary one, removed at the end, unless ``PROMETHEUS_MULTIPROC_DIR`` names one."""
    import uvicorn

    check_workers(workers, settings)
    given = multiprocess_dir()
    directory = given or tempfile.mkdtemp(prefix="adsformer-metrics-")
    try:
        with _environment({SETTINGS_ENV: settings.model_dump_json(), MULTIPROC_ENV: directory}):
            uvicorn.run(WORKER_APP, factory=True, host=host, port=port, workers=workers, log_level="warning")
    finally:
        if given is None:
            shutil.rmtree(directory, ignore_errors=True)
