"""The metadata schema: one relational model for tracking, the registry, auth and the audit trail.

Times are integers in milliseconds since the Unix epoch (UTC) so that SQLite and PostgreSQL sort and compare
them alike. Changes to this module need an Alembic migration in ``store/migrations/versions``.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

__all__ = [
    "TAG_INDEX_PREFIX",
    "ApiToken",
    "AuditEvent",
    "Base",
    "Dataset",
    "Deployment",
    "DeploymentRevision",
    "DeploymentStat",
    "Experiment",
    "FeatureDefinition",
    "FeatureRegistryVersion",
    "LatestMetric",
    "Metric",
    "ModelAlias",
    "ModelVersion",
    "MonitorAlertRule",
    "MonitorEndpoint",
    "MonitorProfile",
    "MonitorResult",
    "Param",
    "RegisteredModel",
    "Run",
    "RunArtifact",
    "RunInput",
    "Tag",
]

#: Characters of a tag value covered by ``ix_tags_key_value_prefix``.
TAG_INDEX_PREFIX = 200

# SQLite only auto-increments an INTEGER PRIMARY KEY; PostgreSQL gets a BIGINT identity.
BigId = BigInteger().with_variant(Integer(), "sqlite")

NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map = {dict[str, Any]: JSON, list[Any]: JSON}


class Experiment(Base):
    __tablename__ = "experiments"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(256), unique=True)
    created_at: Mapped[int] = mapped_column(BigInteger)
    tags: Mapped[dict[str, Any]] = mapped_column(default=dict)


class Run(Base):
    __tablename__ = "runs"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    experiment_id: Mapped[int] = mapped_column(ForeignKey("experiments.id", ondelete="CASCADE"), index=True)
    parent_id: Mapped[str | None] = mapped_column(ForeignKey("runs.id", ondelete="SET NULL"), index=True)
    name: Mapped[str] = mapped_column(String(256))
    status: Mapped[str] = mapped_column(String(16), index=True)
    start_time: Mapped[int] = mapped_column(BigInteger, index=True)
    end_time: Mapped[int | None] = mapped_column(BigInteger)
    user: Mapped[str | None] = mapped_column(String(256))
    source: Mapped[str | None] = mapped_column(Text)
    git_commit: Mapped[str | None] = mapped_column(String(64))
    git_dirty: Mapped[bool | None] = mapped_column(Boolean)
    environment: Mapped[dict[str, Any]] = mapped_column(default=dict)

    # Run search filters by experiment and pages newest first.
    __table_args__ = (Index("ix_runs_experiment_id_start_time", "experiment_id", "start_time"),)


class Param(Base):
    __tablename__ = "params"

    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True)
    key: Mapped[str] = mapped_column(String(256), primary_key=True)
    value: Mapped[str] = mapped_column(Text)
    # Numeric view of the value (NULL when it is not a number) so filters compare numbers, not strings.
    value_num: Mapped[float | None] = mapped_column(Float)

    __table_args__ = (Index("ix_params_key_value_num", "key", "value_num"),)


class Tag(Base):
    __tablename__ = "tags"

    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True)
    key: Mapped[str] = mapped_column(String(256), primary_key=True)
    value: Mapped[str] = mapped_column(Text)

    # Only a prefix of the value is indexed: PostgreSQL refuses B-tree rows over ~2.7 kB, and tags may hold long
    # notes. Equality filters test the prefix (indexed) and then the whole value.
    __table_args__ = (Index("ix_tags_key_value_prefix", "key", text(f"substr(value, 1, {TAG_INDEX_PREFIX})")),)


class Metric(Base):
    """Every logged point. Written in batches by the background writer; never updated."""

    __tablename__ = "metrics"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"))
    key: Mapped[str] = mapped_column(String(256))
    step: Mapped[int] = mapped_column(BigInteger)
    timestamp: Mapped[int] = mapped_column(BigInteger)
    # NULL stands for NaN: SQLite cannot store NaN, and NULL compares false like NaN does.
    value: Mapped[float | None] = mapped_column(Float)

    __table_args__ = (Index("ix_metrics_run_id_key_step", "run_id", "key", "step"),)


class LatestMetric(Base):
    """The last point of each run's metric (highest step, then time): what run search filters and sorts on."""

    __tablename__ = "latest_metrics"

    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True)
    key: Mapped[str] = mapped_column(String(256), primary_key=True)
    step: Mapped[int] = mapped_column(BigInteger)
    timestamp: Mapped[int] = mapped_column(BigInteger)
    value: Mapped[float | None] = mapped_column(Float)  # NULL stands for NaN, as in ``metrics``

    __table_args__ = (Index("ix_latest_metrics_key_value", "key", "value"),)


