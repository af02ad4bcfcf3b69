"""The values that cross the monitoring service boundary: small frozen pydantic models that serialize to JSON.

They are what the REST API sends and receives and what :class:`~mlpilot.monitor.backend.MonitorBackend`
implementations return, so the SDK and the CLI behave the same against a local store and a remote server.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from mlpilot.errors import InvalidInputError

__all__ = [
    "AlertKind",
    "AlertRule",
    "AlertRuleInfo",
    "AlertTransition",
    "CheckSummary",
    "EndpointConfig",
    "FeatureScore",
    "ProfileInfo",
]

_NAME = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$"
AlertKind = Literal["drift", "performance", "latency_p99", "error_rate"]
Op = Literal[">", ">=", "<", "<="]


class EndpointConfig(BaseModel):
    """How one endpoint (a served model name) is monitored.

    >>> EndpointConfig(segments=["region", "plan"], window_rows=5000).label
    'label'
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    #: the registered model behind the endpoint; by default the endpoint's own name
    model: str | None = Field(default=None, min_length=1, max_length=256)
    #: categorical fields to slice by: a request's ``segments`` entry, else an input of that name
    segments: list[str] = Field(default_factory=list, max_length=8)
    #: the output column holding the prediction; by default the model's first output
    prediction: str | None = Field(default=None, min_length=1, max_length=256)
    #: the positive-class probability column (e.g. ``probabilities_1``): enables ROC AUC and log loss
    score: str | None = Field(default=None, min_length=1, max_length=256)
    #: the label column's name in windows (and in the training sample, if it carries labels)
    label: str = Field(default="label", min_length=1, max_length=256)
    task: Literal["classification", "regression"] | None = None
    positive_label: str | None = Field(default=None, max_length=256)
    #: scheduled checks read the newest ``window_rows`` rows, within the last ``window_minutes`` when set
    window_rows: int | None = Field(default=10_000, ge=1, le=10_000_000)
    window_minutes: float | None = Field(default=None, gt=0)
    #: overrides of :class:`~mlpilot.monitor.drift.DriftConfig` (``alpha``, ``numeric_test``, ...)
    drift: dict[str, Any] = Field(default_factory=dict)

    @field_validator("segments")
    @classmethod
    def _distinct(cls, value: list[str]) -> list[str]:
        for name in value:
            if not name or len(name) > 128:
                raise ValueError(f"segment field names are 1-128 characters, got {name!r}")
        return list(dict.fromkeys(value))

    @field_validator("drift")
    @classmethod
    def _known_options(cls, value: dict[str, Any]) -> dict[str, Any]:
        from mlpilot.monitor.drift import DriftConfig

        unknown = sorted(set(value) - DriftConfig.field_names())
        if unknown:
            raise ValueError(f"unknown drift option(s) {unknown}; expected fields of DriftConfig")
        try:
            DriftConfig(**value)  # validates the values now, not at the first check
        except InvalidInputError as exc:
            raise ValueError(exc.message) from exc
        return value


class ProfileInfo(BaseModel):
    """A stored reference profile: what it describes, the digest of its JSON in the artifact store."""

    model_config = ConfigDict(frozen=True)

    subject: str
    sha256: str
    rows: int
    params: dict[str, Any]
    created_at: int
    computed: bool = False


class FeatureScore(BaseModel):
    model_config = ConfigDict(frozen=True)

    test: str
    effect_size: float | None
    p_value: float | None
    q_value: float | None
    drifted: bool


class CheckSummary(BaseModel):
    """One check of an endpoint's window, small enough for the database, the API and the Prometheus gauges.

    ``worst_segment`` is the slice whose performance fell most (``region=EU & plan=basic``), with its one-line
    description; the full report (histograms, per-segment tests) is the artifact ``report_sha256``.
    """

    model_config = ConfigDict(frozen=True)

    id: int | None = None
    endpoint: str
    model: str
    version: int | None
    time: int
    window_start: int | None
    window_end: int | None
    rows: int
    labeled_rows: int
    drifted: bool
    drifted_features: list[str]
    features: dict[str, FeatureScore] = Field(default_factory=dict)
    prediction: FeatureScore | None = None
    multivariate: FeatureScore | None = None
    #: segment label ("" for all rows) -> metric -> value; the overall metrics and the 20 largest segments
    performance: dict[str, dict[str, float]] = Field(default_factory=dict)
    #: segment label -> rows the performance was measured on
    performance_rows: dict[str, int] = Field(default_factory=dict)
    findings: list[str] = Field(default_factory=list)
    worst_segment: str | None = None
    worst_segment_description: str | None = None
    notes: list[str] = Field(default_factory=list)
    report_sha256: str | None = None
    #: digest of the endpoint settings the check ran with
    config_digest: str | None = None


