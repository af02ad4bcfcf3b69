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
from typing import Any

from mlpilot.client import Client, default_client
from mlpilot.errors import MlpilotError
from mlpilot.registry import ModelVersionInfo, Predictor
from mlpilot.tracking import ActiveRun, MetricPoint, Run, RunPage, active_run

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
    return default_client().start_run(experiment, name=name, tags=tags, nested=nested, parent=parent)


def get_run(run_id: str) -> Run:
    """A run with its params, latest metrics, tags, datasets and artifacts."""
    return default_client().get_run(run_id)


def search_runs(
    filter: str | None = None,
    experiment: str | Iterable[str] | None = None,
    order_by: list[str] | None = None,
    max_results: int | None = None,
    page_token: str | None = None,
) -> RunPage:
    """Runs matching a filter such as ``"metrics.auc > 0.9 and (params.max_depth <= 8 or tags.team = 'growth')"``."""
    return default_client().search_runs(filter, experiment, order_by, max_results, page_token)


def get_metric_history(run_id: str, key: str) -> list[MetricPoint]:
    """Every logged point of one metric of one run, by step."""
    return default_client().get_metric_history(run_id, key)


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
    return default_client().log_model(
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
    return default_client().load_model(uri)


def get_model_version(name: str, version: int | str) -> ModelVersionInfo:
    """Version ``version`` of ``name``; ``version`` may also be an alias or ``"latest"``."""
    return default_client().get_model_version(name, version)


def set_alias(name: str, alias: str, version: int) -> None:
    """Point ``alias`` (e.g. ``champion``) of model ``name`` at ``version`` (audited)."""
    default_client().set_alias(name, alias, version)


def delete_alias(name: str, alias: str) -> None:
    """Remove ``alias`` from model ``name`` (audited)."""
    default_client().delete_alias(name, alias)