class Dataset(Base):
    __tablename__ = "datasets"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    digest: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(256))
    schema: Mapped[dict[str, Any]] = mapped_column(default=dict)
    num_rows: Mapped[int] = mapped_column(BigInteger)
    source: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[int] = mapped_column(BigInteger)

    __table_args__ = (UniqueConstraint("digest", "name"),)


class RunInput(Base):
    __tablename__ = "run_inputs"

    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True)
    dataset_id: Mapped[int] = mapped_column(ForeignKey("datasets.id", ondelete="CASCADE"), primary_key=True)
    context: Mapped[str] = mapped_column(String(64), primary_key=True, default="train")
    # The leakage report the dataset carried when this run logged it: per input, since datasets are shared.
    leakage_report: Mapped[dict[str, Any] | None] = mapped_column(JSON(none_as_null=True), nullable=True)


class RunArtifact(Base):
    """A file logged to a run: a logical path pointing at a content-addressed blob."""

    __tablename__ = "run_artifacts"

    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True)
    path: Mapped[str] = mapped_column(String(1024), primary_key=True)
    sha256: Mapped[str] = mapped_column(String(64))
    size: Mapped[int] = mapped_column(BigInteger)


class RegisteredModel(Base):
    __tablename__ = "registered_models"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(256), unique=True)
    description: Mapped[str] = mapped_column(Text, default="")
    tags: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[int] = mapped_column(BigInteger)
    updated_at: Mapped[int] = mapped_column(BigInteger)
    # The highest version number ever given out, so a deleted version's number is never reused.
    last_version: Mapped[int] = mapped_column(Integer, default=0, server_default="0")


class ModelVersion(Base):
    __tablename__ = "model_versions"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    model_id: Mapped[int] = mapped_column(ForeignKey("registered_models.id", ondelete="CASCADE"))
    version: Mapped[int] = mapped_column(Integer)
    run_id: Mapped[str | None] = mapped_column(ForeignKey("runs.id", ondelete="SET NULL"), index=True)
    flavor: Mapped[str] = mapped_column(String(64))
    artifact_sha256: Mapped[str] = mapped_column(String(64))
    artifact_size: Mapped[int] = mapped_column(BigInteger)
    signature: Mapped[dict[str, Any]] = mapped_column(default=dict)
    requirements: Mapped[list[Any]] = mapped_column(default=list)
    sample_sha256: Mapped[str | None] = mapped_column(String(64))
    metrics: Mapped[dict[str, Any]] = mapped_column(default=dict)
    tags: Mapped[dict[str, Any]] = mapped_column(default=dict)
    description: Mapped[str] = mapped_column(Text, default="")
    # Where the version came from beyond its run: dataset ids, parent versions, the code version.
    lineage: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[int] = mapped_column(BigInteger)

    __table_args__ = (UniqueConstraint("model_id", "version"),)


class ModelAlias(Base):
    __tablename__ = "model_aliases"

    model_id: Mapped[int] = mapped_column(ForeignKey("registered_models.id", ondelete="CASCADE"), primary_key=True)
    alias: Mapped[str] = mapped_column(String(128), primary_key=True)
    version_id: Mapped[int] = mapped_column(ForeignKey("model_versions.id", ondelete="CASCADE"))
    updated_at: Mapped[int] = mapped_column(BigInteger)


