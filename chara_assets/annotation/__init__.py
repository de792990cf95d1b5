"""A person labels samples in a browser; the decisions go to an append-only log.

The annotator runs as its own process (``python -m chara_assets.annotation TASK_JSON``), so
no Dagster step holds a browser session for hours; FINISH reports the result to Dagster as a
materialization of an external asset. This package imports no Gradio: the UI lives in
:mod:`chara_assets.annotation.app`, imported only by the service itself.
"""

from .log import (
    DELETE,
    SKIP,
    AnnotationLog,
    DagsterTarget,
    NextSample,
    Progress,
    ReportResult,
    Sample,
    Task,
    default_log_path,
    first_undecided,
    progress,
    report_request,
    report_to_dagster,
)

__all__ = [
    "DELETE",
    "SKIP",
    "AnnotationLog",
    "DagsterTarget",
    "NextSample",
    "Progress",
    "ReportResult",
    "Sample",
    "Task",
    "default_log_path",
    "first_undecided",
    "progress",
    "report_request",
    "report_to_dagster",
]
