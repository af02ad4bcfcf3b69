"""The state machine of a deployment, as pure functions from one spec to the next.

::

    stable ──canary──► canary ──advance──► canary (next step) ──advance at the last step──► stable (promoted)
      │                  │  ▲                                                                  │
      │                  ▼  │ resume                                                           │ retention
      │                paused                                                                  ▼ window ends
      ├──blue_green──► preview ──promote──► stable (old primary kept warm as standby) ──► stable
      │                 │  ▲ (promote needs a passed verification of the candidate, or force)
      │                 └──┘ verify: records the preview verification
      ├──shadow──────► shadowing ──promote──► stable
      └──ab──────────► ab_testing ──promote──► stable
    any rollout state ──rollback──► the stable spec the rollout started from (also after a promotion)

The service applies them inside one transaction, with the revision row and the audit event.
"""

from __future__ import annotations

from mlpilot.deploy.entities import (
    ABConfig,
    AnalysisConfig,
    CanaryConfig,
    DeploymentSpec,
    PreviewVerification,
    State,
    Strategy,
    Variant,
)
from mlpilot.errors import ConflictError

__all__ = [
    "advance",
    "check_preview",
    "expire_standby",
    "pause",
    "promote",
    "record_verification",
    "resume",
    "rollback",
    "start_ab",
    "start_blue_green",
    "start_canary",
    "start_shadow",
    "verified",
]


def _stable_primary(spec: DeploymentSpec, version: int, what: str) -> Variant:
    if spec.state != "stable":
        raise ConflictError(
            f"cannot start a {what} while the deployment is {spec.state}: promote or roll back first", field="state"
        )
    primary = spec.primary
    if version == primary.version:
        raise ConflictError(f"version {version} is already the primary", field="version")
    return primary


def _start(
    spec: DeploymentSpec,
    *,
    strategy: Strategy,
    state: State,
    variants: list[Variant],
    revision: int,
    now_ms: int,
    message: str,
    **extra: object,
) -> DeploymentSpec:
    """A new rollout from a stable spec: it supersedes any standby still kept warm."""
    return spec.model_copy(
        update={
            "strategy": strategy,
            "state": state,
            "variants": variants,
            "rollout": spec.rollout + 1,
            "base_revision": revision,
            "step": 0,
            "step_started_at": now_ms,
            "step_revision": revision + 1,
            "standby_until": None,
            "latency_threshold_ms": None,
            "verification": None,
            "message": message,
            **extra,
        }
    )


def start_canary(
    spec: DeploymentSpec,
    version: int,
    *,
    revision: int,
    now_ms: int,
    canary: CanaryConfig | None = None,
    analysis: AnalysisConfig | None = None,
) -> DeploymentSpec:
    """Send the first step's share of traffic to ``version``."""
    primary = _stable_primary(spec, version, "canary")
    canary = canary or spec.canary
    weight = canary.steps[0]
    if weight >= 100:
        raise ConflictError("a canary needs at least one step below 100%", field="steps")
    variants = [
        Variant(version=primary.version, role="primary", weight=100 - weight),
        Variant(version=version, role="canary", weight=weight),
    ]
    return _start(
        spec,
        strategy="canary",
        state="canary",
        variants=variants,
        revision=revision,
        now_ms=now_ms,
        message=f"canary v{version} at {weight:g}%",
        canary=canary,
        analysis=analysis or spec.analysis,
    )


def start_blue_green(
    spec: DeploymentSpec, version: int, *, revision: int, now_ms: int, retention_seconds: float | None = None
) -> DeploymentSpec:
    """Load ``version`` next to the primary with no live traffic: it answers only on its preview route."""
    primary = _stable_primary(spec, version, "blue-green rollout")
    variants = [
        Variant(version=primary.version, role="primary", weight=100),
        Variant(version=version, role="canary", weight=0),
    ]
    extra: dict[str, object] = {}
    if retention_seconds is not None:
        extra["retention_seconds"] = retention_seconds
    return _start(
        spec,
        strategy="blue_green",
        state="preview",
        variants=variants,
        revision=revision,
        now_ms=now_ms,
        message=f"v{version} loaded for preview",
        **extra,
    )


def start_shadow(spec: DeploymentSpec, version: int, *, revision: int, now_ms: int, mirror: float) -> DeploymentSpec:
    """Mirror ``mirror`` percent of live traffic to ``version``; callers keep getting the primary's answers."""
    primary = _stable_primary(spec, version, "shadow")
    if not 0 < mirror <= 100:
        raise ConflictError(f"mirror: expected a percentage in (0, 100], got {mirror}", field="mirror")
    variants = [
        Variant(version=primary.version, role="primary", weight=100),
        Variant(version=version, role="shadow", weight=mirror),
    ]
    return _start(
        spec,
        strategy="shadow",
        state="shadowing",
        variants=variants,
        revision=revision,
        now_ms=now_ms,
        message=f"v{version} shadows {mirror:g}% of traffic",
    )


def start_ab(spec: DeploymentSpec, version: int, *, revision: int, now_ms: int, ab: ABConfig) -> DeploymentSpec:
    """Split traffic between A (the primary) and B (``version``), sticky by the assignment key."""
    primary = _stable_primary(spec, version, "A/B test")
    variants = [
        Variant(version=primary.version, role="primary", weight=100 - ab.split),
        Variant(version=version, role="canary", weight=ab.split),
    ]
    return _start(
        spec,
        strategy="ab",
        state="ab_testing",
        variants=variants,
        revision=revision,
        now_ms=now_ms,
        message=f"A/B test: v{primary.version} vs v{version} ({ab.split:g}% to B)",
        ab=ab,
    )


