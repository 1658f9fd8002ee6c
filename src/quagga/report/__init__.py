"""quagga.report: the dataset's self-contained HTML report."""

from quagga.report.html import build_report

__all__ = ["build_report"]
