"""Values that cross the tracking protocol: small frozen pydantic models that serialize to JSON.

Non-finite metric values (NaN, ±inf) serialize as the strings ``"NaN"``, ``"Infinity"`` and ``"-Infinity"`` so
that a remote server and its clients round-trip them exactly (plain JSON has no NaN).

>>> MetricPoint(step=3, timestamp=1_700_000_000_000, value=0.25).model_dump()
{'step': 3, 'timestamp': 1700000000000, 'value': 0.25}
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from mlpilot.errors import InvalidInputError
from mlpilot.tracking.leakage import check_leakage_report, leakage_summary

__all__ = [
    "ArtifactRef",
    "DatasetInfo",
    "DatasetInput",
    "Experiment",
    "MetricPoint",
    "Run",
    "RunInfo",
    "RunPage",
    "RunSpec",
    "RunStatus",
]


class RunStatus(StrEnum):
    """Lifecycle of a run. Only RUNNING is not terminal."""

    RUNNING = "RUNNING"
    FINISHED = "FINISHED"
    FAILED = "FAILED"
    KILLED = "KILLED"


class _Value(BaseModel):
    model_config = ConfigDict(frozen=True, ser_json_inf_nan="strings", extra="forbid")


class Experiment(_Value):
    """A named group of runs."""

    id: int
    name: str
    created_at: int
    tags: dict[str, str] = Field(default_factory=dict)


class RunSpec(_Value):
    """What a client says about a run it starts; the service fills in the id, status and experiment id."""

    experiment: str = Field(min_length=1, max_length=256)
    name: str | None = Field(default=None, max_length=256)
    parent_id: str | None = Field(default=None, max_length=32)
    tags: dict[str, str] = Field(default_factory=dict)
    user: str | None = Field(default=None, max_length=256)
    source: str | None = None
    git_commit: str | None = Field(default=None, max_length=64)
    git_dirty: bool | None = None
    environment: dict[str, Any] = Field(default_factory=dict)
    start_time: int | None = Field(default=None, ge=0)


class RunInfo(_Value):
    """A run's attributes, without its logged data."""

    id: str
    experiment_id: int
    experiment: str
    name: str
    parent_id: str | None = None
    status: RunStatus
    start_time: int
    end_time: int | None = None
    user: str | None = None
    source: str | None = None
    git_commit: str | None = None
    git_dirty: bool | None = None


class MetricPoint(_Value):
    """One logged value of a metric."""

    step: int
    timestamp: int
    value: float


class DatasetInfo(_Value):
    """A dataset as logged: its content hash (SHA-256 over a canonical Arrow IPC stream), schema and size.

    ``leakage_report`` is the point-in-time join's report the dataset carried when this run logged it (see
    :mod:`mlpilot.tracking.leakage`); it is metadata, so it is not part of the digest, and it is stored per run
    input: two runs logging the same rows each keep their own.
    """

    name: str = Field(min_length=1, max_length=256)
    digest: str = Field(min_length=64, max_length=64, pattern="^[0-9a-f]{64}$")
    num_rows: int = Field(ge=0)
    schema_: dict[str, Any] = Field(default_factory=dict, alias="schema")
    source: str | None = None
    leakage_report: dict[str, Any] | None = None

    model_config = ConfigDict(
        frozen=True,
        ser_json_inf_nan="strings",
        extra="forbid",
        populate_by_name=True,
        serialize_by_alias=True,
    )

    @field_validator("leakage_report", mode="before")
    @classmethod
    def _check_report(cls, value: Any) -> Any:
        if value is None:
            return None
        try:
            return check_leakage_report(value)
        except InvalidInputError as exc:
            raise ValueError(exc.message.removeprefix("leakage_report: ")) from exc

    @property
    def leakage_summary(self) -> str | None:
        """The report in one line (``3 equal-timestamp matches, 0 excluded by availability, 1 TTL null``)."""
        return None if self.leakage_report is None else leakage_summary(self.leakage_report, self.num_rows)


class DatasetInput(_Value):
    """A dataset a run used, and in what role (``train``, ``eval``, ...)."""

    dataset: DatasetInfo
    context: str


class ArtifactRef(_Value):
    """A file logged to a run: its logical path and the content-addressed blob holding its bytes."""

    path: str = Field(min_length=1, max_length=1024)
    sha256: str = Field(min_length=64, max_length=64, pattern="^[0-9a-f]{64}$")
    size: int = Field(ge=0)


class Run(_Value):
    """A run with its data: params, latest metric values, tags, dataset inputs and artifacts.

    ``environment`` (python, platform, installed packages) is filled by ``get_run`` and left ``None`` by
    ``search_runs``, which would otherwise ship kilobytes of package lists per run.
    """

    info: RunInfo
    params: dict[str, str] = Field(default_factory=dict)
    metrics: dict[str, float] = Field(default_factory=dict)
    tags: dict[str, str] = Field(default_factory=dict)
    inputs: list[DatasetInput] = Field(default_factory=list)
    artifacts: list[ArtifactRef] = Field(default_factory=list)
    environment: dict[str, Any] | None = None

    @property
    def id(self) -> str:
        return self.info.id


class RunPage(_Value):
    """One page of search results; pass ``next_page_token`` back for the next one (None on the last page)."""

    runs: list[Run]
    next_page_token: str | None = None
