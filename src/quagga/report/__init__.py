"""quagga.report: the dataset's self-contained HTML report.

``build_report`` is imported on first use, so that the report's worker processes, which import only
``quagga.report.media``, do not load what the page needs (Bokeh, matplotlib, scikit-learn).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from quagga.report.html import build_report

__all__ = ["build_report"]


def __getattr__(name: str) -> Any:
    if name == "build_report":
        from quagga.report.html import build_report

        return build_report
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