_DEFAULT_OP: dict[str, Op] = {"drift": ">=", "performance": "<", "latency_p99": ">", "error_rate": ">"}


class AlertRule(BaseModel):
    """A condition on an endpoint, evaluated on a schedule; firing stores an event and POSTs the webhook.

    - ``drift``: ``metric="drifted_features"`` (default) counts the flagged features (only ``feature`` when
      given; the prediction counts as a feature named after its column); ``metric="drift_score"`` is the
      effect size of ``feature``. Default condition ``>= 1`` flagged feature.
    - ``performance``: ``metric`` (accuracy, f1, roc_auc, mae, ...) overall or in ``segment``
      (``region=EU``), once at least ``min_rows`` labeled rows back it. Default operator ``<``.
    - ``latency_p99`` (seconds) and ``error_rate`` (share of 5xx answers): read from the model server's
      Prometheus ``metrics_url`` over the time since the previous evaluation. Default operator ``>``.

    >>> AlertRule(name="eu-accuracy", endpoint="churn", kind="performance", metric="accuracy",
    ...           segment="region=EU", threshold=0.8).op
    '<'
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(pattern=_NAME)
    endpoint: str = Field(pattern=_NAME)
    kind: AlertKind
    threshold: float = Field(allow_inf_nan=False)
    op: Op | None = None
    metric: str | None = Field(default=None, max_length=64)
    feature: str | None = Field(default=None, max_length=256)
    segment: str | None = Field(default=None, max_length=512)
    min_rows: int = Field(default=100, ge=0)
    metrics_url: str | None = Field(default=None, max_length=2048)
    webhook_url: str | None = Field(default=None, max_length=2048)
    cooldown_s: float = Field(default=300.0, ge=0, le=30 * 86400)
    #: evaluations in a row the condition must hold before the rule fires (fewer false alarms)
    consecutive: int = Field(default=1, ge=1, le=1000)
    enabled: bool = True

    @model_validator(mode="after")
    def _coherent(self) -> AlertRule:
        if self.op is None:
            object.__setattr__(self, "op", _DEFAULT_OP[self.kind])
        for url_field in ("metrics_url", "webhook_url"):
            url = getattr(self, url_field)
            if url is not None and not url.startswith(("http://", "https://")):
                raise ValueError(f"{url_field}: expected an http:// or https:// URL")
        if self.kind in ("latency_p99", "error_rate") and self.metrics_url is None:
            raise ValueError(f"metrics_url: a {self.kind} rule reads the model server's /metrics; give its URL")
        if self.kind == "performance" and not self.metric:
            raise ValueError("metric: a performance rule needs a metric (accuracy, f1, roc_auc, mae, rmse, ...)")
        if self.kind == "drift":
            metric = self.metric or "drifted_features"
            if metric not in ("drifted_features", "drift_score"):
                raise ValueError("metric: a drift rule measures 'drifted_features' or 'drift_score'")
            if metric == "drift_score" and not self.feature:
                raise ValueError("feature: metric 'drift_score' is the effect size of one feature: name it")
            object.__setattr__(self, "metric", metric)
        return self


class AlertRuleInfo(BaseModel):
    """A stored rule with its state."""

    model_config = ConfigDict(frozen=True)

    rule: AlertRule
    state: Literal["ok", "firing"]
    streak: int
    value: float | None
    fired_at: int | None
    resolved_at: int | None
    evaluated_at: int | None
    updated_at: int
    updated_by: str


class AlertTransition(BaseModel):
    """A rule that fired or resolved in one evaluation, and whether its webhook was delivered."""

    model_config = ConfigDict(frozen=True)

    event: Literal["alert.fired", "alert.resolved"]
    alert: str
    endpoint: str
    kind: str
    value: float | None
    threshold: float
    op: str
    time: int
    description: str
    delivered: bool | None = None
    attempts: int = 0
