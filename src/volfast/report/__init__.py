"""The run report (``volfast report``): surfaces, world model, stress, hedge and backtest in one HTML page,
and the run-folder layout shared with ``volfast demo``."""

from __future__ import annotations

from volfast.report.layout import MODEL_KINDS, RunLayout, Stage
from volfast.report.report import ReportError, ReportResult, build_report, markdown_to_html

__all__ = [
    "MODEL_KINDS",
    "ReportError",
    "ReportResult",
    "RunLayout",
    "Stage",
    "build_report",
    "markdown_to_html",
]