class AuditEvent(Base):
    """Every state change, written in the same transaction as the change; also the outbox triggers read."""

    __tablename__ = "audit_events"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    time: Mapped[int] = mapped_column(BigInteger, index=True)
    kind: Mapped[str] = mapped_column(String(128), index=True)
    subject: Mapped[str] = mapped_column(String(512), index=True)
    actor: Mapped[str] = mapped_column(String(256))
    payload: Mapped[dict[str, Any]] = mapped_column(default=dict)


class ApiToken(Base):
    """API tokens; only the SHA-256 of the secret is stored."""

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(256), unique=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    prefix: Mapped[str] = mapped_column(String(16))
    role: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[int] = mapped_column(BigInteger)
    last_used_at: Mapped[int | None] = mapped_column(BigInteger)
    revoked_at: Mapped[int | None] = mapped_column(BigInteger)


class Deployment(Base):
    """An endpoint serving versions of one registered model; ``spec`` is its desired state at ``revision``."""

    __tablename__ = "deployments"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    model_name: Mapped[str] = mapped_column(String(256), index=True)
    revision: Mapped[int] = mapped_column(Integer)
    spec: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[int] = mapped_column(BigInteger)
    updated_at: Mapped[int] = mapped_column(BigInteger)
    updated_by: Mapped[str] = mapped_column(String(256))


class DeploymentRevision(Base):
    """Every spec a deployment ever had, with who set it and why: the history a rollback restores from."""

    __tablename__ = "deployment_revisions"

    deployment_id: Mapped[int] = mapped_column(ForeignKey("deployments.id", ondelete="CASCADE"), primary_key=True)
    revision: Mapped[int] = mapped_column(Integer, primary_key=True)
    time: Mapped[int] = mapped_column(BigInteger)
    actor: Mapped[str] = mapped_column(String(256))
    action: Mapped[str] = mapped_column(String(64))
    reason: Mapped[str] = mapped_column(Text, default="")
    spec: Mapped[dict[str, Any]] = mapped_column(default=dict)


class DeploymentStat(Base):
    """Traffic statistics of one variant, summed per reporting source (a data-plane replica, or ``outcomes``)
    within one revision of one rollout: bounded rows, merged on write."""

    __tablename__ = "deployment_stats"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    deployment_id: Mapped[int] = mapped_column(ForeignKey("deployments.id", ondelete="CASCADE"))
    rollout: Mapped[int] = mapped_column(Integer)
    revision: Mapped[int] = mapped_column(Integer)
    variant: Mapped[str] = mapped_column(String(32))
    source: Mapped[str] = mapped_column(String(128))
    updated_at: Mapped[int] = mapped_column(BigInteger)
    stats: Mapped[dict[str, Any]] = mapped_column(default=dict)

    __table_args__ = (UniqueConstraint("deployment_id", "rollout", "revision", "variant", "source"),)


class MonitorEndpoint(Base):
    """How an endpoint is monitored: its registered model, segment fields, prediction/label columns, window."""

    __tablename__ = "monitor_endpoints"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(128), unique=True)
    model_name: Mapped[str] = mapped_column(String(256))
    config: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[int] = mapped_column(BigInteger)
    updated_at: Mapped[int] = mapped_column(BigInteger)
    updated_by: Mapped[str] = mapped_column(String(256))


class MonitorProfile(Base):
    """A reference profile stored in the artifact store: computed once per subject and profiling parameters.

    ``subject`` is ``models/<name>/<version>`` or ``datasets/<name>``; ``params_digest`` hashes what shaped the
    profile (segments, prediction and label columns, options), so a changed configuration gets its own profile.
    """

    __tablename__ = "monitor_profiles"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    subject: Mapped[str] = mapped_column(String(512))
    params_digest: Mapped[str] = mapped_column(String(64))
    sha256: Mapped[str] = mapped_column(String(64))
    rows: Mapped[int] = mapped_column(BigInteger)
    params: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[int] = mapped_column(BigInteger)

    __table_args__ = (UniqueConstraint("subject", "params_digest"),)


