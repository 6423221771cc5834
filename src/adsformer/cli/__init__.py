"""The ``adsformer`` command line: :data:`app` and the console script's entry point :func:`main`."""

from adsformer.cli.main import app, main

__all__ = ["app", "main"]
