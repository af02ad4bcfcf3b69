"""What the SDK and the CLI need from monitoring, local (:class:`~mlpilot.monitor.service.Monitor`) or remote
(``mlpilot.remote.monitor.RestMonitor``), and the SDK's ``log_labels``."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from mlpilot.errors import ConfigError, InvalidInputError
from mlpilot.monitor.entities import CheckSummary, EndpointConfig
from mlpilot.monitor.labels import LabelBatch, LabelReceipt, LabelValue
from mlpilot.monitor.windows import WindowSpec

if TYPE_CHECKING:
    from mlpilot.config import Settings

__all__ = ["MonitorBackend", "default_predictions_url", "log_labels"]


@runtime_checkable
class MonitorBackend(Protocol):
    """Labels in, checks out. Every method is safe to call from any thread."""

    def log_labels(self, batch: LabelBatch, *, actor: str = "local") -> LabelReceipt:
        """Join ``batch`` to logged predictions and store it; all or nothing."""
        ...

    def run_check(self, endpoint: str, window: WindowSpec | None = None, *, actor: str = "local") -> CheckSummary:
        """Check a window of ``endpoint`` (default: its configured window) now, store and return the result."""
        ...

    def latest_check(self, endpoint: str) -> CheckSummary:
        """The newest stored result of ``endpoint``."""
        ...

    def check_report(self, endpoint: str, check_id: int | None = None) -> dict[str, Any]:
        """The full report (``DriftReport.to_dict()``) of a stored check, by default the newest."""
        ...

    def configure_endpoint(self, name: str, config: EndpointConfig, *, actor: str = "local") -> EndpointConfig:
        """Declare ``name``'s segment fields, label and output columns and default window."""
        ...


def default_predictions_url(settings: Settings) -> str:
    """Where ``mlpilot serve`` writes the prediction log: ``MLPILOT_PREDICTIONS_URL``, else next to the artifacts
    when they live elsewhere (``<artifact url>/predictions``), else ``$MLPILOT_HOME/predictions``."""
    if settings.predictions_url:
        return settings.predictions_url
    if settings.artifact_url:
        return f"{settings.artifact_url.rstrip('/')}/predictions"
    return str(settings.home.resolve() / "predictions")


def log_labels(
    request_ids: Sequence[str] | None = None,
    labels: Sequence[LabelValue] | None = None,
    *,
    rows: Sequence[int | None] | None = None,
    entity_ids: Sequence[str] | None = None,
    times: Sequence[int | datetime] | None = None,
    endpoint: str | None = None,
    backend: MonitorBackend | None = None,
    actor: str = "local",
) -> LabelReceipt:
    """Send ground truth for logged predictions, by request id (``x-request-id``) or by entity and time.

    Every label must match a logged prediction or nothing is stored. ``backend`` defaults to the local store
    and prediction log of the settings::

        >>> log_labels(["9f0c…", "77ab…"], [1, 0], endpoint="churn")  # doctest: +SKIP
        LabelReceipt(stored=2, endpoints={'churn': 2})
        >>> log_labels(labels=[1], entity_ids=["user-42"], times=[1767225600000])  # doctest: +SKIP
    """
    if labels is None:
        raise InvalidInputError("labels: expected one label per request id or entity", field="labels")
    if request_ids is not None and entity_ids is not None:
        raise InvalidInputError("request_ids: give request ids or entity ids, not both", field="request_ids")
    if request_ids is not None:
        batch = LabelBatch.from_request_ids(request_ids, labels, rows=rows, endpoint=endpoint)
    elif entity_ids is not None and times is not None:
        batch = LabelBatch.from_entities(entity_ids, times, labels, endpoint=endpoint)
    else:
        raise InvalidInputError("request_ids: expected request ids, or entity_ids with times", field="request_ids")
    if backend is not None:
        return backend.log_labels(batch, actor=actor)
    from mlpilot.config import load_settings
    from mlpilot.monitor.service import Monitor

    settings = load_settings()
    if settings.server_url:
        raise ConfigError(
            "MLPILOT_SERVER_URL is set: send labels to that server with backend=RestMonitor(...) "
            "(or POST /v1/labels) rather than to a local store",
            key="MLPILOT_SERVER_URL",
        )
    monitor = Monitor.from_settings(settings)
    try:
        return monitor.log_labels(batch, actor=actor)
    finally:
        monitor.close()
