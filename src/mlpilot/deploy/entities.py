"""The values that cross the deployments protocol: small frozen pydantic models that serialise to JSON.

A deployment is an endpoint (``churn``) serving versions of one registered model. Its desired state at a
revision is a :class:`DeploymentSpec`: the variants (version, role, weight), the strategy under way and its
state, and the knobs of the canary, the analysis, the gate and the sticky routing. Every change stores a new
revision with who made it and why, so the history is complete and a rollback is a copy of an older spec.
"""

from __future__ import annotations

import itertools
import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

__all__ = [
    "ABConfig",
    "AnalysisConfig",
    "CanaryConfig",
    "DeploymentInfo",
    "DeploymentSpec",
    "EndpointFeatures",
    "GateConfig",
    "PreviewCheck",
    "PreviewVerification",
    "RevisionInfo",
    "Role",
    "RoutingConfig",
    "ServingDocument",
    "State",
    "Strategy",
    "Variant",
    "check_deployment_name",
]

Role = Literal["primary", "canary", "shadow", "standby"]
Strategy = Literal["direct", "blue_green", "canary", "shadow", "ab"]
State = Literal["stable", "preview", "canary", "paused", "shadowing", "ab_testing"]
Finite = Annotated[float, Field(allow_inf_nan=False)]
Percent = Annotated[float, Field(ge=0, le=100, allow_inf_nan=False)]

_NAME = re.compile(r"^[a-z0-9]([a-z0-9-]{0,50}[a-z0-9])?$")
_HEADER = r"^[a-z0-9-]{1,64}$"
#: a feature registry project, as :func:`mlpilot.features.store_registry.check_project` accepts it
_PROJECT = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$"

#: States in which a candidate receives traffic and the controller watches it.
ACTIVE_STATES: frozenset[str] = frozenset({"preview", "canary", "paused", "shadowing", "ab_testing"})


def check_deployment_name(name: str, *, field: str = "name") -> str:
    """``name`` if it is a valid deployment name: it becomes a Kubernetes object name and a URL segment, so
    1-52 lowercase letters, digits and '-', starting and ending with a letter or digit.

    >>> check_deployment_name("churn")
    'churn'
    """
    from mlpilot.errors import InvalidInputError

    if not isinstance(name, str) or not _NAME.match(name):
        raise InvalidInputError(
            f"{field}: a deployment name is 1-52 lowercase letters, digits or '-', starting and ending with a "
            f"letter or digit; got {name!r}",
            field=field,
        )
    return name


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Variant(_Frozen):
    """One model version behind the endpoint.

    ``weight`` is the percentage of live traffic it answers (primary and canary weights add up to 100). For a
    ``shadow`` it is the percentage of live traffic mirrored to it (callers never see its answers); a
    ``standby`` answers nothing but stays loaded so that a rollback is instant.
    """

    version: int = Field(ge=1)
    role: Role
    weight: Percent = 0.0

    @property
    def name(self) -> str:
        return f"v{self.version}"


class CanaryConfig(_Frozen):
    """Canary steps: the canary's share of traffic at each step, and what a step needs before it may advance.

    A step lasts at least ``min_step_seconds`` and sees at least ``min_step_requests`` canary requests. A
    step still short of traffic or labels after ``max_step_seconds`` (by default four times the minimum, at
    least 60 s) pauses for a human.
    """

    steps: list[Annotated[float, Field(gt=0, le=100, allow_inf_nan=False)]] = Field(
        default_factory=lambda: [5.0, 25.0, 50.0, 100.0], min_length=1, max_length=20
    )
    min_step_seconds: float = Field(default=60.0, ge=0, le=7 * 86400)
    min_step_requests: int = Field(default=500, ge=1)
    max_step_seconds: float | None = Field(default=None, gt=0)

    @field_validator("steps")
    @classmethod
    def _increasing(cls, steps: list[float]) -> list[float]:
        if any(b <= a for a, b in itertools.pairwise(steps)):
            raise ValueError(f"steps must increase, got {steps}")
        if steps[-1] != 100:
            raise ValueError(f"the last step must be 100 (full traffic), got {steps[-1]}")
        return steps

    @model_validator(mode="after")
    def _max_after_min(self) -> CanaryConfig:
        if self.max_step_seconds is not None and self.max_step_seconds < self.min_step_seconds:
            raise ValueError("max_step_seconds must be at least min_step_seconds")
        return self


