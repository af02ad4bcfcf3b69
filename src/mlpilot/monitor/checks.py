"""One monitoring check of an endpoint: window -> reference -> ``compare`` -> stored summary and report."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlpilot.errors import NotFoundError
from mlpilot.monitor._logfs import check_endpoint
from mlpilot.monitor.engine import compare
from mlpilot.monitor.entities import CheckSummary
from mlpilot.monitor.references import main_output, params_digest
from mlpilot.monitor.report import DriftReport
from mlpilot.monitor.summary import summarize, timeline
from mlpilot.monitor.windows import Window, WindowSpec, read_window
from mlpilot.store import now_ms

if TYPE_CHECKING:
    from mlpilot.monitor.service import CheckResult, Monitor

__all__ = ["run_check"]

logger = logging.getLogger("mlpilot.monitor")


def run_check(
    monitor: Monitor,
    endpoint: str,
    spec: WindowSpec | None,
    *,
    html: str | Path | None,
    save: bool,
    actor: str,
    reuse_unchanged: bool = False,
) -> CheckResult:
    from mlpilot.monitor.service import CheckResult

    check_endpoint(endpoint)
    config = monitor.endpoint_config(endpoint)
    started = now_ms()
    spec = spec or monitor.default_window(config, now=started)
    window = read_window(monitor.location, endpoint, spec, segments=config.segments, label=config.label)
    if window.version is None:
        raise NotFoundError(
            f"endpoint: no prediction log for {endpoint!r} under {monitor.location.url}", field="endpoint"
        )
    digest = params_digest(config.model_dump(mode="json"))
    if reuse_unchanged:
        same = _unchanged(monitor, endpoint, window, digest)
        if same is not None:
            report = DriftReport.from_dict(monitor.check_report(endpoint, same.id))
            return CheckResult(same, report, window, report.to_html(html) if html is not None else None)
    model = config.model or endpoint
    version_row = monitor._version(model, window.version)
    prediction = config.prediction or main_output(version_row.signature)
    reference = monitor.reference_profile(model, window.version, config)
    labeled = window.labeled_rows > 0
    columns = set(window.table.column_names)
    score = config.score if config.score is not None and config.score in columns else None
    current: Any = {}
    segments: list[str] = []
    if window.rows > 0:
        segments = [s for s in config.segments if s in columns]
        keep = [*reference.features, prediction, *([score] if score else []), *segments]
        if labeled:
            keep.append(config.label)
        current = window.features_table(keep)
    report = compare(
        reference,
        current,
        segments=segments,
        prediction=prediction if prediction in columns or prediction in reference.columns else None,
        target=config.label if labeled else None,
        score=score,
        task=config.task,
        positive_label=config.positive_label,
        **config.drift,
    )
    if report.performance is not None:
        report.timeline = timeline(
            window.table,
            prediction=prediction,
            label=config.label,
            score=score,
            task=report.performance.task,  # type: ignore[arg-type]
            positive=config.positive_label,
        )
    summary = summarize(
        report,
        endpoint=endpoint,
        model=model,
        version=window.version,
        time=started,
        window_start=window.start_ms,
        window_end=window.end_ms,
        labeled_rows=window.labeled_rows,
    ).model_copy(update={"config_digest": digest})
    if save:
        summary = monitor._store_result(summary, report, actor=actor)
    logger.info(
        "monitor check of %s v%s: %d rows (%d labeled), drifted: %s%s",
        endpoint,
        window.version,
        window.rows,
        window.labeled_rows,
        ", ".join(summary.drifted_features) or "none",
        f"; worst segment: {summary.worst_segment}" if summary.worst_segment else "",
    )
    html_path = report.to_html(html) if html is not None else None
    return CheckResult(summary, report, window, html_path)


def _unchanged(monitor: Monitor, endpoint: str, window: Window, digest: str) -> CheckSummary | None:
    """The latest stored result when it covered exactly this window (no new rows, no new labels) with the same
    settings: scheduled rounds then reuse it instead of storing one more identical report."""
    try:
        latest = monitor.latest_check(endpoint)
    except NotFoundError:
        return None
    then = (latest.version, latest.window_start, latest.window_end, latest.rows, latest.labeled_rows)
    now = (window.version, window.start_ms, window.end_ms, window.rows, window.labeled_rows)
    if then != now or latest.config_digest != digest or latest.report_sha256 is None:
        return None
    return latest
