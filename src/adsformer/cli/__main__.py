"""``python -m adsformer.cli`` (e.g. under ``torchrun``): the command line."""

from adsformer.cli.main import main

main()