class ABConfig(_Frozen):
    """An A/B test: ``split`` percent of assignment keys go to B (the candidate), sticky by key."""

    split: float = Field(default=50.0, gt=0, lt=100, allow_inf_nan=False)
    #: the outcome compared between arms: ``outcome`` (posted values) or ``accuracy`` (posted labels)
    metric: Literal["outcome", "accuracy"] = "outcome"
    higher_is_better: bool = True
    min_samples: int = Field(default=200, ge=10)


class AnalysisConfig(_Frozen):
    """How a candidate is judged against the primary while it takes traffic.

    Every comparison is a sequential test valid under continuous monitoring at level ``alpha``: a canary is
    rolled back only on evidence of harm, and promoted only once its step has had enough time and traffic
    and no check found harm (with labels required when ``require_labels``).
    """

    alpha: float = Field(default=0.05, gt=0, lt=0.5)
    #: rows each arm needs before a test is consulted
    min_samples: int = Field(default=200, ge=10)
    #: server errors (5xx): an absolute increase up to this much is tolerated
    error_rate_margin: float = Field(default=0.0, ge=0, le=1)
    #: latency: the canary may be this much slower at p99 (relative) before it counts as slower
    latency_tolerance: float = Field(default=0.2, ge=0, le=10)
    #: online accuracy (from posted labels): an absolute drop up to this much is tolerated
    accuracy_margin: float = Field(default=0.0, ge=0, le=1)
    require_labels: bool = False
    min_labels: int = Field(default=200, ge=10)
    #: what a significant change in the prediction distribution does
    on_prediction_shift: Literal["ignore", "pause", "rollback"] = "pause"
    #: when true, a failed check rolls back on its own (otherwise it pauses for a human)
    auto_rollback: bool = True


class GateConfig(_Frozen):
    """What a candidate must pass before it gets any traffic.

    ``metric`` names an evaluation metric recorded on both versions (``accuracy``, ``rmse``...) or computed on
    a holdout by the SDK; the candidate must be at least as good as the champion within ``tolerance``.
    ``latency_budget_ms`` bounds the p99 of ``smoke_requests`` one-row predictions on the version's sample.
    """

    metric: str | None = Field(default=None, min_length=1, max_length=256)
    higher_is_better: bool = True
    tolerance: float = Field(default=0.0, ge=0)
    check_signature: bool = True
    latency_budget_ms: float | None = Field(default=None, gt=0)
    smoke_requests: int = Field(default=20, ge=1, le=10_000)


class RoutingConfig(_Frozen):
    """Sticky assignment: the key comes from ``key_header``, else the JSON body's ``key_field``, else the
    request id. Keys are hashed with ``salt`` so that every replica agrees without sharing state."""

    key_header: str = Field(default="x-mlpilot-key", pattern=_HEADER)
    key_field: str | None = Field(default=None, min_length=1, max_length=128)
    salt: str = Field(default="", max_length=64)


class EndpointFeatures(_Frozen):
    """The feature service every version of the endpoint looks its inputs up from.

    Callers then send entity keys (and request-time fields); the model server reads the service's features
    from its online store, using the definitions registered in ``project`` (see ``docs/serving.md``). Every
    variant (primary, canary, shadow, the preview route) gets the same lookup, so callers send the same
    request whichever version answers.
    """

    service: str = Field(min_length=1, max_length=200)
    project: str = Field(default="default", pattern=_PROJECT)


class PreviewCheck(_Frozen):
    """One check of a preview verification: ``requests``, ``signature`` or ``latency``."""

    name: str
    passed: bool
    detail: str


class PreviewVerification(_Frozen):
    """What smoke requests on a blue-green candidate's preview route found (see ``docs/deployments.md``).

    ``inputs`` says where the smoke inputs came from: ``given`` (the caller's), ``sample`` (the version's
    stored input example or training sample) or ``signature`` (rows generated from its input signature).
    Latencies are round trips measured by the control plane, in ms.
    """

    version: int
    rollout: int
    passed: bool
    url: str
    time: int
    inputs: Literal["given", "sample", "signature"]
    requests: int
    answered: int
    p50_ms: float | None = None
    p99_ms: float | None = None
    latency_budget_ms: float | None = None
    checks: list[PreviewCheck] = Field(default_factory=list)

    @property
    def failures(self) -> list[PreviewCheck]:
        return [c for c in self.checks if not c.passed]


