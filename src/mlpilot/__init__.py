"""mlpilot: track, register, serve, roll out and monitor models — and close the loop.

>>> import mlpilot
>>> with mlpilot.start_run(experiment="churn", tags={"team": "growth"}) as run:  # doctest: +SKIP
...     run.log_params({"max_depth": 6})
...     run.log_metric("loss", 0.3, step=1)
>>> mlpilot.log_model(model, name="churn", input_example=X[:5])  # doctest: +SKIP
>>> mlpilot.load_model("models:/churn@champion").predict(X)  # doctest: +SKIP

Module-level functions use :func:`mlpilot.client.default_client`: the embedded store under ``MLPILOT_HOME``, or
the server at ``MLPILOT_SERVER_URL``. Use :class:`Client` for an explicit store or server.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from mlpilot.errors import MlpilotError

if TYPE_CHECKING:
    from mlpilot.client import Client
    from mlpilot.registry import ModelVersionInfo, Predictor
    from mlpilot.tracking import ActiveRun, MetricPoint, Run, RunPage

# Heavy modules load on first use, so that ``import mlpilot.monitor`` or ``mlpilot --help`` stay cheap.
_LAZY = {"Client": "mlpilot.client", "ActiveRun": "mlpilot.tracking", "active_run": "mlpilot.tracking"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'mlpilot' has no attribute {name!r}")


def _client() -> Client:
    from mlpilot.client import default_client

    return default_client()


__version__ = "0.1.0.dev0"

__all__ = [
    "ActiveRun",
    "Client",
    "MlpilotError",
    "active_run",
    "delete_alias",
    "get_metric_history",
    "get_model_version",
    "get_run",
    "load_model",
    "log_labels",
    "log_model",
    "search_runs",
    "set_alias",
    "start_run",
]


def start_run(
    experiment: str | None = None,
    *,
    name: str | None = None,
    tags: Mapping[str, Any] | None = None,
    nested: bool = False,
    parent: str | ActiveRun | None = None,
) -> ActiveRun:
    """Start a tracked run (a context manager); metric logging never blocks training."""
    return _client().start_run(experiment, name=name, tags=tags, nested=nested, parent=parent)


def get_run(run_id: str) -> Run:
    """A run with its params, latest metrics, tags, datasets and artifacts."""
    return _client().get_run(run_id)


def search_runs(
    filter: str | None = None,
    experiment: str | Iterable[str] | None = None,
    order_by: list[str] | None = None,
    max_results: int | None = None,
    page_token: str | None = None,
) -> RunPage:
    """Runs matching a filter such as ``"metrics.auc > 0.9 and (params.max_depth <= 8 or tags.team = 'growth')"``."""
    return _client().search_runs(filter, experiment, order_by, max_results, page_token)


def get_metric_history(run_id: str, key: str) -> list[MetricPoint]:
    """Every logged point of one metric of one run, by step."""
    return _client().get_metric_history(run_id, key)


def log_model(
    model: Any,
    name: str,
    *,
    input_example: Any = None,
    run: str | ActiveRun | None = None,
    training_data: Any = None,
    metrics: Mapping[str, float] | None = None,
    description: str | None = None,
    tags: Mapping[str, str] | None = None,
    aliases: Sequence[str] | None = None,
    flavor: str | None = None,
) -> ModelVersionInfo:
    """Register ``model`` as the next version of ``name``; linked to the active run when there is one."""
    return _client().log_model(
        model,
        name,
        input_example=input_example,
        run=run,
        training_data=training_data,
        metrics=metrics,
        description=description,
        tags=tags,
        aliases=aliases,
        flavor=flavor,
    )


def load_model(uri: str | ModelVersionInfo) -> Predictor:
    """Load ``models:/name@alias`` or ``models:/name/N`` after verifying the artifact's SHA-256."""
    return _client().load_model(uri)


def get_model_version(name: str, version: int | str) -> ModelVersionInfo:
    """Version ``version`` of ``name``; ``version`` may also be an alias or ``"latest"``."""
    return _client().get_model_version(name, version)


def set_alias(name: str, alias: str, version: int) -> None:
    """Point ``alias`` (e.g. ``champion``) of model ``name`` at ``version`` (audited)."""
    _client().set_alias(name, alias, version)


def delete_alias(name: str, alias: str) -> None:
    """Remove ``alias`` from model ``name`` (audited)."""
    _client().delete_alias(name, alias)


def log_labels(
    request_ids: Sequence[str] | None = None,
    labels: Sequence[Any] | None = None,
    *,
    entity_ids: Sequence[str] | None = None,
    times: Sequence[Any] | None = None,
    endpoint: str | None = None,
) -> Any:
    """Send ground truth for logged predictions, by request id or by entity and time; all or nothing."""
    return _client().log_labels(request_ids, labels, entity_ids=entity_ids, times=times, endpoint=endpoint)
