"""Run search: one filtered, ordered, paginated query for the run ids, then one query per kind of data.

Loading the data of a page costs three queries whatever its size (params, latest metrics and tags together;
dataset inputs; artifacts), never one per run. Page tokens are opaque: an offset bound to the query it came
from, so a token reused with another filter or ordering is refused instead of returning a silently wrong page.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import math
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Float, Text, bindparam, cast, literal_column, null, select, union_all
from sqlalchemy.orm import Session

from mlpilot.errors import InvalidInputError
from mlpilot.store.schema import Dataset, Experiment, LatestMetric, Param, Run, RunArtifact, RunInput, Tag
from mlpilot.tracking import models as m
from mlpilot.tracking.filter import parse_filter
from mlpilot.tracking.filter_sql import apply_filter, compile_order_by
from mlpilot.tracking.models import ArtifactRef, DatasetInfo, DatasetInput, RunInfo, RunPage

__all__ = ["DEFAULT_MAX_RESULTS", "MAX_RESULTS_LIMIT", "load_runs", "search_runs"]

DEFAULT_MAX_RESULTS = 1000
MAX_RESULTS_LIMIT = 50_000
# Stay well under SQLite's limit on bound parameters per statement.
_ID_CHUNK = 5000

_INFO_COLUMNS = (
    Run.id,
    Run.experiment_id,
    Experiment.name,
    Run.name,
    Run.parent_id,
    Run.status,
    Run.start_time,
    Run.end_time,
    Run.user,
    Run.source,
    Run.git_commit,
    Run.git_dirty,
)


def info_query() -> Any:
    """SELECT of the RunInfo columns of runs joined to their experiment."""
    return select(*_INFO_COLUMNS).join(Experiment, Experiment.id == Run.experiment_id)


def info_from_row(row: Sequence[Any]) -> RunInfo:
    return RunInfo(
        id=row[0],
        experiment_id=row[1],
        experiment=row[2],
        name=row[3],
        parent_id=row[4],
        status=row[5],
        start_time=row[6],
        end_time=row[7],
        user=row[8],
        source=row[9],
        git_commit=row[10],
        git_dirty=row[11],
    )


def metric_value(value: float | None) -> float:
    """Stored metric value to Python: NULL stands for NaN (see the schema)."""
    return math.nan if value is None else value


def _statements() -> tuple[Any, Any, Any, Any]:
    """The loading statements, built once: run ids travel as one expanding parameter, not one literal each."""
    ids: Any = bindparam("ids", expanding=True)
    no_text, no_number = cast(null(), Text), cast(null(), Float)
    # Params, latest metrics and tags in one statement: (kind, run_id, key, text, number).
    key_values = union_all(
        select(literal_column("'p'"), Param.run_id, Param.key, Param.value, no_number).where(Param.run_id.in_(ids)),
        select(literal_column("'m'"), LatestMetric.run_id, LatestMetric.key, no_text, LatestMetric.value).where(
            LatestMetric.run_id.in_(ids)
        ),
        select(literal_column("'t'"), Tag.run_id, Tag.key, Tag.value, no_number).where(Tag.run_id.in_(ids)),
    )
    inputs = (
        select(
            RunInput.run_id,
            RunInput.context,
            Dataset.name,
            Dataset.digest,
            Dataset.num_rows,
            Dataset.schema,
            Dataset.source,
            RunInput.leakage_report,
        )
        .join(Dataset, Dataset.id == RunInput.dataset_id)
        .where(RunInput.run_id.in_(ids))
        .order_by(RunInput.run_id, Dataset.id, RunInput.context)
    )
    artifacts = (
        select(RunArtifact.run_id, RunArtifact.path, RunArtifact.sha256, RunArtifact.size)
        .where(RunArtifact.run_id.in_(ids))
        .order_by(RunArtifact.run_id, RunArtifact.path)
    )
    environments = select(Run.id, Run.environment).where(Run.id.in_(ids))
    return key_values, inputs, artifacts, environments


_KEY_VALUES, _INPUTS, _ARTIFACTS, _ENVIRONMENTS = _statements()


def load_runs(session: Session, infos: Sequence[RunInfo], *, with_environment: bool = False) -> list[m.Run]:
    """Attach params, latest metrics, tags, inputs and artifacts to ``infos`` in three queries (per 5,000 runs)."""
    ids = [info.id for info in infos]
    params: dict[str, dict[str, str]] = {i: {} for i in ids}
    metrics: dict[str, dict[str, float]] = {i: {} for i in ids}
    tags: dict[str, dict[str, str]] = {i: {} for i in ids}
    inputs: dict[str, list[DatasetInput]] = {i: [] for i in ids}
    artifacts: dict[str, list[ArtifactRef]] = {i: [] for i in ids}
    environments: dict[str, dict[str, Any]] = {}
    for start in range(0, len(ids), _ID_CHUNK):
        chunk = {"ids": ids[start : start + _ID_CHUNK]}
        for kind, run_id, key, text_value, num_value in session.execute(_KEY_VALUES, chunk).all():
            if kind == "m":
                metrics[run_id][key] = metric_value(num_value)
            elif kind == "p":
                params[run_id][key] = text_value
            else:
                tags[run_id][key] = text_value
        for run_id, context, name, digest, num_rows, schema, source, report in session.execute(_INPUTS, chunk).all():
            dataset = DatasetInfo(
                name=name, digest=digest, num_rows=num_rows, schema_=schema, source=source, leakage_report=report
            )
            inputs[run_id].append(DatasetInput(dataset=dataset, context=context))
        for run_id, path, sha256, size in session.execute(_ARTIFACTS, chunk).all():
            artifacts[run_id].append(ArtifactRef(path=path, sha256=sha256, size=size))
        if with_environment:
            for run_id, env in session.execute(_ENVIRONMENTS, chunk).all():
                environments[run_id] = env or {}
    return [
        m.Run(
            info=info,
            params=params[info.id],
            metrics=metrics[info.id],
            tags=tags[info.id],
            inputs=inputs[info.id],
            artifacts=artifacts[info.id],
            environment=environments.get(info.id) if with_environment else None,
        )
        for info in infos
    ]


def _fingerprint(filter_string: str | None, experiment_ids: Sequence[int] | None, order_by: list[str] | None) -> str:
    blob = json.dumps([filter_string or "", sorted(experiment_ids or []), order_by or []])
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _encode_token(offset: int, fingerprint: str) -> str:
    raw = json.dumps({"o": offset, "q": fingerprint}, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_token(token: str, fingerprint: str) -> int:
    try:
        padded = token + "=" * (-len(token) % 4)
        data = json.loads(base64.urlsafe_b64decode(padded.encode()))
        offset = data["o"]
        query = data["q"]
    except (binascii.Error, ValueError, KeyError, TypeError) as exc:
        raise InvalidInputError("page_token is not a token returned by search_runs", field="page_token") from exc
    if not isinstance(offset, int) or offset < 0:
        raise InvalidInputError("page_token is not a token returned by search_runs", field="page_token")
    if query != fingerprint:
        raise InvalidInputError(
            "page_token belongs to a search with another filter, experiment or order_by", field="page_token"
        )
    return offset


def search_runs(
    session: Session,
    dialect: str,
    *,
    filter_string: str | None,
    experiment_ids: Sequence[int] | None,
    order_by: list[str] | None,
    max_results: int | None,
    page_token: str | None,
) -> RunPage:
    """Runs of ``experiment_ids`` (all when None) matching ``filter_string``, one page at a time."""
    limit = DEFAULT_MAX_RESULTS if max_results is None else max_results
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_RESULTS_LIMIT:
        raise InvalidInputError(
            f"max_results must be an integer from 1 to {MAX_RESULTS_LIMIT}, got {max_results!r}",
            field="max_results",
        )
    fingerprint = _fingerprint(filter_string, experiment_ids, order_by)
    offset = _decode_token(page_token, fingerprint) if page_token else 0
    query = info_query()
    if experiment_ids is not None:
        query = query.where(Run.experiment_id.in_(list(experiment_ids)))
    if filter_string and filter_string.strip():
        query = apply_filter(query, parse_filter(filter_string), dialect)
    # One extra row tells whether another page exists without a COUNT over the whole result.
    query = query.order_by(*compile_order_by(order_by)).offset(offset).limit(limit + 1)
    rows = session.execute(query).all()
    infos = [info_from_row(row) for row in rows[:limit]]
    token = _encode_token(offset + limit, fingerprint) if len(rows) > limit else None
    return RunPage(runs=load_runs(session, infos), next_page_token=token)