class DeploymentSpec(_Frozen):
    """The desired state of a deployment at one revision."""

    model: str
    variants: list[Variant] = Field(min_length=1, max_length=8)
    strategy: Strategy = "direct"
    state: State = "stable"
    #: why the deployment is in this state (the last decision, a gate failure, a rollback reason)
    message: str = ""
    #: counts rollouts (canary, blue-green, shadow, A/B): observations are grouped by it
    rollout: int = 0
    #: the stable revision this rollout started from: what a rollback restores
    base_revision: int | None = None
    step: int = 0
    #: when the current canary step (or strategy) began (ms), and the revision it began at
    step_started_at: int = 0
    step_revision: int = 0
    #: the blue-green retention window: standby variants are dropped after this time (ms)
    standby_until: int | None = None
    retention_seconds: float = Field(default=600.0, ge=0)
    #: the latency exceedance threshold frozen for this rollout (ms), once the primary has enough data
    latency_threshold_ms: float | None = None
    canary: CanaryConfig = CanaryConfig()
    ab: ABConfig | None = None
    analysis: AnalysisConfig = AnalysisConfig()
    gate: GateConfig = GateConfig()
    routing: RoutingConfig = RoutingConfig()
    #: the feature service callers' entity keys are looked up in (None: callers send the model's inputs)
    features: EndpointFeatures | None = None
    #: the last verification of the blue-green preview of this rollout (promote needs one that passed)
    verification: PreviewVerification | None = None

    @model_validator(mode="after")
    def _consistent(self) -> DeploymentSpec:
        versions = [v.version for v in self.variants]
        if len(set(versions)) != len(versions):
            raise ValueError(f"variants: each version may appear once, got {versions}")
        primaries = [v for v in self.variants if v.role == "primary"]
        if len(primaries) != 1:
            raise ValueError(f"variants: expected exactly one primary, got {len(primaries)}")
        live = sum(v.weight for v in self.variants if v.role in ("primary", "canary"))
        if abs(live - 100.0) > 1e-6:
            raise ValueError(f"variants: primary and canary weights must add up to 100, got {live}")
        if any(v.role == "standby" and v.weight for v in self.variants):
            raise ValueError("variants: a standby takes no traffic (weight 0)")
        return self

    @property
    def primary(self) -> Variant:
        return next(v for v in self.variants if v.role == "primary")

    @property
    def candidate(self) -> Variant | None:
        """The version being rolled out (canary, preview, A/B arm B, or shadow), if any."""
        return next((v for v in self.variants if v.role in ("canary", "shadow")), None)

    def variant(self, name: str) -> Variant | None:
        return next((v for v in self.variants if v.name == name), None)


class DeploymentInfo(_Frozen):
    """A deployment at its current revision."""

    name: str
    revision: int
    spec: DeploymentSpec
    created_at: int
    updated_at: int
    updated_by: str

    @property
    def state(self) -> State:
        return self.spec.state


class RevisionInfo(_Frozen):
    """One entry of a deployment's history: the spec it set, who set it, and why."""

    revision: int
    time: int
    actor: str
    action: str
    reason: str
    spec: DeploymentSpec


class ServingDocument(_Frozen):
    """What the data plane polls: the model versions to load and how to route among them.

    ``models`` maps onto :class:`mlpilot.serving.ServeConfig` ``models`` (pinned ``name/version`` references
    served under the endpoint's name, primary first so that an unrouted server answers with it; each with the
    endpoint's feature service, when it has one: ``features``). ``etag``
    changes with every revision, so a poller's conditional GET costs one indexed read when nothing changed.
    """

    name: str
    revision: int
    rollout: int
    etag: str
    model: str
    models: list[dict[str, Any]]
    variants: list[Variant]
    routing: RoutingConfig
    state: State
    features: EndpointFeatures | None = None
