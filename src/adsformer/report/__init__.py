"""``adsformer report``: a self-contained HTML report of runs, demos and ablations."""

from adsformer.report.html import build_report, write_report

__all__ = ["build_report", "write_report"]