class MonitorResult(Base):
    """One monitoring check of an endpoint's window: a small summary here, the full report as an artifact."""

    __tablename__ = "monitor_results"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    endpoint: Mapped[str] = mapped_column(String(128))
    model_name: Mapped[str] = mapped_column(String(256))
    version: Mapped[int | None] = mapped_column(Integer)
    time: Mapped[int] = mapped_column(BigInteger)
    window_start: Mapped[int | None] = mapped_column(BigInteger)
    window_end: Mapped[int | None] = mapped_column(BigInteger)
    rows: Mapped[int] = mapped_column(BigInteger)
    labeled_rows: Mapped[int] = mapped_column(BigInteger)
    drifted: Mapped[bool] = mapped_column(Boolean)
    summary: Mapped[dict[str, Any]] = mapped_column(default=dict)
    report_sha256: Mapped[str | None] = mapped_column(String(64))

    # "The latest result of an endpoint" and pruning both walk one endpoint's results newest first.
    __table_args__ = (Index("ix_monitor_results_endpoint_id", "endpoint", "id"),)


class MonitorAlertRule(Base):
    """An alert rule and its state (``ok`` or ``firing``), updated in the transaction that records the event."""

    __tablename__ = "monitor_alert_rules"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(128), unique=True)
    endpoint: Mapped[str] = mapped_column(String(128), index=True)
    kind: Mapped[str] = mapped_column(String(32))
    spec: Mapped[dict[str, Any]] = mapped_column(default=dict)
    webhook_url: Mapped[str | None] = mapped_column(Text)
    cooldown_s: Mapped[float] = mapped_column(Float)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[int] = mapped_column(BigInteger)
    updated_at: Mapped[int] = mapped_column(BigInteger)
    updated_by: Mapped[str] = mapped_column(String(256))
    state: Mapped[str] = mapped_column(String(16), default="ok")
    #: consecutive evaluations with the condition true (a rule may ask for several before it fires)
    streak: Mapped[int] = mapped_column(Integer, default=0)
    value: Mapped[float | None] = mapped_column(Float)
    fired_at: Mapped[int | None] = mapped_column(BigInteger)
    resolved_at: Mapped[int | None] = mapped_column(BigInteger)
    evaluated_at: Mapped[int | None] = mapped_column(BigInteger)


class FeatureRegistryVersion(Base):
    """Every applied set of feature definitions of a project, whole: the history of ``mlpilot features apply``.

    The primary key makes two applies that planned against the same version collide, so one of them fails and
    nothing is mixed.
    """

    __tablename__ = "feature_registry_versions"

    project: Mapped[str] = mapped_column(String(128), primary_key=True)
    version: Mapped[int] = mapped_column(Integer, primary_key=True)
    applied_at: Mapped[int] = mapped_column(BigInteger)
    actor: Mapped[str] = mapped_column(String(256))
    specs_hash: Mapped[str] = mapped_column(String(64))
    specs: Mapped[list[Any]] = mapped_column(default=list)
    changes: Mapped[dict[str, Any]] = mapped_column(default=dict)


class FeatureDefinition(Base):
    """The current feature definitions of a project (entities, views, services), one row per kind and name."""

    __tablename__ = "feature_definitions"

    project: Mapped[str] = mapped_column(String(128), primary_key=True)
    kind: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str] = mapped_column(String(256), primary_key=True)
    spec: Mapped[dict[str, Any]] = mapped_column(default=dict)
    spec_hash: Mapped[str] = mapped_column(String(64))
    # The registry version that last added or changed this definition.
    version: Mapped[int] = mapped_column(Integer)
    updated_at: Mapped[int] = mapped_column(BigInteger)