def check_preview(spec: DeploymentSpec) -> Variant:
    """The candidate of a blue-green preview; a ConflictError in any other state."""
    candidate = spec.candidate
    if spec.state != "preview" or candidate is None:
        raise ConflictError(f"only a blue-green preview is verified; the deployment is {spec.state}", field="state")
    return candidate


def record_verification(spec: DeploymentSpec, result: PreviewVerification) -> DeploymentSpec:
    """The preview with ``result`` recorded, when it still previews the version of the rollout verified."""
    candidate = check_preview(spec)
    if (candidate.version, spec.rollout) != (result.version, result.rollout):
        raise ConflictError(
            f"the deployment moved on while v{result.version} was verified: it now previews v{candidate.version} "
            f"(rollout {spec.rollout})",
            field="state",
        )
    if result.passed:
        message = f"v{result.version} passed preview verification ({result.requests} smoke requests)"
    else:
        failed = "; ".join(f"{c.name}: {c.detail}" for c in result.failures)
        message = f"v{result.version} failed preview verification: {failed}"
    return spec.model_copy(update={"verification": result, "message": message})


def verified(spec: DeploymentSpec) -> bool:
    """Whether the preview's candidate passed a verification in this rollout."""
    candidate, result = spec.candidate, spec.verification
    return (
        candidate is not None
        and result is not None
        and result.passed
        and (result.version, result.rollout) == (candidate.version, spec.rollout)
    )


def promote(spec: DeploymentSpec, *, now_ms: int, message: str = "", force: bool = False) -> DeploymentSpec:
    """The candidate takes all traffic in one step; the old primary stays loaded as a standby for the
    retention window so that a rollback is instant. A blue-green preview is promoted once its candidate
    passed a verification of this rollout, or with ``force``."""
    candidate = spec.candidate
    if candidate is None or spec.state == "stable":
        raise ConflictError("nothing to promote: no rollout under way", field="state")
    if spec.state == "preview" and not force and not verified(spec):
        last = spec.verification
        seen = (
            "it failed its last verification"
            if last is not None and (last.version, last.rollout) == (candidate.version, spec.rollout)
            else "it has not been verified"
        )
        raise ConflictError(
            f"v{candidate.version} is not promoted: {seen}; verify its preview route first "
            "(`mlpilot deploy verify`), or force the promotion with a reason",
            field="verification",
        )
    old = spec.primary
    variants = [Variant(version=candidate.version, role="primary", weight=100)]
    standby_until = None
    if spec.retention_seconds > 0:
        variants.append(Variant(version=old.version, role="standby", weight=0))
        standby_until = now_ms + int(spec.retention_seconds * 1000)
    return spec.model_copy(
        update={
            "state": "stable",
            "variants": variants,
            "step": 0,
            "standby_until": standby_until,
            "verification": None,
            "message": message or f"v{candidate.version} promoted (v{old.version} kept warm)",
        }
    )


def advance(spec: DeploymentSpec, *, revision: int, now_ms: int, latency_threshold_ms: float | None) -> DeploymentSpec:
    """The canary's next step, or its promotion when the next step is 100%."""
    if spec.state != "canary" or spec.strategy != "canary":
        raise ConflictError(f"only a running canary advances; the deployment is {spec.state}", field="state")
    candidate = spec.candidate
    assert candidate is not None
    nxt = spec.step + 1
    steps = spec.canary.steps
    if nxt >= len(steps) - 1:
        return promote(spec, now_ms=now_ms, message=f"canary v{candidate.version} passed every step: promoted")
    weight = steps[nxt]
    variants = [
        Variant(version=spec.primary.version, role="primary", weight=100 - weight),
        Variant(version=candidate.version, role="canary", weight=weight),
    ]
    return spec.model_copy(
        update={
            "variants": variants,
            "step": nxt,
            "step_started_at": now_ms,
            "step_revision": revision + 1,
            "latency_threshold_ms": spec.latency_threshold_ms or latency_threshold_ms,
            "message": f"canary v{candidate.version} at {weight:g}%",
        }
    )


def pause(spec: DeploymentSpec, *, message: str) -> DeploymentSpec:
    """Stop a canary from progressing; its traffic split stays as it is."""
    if spec.state != "canary":
        raise ConflictError(f"only a running canary can be paused; the deployment is {spec.state}", field="state")
    return spec.model_copy(update={"state": "paused", "message": message})


def resume(spec: DeploymentSpec, *, revision: int, now_ms: int) -> DeploymentSpec:
    """Resume a paused canary; its current step starts over (duration and request count)."""
    if spec.state != "paused":
        raise ConflictError(f"only a paused canary can be resumed; the deployment is {spec.state}", field="state")
    return spec.model_copy(
        update={
            "state": "canary",
            "step_started_at": now_ms,
            "step_revision": revision + 1,
            "message": "resumed",
        }
    )


def rollback(spec: DeploymentSpec, base: DeploymentSpec, *, message: str) -> DeploymentSpec:
    """The stable spec the rollout started from (``base``), without its standbys; the rollout counter is kept
    so that new observations are never mixed with the rolled-back rollout's."""
    variants = [v for v in base.variants if v.role == "primary"]
    return base.model_copy(
        update={
            "state": "stable",
            "variants": [variants[0].model_copy(update={"weight": 100.0})],
            "rollout": spec.rollout,
            "base_revision": None,
            "standby_until": None,
            "step": 0,
            "latency_threshold_ms": None,
            "verification": None,
            "message": message,
        }
    )


def expire_standby(spec: DeploymentSpec, *, now_ms: int) -> DeploymentSpec | None:
    """The spec without standbys once their retention window has passed, else None."""
    if spec.standby_until is None or now_ms < spec.standby_until:
        return None
    kept = [v for v in spec.variants if v.role != "standby"]
    return spec.model_copy(update={"variants": kept, "standby_until": None, "message": "retention window ended"})
